"""The v and data integrands: coefficients against adaptive quadrature, closed forms, exactness, order, options."""

import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad

from benchmarks import schedules
from benchmarks.problems import GAUSSIAN, GaussianMixture, relative_error
from deis import CoefficientCache, FlowTime, VPLinearTime, get_plan, recommended_options, sample_deis
from deis.coefficients import ab_coefficients, interpolation_nodes, step_degrees
from deis.parameterisation import get_parameterisation
from test_sampling import measured_order, noise, ode_errors

#: (name, sigmas, parameterisation, time map): a sigma table, a flow start at sigma = 1, a continuous VP
CASES = [
    ("sd15-karras", schedules.sd15_karras(10), "ve", schedules.SD15),
    ("flow-shift-3", schedules.flow_shift(8), "flow", FlowTime()),
    ("edm-vp", schedules.edm(8), "ve", VPLinearTime()),
]
#: Each integrand's measure as a function of the angle phi = arctan(rho), integrated adaptively in phi.
MEASURES = {
    "v": lambda p: 1.0,  # d phi / d phi
    "data": lambda p: -1.0 / math.sin(p) ** 2,  # d (1 / tan phi) / d phi
}


def lagrange(nodes, j):
    others = [k for k in range(len(nodes)) if k != j]
    return lambda v: math.prod((v - nodes[k]) / (nodes[j] - nodes[k]) for k in others)


def phi_integral(f, phi_from, phi_to, breaks):
    """integral of f from phi_from to phi_to, adaptively, split at ``breaks``."""
    lo, hi = sorted((phi_from, phi_to))
    points = [lo] + sorted(b for b in breaks if lo < b < hi) + [hi]
    total = sum(quad(f, a, b, epsabs=0, epsrel=1e-13, limit=200)[0] for a, b in zip(points[:-1], points[1:]))
    return total if phi_to > phi_from else -total


@pytest.mark.parametrize("integrand", ["v", "data"])
@pytest.mark.parametrize("variant", ["tab", "rhoab", "logrhoab"])
@pytest.mark.parametrize("name, sigmas, form, time_map", CASES, ids=[c[0] for c in CASES])
def test_coefficients_match_adaptive_quadrature_in_phi(integrand, variant, name, sigmas, form, time_map):
    rho = get_parameterisation(form).rho(sigmas)
    tm = time_map if variant == "tab" else None
    v = interpolation_nodes(variant, rho, tm)
    degrees = step_degrees(v, 3, rho, lower_order_final=False)
    if integrand == "data":
        degrees[-1] = 0  # no finite integral into rho = 0
    C = ab_coefficients(variant, rho, degrees, tm, integrand)
    phi = np.arctan(rho)
    breaks = np.arctan(np.exp(time_map.knots)) if variant == "tab" else ()
    checked = 0
    for i, r in enumerate(degrees):
        if r < 1:
            continue
        nodes_rho = rho[i - np.arange(r + 1)]
        into_zero = rho[i + 1] == 0 and variant in ("logrhoab", "tab") and not (tm and tm.finite_at_zero)

        def variable(p, into_zero=into_zero):
            rho_p = math.tan(p)
            if into_zero or variant == "rhoab":
                return rho_p
            if variant == "logrhoab":
                return math.log(rho_p)
            return float(tm.t_of_logrho(np.array([math.log(rho_p)]))[0])

        nodes = [variable(math.atan(x)) for x in nodes_rho]
        if not np.all(np.isfinite(nodes)):
            continue
        for j in range(r + 1):
            basis = lagrange(nodes, j)
            exact = phi_integral(lambda p: basis(variable(p)) * MEASURES[integrand](p), phi[i], phi[i + 1], breaks)
            assert abs(C[i][j] - exact) <= 1e-10 * max(1.0, abs(exact)), (i, j, C[i][j], exact)
        checked += 1
    assert checked >= 3


@pytest.mark.parametrize("form", ["ve", "flow"])
@pytest.mark.parametrize("variant", ["tab", "logrhoab", "ipndm"])
def test_v_integrand_is_exact_for_unit_gaussian_data(form, variant):
    """For N(0, 1) data v_hat is zero along the ODE, so every step is exact (up to round-off), from any start."""
    unit = GaussianMixture(means=(0.0,), stds=(1.0,))
    sigmas = schedules.flow_shift(6)[:-1] if form == "flow" else schedules.edm(6)[:-1]
    x = noise(1, 2, 4, 4) * (1.0 if form == "flow" else float(sigmas[0]))
    exact = unit.reference(x.numpy(), sigmas[0], sigmas[-1], form)
    out = sample_deis(unit.denoiser(form), x, torch.from_numpy(sigmas), disable=True, variant=variant, degree=3,
                      parameterisation=form, integrand="v")
    assert relative_error(out, exact) < 1e-12
    eps = sample_deis(unit.denoiser(form), x, torch.from_numpy(sigmas), disable=True, variant=variant, degree=3,
                      parameterisation=form)
    assert relative_error(eps, exact) > 1e-6  # the eps integrand is not: the test can tell them apart


@pytest.mark.parametrize("integrand", ["eps", "v", "data", "recommended"])
@pytest.mark.parametrize("form", ["ve", "flow"])
def test_the_step_into_zero_returns_the_denoised_value_where_the_data_has_no_spread(integrand, form):
    """An inpainting mask's kept region: D is constant, and the result must be exactly D (with the eps
    integrand's polynomial step into 0 too, since eps_hat is then constant along the path)."""
    point = torch.full((1, 2, 4, 4), 0.5, dtype=torch.float64)
    sigmas = torch.from_numpy(schedules.flow_shift(8) if form == "flow" else schedules.edm(8))
    x = noise(1, 2, 4, 4) * float(sigmas[0]) + (0.0 if form == "flow" else 0.5)
    options = {} if integrand == "recommended" else dict(variant="tab", degree=3, integrand=integrand)
    out = sample_deis(lambda x, sigma: point.expand_as(x), x, sigmas, disable=True, parameterisation=form,
                      **options)
    torch.testing.assert_close(out, point, rtol=0, atol=1e-12)


@pytest.mark.parametrize("form", ["ve", "flow"])
@pytest.mark.parametrize("degree", [1, 2, 3])
def test_v_integrand_global_order_is_degree_plus_one(form, degree):
    steps = [128, 256, 512]
    order = measured_order(ode_errors(GAUSSIAN, form, steps, variant="tab", degree=degree, integrand="v"), steps)
    assert abs(order - (degree + 1)) < 0.3, order


@pytest.mark.parametrize("variant", ["tab", "logrhoab"])
@pytest.mark.parametrize("degree", [1, 2, 3])
def test_data_integrand_global_order_is_degree_plus_one(variant, degree):
    # Degree 3 in log rho is still pre-asymptotic here: its pairwise orders are 3.4 and 3.8.
    steps = [256, 512, 1024]
    errors = ode_errors(GAUSSIAN, "ve", steps, variant=variant, degree=degree, integrand="data")
    assert abs(measured_order(errors, steps) - (degree + 1)) < 0.45, measured_order(errors, steps)


def test_data_integrand_linear_in_log_rho_is_the_closed_form_exponential_integrator():
    """Independent oracle: D linear in lambda = -log(sigma) through the last two values, integrated
    exactly against e^lambda (ComfyUI's res_multistep and DPM-Solver's exact 2M form)."""
    sigmas = schedules.sd15_karras(10)
    problem = GaussianMixture(means=(-1.0, 1.0), stds=(0.3, 0.4))
    model = problem.denoiser("ve")
    x0 = noise(2, 16) * sigmas[0]
    x, previous = x0.clone(), None
    for i in range(len(sigmas) - 1):
        s, s_next = sigmas[i], sigmas[i + 1]
        denoised = model(x, torch.full([2], s, dtype=torch.float64))
        if s_next == 0:
            x = denoised
        elif previous is None:
            x = s_next / s * x + (1 - s_next / s) * denoised
        else:
            h, h_prev = math.log(s / s_next), math.log(sigmas[i - 1] / s)
            slope = (denoised - previous) / h_prev  # dD / dlambda
            # x_next / s_next = x / s + integral over lambda of (D + slope (lambda - lambda_i)) e^lambda
            e_next, e_now = 1 / s_next, 1 / s
            integral = denoised * (e_next - e_now) + slope * (e_next * (h - 1) + e_now)
            x = s_next * (x / s + integral)
        previous = denoised
    out = sample_deis(model, x0, torch.from_numpy(sigmas), disable=True, variant="logrhoab", degree=1,
                      integrand="data", lower_order_final=False)
    torch.testing.assert_close(out, x, rtol=1e-12, atol=1e-12)


def test_no_options_are_the_recommended_configuration_of_each_form():
    for form, sigmas, x in (("ve", schedules.sd15_karras(8), noise(2, 8) * 14.6), ("flow", schedules.flow_shift(8),
                                                                                    noise(2, 8))):
        model = GAUSSIAN.denoiser(form)
        plain = sample_deis(model, x, torch.from_numpy(sigmas), disable=True, parameterisation=form)
        explicit = sample_deis(model, x, torch.from_numpy(sigmas), disable=True, parameterisation=form,
                               **recommended_options(form))
        assert torch.equal(plain, explicit)
    assert recommended_options("ve") == dict(variant="tab", degree=2, integrand="eps", time_map=VPLinearTime())
    assert recommended_options("flow") == dict(variant="tab", degree=2, integrand="v", time_map=FlowTime(),
                                               lower_order_final=False, max_amplification=1.5)


@pytest.mark.parametrize("options, message", [
    (dict(integrand="x0"), "unknown integrand 'x0'"),
    (dict(variant="rhork", integrand="v"), "rhoRK integrates eps_hat"),
    (dict(variant="rhork", integrand="data"), "rhoRK integrates eps_hat"),
    (dict(variant="rhork", eta=0.5), "eta applies to the multistep variants"),
    (dict(eta=1.5), "eta must be a number from 0"),
    (dict(eta=float("nan")), "eta must be a number from 0"),
    (dict(eta="1"), "eta must be a number from 0"),
])
def test_bad_integrand_and_eta_options_are_named(options, message):
    with pytest.raises(ValueError, match=message):
        get_plan(schedules.edm(5), cache=CoefficientCache(), **options)


def test_integrand_and_eta_are_part_of_the_cache_key():
    cache = CoefficientCache()
    plans = {(integrand, eta): get_plan(schedules.edm(6), cache=cache, integrand=integrand, eta=eta)
             for integrand in ("eps", "v", "data") for eta in (0.0, 1.0)}
    assert len({id(plan) for plan in plans.values()}) == 6
    assert get_plan(schedules.edm(6), cache=cache, integrand="v", eta=1.0) is plans[("v", 1.0)]
