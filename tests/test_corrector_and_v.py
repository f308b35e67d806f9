"""The v integrand and the corrector: coefficients against adaptive quadrature, exactness, order, options."""

import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad

from benchmarks import schedules
from benchmarks.problems import GAUSSIAN, MIXTURE, GaussianMixture, relative_error
from deis import CoefficientCache, FlowTime, VPLinearTime, get_plan, sample_deis
from deis.coefficients import (ab_coefficients, corrector_coefficients, corrector_degrees, interpolation_nodes,
                               step_degrees)
from deis.parameterisation import get_parameterisation
from test_sampling import measured_order, noise, ode_errors

#: (name, sigmas, parameterisation, time map): a sigma table, a flow start at sigma = 1, a continuous VP
CASES = [
    ("sd15-karras", schedules.sd15_karras(10), "ve", schedules.SD15),
    ("flow-shift-3", schedules.flow_shift(8), "flow", FlowTime()),
    ("edm-vp", schedules.edm(8), "ve", VPLinearTime()),
]


def lagrange(nodes, j):
    others = [k for k in range(len(nodes)) if k != j]
    return lambda v: math.prod((v - nodes[k]) / (nodes[j] - nodes[k]) for k in others)


def phi_integral(f, phi_from, phi_to, breaks):
    """integral of f from phi_from to phi_to, adaptively, split at ``breaks``."""
    lo, hi = sorted((phi_from, phi_to))
    points = [lo] + sorted(b for b in breaks if lo < b < hi) + [hi]
    total = sum(quad(f, a, b, epsabs=0, epsrel=1e-13, limit=200)[0] for a, b in zip(points[:-1], points[1:]))
    return total if phi_to > phi_from else -total


@pytest.mark.parametrize("variant", ["tab", "rhoab", "logrhoab"])
@pytest.mark.parametrize("name, sigmas, form, time_map", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("lead", [0, 1], ids=["predictor", "corrector"])
def test_v_coefficients_match_adaptive_quadrature_in_phi(variant, name, sigmas, form, time_map, lead):
    rho = get_parameterisation(form).rho(sigmas)
    tm = time_map if variant == "tab" else None
    v = interpolation_nodes(variant, rho, tm)
    degrees = step_degrees(v, 3, sigmas[-1] == 0, lower_order_final=False)
    if lead:
        degrees = corrector_degrees(v, rho, degrees, "v")
        C = corrector_coefficients(variant, rho, degrees, tm, "v")
    else:
        C = ab_coefficients(variant, rho, degrees, tm, "v")
    phi = np.arctan(rho)
    breaks = np.arctan(np.exp(time_map.knots)) if variant == "tab" else ()
    checked = 0
    for i, r in enumerate(degrees):
        if r < 1:
            continue
        nodes_rho = rho[i + lead - np.arange(r + 1)]
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
            exact = phi_integral(lambda p: basis(variable(p)), phi[i], phi[i + 1], breaks)
            assert abs(C[i][j] - exact) <= 1e-10 * max(1.0, abs(exact)), (i, j, C[i][j], exact)
        checked += 1
    assert checked >= 3


@pytest.mark.parametrize("form", ["ve", "flow"])
@pytest.mark.parametrize("corrector", [False, True])
@pytest.mark.parametrize("variant", ["tab", "logrhoab", "ipndm"])
def test_v_integrand_is_exact_for_unit_gaussian_data(form, corrector, variant):
    """For N(0, 1) data v_hat is zero along the ODE, so every step is exact (up to round-off), from any start."""
    unit = GaussianMixture(means=(0.0,), stds=(1.0,))
    sigmas = schedules.flow_shift(6)[:-1] if form == "flow" else schedules.edm(6)[:-1]
    x = noise(1, 2, 4, 4) * (1.0 if form == "flow" else float(sigmas[0]))
    exact = unit.reference(x.numpy(), sigmas[0], sigmas[-1], form)
    out = sample_deis(unit.denoiser(form), x, torch.from_numpy(sigmas), disable=True, variant=variant, degree=3,
                      parameterisation=form, integrand="v", corrector=corrector)
    assert relative_error(out, exact) < 1e-12
    eps = sample_deis(unit.denoiser(form), x, torch.from_numpy(sigmas), disable=True, variant=variant, degree=3,
                      parameterisation=form)
    assert relative_error(eps, exact) > 1e-6  # the eps integrand is not: the test can tell them apart


@pytest.mark.parametrize("integrand", ["eps", "v"])
@pytest.mark.parametrize("form", ["ve", "flow"])
def test_the_step_into_zero_returns_the_denoised_value_where_the_data_has_no_spread(integrand, form):
    """An inpainting mask's kept region: D is constant, and the result must be exactly D."""
    point = torch.full((1, 2, 4, 4), 0.5, dtype=torch.float64)
    sigmas = torch.from_numpy(schedules.flow_shift(8) if form == "flow" else schedules.edm(8))
    x = noise(1, 2, 4, 4) * float(sigmas[0]) + (0.0 if form == "flow" else 0.5)
    out = sample_deis(lambda x, sigma: point.expand_as(x), x, sigmas, disable=True, degree=3, parameterisation=form,
                      integrand=integrand, corrector=True)
    torch.testing.assert_close(out, point, rtol=0, atol=1e-12)


@pytest.mark.parametrize("integrand", ["eps", "v"])
@pytest.mark.parametrize("variant, degree, order", [("tab", 1, 3), ("tab", 2, 4), ("rhoab", 1, 3),
                                                    ("logrhoab", 2, 4)])
def test_the_corrector_raises_the_order_by_one(integrand, variant, degree, order):
    steps = [64, 128, 256]
    plain = ode_errors(MIXTURE, "ve", steps, variant=variant, degree=degree, integrand=integrand)
    corrected = ode_errors(MIXTURE, "ve", steps, variant=variant, degree=degree, integrand=integrand,
                           corrector=True)
    assert abs(measured_order(corrected, steps) - order) < 0.3, measured_order(corrected, steps)
    assert measured_order(corrected, steps) > measured_order(plain, steps) + 0.5
    assert corrected[-1] < plain[-1] / 3


@pytest.mark.parametrize("form", ["ve", "flow"])
@pytest.mark.parametrize("degree", [1, 2, 3])
def test_v_integrand_global_order_is_degree_plus_one(form, degree):
    steps = [128, 256, 512]
    order = measured_order(ode_errors(GAUSSIAN, form, steps, variant="tab", degree=degree, integrand="v"), steps)
    assert abs(order - (degree + 1)) < 0.3, order


def test_v_pc_from_the_flow_start_converges_to_the_exact_solution():
    errors = []
    for n in (25, 100):
        sigmas = torch.from_numpy(schedules.flow_shift(n))
        x = noise(1, 2, 8, 8)
        exact = MIXTURE.reference(x.numpy(), 1.0, 0.0, "flow")
        out = sample_deis(MIXTURE.denoiser("flow"), x, sigmas, disable=True, variant="tab", degree=3,
                          parameterisation="flow", integrand="v", corrector=True)
        errors.append(relative_error(out, exact))
    assert errors[1] < errors[0] / 3 and errors[1] < 2e-3, errors


@pytest.mark.parametrize("options, message", [
    (dict(integrand="x0"), "unknown integrand 'x0'"),
    (dict(corrector="yes"), "corrector must be True or False"),
    (dict(variant="rhork", integrand="v"), "rhoRK integrates eps_hat"),
    (dict(variant="rhork", corrector=True), "rhoRK integrates eps_hat"),
    (dict(stable=True, corrector=True), "stable applies to the eps integrand without corrector"),
    (dict(stable=True, integrand="v"), "stable applies to the eps integrand without corrector"),
])
def test_bad_integrand_and_corrector_options_are_named(options, message):
    with pytest.raises(ValueError, match=message):
        get_plan(schedules.edm(5), cache=CoefficientCache(), **options)


def test_integrand_and_corrector_are_part_of_the_cache_key():
    cache = CoefficientCache()
    plans = {(integrand, corrector): get_plan(schedules.edm(6), cache=cache, integrand=integrand, corrector=corrector)
             for integrand in ("eps", "v") for corrector in (False, True)}
    assert len({id(plan) for plan in plans.values()}) == 4
    assert get_plan(schedules.edm(6), cache=cache, integrand="v", corrector=True) is plans[("v", True)]
