"""The v and data integrands: coefficients against adaptive quadrature, closed forms, exactness, options."""

import math
import re

import numpy as np
import pytest
import torch
from scipy.integrate import quad

from benchmarks import schedules
from benchmarks.problems import GAUSSIAN, GaussianMixture, relative_error
from deis import (CONFIGURATIONS, CoefficientCache, Config, FlowTime, VPLinearTime, get_plan, sample_deis,
                  sample_deis_auto, sample_deis_corrected)
from deis.coefficients import multistep_weights, nodes_of, variable_of
from oracle import ab_nodes
from deis.parameterisation import get_parameterisation
from test_coefficients import warm_degrees
from test_sampling import noise

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
    rho = get_parameterisation(form).rho(sigmas)[:-1]  # the steps before the step into 0 (which follows eps_hat)
    tm = time_map if variant == "tab" else None
    v = nodes_of(variable_of(variant, tm), rho)
    degrees = warm_degrees(v, 3)
    C = multistep_weights(variant, rho, ab_nodes(degrees), tm, integrand)
    phi = np.arctan(rho)
    breaks = np.arctan(np.exp(time_map.knots)) if variant == "tab" else ()
    checked = 0
    for i, r in enumerate(degrees):
        if r < 1:
            continue
        nodes_rho = rho[i - np.arange(r + 1)]

        def variable(p):
            rho_p = math.tan(p)
            if variant == "rhoab":
                return rho_p
            if variant == "logrhoab":
                return math.log(rho_p)
            return float(tm.t_of_logrho(np.array([math.log(rho_p)]))[0])

        nodes = [variable(math.atan(x)) for x in nodes_rho]
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
    out = sample_deis(unit.denoiser(form), x, torch.from_numpy(sigmas), disable=True, parameterisation=form,
                      config=Config(variant=variant, integrand="v"))
    assert relative_error(out, exact) < 1e-12
    eps = sample_deis(unit.denoiser(form), x, torch.from_numpy(sigmas), disable=True, parameterisation=form,
                      config=Config(variant=variant))
    assert relative_error(eps, exact) > 1e-6  # the eps integrand is not: the test can tell them apart


#: (integrand, corrector, final_degree): eps and data keep an exact path where D is constant (eps_hat, or D,
#: is then constant along it), so every step and the step into 0 from the corrected state are exact; v is exact
#: there only when the step into 0 is DDIM from an uncorrected state, x = D.
EXACT_WHERE_NO_SPREAD = [("eps", False, 1), ("eps", True, 1), ("data", False, 0), ("data", True, 1), ("v", False, 0),
                         ("deis_auto", None, None)]


@pytest.mark.parametrize("integrand, corrector, final_degree", EXACT_WHERE_NO_SPREAD)
@pytest.mark.parametrize("form", ["ve", "flow"])
def test_the_step_into_zero_returns_the_denoised_value_where_the_data_has_no_spread(integrand, corrector,
                                                                                    final_degree, form):
    """An inpainting mask's kept region: D is constant there, and the result must be exactly D."""
    point = torch.full((1, 2, 4, 4), 0.5, dtype=torch.float64)
    sigmas = torch.from_numpy(schedules.flow_shift(8) if form == "flow" else schedules.edm(8))
    x = noise(1, 2, 4, 4) * float(sigmas[0]) + (0.0 if form == "flow" else 0.5)
    config = integrand if integrand in CONFIGURATIONS else Config(degree=2, integrand=integrand, corrector=corrector,
                                                                  final_degree=final_degree)
    out = sample_deis(lambda x, sigma: point.expand_as(x), x, sigmas, disable=True, parameterisation=form,
                      config=config)
    # exact up to round-off in x, whose scale is sigma_max (80)
    torch.testing.assert_close(out, point, rtol=0, atol=1e-10)


def test_the_v_integrand_with_a_correction_is_not_exact_there():
    """The check above can fail: v_hat is not constant along the path where D is, so a corrected v step and
    the step into 0 after it miss D."""
    point = torch.full((1, 2, 4, 4), 0.5, dtype=torch.float64)
    sigmas = torch.from_numpy(schedules.edm(8))
    out = sample_deis(lambda x, sigma: point.expand_as(x), noise(1, 2, 4, 4) * 80.0 + 0.5, sigmas, disable=True,
                      config=Config(degree=2, integrand="v", corrector=True))
    assert (out - point).abs().max() > 1e-9


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
    out = sample_deis(model, x0, torch.from_numpy(sigmas), disable=True,
                      config=Config(variant="logrhoab", degree=1, integrand="data", final_degree=0))
    torch.testing.assert_close(out, x, rtol=1e-12, atol=1e-12)


def test_sample_deis_is_deis_auto_and_corrector_true_adds_only_the_corrector():
    """No config is deis_auto's configuration for the form; ``corrector=True`` adds the corrector to it (an earlier
    release switched to another configuration, deis_corrected's), and each keyword replaces one option."""
    for form, sigmas, x in (("ve", schedules.sd15_karras(8), noise(2, 8) * 14.6), ("flow", schedules.flow_shift(8),
                                                                                    noise(2, 8))):
        model, sigmas = GAUSSIAN.denoiser(form), torch.from_numpy(sigmas)
        run = lambda **options: sample_deis(model, x, sigmas, disable=True, parameterisation=form,  # noqa: E731
                                            cache=CoefficientCache(), **options)
        auto = CONFIGURATIONS["deis_auto"][form]
        assert torch.equal(run(), sample_deis_auto(model, x, sigmas, disable=True, parameterisation=form))
        assert torch.equal(run(), run(config=auto)) and not torch.equal(run(), run(degree=1))
        assert torch.equal(run(degree=1), run(config=auto.replace(degree=1)))
        with_corrector = run(corrector=True)
        assert torch.equal(with_corrector, run(config=auto.replace(corrector=True)))
        assert not torch.equal(with_corrector, run()) and not torch.equal(
            with_corrector, sample_deis_corrected(model, x, sigmas, disable=True, parameterisation=form))


@pytest.mark.parametrize("options, message", [
    (dict(integrand="x0"), "integrand 'x0' is not one of eps, v, data"),
    (dict(integrand="eps", eta=0.5), "eta 0.5 needs integrand data"),
    (dict(integrand="data", degree=3, eta=0.5, final_degree=0), "degree 3 is unstable with eta above 0"),
    (dict(final_degree=3), "final_degree 3 is outside its range"),
    (dict(corrector="yes"), "corrector must be on or off (True or False)"),
    (dict(eta=1.5), "eta 1.5 is outside its range"),
    (dict(eta=float("nan")), "eta must be a number from 0 to 1"),
    (dict(eta="1"), "eta must be a number from 0 to 1"),
])
def test_bad_integrand_and_eta_options_are_named(options, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Config(**options)


def test_integrand_corrector_and_eta_are_part_of_the_cache_key():
    cache = CoefficientCache()
    configs = [Config(degree=2, integrand=i, corrector=c) for i in ("eps", "v", "data") for c in (False, True)]
    configs += [Config(degree=1, integrand="data", final_degree=0, eta=e) for e in (0.5, 1.0)]
    plans = [get_plan(schedules.edm(6), config, cache=cache) for config in configs]
    assert len({id(plan) for plan in plans}) == len(configs)
    assert get_plan(schedules.edm(6), Config(degree=2, integrand="eps", corrector=True), cache=cache) is plans[1]
