"""The coefficient tables against an independent 30-digit oracle, exactness on polynomials, and the caps."""

import mpmath as mp
import numpy as np
import pytest
import torch

import oracle
from benchmarks import schedules
from deis import CoefficientCache, Config, FlowTime, VPLinearTime, get_plan, sample_deis
from deis.coefficients import (ADAMS_BASHFORTH, ADAMS_MOULTON, AB_AMPLIFICATION, TABLEAUS, amplification,
                               capped_degrees, multistep_weights, nodes_of, variable_of)
from oracle import ab_nodes, am_nodes
from deis.parameterisation import get_parameterisation

# name: (schedule, parameterisation, the package's time map, the oracle's own time map)
SCHEDULES = {
    "sd15_karras": (schedules.sd15_karras, "ve", schedules.SD15, oracle.Table(schedules.SD15.sigmas)),
    "sd15_normal": (schedules.sd15_normal, "ve", schedules.SD15, oracle.Table(schedules.SD15.sigmas)),
    "flow_shift3": (schedules.flow_shift, "flow", FlowTime(), oracle.Flow()),
    "edm": (schedules.edm, "ve", VPLinearTime(), oracle.VPLinear()),
}
AB_VARIANTS = ("tab", "rhoab", "logrhoab")


def warm_degrees(v, degree):
    """The warm start: step i uses the finite nodes it has, at most ``degree`` of them before it."""
    first = 0 if np.isfinite(v[0]) else 1
    return np.minimum(degree, np.maximum(np.arange(len(v) - 1) - first, 0))


def weights(variant, name, n, degree, corrector=False, integrand="eps"):
    """(sigmas, degrees, C) for the steps before the step into 0, predictor or correction nodes (None for a
    step from rho = inf with the eps integrand, whose integral is infinite)."""
    make, form, time_map, _ = SCHEDULES[name]
    sigmas = make(n)
    rho = get_parameterisation(form).rho(sigmas)
    time_map = time_map if variant == "tab" else None
    degrees = warm_degrees(nodes_of(variable_of(variant, time_map), rho), degree)[:-1]
    nodes = (am_nodes if corrector else ab_nodes)(degrees)
    steps = [i for i in range(len(nodes)) if integrand != "eps" or np.isfinite(rho[i])]
    C = dict(zip(steps, multistep_weights(variant, rho, [nodes[i] for i in steps], time_map, integrand, steps=steps)))
    return sigmas, degrees, [C.get(i) for i in range(len(nodes))]


# Degree 3 covers every lower degree in its warm start; degree 1 on 5 steps is the shortest history.
ORACLE_CASES = [(variant, name, n, degree, corrector) for variant in AB_VARIANTS for name in SCHEDULES
                for n, degree in ((5, 1), (10, 3), (50, 3)) for corrector in (False, True)]


@pytest.mark.parametrize("variant, name, n, degree, corrector", ORACLE_CASES)
def test_coefficients_match_a_30_digit_oracle(variant, name, n, degree, corrector):
    """Predictor and correction weights, every step before the step into 0, against mpmath (eps integrand)."""
    sigmas, degrees, C = weights(variant, name, n, degree, corrector)
    form, oracle_map = SCHEDULES[name][1], SCHEDULES[name][3]
    rho = get_parameterisation(form).rho(sigmas)
    checked = 0
    for i, c in enumerate(C):
        nodes = (am_nodes if corrector else ab_nodes)(degrees)[i]
        if c is None or len(nodes) == 1 or not np.all(np.isfinite(
                nodes_of(variable_of(variant, SCHEDULES[name][2] if variant == "tab" else None), rho[list(nodes)]))):
            continue
        expected = np.array(oracle.coefficients(variant, sigmas, form, i, None, oracle_map, nodes=nodes))
        np.testing.assert_allclose(c, expected, rtol=0, atol=1e-10 * np.abs(expected).max())
        checked += 1
    assert checked >= min(n - 3, 3)


@pytest.mark.parametrize("integrand", ["v", "data"])
@pytest.mark.parametrize("name", ["flow_shift3", "edm"])
@pytest.mark.parametrize("corrector", [False, True])
def test_v_and_data_weights_match_the_oracle_from_the_flow_start(integrand, name, corrector):
    """The v and data integrands' measures (d arctan(rho), d(1 / rho)), from rho = inf on a flow model."""
    sigmas, degrees, C = weights("tab", name, 8, 2, corrector, integrand)
    form, oracle_map = SCHEDULES[name][1], SCHEDULES[name][3]
    nodes = (am_nodes if corrector else ab_nodes)(degrees)
    checked = 0
    for i, c in enumerate(C):
        if len(nodes[i]) == 1:
            continue
        expected = np.array(oracle.coefficients("tab", sigmas, form, i, None, oracle_map, nodes=nodes[i],
                                                integrand=integrand))
        np.testing.assert_allclose(c, expected, rtol=0, atol=1e-10 * np.abs(expected).max())
        checked += 1
    assert checked >= 5 and (name != "flow_shift3" or not corrector or len(nodes[0]) == 2)  # step 0 corrected


@pytest.mark.parametrize("moment", [1, 2, 3])
def test_the_oracle_check_catches_a_one_percent_error_in_a_higher_moment(monkeypatch, moment):
    """The oracle test above, run on the package with one kernel moment 1 % off (a mutation of
    deis.coefficients.quadrature_moments), fails."""
    import deis.coefficients as coefficients

    exact = coefficients.quadrature_moments

    def wrong(*args, **kwargs):
        moments = exact(*args, **kwargs)
        if moments.shape[1] > moment:
            moments[:, moment] *= 1.01
        return moments

    monkeypatch.setattr(coefficients, "quadrature_moments", wrong)
    with pytest.raises(AssertionError):
        test_coefficients_match_a_30_digit_oracle("tab", "sd15_karras", 10, 3, False)


#: (integrand, variant, schedule): every integrand and variable; the sigma table's time with eps only, where the
#: oracle integrates it in closed form.
EXACTNESS_CASES = [(i, v, n) for i in ("eps", "v", "data") for v in AB_VARIANTS for n in ("sd15_karras", "flow_shift3",
                                                                                          "edm")
                   if not (n.startswith("sd15") and v == "tab" and i != "eps")]


@pytest.mark.parametrize("integrand, variant, name", EXACTNESS_CASES)
def test_one_step_is_exact_for_a_polynomial_slope(integrand, variant, name):
    """A model whose slope (eps_hat, v_hat or D) is a polynomial of degree <= r in the variable, whatever x is:
    every predictor step of degree r is exact, and every corrected step exact to degree r + 1 (its new node is
    the slope at the predicted point, which for such a model is the slope itself).

    The loop shows the predicted points (the model sees them); a corrected state is the next predicted point
    less its predictor's increment, computed with the oracle's weights."""
    make, form, time_map, oracle_map = SCHEDULES[name]
    param = get_parameterisation(form)
    sigmas = make(8)[:-1]  # the steps in the integrand (the step into 0 follows eps_hat in rho)
    time_map = time_map if variant == "tab" else None
    variable = variable_of(variant, time_map)
    if form == "flow" and (integrand == "eps" or variant != "tab"):
        # below sigma = 1, where D = (x - sigma eps_hat) / alpha and the polynomial in rho are defined
        sigmas = sigmas[1:]
    rho = [oracle.rho_of_sigma(s, form) for s in sigmas]
    v = nodes_of(variable, param.rho(sigmas))
    v_scale = max(1.0, np.abs(v[np.isfinite(v)]).max())  # keeps x small: no cancellation in x - D
    first_usable = 0 if np.isfinite(v[0]) else 1
    for degree in range(3):
        for corrector in (False, True):
            order = degree + corrector
            poly = [c / v_scale ** (order - k) for k, c in enumerate([0.3, -0.7, 1.1, 0.9][:order + 1])]
            mp_poly = [mp.mpf(c) for c in poly]

            def slope(k):
                return float(np.polyval(poly, v[k]))

            def model(x, sigma):
                s = float(sigma[0])
                k = int(np.argmin(np.abs(sigmas - s)))
                alpha, h = param.alpha(s), slope(k)
                if integrand == "eps":
                    return (x - s * h) / alpha
                if integrand == "v":
                    scale = np.hypot(alpha, s)
                    return (x * alpha / (s * scale) - h) * s / scale
                return torch.full_like(x, h)

            states = []
            out = sample_deis(model, torch.zeros(1, 1, 1, 1, dtype=torch.float64), torch.tensor(sigmas),
                              callback=lambda d: states.append(d["x"].item()), disable=True, parameterisation=form,
                              config=Config(variant=variant, degree=degree, time_map=time_map, integrand=integrand,
                                            corrector=corrector), cache=CoefficientCache())
            states.append(out.item())
            scale = [float({"eps": param.alpha(s), "v": np.hypot(param.alpha(s), s), "data": s}[integrand])
                     for s in sigmas]
            y = [x / c for x, c in zip(states, scale)]

            def predictor_degree(k):
                return min(degree, max(k - first_usable, 0))

            def state(k):  # y after step k - 1's correction (predicted where there is none)
                if not corrector or k == len(sigmas) - 1:
                    return y[k]
                nodes = list(range(k, k - predictor_degree(k) - 1, -1))
                C = oracle.coefficients(variant, sigmas, form, k, None, oracle_map, nodes=nodes, integrand=integrand)
                return y[k + 1] - sum(c * slope(j) for c, j in zip(C, nodes))

            checked = 0
            for i in range(degree + first_usable + 1, len(sigmas) - 2):
                exact = oracle.integral(variant, mp_poly, rho[i], rho[i + 1], oracle_map, integrand)
                assert state(i + 1) - state(i) == pytest.approx(float(exact), rel=1e-9, abs=1e-11), \
                    (degree, corrector, i)
                checked += 1
            assert checked >= 2


def test_fixed_weights_are_the_adams_bashforth_and_adams_moulton_weights():
    for r, w in enumerate(ADAMS_BASHFORTH):  # AB: integrate s^k on [0, 1] from the nodes 0, -1, ..., -r
        for k in range(r + 1):
            assert sum(b * (-j) ** k for j, b in enumerate(w)) == pytest.approx(1 / (k + 1), abs=1e-14)
    for r, w in enumerate(ADAMS_MOULTON):  # AM: from the nodes 1, 0, -1, ..., -(r - 1)
        for k in range(r + 1):
            assert sum(b * (1 - j) ** k for j, b in enumerate(w)) == pytest.approx(1 / (k + 1), abs=1e-14)


def test_rhoab_on_a_uniform_grid_is_ipndm_predictor_and_corrector():
    rho = np.linspace(10, 1, 12)
    degrees = warm_degrees(rho, 3)
    for nodes in (ab_nodes(degrees), am_nodes(degrees[:-1])):
        for a, b in zip(multistep_weights("rhoab", rho, nodes), multistep_weights("ipndm", rho, nodes)):
            np.testing.assert_allclose(a, b, rtol=1e-12)


@pytest.mark.parametrize("name", TABLEAUS)
def test_tableaus_are_consistent(name):
    tableau = TABLEAUS[name]
    assert sum(tableau.b) == pytest.approx(1)
    for c, row in zip(tableau.c, tableau.a):
        assert sum(row) == pytest.approx(c)
    c, b = np.array(tableau.c), np.array(tableau.b)
    if tableau.order >= 2:
        assert b @ c == pytest.approx(1 / 2)
    if tableau.order >= 3:
        a = np.zeros((tableau.stages, tableau.stages))
        for s, row in enumerate(tableau.a):
            a[s, :len(row)] = row
        assert b @ c ** 2 == pytest.approx(1 / 3)
        assert b @ a @ c == pytest.approx(1 / 6)


def degrees_of(sigmas, parameterisation="ve", **options):
    """Each step's degree in a plan: the number of slopes its update reads, less one."""
    plan = get_plan(sigmas, Config(**options), parameterisation, cache=CoefficientCache())
    return [len(step.update.weights) - 1 for step in plan.steps]


def test_the_step_into_zero_is_a_final_degree_step_or_ddim_from_high_noise():
    sigmas = np.append(np.geomspace(14.6, 0.03, 20), 0.0)
    assert degrees_of(sigmas, variant="logrhoab", degree=3)[-3:] == [3, 3, 1]  # 20 steps: only the last lowered
    assert degrees_of(sigmas, variant="logrhoab", degree=3, final_degree=2)[-1] == 2
    assert degrees_of(sigmas, variant="logrhoab", degree=3, final_degree=0)[-1] == 0
    high = np.append(np.geomspace(14.6, 0.8, 20), 0.0)  # ends from rho 0.8, as linear_quadratic does
    assert degrees_of(high, variant="logrhoab", degree=3)[-1] == 0
    few = np.append(np.geomspace(14.6, 0.03, 8), 0.0)
    assert degrees_of(few, variant="logrhoab", degree=3)[-2:] == [1, 1]  # below 15 steps the one before: 1
    assert degrees_of(few, variant="logrhoab", degree=3, lower_order_final=False)[-2:] == [3, 1]
    flow = np.array([1.0, 0.75, 0.17, 0.0])  # only two finite nodes in rho reach the step into 0
    assert degrees_of(flow, variant="tab", degree=3, final_degree=2, parameterisation="flow")[-1] == 1


def weights_on(rho):
    """``weights_of(degrees, steps)`` for capped_degrees: rhoAB's predictor weights of those steps."""
    return lambda degrees, steps: multistep_weights("rhoab", rho, [ab_nodes(degrees)[i] for i in steps], steps=steps)


@pytest.mark.parametrize("w", [0.5, 1.0, 2.0, 3.0])
def test_variable_step_ab2_amplifies_history_errors_by_one_plus_the_step_ratio(w):
    """Two-node Adams-Bashforth with h_i = w h_(i-1): weights 1 + w/2 and -w/2 (rho as the variable)."""
    rho = np.array([10.0, 9.0, 9.0 - w])
    C = multistep_weights("rhoab", rho, ab_nodes([0, 1]))[1]
    np.testing.assert_allclose(C, [-w * (1 + w / 2), w * w / 2], rtol=1e-14)  # the steps run downwards
    assert amplification(C) == pytest.approx(1 + w, rel=1e-14)
    capped, _ = capped_degrees([0, 1], weights_on(rho), 1.5)
    assert capped[1] == (1 if 1 + w <= 1.5 * AB_AMPLIFICATION[1] else 0)


def test_the_cap_leaves_even_steps_alone_and_lowers_uneven_ones():
    even = np.linspace(10.0, 1.0, 12)
    degrees = warm_degrees(even, 3)
    np.testing.assert_array_equal(capped_degrees(degrees, weights_on(even), 1.0)[0], degrees)  # even at exactly 1
    uneven = np.array([10.0, 9.5, 9.0, 8.5, 8.0, 2.0])  # a last step 12 times the one before
    degrees = warm_degrees(uneven, 2)
    capped, _ = capped_degrees(degrees, weights_on(uneven), 1.5)
    assert list(capped[:-1]) == list(degrees[:-1]) and capped[-1] == 0
