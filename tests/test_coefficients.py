"""The coefficient tables: sums, exactness on polynomials, and agreement with an mpmath oracle."""

import mpmath as mp
import numpy as np
import pytest
import torch

import oracle
from benchmarks import schedules
from deis import FlowTime, VPLinearTime, sample_deis
from deis.coefficients import (AB_AMPLIFICATION, IPNDM_WEIGHTS, TABLEAUS, ab_coefficients, amplification,
                               interpolation_nodes, stable_degrees, step_degrees)
from deis.parameterisation import get_parameterisation

# name: (schedule, parameterisation, the package's time map, the oracle's own time map)
SCHEDULES = {
    "sd15_karras": (schedules.sd15_karras, "ve", schedules.SD15, oracle.Table(schedules.SD15.sigmas)),
    "sd15_normal": (schedules.sd15_normal, "ve", schedules.SD15, oracle.Table(schedules.SD15.sigmas)),
    "flow_shift3": (schedules.flow_shift, "flow", FlowTime(), oracle.Flow()),
    "edm": (schedules.edm, "ve", VPLinearTime(), oracle.VPLinear()),
}
AB_VARIANTS = ("tab", "rhoab", "logrhoab")


def table(variant, name, n, degree, lower_order_final=False):
    make, form, time_map, _ = SCHEDULES[name]
    sigmas = make(n)
    rho = get_parameterisation(form).rho(sigmas)
    time_map = time_map if variant == "tab" else None
    v = interpolation_nodes(variant, rho, time_map)
    degrees = step_degrees(v, degree, rho, lower_order_final)
    return sigmas, rho, degrees, ab_coefficients(variant, rho, degrees, time_map, final_in_rho=lower_order_final)


@pytest.mark.parametrize("variant", AB_VARIANTS + ("ipndm",))
@pytest.mark.parametrize("name", SCHEDULES)
@pytest.mark.parametrize("n", [5, 10, 50])
@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_coefficients_sum_to_the_step_in_rho(variant, name, n, degree):
    sigmas, rho, degrees, C = table(variant, name, n, degree)
    assert degrees.max() == min(degree, n - 1 - (name == "flow_shift3" and variant != "tab"))
    for i, c in enumerate(C):
        if np.isinf(rho[i]):
            continue  # the flow start: a DDIM step from rho = inf, handled in the data form
        assert len(c) == degrees[i] + 1
        assert np.sum(c) == pytest.approx(rho[i + 1] - rho[i], rel=1e-12, abs=1e-12 * rho[i])


# At 50 steps degree 3 already covers every warm-start degree, so lower degrees run only for tAB there.
ORACLE_CASES = [(variant, name, n, degree) for variant in AB_VARIANTS for name in SCHEDULES for n in (5, 10, 50)
                for degree in (1, 2, 3) if not (n == 50 and degree < 3 and variant != "tab")]


@pytest.mark.parametrize("variant, name, n, degree", ORACLE_CASES)
def test_coefficients_match_a_30_digit_oracle(variant, name, n, degree):
    sigmas, rho, degrees, C = table(variant, name, n, degree)
    form, oracle_map = SCHEDULES[name][1], SCHEDULES[name][3]
    checked = 0
    for i in range(len(C)):
        if degrees[i] == 0:
            continue
        expected = np.array(oracle.coefficients(variant, sigmas, form, i, int(degrees[i]), oracle_map))
        np.testing.assert_allclose(C[i], expected, rtol=0, atol=1e-10 * np.abs(expected).max())
        checked += 1
    assert checked >= min(n - 2, 3)


@pytest.mark.parametrize("variant", AB_VARIANTS)
@pytest.mark.parametrize("name", ["sd15_karras", "flow_shift3", "edm"])
def test_one_step_is_exact_for_polynomial_eps_hat(variant, name):
    """A model whose eps_hat is a polynomial of degree <= r in v: every full-degree step is exact."""
    make, form, time_map, oracle_map = SCHEDULES[name]
    param = get_parameterisation(form)
    sigmas = make(8)
    if form == "flow":
        sigmas = sigmas[1:]  # start below sigma = 1, where the data form needs D
    time_map = time_map if variant == "tab" else None
    nodes = interpolation_nodes(variant, param.rho(sigmas), time_map)
    v_scale = max(1.0, np.abs(nodes[np.isfinite(nodes)]).max())  # keeps x small: no cancellation in x - D
    for degree in range(4):
        poly = [c / v_scale ** (degree - k) for k, c in enumerate([0.3, -0.7, 1.1, 0.9][:degree + 1])]

        def model(x, sigma):
            s = float(sigma[0])
            rho = float(param.rho(s))
            v = float(interpolation_nodes(variant, np.array([rho]), time_map)[0])
            eps = float(np.polyval(poly, v))
            alpha = 1.0 - s if form == "flow" else 1.0
            return (x - s * eps) / alpha

        states = []
        out = sample_deis(model, torch.zeros(1, 1, 1, 1, dtype=torch.float64), torch.tensor(sigmas),
                          callback=lambda d: states.append(d["x"].item()), disable=True, variant=variant,
                          degree=degree, time_map=time_map, parameterisation=form, lower_order_final=False)
        states.append(out.item())
        xh = [x / (1 - s) if form == "flow" else x for x, s in zip(states, sigmas)]
        rho = [oracle.rho_of_sigma(s, form) for s in sigmas]
        last = len(sigmas) - 1
        if sigmas[-1] == 0 and (variant == "logrhoab" or name.startswith("sd15")):
            last -= 1  # that step into 0 interpolates in rho, where this eps_hat is no polynomial
        for i in range(degree, last):
            exact = oracle.integral(variant, [mp.mpf(c) for c in poly], rho[i], rho[i + 1], oracle_map)
            assert xh[i + 1] - xh[i] == pytest.approx(float(exact), rel=1e-10, abs=1e-12), (degree, i)


def test_ipndm_weights_are_the_adams_bashforth_weights():
    for r, weights in enumerate(IPNDM_WEIGHTS):
        assert sum(weights) == pytest.approx(1.0, abs=1e-15)
        # AB weights integrate v^k exactly on a unit grid: sum_j b_j (-j)^k = 1 / (k + 1).
        for k in range(r + 1):
            assert sum(b * (-j) ** k for j, b in enumerate(weights)) == pytest.approx(1 / (k + 1), abs=1e-14)


def test_rhoab_on_a_uniform_grid_is_ipndm():
    rho = np.linspace(10, 1, 12)
    degrees = step_degrees(rho, 3, rho, lower_order_final=False)
    for a, b in zip(ab_coefficients("rhoab", rho, degrees), ab_coefficients("ipndm", rho, degrees)):
        np.testing.assert_allclose(a, b, rtol=1e-13)


@pytest.mark.parametrize("name", TABLEAUS)
def test_tableaus_are_consistent(name):
    tableau = TABLEAUS[name]
    assert sum(tableau.b) == pytest.approx(1)
    for c, row in zip(tableau.c, tableau.a):
        assert sum(row) == pytest.approx(c)
    # order conditions up to the tableau's order
    c, b = np.array(tableau.c), np.array(tableau.b)
    if tableau.order >= 2:
        assert b @ c == pytest.approx(1 / 2)
    if tableau.order >= 3:
        a = np.zeros((tableau.stages, tableau.stages))
        for s, row in enumerate(tableau.a):
            a[s, :len(row)] = row
        assert b @ c ** 2 == pytest.approx(1 / 3)
        assert b @ a @ c == pytest.approx(1 / 6)


@pytest.mark.filterwarnings("ignore:divide by zero")  # log rho is -inf at the end: the variable step_degrees gets
def test_the_step_into_zero_is_a_degree_final_degree_step_in_rho_or_ddim_from_high_noise():
    rho = np.append(np.geomspace(14.6, 0.03, 20), 0.0)
    assert list(step_degrees(np.log(rho), 3, rho)[-3:]) == [3, 3, 1]  # 20 steps: only the last is lowered
    assert step_degrees(np.log(rho), 3, rho, final_degree=2)[-1] == 2
    high = np.append(np.geomspace(14.6, 0.8, 20), 0.0)  # ends from rho 0.8, as linear_quadratic does
    assert step_degrees(np.log(high), 3, high)[-1] == 0
    few = np.append(np.geomspace(14.6, 0.03, 8), 0.0)
    assert list(step_degrees(np.log(few), 3, few)[-2:]) == [1, 1]  # below 15 steps the one before is degree 1
    flow_start = np.array([np.inf, 3.0, 0.2, 0.0])  # only two finite nodes reach the step into 0
    assert step_degrees(np.array([1.0, 0.75, 0.17, 0.0]), 3, flow_start, final_degree=3)[-1] == 1
    assert list(step_degrees(np.log(rho), 3, rho, lower_order_final=False)[-3:]) == [3, 3, 3]


@pytest.mark.parametrize("w", [0.5, 1.0, 2.0, 3.0])
def test_variable_step_ab2_amplifies_history_errors_by_one_plus_the_step_ratio(w):
    """Two-node Adams-Bashforth with h_i = w h_(i-1): weights 1 + w/2 and -w/2 (rho as the variable)."""
    rho = np.array([10.0, 9.0, 9.0 - w])
    C = ab_coefficients("rhoab", rho, np.array([0, 1]))[1]
    np.testing.assert_allclose(C, [-w * (1 + w / 2), w * w / 2], rtol=1e-14)  # the steps run downwards
    assert amplification(C) == pytest.approx(1 + w, rel=1e-14)
    capped = stable_degrees("rhoab", rho, np.array([0, 1]), bound=1.5)
    assert capped[1] == (1 if 1 + w <= 1.5 * AB_AMPLIFICATION[1] else 0)


def test_the_cap_leaves_even_steps_alone_and_lowers_uneven_ones():
    even = np.linspace(10.0, 1.0, 12)
    degrees = step_degrees(even, 3, even, lower_order_final=False)
    np.testing.assert_array_equal(stable_degrees("rhoab", even, degrees, bound=1.0 + 1e-9), degrees)
    uneven = np.array([10.0, 9.5, 9.0, 8.5, 8.0, 2.0])  # a last step 12 times the one before
    degrees = step_degrees(uneven, 2, uneven, lower_order_final=False)
    capped = stable_degrees("rhoab", uneven, degrees, bound=1.5)
    assert list(capped[:-1]) == list(degrees[:-1]) and capped[-1] == 0
