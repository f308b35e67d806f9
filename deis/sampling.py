"""DEIS samplers with k-diffusion's signature ``(model, x, sigmas, extra_args, callback, disable, **options)``.

``model(x, sigma * s_in, **extra_args)`` is a denoiser returning ``D(x, sigma)``, as in
k-diffusion and inside ComfyUI's sampler loop.
"""

from collections import deque
from functools import partial
from itertools import islice

import torch
from tqdm.auto import trange

from .plan import get_plan


def eps_hat(x, denoised, alpha, inv_sigma):
    """``(x - alpha * D) / sigma``: the derivative of ``xh = x / alpha`` in ``rho = sigma / alpha``."""
    return torch.sub(x, denoised, alpha=alpha).mul_(inv_sigma)


def data_form_update(denoised, update, eps):
    """``alpha_next * D + sum_k weights[k] * eps[k]`` (see deis.plan)."""
    weights = update.weights
    base = denoised if update.alpha_next == 1.0 else denoised * update.alpha_next
    x = torch.add(base, eps[0], alpha=weights[0])
    for weight, e in zip(weights[1:], islice(eps, 1, None)):
        x.add_(e, alpha=weight)
    return x


@torch.no_grad()
def sample_deis(model, x, sigmas, extra_args=None, callback=None, disable=None, variant="tab", degree=None,
                tableau=None, parameterisation="ve", time_map=None, lower_order_final=None, stable=None, cache=None):
    """DEIS, the Diffusion Exponential Integrator Sampler (Zhang & Chen, ICLR 2023).

    Integrates ``d xh / d rho = eps_hat`` exactly in its linear part, with ``rho = sigma / alpha``.

    Options:
        variant: ``"tab"`` (tAB: polynomial in the model's time; the paper's best),
            ``"rhoab"`` (polynomial in rho; k-diffusion's LMS in the VE form),
            ``"logrhoab"`` (polynomial in log rho), ``"ipndm"`` (fixed Adams-Bashforth
            weights), ``"ipndm_v"`` (variable-step Adams-Bashforth in rho, the same method
            as rhoAB) or ``"rhork"`` (Runge-Kutta in rho).
        degree: polynomial degree r of the multistep variants, 0 to 3 (tAB3 is r = 3;
            r = 0 is DDIM). Default 3.
        tableau: rhoRK's tableau: ``"midpoint"``, ``"heun2"``, ``"ralston2"``, ``"kutta3"``
            (default), ``"ralston3"`` or ``"rk4"``.
        parameterisation: ``"ve"`` (alpha = 1) or ``"flow"`` (alpha = 1 - sigma, sigma <= 1).
        time_map: a ``deis.timemaps.TimeMap`` giving tAB the model's time. Default: flow
            time for the flow form, the paper's VP-linear time (beta 0.1 to 20) otherwise.
        lower_order_final: with fewer than 15 steps into sigma = 0, end with a DDIM step
            and a degree-1 step before it. Default True.
        stable: lower the degree of steps where the stiffest mode (a direction in which the
            data has no spread, ``eps_hat = (xh - D) / rho``) would grow by more than 4x over
            the run. Guards degree-3 steps on Karras-type schedules at 8 to 20 steps, where a
            learned model can otherwise diverge. Default False.
        cache: a ``deis.cache.CoefficientCache``; default ``deis.cache.default_cache``.
    """
    plan = get_plan(sigmas, cache=cache, variant=variant, degree=degree, tableau=tableau,
                    parameterisation=parameterisation, time_map=time_map, lower_order_final=lower_order_final,
                    stable=stable)
    if not torch.is_floating_point(x):
        raise ValueError(f"x must be a floating-point tensor; got {x.dtype}")
    extra_args = {} if extra_args is None else extra_args
    sigmas = sigmas.to(x.device) if torch.is_tensor(sigmas) else torch.as_tensor(sigmas, device=x.device)
    s_in = sigmas.new_ones([x.shape[0]])
    stage_sigmas = torch.tensor(plan.stage_sigmas, dtype=sigmas.dtype, device=x.device)
    history = deque(maxlen=plan.history)
    # Half-precision latents: the model sees them as they are, the sampler's state and history
    # are kept in float32, so rounding does not build up over the steps.
    latent_dtype = x.dtype
    x = x.to(torch.promote_types(latent_dtype, torch.float32))

    for i in trange(len(sigmas) - 1, disable=disable):
        step = plan.steps[i]
        x_in = x.to(latent_dtype)
        denoised = model(x_in, sigmas[i] * s_in, **extra_args)
        if callback is not None:
            callback({"x": x_in, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        if plan.family == "multistep":
            history.appendleft(eps_hat(x, denoised, step.alpha, step.inv_sigma))
            x = data_form_update(denoised, step.update, history)
        else:
            stages = [eps_hat(x, denoised, step.alpha, step.inv_sigma)]
            for stage in step.stages:
                x_stage = data_form_update(denoised, stage.update, stages)
                denoised_stage = model(x_stage.to(latent_dtype), stage_sigmas[stage.sigma_index] * s_in, **extra_args)
                stages.append(eps_hat(x_stage, denoised_stage, stage.alpha, stage.inv_sigma))
            x = data_form_update(denoised, step.update, stages)
    return x.to(latent_dtype)


#: The common configurations, by the names the UIs show (the paper's naming: tAB3 is degree 3).
CONFIGURATIONS = {
    "deis_tab1": dict(variant="tab", degree=1),
    "deis_tab2": dict(variant="tab", degree=2),
    "deis_tab3": dict(variant="tab", degree=3),
    "deis_rhoab3": dict(variant="rhoab", degree=3),
    "deis_logrhoab3": dict(variant="logrhoab", degree=3),
    "deis_ipndm": dict(variant="ipndm", degree=3),
    "deis_ipndm_v": dict(variant="ipndm_v", degree=3),
    "deis_rhork3": dict(variant="rhork", tableau="kutta3"),
}

sample_deis_tab1 = partial(sample_deis, **CONFIGURATIONS["deis_tab1"])
sample_deis_tab2 = partial(sample_deis, **CONFIGURATIONS["deis_tab2"])
sample_deis_tab3 = partial(sample_deis, **CONFIGURATIONS["deis_tab3"])
sample_deis_rhoab3 = partial(sample_deis, **CONFIGURATIONS["deis_rhoab3"])
sample_deis_logrhoab3 = partial(sample_deis, **CONFIGURATIONS["deis_logrhoab3"])
sample_deis_ipndm = partial(sample_deis, **CONFIGURATIONS["deis_ipndm"])
sample_deis_ipndm_v = partial(sample_deis, **CONFIGURATIONS["deis_ipndm_v"])
sample_deis_rhork3 = partial(sample_deis, **CONFIGURATIONS["deis_rhork3"])
