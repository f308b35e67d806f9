"""The samplers against independent oracles (k-diffusion's LMS and Euler, exact ODE solutions) and their
convergence order, from sigma_max to sigma = 0."""

import math

import numpy as np
import pytest
import torch
import k_diffusion.sampling as K

from benchmarks import schedules
from benchmarks.problems import GAUSSIAN, MIXTURE, relative_error
from deis import Config, FlowTime, VPLinearTime, sample_deis, sample_deis_rk

AB_VARIANTS = ("tab", "rhoab", "logrhoab")


def noise(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def run(model, x, sigmas, parameterisation="ve", tableau=None, **options):
    """rhoRK with a tableau, else the multistep sampler on ``Config(**options)`` (the paper's tAB3 changed)."""
    if tableau is not None:
        return sample_deis_rk(model, x, sigmas, disable=True, tableau=tableau, parameterisation=parameterisation)
    return sample_deis(model, x, sigmas, disable=True, parameterisation=parameterisation, config=Config(**options))


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
@pytest.mark.parametrize("n", [4, 10, 25])
def test_rhoab_is_k_diffusion_lms(degree, n):
    sigmas = K.get_sigmas_karras(n, 0.03, 14.6, device="cpu").double()[:-1]  # LMS's final step is x = D
    x = noise(2, 4, 8, 8) * sigmas[0]
    model = MIXTURE.denoiser()
    ours = run(model, x, sigmas, variant="rhoab", degree=degree)
    lms = K.sample_lms(model, x, sigmas, disable=True, order=degree + 1)
    assert relative_error(ours, lms.numpy()) < 1e-5


@pytest.mark.parametrize("integrand", ["eps", "data"])
@pytest.mark.parametrize("end_at_zero", [False, True])
def test_degree_zero_is_ddim_is_k_diffusion_euler(integrand, end_at_zero):
    """Degree 0 on eps_hat or on D is DDIM, which in the VE form is Euler (the variable plays no part)."""
    sigmas = K.get_sigmas_karras(10, 0.002, 80.0).double()
    sigmas = sigmas if end_at_zero else sigmas[:-1]
    x = noise(1, 3, 8, 8) * sigmas[0]
    model = MIXTURE.denoiser()
    ours = run(model, x, sigmas, degree=0, integrand=integrand)
    euler = K.sample_euler(model, x, sigmas, disable=True)
    assert relative_error(ours, euler.numpy()) < 1e-12


def measured_order(errors, steps):
    """The order between the last two step counts (the first pair is the least asymptotic)."""
    return math.log(errors[-2] / errors[-1]) / math.log(steps[-1] / steps[-2])


_references = {}


def reference(problem, form, x, sigma_from, sigma_to):
    """The exact solution, computed once per problem, form, start and end (every step count shares it)."""
    key = (id(problem), form, x.numpy().tobytes(), float(sigma_from), float(sigma_to))
    if key not in _references:
        _references[key] = problem.reference(x.numpy(), sigma_from, sigma_to, form)
    return _references[key]


def bulk_errors(problem, form, steps, **options):
    """Relative error at the end of a Karras-spaced schedule from rho = 1000 to 0.05: the method's own order,
    away from both ends (where eps_hat is nearly constant, and above the step into 0)."""
    z = noise(1, 1, 4, 4, seed=1)
    errors = []
    for n in steps:
        rho = schedules.karras(n + 1, 0.05, 1000.0)[:-1]
        sigmas = rho / (1 + rho) if form == "flow" else rho
        x = z * float(sigmas[0])
        exact = reference(problem, form, x, sigmas[0], sigmas[-1])
        out = run(problem.denoiser(form), x, torch.from_numpy(sigmas), form, **options)
        errors.append(relative_error(out, exact))
    return errors


def full_errors(problem, form, steps, **options):
    """Relative error at sigma = 0 of a whole schedule from sigma_max: the orders users get, first step and step
    into 0 included. VE: sigma from 80, cubic in the step index to 0 (its last step from 80 / N^3). Flow:
    ComfyUI's simple schedule with shift 3, from pure noise (sigma = 1) to 0 (its last step from about 3 / N)."""
    z = noise(1, 2, 4, 4, seed=1)
    errors = []
    for n in steps:
        sigmas = schedules.flow_shift(n) if form == "flow" else 80.0 * np.linspace(1, 0, n + 1) ** 3
        x = z if form == "flow" else z * float(sigmas[0])
        exact = reference(problem, form, x, sigmas[0], 0.0)
        out = run(problem.denoiser(form), x, torch.from_numpy(sigmas), form, **options)
        errors.append(relative_error(out, exact))
    return errors


#: Every variable at degrees 1 to 3; degree 0 once (DDIM: every variable gives the same plan).
ORDER_CASES = [(v, d) for v in AB_VARIANTS for d in (1, 2, 3)] + [("tab", 0)]


@pytest.mark.parametrize("form", ["ve", "flow"])
@pytest.mark.parametrize("variant, degree", ORDER_CASES)
def test_predictor_order_is_degree_plus_one(form, variant, degree):
    steps = [128, 256, 512]
    order = measured_order(bulk_errors(GAUSSIAN, form, steps, variant=variant, degree=degree), steps)
    assert abs(order - (degree + 1)) < 0.3, order


@pytest.mark.parametrize("form", ["ve", "flow"])
@pytest.mark.parametrize("integrand", ["eps", "v", "data"])
@pytest.mark.parametrize("degree", [1, 2])
def test_the_corrector_raises_the_order_by_one(form, integrand, degree):
    steps = [128, 256, 512]
    options = dict(variant="tab", degree=degree, integrand=integrand)
    plain = bulk_errors(MIXTURE, form, steps, **options)
    corrected = bulk_errors(MIXTURE, form, steps, corrector=True, **options)
    assert abs(measured_order(plain, steps) - (degree + 1)) < 0.3
    assert abs(measured_order(corrected, steps) - (degree + 2)) < 0.35
    assert corrected[-1] < plain[-1] / 4


@pytest.mark.parametrize("integrand", ["eps", "v", "data"])
@pytest.mark.parametrize("degree", [1, 2])
@pytest.mark.parametrize("corrector", [False, True])
def test_from_sigma_max_to_zero_in_the_ve_form_the_order_is_the_methods(integrand, degree, corrector):
    """From sigma = 80 to 0, the first step and the step into 0 included: the order is degree + 1, and
    degree + 2 with the corrector (its first step is a corrected DDIM step, second order locally)."""
    steps = [128, 256, 512]
    errors = full_errors(MIXTURE, "ve", steps, variant="tab", degree=degree, integrand=integrand,
                         corrector=corrector)
    assert measured_order(errors, steps) > degree + 1 + corrector - 0.3, errors


@pytest.mark.parametrize("integrand", ["eps", "v"])
@pytest.mark.parametrize("corrector", [False, True])
def test_on_a_flow_model_the_step_into_zero_sets_the_order(integrand, corrector):
    """ComfyUI's simple schedule ends with a step from sigma ~ 3 / N into 0. Taken as DDIM (final_degree 0) its
    local error, and so the global order, is 2 whatever the method; as a degree-1 step in rho it is 3, which
    the corrected tAB2 reaches (its first step, from pure noise, is a corrected DDIM step), and the
    uncorrected one passes (its DDIM first step bounds it by 2 as N grows)."""
    steps = [128, 256, 512]
    options = dict(variant="tab", degree=2, integrand=integrand, corrector=corrector)
    ddim_into_zero = full_errors(MIXTURE, "flow", steps, final_degree=0, **options)
    linear_into_zero = full_errors(MIXTURE, "flow", steps, final_degree=1, **options)
    assert abs(measured_order(ddim_into_zero, steps) - 2) < 0.2
    assert measured_order(linear_into_zero, steps) > (2.8 if corrector else 2.2)
    assert linear_into_zero[-1] < ddim_into_zero[-1] / 4


@pytest.mark.parametrize("form", ["ve", "flow"])
@pytest.mark.parametrize("tableau, order", [("midpoint", 2), ("heun2", 2), ("ralston2", 2), ("kutta3", 3),
                                            ("ralston3", 3), ("rk4", 4)])
def test_rhork_order_is_the_tableau_order_on_a_mixture(form, tableau, order):
    steps = [32, 64, 128]
    errors = bulk_errors(MIXTURE, form, steps, variant="rhork", tableau=tableau)
    assert abs(measured_order(errors, steps) - order) < 0.3


@pytest.mark.parametrize("variant", ["tab", "rhoab", "logrhoab", "ipndm", "rhork"])
def test_flow_start_at_sigma_one_converges_to_the_exact_solution(variant):
    options = {"tableau": "kutta3"} if variant == "rhork" else {"variant": variant}
    errors = []
    for n in (25, 100):
        sigmas = torch.from_numpy(schedules.flow_shift(n))
        x = noise(1, 2, 8, 8)
        exact = MIXTURE.reference(x.numpy(), 1.0, 0.0, "flow")
        out = run(MIXTURE.denoiser("flow"), x, sigmas, "flow", **options)
        assert torch.isfinite(out).all()
        errors.append(relative_error(out, exact))
    assert errors[1] < errors[0] / 3 and errors[1] < 2e-3, errors


def test_tab_uses_the_time_map_it_is_given_else_the_models_else_the_default():
    sigmas = torch.from_numpy(schedules.sd15_karras(8))
    x = noise(1, 1, 4, 4) * sigmas[0]
    model = MIXTURE.denoiser()

    def tab(time_map=None, **options):
        return sample_deis(model, x, sigmas, disable=True, config=Config(time_map=time_map), **options)

    table, vp, default = tab(schedules.SD15), tab(VPLinearTime()), tab()
    model_time = tab(model_time_map=schedules.SD15)
    given_wins = tab(VPLinearTime(), model_time_map=schedules.SD15)
    assert torch.equal(vp, default) and torch.equal(table, model_time) and torch.equal(given_wins, vp)
    assert not torch.allclose(table, vp, rtol=1e-6, atol=0)
    flow_sigmas = torch.from_numpy(schedules.flow_shift(8))
    flow_default = sample_deis(MIXTURE.denoiser("flow"), x, flow_sigmas, disable=True, parameterisation="flow",
                               config=Config())
    flow_time = sample_deis(MIXTURE.denoiser("flow"), x, flow_sigmas, disable=True, parameterisation="flow",
                            config=Config(time_map=FlowTime()))
    assert torch.equal(flow_default, flow_time)


def test_gaussian_reference_is_the_closed_form():
    # the problems module's reference itself: DOP853 on a one-component "mixture" vs the formula
    from benchmarks.problems import GaussianMixture

    two = GaussianMixture(means=(0.5, 0.5), stds=(1.0, 1.0))
    x = noise(8) * 10
    assert np.allclose(two.reference(x.numpy(), 10.0, 0.1), GAUSSIAN.reference(x.numpy(), 10.0, 0.1),
                       rtol=1e-9, atol=1e-10)
    assert math.isclose(float(GAUSSIAN.reference(np.array([2.5]), 3.0, 0.0)[0]),
                        0.5 + 2.0 * math.sqrt(1 / 10), rel_tol=1e-14)
