"""Checked options and cached per-step coefficients: everything the sampler loop needs, on the host.

A plan is computed once per (exact float64 sigmas and every option) and then shared
through the cache. Every number in it is a Python float, so the loop applies it to tensors
of any dtype and device without a host-device synchronisation.

At each evaluation the loop forms the slope ``h = slope_x * x - slope_d * D``: ``eps_hat``
for the eps integrand, ``v_hat`` for v, ``D`` for data (see deis.coefficients). Every update
has one form,

    x_next = x_scale * x_0 + d_scale * D_0 + sum_k weights[k] * h_k   (+ noise * z)

where ``x_0`` and ``D_0`` are the state and denoised value at the start of the step. For a
multistep step the ``h_k`` are the history, newest first; for a Runge-Kutta stage or step
they are the step's stages in order. A stochastic step (``eta > 0``) adds ``noise * z`` with
fresh standard normal ``z``. The eps integrand uses the data form (``x_scale = 0``, ``d_scale = alpha_next``):
finite at the flow start and exact DDIM for ``weights = (sigma_next,)``. The v integrand
scales the VP state: ``x_scale = s_next / s_0`` with ``s = sqrt(alpha^2 + sigma^2)``. The data
integrand's slopes are the denoised values themselves (``slope_x = 0``, ``slope_d = -1``) and
its update is ``x_next / sigma_next = x_0 / sigma_0 + sum_k C_k D_k``.
"""

from collections import namedtuple

import numpy as np

from .cache import default_cache
from .coefficients import (INTEGRANDS, MAX_DEGREE, TABLEAUS, ab_coefficients, data_form_weights,
                           interpolation_nodes, stable_degrees, step_degrees)
from .parameterisation import get_parameterisation
from .timemaps import FlowTime, TimeMap, VPLinearTime, default_time_map

MULTISTEP_VARIANTS = ("tab", "rhoab", "logrhoab", "ipndm", "ipndm_v")
VARIANTS = MULTISTEP_VARIANTS + ("rhork",)
DEFAULT_DEGREE = 3
DEFAULT_TABLEAU = "kutta3"

Update = namedtuple("Update", "x_scale d_scale weights")
Stage = namedtuple("Stage", "sigma_index slope_x slope_d update")
#: ``noise``: the standard deviation of the fresh noise added after the update (stochastic steps; else 0).
Step = namedtuple("Step", "slope_x slope_d stages update noise", defaults=(0.0,))
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


#: The recommended configuration for each form, chosen by the selection protocol of
#: benchmarks/selection.py over seven problem families (README, "Evidence"). VE form: tAB2 on eps_hat
#: in the paper's VP time (the method of ComfyUI's deis, with exact coefficients), its step into
#: sigma = 0 a degree-1 step in rho. Flow form: tAB2 on v_hat in flow time, each step's degree capped
#: where uneven steps would make its weights amplify history errors 1.5 times more than even ones.
RECOMMENDED = {
    "ve": dict(variant="tab", degree=2, integrand="eps", time_map=VPLinearTime()),
    "flow": dict(variant="tab", degree=2, integrand="v", time_map=FlowTime(), lower_order_final=False,
                 max_amplification=1.5),
}


#: The recommended configuration with eta > 0, in either form: tAB1 on the denoised value, which is smooth
#: along a noisy path where eps_hat and v_hat are not, in the model's own time (benchmarks/stochastic.py).
RECOMMENDED_STOCHASTIC = dict(variant="tab", degree=1, integrand="data")


def recommended_options(parameterisation, stochastic=False):
    """The recommended configuration for ``"ve"`` or ``"flow"``: ``variant``, ``degree``, ``integrand``,
    ``time_map`` and the final-step and stability options where they differ from the defaults; with
    ``stochastic``, the one for eta > 0 (tAB's time is then the default, or the model's where known)."""
    if stochastic:
        return dict(RECOMMENDED_STOCHASTIC)
    return dict(RECOMMENDED[get_parameterisation(parameterisation).name])


def resolve_options(variant=None, degree=None, tableau=None, parameterisation="ve", time_map=None,
                    lower_order_final=None, integrand=None, eta=None, final_degree=None, max_amplification=None):
    """Check the options and fill in defaults. Returns a dict of the resolved options.

    With no ``variant`` the form's recommended configuration fills every option not given; with a
    ``variant`` the paper's defaults do (degree 3, eps).
    """
    param = get_parameterisation(parameterisation)
    if variant is None:
        given = dict(degree=degree, integrand=integrand, time_map=time_map, lower_order_final=lower_order_final,
                     max_amplification=max_amplification)
        recommended = {**recommended_options(param, stochastic=bool(eta)),
                       **{k: v for k, v in given.items() if v is not None}}
        recommended.setdefault("time_map", None)
        variant, degree, integrand, time_map = (recommended[k] for k in ("variant", "degree", "integrand", "time_map"))
        lower_order_final = recommended.get("lower_order_final")
        max_amplification = recommended.get("max_amplification")
    if variant not in VARIANTS:
        raise ValueError(f"unknown DEIS variant {variant!r}; expected one of {', '.join(VARIANTS)}")
    eta = 0.0 if eta is None else eta
    if isinstance(eta, bool) or not isinstance(eta, (int, float, np.floating, np.integer)) or not 0 <= eta <= 1:
        raise ValueError(f"eta must be a number from 0 (the ODE) to 1 (the full reverse SDE); got {eta!r}")
    eta = float(eta)
    integrand = "eps" if integrand is None else integrand
    if integrand not in INTEGRANDS:
        raise ValueError(f"unknown integrand {integrand!r}; expected one of {', '.join(INTEGRANDS)}")
    if variant == "rhork":
        if integrand != "eps":
            raise ValueError(f"integrand {integrand!r} applies to the multistep variants; rhoRK integrates eps_hat")
        if degree is not None:
            raise ValueError("degree applies to the multistep variants; rhoRK's order comes from its tableau")
        if time_map is not None:
            raise ValueError("time_map applies only to tAB; rhoRK steps in rho")
        if lower_order_final is not None:
            raise ValueError("lower_order_final applies to the multistep variants; "
                             "rhoRK always ends with a DDIM step into sigma = 0")
        if eta:
            raise ValueError("eta applies to the multistep variants; rhoRK integrates the ODE only")
        if final_degree is not None or max_amplification is not None:
            raise ValueError("final_degree and max_amplification apply to the multistep variants, not rhoRK")
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
    if final_degree is None:
        final_degree = 1
    elif not lower_order_final:
        raise ValueError("final_degree applies with lower_order_final; without it the step into sigma = 0 "
                         "takes the full degree")
    if isinstance(final_degree, bool) or not isinstance(final_degree, (int, np.integer)) or not (
            0 <= final_degree <= MAX_DEGREE):
        raise ValueError(f"final_degree must be an integer from 0 to {MAX_DEGREE}; got {final_degree!r}")
    if max_amplification is not None:
        if isinstance(max_amplification, bool) or not isinstance(max_amplification, (int, float, np.floating)) or (
                not max_amplification >= 1):
            raise ValueError(f"max_amplification must be a number of at least 1 (1 allows only even steps' "
                             f"weights); got {max_amplification!r}")
        max_amplification = float(max_amplification)
    return dict(variant=variant, degree=int(degree), parameterisation=param, time_map=time_map,
                lower_order_final=lower_order_final, integrand=integrand, eta=eta, final_degree=int(final_degree),
                max_amplification=max_amplification)


def cache_key(sigmas, options):
    time_map = options.get("time_map")
    return (options["variant"], options.get("degree"), options.get("tableau"), options["parameterisation"].name,
            None if time_map is None else time_map.key, options.get("lower_order_final"),
            options.get("integrand"), options.get("eta"), options.get("final_degree"), options.get("max_amplification"),
            sigmas.tobytes())


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
    time_map, eta = options["time_map"], options["eta"]
    rho, alpha = param.rho(sigmas), param.alpha(sigmas)
    v = interpolation_nodes(variant, rho, time_map)
    lower_order_final = options["lower_order_final"]
    degrees = step_degrees(v, options["degree"], rho, lower_order_final, options["final_degree"])
    if integrand != "eps" and sigmas[-1] == 0:
        # The v and data integrands step into sigma = 0 with DDIM, x = D: exact where the data has
        # no spread (the kept region of an inpainting mask), which no polynomial in v is; the data
        # integrand's measure u = 1 / rho is infinite there.
        degrees[-1] = 0
    if options["max_amplification"]:
        degrees = stable_degrees(variant, rho, degrees, time_map, integrand, options["max_amplification"],
                                 final_in_rho=lower_order_final)
    ddim_into_zero = sigmas[-1] == 0 and degrees[-1] == 0
    if eta and integrand == "data":
        updates, noise = sde_updates(sigmas, alpha, rho, degrees, variant, time_map, eta)
    else:
        updates, noise = ode_updates(sigmas, alpha, rho, degrees, variant, time_map, integrand, eta, param,
                                     final_in_rho=lower_order_final)
    if ddim_into_zero and integrand != "eps":
        updates[-1] = Update(0.0, 1.0, (0.0,))  # x = D: degree 0 in phi would not be DDIM, u is infinite
    if integrand == "eps":
        slope_x, slope_d = 1.0 / sigmas[:-1], alpha[:-1] / sigmas[:-1]
    elif integrand == "v":
        scale = np.hypot(alpha, sigmas)
        slope_x, slope_d = alpha[:-1] / (sigmas[:-1] * scale[:-1]), scale[:-1] / sigmas[:-1]
    else:
        slope_x, slope_d = np.zeros(len(updates)), np.full(len(updates), -1.0)
    steps = tuple(Step(float(slope_x[i]), float(slope_d[i]), (), updates[i], float(noise[i]))
                  for i in range(len(updates)))
    return Plan("multistep", steps, int(degrees.max()) + 1, (), options)


def ode_updates(sigmas, alpha, rho, degrees, variant, time_map, integrand, eta, param, final_in_rho=False):
    """The ODE step of every integrand; with ``eta > 0``, the ancestral split: the ODE down to
    ``sigma_down``, scaled to ``alpha_{i+1}``, plus fresh noise (deis.parameterisation)."""
    if eta:
        sigma_end = np.where(sigmas[1:] > 0, param.ancestral_sigma_down(sigmas[:-1], sigmas[1:], eta), 0.0)
        alpha_end, rho_end = param.alpha(sigma_end), param.rho(sigma_end)
        noise = alpha[1:] * np.sqrt(np.maximum(rho[1:] ** 2 - rho_end ** 2, 0.0))
        C = ab_coefficients(variant, rho, degrees, time_map, integrand, ends=rho_end, final_in_rho=final_in_rho)
    else:
        sigma_end, alpha_end, noise = sigmas[1:], alpha[1:], np.zeros(len(degrees))
        C = ab_coefficients(variant, rho, degrees, time_map, integrand, final_in_rho=final_in_rho)
    if integrand == "eps":
        updates = [Update(0.0, float(alpha_end[i]), tuple(w.tolist()))
                   for i, w in enumerate(data_form_weights(sigma_end, alpha_end, C))]
    else:
        if integrand == "v":
            scale, scale_end = np.hypot(alpha, sigmas), np.hypot(alpha_end, sigma_end)
        else:
            scale, scale_end = sigmas, sigma_end
        with np.errstate(divide="ignore", invalid="ignore"):  # the step into 0 is replaced by x = D
            updates = [scaled_update(scale[i], scale_end[i], c) for i, c in enumerate(C)]
    if eta:
        updates = [rescaled(update, gain) for update, gain in zip(updates, alpha[1:] / alpha_end)]
    return updates, noise


def sde_updates(sigmas, alpha, rho, degrees, variant, time_map, eta):
    """The data integrand with ``eta > 0``: the SDE's own exponential integrator (docs/stochastic.md).

    ``xh_{i+1} = (rho_{i+1} / rho_i)^k xh_i + rho_{i+1}^k * integral of D d(rho^-k)`` with
    ``k = 1 + eta``, plus noise of standard deviation ``sigma_{i+1} sqrt(1 - (rho_{i+1} / rho_i)^(2 eta))``.
    ``eta`` is DPM-Solver++(2M) SDE's: at degree 1 in log rho this is its Heun form.
    """
    power = 1.0 + eta
    C = ab_coefficients(variant, rho, degrees, time_map, "data", power=power)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(np.isinf(rho[:-1]), 0.0, rho[1:] / rho[:-1])
        noise = sigmas[1:] * np.sqrt(-np.expm1(2 * eta * np.log(ratio)))
        # alpha_i rho_i^k = sigma_i rho_i^(k - 1): infinite at the flow start, where x_i drops out.
        end = alpha[1:] * rho[1:] ** power
        x_scale = end / (sigmas[:-1] * rho[:-1] ** (power - 1))
        updates = [Update(float(x_scale[i]), 0.0, tuple((end[i] * c).tolist())) for i, c in enumerate(C)]
    noise[sigmas[1:] == 0] = 0.0  # the step into 0 is replaced by x = D
    return updates, noise


def scaled_update(scale, scale_end, C):
    """``y_end = y + sum_j C_j h_j`` for ``y = x / scale``: the VP state (v) or ``x / sigma`` (data)."""
    return Update(float(scale_end / scale), 0.0, tuple((scale_end * C).tolist()))


def rescaled(update, gain):
    """The update times ``gain``: from ``x_down`` to ``(alpha_{i+1} / alpha_down) x_down``."""
    if gain == 1.0:
        return update
    return Update(update.x_scale * gain, update.d_scale * gain, tuple(w * gain for w in update.weights))


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
            steps.append(Step(*slope(sigmas[i]), (), ddim))
            continue
        h = rho[i + 1] - rho[i]
        stages = []
        for c, row in zip(tableau.c[1:], tableau.a[1:]):
            sigma_s = float(sigmas[i + 1] if c == 1 else param.sigma_from_rho(rho[i] + c * h))
            alpha_s = float(param.alpha(sigma_s))
            stages.append(Stage(len(stage_sigmas), *slope(sigma_s), update(sigma_s, alpha_s, h, row)))
            stage_sigmas.append(float(sigma_s))
        steps.append(Step(*slope(sigmas[i]), tuple(stages), update(sigmas[i + 1], alpha[i + 1], h, tableau.b)))
    return Plan("runge_kutta", tuple(steps), tableau.stages, tuple(stage_sigmas), options)
