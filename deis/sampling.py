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


def slope(x, denoised, step):
    """``slope_x * x - slope_d * D``: ``eps_hat = (x - alpha D) / sigma`` or ``v_hat`` (see deis.plan)."""
    return torch.mul(x, step.slope_x).sub_(denoised, alpha=step.slope_d)


def apply_update(x, denoised, update, slopes):
    """``x_scale * x + d_scale * D + sum_k weights[k] * slopes[k]`` (see deis.plan)."""
    if update.x_scale == 0.0:
        base = denoised if update.d_scale == 1.0 else denoised * update.d_scale
    else:
        base = x * update.x_scale
        if update.d_scale != 0.0:
            base.add_(denoised, alpha=update.d_scale)
    out = torch.add(base, slopes[0], alpha=update.weights[0])
    for weight, h in zip(update.weights[1:], islice(slopes, 1, None)):
        out.add_(h, alpha=weight)
    return out


@torch.no_grad()
def sample_deis(model, x, sigmas, extra_args=None, callback=None, disable=None, variant="tab", degree=None,
                tableau=None, parameterisation="ve", time_map=None, lower_order_final=None, stable=None,
                integrand=None, corrector=None, cache=None):
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
        lower_order_final: the step into sigma = 0 is at most degree 1; with fewer than 15
            steps it is degree 0 and the one before it at most degree 1. Default True.
        stable: lower the degree of steps where the stiffest mode (a direction in which the
            data has no spread, ``eps_hat = (xh - D) / rho``) would grow by more than 4x over
            the run. Guards degree-3 steps on Karras-type schedules at 8 to 20 steps, where a
            learned model can otherwise diverge. Eps integrand without corrector only. Default False.
        integrand: ``"eps"`` (the paper's: ``eps_hat`` in rho) or ``"v"`` (``v_hat = cos(phi)
            eps_hat - sin(phi) D`` in ``phi = arctan(rho)``: the linear part of the ODE taken from
            a unit-variance Gaussian, which latent models are scaled to). Default "eps".
        corrector: after each model call, redo the step that led there with the new value as
            one more interpolation node (Adams-Moulton, no extra model call). Raises the order
            by one on smooth problems, but it can diverge on a learned model (a direction where
            the data has no spread is stiff for it). Default False.
        cache: a ``deis.cache.CoefficientCache``; default ``deis.cache.default_cache``.
    """
    plan = get_plan(sigmas, cache=cache, variant=variant, degree=degree, tableau=tableau,
                    parameterisation=parameterisation, time_map=time_map, lower_order_final=lower_order_final,
                    stable=stable, integrand=integrand, corrector=corrector)
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

    awaiting = None  # (correction, x, denoised) of the last step, until the model has run at its end

    for i in trange(len(sigmas) - 1, disable=disable):
        step = plan.steps[i]
        x_in = x.to(latent_dtype)
        denoised = model(x_in, sigmas[i] * s_in, **extra_args)
        if callback is not None:
            callback({"x": x_in, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        if plan.family == "multistep":
            history.appendleft(slope(x, denoised, step))
            if awaiting is not None:
                correction, x_start, denoised_start = awaiting
                x = apply_update(x_start, denoised_start, correction, history)
                if step.update.d_scale != 0.0:
                    # The history keeps the slope at the predicted point (as UniPC does); the
                    # data form needs the denoised value that this slope and the corrected x imply.
                    denoised = torch.mul(x, step.slope_x).sub_(history[0]).div_(step.slope_d)
            awaiting = None if step.correction is None else (step.correction, x, denoised)
            x = apply_update(x, denoised, step.update, history)
        else:
            stages = [slope(x, denoised, step)]
            for stage in step.stages:
                x_stage = apply_update(x, denoised, stage.update, stages)
                denoised_stage = model(x_stage.to(latent_dtype), stage_sigmas[stage.sigma_index] * s_in, **extra_args)
                stages.append(slope(x_stage, denoised_stage, stage))
            x = apply_update(x, denoised, step.update, stages)
    return x.to(latent_dtype)


#: The common configurations, by the names the UIs show (the paper's naming: tAB3 is degree 3).
#: "_v": the v integrand. deis_tab2_v is the recommended default: degree 3 derails on a learned model
#: on wide Karras schedules (README, benchmarks/results/quality.md).
CONFIGURATIONS = {
    "deis_tab2_v": dict(variant="tab", degree=2, integrand="v"),
    "deis_tab3_v": dict(variant="tab", degree=3, integrand="v"),
    "deis_tab1": dict(variant="tab", degree=1),
    "deis_tab2": dict(variant="tab", degree=2),
    "deis_tab3": dict(variant="tab", degree=3),
    "deis_rhoab3": dict(variant="rhoab", degree=3),
    "deis_logrhoab3": dict(variant="logrhoab", degree=3),
    "deis_ipndm": dict(variant="ipndm", degree=3),
    "deis_ipndm_v": dict(variant="ipndm_v", degree=3),
    "deis_rhork3": dict(variant="rhork", tableau="kutta3"),
}

sample_deis_tab2_v = partial(sample_deis, **CONFIGURATIONS["deis_tab2_v"])
sample_deis_tab3_v = partial(sample_deis, **CONFIGURATIONS["deis_tab3_v"])
sample_deis_tab1 = partial(sample_deis, **CONFIGURATIONS["deis_tab1"])
sample_deis_tab2 = partial(sample_deis, **CONFIGURATIONS["deis_tab2"])
sample_deis_tab3 = partial(sample_deis, **CONFIGURATIONS["deis_tab3"])
sample_deis_rhoab3 = partial(sample_deis, **CONFIGURATIONS["deis_rhoab3"])
sample_deis_logrhoab3 = partial(sample_deis, **CONFIGURATIONS["deis_logrhoab3"])
sample_deis_ipndm = partial(sample_deis, **CONFIGURATIONS["deis_ipndm"])
sample_deis_ipndm_v = partial(sample_deis, **CONFIGURATIONS["deis_ipndm_v"])
sample_deis_rhork3 = partial(sample_deis, **CONFIGURATIONS["deis_rhork3"])
