"""Stochastic DEIS (eta > 0): the right distribution, at the method's weak order, in both forms.

The data are Gaussian, N(0.7, 0.5^2) per coordinate, unlike the prior, and the denoiser is exact,
so every update is affine in the start and in the injected noise. The exact mean and standard
deviation of the sampler's output then follow from one run on a batch: row 0 starts at the mean
with no noise, row 1 at one standard deviation from it, row 2 + k takes a unit draw at step k
(``exact_moments``). That is an independent computation of what the sampler's distribution is,
with no Monte Carlo error; a Monte Carlo run of 20,000 samples checks it.
"""

import math

import numpy as np
import pytest
import torch

from benchmarks import schedules
from benchmarks.problems import GaussianMixture
from deis import CoefficientCache, Config, get_plan, sample_deis, sample_deis_sde

MEAN, STD = 0.7, 0.5
DATA = GaussianMixture(means=(MEAN,), stds=(STD,))
SCHEDULES = {"ve": schedules.sd15_karras, "flow": schedules.flow_shift}


def start_moments(form, sigma0):
    """Mean and std of the exact marginal at sigma0: x = alpha x0 + sigma eps."""
    alpha = 1.0 - sigma0 if form == "flow" else 1.0
    return alpha * MEAN, math.sqrt(alpha ** 2 * STD ** 2 + sigma0 ** 2)


def exact_moments(form, steps, s_noise=1.0, config="deis_sde", **options):
    sigmas = SCHEDULES[form](steps)
    mean, std = start_moments(form, sigmas[0])
    x = torch.full((steps + 2, 1), mean, dtype=torch.float64)
    x[1] += std
    drawn = []

    def unit_draws(sigma, sigma_next):
        z = torch.zeros(steps + 2, 1, dtype=torch.float64)
        z[2 + len(drawn)] = 1.0
        drawn.append(1)
        return z

    out = sample_deis(DATA.denoiser(form), x, torch.from_numpy(sigmas), disable=True, parameterisation=form,
                      s_noise=s_noise, noise_sampler=unit_draws, config=config, **options)
    response = (out[1:] - out[0]).ravel()
    return float(out[0]), float(response.pow(2).sum().sqrt())


def limit_moments(form, steps):
    """Mean and std of the law the samplers converge to: every one of them ends with x = D at the
    schedule's last nonzero sigma, so their limit is the law of the posterior mean there (for the
    SD1.5 schedule, sigma = 0.029: std 0.49915 rather than the data's 0.5)."""
    sigma = SCHEDULES[form](steps)[-2]
    alpha = 1.0 - sigma if form == "flow" else 1.0
    return MEAN, alpha * STD ** 2 / math.sqrt(alpha ** 2 * STD ** 2 + sigma ** 2)


def moment_error(form, steps, **options):
    (mean, std), (mean_limit, std_limit) = exact_moments(form, steps, **options), limit_moments(form, steps)
    return abs(mean - mean_limit) + abs(std - std_limit)


#: The SDE's own kernel on the denoised value: degree 0 (DDIM with eta), deis_sde (no variant with eta > 0), the
#: same in log rho (DPM-Solver++(2M) SDE Heun) and tAB1 with the corrector. Each ends with x = D (plus the last
#: correction) at the last nonzero sigma.
CONFIGS = {"degree-0": Config(degree=0, integrand="data"), "deis_sde": "deis_sde",
           "logrho-sde": Config(variant="logrhoab", degree=1, integrand="data", final_degree=0),
           "corrected-sde": Config(degree=1, integrand="data", corrector=True, final_degree=0)}


@pytest.mark.parametrize("form", ["ve", "flow"])
@pytest.mark.parametrize("eta", [0.5, 1.0])
@pytest.mark.parametrize("config", CONFIGS, ids=list(CONFIGS))
def test_mean_and_std_converge_at_weak_order_one_or_more(form, eta, config):
    """Errors of the final mean and std at 50, 100, 200 steps shrink at least like 1 / steps (weak order one),
    and are below 4 % of the data's std at 200 steps."""
    steps = [50, 100, 200]
    errors = [moment_error(form, n, eta=eta, config=CONFIGS[config]) for n in steps]
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    # From 25 steps on the flow form is still pre-asymptotic (pairwise orders 0.1, 0.6, 0.8 for the
    # recommended configuration at eta = 0.5), so the order is read from the last halving.
    assert math.log2(errors[-2] / errors[-1]) > 0.7, errors
    assert errors[-1] < 0.04 * STD, errors


@pytest.mark.parametrize("form", ["ve", "flow"])
def test_twice_the_noise_variance_fails_the_same_check(form):
    """Negative control: s_noise = sqrt(2) doubles the injected variance; the std then stays far off."""
    for steps in (100, 200):
        _, std = exact_moments(form, steps, eta=1.0, s_noise=math.sqrt(2))
        assert abs(std - STD) > 0.1, std
        assert moment_error(form, steps, eta=1.0, s_noise=math.sqrt(2)) > 5 * moment_error(form, steps, eta=1.0)


@pytest.mark.parametrize("form", ["ve", "flow"])
@pytest.mark.parametrize("eta", [0.5, 1.0])
def test_twenty_thousand_samples_have_the_datas_mean_and_std(form, eta):
    """Monte Carlo at 200 steps, within 4 standard errors of the exact moments plus the bias computed above."""
    n, steps = 20000, 200
    sigmas = SCHEDULES[form](steps)
    mean0, std0 = start_moments(form, sigmas[0])
    generator = torch.Generator().manual_seed(0)
    x = mean0 + std0 * torch.randn(n, 1, dtype=torch.float64, generator=generator)
    out = sample_deis(DATA.denoiser(form), x, torch.from_numpy(sigmas), disable=True, parameterisation=form,
                      eta=eta, noise_sampler=lambda s, t: torch.randn(n, 1, dtype=torch.float64, generator=generator),
                      config="deis_sde")
    bias = moment_error(form, steps, eta=eta, config="deis_sde")
    mean_limit, std_limit = limit_moments(form, steps)
    assert abs(float(out.mean()) - mean_limit) < 4 * STD / math.sqrt(n) + bias
    assert abs(float(out.std()) - std_limit) < 4 * STD / math.sqrt(2 * n) + bias


@pytest.mark.parametrize("variant", ["tab", "logrhoab", "rhoab", "ipndm"])
@pytest.mark.parametrize("corrector", [False, True])
def test_as_eta_goes_to_zero_the_sde_step_becomes_the_ode_step(variant, corrector):
    """The SDE kernel d(rho^-(1 + eta)) and the noise sqrt(1 - (rho' / rho)^(2 eta)) tend to the ODE's as eta -> 0,
    each plan computed on its own (separate caches)."""
    sigmas = schedules.sd15_karras(9)
    config = Config(variant=variant, degree=2, integrand="data", corrector=corrector, final_degree=0)
    ode = get_plan(sigmas, config, cache=CoefficientCache())
    for eta in (1e-3, 1e-6):
        sde = get_plan(sigmas, config.replace(eta=eta), cache=CoefficientCache())
        for a, b in zip(ode.steps, sde.steps):
            np.testing.assert_allclose(b.update.weights, a.update.weights, rtol=20 * eta, atol=20 * eta)
            np.testing.assert_allclose(b.update.x_scale, a.update.x_scale, rtol=20 * eta)
            if a.correction:
                np.testing.assert_allclose(b.correction, a.correction, rtol=20 * eta, atol=20 * eta)
            assert b.noise < 4 * math.sqrt(eta) * sigmas[0]
    assert all(step.noise == 0.0 for step in ode.steps)
    assert any(step.noise > 0 for step in get_plan(sigmas, config.replace(eta=1e-3), cache=CoefficientCache()).steps)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("config", ["deis_sde", "corrected-sde"])
def test_flow_start_and_end_are_finite_in_every_dtype(dtype, config):
    """From sigma = 1 (alpha = 0, rho = inf) to sigma = 0, with the SDE kernel, corrected or not."""
    sigmas = torch.from_numpy(schedules.flow_shift(10)).float()
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(3)).to(dtype)
    out = sample_deis(DATA.denoiser("flow"), x, sigmas, disable=True, parameterisation="flow", eta=1.0,
                      extra_args={"seed": 1}, config=CONFIGS[config])
    assert out.dtype == dtype and torch.isfinite(out).all()
    assert abs(float(out.float().mean()) - MEAN) < 0.2


def test_the_default_noise_follows_the_seed_in_extra_args():
    sigmas = torch.from_numpy(schedules.sd15_karras(8))
    x = torch.randn(1, 4, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(4)) * 14.6
    model = DATA.denoiser("ve")
    seen = []

    def recording(x, sigma, seed=None):
        seen.append(seed)
        return model(x, sigma)

    a, b, c = (sample_deis_sde(recording, x, sigmas, disable=True, extra_args={"seed": s}) for s in (5, 5, 6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert set(seen) == {5, 6}  # extra_args still reach the model


@pytest.mark.parametrize("form", ["ve", "flow"])
def test_each_sde_step_keeps_the_noise_level_of_x(form):
    """For data with no spread, x_i = alpha_i p + sigma_i z: a step scales the noise by x_scale and adds fresh noise,
    and (x_scale sigma_i)^2 + noise^2 = sigma_{i+1}^2, the noise level of x at the next sigma."""
    from deis.parameterisation import get_parameterisation

    param = get_parameterisation(form)
    sigmas = SCHEDULES[form](12)
    for eta in (0.3, 1.0):
        plan = get_plan(sigmas, Config(degree=1, integrand="data", final_degree=0, eta=eta), form)
        for i, step in enumerate(plan.steps[:-1]):
            level = (step.update.x_scale * sigmas[i]) ** 2 + step.noise ** 2
            assert level == pytest.approx(sigmas[i + 1] ** 2, rel=1e-12)
            # ... and the signal: alpha_i p x_scale plus the weights on D (= p) is alpha_{i+1} p
            signal = step.update.x_scale * param.alpha(sigmas[i]) + sum(step.update.weights)
            assert signal == pytest.approx(float(param.alpha(sigmas[i + 1])), rel=1e-12, abs=1e-14)


def test_the_data_form_sde_step_linear_in_log_rho_is_dpm_solver_plus_plus_2m_sde_heun():
    """Independent oracle, written out: DPM-Solver++(2M) SDE with the Heun correction (Lu et al.; ComfyUI's
    dpmpp_2m_sde_heun) integrates the SDE's linear part exactly with D linear in lambda = -log sigma."""
    sigmas = torch.from_numpy(schedules.sd15_karras(10))
    model = GaussianMixture(means=(-1.0, 1.0), stds=(0.3, 0.4)).denoiser("ve")
    x0 = torch.randn(2, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(6)) * sigmas[0]
    draws = [torch.randn(2, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(k)) for k in range(10)]
    for eta in (1.0, 0.5):
        x, old, h_last = x0.clone(), None, None
        for i in range(len(sigmas) - 1):
            denoised = model(x, sigmas[i].expand(2))
            if sigmas[i + 1] == 0:
                x = denoised
            else:
                h = math.log(sigmas[i] / sigmas[i + 1])
                h_eta = h * (1 + eta)
                x = sigmas[i + 1] / sigmas[i] * math.exp(-h * eta) * x - math.expm1(-h_eta) * denoised
                if old is not None:
                    x = x + (-math.expm1(-h_eta) / -h_eta + 1) * (h / h_last) * (denoised - old)
                x = x + draws[i] * sigmas[i + 1] * math.sqrt(-math.expm1(-2 * h * eta))
            old, h_last = denoised, h if sigmas[i + 1] > 0 else h_last
        it = iter(draws)
        ours = sample_deis(model, x0, sigmas, disable=True, noise_sampler=lambda s, t: next(it),
                           config=Config(variant="logrhoab", degree=1, integrand="data", final_degree=0, eta=eta))
        torch.testing.assert_close(ours, x, rtol=1e-12, atol=1e-12)
