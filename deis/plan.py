"""The plan: every coefficient the sampler loop applies, computed once per schedule on the host.

Each step is DEIS's exponential integrator (Zhang & Chen, arXiv 2204.13902: the probability-flow ODE's exact
solution with its linear part integrated, the noise term extrapolated by tAB-DEIS's polynomial), in the state of
the chosen integrand (DPM-Solver++'s data-prediction form for ``data``, arXiv 2211.01095), corrected by UniPC's
UniC (arXiv 2302.04867) where the configuration asks; docs/math.md derives each.

A plan is computed once per (exact float64 sigmas, configuration, form) and shared through the
cache. Every number in it is a Python float, so the loop applies it to tensors of any dtype and
device without a host-device synchronisation.

A multistep plan follows one integrand (deis.coefficients): the loop keeps the history of its
slopes at the points where the model was called: ``D`` itself (data), or ``h = a x - b D`` with
``(a, b) = Step.slope`` (``eps_hat``, ``v_hat``). Each step is an ``Update``,

    x_next = x_scale * x + d_scale * D + sum_j weights[j] * h_j        (newest slope first)

which is the exponential-integrator step ``y_next = y + sum_j C_j h_j`` in the integrand's state
``y = x / scale(sigma)``, written out in x: ``x_scale = scale_next / scale`` and
``weights = scale_next * C``. ``d_scale`` is 0 but in one step: a DDIM step from pure noise
(sigma = 1 on a flow model) with the eps integrand, ``x_next = alpha_next D + sigma_next eps_hat``,
whose state ``x / alpha`` is infinite there. A stochastic step adds ``noise * z``.

The correction (UniC, an Adams-Moulton step) is applied once the model has been called at the
predicted point: the same step taken again over one more node, the slope there. Both start from
the same state, so the correction moves the predicted point by the difference of the two:
``x += sum_j correction[j] * h_j``. The history keeps the slope at the predicted point (no second
model call).

The step into sigma = 0 always follows ``eps_hat``, in rho (analytic there, and exact where the
data has no spread, such as an inpainting mask's kept region), from the corrected state, with the
last correction scaled by ``cos(phi)`` (``carried_into_zero``): a degree-0 step is
``x = D + cos(phi) (x_corrected - x_predicted) / alpha``, DDIM that keeps the last correction as far
as the flow to sigma = 0 does. With the v or data integrand the loop keeps the few ``eps_hat`` it
needs for it.

Any schedule: a sigma repeated exactly is a step of length 0, dropped before the plan
(``distinct_sigmas``). A sigma nearly repeated is kept and sampled, but left out of every polynomial
whose other nodes it nearly coincides with (``coefficients.step_nodes``): its weight there is 0 and
the polynomial reaches one node further back, so no weight grows like the inverse of the gap.
"""

import math
from collections import namedtuple

import numpy as np

from .cache import default_cache
from .coefficients import (FEW_STEPS, FINAL_STEP_MAX_RHO, RHO, TABLEAUS, capped_degrees, lagrange_integrals,
                           multistep_weights, nodes_of, step_nodes, variable_of, without_near_repeats,
                           zero_step_nodes)
from .config import Config, ConfigError
from .parameterisation import get_parameterisation
from .timemaps import default_time_map

Update = namedtuple("Update", "x_scale d_scale weights")
#: One multistep step. ``correction``: the weights of the previous step's correction, applied at this step's
#: model call (None where there is none); ``update`` reads the history, or with ``on_eps_hat`` the kept
#: ``eps_hat`` (the step into sigma = 0); ``keep_eps_hat``: ``(1 / sigma, alpha / sigma)`` where the step
#: into sigma = 0 needs this point's ``eps_hat``, else None. ``corrected_update``: the correction and the update
#: as one update (``x_scale (x + K h) + C h`` is ``x_scale x + (x_scale K + C) h``), where both read the history;
#: the loop then applies that alone, one pass over x fewer. None where the step has no correction or its update
#: reads the kept ``eps_hat``.
Step = namedtuple("Step", "slope correction update noise on_eps_hat keep_eps_hat corrected_update")
#: A multistep plan: its steps, and how many slopes the loop keeps.
Plan = namedtuple("Plan", "steps history")
Stage = namedtuple("Stage", "sigma_index slope update")
RungeKuttaStep = namedtuple("RungeKuttaStep", "slope stages update")
RungeKuttaPlan = namedtuple("RungeKuttaPlan", "steps stage_sigmas tableau")


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
    if np.any(steps > 0):
        i = int(np.flatnonzero(steps > 0)[0])
        raise ValueError(f"sigmas must decrease; sigma[{i}] = {sigmas[i]:g} is followed by the larger "
                         f"sigma[{i + 1}] = {sigmas[i + 1]:g}")
    if sigmas[-1] < 0:
        raise ValueError(f"sigmas must not be negative; the schedule ends at {sigmas[-1]:g}")
    if np.any(steps == 0):
        raise ValueError("sigmas repeat a value; sample_deis drops the repeats (deis.plan.distinct_sigmas)")
    return sigmas


def distinct_sigmas(sigmas):
    """Which entries of a schedule to keep: a repeated sigma (ComfyUI's beta scheduler on Stable Cascade, whose
    table repeats its clamped ends) is a step of length 0, which does nothing, so the repeats are dropped.
    Returns a boolean numpy mask, or None where every sigma is distinct. Checks nothing else."""
    host = sigmas.detach().to("cpu").double().numpy() if hasattr(sigmas, "detach") else np.asarray(sigmas, float)
    if host.ndim != 1 or host.size < 2:
        return None
    repeated = np.diff(host) == 0
    if not repeated.any():
        return None
    return np.append(True, ~repeated)


def tab_time(config, parameterisation, model_time_map=None):
    """tAB's time: the configuration's, else the model's own where the host knows it, else the default."""
    if config.variant != "tab":
        return None
    if config.time_map is not None:
        return config.time_map
    return default_time_map(parameterisation.name) if model_time_map is None else model_time_map


def cached(kind, key, sigmas, param, cache, compute):
    """The plan ``compute(sigmas)`` for the checked float64 ``sigmas`` of a form, from ``cache`` (default
    ``default_cache``) under ``(kind, key, form, the exact sigmas)``."""
    sigmas = host_sigmas(sigmas)
    param.check_sigmas(sigmas)
    cache = default_cache if cache is None else cache
    return cache.get((kind, key, param.name, sigmas.tobytes()), lambda: compute(sigmas))


def get_plan(sigmas, config, parameterisation="ve", model_time_map=None, cache=None):
    """The cached plan for a schedule, a ``deis.Config``, the model's form and (tAB) its own time."""
    if not isinstance(config, Config):
        raise ConfigError([f"config must be a deis.Config; got {config!r}"])
    param = get_parameterisation(parameterisation)
    time_map = tab_time(config, param, model_time_map)
    return cached("multistep", config.plan_key(time_map), sigmas, param, cache,
                  lambda sigmas: multistep_plan(sigmas, config, param, time_map))


# --------------------------------------------------------------------------- the integrands in x

def state_scale(integrand, alpha, sigma):
    """``scale`` in the integrand's state ``y = x / scale``: alpha (eps), sqrt(alpha^2 + sigma^2) (v), sigma (data)."""
    if integrand == "eps":
        return alpha
    if integrand == "v":
        return np.hypot(alpha, sigma)
    return sigma


def slope_coefficients(integrand, alpha, sigma):
    """``(a, b)`` with the slope ``h = a x - b D`` at one point: ``eps_hat = (x - alpha D) / sigma``, or
    ``v_hat = cos(phi) eps_hat - sin(phi) D`` with ``tan(phi) = sigma / alpha``. None for the data integrand, whose
    slope is ``D`` itself."""
    alpha, sigma = float(alpha), float(sigma)
    if integrand == "eps":
        return 1.0 / sigma, alpha / sigma
    if integrand == "v":
        scale = math.hypot(alpha, sigma)
        return alpha / (sigma * scale), scale / sigma
    return None


def step_degrees(at_nodes, rho, config, into_zero):
    """Polynomial degree of each step: the warm start, nodes a polynomial cannot take, and the last steps.

    Early steps use the history they have; a node where the variable is infinite (rho = inf at the flow
    start, for every variable but a flow time) is left out. The step into sigma = 0 is of degree
    ``final_degree`` at most (nor more than the finite nodes in rho), and DDIM where it starts above
    ``FINAL_STEP_MAX_RHO``. With ``lower_order_final`` and fewer than ``FEW_STEPS`` steps, the step before it is
    at most degree 1, as in diffusers. With ``max_step_angle``, a step before it that spans more than that angle
    (``step_angles``) is of degree 0.
    """
    n_steps = len(at_nodes) - 1
    first_usable = 0 if np.isfinite(at_nodes[0]) else 1
    degrees = np.minimum(config.degree, np.maximum(np.arange(n_steps) - first_usable, 0))
    if into_zero:
        usable_in_rho = int(np.isfinite(rho[:-1]).sum()) - 1
        final = min(config.step_into_zero_degree, usable_in_rho)
        degrees[-1] = final if rho[-2] <= FINAL_STEP_MAX_RHO else 0
        if config.lower_order_final and 2 <= n_steps < FEW_STEPS:
            degrees[-2] = min(degrees[-2], 1)
    if config.max_step_angle is not None:
        wide = np.flatnonzero(step_angles(rho) > config.max_step_angle)
        degrees[wide[wide < n_steps - into_zero]] = 0
    return degrees


def step_angles(rho):
    """How far each step goes in ``phi = arctan(rho)``, the angle from data (0) to pure noise (pi / 2): the share of
    the way a step covers where latents of about unit variance are resolved (long steps in log rho at very high or
    very low noise cover little of it)."""
    return np.arctan(rho[:-1]) - np.arctan(rho[1:])


def consecutive(nodes):
    return nodes[0] - nodes[-1] == len(nodes) - 1


def on_history(newest, nodes, weights):
    """Weights on schedule indices ``nodes`` as weights on the loop's history, newest first from ``newest``: a node
    left out (``coefficients.step_nodes``) has weight 0."""
    out = np.zeros(newest - nodes[-1] + 1)
    out[newest - np.asarray(nodes)] = weights
    return out


def multistep_plan(sigmas, config, param, time_map=None):
    """The plan of a multistep configuration, with tAB's time ``time_map`` (``tab_time``): the predictor of each step
    (DEIS's exponential integrator, docs/math.md section 2), its correction and the step into sigma = 0 (section
    3)."""
    integrand, eta = config.integrand, config.eta
    power = 1.0 + eta  # the data integrand's measure: d(rho^-1) for the ODE, the SDE's own d(rho^-(1 + eta))
    rho, alpha = param.rho(sigmas), param.alpha(sigmas)
    variable = variable_of(config.variant, time_map)
    at_nodes = nodes_of(variable, rho)  # the interpolation variable at each sigma
    n = len(sigmas) - 1
    into_zero = sigmas[-1] == 0
    last = n - 1 if into_zero else n  # the steps in the integrand; the step into 0 follows eps_hat in rho
    usable = np.isfinite(at_nodes)  # a node at rho = inf enters only a polynomial in a flow time

    node_values = at_nodes.tolist()
    plain = without_near_repeats(at_nodes[:last + 1], config.degree)  # not the step into 0: zero_step_nodes

    def nodes_of_step(i, newest, count):
        """The nodes of step i's polynomial, from ``newest``: consecutive where the schedule has no near-repeat."""
        if plain:
            return tuple(range(newest, newest - count, -1))
        return step_nodes(node_values, newest, abs(node_values[i + 1] - node_values[i]), count)

    def predictor_nodes(degrees, i):
        if i == last:  # into sigma = 0: a polynomial in rho
            return zero_step_nodes(rho, int(degrees[i]) + 1)
        return nodes_of_step(i, i, int(degrees[i]) + 1)

    def predictor_weights(degrees, steps=None):
        steps = range(len(degrees)) if steps is None else steps
        inside = [i for i in steps if i < last]
        weights = multistep_weights(config.variant, rho, [predictor_nodes(degrees, i) for i in inside],
                                    time_map, integrand, power, steps=inside) if inside else []
        if into_zero and last in steps:
            weights.append(final_weights(rho, predictor_nodes(degrees, last)))
        return weights

    degrees = step_degrees(at_nodes, rho, config, into_zero)
    if config.max_amplification:
        degrees, C = capped_degrees(degrees, predictor_weights, config.max_amplification)
    else:
        C = predictor_weights(degrees)
    nodes = [predictor_nodes(degrees, i) for i in range(n)]
    C = [c if consecutive(nodes[i]) else on_history(i, nodes[i], c) for i, c in enumerate(C)]

    scale = state_scale(integrand, alpha, sigmas).tolist()  # Python floats: the loops below run once a step
    at_infinity = np.isinf(rho).tolist()
    updates, noise = [], np.zeros(n)
    for i in range(last):
        if integrand == "eps" and at_infinity[i]:  # from pure noise: DDIM, x' = alpha' D + sigma' eps_hat
            updates.append(Update(0.0, float(alpha[i + 1]), (float(sigmas[i + 1]),)))
        elif eta:
            updates.append(sde_update(sigmas, alpha, rho, i, C[i], eta))
            noise[i] = sigmas[i + 1] * np.sqrt(-np.expm1(2 * eta * np.log(rho[i + 1] / rho[i]))) if np.isfinite(
                rho[i]) else sigmas[i + 1]
        else:
            updates.append(Update(scale[i + 1] / scale[i], 0.0, tuple(scale[i + 1] * c for c in C[i].tolist())))

    corrections = [None] * (n + 1)  # the correction of step i is applied at step i + 1
    correction_nodes = corrector_nodes(config, integrand, nodes_of_step, usable, rho, degrees, last)
    corrected = [i for i, c in enumerate(correction_nodes) if c]
    correction_weights = multistep_weights(config.variant, rho, [correction_nodes[i] for i in corrected],
                                           time_map, integrand, power, steps=corrected) if corrected else []
    for i, k in zip(corrected, correction_weights):
        # Both the correction and the predictor start from x_i: the correction moves x by their difference.
        if not consecutive(correction_nodes[i]):
            k = on_history(i + 1, correction_nodes[i], k)
        difference = k.tolist() + [0.0] * (len(C[i]) + 1 - len(k))
        for j, c in enumerate(C[i].tolist(), 1):
            difference[j] -= c
        # What multiplies the step's integral in x: the state's scale at its end (the SDE's factor with eta).
        scale_at_end = float(alpha[i + 1] * rho[i + 1] ** power) if eta else scale[i + 1]
        if config.corrector_data_scale is not None:
            scale_at_end *= implicit_factor(integrand, alpha[i + 1], sigmas[i + 1], scale_at_end * difference[0],
                                            config.corrector_data_scale)
        corrections[i + 1] = tuple(scale_at_end * d for d in difference)

    final_history = len(C[-1]) if into_zero else 0

    def keep_eps_hat(i):  # the eps integrand's history is eps_hat already
        if integrand == "eps" or i < n - final_history:
            return None
        return slope_coefficients("eps", alpha[i], sigmas[i])

    alpha, sigmas = alpha.tolist(), sigmas.tolist()
    steps = []
    for i in range(last):
        steps.append(Step(slope_coefficients(integrand, alpha[i], sigmas[i]), corrections[i], updates[i],
                          float(noise[i]), False, keep_eps_hat(i), folded(corrections[i], updates[i])))
    if into_zero:
        if np.isinf(rho[n - 1]):  # one step from pure noise into 0: x = D
            update = Update(0.0, 1.0, ())
        else:
            update = Update(float(1.0 / alpha[n - 1]), 0.0, tuple(C[-1].tolist()))
        correction = carried_into_zero(corrections[n - 1], alpha[n - 1], sigmas[n - 1])
        on_eps_hat = integrand != "eps"
        steps.append(Step(slope_coefficients(integrand, alpha[n - 1], sigmas[n - 1]), correction, update, 0.0,
                          on_eps_hat, keep_eps_hat(n - 1), None if on_eps_hat else folded(correction, update)))
    history = max([len(c) for c in C] + [len(c) for c in corrections if c])
    return Plan(tuple(steps), int(history))


def folded(correction, update):
    """The correction (weights on the history, moving x) and then the update, as one ``Update`` of the state before
    the correction; None without a correction."""
    if not correction:
        return None
    length = max(len(correction), len(update.weights))
    moved = [update.x_scale * k for k in correction] + [0.0] * (length - len(correction))
    weights = list(update.weights) + [0.0] * (length - len(update.weights))
    return Update(update.x_scale, update.d_scale, tuple(k + c for k, c in zip(moved, weights)))


def corrector_nodes(config, integrand, nodes_of_step, usable, rho, degrees, last):
    """The nodes of each step's correction (empty: none): the point the step predicted and the predictor's nodes,
    one degree higher (``nodes_of_step(i, i + 1, count)``); none with the corrector off, where a node is not finite,
    or (``corrector_max_angle``, ``max_step_angle``) on steps that span more than that angle."""
    result = [()] * last
    if not config.corrector:
        return result
    angles = step_angles(rho)
    for i in range(last):
        if not (usable[i] and usable[i + 1]) or (integrand == "eps" and np.isinf(rho[i])):
            continue  # the eps integrand has no integral from rho = inf
        if any(limit is not None and angles[i] > limit for limit in (config.corrector_max_angle,
                                                                     config.max_step_angle)):
            continue
        result[i] = nodes_of_step(i, i + 1, int(degrees[i]) + 2)
    return result


#: The most a linearly implicit correction enlarges the plain one.
MAX_IMPLICIT_FACTOR = 4.0


def implicit_factor(integrand, alpha, sigma, new_weight, data_scale):
    """``1 / (1 - b J)``: the factor that turns a PEC correction into one Newton step of the implicit
    (Adams-Moulton) step it approximates, from the predicted point.

    The correction ``x_c = x_p + b h(x_p) + ...`` takes the new node's slope ``h`` at the predicted point ``x_p``; the
    implicit step would take it at ``x_c`` itself. Linearising ``h`` about ``x_p`` with ``J = dh/dx`` and solving
    gives ``x_c - x_p`` divided by ``1 - b J``: the plain correction removes only ``1 - b J`` of the predictor's
    error. ``b`` is the new node's weight in x; ``J`` is the slope's response for Gaussian data of standard deviation
    ``s`` per latent value, whose denoiser is linear, ``dD/dx = alpha s^2 / (alpha^2 s^2 + sigma^2)`` (Tweedie),
    and ``J = a - b' dD/dx`` for a slope ``a x - b' D``. For the data integrand ``J`` is near 0 where sigma is well
    above ``s`` (the factor near 1) and near ``1 / alpha`` well below it (at ``s = 0.05``, ``b J`` reaches 0.6 on
    the last steps of ``normal`` on a model whose sigma_min is 0.01). At most ``MAX_IMPLICIT_FACTOR``."""
    alpha, sigma, spread = float(alpha), float(sigma), float(data_scale) ** 2
    response = alpha * spread / (alpha ** 2 * spread + sigma ** 2)
    coefficients = slope_coefficients(integrand, alpha, sigma)
    jacobian = response if coefficients is None else coefficients[0] - coefficients[1] * response
    denominator = 1.0 - float(new_weight) * jacobian
    return 1.0 / denominator if denominator > 1.0 / MAX_IMPLICIT_FACTOR else MAX_IMPLICIT_FACTOR


def carried_into_zero(correction, alpha, sigma):
    """The last correction, as the step into sigma = 0 carries it: scaled by ``cos(phi) = alpha / sqrt(alpha^2 +
    sigma^2)``, what the exact flow to sigma = 0 does to a change of x for data of unit variance (the prior the
    v integrand also takes). The step itself follows eps_hat from the predicted point, as if the correction
    moved eps_hat with x (a factor 1: right for a short last step, far too much for one from high noise, where
    the data is not yet resolved and a change of x barely moves the result); the data form would drop it (0)."""
    if not correction:
        return correction
    return tuple((alpha / np.hypot(alpha, sigma) * np.asarray(correction)).tolist())


def final_weights(rho, nodes):
    """The step into sigma = 0 on eps_hat: a polynomial in rho through ``nodes`` (DDIM from rho = inf)."""
    n = len(rho) - 1
    if np.isinf(rho[n - 1]):
        return np.array([np.inf])
    return lagrange_integrals(RHO, rho, [n - 1], [nodes], "eps")[0]


def sde_update(sigmas, alpha, rho, i, C, eta):
    """The data integrand with ``eta > 0``: the SDE's own exponential integrator (docs/stochastic.md).

    ``xh_{i+1} = (rho_{i+1} / rho_i)^k xh_i + rho_{i+1}^k * integral of D d(rho^-k)`` with ``k = 1 + eta``;
    the noise added after it has standard deviation ``sigma_{i+1} sqrt(1 - (rho_{i+1} / rho_i)^(2 eta))``.
    ``eta`` is DPM-Solver++(2M) SDE's: at degree 1 in log rho this is its Heun form.
    """
    power = 1.0 + eta
    end = alpha[i + 1] * rho[i + 1] ** power
    # alpha_i rho_i^k = sigma_i rho_i^(k - 1): infinite at the flow start, where x_i drops out.
    x_scale = 0.0 if np.isinf(rho[i]) else end / (sigmas[i] * rho[i] ** (power - 1))
    return Update(float(x_scale), 0.0, tuple((end * C).tolist()))


# --------------------------------------------------------------------------- Runge-Kutta

def get_runge_kutta_plan(sigmas, tableau="kutta3", parameterisation="ve", cache=None):
    """The cached rhoRK plan for a schedule, a tableau (``deis.TABLEAUS``) and the model's form."""
    if tableau not in TABLEAUS:
        raise ConfigError([f"unknown Runge-Kutta tableau {tableau!r}; set tableau to one of {', '.join(TABLEAUS)}"])
    param = get_parameterisation(parameterisation)
    return cached("runge_kutta", tableau, sigmas, param, cache, lambda sigmas: runge_kutta_plan(sigmas, tableau, param))


def runge_kutta_plan(sigmas, tableau, param):
    """Classical RK in rho on ``d xh / d rho = eps_hat``; a stage at ``rho_s`` runs the model at ``sigma(rho_s)``.

    The flow start (rho = inf) and the step into sigma = 0 are DDIM steps: RK cannot start
    from an infinite rho, and a stage at sigma = 0 has no eps_hat. Every update is in the
    data form ``x' = alpha' D + sum_k w_k eps_hat_k``.
    """
    tableau = TABLEAUS[tableau]
    rho, alpha = param.rho(sigmas), param.alpha(sigmas)
    stage_sigmas, steps = [], []

    def update(sigma_to, alpha_to, h, row):
        history = alpha_to * h * np.asarray(row[1:], dtype=np.float64)
        return Update(0.0, float(alpha_to), (float(sigma_to - history.sum()),) + tuple(history.tolist()))

    for i in range(sigmas.size - 1):
        if not np.isfinite(rho[i]) or sigmas[i + 1] == 0:
            ddim = Update(0.0, float(alpha[i + 1]), (float(sigmas[i + 1]),))
            steps.append(RungeKuttaStep(slope_coefficients("eps", alpha[i], sigmas[i]), (), ddim))
            continue
        h = rho[i + 1] - rho[i]
        stages = []
        for c, row in zip(tableau.c[1:], tableau.a[1:]):
            sigma_s = float(sigmas[i + 1] if c == 1 else param.sigma_from_rho(rho[i] + c * h))
            alpha_s = float(param.alpha(sigma_s))
            stages.append(Stage(len(stage_sigmas), slope_coefficients("eps", alpha_s, sigma_s),
                                update(sigma_s, alpha_s, h, row)))
            stage_sigmas.append(float(sigma_s))
        steps.append(RungeKuttaStep(slope_coefficients("eps", alpha[i], sigmas[i]), tuple(stages),
                                    update(sigmas[i + 1], alpha[i + 1], h, tableau.b)))
    return RungeKuttaPlan(tuple(steps), tuple(stage_sigmas), tableau.name)
