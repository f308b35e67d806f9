"""Coefficients of the DEIS family: small pure functions over float64 arrays.

Sources (docs/math.md, "Sources"): DEIS (Zhang & Chen, arXiv 2204.13902): tAB-DEIS, rhoAB-DEIS and iPNDM, the
Adams-Bashforth steps of its exponential integrator; DPM-Solver++ (Lu et al., arXiv 2211.01095): the
data-prediction form (the ``data`` integrand); UniPC (Zhao et al., arXiv 2302.04867): UniC, taken here as the
exact Adams-Moulton step (the correction).

Notation (docs/math.md): ``rho = sigma / alpha``, ``xh = x / alpha`` and
``eps_hat = (x - alpha * D) / sigma``, so that ``d xh / d rho = eps_hat`` exactly.

Three integrands, each a change of variables ``y = x / scale(sigma)`` whose slope ``dy / d mu`` the
polynomial follows:

* ``"eps"`` (the paper's): ``y = xh``, ``mu = rho``, slope ``eps_hat``.
* ``"v"``: ``y = x / sqrt(alpha^2 + sigma^2)`` (the VP-scaled state), ``mu = phi = arctan(rho)``,
  slope ``v_hat = cos(phi) eps_hat - sin(phi) D``, the v-prediction. The linear part of the ODE is
  taken from a unit-variance Gaussian, for which ``v_hat`` is zero along the ODE; it is finite at
  both ends (``-D`` at the flow start, ``eps_hat`` at sigma = 0).
* ``"data"`` (DPM-Solver++'s form): ``y = x / sigma``, ``mu = u = 1 / rho``, slope ``D`` itself.
  Where the data has no spread ``D`` does not depend on ``x``.

A multistep step of polynomial degree ``r`` (Adams-Bashforth, the predictor) is

    y_{i+1} = y_i + sum_j C_ij h_{i-j},   j = 0..r
    C_ij    = integral from rho_i to rho_{i+1} of L_j(v(rho)) d mu

where ``L_j`` is the Lagrange basis on the nodes ``v_i, ..., v_{i-r}`` of an interpolation variable
``v``: ``rho`` (rhoAB), ``log rho`` (log-rho AB) or the model's time ``t`` (tAB). Its correction
(Adams-Moulton, as UniPC's UniC applies it) is the same integral over the nodes
``v_{i+1}, v_i, ..., v_{i-r}``: once the model has been called at the predicted ``y_{i+1}``, its slope
there is one more node, and the step is taken again from ``y_i``, one degree higher.

The integrals are computed through moments. With ``s = (v - v_i) / (v_{i+1} - v_i)``,
``L_j(s) = sum_m A_jm s^m`` and ``C_ij = sum_m A_jm M_im``, where the kernel moments
``M_im = integral of s^m d mu`` are exact for rho in rho and Gauss-Legendre sums in
``l = log rho`` otherwise (split at every knot of the time map, so each panel is smooth).
"""

import math
from collections import namedtuple

import numpy as np

#: Gauss-Legendre nodes per panel, and the widest panel in l = log rho. With these the
#: kernel moments agree with 30-digit quadrature to about 1e-15 (tests/test_coefficients.py).
PANEL_NODES = 12
MAX_PANEL_WIDTH = 0.5
#: The step from rho = inf (v and data integrands) is integrated in mu with this many nodes above this rho.
TAIL_NODES = 12
TAIL_FROM_RHO = 2.0

_LEGENDRE_X, _LEGENDRE_W = np.polynomial.legendre.leggauss(PANEL_NODES)
_TAIL_LEGENDRE_X, _TAIL_LEGENDRE_W = np.polynomial.legendre.leggauss(TAIL_NODES)

MAX_DEGREE = 3
INTEGRANDS = ("eps", "v", "data")

#: The fixed Adams-Bashforth weights of iPNDM, by polynomial degree, newest node first.
ADAMS_BASHFORTH = (
    (1.0,),
    (3 / 2, -1 / 2),
    (23 / 12, -16 / 12, 5 / 12),
    (55 / 24, -59 / 24, 37 / 24, -9 / 24),
)
#: The fixed Adams-Moulton weights (the corrections of iPNDM's steps), by degree, newest node first.
ADAMS_MOULTON = (
    (1.0,),
    (1 / 2, 1 / 2),
    (5 / 12, 8 / 12, -1 / 12),
    (9 / 24, 19 / 24, -5 / 24, 1 / 24),
    (251 / 720, 646 / 720, -264 / 720, 106 / 720, -19 / 720),
)


def phi_of_rho(rho):
    """``arctan(rho)``: the angle whose tangent is the noise-to-signal ratio (pi / 2 at rho = inf)."""
    return np.arctan(np.asarray(rho, dtype=np.float64))


def measure(integrand, rho, power=1.0):
    """The integration variable at each rho: ``rho`` for eps, ``phi`` for v, ``u = rho^-power`` for data.

    ``power`` is 1 for the ODE; a stochastic data step (``1 + eta``) integrates against the
    SDE's own kernel ``d(rho^-(1 + eta))`` (docs/stochastic.md).
    """
    if integrand == "eps":
        return np.asarray(rho, dtype=np.float64)
    if integrand == "v":
        return phi_of_rho(rho)
    if integrand == "data":
        with np.errstate(divide="ignore"):
            return np.asarray(rho, dtype=np.float64) ** -power
    raise ValueError(f"unknown integrand {integrand!r}; expected one of {', '.join(INTEGRANDS)}")


# --------------------------------------------------------------------------- interpolation variables

#: An interpolation variable: ``of_logrho`` maps l = log rho to v (vectorised), ``knots`` are the l where it
#: is not smooth, ``is_rho`` marks rho itself (closed-form moments).
Variable = namedtuple("Variable", "name of_logrho knots is_rho")

RHO = Variable("rho", np.exp, (), True)
LOG_RHO = Variable("log rho", lambda log_rho: np.asarray(log_rho, dtype=np.float64), (), False)


def variable_of(variant, time_map=None):
    """The interpolation variable of a multistep variant: rho (rhoAB, iPNDM), log rho or the model's time."""
    if variant in ("rhoab", "ipndm"):
        return RHO
    if variant == "logrhoab":
        return LOG_RHO
    if variant == "tab":
        return Variable("time", time_map.t_of_logrho, tuple(time_map.knots), False)
    raise ValueError(f"unknown multistep variant {variant!r}")


def nodes_of(variable, rho):
    """The variable at each rho of the schedule (inf or -inf where it is undefined)."""
    with np.errstate(divide="ignore"):
        return variable.of_logrho(np.log(np.asarray(rho, dtype=np.float64)))


# --------------------------------------------------------------------------- degrees

#: A polynomial step into sigma = 0 starts at most here, in rho = sigma / alpha; from higher it is DDIM.
#: Latents are scaled to about unit variance, so a last step from above rho = 1/2 crosses the noise
#: levels where the data is resolved, and nothing fitted above them models the slope below (ComfyUI's
#: linear_quadratic schedule ends with such a step, from rho 1 to 6).
FINAL_STEP_MAX_RHO = 0.5
#: A schedule with fewer steps than this is coarse (the threshold diffusers uses for lower_order_final).
FEW_STEPS = 15


#: The absolute sum of the constant-step Adams-Bashforth weights of each degree over their sum: how much a
#: multistep formula of that degree amplifies an error in its history when its steps are even.
AB_AMPLIFICATION = tuple(float(np.abs(w).sum()) for w in ADAMS_BASHFORTH)


#: Allowance for round-off when an amplification is compared with its bound: even steps' weights meet the
#: constant-step value exactly in exact arithmetic, and a cap of 1 must not lower them.
ROUND_OFF = 1 + 1e-12


def amplification(c):
    """``sum_j |C_j| / |sum_j C_j|`` of one step's coefficients: 1 at degree 0, 2 for constant-step AB2."""
    values = np.asarray(c, dtype=np.float64).tolist()  # a few weights: Python's arithmetic is quicker here
    return sum(map(abs, values)) / abs(sum(values))


def capped_degrees(degrees, weights_of, bound):
    """Lower each step's degree until its weights amplify an error in the history at most ``bound`` times as
    much as the constant-step Adams-Bashforth formula of that degree (``AB_AMPLIFICATION``).

    ``weights_of(degrees, steps)`` gives the predictor weights of the steps ``steps`` (a step's weights depend on
    its own degree only). Uneven steps in the interpolation variable make the extrapolating polynomial's weights
    grow with the ratio of neighbouring step sizes (variable-step AB2's are ``1 + w / 2`` and ``-w / 2`` for
    ``w = h_i / h_(i-1)``), and with them what an error in the history costs. Returns the capped degrees and
    every step's weights at them.
    """
    degrees = np.array(degrees, copy=True)
    weights = list(weights_of(degrees, range(len(degrees))))
    todo = [int(i) for i in np.flatnonzero(degrees > 0)]
    while todo:
        over = [i for i in todo if amplification(weights[i]) > bound * AB_AMPLIFICATION[degrees[i]] * ROUND_OFF]
        degrees[over] -= 1
        for i, c in zip(over, weights_of(degrees, over) if over else ()):
            weights[i] = c
        todo = [i for i in over if degrees[i] > 0]
    return degrees, weights


# --------------------------------------------------------------------------- moments

def rho_moments(rho, steps, origin, scale, n_moments):
    """Exact ``M_km = integral from rho_i to rho_{i+1} of ((rho - origin) / scale)^m d rho``, ``i = steps[k]``."""
    m = np.arange(n_moments) + 1
    s_start = (rho[steps] - origin) / scale
    s_end = (rho[steps + 1] - origin) / scale
    return scale[:, None] * (s_end[:, None] ** m - s_start[:, None] ** m) / m


def quadrature_moments(variable, rho, steps, origin, scale, n_moments, integrand="eps", power=1.0):
    """``M_km = integral from rho_i to rho_{i+1} of ((v(rho) - origin) / scale)^m d mu``, ``i = steps[k]``.

    ``mu`` is rho for the eps integrand, ``phi = arctan(rho)`` for v and ``u = rho^-power`` for data.
    Integrated in ``l = log rho`` as ``s(l)^m (d mu / dl) dl`` on Gauss-Legendre panels no wider than
    MAX_PANEL_WIDTH and split at the variable's knots. For v and data, the step from rho = inf starts with
    Gauss-Legendre in phi (or u) above ``TAIL_FROM_RHO``, which needs ``v`` analytic in ``1 / rho`` there (a
    flow time is); the eps integrand has no finite integral from rho = inf. A step into rho = 0 is not
    integrated here: the sampler takes it on eps_hat in rho, in closed form (deis.plan.final_weights).
    """
    if np.any(rho[steps + 1] == 0):
        raise ValueError("a step into rho = 0 is taken on eps_hat in rho (deis.plan.final_weights), not here")
    v_of_logrho = variable.of_logrho
    moments = np.zeros((len(steps), n_moments))
    with np.errstate(divide="ignore"):
        hi = np.log(rho[steps])
        lo = np.log(rho[steps + 1])
    if integrand == "v":
        def d_mu(log_rho):  # d phi / d l = sin(phi) cos(phi), written to stay finite for large |l|
            return 0.5 / np.cosh(log_rho)
    elif integrand == "data":
        def d_mu(log_rho):  # d u / d l for u = rho^-power
            return -power * np.exp(-power * log_rho)
    else:
        d_mu = np.exp

    def accumulate(rows, log_rho, weights):
        # rows: the step of each point; weights are the measure (d mu) of each point.
        step = rows.reshape(log_rho.shape)
        s = ((v_of_logrho(log_rho) - origin[step]) / scale[step]).ravel()
        rows = rows.ravel()
        term = np.ravel(weights).copy()
        for m in range(n_moments):
            moments[:, m] -= np.bincount(rows, term, minlength=len(steps))
            term *= s

    for k in np.flatnonzero(np.isinf(rho[steps])):
        if integrand == "eps":
            raise ValueError("the eps integrand has no finite integral from rho = inf")
        if integrand == "data":  # w = 1 / rho from 0 (rho = inf) up to w_cut; d u = power w^(power - 1) d w > 0
            u_cut = float(min(1.0 / rho[steps[k] + 1], 1.0 / TAIL_FROM_RHO))
            u = u_cut * 0.5 * (1.0 + _TAIL_LEGENDRE_X)
            accumulate(np.full(u.shape, k), -np.log(u), -u_cut * 0.5 * _TAIL_LEGENDRE_W * power * u ** (power - 1))
            hi[k] = -math.log(u_cut)
            continue
        phi_cut = float(phi_of_rho(max(rho[steps[k] + 1], TAIL_FROM_RHO)))
        phi = phi_cut + (0.5 * np.pi - phi_cut) * 0.5 * (1.0 + _TAIL_LEGENDRE_X)
        log_rho = -np.log(np.tan(0.5 * np.pi - phi))  # log tan(phi), accurate near pi / 2
        accumulate(np.full(log_rho.shape, k), log_rho, (0.5 * np.pi - phi_cut) * 0.5 * _TAIL_LEGENDRE_W)
        hi[k] = math.log(math.tan(phi_cut))

    # Panels: every step end and every knot is a panel boundary.
    knots = np.asarray(variable.knots, dtype=np.float64)
    inside = knots[(knots > lo.min()) & (knots < hi.max())]
    bounds = np.unique(np.concatenate([lo, hi, inside]))
    widths = np.diff(bounds)
    pieces = np.maximum(1, np.ceil(widths / MAX_PANEL_WIDTH).astype(np.int64))
    owner = np.repeat(np.arange(widths.size), pieces)
    width = (widths / pieces)[owner]
    index_in_piece = np.arange(owner.size) - np.repeat(np.cumsum(pieces) - pieces, pieces)
    middle = bounds[owner] + (index_in_piece + 0.5) * width
    # The steps that own each panel: a panel lies inside every step whose [lo, hi] contains it (with
    # several kinds of steps in one call, such as predictors and corrections, the steps may overlap).
    inside_step = (middle[:, None] > lo[None, :]) & (middle[:, None] < hi[None, :]) & (width[:, None] > 0)
    panel, row = np.nonzero(inside_step)
    middle, width = middle[panel], width[panel]
    log_rho = middle[:, None] + 0.5 * width[:, None] * _LEGENDRE_X
    w = 0.5 * width[:, None] * _LEGENDRE_W * d_mu(log_rho)
    accumulate(np.broadcast_to(row[:, None], log_rho.shape), log_rho, w)
    return moments


def lagrange_from_moments(nodes, moments):
    """``C_j = sum_m A_jm M_m`` for the Lagrange basis on ``nodes`` (rows: steps).

    ``L_j(s) = sum_m A_jm s^m`` means ``A V^T = I`` with ``V_km = s_k^m``, so ``C`` solves
    ``V^T C = M``.
    """
    n = nodes.shape[1]
    vandermonde_t = np.swapaxes(nodes[:, :, None] ** np.arange(n), 1, 2)
    return np.linalg.solve(vandermonde_t, moments[:, :n, None])[..., 0]


# --------------------------------------------------------------------------- multistep weights

def lagrange_integrals(variable, rho, steps, nodes, integrand="eps", power=1.0):
    """``C[k][j] = integral from rho_i to rho_{i+1} of L_j(v(rho)) d mu`` for ``i = steps[k]``, where ``L_j``
    is the Lagrange basis on the nodes ``v[nodes[k]]`` (a tuple of schedule indices, any length >= 1).

    Returns a list of float64 arrays, one per step. One node gives the step's length in mu.
    """
    rho = np.asarray(rho, dtype=np.float64)
    steps = np.asarray(steps, dtype=np.int64)
    delta = measure(integrand, rho[steps + 1], power) - measure(integrand, rho[steps], power)
    out = [np.array([d]) for d in delta]
    sizes = np.array([len(n) for n in nodes])
    higher = np.flatnonzero(sizes > 1)
    if higher.size == 0:
        return out
    at_nodes = nodes_of(variable, rho)
    rows = steps[higher]
    origin, scale = at_nodes[rows], at_nodes[rows + 1] - at_nodes[rows]
    n_moments = int(sizes.max())
    if variable.is_rho and integrand == "eps":
        moments = rho_moments(rho, rows, origin, scale, n_moments)
    else:
        moments = quadrature_moments(variable, rho, rows, origin, scale, n_moments, integrand, power)
    moments[:, 0] = delta[higher]  # known exactly
    for size in np.unique(sizes[higher]):
        group = np.flatnonzero(sizes[higher] == size)
        node_index = np.array([nodes[higher[g]] for g in group])
        s = (at_nodes[node_index] - origin[group, None]) / scale[group, None]
        for g, c in zip(group, lagrange_from_moments(s, moments[group])):
            out[higher[g]] = c
    return out


#: A node closer than this share of a step's length to a newer node of the same polynomial, in the polynomial's
#: variable, is a near-repeat and is left out of it: two nearly equal nodes carry one value twice, and the Lagrange
#: weights on them grow like the inverse of their distance, multiplying the model's round-off and the corrector's
#: misalignment (a sigma repeated at a relative gap of 1e-6 made weights of 2e5). Of ComfyUI's schedulers at 5 to
#: 50 steps, only linear_quadratic has such nodes (where its linear part meets its quadratic one).
MIN_NODE_SPACING = 0.1


def step_nodes(at_nodes, newest, length, count):
    """The nodes of a step's polynomial: up to ``count`` schedule indices, newest first from ``newest`` (the step's
    start for the predictor, its end for the correction) back to the first not finite in the variable, each at
    least ``MIN_NODE_SPACING`` times the step's ``length`` away from the newer node before it (``at_nodes``: the
    variable at each sigma, a list of floats)."""
    return _spaced(at_nodes, newest, count, lambda j, k: MIN_NODE_SPACING * length)


def without_near_repeats(at_nodes, reach):
    """Whether no gap between neighbouring nodes is under ``MIN_NODE_SPACING`` times one of the ``reach`` steps after
    it (the steps whose polynomials can hold both nodes): then every polynomial but the step into 0's takes
    consecutive nodes, as on every ordinary schedule, and ``step_nodes`` need not be asked."""
    gaps = np.abs(np.diff(np.asarray(at_nodes, dtype=np.float64)))
    if np.any(gaps == 0):  # two sigmas with one value of the variable
        return False
    with np.errstate(invalid="ignore"):
        return not any(np.any(gaps[:-k] < MIN_NODE_SPACING * gaps[k:]) for k in range(1, min(reach, gaps.size - 1) + 1))


def zero_step_nodes(rho, count):
    """The nodes of the step into rho = 0, a polynomial in rho from the last sigma back. That step is as long as
    where it starts, so a gap is measured against its neighbours instead: a near-repeat is a gap under
    ``MIN_NODE_SPACING`` times the shorter of the step after it and the longer of the two before it (the last
    sigmas of a dense schedule are close, and evenly so)."""
    n = len(rho) - 1
    steps = np.abs(np.diff(rho)).tolist()  # steps[j]: from sigma j to sigma j + 1, the last one into 0

    def least(j, k):
        # The longer of the two steps before the gap: inside a cluster of near-repeats the one just before is tiny
        # too (two back, a schedule that shrinks fast towards its end is not taken for one).
        older = max((step for step in steps[max(j - 2, 0):j] if math.isfinite(step)), default=math.inf)
        return MIN_NODE_SPACING * min(steps[k], older)

    return _spaced(np.asarray(rho, dtype=np.float64).tolist(), n - 1, count, least)


def _spaced(values, newest, count, least):
    """Up to ``count`` indices from ``newest`` back, finite in ``values`` (a list of floats), each at least
    ``least(j, k)`` from the newer chosen index ``k``."""
    nodes = [newest]
    for j in range(newest - 1, -1, -1):
        if len(nodes) == count or not math.isfinite(values[j]):
            break
        gap = abs(values[j] - values[nodes[-1]])
        if gap > 0 and gap >= least(j, nodes[-1]):  # two sigmas with one value of the variable are one node
            nodes.append(j)
    return tuple(nodes)


def multistep_weights(variant, rho, nodes, time_map=None, integrand="eps", power=1.0, steps=None):
    """The weights ``C[k][j]`` of the steps ``steps`` (default: the first ``len(nodes)``) of a multistep variant,
    on the node lists ``nodes[k]`` (``step_nodes``: from ``i`` for the predictor, from ``i + 1`` for its correction),
    newest node first.

    iPNDM takes the fixed Adams-Bashforth (or Adams-Moulton) weights times the step's length in mu.
    The steps into sigma = 0 are not among them: the sampler takes that step on eps_hat in rho
    (deis.plan).
    """
    rho = np.asarray(rho, dtype=np.float64)
    steps = np.arange(len(nodes)) if steps is None else np.asarray(steps, dtype=np.int64)
    if variant == "ipndm":
        delta = measure(integrand, rho[steps + 1], power) - measure(integrand, rho[steps], power)
        fixed = [ADAMS_MOULTON[len(n) - 1] if n[0] > i else ADAMS_BASHFORTH[len(n) - 1]
                 for i, n in zip(steps, nodes)]
        return [d * np.array(w) for d, w in zip(delta, fixed)]
    return lagrange_integrals(variable_of(variant, time_map), rho, steps, nodes, integrand, power)


# --------------------------------------------------------------------------- Runge-Kutta

class Tableau:
    def __init__(self, name, order, c, a, b):
        self.name, self.order = name, order
        self.c, self.a, self.b = tuple(c), tuple(tuple(row) for row in a), tuple(b)
        self.stages = len(self.b)


#: Explicit Runge-Kutta tableaus (c, A rows below the diagonal, b).
TABLEAUS = {t.name: t for t in (
    Tableau("midpoint", 2, [0, 1 / 2], [[], [1 / 2]], [0, 1]),
    Tableau("heun2", 2, [0, 1], [[], [1]], [1 / 2, 1 / 2]),
    Tableau("ralston2", 2, [0, 2 / 3], [[], [2 / 3]], [1 / 4, 3 / 4]),
    Tableau("kutta3", 3, [0, 1 / 2, 1], [[], [1 / 2], [-1, 2]], [1 / 6, 2 / 3, 1 / 6]),
    Tableau("ralston3", 3, [0, 1 / 2, 3 / 4], [[], [1 / 2], [0, 3 / 4]], [2 / 9, 1 / 3, 4 / 9]),
    Tableau("rk4", 4, [0, 1 / 2, 1 / 2, 1], [[], [1 / 2], [0, 1 / 2], [0, 0, 1]], [1 / 6, 1 / 3, 1 / 3, 1 / 6]),
)}
