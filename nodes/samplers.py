"""DEIS inside ComfyUI: model-aware sampler functions, the SamplerDEIS node and the DEIS scheduler."""

import torch

from ..deis import (CONFIGURATIONS, INTEGRANDS, TABLEAUS, VARIANTS, FlowTime, VPLinearTime, recommended_options,
                    sample_deis)
from ..deis.schedules import SCHEDULES, log_rho_uniform, rho_polynomial, time_uniform
from .model_info import discrete_time_map_of, model_sampling_of, parameterisation_of, time_map_of

#: The KSampler dropdown entries, in order. The first is the recommended default.
KSAMPLER_CONFIGURATIONS = {name: CONFIGURATIONS[name] for name in ("deis_auto", "deis_data", "deis_sde")}
RECOMMENDED = "deis_auto"

#: The paper's schedule, uniform in sqrt(t) of the model's time: KSampler's scheduler entry and
#: DEIS Scheduler's default schedule, under one name.
SCHEDULER_NAME = "deis_time_quadratic"
NODE_SCHEDULES = (SCHEDULER_NAME,) + tuple(name for name in SCHEDULES if name != "time_uniform")


def model_aware_options(model, options):
    """Fill in ``parameterisation`` ("auto" or absent), the recommended variant (absent or "auto")
    and tAB's ``time_map`` ("auto" or absent) from the model."""
    options = dict(options)
    model_sampling = model_sampling_of(model)
    parameterisation = options.get("parameterisation", "auto")
    if parameterisation == "auto":
        parameterisation = "ve" if model_sampling is None else parameterisation_of(model_sampling)
    options["parameterisation"] = parameterisation
    if options.get("variant", "auto") == "auto":  # the recommended variant, with its own degree and integrand
        options.update(recommended_options(parameterisation))
    time = options.pop("time", "auto")
    if options["variant"] == "tab" and options.get("time_map") is None:
        if time == "auto" and model_sampling is not None:
            options["time_map"] = time_map_of(model_sampling, parameterisation)
        elif time == "discrete_table":
            if model_sampling is None:
                raise ValueError("time 'discrete_table' needs a ComfyUI model with a sigma table")
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


class SamplerDEIS:
    """Every option of the DEIS core, as a SAMPLER for SamplerCustom and SamplerCustomAdvanced."""

    CATEGORY = "sampling/custom_sampling/samplers"
    RETURN_TYPES = ("SAMPLER",)
    FUNCTION = "get_sampler"
    DESCRIPTION = ("DEIS (Zhang & Chen, ICLR 2023): exponential-integrator sampler with exact coefficients. "
                   "The defaults are the recommended deis_auto; eta > 0 makes it stochastic.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "variant": (["auto"] + list(VARIANTS), {"default": "auto", "tooltip":
                "auto: the recommended method for the model (the same as KSampler's deis_auto; degree and "
                "integrand are then ignored). tab: polynomial in the model's own time (the paper's tAB). "
                "rhoab: polynomial in rho (k-diffusion's LMS). logrhoab: polynomial in log rho. ipndm: fixed "
                "Adams-Bashforth weights. ipndm_v: variable-step AB (same method as rhoab). rhork: Runge-Kutta "
                "in rho (several model calls per step)."}),
            "degree": ("INT", {"default": 2, "min": 0, "max": 3, "tooltip":
                "Polynomial degree of the multistep variants: 3 is the paper's tAB3, 0 is DDIM. Higher is more "
                "accurate on smooth problems and less steady at few steps. Ignored by auto and rhork."}),
            "tableau": (list(TABLEAUS), {"default": "kutta3", "tooltip":
                "Runge-Kutta tableau for rhork (order: midpoint/heun2/ralston2 2, kutta3/ralston3 3, rk4 4). "
                "Ignored by the other variants."}),
            "parameterisation": (["auto", "ve", "flow"], {"default": "auto", "tooltip":
                "auto reads the model: flow (alpha = 1 - sigma) for flow models such as SD3, Flux and Wan, "
                "ve (alpha = 1) for SD1.x, SD2.x, SDXL and the other eps/v/x0 models. Change it only for a "
                "model ComfyUI misreports."}),
            "time": (["auto", "discrete_table", "vp_linear", "flow"], {"default": "auto", "tooltip":
                "tAB's time variable. auto: the model's own (its 1000-sigma table for SD-style models, "
                "t = sigma for flow models). vp_linear: the paper's continuous VP (beta 0.1 to 20), what "
                "ComfyUI's built-in deis uses. Ignored by the other variants."}),
            "lower_order_final": ("BOOLEAN", {"default": True, "tooltip":
                "The step into sigma = 0 is at most degree 1; with fewer than 15 steps it is degree 0, after "
                "a degree-1 step. Steadier at very low step counts. Multistep variants only."}),
            "integrand": (list(INTEGRANDS), {"default": "eps", "tooltip":
                "What the polynomial interpolates. eps: the predicted noise (the paper's). v: the "
                "v-prediction, in the angle arctan(sigma/alpha); best on flow models. data: the denoised "
                "image (DPM-Solver++'s form); steadiest under strong CFG. Ignored by auto and rhork."}),
            "eta": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.05, "tooltip":
                "Noise added back each step: 0 is the deterministic ODE sampler, 1 the full reverse SDE "
                "(like euler_ancestral and dpmpp_2m_sde, with the DEIS multistep update). Stochastic "
                "sampling corrects earlier errors and adds detail at 15 to 40 steps. Use it with the data "
                "integrand (deis_sde is logrhoab, degree 1, data, eta 1). Multistep variants only."}),
            "s_noise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 2.0, "step": 0.01, "tooltip":
                "Scale of the added noise when eta > 0; 1 is exact, slightly above 1 can add detail."}),
        }}

    def get_sampler(self, variant, degree, tableau, parameterisation, time, lower_order_final, integrand="eps",
                    eta=0.0, s_noise=1.0):
        import comfy.samplers

        if variant == "rhork":
            options = dict(variant=variant, tableau=tableau, parameterisation=parameterisation)
        else:
            options = dict(variant=variant, degree=degree, parameterisation=parameterisation,
                           lower_order_final=lower_order_final, integrand=integrand, eta=eta, s_noise=s_noise)
            if variant == "tab":
                options["time"] = time
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
