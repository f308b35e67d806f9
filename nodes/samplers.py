"""DEIS inside ComfyUI: model-aware sampler functions, the SamplerDEIS node and the DEIS scheduler."""

import torch

from ..deis import (CONFIGURATIONS, INTEGRANDS, TABLEAUS, VARIANTS, FlowTime, VPLinearTime, recommended_options,
                    sample_deis)
from ..deis.schedules import SCHEDULES, log_rho_uniform, rho_polynomial, time_uniform
from .model_info import discrete_time_map_of, model_sampling_of, parameterisation_of, time_map_of

#: The KSampler dropdown entries, in order. The first is the recommended default.
KSAMPLER_CONFIGURATIONS = {name: CONFIGURATIONS[name] for name in ("deis_auto", "deis_sde")}
RECOMMENDED = "deis_auto"
#: What each entry is, in the words every page uses (tests/test_one_story.py holds them to it).
ENTRY_DESCRIPTIONS = {
    "deis_auto": "the recommended sampler: tAB2 on the predicted noise in the paper's VP time on SD-style models, "
                 "tAB2 on the v-prediction in flow time on flow models",
    "deis_sde": "stochastic (eta 1): tAB1 on the denoised image in the model's own time, with the reverse SDE's "
                "own kernel",
}

#: The paper's schedule, uniform in sqrt(t) of the model's time: KSampler's scheduler entry and
#: DEIS Scheduler's default schedule, under one name.
SCHEDULER_NAME = "deis_time_quadratic"
NODE_SCHEDULES = (SCHEDULER_NAME,) + tuple(name for name in SCHEDULES if name != "time_uniform")


def model_aware_options(model, options):
    """Fill in ``parameterisation`` ("auto" or absent), the recommended configuration (variant absent
    or "auto") and tAB's ``time_map`` ("auto" or absent) from the model."""
    options = dict(options)
    model_sampling = model_sampling_of(model)
    parameterisation = options.get("parameterisation", "auto")
    known = None if model_sampling is None else parameterisation_of(model_sampling, strict=True)
    if parameterisation == "auto":
        parameterisation = known or "ve"
    elif known is not None and parameterisation != known:
        kind = type(model_sampling).__name__
        raise ValueError(f"Sampler DEIS: parameterisation '{parameterisation}' does not match this model "
                         f"(ComfyUI's {kind}, a {'flow' if known == 'flow' else 'VE-form'} model); set "
                         f"parameterisation to auto (or '{known}')")
    options["parameterisation"] = parameterisation
    if options.get("variant", "auto") == "auto":  # the recommended configuration for the form
        options.pop("variant", None)
        options = {**recommended_options(parameterisation, stochastic=bool(options.get("eta"))), **options}
    time = options.pop("time", "auto")
    if options["variant"] == "tab" and options.get("time_map") is None:
        if time == "auto" and model_sampling is not None:
            options["time_map"] = time_map_of(model_sampling, parameterisation)
        elif time == "discrete_table":
            if model_sampling is None or parameterisation == "flow":
                raise ValueError("Sampler DEIS: time = 'discrete_table' needs an SD-style model's table of sigmas "
                                 "(a flow model's own time is sigma); set time to 'auto'")
            options["time_map"] = discrete_time_map_of(model_sampling)
        elif time == "vp_linear":
            options["time_map"] = VPLinearTime()
        elif time == "flow":
            options["time_map"] = FlowTime()
    return options


def comfy_sampler(configuration):
    """A k-diffusion-signature sampler for ComfyUI that reads the model before calling ``sample_deis``."""

    def sampler(model, x, sigmas, extra_args=None, callback=None, disable=None, **options):
        options = model_aware_options(model, {**configuration, **options})
        return sample_deis(model, x, sigmas, extra_args=extra_args, callback=callback, disable=disable, **options)

    sampler.deis_pack = True  # marks functions this pack may replace on a re-import
    return sampler


SAMPLER_FUNCTIONS = {name: comfy_sampler(options) for name, options in KSAMPLER_CONFIGURATIONS.items()}


#: Sampler DEIS's widgets, in the order saved workflows store them, with their defaults. With variant
#: "auto" every widget that picks the method must keep its default: auto picks it.
WIDGET_DEFAULTS = dict(variant="auto", degree=2, tableau="kutta3", parameterisation="auto", time="auto",
                       lower_order_final=True, integrand="eps", eta=0.0, s_noise=1.0)
METHOD_WIDGETS = ("degree", "tableau", "time", "lower_order_final", "integrand")


def sampler_options(variant="auto", degree=2, tableau="kutta3", parameterisation="auto", time="auto",
                    lower_order_final=True, integrand="eps", eta=0.0, s_noise=1.0):
    """Sampler DEIS's widget values as options for ``comfy_sampler``: every accepted value does what its
    tooltip says, and every other is refused with a ValueError that names the widget and a value to use."""
    given = dict(degree=degree, tableau=tableau, time=time, lower_order_final=lower_order_final, integrand=integrand)

    def refuse(widget, why, instead):
        raise ValueError(f"Sampler DEIS: {widget} = {given[widget]!r} {why}; set {widget} to {instead!r}")

    if variant not in ("auto",) + VARIANTS:
        raise ValueError(f"Sampler DEIS: unknown variant {variant!r}; use one of auto, {', '.join(VARIANTS)}")
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"Sampler DEIS: eta = {eta!r} is outside 0 to 1; set eta to 0 (the ODE) or 1 (the SDE)")
    if eta == 0.0 and s_noise != 1.0:
        raise ValueError(f"Sampler DEIS: s_noise = {s_noise!r} scales noise that only eta > 0 adds; set s_noise "
                         f"to 1.0, or eta above 0")
    options = dict(parameterisation=parameterisation)
    if eta:
        options.update(eta=float(eta), s_noise=float(s_noise))
    if variant == "auto":
        for widget in METHOD_WIDGETS:
            if given[widget] != WIDGET_DEFAULTS[widget]:
                refuse(widget, "picks the method, which variant auto picks for the model",
                       WIDGET_DEFAULTS[widget])
        return options  # with eta above 0, model_aware_options picks the recommended stochastic configuration
    if variant == "rhork":
        for widget in ("degree", "time", "lower_order_final", "integrand"):
            if given[widget] != WIDGET_DEFAULTS[widget]:
                refuse(widget, "applies to the multistep variants; rhork's order comes from its tableau",
                       WIDGET_DEFAULTS[widget])
        if eta:
            raise ValueError("Sampler DEIS: eta applies to the multistep variants; rhork solves the ODE only: "
                             "set eta to 0")
        return {**options, "variant": variant, "tableau": tableau}
    if tableau != WIDGET_DEFAULTS["tableau"]:
        refuse("tableau", "applies only to variant rhork", WIDGET_DEFAULTS["tableau"])
    if variant != "tab" and time != "auto":
        refuse("time", "is tAB's time variable and applies only to variant tab", "auto")
    # Measured on the learned digits models (tests/test_comfy_inprocess.py enumerates every accepted
    # combination): with fresh noise in every step the predicted noise and the v-prediction are too rough
    # to extrapolate (Frechet distances 1e3 to 1e14 times deis_sde's), and so is a cubic in the denoised
    # value; a cubic into sigma = 0 diverges on a flow model at 10 steps (80 times deis's).
    if eta and integrand != "data":
        refuse("integrand", "cannot carry noise: with eta above 0 the polynomial follows the denoised image",
               "data")
    if eta and degree == 3:
        refuse("degree", "is unstable with eta above 0", 2)
    if degree == 3 and not lower_order_final:
        refuse("degree", "takes a cubic step into sigma = 0 without lower_order_final, which diverges", 2)
    options.update(variant=variant, degree=int(degree), lower_order_final=bool(lower_order_final),
                   integrand=integrand)
    if variant == "tab":
        options["time"] = time
    return options


class SamplerDEIS:
    """Every option of the DEIS core, as a SAMPLER for SamplerCustom and SamplerCustomAdvanced."""

    CATEGORY = "sampling/custom_sampling/samplers"
    RETURN_TYPES = ("SAMPLER",)
    FUNCTION = "get_sampler"
    DESCRIPTION = ("DEIS (Zhang & Chen, ICLR 2023) with exact coefficients. With its defaults it is KSampler's "
                   "deis_auto, and with eta above 0 deis_sde. Pick a variant to set the method yourself.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "variant": (["auto"] + list(VARIANTS), {"default": "auto", "tooltip":
                "auto: the recommended method for the model, the same as KSampler's deis_auto (deis_sde's with "
                "eta above 0); degree, tableau, time, lower_order_final and integrand then stay at their "
                "defaults. tab: polynomial in the model's own time (the paper's tAB). rhoab: in sigma/alpha "
                "(k-diffusion's LMS). logrhoab: in its log. ipndm: fixed Adams-Bashforth weights. ipndm_v: "
                "variable-step Adams-Bashforth. rhork: Runge-Kutta, several model calls per step."}),
            "degree": ("INT", {"default": 2, "min": 0, "max": 3, "tooltip":
                "Polynomial degree of a multistep variant: 0 is DDIM, 3 the paper's tAB3 (which needs "
                "lower_order_final on and eta 0). Higher is more accurate on smooth problems and less steady "
                "at few steps. Leave it at 2 with auto and rhork."}),
            "tableau": (list(TABLEAUS), {"default": "kutta3", "tooltip":
                "rhork's Runge-Kutta scheme (order: midpoint, heun2, ralston2 2; kutta3, ralston3 3; rk4 4). "
                "Leave it at kutta3 with the other variants."}),
            "parameterisation": (["auto", "ve", "flow"], {"default": "auto", "tooltip":
                "auto reads the model: flow for flow models (SD3, Flux, Wan), ve for SD1.x, SD2.x, SDXL and "
                "other eps/v/x0 models. ve or flow only for a model whose kind ComfyUI does not know; a value "
                "that contradicts the model is refused."}),
            "time": (["auto", "discrete_table", "vp_linear", "flow"], {"default": "auto", "tooltip":
                "tab's time variable: auto is the model's own (its sigma table on SD-style models, sigma on "
                "flow models); discrete_table the sigma table (SD-style models only); vp_linear the paper's "
                "continuous VP time, which ComfyUI's deis uses; flow is sigma. Leave it at auto with the other "
                "variants."}),
            "lower_order_final": ("BOOLEAN", {"default": True, "tooltip":
                "On: the step into sigma = 0 is a degree-1 step in sigma/alpha, or DDIM where it starts above "
                "sigma/alpha = 0.5; below 15 steps the step before it is at most degree 1. Off: every step at "
                "full degree. Multistep variants; leave it on with auto and rhork."}),
            "integrand": (list(INTEGRANDS), {"default": "eps", "tooltip":
                "What the polynomial follows: eps, the predicted noise (the paper's); v, the v-prediction; "
                "data, the denoised image (DPM-Solver++'s form). Multistep variants; leave it at eps with auto "
                "and rhork."}),
            "eta": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.05, "tooltip":
                "Noise added back each step: 0 samples the ODE, 1 the full reverse SDE (like dpmpp_2m_sde). "
                "With auto, above 0 it is deis_sde at this eta; with a multistep variant it needs integrand "
                "data and degree 2 or less. Not with rhork."}),
            "s_noise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 2.0, "step": 0.01, "tooltip":
                "Scale of the noise added when eta is above 0: 1 is exact, a little above 1 adds grain. "
                "Leave it at 1 with eta 0."}),
        }}

    def get_sampler(self, variant, degree, tableau, parameterisation, time, lower_order_final, integrand="eps",
                    eta=0.0, s_noise=1.0):
        import comfy.samplers

        options = sampler_options(variant, degree, tableau, parameterisation, time, lower_order_final, integrand,
                                  eta, s_noise)
        return (comfy.samplers.KSAMPLER(comfy_sampler({}), extra_options=options),)


def model_schedule(model_sampling, steps, schedule=SCHEDULER_NAME, kappa=2.0, power=7.0):
    """DEIS sigmas for a ComfyUI model_sampling: its own sigma range, its parameterisation and time."""
    parameterisation = parameterisation_of(model_sampling)
    sigma_min, sigma_max = float(model_sampling.sigma_min), float(model_sampling.sigma_max)
    if schedule == SCHEDULER_NAME:
        time_map = time_map_of(model_sampling, parameterisation)
        sigmas = time_uniform(steps, sigma_min, sigma_max, time_map, parameterisation, kappa=kappa)
    elif schedule == "log_rho_uniform":
        sigma_max = _below_pure_noise(model_sampling, parameterisation, sigma_max)
        sigmas = log_rho_uniform(steps, sigma_min, sigma_max, parameterisation)
    elif schedule == "rho_polynomial":
        sigma_max = _below_pure_noise(model_sampling, parameterisation, sigma_max)
        sigmas = rho_polynomial(steps, sigma_min, sigma_max, parameterisation, power=power)
    else:
        raise ValueError(f"unknown DEIS schedule {schedule!r}; expected one of {', '.join(NODE_SCHEDULES)}")
    return torch.from_numpy(sigmas).float()


def _below_pure_noise(model_sampling, parameterisation, sigma_max):
    """A flow model's sigma_max is 1 (rho = inf); rho-spaced schedules start at its next table sigma."""
    if parameterisation == "flow" and sigma_max >= 1.0:
        return float(model_sampling.sigmas[-2])
    return sigma_max


def deis_scheduler_handler(model_sampling, steps):
    """SCHEDULER_HANDLERS entry: the paper's schedule, quadratic in the model's time."""
    return model_schedule(model_sampling, steps)


class DEISScheduler:
    CATEGORY = "sampling/custom_sampling/schedulers"
    RETURN_TYPES = ("SIGMAS",)
    FUNCTION = "get_sigmas"
    DESCRIPTION = ("DEIS time schedules: uniform in t^(1/kappa) of the model's own time, in log rho, "
                   "or in rho^(1/power).")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip":
                "The model to schedule for: its sigma range, whether it is a flow model, and its own time."}),
            "steps": ("INT", {"default": 10, "min": 1, "max": 10000, "tooltip":
                "Number of sampling steps (one model call each with the multistep samplers)."}),
            "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01, "tooltip":
                "Fraction of the schedule to run, as in BasicScheduler: below 1 for img2img, keeping the "
                "low-noise end of a longer schedule."}),
            "schedule": (list(NODE_SCHEDULES), {"default": SCHEDULER_NAME, "tooltip":
                "deis_time_quadratic: the paper's schedule, uniform in t^(1/kappa) of the model's own time "
                "(the same as KSampler's deis_time_quadratic at kappa 2). log_rho_uniform: uniform in log "
                "sigma/alpha. rho_polynomial: uniform in rho^(1/power) (Karras)."}),
            "kappa": ("FLOAT", {"default": 2.0, "min": 0.5, "max": 8.0, "step": 0.1, "tooltip":
                "deis_time_quadratic only: 2 is quadratic in t (the paper's), 1 is uniform in t."}),
            "power": ("FLOAT", {"default": 7.0, "min": 1.0, "max": 20.0, "step": 0.5, "tooltip":
                "rho_polynomial only: 7 is Karras et al."}),
        }}

    def get_sigmas(self, model, steps, denoise, schedule, kappa, power):
        total = steps
        if denoise < 1.0:
            if denoise <= 0.0:
                return (torch.FloatTensor([]),)
            total = int(steps / denoise)
        sigmas = model_schedule(model.get_model_object("model_sampling"), total, schedule, kappa, power)
        return (sigmas[-(steps + 1):],)
