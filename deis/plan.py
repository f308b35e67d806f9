"""Checked options and cached per-step coefficients: everything the sampler loop needs, on the host.

A plan is computed once per (exact float64 sigmas and every option) and then shared
through the cache. Every number in it is a Python float, so the loop applies it to tensors
of any dtype and device without a host-device synchronisation.

At each evaluation the loop forms the slope ``h = slope_x * x - slope_d * D``: ``eps_hat``
for the eps integrand, ``v_hat`` for v (see deis.coefficients). Every update has one form,

    x_next = x_scale * x_0 + d_scale * D_0 + sum_k weights[k] * h_k

where ``x_0`` and ``D_0`` are the state and denoised value at the start of the step. For a
multistep step the ``h_k`` are the history, newest first (for a correction, the value at
the step's end comes first); for a Runge-Kutta stage or step they are the step's stages in
order. The eps integrand uses the data form (``x_scale = 0``, ``d_scale = alpha_next``):
finite at the flow start and exact DDIM for ``weights = (sigma_next,)``. The v integrand
scales the VP state: ``x_scale = s_next / s_0`` with ``s = sqrt(alpha^2 + sigma^2)``.
"""

from collections import namedtuple

import numpy as np

from .cache import default_cache
from .coefficients import (INTEGRANDS, MAX_DEGREE, TABLEAUS, ab_coefficients, corrector_coefficients,
                           corrector_degrees, data_form_weights, interpolation_nodes, parasitic_radius,
                           step_degrees)
from .parameterisation import get_parameterisation
from .timemaps import TimeMap, default_time_map

MULTISTEP_VARIANTS = ("tab", "rhoab", "logrhoab", "ipndm", "ipndm_v")
VARIANTS = MULTISTEP_VARIANTS + ("rhork",)
DEFAULT_DEGREE = 3
DEFAULT_TABLEAU = "kutta3"
#: With ``stable=True``: the largest compounded parasitic growth a schedule may build up.
STABILITY_BOUND = 4.0

Update = namedtuple("Update", "x_scale d_scale weights")
Stage = namedtuple("Stage", "sigma_index slope_x slope_d update")
#: ``correction``: the corrector for this step, applied once the model has been run at its end (or None).
Step = namedtuple("Step", "slope_x slope_d stages update correction")
Plan = namedtuple("Plan", "family steps history stage_sigmas options")


def host_sigmas(sigmas):
    """``sigmas`` as a checked float64 numpy array (a torch tensor is copied to the host once)."""
    if hasattr(sigmas, "detach"):
        sigmas = sigmas.detach().to("cpu").double().numpy()
    sigmas = np.asarray(sigmas, dtype=np.float64)
    if sigmas.ndim != 1:
        raise ValueError(f"sigmas must be a 1-D schedule; got shape {tuple(sigmas.shape)}")
    if sigmas.size < 2:
        raise ValueError(f"sigmas must hold at least 2 values (a start and an end); got {sigmas.size}")
    if not np.all(np.isfinite(sigmas)):
        raise ValueError(f"sigmas must be finite; got {sigmas[~np.isfinite(sigmas)][0]} in {sigmas.tolist()}")
    steps = np.diff(sigmas)
    if np.any(steps >= 0):
        i = int(np.flatnonzero(steps >= 0)[0])
        raise ValueError(f"sigmas must decrease strictly; sigma[{i}] = {sigmas[i]:g} is followed by "
                         f"sigma[{i + 1}] = {sigmas[i + 1]:g}")
    if sigmas[-1] < 0:
        raise ValueError(f"sigmas must not be negative; the schedule ends at {sigmas[-1]:g}")
    return sigmas


def resolve_options(variant="tab", degree=None, tableau=None, parameterisation="ve", time_map=None,
                    lower_order_final=None, stable=None, integrand=None, corrector=None):
    """Check the options and fill in defaults. Returns a dict of the resolved options."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown DEIS variant {variant!r}; expected one of {', '.join(VARIANTS)}")
    param = get_parameterisation(parameterisation)
    integrand = "eps" if integrand is None else integrand
    if integrand not in INTEGRANDS:
        raise ValueError(f"unknown integrand {integrand!r}; expected one of {', '.join(INTEGRANDS)}")
    corrector = False if corrector is None else corrector
    if not isinstance(corrector, (bool, np.bool_)):
        raise ValueError(f"corrector must be True or False; got {corrector!r}")
    if variant == "rhork":
        if integrand != "eps" or corrector:
            raise ValueError("integrand 'v' and corrector apply to the multistep variants; rhoRK integrates eps_hat")
        if degree is not None:
            raise ValueError("degree applies to the multistep variants; rhoRK's order comes from its tableau")
        if time_map is not None:
            raise ValueError("time_map applies only to tAB; rhoRK steps in rho")
        if lower_order_final is not None:
            raise ValueError("lower_order_final applies to the multistep variants; "
                             "rhoRK always ends with a DDIM step into sigma = 0")
        if stable is not None:
            raise ValueError("stable applies to the multistep variants; rhoRK has no history to limit")
        tableau = DEFAULT_TABLEAU if tableau is None else tableau
        if tableau not in TABLEAUS:
            raise ValueError(f"unknown Runge-Kutta tableau {tableau!r}; expected one of {', '.join(TABLEAUS)}")
        return dict(variant=variant, tableau=tableau, parameterisation=param)

    if tableau is not None:
        raise ValueError(f"tableau applies only to variant 'rhork', not {variant!r}")
    degree = DEFAULT_DEGREE if degree is None else degree
    if isinstance(degree, bool) or not isinstance(degree, (int, np.integer)) or not 0 <= degree <= MAX_DEGREE:
        raise ValueError(f"degree must be an integer from 0 to {MAX_DEGREE} (tAB1 is degree 1); got {degree!r}")
    if variant == "tab":
        if time_map is None:
            time_map = default_time_map(param.name)
        elif not isinstance(time_map, TimeMap):
            raise ValueError(f"time_map must be a deis.timemaps.TimeMap; got {time_map!r}")
    elif time_map is not None:
        raise ValueError(f"time_map applies only to tAB, not {variant!r}")
    lower_order_final = True if lower_order_final is None else bool(lower_order_final)
    stable = False if stable is None else bool(stable)
    if stable and (integrand != "eps" or corrector):
        raise ValueError("stable applies to the eps integrand without corrector: its stability bound is "
                         "computed for that recurrence")
    return dict(variant=variant, degree=int(degree), parameterisation=param, time_map=time_map,
                lower_order_final=lower_order_final, stable=stable, integrand=integrand, corrector=bool(corrector))


def cache_key(sigmas, options):
    time_map = options.get("time_map")
    return (options["variant"], options.get("degree"), options.get("tableau"), options["parameterisation"].name,
            None if time_map is None else time_map.key, options.get("lower_order_final"), options.get("stable"),
            options.get("integrand"), options.get("corrector"), sigmas.tobytes())


def get_plan(sigmas, cache=None, **options):
    """The cached plan for a schedule and sampler options (see ``resolve_options``)."""
    options = resolve_options(**options)
    sigmas = host_sigmas(sigmas)
    options["parameterisation"].check_sigmas(sigmas)
    cache = default_cache if cache is None else cache
    return cache.get(cache_key(sigmas, options), lambda: compute_plan(sigmas, options))


def compute_plan(sigmas, options):
    if options["variant"] == "rhork":
        return runge_kutta_plan(sigmas, options)
    return multistep_plan(sigmas, options)


def multistep_plan(sigmas, options):
    param, variant, integrand = options["parameterisation"], options["variant"], options["integrand"]
    time_map = options["time_map"]
    rho, alpha = param.rho(sigmas), param.alpha(sigmas)
    v = interpolation_nodes(variant, rho, time_map)
    degrees = step_degrees(v, options["degree"], sigmas[-1] == 0, options["lower_order_final"])
    if integrand == "v" and sigmas[-1] == 0:
        # The v integrand steps into sigma = 0 with DDIM, x = D: exact where the data has no
        # spread (the kept region of an inpainting mask), which no polynomial in v is.
        degrees[-1] = 0
    C = ab_coefficients(variant, rho, degrees, time_map, integrand)
    if options.get("stable"):
        C, degrees = stability_limited(variant, rho, degrees, C, time_map)
    ddim_into_zero = sigmas[-1] == 0 and degrees[-1] == 0
    corrections, history = [None] * len(C), int(degrees.max()) + 1
    if options["corrector"]:
        correction_degrees = corrector_degrees(v, rho, degrees, integrand)
        corrections = corrector_coefficients(variant, rho, correction_degrees, time_map, integrand)
        history = max(history, int(correction_degrees.max()) + 1)
        if ddim_into_zero and len(C) >= 2:
            corrections[-2] = None  # x = D discards the state it starts from
    if integrand == "eps":
        slope_x, slope_d = 1.0 / sigmas[:-1], alpha[:-1] / sigmas[:-1]
        updates = [Update(0.0, float(alpha[i + 1]), tuple(w.tolist()))
                   for i, w in enumerate(data_form_weights(sigmas, alpha, C))]
        corrected = [None if w is None else Update(0.0, float(alpha[i + 1]), tuple(w.tolist()))
                     for i, w in enumerate(data_form_weights(sigmas, alpha, corrections, lead=1))]
    else:
        scale = np.hypot(alpha, sigmas)
        slope_x, slope_d = alpha[:-1] / (sigmas[:-1] * scale[:-1]), scale[:-1] / sigmas[:-1]
        updates = [vp_update(scale, i, c) for i, c in enumerate(C)]
        corrected = [None if c is None else vp_update(scale, i, c) for i, c in enumerate(corrections)]
        if ddim_into_zero:
            updates[-1] = Update(0.0, 1.0, (0.0,))  # degree 0 in v would be a step in phi, not DDIM
    steps = tuple(Step(float(slope_x[i]), float(slope_d[i]), (), updates[i], corrected[i]) for i in range(len(C)))
    return Plan("multistep", steps, history, (), options)


def vp_update(scale, i, C):
    """``x_vp_{i+1} = x_vp_i + sum_j C_j v_hat_j`` with ``x = s x_vp``."""
    return Update(float(scale[i + 1] / scale[i]), 0.0, tuple((scale[i + 1] * C).tolist()))


def stability_limited(variant, rho, degrees, C, time_map, bound=STABILITY_BOUND):
    """Lower step degrees until the stiffest mode's parasitic growth, compounded along the steps, stays below ``bound``.

    ``parasitic_radius`` is each step's growth factor for a perturbation of a direction where the
    data has no spread. Isolated factors a little above 1 are harmless (the paper's schedule
    has them); a run of them, as Karras-type schedules give at 8 to 20 steps, compounds into a
    blow-up on a learned model. Steps are lowered one degree at a time, in order.
    """
    degrees = degrees.copy()
    radius = parasitic_radius(rho, C, degrees)
    growth = 1.0
    for i in range(len(C)):
        while degrees[i] > 0 and growth * radius[i] > bound:
            degrees[i] -= 1
            only_this = np.where(np.arange(len(C)) == i, degrees, 0)
            C[i] = ab_coefficients(variant, rho, only_this, time_map)[i]
            radius[i] = parasitic_radius(rho, C, only_this)[i]
        growth = max(1.0, growth * radius[i])
    return C, degrees


def runge_kutta_plan(sigmas, options):
    """Classical RK in rho on ``d xh / d rho = eps_hat``; a stage at ``rho_s`` runs the model at ``sigma(rho_s)``.

    The flow start (rho = inf) and the step into sigma = 0 are DDIM steps: RK cannot start
    from an infinite rho, and a stage at sigma = 0 has no eps_hat.
    """
    param, tableau = options["parameterisation"], TABLEAUS[options["tableau"]]
    rho, alpha = param.rho(sigmas), param.alpha(sigmas)
    stage_sigmas, steps = [], []

    def update(sigma_to, alpha_to, h, row):
        history = alpha_to * h * np.asarray(row[1:], dtype=np.float64)
        return Update(0.0, float(alpha_to), (float(sigma_to - history.sum()),) + tuple(history.tolist()))

    def slope(sigma):
        return float(1.0 / sigma), float(param.alpha(sigma) / sigma)

    for i in range(sigmas.size - 1):
        if not np.isfinite(rho[i]) or sigmas[i + 1] == 0:
            ddim = Update(0.0, float(alpha[i + 1]), (float(sigmas[i + 1]),))
            steps.append(Step(*slope(sigmas[i]), (), ddim, None))
            continue
        h = rho[i + 1] - rho[i]
        stages = []
        for c, row in zip(tableau.c[1:], tableau.a[1:]):
            sigma_s = float(sigmas[i + 1] if c == 1 else param.sigma_from_rho(rho[i] + c * h))
            alpha_s = float(param.alpha(sigma_s))
            stages.append(Stage(len(stage_sigmas), *slope(sigma_s), update(sigma_s, alpha_s, h, row)))
            stage_sigmas.append(float(sigma_s))
        steps.append(Step(*slope(sigmas[i]), tuple(stages), update(sigmas[i + 1], alpha[i + 1], h, tableau.b), None))
    return Plan("runge_kutta", tuple(steps), tableau.stages, tuple(stage_sigmas), options)
