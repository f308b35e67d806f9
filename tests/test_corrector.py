"""The corrector's safeguards and its hand-over to the step into sigma = 0, each against what it is for."""

import numpy as np
import pytest

from benchmarks import schedules
from benchmarks.problems import GaussianMixture
from deis import CoefficientCache, Config, VPLinearTime, get_plan, sample_deis
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


# --------------------------------------------------------------------------- the linearly implicit correction

def oracle_implicit(model, x, sigmas, config, parameterisation):
    """The sampler's loop on ``config``'s plain plan, with each correction's newest slope taken at the corrected point
    itself (the implicit step, solved by fixed-point iteration: more model calls, no linearisation), the history
    keeping the slope at the predicted point as the sampler does."""
    import torch
    from collections import deque

    from deis.sampling import advance, slope

    steps = get_plan(sigmas, config, parameterisation, cache=CoefficientCache()).steps
    slopes = deque(maxlen=8)
    for i, step in enumerate(steps):
        sigma = torch.full((x.shape[0],), float(sigmas[i]), dtype=x.dtype)
        denoised = model(x, sigma)
        slopes.appendleft(denoised if step.slope is None else slope(x, denoised, step.slope))
        if step.correction:
            rest = sum(weight * h for weight, h in zip(step.correction[1:], list(slopes)[1:]))
            corrected = x
            for _ in range(200):
                at_corrected = model(corrected, sigma)
                h = at_corrected if step.slope is None else slope(corrected, at_corrected, step.slope)
                corrected = x + step.correction[0] * h + rest
            x = corrected
        x = advance(x, denoised, step.update, slopes)
    return x


@pytest.mark.parametrize("form, sigmas, options", [
    ("ve", schedules.normal(schedules.DiscreteVPTime.from_betas(1e-4, 0.02), 10)[:-1], {}),
    ("ve", schedules.karras(12, 0.01, 14.6)[:-1], dict(degree=2)),
    ("flow", schedules.flow_shift(12)[1:-1], dict(integrand="v", degree=2, time_map=None)),
])
def test_the_implicit_correction_is_the_implicit_step_on_data_of_its_scale(form, sigmas, options):
    """On Gaussian data of standard deviation ``corrector_data_scale`` the denoiser is linear, so the linearly implicit
    correction is the implicit (Adams-Moulton) step itself: equal to an oracle that solves each corrected point by
    fixed-point iteration. The plain correction is not (the mutation the check must see). Schedules end above 0
    (down to sigma 0.01, where the implicit step matters most)."""
    import torch

    scale = 0.05
    data = GaussianMixture(means=(0.0,), stds=(scale,))
    model = data.denoiser("flow" if form == "flow" else "ve")
    config = Config(**{**CORRECTED, **options})
    x = noise(4, 16) * float(sigmas[0]) if form == "ve" else noise(4, 16)
    implicit = sample_deis(model, x, sigmas, disable=True, parameterisation=form,
                           config=config.replace(corrector_data_scale=scale), cache=CoefficientCache())
    expected = oracle_implicit(model, x, sigmas, config, form)
    plain = sample_deis(model, x, sigmas, disable=True, parameterisation=form, config=config,
                        cache=CoefficientCache())
    torch.testing.assert_close(implicit, expected, rtol=1e-9, atol=1e-12)
    assert float((plain - expected).abs().max()) > 1e-5 * float(expected.abs().max())


def x4_normal(steps):
    """ComfyUI's normal scheduler on the x4 upscaler's table (linear betas 1e-4 to 0.02: sigma 0.01 to 37), then 0."""
    return schedules.normal(schedules.DiscreteVPTime.from_betas(1e-4, 0.02), steps)


def test_the_implicit_correction_holds_normal_on_sigma_min_0_01_to_the_uncorrected_error():
    """normal on a model whose sigma_min is 0.01 ends with long steps at low noise, where the plain correction
    removes only part of the predictor's error: deis_corrected's error there was 2 to 2.5 times that of tAB2 on the
    predicted noise (the uncorrected deis_auto, as ComfyUI's deis) at 20 and 30 steps. With the implicit correction
    it stays within 1.6 times, and below the plain correction at every step count."""
    from benchmarks.problems import MIXTURE

    model = MIXTURE.denoiser("ve")
    for steps in (10, 20, 30):
        sigmas = x4_normal(steps)
        x = noise(1, 4000) * float(sigmas[0])
        exact = torch_tensor(MIXTURE.reference(x.numpy(), sigmas[0], 0.0))
        errors = {}
        for name, config in (("plain", Config(**CORRECTED, max_step_angle=0.4)),
                             ("implicit", Config(**CORRECTED, max_step_angle=0.4, corrector_data_scale=0.05)),
                             ("uncorrected", Config(degree=2, time_map=VPLinearTime()))):
            out = sample_deis(model, x, sigmas, disable=True, config=config, cache=CoefficientCache())
            errors[name] = float((out - exact).norm() / exact.norm())
        assert errors["implicit"] < 1.6 * errors["uncorrected"], (steps, errors)
        assert errors["implicit"] < 0.75 * errors["plain"], (steps, errors)
        if steps >= 20:
            assert errors["plain"] > 1.8 * errors["uncorrected"], (steps, errors)  # what the implicit step mends


def torch_tensor(array):
    import torch

    return torch.from_numpy(np.asarray(array))


# --------------------------------------------------------------------------- the guidance gate

def test_above_corrector_max_cfg_the_sampler_is_the_uncorrected_one():
    """corrector_max_cfg: a model guided above it is sampled without the corrector, at it or below (or at an
    unknown scale) with it; the gate changes no plan."""
    import torch

    model = GaussianMixture(means=(-1.0, 1.0), stds=(0.1, 0.2)).denoiser("ve")
    sigmas = schedules.sd15_karras(10)
    x = noise(2, 8) * float(sigmas[0])
    gated = Config(**CORRECTED, corrector_max_cfg=4.0)

    def run(config, cfg=None):
        return sample_deis(model, x, sigmas, disable=True, config=config, cfg=cfg, cache=CoefficientCache())

    corrected, uncorrected = run(Config(**CORRECTED)), run(Config(**{**CORRECTED, "corrector": False}))
    assert not torch.equal(corrected, uncorrected)
    assert torch.equal(run(gated, cfg=6.0), uncorrected)
    assert torch.equal(run(gated, cfg=4.0), corrected)
    assert torch.equal(run(gated), corrected)
    assert gated.plan_key(None) == Config(**CORRECTED).plan_key(None)


@pytest.mark.parametrize("cfg", ["6", float("nan"), float("inf"), True, -1.0])
def test_a_guidance_scale_that_is_not_a_finite_number_is_refused(cfg):
    with pytest.raises(ValueError, match="cfg must be the guidance scale"):
        Config(**CORRECTED, corrector_max_cfg=4.0).for_guidance(cfg)


def test_the_implicit_factor_is_capped():
    """1 / (1 - b J) grows without bound as b J nears 1 and is negative beyond: it is held at MAX_IMPLICIT_FACTOR
    there, and below the cap it is the formula."""
    cap = plan_module.MAX_IMPLICIT_FACTOR
    # The data integrand at sigma far below the data scale: J = dD/dx is near 1 / alpha = 1.
    assert plan_module.implicit_factor("data", 1.0, 1e-4, 0.5, 1.0) == pytest.approx(2.0, rel=1e-6)
    for weight in (0.8, 1.0, 2.0):
        assert plan_module.implicit_factor("data", 1.0, 1e-4, weight, 1.0) == cap
    assert plan_module.implicit_factor("data", 1.0, 1e-4, -1.0, 1.0) == pytest.approx(0.5, rel=1e-6)
