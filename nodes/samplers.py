"""DEIS inside ComfyUI: the KSampler entries, the Sampler DEIS nodes and the DEIS scheduler.

One ``deis_auto`` step, from KSampler to the update it applies: KSampler calls ``sample_deis_auto``
(``comfy_sampler`` below), which reads the model's form and time (nodes/model_info.py) and calls
``deis.sample_deis``; that resolves the recommended configuration (deis/options.py) and runs the
loop of deis/sampling.py, whose every number comes from deis/plan.py.
"""

import torch

from ..deis import CONFIGURATIONS, INTEGRANDS, VPLinearTime, resolve, sample_deis
from ..deis.options import MAX_FINAL_DEGREE, MULTISTEP_VARIANTS, check_s_noise
from ..deis.schedules import log_rho_uniform, rho_polynomial, time_uniform
from .model_info import model_options, parameterisation_of, time_map_of

#: The KSampler dropdown entries, in order. The first is the recommended default.
KSAMPLER_CONFIGURATIONS = {name: CONFIGURATIONS[name] for name in ("deis_auto", "deis_corrected", "deis_sde")}
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
NODE_SCHEDULES = (SCHEDULER_NAME, "log_rho_uniform", "rho_polynomial")

#: tAB's time, by the advanced node's ``variant`` entries: the model's own, or the paper's VP-linear time.
TIMES = {"tab": None, "tab_vp": VPLinearTime()}


def comfy_sampler(configuration):
    """A k-diffusion-signature sampler for ComfyUI that reads the model before calling ``sample_deis``."""

    def sampler(model, x, sigmas, extra_args=None, callback=None, disable=None, **options):
        return sample_deis(model, x, sigmas, extra_args=extra_args, callback=callback, disable=disable,
                           **model_options(model), **{**configuration, **options})

    sampler.deis_pack = True  # marks functions this pack may replace on a re-import
    return sampler


SAMPLER_FUNCTIONS = {name: comfy_sampler(options) for name, options in KSAMPLER_CONFIGURATIONS.items()}


def node_options(variant, degree, integrand, corrector, final_degree, lower_order_final, max_amplification, eta,
                 s_noise):
    """Sampler DEIS (advanced)'s widgets as core options, checked by the core's resolver (one message per
    rule, naming the option, which is the widget of the same name). Raises ValueError."""
    if variant not in TIMES and variant not in MULTISTEP_VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {', '.join(ADVANCED_VARIANTS)}")
    options = dict(variant="tab" if variant in TIMES else variant, degree=int(degree), integrand=integrand,
                   corrector=bool(corrector), final_degree=int(final_degree), lower_order_final=bool(lower_order_final),
                   max_amplification=float(max_amplification) if max_amplification else None, eta=float(eta))
    if final_degree > degree:
        raise ValueError(f"final_degree = {final_degree} is above degree = {degree}, and the step into sigma = 0 "
                         f"is never of a higher degree than the others; set final_degree to {min(degree, 1)}")
    if variant in TIMES and TIMES[variant] is not None:
        options["time_map"] = TIMES[variant]
    resolve(**options)
    check_s_noise(float(s_noise), options["eta"])
    if options["eta"]:
        options["s_noise"] = float(s_noise)
    return options


ADVANCED_VARIANTS = ("tab", "tab_vp", "logrhoab", "rhoab", "ipndm")

#: Sampler DEIS's methods: name, what it is (its tooltip line), its core options, and whether it takes eta:
#: above 0, the recommended method is deis_sde's at that eta (corrected: with the corrector), and DDIM the SDE's
#: own first-order step.
PRESETS = {
    "recommended": ("the pack's recommended method for the model, KSampler's deis_auto; with eta above 0, "
                    "deis_sde's at that eta", dict(), True),
    "corrected": ("the recommended method with the corrector (UniPC's) at no extra model call, KSampler's "
                  "deis_corrected: closer to the exact result on average, less steady at few steps and on uneven "
                  "schedules", dict(corrector=True), True),
    "tAB3, the paper's": ("the paper's best: a cubic in the model's own time on the predicted noise",
                          dict(variant="tab", degree=3, integrand="eps"), False),
    "DDIM": ("first order, one model call a step (with eta above 0 the SDE's own first-order step)",
             dict(variant="tab", degree=0, integrand="data", final_degree=0), True),
    "Runge-Kutta 3": ("Kutta's third-order method in sigma/alpha: three model calls a step",
                      dict(variant="rhork", tableau="kutta3"), False),
    "Runge-Kutta 4": ("the classical fourth-order method in sigma/alpha: four model calls a step",
                      dict(variant="rhork", tableau="rk4"), False),
}


def preset_options(method, eta):
    """Sampler DEIS's widgets as core options; a ValueError names the widget and a value that works."""
    if method not in PRESETS:
        raise ValueError(f"unknown method {method!r}; expected one of {', '.join(PRESETS)}")
    _, options, takes_eta = PRESETS[method]
    if eta and not takes_eta:
        with_eta = ", ".join(name for name, preset in PRESETS.items() if preset[2])
        raise ValueError(f"eta = {eta:g} adds noise, which method {method!r} cannot carry; set eta to 0, or method "
                         f"to one of {with_eta}")
    options = dict(options, **({"eta": float(eta)} if eta else {}))
    resolve(**options)
    return options


class SamplerDEIS:
    """DEIS's recommended method and a few others, as a SAMPLER for SamplerCustom(Advanced)."""

    CATEGORY = "sampling/custom_sampling/samplers"
    RETURN_TYPES = ("SAMPLER",)
    FUNCTION = "get_sampler"
    DESCRIPTION = ("DEIS (Zhang & Chen, ICLR 2023) with exact coefficients. method recommended is KSampler's "
                   "deis_auto, and with eta above 0 deis_sde. Sampler DEIS (advanced) has every option.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "method": (list(PRESETS), {"default": "recommended", "tooltip": " ".join(
                f"{name}: {text}." for name, (text, _, _) in PRESETS.items())}),
            "eta": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.05, "tooltip":
                "Noise added back each step: 0 samples the ODE (the same image from the same noise), 1 the full "
                "reverse SDE, like dpmpp_2m_sde. With methods recommended, corrected and DDIM."}),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, method, eta):
        try:
            preset_options(method, eta)
        except ValueError as error:
            return f"Sampler DEIS: {error}"
        return True

    def get_sampler(self, method, eta):
        import comfy.samplers

        return (comfy.samplers.KSAMPLER(comfy_sampler({}), extra_options=preset_options(method, eta)),)


class SamplerDEISAdvanced:
    """Every option of the DEIS core's multistep samplers, as a SAMPLER for SamplerCustom(Advanced)."""

    CATEGORY = "sampling/custom_sampling/samplers"
    RETURN_TYPES = ("SAMPLER",)
    FUNCTION = "get_sampler"
    DESCRIPTION = ("DEIS (Zhang & Chen, ICLR 2023) with exact coefficients, every option. Sampler DEIS has the "
                   "recommended method and a few others ready to pick.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "variant": (list(ADVANCED_VARIANTS), {"default": "tab", "tooltip":
                "The variable the polynomial is fitted in. tab: the model's own time (the paper's tAB; its sigma "
                "table on SD-style models, sigma on flow models). tab_vp: the paper's continuous VP time. "
                "logrhoab: log(sigma/alpha). rhoab: sigma/alpha (k-diffusion's LMS). ipndm: sigma/alpha with the "
                "fixed weights of even steps."}),
            "degree": ("INT", {"default": 3, "min": 0, "max": 3, "tooltip":
                "Polynomial degree: 0 is DDIM, 3 the paper's tAB3 (the core's default too). Higher is more "
                "accurate on smooth problems and less steady at few steps. With eta above 0, at most 2."}),
            "integrand": (list(INTEGRANDS), {"default": "eps", "tooltip":
                "What the polynomial follows: eps, the predicted noise (the paper's); v, the v-prediction; data, "
                "the denoised image (DPM-Solver++'s form, steadiest with the corrector and with CFG). With eps and "
                "data an inpainting mask's kept region stays exact; with v only without the corrector and with "
                "final_degree 0."}),
            "corrector": ("BOOLEAN", {"default": False, "tooltip":
                "After each model call, take the step that led there again with the model's value there as one "
                "more node, one degree higher (UniPC's corrector), at no extra model call."}),
            "final_degree": ("INT", {"default": 1, "min": 0, "max": MAX_FINAL_DEGREE, "tooltip":
                "Degree of the step into sigma = 0, taken on the predicted noise in sigma/alpha from the "
                "corrected state: 0 is DDIM. It is DDIM where that step starts above sigma/alpha = 0.5. At most "
                "degree."}),
            "lower_order_final": ("BOOLEAN", {"default": True, "tooltip":
                "Below 15 steps, the step before the step into sigma = 0 is at most degree 1 (as in diffusers). "
                "No effect at 15 steps or more, or at degree 1 or less."}),
            "max_amplification": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 4.0, "step": 0.05, "tooltip":
                "0: off. From 1 up: lower a step's degree until its weights amplify an error in the history at "
                "most this many times as much as those of even steps (uneven steps make them grow)."}),
            "eta": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.05, "tooltip":
                "Noise added back each step: 0 samples the ODE, 1 the full reverse SDE (like dpmpp_2m_sde). "
                "Above 0 it needs integrand data and degree 2 or less."}),
            "s_noise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 2.0, "step": 0.01, "tooltip":
                "Scale of the noise eta adds: 1 is exact, a little above 1 adds grain. Only with eta above 0."}),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, variant, degree, integrand, corrector, final_degree, lower_order_final,
                        max_amplification, eta, s_noise):
        try:
            node_options(variant, degree, integrand, corrector, final_degree, lower_order_final, max_amplification,
                         eta, s_noise)
        except ValueError as error:
            return f"Sampler DEIS (advanced): {error}"
        return True

    def get_sampler(self, variant, degree, integrand, corrector, final_degree, lower_order_final, max_amplification,
                    eta, s_noise):
        import comfy.samplers

        options = node_options(variant, degree, integrand, corrector, final_degree, lower_order_final,
                               max_amplification, eta, s_noise)
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
    DESCRIPTION = ("DEIS time schedules: uniform in t^(1/kappa) of the model's own time (the paper's), in log rho, "
                   "or in rho^(1/power) (Karras).")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip":
                "The model to schedule for: its sigma range, whether it is a flow model, and its own time."}),
            "steps": ("INT", {"default": 20, "min": 1, "max": 10000, "tooltip":
                "Number of sampling steps (one model call each with the multistep samplers)."}),
            "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01, "tooltip":
                "Fraction of the schedule to run, as in BasicScheduler: below 1 for img2img, keeping the "
                "low-noise end of a longer schedule."}),
            "schedule": (list(NODE_SCHEDULES), {"default": "rho_polynomial", "tooltip":
                "deis_time_quadratic: the paper's, uniform in t^(1/kappa) of the model's own time (KSampler's "
                "deis_time_quadratic at kappa 2). log_rho_uniform: uniform in log rho, rho = sigma/alpha "
                "(KSampler's exponential on SD-style models). rho_polynomial: uniform in rho^(1/power) (Karras et "
                "al.; KSampler's karras on SD-style models at power 7)."}),
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
