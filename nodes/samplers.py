"""DEIS inside ComfyUI: the KSampler entries, the Sampler DEIS nodes and the DEIS scheduler.

One ``deis_auto`` step, from KSampler to the update it applies: KSampler calls ``sample_deis_auto``
(``comfy_sampler`` below), which reads the model's form and time (nodes/model_info.py) and calls
``deis.sample_deis``; that resolves the recommended configuration (deis/options.py) and runs the
loop of deis/sampling.py, whose every number comes from deis/plan.py.
"""

import torch

from ..deis import CONFIGURATIONS, INTEGRANDS, VPLinearTime, resolve, sample_deis
from ..deis.options import MAX_FINAL_DEGREE
from ..deis.schedules import log_rho_uniform, rho_polynomial, time_uniform
from .model_info import model_options, parameterisation_of, time_map_of

#: The KSampler dropdown entries, in order. The first is the recommended default.
KSAMPLER_CONFIGURATIONS = {name: CONFIGURATIONS[name] for name in ("deis_auto", "deis_corrected", "deis_sde")}
RECOMMENDED = "deis_auto"
#: What each entry is, in the words every page uses (tests/test_one_story.py holds them to it).
ENTRY_DESCRIPTIONS = {
    "deis_auto": "the recommended sampler: tAB2 on the predicted noise in the paper's VP time on SD-style models, "
                 "tAB2 on the v-prediction in flow time on flow models",
    "deis_corrected": "UniPC's corrector at no extra model call, on tAB1 on the denoised image in the paper's VP "
                      "time on SD-style models and on tAB2 on the v-prediction in flow time on flow models, except "
                      "over steps that span much of the way from noise to data",
    "deis_sde": "stochastic (eta 1): tAB1 on the denoised image in the model's own time, with the reverse SDE's "
                "own kernel",
}

#: The paper's schedule, uniform in sqrt(t) of the model's time: KSampler's scheduler entry, and DEIS Scheduler's
#: schedule of the same name.
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


#: Sampler DEIS (advanced)'s variants, each in the words its tooltip and help page use (tests/test_one_story.py).
VARIANT_TEXT = {
    "tab": "the model's own time (its table of sigmas on SD-style models, sigma on flow models): the paper's tAB",
    "tab_vp": "the paper's continuous VP time (beta 0.1 to 20), the time the paper measured tAB in",
    "logrhoab": "log(sigma/alpha), the variable of diffusers' DEIS",
    "rhoab": "sigma/alpha (in the VE form, k-diffusion's LMS)",
    "ipndm": "sigma/alpha with the fixed weights of even steps (the paper's iPNDM)",
}
ADVANCED_VARIANTS = tuple(VARIANT_TEXT)
#: Sampler DEIS (advanced)'s widgets, as the core's options of the same names (``variant`` tab_vp is the core's tab
#: in ``deis.VPLinearTime``).
ADVANCED_WIDGETS = ("variant", "degree", "integrand", "corrector", "final_degree", "max_amplification",
                    "max_step_angle", "corrector_max_angle", "eta", "s_noise")


def node_options(variant, degree, integrand, corrector, final_degree, max_amplification, max_step_angle,
                 corrector_max_angle, eta, s_noise):
    """Sampler DEIS (advanced)'s widgets as core options, checked by the core's resolver (deis.options.resolve: one
    message per rule, naming the option, which is the widget of the same name). Raises ValueError."""
    if variant not in ADVANCED_VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; set variant to one of {', '.join(ADVANCED_VARIANTS)}")
    if degree == 0:  # every variant and the eps and data integrands are the same DDIM step there
        raise ValueError("degree 0 is DDIM whatever the variant; set degree to 1 or more, or use Sampler DEIS's "
                         "method DDIM")
    options = dict(variant="tab" if variant in TIMES else variant, degree=degree, integrand=integrand,
                   corrector=corrector, final_degree=final_degree, eta=float(eta),
                   **{name: float(value) if value else None for name, value in (
                       ("max_amplification", max_amplification), ("max_step_angle", max_step_angle),
                       ("corrector_max_angle", corrector_max_angle))})
    if TIMES.get(variant) is not None:
        options["time_map"] = TIMES[variant]
    resolve(**options, s_noise=float(s_noise))
    if options["eta"]:
        options["s_noise"] = float(s_noise)
    return options


#: Sampler DEIS's methods and their core options (web/docs/SamplerDEIS.md says what each is). With eta above 0 the
#: recommended method is deis_sde's at that eta (corrected: with the corrector), and DDIM the SDE's own first-order
#: step; the methods the core cannot run with eta refuse it.
PRESETS = {
    "recommended": dict(),
    "corrected": dict(corrector=True),
    "tAB3, the paper's": dict(variant="tab", degree=3, integrand="eps"),
    "DDIM": dict(variant="tab", degree=0, integrand="data", final_degree=0),
    "Runge-Kutta 3": dict(variant="rhork", tableau="kutta3"),
    "Runge-Kutta 4": dict(variant="rhork", tableau="rk4"),
}
#: What Sampler DEIS's first widget held in the release before (its variant), and the method that is now the same.
EARLIER_VARIANTS = {"auto": "recommended", "tab": "tAB3, the paper's", "rhork": "Runge-Kutta 3"}


def takes_eta(method):
    """Whether the core runs ``method`` with eta above 0."""
    try:
        resolve(**PRESETS[method], eta=1.0)
    except ValueError:
        return False
    return True


def preset_options(method, eta):
    """Sampler DEIS's widgets as core options; a ValueError names the widget and a value that works."""
    if method not in PRESETS:
        earlier = (f" (a Sampler DEIS saved by an earlier release: its variant {method!r} is method "
                   f"{EARLIER_VARIANTS[method]!r} now)" if method in EARLIER_VARIANTS else "")
        raise ValueError(f"unknown method {method!r}{earlier}; set method to one of {', '.join(PRESETS)}")
    resolve(eta=eta)  # eta's own range
    options = dict(PRESETS[method], **({"eta": float(eta)} if eta else {}))
    if eta and not takes_eta(method):
        raise ValueError(f"eta = {eta:g} adds noise, which method {method!r} cannot carry; set eta to 0, or method "
                         f"to one of {', '.join(name for name in PRESETS if takes_eta(name))}")
    resolve(**options)
    return options


class SamplerDEIS:
    """DEIS's recommended method and a few others, as a SAMPLER for SamplerCustom(Advanced)."""

    CATEGORY = "sampling/custom_sampling/samplers"
    RETURN_TYPES = ("SAMPLER",)
    FUNCTION = "get_sampler"
    DESCRIPTION = ("DEIS (Zhang & Chen, ICLR 2023) with exact coefficients. method recommended is KSampler's "
                   "deis_auto, and with eta above 0 deis_sde. Sampler DEIS (advanced) sets the degree, integrand and "
                   "corrector yourself.")

    @classmethod
    def INPUT_TYPES(cls):
        with_eta = ", ".join(name for name in PRESETS if takes_eta(name))
        return {"required": {
            "method": (list(PRESETS), {"default": "recommended", "tooltip":
                "recommended: KSampler's deis_auto, the steadiest (with eta, deis_sde). corrected: KSampler's "
                "deis_corrected, the most accurate on average. The others: the paper's tAB3, DDIM, Runge-Kutta 3 "
                "and 4. The node's help page says more of each."}),
            "eta": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.05, "tooltip":
                "Noise added back each step: 0 samples the ODE (the same image from the same noise), 1 the full "
                f"reverse SDE, like dpmpp_2m_sde. With methods {with_eta}; the others refuse it."}),
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
    """The DEIS core's multistep options, as a SAMPLER for SamplerCustom(Advanced)."""

    CATEGORY = "sampling/custom_sampling/samplers"
    RETURN_TYPES = ("SAMPLER",)
    FUNCTION = "get_sampler"
    DESCRIPTION = ("DEIS (Zhang & Chen, ICLR 2023) with exact coefficients: the interpolation variable, degree, "
                   "integrand, corrector and last step set yourself. Sampler DEIS has the recommended method and a few "
                   "others ready to pick.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "variant": (list(ADVANCED_VARIANTS), {"default": "tab", "tooltip":
                "The variable the polynomial is fitted in. " + " ".join(
                    f"{name}: {text}." for name, text in VARIANT_TEXT.items())}),
            "degree": ("INT", {"default": 3, "min": 1, "max": 3, "tooltip":
                "Polynomial degree, 1 to 3: 3 is the paper's tAB3. Higher is more accurate on smooth problems and "
                "less steady at few steps. With the corrector, or eta above 0, at most 2. (Degree 0, DDIM, is a "
                "method of Sampler DEIS.)"}),
            "integrand": (list(INTEGRANDS), {"default": "eps", "tooltip":
                "What the polynomial follows: eps, the predicted noise (the paper's); v, the v-prediction; data, "
                "the denoised image (DPM-Solver++'s form, steadiest under CFG). With eps and data an inpainting "
                "mask's kept region stays exact."}),
            "corrector": ("BOOLEAN", {"default": False, "tooltip":
                "After each model call, take the step that led there again with the model's value there as one "
                "more node, one degree higher (UniPC's corrector), at no extra model call. Not on the first step "
                "of a flow model with integrand eps."}),
            "final_degree": ("INT", {"default": 1, "min": 0, "max": MAX_FINAL_DEGREE, "tooltip":
                "Degree of the step into sigma = 0 (where the schedule ends there), a polynomial in sigma/alpha on "
                "the predicted noise; 0 is DDIM. It is DDIM where that step starts above sigma/alpha = 0.5. At most "
                "degree, and 0 with eta above 0."}),
            "max_amplification": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 4.0, "step": 0.05, "tooltip":
                "0: off. From 1 up: on a schedule whose steps are uneven, lower a step's degree until its weights "
                "amplify an error in the history at most this many times as much as those of even steps."}),
            "max_step_angle": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.55, "step": 0.05, "tooltip":
                "0: off. Above 0: a step (before the step into sigma = 0) that spans more than this angle of "
                "arctan(sigma/alpha), in radians (pure noise to data is 1.57), is taken at degree 0 and not "
                "corrected. deis_corrected uses 0.4 on SD-style models, 0.6 on flow models."}),
            "corrector_max_angle": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.55, "step": 0.05, "tooltip":
                "0: off. Above 0, with the corrector: no correction of a step that spans more than this angle of "
                "arctan(sigma/alpha). deis_corrected uses 0.15 on flow models."}),
            "eta": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.05, "tooltip":
                "Noise added back each step: 0 samples the ODE, 1 the full reverse SDE (like dpmpp_2m_sde). "
                "Above 0 it needs integrand data, degree 2 or less and final_degree 0."}),
            "s_noise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 2.0, "step": 0.01, "tooltip":
                "Scale of the noise eta adds: 1 is exact, a little above 1 adds grain. Only with eta above 0."}),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, variant, degree, integrand, corrector, final_degree, max_amplification, max_step_angle,
                        corrector_max_angle, eta, s_noise):
        try:
            node_options(variant, degree, integrand, corrector, final_degree, max_amplification, max_step_angle,
                         corrector_max_angle, eta, s_noise)
        except ValueError as error:
            return f"Sampler DEIS (advanced): {error}"
        return True

    def get_sampler(self, variant, degree, integrand, corrector, final_degree, max_amplification, max_step_angle,
                    corrector_max_angle, eta, s_noise):
        import comfy.samplers

        options = node_options(variant, degree, integrand, corrector, final_degree, max_amplification, max_step_angle,
                               corrector_max_angle, eta, s_noise)
        return (comfy.samplers.KSAMPLER(comfy_sampler({}), extra_options=options),)


#: DEIS Scheduler's shape widgets: the schedule each one shapes, its default and its range.
SHAPES = {"kappa": (SCHEDULER_NAME, 2.0, (0.5, 8.0)), "power": ("rho_polynomial", 7.0, (1.0, 20.0))}


def scheduler_options(schedule, kappa, power):
    """DEIS Scheduler's schedule and shape widgets, checked: a shape other than its default is refused where the
    schedule has no use for it. Raises ValueError naming the widget."""
    if schedule not in NODE_SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; set schedule to one of {', '.join(NODE_SCHEDULES)}")
    for name, value in (("kappa", kappa), ("power", power)):
        shaped, default, (low, high) = SHAPES[name]
        if not low <= value <= high:
            raise ValueError(f"{name} must be from {low:g} to {high:g}; got {value!r}; set {name} to {default:g}")
        if value != default and schedule != shaped:
            raise ValueError(f"{name} = {value:g} shapes only schedule {shaped}, not {schedule}; set {name} to "
                             f"{default:g}, or schedule to {shaped}")
    return dict(schedule=schedule, kappa=float(kappa), power=float(power))


def shape_widget(name, step, tooltip):
    """DEIS Scheduler's input for a shape widget, its default and range from ``SHAPES``."""
    _, default, (low, high) = SHAPES[name]
    return ("FLOAT", {"default": default, "min": low, "max": high, "step": step, "tooltip": tooltip})


def model_schedule(model_sampling, steps, schedule=SCHEDULER_NAME, kappa=SHAPES["kappa"][1], power=SHAPES["power"][1]):
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
            "schedule": (list(NODE_SCHEDULES), {"default": "log_rho_uniform", "tooltip":
                "deis_time_quadratic: the paper's, uniform in t^(1/kappa) of the model's own time (KSampler's "
                "deis_time_quadratic at kappa 2). log_rho_uniform: uniform in log rho, rho = sigma/alpha "
                "(KSampler's exponential on SD-style models). rho_polynomial: uniform in rho^(1/power) (Karras et "
                "al.; KSampler's karras on SD-style models at power 7)."}),
            "kappa": shape_widget("kappa", 0.1, "Shapes deis_time_quadratic only (another value is refused with the "
                                  "other schedules): 2 is quadratic in t (the paper's), 1 is uniform in t."),
            "power": shape_widget("power", 0.5, "Shapes rho_polynomial only (another value is refused with the other "
                                  "schedules): 7 is Karras et al.'s."),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, schedule, kappa, power):
        try:
            scheduler_options(schedule, kappa, power)
        except ValueError as error:
            return f"DEIS Scheduler: {error}"
        return True

    def get_sigmas(self, model, steps, denoise, schedule, kappa, power):
        total = steps
        if denoise < 1.0:
            if denoise <= 0.0:
                return (torch.FloatTensor([]),)
            total = int(steps / denoise)
        sigmas = model_schedule(model.get_model_object("model_sampling"), total, schedule, kappa, power)
        return (sigmas[-(steps + 1):],)
