"""The one place that turns sampler options into a checked configuration.

Every entry point (``sample_deis``, ComfyUI's KSampler entries and nodes, the WebUI) calls
``resolve``. Each rule has one message; it names the option and, where there is one, a value
that works. The ComfyUI nodes' widgets carry the same names as these options, so a refusal
names the widget too.
"""

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .coefficients import INTEGRANDS, MAX_DEGREE, TABLEAUS
from .parameterisation import Parameterisation, get_parameterisation
from .timemaps import FlowTime, TimeMap, VPLinearTime, default_time_map

MULTISTEP_VARIANTS = ("tab", "rhoab", "logrhoab", "ipndm")
VARIANTS = MULTISTEP_VARIANTS + ("rhork",)
DEFAULT_DEGREE = 3
DEFAULT_TABLEAU = "kutta3"
DEFAULT_FINAL_DEGREE = 1
#: A cubic step into sigma = 0 diverges on flow models at 10 steps (80 times deis's error).
MAX_FINAL_DEGREE = 2
#: A cubic predictor corrected at degree 4 is further from the exact result at 20 steps than DDIM at 10 on the
#: learned digits model, in log rho, rho and iPNDM (tests/test_comfy_inprocess.py); at degree 3 too, in every
#: variable.
MAX_CORRECTED_DEGREE = 2


@dataclass(frozen=True)
class Options:
    """A checked sampler configuration. ``degree`` and the multistep fields are None for rhoRK, ``tableau``
    for the multistep variants."""

    variant: str
    parameterisation: Parameterisation
    degree: Optional[int] = None
    integrand: str = "eps"
    time_map: Optional[TimeMap] = None
    corrector: bool = False
    corrector_max_amplification: Optional[float] = None
    corrector_max_step: Optional[float] = None
    corrector_max_angle: Optional[float] = None
    max_step_angle: Optional[float] = None
    final_degree: Optional[int] = DEFAULT_FINAL_DEGREE
    lower_order_final: bool = True
    max_amplification: Optional[float] = None
    eta: float = 0.0
    tableau: Optional[str] = None

    @property
    def multistep(self):
        return self.variant != "rhork"

    def key(self):
        """What the coefficients depend on (with the exact sigmas: the cache key)."""
        return (self.variant, self.parameterisation.name, self.degree, self.integrand,
                None if self.time_map is None else self.time_map.key, self.corrector,
                self.corrector_max_amplification, self.corrector_max_step, self.corrector_max_angle,
                self.max_step_angle, self.final_degree,
                self.lower_order_final, self.max_amplification, self.eta, self.tableau)


#: The recommended configuration for each form, chosen by the selection protocol of benchmarks/selection.py
#: (README, "Evidence"; docs/selection.md has the record). A tAB configuration without a ``time_map`` runs in
#: the model's own time (``resolve``'s ``model_time_map``).
RECOMMENDED = {
    "ve": dict(variant="tab", degree=2, integrand="eps", time_map=VPLinearTime(), corrector=False, final_degree=1),
    "flow": dict(variant="tab", degree=2, integrand="v", time_map=FlowTime(), corrector=False, final_degree=0,
                 lower_order_final=False, max_amplification=1.5),
}
#: The recommended configuration with the corrector, for each form: the same as ``RECOMMENDED`` where that has the
#: corrector, else the corrected configuration benchmarks/selection.py offers beside it (its rule 11).
RECOMMENDED_CORRECTED = {
    "ve": dict(variant="tab", degree=1, integrand="data", time_map=VPLinearTime(), corrector=True, final_degree=1,
               max_step_angle=0.4),
    "flow": dict(variant="tab", degree=2, integrand="v", corrector=True, final_degree=1, max_amplification=1.5,
                 corrector_max_angle=0.15, max_step_angle=0.6),
}
#: The recommended configuration with eta > 0, in either form: tAB1 on the denoised value, which is smooth along
#: a noisy path where eps_hat and v_hat are not, in the model's own time (benchmarks/stochastic.py).
RECOMMENDED_STOCHASTIC = dict(variant="tab", degree=1, integrand="data", corrector=False, final_degree=0)


def recommended_options(parameterisation="ve", stochastic=False, corrected=False):
    """The recommended configuration for ``"ve"`` or ``"flow"`` as options; with ``stochastic``, the one for
    eta > 0; with ``corrected``, the one with the corrector (``RECOMMENDED_CORRECTED``). A tAB configuration
    without a time map runs in the model's own time where the caller knows it, else the default."""
    if stochastic:
        return dict(RECOMMENDED_STOCHASTIC)
    table = RECOMMENDED_CORRECTED if corrected else RECOMMENDED
    return dict(table[get_parameterisation(parameterisation).name])


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def check_s_noise(s_noise, eta):
    """``s_noise`` scales the noise that ``eta > 0`` adds: a finite number >= 0, and 1 with eta 0."""
    if not _is_number(s_noise) or not math.isfinite(s_noise) or s_noise < 0:
        raise ValueError(f"s_noise must be a finite number of at least 0; got {s_noise!r}; set s_noise to 1 (exact)")
    if s_noise != 1 and not eta:
        raise ValueError(f"s_noise = {s_noise!r} scales noise that only eta above 0 adds; set s_noise to 1, or eta "
                         f"above 0")


def resolve(variant=None, degree=None, integrand=None, time_map=None, corrector=None, final_degree=None,
            lower_order_final=None, max_amplification=None, eta=None, tableau=None, parameterisation="ve",
            model_time_map=None, corrector_max_amplification=None, corrector_max_step=None, corrector_max_angle=None,
            max_step_angle=None, s_noise=None):
    """Check the options and fill in what is not given. Returns an ``Options``.

    With no ``variant`` the form's recommended configuration fills every option not given (the stochastic
    one with ``eta`` above 0, the corrected one with ``corrector=True``); with a ``variant``, the paper's
    defaults do (degree 3 on eps_hat, no
    correction, a degree-1 step into sigma = 0, lower_order_final). tAB's time is ``time_map`` where given
    (or where the recommended configuration fixes one), else ``model_time_map``, the model's own time where
    the caller knows the model, else ``deis.timemaps.default_time_map``.
    """
    param = get_parameterisation(parameterisation)
    if eta is None:
        eta = 0.0
    if not _is_number(eta) or not 0 <= eta <= 1:
        raise ValueError(f"eta must be a number from 0 (the ODE) to 1 (the full reverse SDE); got {eta!r}; set eta "
                         f"to a value from 0 to 1")
    eta = float(eta)
    if s_noise is not None:
        check_s_noise(s_noise, eta)
    given = dict(degree=degree, integrand=integrand, time_map=time_map, corrector=corrector,
                 final_degree=final_degree, lower_order_final=lower_order_final, max_amplification=max_amplification,
                 corrector_max_amplification=corrector_max_amplification, corrector_max_step=corrector_max_step,
                 corrector_max_angle=corrector_max_angle, max_step_angle=max_step_angle)
    if variant is None:
        base = recommended_options(param, stochastic=eta > 0, corrected=bool(corrector))
        variant = base.pop("variant")
        given = {**{k: None for k in given}, **base, **{k: v for k, v in given.items() if v is not None}}
    if variant not in VARIANTS:
        raise ValueError(f"unknown DEIS variant {variant!r}; set variant to one of {', '.join(VARIANTS)}")
    if variant == "rhork":
        return _resolve_runge_kutta(param, given, eta, tableau)
    if tableau is not None:
        raise ValueError(f"tableau applies only to variant 'rhork', not {variant!r}; set variant to 'rhork', or leave "
                         f"tableau out")

    degree = DEFAULT_DEGREE if given["degree"] is None else given["degree"]
    if not _is_int(degree) or not 0 <= degree <= MAX_DEGREE:
        raise ValueError(f"degree must be an integer from 0 to {MAX_DEGREE} (tAB1 is degree 1); got {degree!r}; set "
                         f"degree to one of 0 to {MAX_DEGREE}")
    integrand = "eps" if given["integrand"] is None else given["integrand"]
    if integrand not in INTEGRANDS:
        raise ValueError(f"unknown integrand {integrand!r}; set integrand to one of {', '.join(INTEGRANDS)}")
    time_map = given["time_map"]
    if variant == "tab":
        if time_map is None:
            time_map = default_time_map(param.name) if model_time_map is None else model_time_map
        if not isinstance(time_map, TimeMap):
            raise ValueError(f"time_map must be a deis.timemaps.TimeMap; got {time_map!r}")
    elif time_map is not None:
        raise ValueError(f"time_map applies only to variant 'tab', not {variant!r}; set variant to 'tab', or leave "
                         f"time_map out")
    corrector = False if given["corrector"] is None else given["corrector"]
    if not isinstance(corrector, (bool, np.bool_)):
        raise ValueError(f"corrector must be True or False; got {corrector!r}; set corrector to True or False")
    final = min(DEFAULT_FINAL_DEGREE, degree, 0 if eta else MAX_FINAL_DEGREE) if given["final_degree"] is None \
        else given["final_degree"]
    if not _is_int(final) or not 0 <= final <= MAX_FINAL_DEGREE:
        raise ValueError(f"final_degree must be an integer from 0 to {MAX_FINAL_DEGREE} (a cubic step into "
                         f"sigma = 0 diverges); got {final!r}; set final_degree to 1")
    if final > degree:
        raise ValueError(f"final_degree = {final} is above degree = {degree}: the step into sigma = 0 is never of a "
                         f"higher degree than the others; set final_degree to {degree} or less")
    lower_order_final = True if given["lower_order_final"] is None else given["lower_order_final"]
    if not isinstance(lower_order_final, (bool, np.bool_)):
        raise ValueError(f"lower_order_final must be True or False; got {lower_order_final!r}; set lower_order_final "
                         f"to True or False")
    corrector_cap, corrector_step = given["corrector_max_amplification"], given["corrector_max_step"]
    if corrector_cap is not None and not (_is_number(corrector_cap) and corrector_cap >= 1):
        raise ValueError(f"corrector_max_amplification must be a number of at least 1; got {corrector_cap!r}; set "
                         f"corrector_max_amplification to 1.5, say, or leave it out")
    if corrector_step is not None and not (_is_number(corrector_step) and corrector_step > 0):
        raise ValueError(f"corrector_max_step must be a positive number (a step length in log rho); "
                         f"got {corrector_step!r}; set corrector_max_step to 1, say, or leave it out")
    if not corrector:
        for name in ("corrector_max_amplification", "corrector_max_step", "corrector_max_angle"):
            if given[name] is not None:
                raise ValueError(f"{name} limits the corrector, which is off; set corrector to True, or leave {name} "
                                 f"out")
    angles = {name: given[name] for name in ("corrector_max_angle", "max_step_angle")}
    for name, angle in angles.items():
        if angle is not None and not (_is_number(angle) and 0 < angle <= math.pi / 2):
            raise ValueError(f"{name} must be an angle in radians above 0 and at most pi / 2 (a step from pure noise "
                             f"to data spans pi / 2); got {angle!r}; set {name} to 0.3, say, or leave it out")
    cap = given["max_amplification"]
    if cap is not None:
        if not _is_number(cap) or not cap >= 1 or not math.isfinite(cap):
            raise ValueError(f"max_amplification must be a number of at least 1 (1 allows only even steps' "
                             f"weights); got {cap!r}; set max_amplification to 1.5, say, or leave it out")
        cap = float(cap)
    if eta > 0 and integrand != "data":
        raise ValueError("eta above 0 needs integrand 'data': with fresh noise in every step the predicted noise "
                         "and the v-prediction are too rough to extrapolate; set integrand to 'data' (or eta to 0)")
    if corrector and degree > MAX_CORRECTED_DEGREE:
        raise ValueError(f"degree {degree} with the corrector (a degree-{degree + 1} correction) derails on a learned "
                         f"model; set degree to {MAX_CORRECTED_DEGREE} or less, or corrector to False")
    if eta > 0 and final > 0:
        raise ValueError(f"final_degree {final} with eta above 0 extrapolates the injected noise into sigma = 0 (the "
                         f"step into 0 follows the predicted noise); set final_degree to 0 (or eta to 0)")
    if eta > 0 and degree > 2:
        raise ValueError(f"degree {degree} is unstable with eta above 0; set degree to 2 or less")
    return Options(variant=variant, parameterisation=param, degree=int(degree), integrand=integrand,
                   time_map=time_map, corrector=bool(corrector),
                   corrector_max_amplification=None if corrector_cap is None else float(corrector_cap),
                   corrector_max_step=None if corrector_step is None else float(corrector_step),
                   **{name: None if angle is None else float(angle) for name, angle in angles.items()},
                   final_degree=int(final),
                   lower_order_final=bool(lower_order_final), max_amplification=cap, eta=eta)


def _resolve_runge_kutta(param, given, eta, tableau):
    for name in ("degree", "integrand", "time_map", "max_amplification", "corrector", "final_degree",
                 "lower_order_final", "corrector_max_amplification", "corrector_max_step", "corrector_max_angle",
                 "max_step_angle"):
        if given[name] is not None:
            raise ValueError(f"{name} applies to the multistep variants; rhoRK's order comes from its tableau, "
                             f"and it ends with a DDIM step into sigma = 0; leave {name} out with variant 'rhork'")
    if eta > 0:
        raise ValueError("eta applies to the multistep variants; rhoRK integrates the ODE only; set eta to 0 with "
                         "variant 'rhork'")
    tableau = DEFAULT_TABLEAU if tableau is None else tableau
    if tableau not in TABLEAUS:
        raise ValueError(f"unknown Runge-Kutta tableau {tableau!r}; set tableau to one of {', '.join(TABLEAUS)}")
    return Options(variant="rhork", parameterisation=param, final_degree=None, lower_order_final=False,
                   tableau=tableau)
