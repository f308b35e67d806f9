"""A schedule with a sigma nearly repeated: a step whose length is a tiny fraction of its neighbours'.

The rule (deis.coefficients.step_nodes): a node closer than 10 % of a step's length (in the polynomial's variable:
the interpolation variable, or rho for the step into sigma = 0) to a newer node of the same polynomial is left
out of that polynomial, which reaches one node further back instead. The near-repeated sigma is still sampled
(one model call more), so the result stays within a small factor of the schedule without it. Without the rule
the weights grow like the inverse of the gap: deis_corrected's error on SD1.5's karras at 20 steps was 5 times
larger at a gap of 1e-2 and 40,000 times at 1e-6.
"""

import numpy as np
import pytest
import torch

from benchmarks import near_repeats, schedules
from benchmarks.near_repeats import base_schedule, with_near_repeat
from deis import CONFIGURATIONS, CoefficientCache, Config, get_plan, model_time_map, named_config

GAPS = (1e-2, 1e-4, 1e-6, 1e-9)
#: The bound: at most this many times the error without the near-repeat, plus this much.
FACTOR, SLACK = 1.5, 1e-3
#: Every variant, integrand, the corrector and the caps, beside the entries.
CONFIGS = {
    **{f"{entry}": entry for entry in ("deis_auto", "deis_corrected")},
    "tab3-eps": Config(), "tab2-v-corrected": Config(degree=2, integrand="v", corrector=True),
    "tab2-data-corrected": Config(degree=2, integrand="data", corrector=True),
    "logrhoab3": Config(variant="logrhoab"), "rhoab2-corrected": Config(variant="rhoab", degree=2, corrector=True),
    "ipndm3": Config(variant="ipndm"), "tab2-capped": Config(degree=2, max_amplification=1.5),
}


def error(config, form, sigmas, dtype):
    """The relative error at sigma = 0 on a three-component mixture (benchmarks/near_repeats.py)."""
    import deis

    return near_repeats.error(deis, config, form, sigmas, dtype, model_time_map(form, schedules.SD15.sigmas))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("form", ["ve", "flow"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_a_near_repeat_costs_at_most_a_bounded_factor(name, form, dtype):
    base = base_schedule(form)
    plain = error(CONFIGS[name], form, base, dtype)
    for gap in GAPS:
        for position in (2, 8, 14, 19):  # high noise, the middle, where the data resolves, sigma_min
            sigmas = with_near_repeat(base, position, gap)
            if np.float32(sigmas[position + 1]) == np.float32(sigmas[position]) and dtype == torch.float32:
                continue  # an exact repeat in float32: dropped (test_robustness)
            assert error(CONFIGS[name], form, sigmas, dtype) <= FACTOR * plain + SLACK, (gap, position)


def amplification_of(plan):
    """The largest ratio of the absolute sum of a step's weights (its predictor's, or its correction's) to their
    total, the step's length in its measure: what the step does to an error in its history."""
    ratios = []
    for step, following in zip(plan.steps, plan.steps[1:] + (None,)):
        weights = np.asarray(step.update.weights)
        if weights.size == 0 or not np.all(np.isfinite(weights)):
            continue
        total = abs(weights.sum())
        ratios.append(np.abs(weights).sum() / total)
        if following is not None and following.correction:
            ratios.append(np.abs(following.correction).sum() / total)
    return max(ratios)


@pytest.mark.parametrize("form", ["ve", "flow"])
@pytest.mark.parametrize("entry", list(CONFIGURATIONS))
def test_no_weight_grows_like_the_inverse_of_the_gap(entry, form):
    """Every entry, the stochastic one too: at a gap of 1e-3 and below the weights amplify an error at most 3 times as
    much as those of the schedule without the near-repeat, whatever the gap. (At 1e-2 a sigma may be 5 % of a step
    away in log rho or more, an uneven schedule rather than a near-repeat; the error test above covers it.)"""
    config, base = named_config(entry, form), base_schedule(form)
    plain = amplification_of(get_plan(base, config, form, cache=CoefficientCache()))
    for gap in (1e-3, 1e-4, 1e-6, 1e-9):
        for position in range(1, len(base) - 2):
            plan = get_plan(with_near_repeat(base, position, gap), config, form, cache=CoefficientCache())
            assert amplification_of(plan) <= 3 * plain, (gap, position)


def test_the_check_catches_a_near_repeat_without_the_rule(monkeypatch):
    """With the rule off, the weights grow like the inverse of the gap, and both tests above fail."""
    import deis.coefficients

    monkeypatch.setattr(deis.coefficients, "MIN_NODE_SPACING", 0.0)
    config = named_config("deis_corrected", "ve")
    base = base_schedule("ve")
    plan = get_plan(with_near_repeat(base, 8, 1e-6), config, cache=CoefficientCache())
    plain = get_plan(base, config, cache=CoefficientCache())
    assert not left_out(plan) and amplification_of(plan) > 1e3 * amplification_of(plain)
    assert error(config, "ve", with_near_repeat(base, 8, 1e-6), torch.float64) > 10 * error(
        config, "ve", base, torch.float64)


def left_out(plan):
    """Whether any polynomial of the plan leaves a node out (a weight of exactly 0 before its oldest node)."""
    return any(0.0 in tuple(step.update.weights)[:-1] + tuple(step.correction or ())[:-1] for step in plan.steps)


@pytest.mark.parametrize("n", [5, 8, 10, 15, 20, 30, 50, 100, 200])
def test_no_node_is_left_out_on_ordinary_schedules(n):
    """The schedules users run have no near-repeat: every polynomial takes its consecutive nodes, so the plans are
    those of the plain rule (and of earlier releases). tests/test_comfy_inprocess.py checks ComfyUI's schedulers."""
    exponential = np.append(np.geomspace(14.6, 0.0292, n), 0.0)
    cases = [("ve", schedules.sd15_karras(n)), ("ve", schedules.sd15_normal(n)), ("ve", schedules.edm(n)),
             ("ve", exponential), ("flow", schedules.flow_shift(n)), ("flow", schedules.flow_shift(n, shift=1.0))]
    configs = [c for entry in CONFIGURATIONS.values() for c in entry.values()] + [
        c for c in CONFIGS.values() if isinstance(c, Config)]
    for form, sigmas in cases:
        for config in configs:
            plan = get_plan(sigmas, config, form, model_time_map(form, schedules.SD15.sigmas), CoefficientCache())
            assert not left_out(plan), (form, n, config)


@pytest.mark.parametrize("config", [named_config("deis_auto", "ve"), Config(variant="rhoab", final_degree=2),
                                    named_config("deis_corrected", "ve")], ids=["deis_auto", "rhoab", "deis_corrected"])
def test_a_cluster_of_near_repeats_before_the_step_into_zero(config):
    """Three sigmas within 2e-6 of each other before the step into 0: the step into 0 leaves the cluster's extra
    nodes out too (inside a cluster, the step just before a gap is tiny as well)."""
    cluster = np.array([2.0, 1.0, 0.5, 0.3, 0.1 * (1 + 2e-6), 0.1 * (1 + 1e-6), 0.1, 0.0])
    plain = np.array([2.0, 1.0, 0.5, 0.3, 0.1, 0.0])
    weights = get_plan(cluster, config, cache=CoefficientCache()).steps[-1].update.weights
    assert max(map(abs, weights)) <= 3 * max(map(abs, get_plan(plain, config, cache=CoefficientCache()).steps[-1]
                                                .update.weights))


@pytest.mark.parametrize("variant", ["tab", "rhoab", "logrhoab"])
def test_two_sigmas_with_one_value_of_the_variable_are_one_node(variant):
    """80 and the next float below it are distinct sigmas with one log: no polynomial takes both, and the plan is
    finite (the release before made NaN corrections there)."""
    sigmas = np.append([80.0, np.nextafter(80.0, 0.0)], np.geomspace(40.0, 0.03, 10))
    sigmas = np.append(sigmas, 0.0)
    plan = get_plan(sigmas, Config(variant=variant, degree=2, corrector=True), cache=CoefficientCache())
    numbers = [w for step in plan.steps for w in tuple(step.update.weights) + tuple(step.correction or ())]
    assert np.all(np.isfinite(numbers))
