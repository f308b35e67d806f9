"""The samplers against independent oracles: k-diffusion's LMS and Euler, and exact ODE solutions."""

import math

import numpy as np
import pytest
import torch
import k_diffusion.sampling as K

from benchmarks import schedules
from benchmarks.problems import GAUSSIAN, MIXTURE, relative_error
from deis import FlowTime, VPLinearTime, sample_deis

AB_VARIANTS = ("tab", "rhoab", "logrhoab")


def noise(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
@pytest.mark.parametrize("n", [4, 10, 25])
def test_rhoab_is_k_diffusion_lms(degree, n):
    sigmas = K.get_sigmas_karras(n, 0.03, 14.6, device="cpu").double()[:-1]  # LMS's final step is x = D
    x = noise(2, 4, 8, 8) * sigmas[0]
    model = MIXTURE.denoiser()
    ours = sample_deis(model, x, sigmas, disable=True, variant="rhoab", degree=degree)
    lms = K.sample_lms(model, x, sigmas, disable=True, order=degree + 1)
    assert relative_error(ours, lms.numpy()) < 1e-5


@pytest.mark.parametrize("variant", AB_VARIANTS + ("ipndm", "ipndm_v"))
@pytest.mark.parametrize("end_at_zero", [False, True])
def test_degree_zero_is_ddim_is_k_diffusion_euler(variant, end_at_zero):
    sigmas = K.get_sigmas_karras(10, 0.002, 80.0).double()
    sigmas = sigmas if end_at_zero else sigmas[:-1]
    x = noise(1, 3, 8, 8) * sigmas[0]
    model = MIXTURE.denoiser()
    ours = sample_deis(model, x, sigmas, disable=True, variant=variant, degree=0)
    euler = K.sample_euler(model, x, sigmas, disable=True)
    assert relative_error(ours, euler.numpy()) < 1e-12


def measured_order(errors, steps):
    return -np.polyfit(np.log(steps), np.log(errors), 1)[0]


def ode_errors(problem, form, steps, sigma_end=0.05, **options):
    """Relative error at the end of a Karras-spaced schedule from rho = 1000, for each step count.

    It starts far out, where eps_hat is nearly constant, so that the lower-order warm-start steps
    (and in the flow form the data form's start) add errors far below the method's own.
    """
    z = noise(1, 1, 4, 4, seed=1)
    errors = []
    for n in steps:
        rho = schedules.karras(n + 1, sigma_end, 1000.0)[:-1]
        sigmas = rho / (1 + rho) if form == "flow" else rho
        x = z * float(sigmas[0])
        exact = problem.reference(x.numpy(), sigmas[0], sigmas[-1], form)
        out = sample_deis(problem.denoiser(form), x, torch.from_numpy(sigmas), disable=True,
                          parameterisation=form, **options)
        errors.append(relative_error(out, exact))
    return errors


@pytest.mark.parametrize("form", ["ve", "flow"])
@pytest.mark.parametrize("variant", AB_VARIANTS)
@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_ab_global_order_is_degree_plus_one_on_the_gaussian(form, variant, degree):
    steps = [128, 256, 512]
    order = measured_order(ode_errors(GAUSSIAN, form, steps, variant=variant, degree=degree), steps)
    assert abs(order - (degree + 1)) < 0.3, order


@pytest.mark.parametrize("form", ["ve", "flow"])
@pytest.mark.parametrize("tableau, order", [("midpoint", 2), ("heun2", 2), ("ralston2", 2), ("kutta3", 3),
                                            ("ralston3", 3), ("rk4", 4)])
def test_rhork_order_is_the_tableau_order_on_a_mixture(form, tableau, order):
    steps = [32, 64, 128]
    errors = ode_errors(MIXTURE, form, steps, variant="rhork", tableau=tableau)
    assert abs(measured_order(errors, steps) - order) < 0.3


@pytest.mark.parametrize("variant", ["tab", "rhoab", "logrhoab", "ipndm", "rhork"])
def test_flow_start_at_sigma_one_converges_to_the_exact_solution(variant):
    options = {"tableau": "kutta3"} if variant == "rhork" else {"degree": 3}
    errors = []
    for n in (25, 100):
        sigmas = torch.from_numpy(schedules.flow_shift(n))
        x = noise(1, 2, 8, 8)
        exact = MIXTURE.reference(x.numpy(), 1.0, 0.0, "flow")
        out = sample_deis(MIXTURE.denoiser("flow"), x, sigmas, disable=True, variant=variant,
                          parameterisation="flow", **options)
        assert torch.isfinite(out).all()
        errors.append(relative_error(out, exact))
    assert errors[1] < errors[0] / 3 and errors[1] < 2e-3, errors


def test_tab_uses_the_time_map_it_is_given():
    sigmas = torch.from_numpy(schedules.sd15_karras(8))
    x = noise(1, 1, 4, 4) * sigmas[0]
    model = MIXTURE.denoiser()
    table = sample_deis(model, x, sigmas, disable=True, variant="tab", time_map=schedules.SD15)
    vp = sample_deis(model, x, sigmas, disable=True, variant="tab", time_map=VPLinearTime())
    default = sample_deis(model, x, sigmas, disable=True, variant="tab")
    assert torch.equal(vp, default)
    assert not torch.allclose(table, vp, rtol=1e-6, atol=0)
    flow_sigmas = torch.from_numpy(schedules.flow_shift(8))
    flow_default = sample_deis(MIXTURE.denoiser("flow"), x, flow_sigmas, disable=True, parameterisation="flow",
                               variant="tab")
    flow_time = sample_deis(MIXTURE.denoiser("flow"), x, flow_sigmas, disable=True, parameterisation="flow",
                            variant="tab", time_map=FlowTime())
    assert torch.equal(flow_default, flow_time)


def test_accuracy_at_few_steps_beats_euler_and_lms():
    """The point of DEIS: on a hard problem at 10 steps, tAB3 is far more accurate than Euler and LMS."""
    sigmas = torch.from_numpy(schedules.edm(10))
    x = noise(1, 4, 8, 8) * 80.0
    exact = MIXTURE.reference(x.numpy(), 80.0, 0.0)
    model = MIXTURE.denoiser()
    deis_error = relative_error(sample_deis(model, x, sigmas, disable=True, variant="tab", degree=3), exact)
    euler_error = relative_error(K.sample_euler(model, x, sigmas, disable=True), exact)
    lms_error = relative_error(K.sample_lms(model, x, sigmas, disable=True), exact)
    assert deis_error < euler_error / 3 and deis_error < lms_error, (deis_error, euler_error, lms_error)


def test_gaussian_reference_is_the_closed_form():
    # the problems module's reference itself: DOP853 on a one-component "mixture" vs the formula
    from benchmarks.problems import GaussianMixture

    two = GaussianMixture(means=(0.5, 0.5), stds=(1.0, 1.0))
    x = noise(8) * 10
    assert np.allclose(two.reference(x.numpy(), 10.0, 0.1), GAUSSIAN.reference(x.numpy(), 10.0, 0.1),
                       rtol=1e-9, atol=1e-10)
    assert math.isclose(float(GAUSSIAN.reference(np.array([2.5]), 3.0, 0.0)[0]),
                        0.5 + 2.0 * math.sqrt(1 / 10), rel_tol=1e-14)
