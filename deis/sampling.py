"""DEIS samplers with k-diffusion's signature ``(model, x, sigmas, extra_args, callback, disable, **options)``.

``model(x, sigma * s_in, **extra_args)`` is a denoiser returning ``D(x, sigma)``, as in
k-diffusion and inside ComfyUI's sampler loop.
"""

from collections import deque

import torch
from tqdm.auto import trange

from .config import ConfigError, configure
from .parameterisation import get_parameterisation
from .plan import distinct_sigmas, get_plan, get_runge_kutta_plan


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


def prepare(sigmas, x):
    """The schedule without exact repeats, and the latent checked."""
    keep = distinct_sigmas(sigmas)
    if keep is not None:
        sigmas = sigmas[torch.from_numpy(keep)] if torch.is_tensor(sigmas) else [s for s, k in zip(sigmas, keep) if k]
    if not torch.is_tensor(x) or not torch.is_floating_point(x):
        raise ValueError(f"x must be a floating-point tensor; got {getattr(x, 'dtype', type(x).__name__)}")
    return sigmas


class Loop:
    """What a sampler's step loop shares: the schedule as a tensor beside ``x``, and the model call. Half-precision
    latents are shown to the model as they are, while the sampler's state and history are kept in float32, so
    rounding does not build up."""

    def __init__(self, model, x, sigmas, extra_args, callback):
        self.model, self.callback = model, callback
        self.extra_args = {} if extra_args is None else extra_args
        self.sigmas = sigmas.to(x.device) if torch.is_tensor(sigmas) else torch.as_tensor(sigmas, device=x.device)
        self.s_in = self.sigmas.new_ones([x.shape[0]])
        self.latent_dtype = x.dtype
        self.state_dtype = torch.promote_types(x.dtype, torch.float32)

    def denoise(self, x, sigma):
        """The model's denoised value at ``x`` (in the state's dtype) and ``sigma``, in the state's dtype."""
        return self.model(x.to(self.latent_dtype), sigma * self.s_in, **self.extra_args).to(self.state_dtype)

    def step_denoise(self, x, i):
        """The model at step ``i``'s sigma, with the progress callback."""
        x_in = x.to(self.latent_dtype)
        sigma = self.sigmas[i]
        denoised = self.model(x_in, sigma * self.s_in, **self.extra_args)
        if self.callback is not None:
            self.callback({"x": x_in, "i": i, "sigma": sigma, "sigma_hat": sigma, "denoised": denoised})
        return denoised.to(self.state_dtype)


@torch.no_grad()
def sample_deis(model, x, sigmas, extra_args=None, callback=None, disable=None, config=None,
                parameterisation="ve", model_time_map=None, noise_sampler=None, cache=None, cfg=None, **options):
    """DEIS, the Diffusion Exponential Integrator Sampler (Zhang & Chen, ICLR 2023), multistep.

    Integrates ``d xh / d rho = eps_hat`` exactly in its linear part, with ``rho = sigma / alpha`` (docs/math.md).
    With ``eta > 0`` it samples the reverse SDE instead, adding fresh noise each step with exactly the variance
    that keeps ``x = alpha x0 + sigma eps`` (docs/stochastic.md).

    config: a ``deis.Config``, or the name of an entry (``"deis_auto"``, ``"deis_corrected"``, ``"deis_sde"``),
        whose configuration for ``parameterisation`` is taken. Default: ``"deis_auto"``.
    **options: options of ``deis.Config`` that replace the configuration's, each meaning what the declaration
        (``deis.OPTIONS``) says: ``corrector=True`` adds the corrector to it, ``degree=1`` lowers its degree.
        (``variant`` needs a ``config``: 0.1.0 read ``variant`` alone as the paper's defaults, and refuses it.)
    parameterisation: ``"ve"`` (alpha = 1) or ``"flow"`` (alpha = 1 - sigma, sigma <= 1).
    model_time_map: the model's own time, where the caller knows the model (``deis.model_time_map`` makes it from a
        sigma table); tAB uses it where the configuration has no ``time_map``. Default: flow time for the flow
        form, the paper's VP-linear time (beta 0.1 to 20) otherwise.
    noise_sampler: ``noise_sampler(sigma, sigma_next)`` returning standard normal noise like x, with eta above 0;
        default: seeded from ``extra_args["seed"]`` when there is one.
    cache: a ``deis.CoefficientCache``; default ``deis.default_cache``.
    cfg: the classifier-free guidance scale the model runs at, where the caller knows it (``corrector_max_cfg``
        reads it); None: not known.
    """
    if config is None and "variant" in options:
        raise ConfigError(["variant without config: 0.1.0 took it as the paper's configuration with that variable; "
                           "pass config=deis.Config(variant=...) for that, or config=\"deis_auto\" to change "
                           "deis_auto's variable"])
    config = configure("deis_auto" if config is None else config, get_parameterisation(parameterisation).name,
                       **options).for_guidance(cfg)
    sigmas = prepare(sigmas, x)
    plan = get_plan(sigmas, config, parameterisation, model_time_map, cache)
    loop = Loop(model, x, sigmas, extra_args, callback)
    sigmas, x = loop.sigmas, x.to(loop.state_dtype)
    if noise_sampler is None and config.eta:
        noise_sampler = default_noise_sampler(x, loop.extra_args.get("seed"))

    slopes = deque(maxlen=plan.history)  # newest first
    eps_hats = deque(maxlen=plan.history)  # the points the step into sigma = 0 reads
    for i in trange(len(sigmas) - 1, disable=disable):
        step = plan.steps[i]
        denoised = loop.step_denoise(x, i)
        # The slope the polynomial follows, at the point the model saw: eps_hat, v_hat, or D itself.
        slopes.appendleft(denoised if step.slope is None else slope(x, denoised, step.slope))
        if step.keep_eps_hat:
            eps_hats.appendleft(slope(x, denoised, step.keep_eps_hat))
        if step.corrected_update:
            # UniC's correction (the step that led here, taken again with the slope here as one more node) and
            # this step, folded into one update.
            x = advance(x, denoised, step.corrected_update, slopes)
        else:
            if step.correction:  # the step into 0 on the kept eps_hat: the correction first
                x = x + step.correction[0] * slopes[0]
                for weight, h in zip(step.correction[1:], list(slopes)[1:]):
                    x.add_(h, alpha=weight)
            x = advance(x, denoised, step.update, eps_hats if step.on_eps_hat else slopes)
        if step.noise:
            x.add_(noise_sampler(sigmas[i], sigmas[i + 1]).to(x.dtype), alpha=step.noise * config.s_noise)
    return x.to(loop.latent_dtype)


def sample_deis_auto(model, x, sigmas, extra_args=None, callback=None, disable=None, **options):
    """The ``deis_auto`` entry: DEIS without the corrector (``deis.CONFIGURATIONS["deis_auto"]``)."""
    return sample_deis(model, x, sigmas, extra_args, callback, disable, config="deis_auto", **options)


def sample_deis_corrected(model, x, sigmas, extra_args=None, callback=None, disable=None, **options):
    """The ``deis_corrected`` entry: DEIS with UniPC's corrector (``deis.CONFIGURATIONS["deis_corrected"]``)."""
    return sample_deis(model, x, sigmas, extra_args, callback, disable, config="deis_corrected", **options)


def sample_deis_sde(model, x, sigmas, extra_args=None, callback=None, disable=None, **options):
    """The ``deis_sde`` entry: stochastic DEIS at eta 1 (``deis.CONFIGURATIONS["deis_sde"]``); ``eta`` and
    ``s_noise`` may be given."""
    return sample_deis(model, x, sigmas, extra_args, callback, disable, config="deis_sde", **options)


#: The entries' samplers, by the names the UIs show.
SAMPLERS = {"deis_auto": sample_deis_auto, "deis_corrected": sample_deis_corrected, "deis_sde": sample_deis_sde}


@torch.no_grad()
def sample_deis_rk(model, x, sigmas, extra_args=None, callback=None, disable=None, tableau="kutta3",
                   parameterisation="ve", cache=None):
    """rhoRK: classical Runge-Kutta in rho on ``d xh / d rho = eps_hat`` (the DEIS paper's rhoRK), several model
    calls a step. Each stage's update is in the data form ``alpha' D + sum_k w_k eps_hat_k`` (deis.plan).

    tableau: ``"midpoint"``, ``"heun2"``, ``"ralston2"``, ``"kutta3"`` (default), ``"ralston3"`` or ``"rk4"``.
    """
    sigmas = prepare(sigmas, x)
    plan = get_runge_kutta_plan(sigmas, tableau, parameterisation, cache)
    loop = Loop(model, x, sigmas, extra_args, callback)
    sigmas, x = loop.sigmas, x.to(loop.state_dtype)
    stage_sigmas = torch.tensor(plan.stage_sigmas, dtype=sigmas.dtype, device=x.device)
    for i in trange(len(sigmas) - 1, disable=disable):
        step = plan.steps[i]
        denoised = loop.step_denoise(x, i)
        stages = [slope(x, denoised, step.slope)]
        for stage in step.stages:
            x_stage = advance(x, denoised, stage.update, stages)
            stages.append(slope(x_stage, loop.denoise(x_stage, stage_sigmas[stage.sigma_index]), stage.slope))
        x = advance(x, denoised, step.update, stages)
    return x.to(loop.latent_dtype)
