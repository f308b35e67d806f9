"""DEIS samplers with k-diffusion's signature ``(model, x, sigmas, extra_args, callback, disable, **options)``.

``model(x, sigma * s_in, **extra_args)`` is a denoiser returning ``D(x, sigma)``, as in
k-diffusion and inside ComfyUI's sampler loop.
"""

import math
from collections import deque
from functools import partial
from itertools import islice

import torch
from tqdm.auto import trange

from .plan import get_plan


def slope(x, denoised, step):
    """``slope_x * x - slope_d * D``: ``eps_hat = (x - alpha D) / sigma``, ``v_hat`` or ``D`` (see deis.plan)."""
    if step.slope_x == 0.0 and step.slope_d == -1.0:  # the data integrand: D itself, in the state's dtype
        return denoised.to(x.dtype)
    return torch.mul(x, step.slope_x).sub_(denoised, alpha=step.slope_d)


def default_noise_sampler(x, seed=None):
    """k-diffusion's ``noise_sampler(sigma, sigma_next)``: standard normal noise shaped like ``x``.

    With a seed (ComfyUI passes the sampler's in ``extra_args["seed"]``) the draws come from
    their own generator, so the same seed gives the same image; without one, from torch's.
    """
    generator = None
    if seed is not None:
        generator = torch.Generator(device=x.device)
        generator.manual_seed(int(seed))

    def sample(sigma, sigma_next):
        return torch.randn(x.size(), dtype=x.dtype, layout=x.layout, device=x.device, generator=generator)

    return sample


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
def sample_deis(model, x, sigmas, extra_args=None, callback=None, disable=None, variant=None, degree=None,
                tableau=None, parameterisation="ve", time_map=None, lower_order_final=None, integrand=None,
                eta=None, s_noise=1.0, noise_sampler=None, cache=None, final_degree=None, max_amplification=None):
    """DEIS, the Diffusion Exponential Integrator Sampler (Zhang & Chen, ICLR 2023).

    Integrates ``d xh / d rho = eps_hat`` exactly in its linear part, with ``rho = sigma / alpha``.
    With ``eta > 0`` it samples the reverse SDE instead, adding fresh noise each step with
    exactly the variance that keeps ``x = alpha x0 + sigma eps`` (docs/stochastic.md).

    With no ``variant`` it runs the recommended configuration for the form (``deis.plan.RECOMMENDED``):
    tAB2 on ``eps_hat`` in the paper's VP time in the VE form, tAB2 on ``v_hat`` in flow time with
    its degree capped on uneven steps in the flow form. The paper's own best is
    ``variant="tab", degree=3`` (tAB3).

    Options:
        variant: ``"tab"`` (tAB: polynomial in the model's time; the paper's best),
            ``"rhoab"`` (polynomial in rho; k-diffusion's LMS in the VE form),
            ``"logrhoab"`` (polynomial in log rho), ``"ipndm"`` (fixed Adams-Bashforth
            weights), ``"ipndm_v"`` (variable-step Adams-Bashforth in rho, the same method
            as rhoAB) or ``"rhork"`` (Runge-Kutta in rho). Default: the recommended one.
        degree: polynomial degree r of the multistep variants, 0 to 3 (tAB3 is r = 3;
            r = 0 is DDIM). Default: the recommended one without ``variant``, else 3.
        tableau: rhoRK's tableau: ``"midpoint"``, ``"heun2"``, ``"ralston2"``, ``"kutta3"``
            (default), ``"ralston3"`` or ``"rk4"``.
        parameterisation: ``"ve"`` (alpha = 1) or ``"flow"`` (alpha = 1 - sigma, sigma <= 1).
        time_map: a ``deis.timemaps.TimeMap`` giving tAB the model's time. Default: flow
            time for the flow form, the paper's VP-linear time (beta 0.1 to 20) otherwise.
        lower_order_final: the step into sigma = 0 is a polynomial step in rho of degree at most
            ``final_degree``, or DDIM where it starts above rho = 0.5; with fewer than 15 steps the
            step before it is at most degree 1. Default True (the flow form's recommended: False).
        final_degree: the degree of that step into sigma = 0 (eps integrand; the v and data
            integrands step into 0 with DDIM). Default 1.
        max_amplification: lower each step's degree until the absolute sum of its weights is at
            most this many times that of the even-step Adams-Bashforth formula of its degree
            (uneven steps make the weights, and what they do to an error, grow). Default: no cap
            (the flow form's recommended: 1.5).
        integrand: what the polynomial interpolates. ``"eps"`` (the paper's: ``eps_hat`` in
            rho), ``"v"`` (``v_hat = cos(phi) eps_hat - sin(phi) D`` in ``phi = arctan(rho)``: the
            linear part of the ODE taken from a unit-variance Gaussian) or ``"data"`` (``D`` in
            ``u = 1 / rho``, DPM-Solver++'s form: steadiest under strong guidance). Default: the
            recommended one without ``variant``, else "eps".
        eta: noise level from 0 (the probability-flow ODE, default) to 1. With the data
            integrand each step integrates the SDE itself exactly in its linear part (eta as in
            DPM-Solver++(2M) SDE). With eps and v it is the ancestral split: the ODE step down to
            ``sigma_down``, then fresh noise up to the next sigma (eta as in DDIM; at degree 0
            k-diffusion's euler_ancestral in the VE form, ComfyUI's euler_ancestral_RF in the flow
            form). At eta = 1 in the VE form the two agree at degree 0.
        s_noise: scale of the added noise (1 is exact). Used only with eta > 0.
        noise_sampler: ``noise_sampler(sigma, sigma_next)`` returning standard normal noise like
            x; default: seeded from ``extra_args["seed"]`` when there is one.
        cache: a ``deis.cache.CoefficientCache``; default ``deis.cache.default_cache``.
    """
    plan = get_plan(sigmas, cache=cache, variant=variant, degree=degree, tableau=tableau,
                    parameterisation=parameterisation, time_map=time_map, lower_order_final=lower_order_final,
                    integrand=integrand, eta=eta, final_degree=final_degree, max_amplification=max_amplification)
    if not torch.is_floating_point(x):
        raise ValueError(f"x must be a floating-point tensor; got {x.dtype}")
    if not isinstance(s_noise, (int, float)) or not math.isfinite(s_noise) or s_noise < 0:
        raise ValueError(f"s_noise must be a finite number >= 0; got {s_noise!r}")
    extra_args = {} if extra_args is None else extra_args
    sigmas = sigmas.to(x.device) if torch.is_tensor(sigmas) else torch.as_tensor(sigmas, device=x.device)
    s_in = sigmas.new_ones([x.shape[0]])
    stage_sigmas = torch.tensor(plan.stage_sigmas, dtype=sigmas.dtype, device=x.device)
    history = deque(maxlen=plan.history)
    # Half-precision latents: the model sees them as they are, the sampler's state and history
    # are kept in float32, so rounding does not build up over the steps.
    latent_dtype = x.dtype
    x = x.to(torch.promote_types(latent_dtype, torch.float32))
    if noise_sampler is None and plan.options.get("eta"):
        noise_sampler = default_noise_sampler(x, extra_args.get("seed"))

    for i in trange(len(sigmas) - 1, disable=disable):
        step = plan.steps[i]
        x_in = x.to(latent_dtype)
        denoised = model(x_in, sigmas[i] * s_in, **extra_args)
        if callback is not None:
            callback({"x": x_in, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        if plan.family == "multistep":
            history.appendleft(slope(x, denoised, step))
            x = apply_update(x, denoised, step.update, history)
            if step.noise:
                x.add_(noise_sampler(sigmas[i], sigmas[i + 1]).to(x.dtype), alpha=step.noise * s_noise)
        else:
            stages = [slope(x, denoised, step)]
            for stage in step.stages:
                x_stage = apply_update(x, denoised, stage.update, stages)
                denoised_stage = model(x_stage.to(latent_dtype), stage_sigmas[stage.sigma_index] * s_in, **extra_args)
                stages.append(slope(x_stage, denoised_stage, stage))
            x = apply_update(x, denoised, step.update, stages)
    return x.to(latent_dtype)


#: The configurations the UIs list, by the names they show: the recommended configuration for the
#: model's form (deis.plan.RECOMMENDED), and with eta = 1 the recommended stochastic one
#: (deis.plan.RECOMMENDED_STOCHASTIC: tAB1 on the denoised value, in the model's own time, integrated
#: against the reverse SDE's own kernel). README, "Evidence", says how they were chosen.
CONFIGURATIONS = {
    "deis_auto": dict(),
    "deis_sde": dict(eta=1.0),
}

sample_deis_auto = partial(sample_deis, **CONFIGURATIONS["deis_auto"])
sample_deis_sde = partial(sample_deis, **CONFIGURATIONS["deis_sde"])
