"""DEIS samplers with k-diffusion's signature ``(model, x, sigmas, extra_args, callback, disable, **options)``.

``model(x, sigma * s_in, **extra_args)`` is a denoiser returning ``D(x, sigma)``, as in
k-diffusion and inside ComfyUI's sampler loop.
"""

from collections import deque
from functools import partial

import torch
from tqdm.auto import trange

from .options import RECOMMENDED_STOCHASTIC
from .plan import distinct_sigmas, get_plan


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


def slope(x, denoised, coefficients):
    """``a x - b D``: eps_hat = (x - alpha D) / sigma or v_hat at one point, with ``(a, b)`` from the plan."""
    return torch.mul(x, coefficients[0]).sub_(denoised, alpha=coefficients[1])


def advance(x, denoised, update, slopes):
    """``x_scale * x + d_scale * D + sum_j weights[j] * slopes[j]``: one step of the plan (deis.plan)."""
    out = torch.mul(x, update.x_scale)
    if update.d_scale:
        out.add_(denoised, alpha=update.d_scale)
    for weight, h in zip(update.weights, slopes):
        out.add_(h, alpha=weight)
    return out


@torch.no_grad()
def sample_deis(model, x, sigmas, extra_args=None, callback=None, disable=None, variant=None, degree=None,
                integrand=None, time_map=None, corrector=None, final_degree=None, lower_order_final=None,
                max_amplification=None, eta=None, tableau=None, parameterisation="ve", s_noise=1.0,
                noise_sampler=None, cache=None, model_time_map=None, corrector_max_amplification=None,
                corrector_max_step=None, corrector_max_angle=None, max_step_angle=None):
    """DEIS, the Diffusion Exponential Integrator Sampler (Zhang & Chen, ICLR 2023).

    Integrates ``d xh / d rho = eps_hat`` exactly in its linear part, with ``rho = sigma / alpha``.
    With ``eta > 0`` it samples the reverse SDE instead, adding fresh noise each step with
    exactly the variance that keeps ``x = alpha x0 + sigma eps`` (docs/stochastic.md).

    With no ``variant`` it runs the recommended configuration for the form (``deis.RECOMMENDED``).
    The paper's own best is ``variant="tab", degree=3`` (tAB3).

    Options:
        variant: ``"tab"`` (tAB: polynomial in the model's time; the paper's best), ``"rhoab"``
            (polynomial in rho; k-diffusion's LMS in the VE form), ``"logrhoab"`` (polynomial in
            log rho), ``"ipndm"`` (fixed Adams-Bashforth weights) or ``"rhork"`` (Runge-Kutta in rho).
            Default: the recommended one.
        degree: polynomial degree r of the multistep variants, 0 to 3 (tAB3 is r = 3; r = 0 is DDIM).
            Default: the recommended one without ``variant``, else 3.
        integrand: what the polynomial interpolates: ``"eps"`` (the paper's: ``eps_hat`` in rho),
            ``"v"`` (``v_hat = cos(phi) eps_hat - sin(phi) D`` in ``phi = arctan(rho)``: the linear part
            of the ODE taken from a unit-variance Gaussian) or ``"data"`` (``D`` in ``u = 1 / rho``,
            DPM-Solver++'s form). Default: the recommended one without ``variant``, else "eps".
        corrector: after each model call, take the step that led there again with the slope there as one
            more node (an Adams-Moulton correction, UniPC's UniC), one degree higher, at no extra model
            call. Default: the recommended one without ``variant``, else False; with no ``variant`` and
            ``corrector=True``, the recommended corrected configuration (``deis.RECOMMENDED_CORRECTED``).
        max_step_angle: a step (before the step into sigma = 0) that spans more than this angle of
            ``phi = arctan(sigma / alpha)`` (radians; pure noise to data is pi / 2) is taken at degree 0 and not
            corrected. Default: no limit (the recommended corrected configuration sets one).
        corrector_max_angle, corrector_max_step, corrector_max_amplification: no correction of a step wider than
            that angle, or longer than that in log rho; a correction's degree lowered until its weights amplify
            an error at most that many times as much as the even-step Adams-Moulton formula's. Only with the
            corrector. Default: none.
        final_degree: the degree of the step into sigma = 0, a polynomial in rho on ``eps_hat`` from the
            corrected state (the last correction scaled by ``cos(phi)``, as the exact flow carries a change of x
            for unit-variance data), 0 (DDIM) to 2 and at most ``degree``; DDIM where that step starts above
            rho = 0.5. Default 1 (0 at degree 0).
        lower_order_final: with fewer than 15 steps, the step before the step into sigma = 0 is at most
            degree 1. Default True.
        max_amplification: lower each step's degree until the absolute sum of its weights is at most this
            many times that of the even-step Adams-Bashforth formula of its degree (uneven steps make the
            weights, and what they do to an error, grow). Default: no cap.
        time_map: a ``deis.timemaps.TimeMap``: tAB's time. Default: the recommended configuration's
            without ``variant``, else ``model_time_map``.
        model_time_map: the model's own time, where the caller knows the model (``deis.timemaps.model_time_map``
            makes it from a sigma table); tAB uses it where ``time_map`` is not given. Default: flow time for
            the flow form, the paper's VP-linear time (beta 0.1 to 20) otherwise.
        tableau: rhoRK's tableau: ``"midpoint"``, ``"heun2"``, ``"ralston2"``, ``"kutta3"`` (default),
            ``"ralston3"`` or ``"rk4"``.
        parameterisation: ``"ve"`` (alpha = 1) or ``"flow"`` (alpha = 1 - sigma, sigma <= 1).
        eta: noise from 0 (the probability-flow ODE, default) to 1 (the reverse SDE), integrated exactly in
            its linear part with the data integrand (eta as in DPM-Solver++(2M) SDE).
        s_noise: scale of the added noise (1 is exact). Used only with eta > 0.
        noise_sampler: ``noise_sampler(sigma, sigma_next)`` returning standard normal noise like x;
            default: seeded from ``extra_args["seed"]`` when there is one.
        cache: a ``deis.cache.CoefficientCache``; default ``deis.cache.default_cache``.
    """
    keep = distinct_sigmas(sigmas)
    if keep is not None:
        sigmas = sigmas[torch.from_numpy(keep)] if torch.is_tensor(sigmas) else [s for s, k in zip(sigmas, keep) if k]
    plan = get_plan(sigmas, cache=cache, variant=variant, degree=degree, integrand=integrand, time_map=time_map,
                    corrector=corrector, final_degree=final_degree, lower_order_final=lower_order_final,
                    max_amplification=max_amplification, eta=eta, tableau=tableau, parameterisation=parameterisation,
                    model_time_map=model_time_map, corrector_max_amplification=corrector_max_amplification,
                    corrector_max_step=corrector_max_step, corrector_max_angle=corrector_max_angle,
                    max_step_angle=max_step_angle, s_noise=s_noise)
    if not torch.is_floating_point(x):
        raise ValueError(f"x must be a floating-point tensor; got {x.dtype}")
    extra_args = {} if extra_args is None else extra_args
    sigmas = sigmas.to(x.device) if torch.is_tensor(sigmas) else torch.as_tensor(sigmas, device=x.device)
    s_in = sigmas.new_ones([x.shape[0]])
    # Half-precision latents: the model sees them as they are, the sampler's state and history are kept in
    # float32, so rounding does not build up over the steps.
    latent_dtype = x.dtype
    x = x.to(torch.promote_types(latent_dtype, torch.float32))
    if plan.family == "runge_kutta":
        return runge_kutta(model, x, sigmas, plan, extra_args, callback, disable, s_in, latent_dtype)
    if noise_sampler is None and plan.options.eta:
        noise_sampler = default_noise_sampler(x, extra_args.get("seed"))

    slopes = deque(maxlen=plan.history)  # newest first
    eps_hats = deque(maxlen=plan.history)  # the points the step into sigma = 0 reads
    for i in trange(len(sigmas) - 1, disable=disable):
        step = plan.steps[i]
        x_in = x.to(latent_dtype)
        denoised = model(x_in, sigmas[i] * s_in, **extra_args)
        if callback is not None:
            callback({"x": x_in, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        denoised = denoised.to(x.dtype)
        # The slope the polynomial follows, at the point the model saw: eps_hat, v_hat, or D itself.
        slopes.appendleft(denoised if step.slope is None else slope(x, denoised, step.slope))
        if step.keep_eps_hat:
            eps_hats.appendleft(slope(x, denoised, step.keep_eps_hat))
        if step.correction:  # UniC: the step that led here, again with the slope here as one more node
            x = x + step.correction[0] * slopes[0]
            for weight, h in zip(step.correction[1:], list(slopes)[1:]):
                x.add_(h, alpha=weight)
        x = advance(x, denoised, step.update, eps_hats if step.on_eps_hat else slopes)
        if step.noise:
            x.add_(noise_sampler(sigmas[i], sigmas[i + 1]).to(x.dtype), alpha=step.noise * s_noise)
    return x.to(latent_dtype)


def runge_kutta(model, x, sigmas, plan, extra_args, callback, disable, s_in, latent_dtype):
    """rhoRK: each stage's update in the data form ``alpha' D + sum_k w_k eps_hat_k`` (deis.plan)."""
    stage_sigmas = torch.tensor(plan.stage_sigmas, dtype=sigmas.dtype, device=x.device)
    for i in trange(len(sigmas) - 1, disable=disable):
        step = plan.steps[i]
        x_in = x.to(latent_dtype)
        denoised = model(x_in, sigmas[i] * s_in, **extra_args)
        if callback is not None:
            callback({"x": x_in, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        denoised = denoised.to(x.dtype)
        stages = [slope(x, denoised, step.slope)]
        for stage in step.stages:
            x_stage = advance(x, denoised, stage.update, stages)
            denoised_stage = model(x_stage.to(latent_dtype), stage_sigmas[stage.sigma_index] * s_in,
                                   **extra_args).to(x.dtype)
            stages.append(slope(x_stage, denoised_stage, stage.slope))
        x = advance(x, denoised, step.update, stages)
    return x.to(latent_dtype)


#: The configurations the UIs list, by the names they show: the recommended configuration for the model's
#: form (deis.RECOMMENDED), the one with the corrector (deis.RECOMMENDED_CORRECTED), and the recommended
#: stochastic one at eta = 1 (deis.RECOMMENDED_STOCHASTIC; with a lower eta the same method). README,
#: "Evidence", says how they were chosen.
CONFIGURATIONS = {
    "deis_auto": dict(),
    "deis_corrected": dict(corrector=True),
    "deis_sde": dict(RECOMMENDED_STOCHASTIC, eta=1.0),
}

sample_deis_auto = partial(sample_deis, **CONFIGURATIONS["deis_auto"])
sample_deis_corrected = partial(sample_deis, **CONFIGURATIONS["deis_corrected"])
sample_deis_sde = partial(sample_deis, **CONFIGURATIONS["deis_sde"])
