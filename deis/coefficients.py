"""Coefficients of the DEIS family: small pure functions over float64 arrays.

Notation (see docs/math.md): ``rho = sigma / alpha``, ``xh = x / alpha`` and
``eps_hat = (x - alpha * D) / sigma``, so that ``d xh / d rho = eps_hat`` exactly.

Three integrands. ``"eps"`` is the paper's: integrate ``eps_hat`` in ``rho``. ``"v"`` takes the
linear part of the ODE from a unit-variance Gaussian instead: with ``phi = arctan(rho)`` and
``x_vp = xh cos(phi)`` (the VP-scaled state), ``d x_vp / d phi = v_hat`` where
``v_hat = cos(phi) eps_hat - sin(phi) D`` is the v-prediction. For unit-Gaussian data
``v_hat`` is zero along the ODE, so what is left to interpolate is only the data's departure
from that prior; it is finite at both ends (``-D`` at the flow start, ``eps_hat`` at sigma = 0).
The coefficients are the same Lagrange integrals with ``d phi = d rho / (1 + rho^2)`` as the
measure. ``"data"`` is the data-prediction form (DPM-Solver++'s choice): with ``u = 1 / rho =
alpha / sigma``, ``d (x / sigma) / d u = D``, so the polynomial interpolates the denoised value
itself, with ``d u`` as the measure. Where the data has no spread (a stiff direction for the other
two), ``D`` does not depend on ``x`` and a perturbation of ``x`` only shrinks with ``sigma``.

A multistep (AB) step of polynomial degree ``r`` is

    xh_{i+1} = xh_i + sum_j C_ij * eps_hat_{i-j},   j = 0..r
    C_ij     = integral from rho_i to rho_{i+1} of L_j(v(rho)) d rho

where ``L_j`` is the Lagrange basis on the nodes ``v_i, ..., v_{i-r}`` of an interpolation
variable ``v``: ``rho`` (rhoAB), ``log rho`` (log-rho AB) or the model's time ``t`` (tAB).

The integrals are computed through moments. With ``s = (v - v_i) / (v_i - v_{i-1})``,
``L_j(s) = sum_m A_jm s^m`` and ``C_ij = sum_m A_jm M_im``, where the kernel moments
``M_im = integral of s^m d rho`` (or ``d phi``, ``d u``) are exact for rhoAB in rho and
Gauss-Legendre sums in ``l = log rho`` otherwise (split at every knot of the time map, so each
panel is smooth).
"""

import math

import numpy as np

#: Gauss-Legendre nodes per panel, and the widest panel in l = log rho. With these the
#: kernel moments agree with 30-digit quadrature to about 1e-15 (tests/test_coefficients.py).
PANEL_NODES = 12
MAX_PANEL_WIDTH = 0.5
#: The step into rho = 0 is integrated in rho, with this many nodes, below this rho.
TAIL_NODES = 12
ANALYTIC_TAIL_RHO = 0.5

_LEGENDRE_X, _LEGENDRE_W = np.polynomial.legendre.leggauss(PANEL_NODES)
_TAIL_LEGENDRE_X, _TAIL_LEGENDRE_W = np.polynomial.legendre.leggauss(TAIL_NODES)

MAX_DEGREE = 3
INTEGRANDS = ("eps", "v", "data")

#: The fixed Adams-Bashforth weights of iPNDM, by polynomial degree.
IPNDM_WEIGHTS = (
    (1.0,),
    (3 / 2, -1 / 2),
    (23 / 12, -16 / 12, 5 / 12),
    (55 / 24, -59 / 24, 37 / 24, -9 / 24),
)


def phi_of_rho(rho):
    """``arctan(rho)``: the angle whose tangent is the noise-to-signal ratio (pi / 2 at rho = inf)."""
    return np.arctan(np.asarray(rho, dtype=np.float64))


def measure(integrand, rho, power=1.0):
    """The integration variable at each rho: ``rho`` for eps, ``phi`` for v, ``u = rho^-power`` for data.

    ``power`` is 1 for the ODE; a stochastic data step (``1 + eta``) integrates against the
    SDE's own kernel ``d(rho^-(1 + eta))`` (deis.plan, docs/stochastic.md).
    """
    if integrand == "eps":
        return np.asarray(rho, dtype=np.float64)
    if integrand == "v":
        return phi_of_rho(rho)
    if integrand == "data":
        with np.errstate(divide="ignore"):
            return np.asarray(rho, dtype=np.float64) ** -power
    raise ValueError(f"unknown integrand {integrand!r}; expected one of {', '.join(INTEGRANDS)}")


# --------------------------------------------------------------------------- variables

def interpolation_nodes(variant, rho, time_map=None):
    """The interpolation variable ``v`` at each rho of the schedule (inf where undefined)."""
    rho = np.asarray(rho, dtype=np.float64)
    with np.errstate(divide="ignore"):
        if variant in ("rhoab", "ipndm", "ipndm_v"):
            return rho.copy()
        if variant == "logrhoab":
            return np.log(rho)
        if variant == "tab":
            return time_map.t_of_logrho(np.log(rho))
    raise ValueError(f"unknown multistep variant {variant!r}")


#: A polynomial step into sigma = 0 starts at most here, in rho = sigma / alpha; from higher it is DDIM.
#: Latents are scaled to about unit variance, so a last step from above rho = 1/2 crosses the noise
#: levels where the data is resolved, and nothing fitted above them models the slope below (ComfyUI's
#: linear_quadratic schedule ends with such a step, from rho 1 to 6).
FINAL_STEP_MAX_RHO = 0.5
#: A schedule with fewer steps than this is coarse (the threshold diffusers uses for lower_order_final).
FEW_STEPS = 15


def step_degrees(v, degree, rho, lower_order_final=True, final_degree=1):
    """Polynomial degree of each step: warm start, unusable nodes and the final steps.

    ``v`` holds the interpolation variable at every sigma of the schedule, ``rho`` the
    noise-to-signal ratio. Early steps use the history they have. A node where ``v`` is infinite
    (``rho = inf`` at the flow start, for every variable but a flow time) cannot enter a
    polynomial, so it is left out of the history. With ``lower_order_final`` the step into
    sigma = 0 is taken in rho at degree ``final_degree`` at most, and is DDIM where it starts above
    ``FINAL_STEP_MAX_RHO``; with fewer than ``FEW_STEPS`` steps the step before it is at most
    degree 1, as in diffusers.
    """
    n_steps = len(v) - 1
    first_usable = 0 if np.isfinite(v[0]) else 1
    degrees = np.minimum(degree, np.maximum(np.arange(n_steps) - first_usable, 0))
    if lower_order_final and rho[-1] == 0:
        usable_in_rho = int(np.isfinite(rho[:-1]).sum()) - 1
        degrees[-1] = min(degree, final_degree, usable_in_rho) if rho[-2] <= FINAL_STEP_MAX_RHO else 0
        if 2 <= n_steps < FEW_STEPS:
            degrees[-2] = min(degrees[-2], 1)
    return degrees


#: The absolute sum of the constant-step Adams-Bashforth weights of each degree over their sum: how much a
#: multistep formula of that degree amplifies an error in its history when its steps are even.
AB_AMPLIFICATION = tuple(float(np.abs(w).sum()) for w in IPNDM_WEIGHTS)


def amplification(c):
    """``sum_j |C_j| / |sum_j C_j|`` of one step's coefficients: 1 at degree 0, 2 for constant-step AB2."""
    return float(np.abs(c).sum() / abs(c.sum()))


# --------------------------------------------------------------------------- moments

def rho_moments(rho, steps, origin, scale, n_moments, ends):
    """Exact ``M_im = integral from rho_i to ends_i of ((rho - origin) / scale)^m d rho``.

    Only valid when the interpolation variable is rho itself.
    """
    m = np.arange(n_moments) + 1
    s_start = (rho[steps] - origin) / scale
    s_end = (ends[steps] - origin) / scale
    return scale[:, None] * (s_end[:, None] ** m - s_start[:, None] ** m) / m


def quadrature_moments(v_of_logrho, rho, steps, origin, scale, n_moments, knots=(), integrand="eps", ends=None,
                       power=1.0):
    """``M_im = integral from rho_i to ends_i of ((v(rho) - origin) / scale)^m d mu`` (``ends``: rho_{i+1} by default).

    ``mu`` is rho for the eps integrand, ``phi = arctan(rho)`` for v and ``u = rho^-power`` for data. Integrated in
    ``l = log rho`` as ``s(l)^m (d mu / dl) dl`` on Gauss-Legendre panels no wider than
    MAX_PANEL_WIDTH and split at ``knots``. The step into rho = 0 ends below
    ``ANALYTIC_TAIL_RHO`` with Gauss-Legendre in ``mu``, which needs ``v`` analytic in rho there;
    for v and data, the step from rho = inf starts with Gauss-Legendre in phi (or u) above
    ``1 / ANALYTIC_TAIL_RHO``, which needs ``v`` analytic in ``1 / rho`` there (a flow time is).
    The data integrand has no finite integral into rho = 0.
    """
    ends = rho[1:] if ends is None else ends
    moments = np.zeros((len(steps), n_moments))
    with np.errstate(divide="ignore"):
        hi = np.log(rho[steps])
        lo = np.log(ends[steps])
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

    for k in np.flatnonzero(ends[steps] == 0):
        if integrand == "data":
            raise ValueError("the data integrand has no finite integral into rho = 0")
        rho_cut = min(rho[steps[k]], ANALYTIC_TAIL_RHO)
        mu_cut = float(measure(integrand, rho_cut))
        mu = mu_cut * 0.5 * (1.0 + _TAIL_LEGENDRE_X)
        log_rho = np.log(mu if integrand == "eps" else np.tan(mu))
        accumulate(np.full(log_rho.shape, k), log_rho, mu_cut * 0.5 * _TAIL_LEGENDRE_W)
        lo[k] = math.log(rho_cut)
    for k in np.flatnonzero(np.isinf(rho[steps])):
        if integrand == "eps":
            raise ValueError("the eps integrand has no finite integral from rho = inf")
        if integrand == "data":  # w = 1 / rho from 0 (rho = inf) up to w_cut; d u = power w^(power - 1) d w > 0
            u_cut = float(min(1.0 / ends[steps[k]], ANALYTIC_TAIL_RHO))
            u = u_cut * 0.5 * (1.0 + _TAIL_LEGENDRE_X)
            accumulate(np.full(u.shape, k), -np.log(u), -u_cut * 0.5 * _TAIL_LEGENDRE_W * power * u ** (power - 1))
            hi[k] = -math.log(u_cut)
            continue
        phi_cut = float(phi_of_rho(max(ends[steps[k]], 1.0 / ANALYTIC_TAIL_RHO)))
        phi = phi_cut + (0.5 * np.pi - phi_cut) * 0.5 * (1.0 + _TAIL_LEGENDRE_X)
        log_rho = -np.log(np.tan(0.5 * np.pi - phi))  # log tan(phi), accurate near pi / 2
        accumulate(np.full(log_rho.shape, k), log_rho, (0.5 * np.pi - phi_cut) * 0.5 * _TAIL_LEGENDRE_W)
        hi[k] = math.log(math.tan(phi_cut))

    # Panels: every step end and every knot is a panel boundary.
    knots = np.asarray(knots, dtype=np.float64)
    inside = knots[(knots > lo.min()) & (knots < hi.max())]
    bounds = np.unique(np.concatenate([lo, hi, inside]))
    widths = np.diff(bounds)
    pieces = np.maximum(1, np.ceil(widths / MAX_PANEL_WIDTH).astype(np.int64))
    owner = np.repeat(np.arange(widths.size), pieces)
    width = (widths / pieces)[owner]
    index_in_piece = np.arange(owner.size) - np.repeat(np.cumsum(pieces) - pieces, pieces)
    middle = bounds[owner] + (index_in_piece + 0.5) * width
    # The step that owns each panel: hi is decreasing along the steps.
    row = np.searchsorted(-hi, -middle, side="right") - 1
    keep = (row >= 0) & (middle > lo[np.maximum(row, 0)]) & (width > 0)
    middle, width, row = middle[keep], width[keep], row[keep]
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


# --------------------------------------------------------------------------- AB family

def stable_degrees(variant, rho, degrees, time_map=None, integrand="eps", bound=1.5, final_in_rho=False):
    """Lower each step's degree until its coefficients amplify an error in the history at most ``bound``
    times as much as the constant-step Adams-Bashforth formula of that degree (``AB_AMPLIFICATION``).

    Uneven steps in the interpolation variable make the extrapolating polynomial's weights grow with
    the ratio of neighbouring step sizes (variable-step AB2's are ``1 + w / 2`` and ``-w / 2`` for
    ``w = h_i / h_(i-1)``), and with them what an error in the history costs.
    """
    degrees = np.array(degrees, copy=True)
    while True:
        C = ab_coefficients(variant, rho, degrees, time_map, integrand, final_in_rho=final_in_rho)
        over = [i for i, c in enumerate(C)
                if degrees[i] > 0 and amplification(c) > bound * AB_AMPLIFICATION[degrees[i]]]
        if not over:
            return degrees
        degrees[over] -= 1


def ab_coefficients(variant, rho, degrees, time_map=None, integrand="eps", ends=None, power=1.0, final_in_rho=False):
    """``C_ij`` for every step: a list of float64 arrays, ``C[i][j]`` for ``j = 0..r_i``.

    ``C_ij`` integrates the Lagrange basis over the step in the integrand's measure (rho for
    eps, phi for v, 1 / rho for data). ``rho`` is the schedule (decreasing, may start at inf and
    end at 0). ``ends``: the rho where each step's integral ends, when that is not the next
    node (a stochastic step integrates to its own ``rho_down`` and adds noise from there).
    ``power``: the data integrand's measure ``rho^-power`` (see ``measure``).
    Where the variable is singular at rho = 0 (log rho, or the time of a sigma table), or with
    ``final_in_rho``, the step into sigma = 0 interpolates in rho: the integrand is analytic in
    rho there, while a polynomial in ``log rho`` extrapolated to -inf is not a model of it, nor
    one in a VP time, which goes like rho^2 near 0.
    """
    return _step_integrals(variant, rho, degrees, time_map, integrand, ends, power, final_in_rho)


def _step_integrals(variant, rho, degrees, time_map, integrand, ends=None, power=1.0, final_in_rho=False):
    rho = np.asarray(rho, dtype=np.float64)
    ends = rho[1:] if ends is None else np.asarray(ends, dtype=np.float64)
    delta = measure(integrand, ends, power) - measure(integrand, rho[:-1], power)
    coefficients = [np.array([d]) for d in delta]
    if variant == "ipndm":
        return [d * np.array(IPNDM_WEIGHTS[r]) for d, r in zip(delta, degrees)]

    steps = np.flatnonzero(degrees > 0)
    singular_at_zero = final_in_rho or variant == "logrhoab" or (variant == "tab" and not time_map.finite_at_zero)
    if singular_at_zero and steps.size and ends[steps[-1]] == 0:
        _lagrange_steps(coefficients, "rhoab", rho, delta, steps[-1:], degrees, None, integrand, ends, power)
        steps = steps[:-1]
    _lagrange_steps(coefficients, variant, rho, delta, steps, degrees, time_map, integrand, ends, power)
    return coefficients


def _lagrange_steps(coefficients, variant, rho, delta, steps, degrees, time_map, integrand, ends, power):
    """Fill ``coefficients[i]`` for ``i`` in ``steps`` (all of degree >= 1) with the variant's Lagrange integrals.

    The nodes are the history ``i, i - 1, ..., i - r``.
    """
    if steps.size == 0:
        return
    v = interpolation_nodes(variant, rho, time_map)
    n_moments = int(degrees[steps].max()) + 1
    origin = v[steps]
    scale = v[steps] - v[steps - 1]
    if variant in ("rhoab", "ipndm_v"):
        v_of_logrho, knots = np.exp, ()
    elif variant == "logrhoab":
        v_of_logrho, knots = (lambda log_rho: log_rho), ()
    elif variant == "tab":
        v_of_logrho, knots = time_map.t_of_logrho, time_map.knots
    else:
        raise ValueError(f"unknown multistep variant {variant!r}")
    if v_of_logrho is np.exp and integrand == "eps":
        moments = rho_moments(rho, steps, origin, scale, n_moments, ends)
    else:
        moments = quadrature_moments(v_of_logrho, rho, steps, origin, scale, n_moments, knots, integrand, ends,
                                     power)
    moments[:, 0] = delta[steps]  # known exactly

    for r in np.unique(degrees[steps]):
        rows = np.flatnonzero(degrees[steps] == r)
        history = steps[rows, None] - np.arange(r + 1)
        nodes = (v[history] - origin[rows, None]) / scale[rows, None]
        for i, c in zip(steps[rows], lagrange_from_moments(nodes, moments[rows])):
            coefficients[i] = c


def data_form_weights(sigma_end, alpha_end, C):
    """Turn rho-space ``C_ij`` into the update ``x_{i+1} = alpha_{i+1} D_i + sum_j c_ij eps_hat_j``.

    ``sigma_end[i]`` and ``alpha_end[i]`` are where step ``i`` ends (``sigma_{i+1}``, or a
    stochastic step's ``sigma_down``). From ``xh_i = D_i + rho_i eps_hat_i`` and
    ``sum_j C_ij = rho_{i+1} - rho_i``: ``c_ij = alpha_{i+1} C_ij``, except for the node ``i``
    itself, whose weight is ``sigma_{i+1}`` minus the others.
    This form stays finite at the flow start (rho_i = inf), has no cancellation in the
    step into sigma = 0, and with r = 0 it is DDIM: ``alpha_{i+1} D_i + sigma_{i+1} eps_hat_i``.
    """
    weights = []
    for i, c in enumerate(C):
        w = alpha_end[i] * c
        w[0] = sigma_end[i] - w[1:].sum()
        weights.append(w)
    return weights


# --------------------------------------------------------------------------- RK family

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
