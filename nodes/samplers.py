"""DEIS inside ComfyUI: the KSampler entries, the Sampler DEIS nodes and the DEIS scheduler.

One ``deis_corrected`` step, from KSampler to the update it applies: KSampler calls the function
``comfy_sampler("deis_corrected")`` made, which reads the model's form and time (nodes/model_info.py) and calls
``deis.sample_deis`` with the entry's configuration for that form (deis/config.py); its loop
(deis/sampling.py) takes every number from deis/plan.py.

Every widget's range and tooltip comes from the core's one declaration of its options (``deis.OPTIONS``).
A value that arrives through a link is known only when the node runs (ComfyUI validates it as None), so the
nodes check their settings when they run, and name every problem in one message.
"""

from collections import namedtuple

import torch

from ..deis import CONFIGURATIONS, ENTRIES, OPTIONS, Config, ConfigError, VPLinearTime, sample_deis, sample_deis_rk
from ..deis.config import problem_list, value_problem
from ..deis.schedules import log_rho_uniform, rho_polynomial, time_uniform
from .model_info import guidance_of, model_options, parameterisation_of, time_map_of

#: What each entry is, in the words every page uses (tests/test_one_story.py holds them to it).
ENTRY_DESCRIPTIONS = {
    "deis_corrected": "the recommended sampler: tAB1 with UniPC's corrector at no extra model call, each correction "
                      "taken as the implicit step it approximates, on the denoised image in the paper's VP time on "
                      "SD-style models and on the v-prediction in flow time on flow models, uncorrected over steps "
                      "that span much of the way from noise to data and above CFG 4",
    "deis_auto": "the uncorrected DEIS, the paper's tAB with exact coefficients: tAB2 on the predicted noise in the "
                 "paper's VP time on SD-style models, tAB2 on the v-prediction in flow time on flow models",
    "deis_sde": "stochastic (eta 1): tAB1 on the denoised image in the model's own time, with the reverse SDE's "
                "own kernel",
}
RECOMMENDED = "deis_corrected"

#: The paper's schedule, uniform in sqrt(t) of the model's time: KSampler's scheduler entry, and DEIS Scheduler's
#: schedule of the same name.
SCHEDULER_NAME = "deis_time_quadratic"
NODE_SCHEDULES = (SCHEDULER_NAME, "log_rho_uniform", "rho_polynomial")


class SettingsError(ValueError):
    """A node's settings that cannot run: one message for every problem, prefixed by the node's name."""

    def __init__(self, node, problems):
        super().__init__(f"{node}: {problem_list(list(problems))}")


def comfy_sampler(config, **changes):
    """A k-diffusion-signature sampler for ComfyUI: ``config`` (an entry's name or a ``deis.Config``) with
    ``changes``, run on the form and time the model has."""

    def sampler(model, x, sigmas, extra_args=None, callback=None, disable=None, **options):
        return sample_deis(model, x, sigmas, extra_args, callback, disable, config=config, **model_options(model),
                           cfg=guidance_of(model), **{**changes, **options})

    sampler.deis_pack = True  # marks functions this pack may replace on a re-import
    return sampler


def comfy_runge_kutta(tableau):
    """rhoRK with ``tableau`` as a k-diffusion-signature sampler for ComfyUI."""

    def sampler(model, x, sigmas, extra_args=None, callback=None, disable=None):
        parameterisation = model_options(model)["parameterisation"]
        return sample_deis_rk(model, x, sigmas, extra_args, callback, disable, tableau=tableau,
                              parameterisation=parameterisation)

    sampler.deis_pack = True
    return sampler


SAMPLER_FUNCTIONS = {name: comfy_sampler(name) for name in ENTRIES}


# --------------------------------------------------------------------------- widgets from the declaration

def sentence(text):
    return text[0].upper() + text[1:] + "."


def widget(name, default, tooltip=None, choices=None, low=None, step=None):
    """A node input for the core option ``name``: its range and meaning from ``deis.OPTIONS``; a limit that
    Python turns off with None is off at its ``off`` value (0). ``tooltip`` replaces the meaning."""
    spec = OPTIONS[name].metadata
    text = tooltip or sentence(spec["meaning"])
    if spec["choices"] is not None or choices is not None:
        return (list(choices or spec["choices"]), {"default": default, "tooltip": text})
    if spec["kind"] is bool:
        return ("BOOLEAN", {"default": default, "tooltip": text})
    if spec["off"] is not None:
        text = f"0: off. {text}"
    low = spec["off"] if spec["off"] is not None else (spec["low"] if low is None else low)
    high = spec["high"]
    if spec["kind"] is int:
        return ("INT", {"default": default, "min": low, "max": high, "tooltip": text})
    return ("FLOAT", {"default": default, "min": low, "max": round(high, 2),
                      "step": step, "tooltip": text})


# --------------------------------------------------------------------------- Sampler DEIS

#: One of Sampler DEIS's methods: the configuration it runs (an entry's name or a ``Config``) with eta 0, the one
#: it runs with eta above 0 (None: it cannot carry noise), or a Runge-Kutta tableau.
Method = namedtuple("Method", "ode sde tableau", defaults=(None, None, None))
DDIM = Config(degree=0, integrand="data", final_degree=0)
METHODS = {
    "recommended": Method("deis_corrected", "deis_sde"),
    "uncorrected": Method("deis_auto", "deis_sde"),
    "tAB3, the paper's": Method(Config()),
    "DDIM": Method(DDIM),
    "Runge-Kutta 3": Method(tableau="kutta3"),
    "Runge-Kutta 4": Method(tableau="rk4"),
}
#: Each method in the words its tooltip and help page use.
METHOD_TEXT = {
    "recommended": "KSampler's deis_corrected; with eta above 0, deis_sde at that eta",
    "uncorrected": "KSampler's deis_auto, DEIS without the corrector; with eta above 0, deis_sde at that eta",
    "tAB3, the paper's": "a cubic in the model's own time on the predicted noise",
    "DDIM": "first order, one model call a step",
    "Runge-Kutta 3": "rhoRK with Kutta's third-order tableau, three model calls a step",
    "Runge-Kutta 4": "rhoRK with the classical fourth-order tableau, four model calls a step",
}
#: Why a method refuses eta, where the reason is a measurement (benchmarks/results/ddim_eta.md).
NO_ETA_BECAUSE = {"DDIM": "with noise it is no better than ComfyUI's euler_ancestral, up to 1.37 times further from "
                          "the model's own samples, and 1.4 to 4.2 times further than deis_sde"}
#: What Sampler DEIS's first widget held in an earlier release (its variant), and the method that is now the same.
EARLIER_VARIANTS = {"auto": "uncorrected", "corrected": "recommended", "tab": "tAB3, the paper's",
                    "rhork": "Runge-Kutta 3"}
METHODS_WITH_ETA = tuple(name for name, method in METHODS.items() if method.sde is not None)


def method_problems(method):
    """Sampler DEIS's method alone: a known method, or an earlier release's value and the method that replaced it."""
    if method is None or method in METHODS:  # None: linked, known when the node runs
        return []
    if method in EARLIER_VARIANTS:
        return [f"method {method!r} is from a Sampler DEIS saved by an earlier release; it is method "
                f"{EARLIER_VARIANTS[method]!r} now: set method to {EARLIER_VARIANTS[method]}"]
    return [f"unknown method {method!r}; set method to one of {listed(METHODS)}"]


def listed(names):
    """Names joined with slashes: a method's name may hold a comma ("tAB3, the paper's")."""
    return " / ".join(names)


def method_sampler(method, eta):
    """Sampler DEIS's method and eta as a sampler function. Raises SettingsError naming every problem."""
    problems = method_problems(method)
    eta_problem = value_problem("eta", eta)
    if eta_problem:  # a linked eta: ComfyUI checks a widget's range, not a link's
        problems.append(eta_problem)
    elif not problems and eta and METHODS[method].sde is None:
        because = f" ({NO_ETA_BECAUSE[method]})" if method in NO_ETA_BECAUSE else ""
        problems.append(f"eta {eta:g} adds noise, which method \"{method}\" cannot carry{because}; set eta to 0, or "
                        f"method to {listed(METHODS_WITH_ETA)}")
    if problems:
        raise SettingsError("Sampler DEIS", problems)
    chosen = METHODS[method]
    if chosen.tableau:
        return comfy_runge_kutta(chosen.tableau)
    if not eta:
        return comfy_sampler(chosen.ode)
    return comfy_sampler(chosen.sde, eta=float(eta))


class SamplerDEIS:
    """DEIS's recommended method and a few others, as a SAMPLER for SamplerCustom(Advanced)."""

    CATEGORY = "sampling/custom_sampling/samplers"
    RETURN_TYPES = ("SAMPLER",)
    FUNCTION = "get_sampler"
    DESCRIPTION = ("DEIS (Zhang & Chen, ICLR 2023) with exact coefficients. method recommended is KSampler's "
                   "deis_corrected, and with eta above 0 deis_sde. Sampler DEIS (advanced) sets the degree, "
                   "integrand and corrector yourself.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "method": (list(METHODS), {"default": "recommended", "tooltip": " ".join(
                f"{name}: {text}." for name, text in METHOD_TEXT.items())}),
            "eta": widget("eta", 0.0, step=0.05, tooltip=sentence(OPTIONS["eta"].metadata["meaning"]) +
                          f" Only with method {listed(METHODS_WITH_ETA)}; the others refuse it."),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, method):
        # Only the method, so that ComfyUI shows a refusal once; eta's range is ComfyUI's own check, and the pair
        # is checked when the node runs.
        problems = method_problems(method)
        return str(SettingsError("Sampler DEIS", problems)) if problems else True

    def get_sampler(self, method, eta):
        import comfy.samplers

        return (comfy.samplers.KSAMPLER(method_sampler(method, eta)),)


# --------------------------------------------------------------------------- Sampler DEIS (advanced)

#: Sampler DEIS (advanced)'s variants, each in the words its tooltip and help page use (tests/test_one_story.py);
#: tab_vp is the core's tab in the paper's VP time.
VARIANT_TEXT = {
    "tab": "the model's own time (its table of sigmas on SD-style models, sigma on flow models): the paper's tAB",
    "tab_vp": "the paper's continuous VP time (beta 0.1 to 20), the time the paper measured tAB in",
    "logrhoab": "log(sigma/alpha), the variable of diffusers' DEIS",
    "rhoab": "sigma/alpha (in the VE form, k-diffusion's LMS)",
    "ipndm": "sigma/alpha with the fixed weights of even steps (the paper's iPNDM)",
}
ADVANCED_VARIANTS = tuple(VARIANT_TEXT)
TIMES = {"tab_vp": VPLinearTime()}
#: The widgets open on deis_corrected's SD-style configuration.
OPENS_ON = CONFIGURATIONS["deis_corrected"]["ve"]
ADVANCED_WIDGETS = ("variant", "degree", "integrand", "corrector", "final_degree", "max_amplification",
                    "max_step_angle", "corrector_max_angle", "eta", "s_noise", "corrector_data_scale",
                    "corrector_max_cfg")
#: Inputs added in 0.3.0, optional so that a node saved before (an API prompt without them) still runs: absent,
#: each is off, as it was.
ADDED_INPUTS = ("corrector_data_scale", "corrector_max_cfg")


def widget_value(config, name):
    """A configuration's option as its widget shows it: tab in the VP time is tab_vp; an unset limit is 0."""
    if name == "variant":
        return "tab_vp" if config.variant == "tab" and config.time_map == TIMES["tab_vp"] else config.variant
    value = getattr(config, name)
    return OPTIONS[name].metadata["off"] if value is None else value


def advanced_config(**widgets):
    """Sampler DEIS (advanced)'s widgets as a ``deis.Config``. Raises SettingsError naming every problem."""
    problems = []
    variant = widgets["variant"]
    if variant not in ADVANCED_VARIANTS:
        problems.append(f"unknown variant {variant!r}; set variant to one of {', '.join(ADVANCED_VARIANTS)}")
    if widgets["degree"] == 0:
        problems.append("degree 0 is DDIM whatever the variant; set degree to 1 or more, or use Sampler DEIS's "
                        "method DDIM")
    options = {name: widgets.get(name, OPTIONS[name].metadata["off"]) if name in ADDED_INPUTS else widgets[name]
               for name in ADVANCED_WIDGETS if name != "variant"}
    for name, value in options.items():  # a limit at 0 is off
        if OPTIONS[name].metadata["off"] is not None and value == OPTIONS[name].metadata["off"]:
            options[name] = None
    # An unknown variant is named above; the rest is checked as if it were tab.
    options.update(variant="tab" if variant in TIMES or variant not in ADVANCED_VARIANTS else variant,
                   time_map=TIMES.get(variant))
    try:
        config = Config(**options)
    except ConfigError as error:
        problems += error.problems
    if problems:
        raise SettingsError("Sampler DEIS (advanced)", problems)
    return config


class SamplerDEISAdvanced:
    """The DEIS core's multistep options, as a SAMPLER for SamplerCustom(Advanced)."""

    CATEGORY = "sampling/custom_sampling/samplers"
    RETURN_TYPES = ("SAMPLER",)
    FUNCTION = "get_sampler"
    DESCRIPTION = ("DEIS (Zhang & Chen, ICLR 2023) with exact coefficients: the interpolation variable, degree, "
                   "integrand, corrector and last step set yourself. It opens on deis_corrected's SD-style "
                   "settings.")

    @classmethod
    def INPUT_TYPES(cls):
        inputs = {
            "variant": widget("variant", widget_value(OPENS_ON, "variant"), choices=ADVANCED_VARIANTS, tooltip=(
                "The variable the polynomial is fitted in. " + " ".join(
                    f"{name}: {text}." for name, text in VARIANT_TEXT.items()))),
            "degree": widget("degree", OPENS_ON.degree, low=1, tooltip=sentence(
                OPTIONS["degree"].metadata["meaning"]) + " Here 1 to 3, and with the corrector or eta above 0 at most "
                                                         "2; for degree 0 use Sampler DEIS's method DDIM."),
        }
        steps = {"max_amplification": 0.05, "max_step_angle": 0.05, "corrector_max_angle": 0.05, "eta": 0.05,
                 "s_noise": 0.01, "corrector_data_scale": 0.01, "corrector_max_cfg": 0.5}
        for name in ADVANCED_WIDGETS[2:]:  # after variant and degree, whose inputs are written above
            inputs[name] = widget(name, widget_value(OPENS_ON, name), step=steps.get(name))
        eta, text = inputs["eta"]
        inputs["eta"] = (eta, {**text, "tooltip": text["tooltip"] + " Above 0 it needs integrand data, degree 2 or "
                                                                    "less and final_degree 0."})
        return {"required": {name: spec for name, spec in inputs.items() if name not in ADDED_INPUTS},
                "optional": {name: inputs[name] for name in ADDED_INPUTS}}

    def get_sampler(self, **widgets):  # ComfyUI passes the inputs by name: ADVANCED_WIDGETS
        import comfy.samplers

        return (comfy.samplers.KSAMPLER(comfy_sampler(advanced_config(**widgets))),)


# --------------------------------------------------------------------------- DEIS Scheduler

#: DEIS Scheduler's shape widgets: the schedule each one shapes, its default and its range.
SHAPES = {"kappa": (SCHEDULER_NAME, 2.0, (0.5, 8.0)), "power": ("rho_polynomial", 7.0, (1.0, 20.0))}


def scheduler_options(schedule, kappa, power):
    """DEIS Scheduler's widgets, checked when it runs: a shape the schedule does not use is ignored, as built-in
    nodes ignore an input their choice does not read. Raises SettingsError naming every problem."""
    problems = []
    if schedule not in NODE_SCHEDULES:
        problems.append(f"unknown schedule {schedule!r}; set schedule to one of {', '.join(NODE_SCHEDULES)}")
    values = dict(kappa=kappa, power=power)
    for name, value in values.items():
        shaped, default, (low, high) = SHAPES[name]
        if schedule != shaped:
            values[name] = default
        elif not (isinstance(value, (int, float)) and low <= value <= high):
            problems.append(f"{name} must be from {low:g} to {high:g}; got {value!r}; set {name} to {default:g}")
    if problems:
        raise SettingsError("DEIS Scheduler", problems)
    return dict(schedule=schedule, kappa=float(values["kappa"]), power=float(values["power"]))


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
    else:
        sigma_max = _below_pure_noise(model_sampling, parameterisation, sigma_max)
        sigmas = rho_polynomial(steps, sigma_min, sigma_max, parameterisation, power=power)
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
            "kappa": shape_widget("kappa", 0.1, "Shapes deis_time_quadratic only (the other schedules ignore it): 2 "
                                  "is quadratic in t (the paper's), 1 is uniform in t."),
            "power": shape_widget("power", 0.5, "Shapes rho_polynomial only (the other schedules ignore it): 7 is "
                                  "Karras et al.'s."),
        }}

    def get_sigmas(self, model, steps, denoise, schedule, kappa, power):
        options = scheduler_options(schedule, kappa, power)
        total = steps
        if denoise < 1.0:
            if denoise <= 0.0:
                return (torch.FloatTensor([]),)
            total = int(steps / denoise)
        sigmas = model_schedule(model.get_model_object("model_sampling"), total, **options)
        return (sigmas[-(steps + 1):],)
