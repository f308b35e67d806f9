"""One DEIS configuration: every option declared once, with its default, its range and what it means.

``Config`` is a frozen, hashable value, checked where it is made: a configuration that cannot run raises
one ``ConfigError`` naming every problem at once. The sampler, the plan cache, the ComfyUI nodes' widgets
and tooltips and the help pages all read the declaration below (``OPTIONS``).

An option that the rest of the configuration does not use is ignored, as its meaning says (``time_map``
with a variant other than tAB, the corrector's limits with the corrector off, ``s_noise`` with ``eta``
0), and ``final_degree`` above ``degree`` is taken as ``degree``. A configuration keeps the values it was
given (so changing one option never loses another); ``plan_key`` is what the coefficients depend on.

``CONFIGURATIONS`` holds the named configurations of the pack's entries, one for each form (``"ve"``:
SD-style models, ``alpha = 1``; ``"flow"``: rectified-flow models, ``alpha = 1 - sigma``).
"""

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .coefficients import INTEGRANDS, MAX_DEGREE
from .timemaps import FlowTime, TimeMap, VPLinearTime

VARIANTS = ("tab", "rhoab", "logrhoab", "ipndm")
#: A cubic step into sigma = 0 diverges on flow models at 10 steps (80 times deis's error).
MAX_FINAL_DEGREE = 2
#: A cubic predictor corrected at degree 4 is further from the exact result at 20 steps than DDIM at 10 on the
#: learned digits model, in log rho, rho and iPNDM; at degree 3 too, in every variable.
MAX_CORRECTED_DEGREE = 2
RIGHT_ANGLE = math.pi / 2


def option(default, meaning, *, choices=None, low=None, high=None, above=False, off=None, kind=None):
    """Declare one option: its default, a one-line meaning, and either ``choices`` or a range from ``low`` (or
    ``above`` it) to ``high``; ``off``: the widget value that turns a limit off, None in Python. ``kind`` is its
    Python type."""
    return field(default=default, metadata=dict(meaning=meaning, choices=choices, low=low, high=high, above=above,
                                                off=off, kind=kind or type(default)))


@dataclass(frozen=True)
class Config:
    """A checked DEIS configuration. ``Config()`` is the paper's tAB3 in the model's own time."""

    variant: str = option(
        "tab", "the variable the polynomial is fitted in: tab, the model's own time (the paper's tAB); rhoab, "
        "sigma/alpha; logrhoab, log(sigma/alpha); ipndm, sigma/alpha with the fixed weights of even steps",
        choices=VARIANTS)
    degree: int = option(
        3, "the polynomial's degree: 3 is the paper's tAB3, 0 is DDIM; higher is more accurate on smooth "
        "problems and less steady at few steps", low=0, high=MAX_DEGREE)
    integrand: str = option(
        "eps", "what the polynomial follows: eps, the predicted noise (the paper's); v, the v-prediction; data, "
        "the denoised image (DPM-Solver++'s form)", choices=INTEGRANDS)
    time_map: Optional[TimeMap] = option(
        None, "tAB's time (variant tab only): a deis.timemaps.TimeMap, or None for the model's own time",
        kind=TimeMap)
    corrector: bool = option(
        False, "after each model call, take the step that led there again with the model's value there as one more "
               "node, one degree higher (UniPC's corrector), at no extra model call")
    final_degree: int = option(
        1, "the degree of the step into sigma = 0, a polynomial in sigma/alpha on the predicted noise; 0 is DDIM; "
           "never above degree (a higher value is taken as degree); DDIM where that step starts above sigma/alpha = "
           "0.5", low=0, high=MAX_FINAL_DEGREE)
    lower_order_final: bool = option(
        True, "with fewer than 15 steps, the step before the step into sigma = 0 is at most degree 1")
    max_amplification: Optional[float] = option(
        None, "on uneven steps, lower a step's degree until its weights amplify an error in the history at most "
              "this many times as much as even steps' weights do", low=1.0, high=4.0, off=0.0, kind=float)
    max_step_angle: Optional[float] = option(
        None, "a step (before the step into sigma = 0) that spans more than this angle of arctan(sigma/alpha), in "
              "radians (pure noise to data is 1.57), is taken at degree 0 and not corrected",
        low=0.0, above=True, high=RIGHT_ANGLE, off=0.0, kind=float)
    corrector_max_angle: Optional[float] = option(
        None, "with the corrector: no correction of a step that spans more than this angle of arctan(sigma/alpha)",
        low=0.0, above=True, high=RIGHT_ANGLE, off=0.0, kind=float)
    corrector_data_scale: Optional[float] = option(
        None, "with the corrector: take each correction as one Newton step of the implicit step it approximates, the "
              "model's response to x estimated as that of Gaussian data of this standard deviation (the scale of "
              "fine detail, not of the latents); it acts where sigma falls below it, on the long last steps of "
              "normal, where a plain correction removes only part of the predictor's error",
        low=0.0, above=True, high=1.0, off=0.0, kind=float)
    corrector_max_cfg: Optional[float] = option(
        None, "with the corrector: no correction when the model is guided above this CFG scale, where corrections "
              "go astray; it acts where the host gives the sampler its scale (ComfyUI's CFG does)",
        low=1.0, high=100.0, off=0.0, kind=float)
    eta: float = option(
        0.0, "noise added back each step: 0 samples the ODE (the same image from the same noise), 1 the full "
             "reverse SDE", low=0.0, high=1.0)
    s_noise: float = option(
        1.0, "with eta above 0: the scale of the noise it adds; 1 is exact", low=0.0, high=2.0)

    def __post_init__(self):
        problems = list(config_problems(self))
        if problems:
            raise ConfigError(problems)
        for name, spec in OPTIONS.items():  # numbers as Python's own, so that equal values hash equal
            value = getattr(self, name)
            if spec.metadata["kind"] in (int, float, bool) and value is not None:
                object.__setattr__(self, name, spec.metadata["kind"](value))

    def replace(self, **changes):
        """This configuration with some options changed, checked again."""
        unknown = sorted(set(changes) - set(OPTIONS))
        if unknown:
            raise ConfigError([unknown_option(name) for name in unknown])
        return dataclasses.replace(self, **changes)

    @property
    def step_into_zero_degree(self):
        """``final_degree``, never above ``degree``."""
        return min(self.final_degree, self.degree)

    def for_guidance(self, cfg):
        """The configuration a model guided at scale ``cfg`` (None: not known) is sampled with: without the
        corrector above ``corrector_max_cfg``."""
        if cfg is not None and not (_is_number(cfg) and math.isfinite(cfg) and cfg >= 0):
            raise ConfigError([f"cfg must be the guidance scale, a finite number from 0, or None where it is not "
                               f"known; got {cfg!r}"])
        if self.corrector and self.corrector_max_cfg is not None and cfg is not None and cfg > self.corrector_max_cfg:
            return self.replace(corrector=False)
        return self

    def plan_key(self, time_map):
        """What the coefficients depend on, with tAB's time as the plan takes it (``plan.tab_time``): the options
        that act, each as it acts (``s_noise`` only scales noise; an unused option counts as unset)."""
        used = dict(self.__dict__, time_map=time_map, final_degree=self.step_into_zero_degree, s_noise=None)
        used["corrector_max_cfg"] = None  # it acts before the plan: ``for_guidance``
        if not self.corrector:
            used["corrector_max_angle"] = used["corrector_data_scale"] = None
        return tuple(used[name] for name in OPTIONS)


#: The declaration: each option's name, default, range or choices and meaning (``dataclasses.Field``).
OPTIONS = {f.name: f for f in dataclasses.fields(Config)}


def problem_list(problems):
    """One problem as its sentence; several numbered, one a line (ComfyUI's error report keeps the lines)."""
    if len(problems) == 1:
        return problems[0]
    return f"{len(problems)} problems:\n" + "\n".join(f"({k}) {p}" for k, p in enumerate(problems, 1))


class ConfigError(ValueError):
    """Every problem of a configuration, each a sentence that names the option and a value that works."""

    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__(problem_list(self.problems))


#: Options of earlier releases, and what to use instead.
REMOVED_OPTIONS = {
    "corrector_max_step": "it was removed (a selection-study experiment no entry used); use corrector_max_angle",
    "corrector_max_amplification": "it was removed (a selection-study experiment no entry used); use "
                                   "corrector_max_angle",
    "tableau": "rhoRK is its own sampler: call deis.sample_deis_rk(model, x, sigmas, tableau=...)",
}


def unknown_option(name):
    if name in REMOVED_OPTIONS:
        return f"option {name!r}: {REMOVED_OPTIONS[name]}"
    return f"unknown option {name!r}; the options are {', '.join(OPTIONS)}"


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _range_text(spec):
    text = f"{'above' if spec['above'] else 'from'} {spec['low']:g} {'and at most' if spec['above'] else 'to'} " \
           f"{spec['high']:.3g}"
    return text if spec["off"] is None else f"{text}, or off (None; {spec['off']:g} on a node's widget)"


def value_problem(name, value):
    """Whether ``value`` is of the kind and in the range the declaration gives ``name``; a sentence, or None."""
    spec = OPTIONS[name].metadata
    default = OPTIONS[name].default
    if spec["choices"] is not None:
        if value not in spec["choices"]:
            return f"{name} {value!r} is not one of {', '.join(spec['choices'])}; set {name} to {default}"
        return None
    if spec["kind"] is bool:
        if not isinstance(value, (bool, np.bool_)):
            return f"{name} must be on or off (True or False); got {value!r}"
        return None
    if spec["kind"] is TimeMap:
        if value is not None and not isinstance(value, TimeMap):
            return f"time_map must be a deis.timemaps.TimeMap or None (the model's own time); got {value!r}"
        return None
    if value is None and spec["off"] is not None:
        return None
    integer = spec["kind"] is int
    if not (_is_int(value) if integer else _is_number(value)) or not math.isfinite(value):
        kind = "an integer" if integer else "a number"
        return f"{name} must be {kind} {_range_text(spec)}; got {value!r}; set {name} to {default!r}"
    low, high = spec["low"], spec["high"]
    if value < low or value > high or (spec["above"] and value <= low):
        return f"{name} {value:g} is outside its range: {name} must be {_range_text(spec)}"
    return None


def config_problems(config):
    """Every problem of ``config``, one sentence each, in the order of the declaration."""
    for name in OPTIONS:
        problem = value_problem(name, getattr(config, name))
        if problem:
            yield problem
    c = config
    if not (_is_int(c.degree) and _is_int(c.final_degree) and _is_number(c.eta)):
        return
    if c.corrector and c.degree > MAX_CORRECTED_DEGREE:
        yield (f"degree {c.degree} with the corrector (a degree-{c.degree + 1} correction) goes astray on learned "
               f"models; set degree to {MAX_CORRECTED_DEGREE} or less, or turn the corrector off")
    if c.eta > 0:
        if c.integrand != "data":
            yield (f"eta {c.eta:g} needs integrand data: with fresh noise in every step the predicted noise and the "
                   f"v-prediction are too rough to extrapolate; set integrand to data, or eta to 0")
        if c.step_into_zero_degree > 0:
            yield (f"final_degree {c.final_degree} with eta {c.eta:g} extrapolates the added noise into sigma = 0; "
                   f"set final_degree to 0, or eta to 0")
        if c.degree > 2:
            yield f"degree {c.degree} is unstable with eta above 0; set degree to 2 or less, or eta to 0"


#: The pack's entries: for each, the configuration of each form. deis_corrected, the recommendation, was chosen by
#: benchmarks/recommendation.py (its results: benchmarks/results/recommendation.md); deis_auto by the search
#: docs/selection.md records.
CONFIGURATIONS = {
    "deis_corrected": {
        "ve": Config(degree=1, integrand="data", time_map=VPLinearTime(), corrector=True, max_step_angle=0.4,
                     corrector_data_scale=0.01, corrector_max_cfg=4.0),
        "flow": Config(degree=1, integrand="v", time_map=FlowTime(), corrector=True, max_amplification=1.5,
                       corrector_max_angle=0.15, max_step_angle=0.4, corrector_data_scale=0.05,
                       corrector_max_cfg=4.0),
    },
    "deis_auto": {
        "ve": Config(degree=2, time_map=VPLinearTime()),
        "flow": Config(degree=2, integrand="v", time_map=FlowTime(), final_degree=0, lower_order_final=False,
                       max_amplification=1.5),
    },
    # tAB1 on the denoised value, which is smooth along a noisy path where the predicted noise is not.
    "deis_sde": {form: Config(degree=1, integrand="data", final_degree=0, eta=1.0) for form in ("ve", "flow")},
}
ENTRIES = tuple(CONFIGURATIONS)


def named_config(entry, parameterisation):
    """The configuration of entry ``entry`` (a name in ``CONFIGURATIONS``) for a form (``"ve"`` or ``"flow"``)."""
    if entry not in CONFIGURATIONS:
        raise ConfigError([f"unknown entry {entry!r}; the entries are {', '.join(ENTRIES)}"])
    return CONFIGURATIONS[entry][parameterisation]


def configure(config, parameterisation, **changes):
    """A ``Config`` from an entry name or a ``Config``, for a form, with some options changed. A call of an earlier
    release that now means something else is refused with what to call instead."""
    base = named_config(config, parameterisation) if isinstance(config, str) else config
    if not isinstance(base, Config):
        raise ConfigError([f"config must be a deis.Config or one of {', '.join(ENTRIES)}; got {config!r}"])
    if changes.get("variant") == "rhork":
        raise ConfigError([REMOVED_OPTIONS["tableau"]])
    try:
        return base.replace(**changes) if changes else base
    except ConfigError as error:
        if changes.get("eta") and not base.eta:
            error.problems.append("for the stochastic entry call deis.sample_deis_sde(..., eta=...), or pass "
                                  "config=\"deis_sde\"")
            raise ConfigError(error.problems) from None
        raise
