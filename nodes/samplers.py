"""DEIS inside ComfyUI: model-aware sampler functions, the SamplerDEIS node and the DEIS scheduler."""

import torch

from ..deis import CONFIGURATIONS, TABLEAUS, VARIANTS, FlowTime, VPLinearTime, sample_deis
from ..deis.schedules import SCHEDULES, log_rho_uniform, rho_polynomial, time_uniform
from .model_info import discrete_time_map_of, model_sampling_of, parameterisation_of, time_map_of

#: The KSampler dropdown entries, in order. The first is the recommended default.
KSAMPLER_CONFIGURATIONS = {name: CONFIGURATIONS[name] for name in (
    "deis_tab2_v", "deis_tab3_v", "deis_tab3", "deis_tab2", "deis_tab1", "deis_logrhoab3", "deis_rhoab3",
    "deis_ipndm", "deis_ipndm_v", "deis_rhork3")}
RECOMMENDED = "deis_tab2_v"

#: The scheduler entry in KSampler's dropdown: the paper's quadratic-in-time schedule.
SCHEDULER_NAME = "deis_time_quadratic"


def model_aware_options(model, options):
    """Fill in ``parameterisation`` ("auto" or absent) and tAB's ``time_map`` ("auto" or absent) from the model."""
    options = dict(options)
    model_sampling = model_sampling_of(model)
    parameterisation = options.get("parameterisation", "auto")
    if parameterisation == "auto":
        parameterisation = "ve" if model_sampling is None else parameterisation_of(model_sampling)
    options["parameterisation"] = parameterisation
    time = options.pop("time", "auto")
    if options.get("variant", "tab") == "tab" and options.get("time_map") is None:
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
    DESCRIPTION = "DEIS (Zhang & Chen, ICLR 2023): exponential-integrator sampler with exact coefficients."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "variant": (list(VARIANTS), {"default": "tab", "tooltip":
                "tab: polynomial in the model's own time (the paper's tAB, its best). rhoab: polynomial in rho "
                "(k-diffusion's LMS). logrhoab: polynomial in log rho. ipndm: fixed Adams-Bashforth weights. "
                "ipndm_v: variable-step AB (same method as rhoab). rhork: Runge-Kutta in rho (several model "
                "calls per step)."}),
            "degree": ("INT", {"default": 2, "min": 0, "max": 3, "tooltip":
                "Polynomial degree r of the multistep variants: tAB3 is r = 3, r = 0 is DDIM. Default 2 "
                "(with integrand v: the recommended deis_tab2_v); 3 can be more accurate, but it can diverge "
                "on Karras-type schedules over a wide sigma range. Ignored by rhork."}),
            "tableau": (list(TABLEAUS), {"default": "kutta3", "tooltip":
                "Runge-Kutta tableau for rhork (order: midpoint/heun2/ralston2 2, kutta3/ralston3 3, rk4 4). "
                "Ignored by the multistep variants."}),
            "parameterisation": (["auto", "ve", "flow"], {"default": "auto", "tooltip":
                "auto reads the model: flow (alpha = 1 - sigma) for flow models such as SD3, Flux and Wan, "
                "ve (alpha = 1) for SD1.x, SD2.x, SDXL and the other eps/v/x0 models."}),
            "time": (["auto", "discrete_table", "vp_linear", "flow"], {"default": "auto", "tooltip":
                "tAB's time variable. auto: the model's own (its 1000-sigma table for SD-style models, "
                "t = sigma for flow models). vp_linear: the paper's continuous VP (beta 0.1 to 20). "
                "Ignored by the other variants."}),
            "lower_order_final": ("BOOLEAN", {"default": True, "tooltip":
                "The step into sigma = 0 is at most degree 1; with fewer than 15 steps it is degree 0, after "
                "a degree-1 step. Steadier at very low step counts. Multistep variants only."}),
            "stable": ("BOOLEAN", {"default": False, "tooltip":
                "Lower the degree of steps where errors would compound (Karras-type schedules at 8 to 20 "
                "steps, which shrink sigma 2-3x a step). Guards degree-3 variants from diverging on some "
                "models. Multistep variants with integrand eps and no corrector only."}),
            "integrand": (["eps", "v"], {"default": "v", "tooltip":
                "What the polynomial interpolates. eps: the paper's, eps_hat integrated in rho. v: the "
                "v-prediction integrated in the angle arctan(rho), which takes the ODE's linear part from a "
                "unit-variance Gaussian (what latents are scaled to); more accurate at few steps. "
                "Multistep variants only."}),
            "corrector": ("BOOLEAN", {"default": False, "tooltip":
                "After each model call, redo the step that led there with the new value as one more "
                "interpolation node (Adams-Moulton). No extra model calls; one order more on smooth "
                "problems, but it can diverge on real models. Multistep variants only."}),
        }}

    def get_sampler(self, variant, degree, tableau, parameterisation, time, lower_order_final, stable=False,
                    integrand="eps", corrector=False):
        import comfy.samplers

        if variant == "rhork":
            options = dict(variant=variant, tableau=tableau, parameterisation=parameterisation)
        else:
            options = dict(variant=variant, degree=degree, parameterisation=parameterisation,
                           lower_order_final=lower_order_final, stable=stable, integrand=integrand,
                           corrector=corrector)
            if variant == "tab":
                options["time"] = time
        return (comfy.samplers.KSAMPLER(comfy_sampler({}), extra_options=options),)


def model_schedule(model_sampling, steps, schedule="time_uniform", kappa=2.0, power=7.0):
    """DEIS sigmas for a ComfyUI model_sampling: its own sigma range, its parameterisation and time."""
    parameterisation = parameterisation_of(model_sampling)
    sigma_min, sigma_max = float(model_sampling.sigma_min), float(model_sampling.sigma_max)
    if schedule == "time_uniform":
        time_map = time_map_of(model_sampling, parameterisation)
        sigmas = time_uniform(steps, sigma_min, sigma_max, time_map, parameterisation, kappa=kappa)
    elif schedule == "log_rho_uniform":
        sigma_max = _below_pure_noise(model_sampling, parameterisation, sigma_max)
        sigmas = log_rho_uniform(steps, sigma_min, sigma_max, parameterisation)
    elif schedule == "rho_polynomial":
        sigma_max = _below_pure_noise(model_sampling, parameterisation, sigma_max)
        sigmas = rho_polynomial(steps, sigma_min, sigma_max, parameterisation, power=power)
    else:
        raise ValueError(f"unknown DEIS schedule {schedule!r}; expected one of {', '.join(SCHEDULES)}")
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
            "model": ("MODEL",),
            "steps": ("INT", {"default": 10, "min": 1, "max": 10000}),
            "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}),
            "schedule": (list(SCHEDULES), {"default": "time_uniform", "tooltip":
                "time_uniform: uniform in t^(1/kappa) of the model's own time (the paper's choice). "
                "log_rho_uniform: uniform in log rho. rho_polynomial: uniform in rho^(1/power) (Karras)."}),
            "kappa": ("FLOAT", {"default": 2.0, "min": 0.5, "max": 8.0, "step": 0.1, "tooltip":
                "time_uniform only: 2 is quadratic in t (the paper's recommendation), 1 is uniform in t."}),
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
