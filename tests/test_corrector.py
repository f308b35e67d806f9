"""The corrector's safeguards and its hand-over to the step into sigma = 0, each against what it is for."""

import numpy as np
import pytest

from benchmarks import schedules
from benchmarks.problems import GaussianMixture
from deis import CoefficientCache, Config, VPLinearTime, get_plan
from deis import plan as plan_module
from test_sampling import noise

UNIT_GAUSSIAN = GaussianMixture(means=(0.0,), stds=(1.0,))
CORRECTED = dict(variant="tab", degree=1, integrand="data", corrector=True, final_degree=1, time_map=VPLinearTime())


def angles(sigmas):
    return np.arctan(sigmas[:-1]) - np.arctan(sigmas[1:])


def plan(sigmas, parameterisation="ve", **options):
    return get_plan(sigmas, Config(**{**CORRECTED, **options}), parameterisation, cache=CoefficientCache())


@pytest.mark.parametrize("limit", [0.2, 0.3])
def test_a_step_wider_than_max_step_angle_is_ddim_and_uncorrected(limit):
    """max_step_angle: a step (before the step into 0) that spans more than the limit in arctan(rho) is taken at
    degree 0 (one weight in its update) and not corrected (the next step carries no correction); every other step
    is the plan without the limit."""
    sigmas = schedules.sd15_karras(10)
    wide = angles(sigmas)[:-1] > limit
    assert 0 < wide.sum() < len(wide)  # the check has both kinds of step to look at
    plain, limited = plan(sigmas), plan(sigmas, max_step_angle=limit)
    for i, is_wide in enumerate(wide):
        if is_wide:
            assert len(limited.steps[i].update.weights) == 1 and limited.steps[i + 1].correction is None
        elif not wide[i - 1] or i == 0:
            assert limited.steps[i].update == plain.steps[i].update
        assert plain.steps[i + 1].correction is not None or i == 0
    assert limited.steps[-1] == plain.steps[-1] or not wide[-1]


def test_corrector_max_angle_leaves_the_predictor_alone():
    sigmas = schedules.sd15_karras(10)
    wide = angles(sigmas)[:-1] > 0.25
    assert 0 < wide.sum() < len(wide)
    plain, limited = plan(sigmas), plan(sigmas, corrector_max_angle=0.25)
    for i, is_wide in enumerate(wide):
        assert limited.steps[i].update == plain.steps[i].update
        assert (limited.steps[i + 1].correction is None) == bool(is_wide)


@pytest.mark.parametrize("option", ["max_step_angle", "corrector_max_angle"])
@pytest.mark.parametrize("value", [0.0, -0.1, 1.6, "wide", float("nan")])
def test_an_angle_outside_zero_to_a_right_angle_is_refused(option, value):
    with pytest.raises(ValueError, match=option):
        plan(schedules.sd15_karras(6), **{option: value})


def test_for_unit_variance_data_the_exact_flow_scales_a_change_of_x_by_cos_phi():
    """What the step into 0 carries the last correction by: the exact ODE solution (the reference integrator) of
    unit-variance data moves by cos(phi) = 1 / sqrt(1 + sigma^2) when x at sigma moves."""
    for sigma in (0.3, 3.0):
        x = noise(64).numpy() * sigma
        delta = 1e-3 * noise(64, seed=1).numpy()
        moved = UNIT_GAUSSIAN.reference(x + delta, sigma, 0.0) - UNIT_GAUSSIAN.reference(x, sigma, 0.0)
        np.testing.assert_allclose(moved, delta / np.sqrt(1 + sigma ** 2), rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("form, sigmas", [("ve", schedules.sd15_karras(10)), ("flow", schedules.flow_shift(10)),
                                          ("ve", np.array([80.0, 30.0, 12.0, 6.0, 3.0, 0.0]))])
def test_the_step_into_zero_carries_the_last_correction_scaled_by_cos_phi(form, sigmas):
    """The last correction, applied at the step into 0, is cos(phi) of the one the other steps would apply (mutated
    below: carried in full). A last step from sigma = 3, as ComfyUI's linear_quadratic ends, carries a third of it."""
    options = dict(CORRECTED, parameterisation=form, time_map=None)
    scaled = plan(sigmas, **options).steps[-1].correction
    original = plan_module.carried_into_zero
    plan_module.carried_into_zero = lambda correction, alpha, sigma: correction
    try:
        in_full = plan(sigmas, **options).steps[-1].correction
    finally:
        plan_module.carried_into_zero = original
    alpha = 1.0 - sigmas[-2] if form == "flow" else 1.0
    cos_phi = alpha / np.hypot(alpha, sigmas[-2])
    assert in_full and cos_phi < 1
    np.testing.assert_allclose(scaled, cos_phi * np.asarray(in_full), rtol=1e-14)
