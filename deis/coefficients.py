"""Coefficients of the DEIS family: small pure functions over float64 arrays.

Notation (see ../shared/DEIS-NOTES.md): ``rho = sigma / alpha``, ``xh = x / alpha`` and
``eps_hat = (x - alpha * D) / sigma``, so that ``d xh / d rho = eps_hat`` exactly.

Two integrands. ``"eps"`` is the paper's: integrate ``eps_hat`` in ``rho``. ``"v"`` takes the
linear part of the ODE from a unit-variance Gaussian instead: with ``phi = arctan(rho)`` and
``x_vp = xh cos(phi)`` (the VP-scaled state), ``d x_vp / d phi = v_hat`` where
``v_hat = cos(phi) eps_hat - sin(phi) D`` is the v-prediction. For unit-Gaussian data
``v_hat`` is zero along the ODE, so what is left to interpolate is only the data's departure
from that prior; it is finite at both ends (``-D`` at the flow start, ``eps_hat`` at sigma = 0).
The coefficients are the same Lagrange integrals with ``d phi = d rho / (1 + rho^2)`` as the
measure.

A multistep (AB) step of polynomial degree ``r`` is

    xh_{i+1} = xh_i + sum_j C_ij * eps_hat_{i-j},   j = 0..r
    C_ij     = integral from rho_i to rho_{i+1} of L_j(v(rho)) d rho

where ``L_j`` is the Lagrange basis on the nodes ``v_i, ..., v_{i-r}`` of an interpolation
variable ``v``: ``rho`` (rhoAB), ``log rho`` (log-rho AB) or the model's time ``t`` (tAB).

The integrals are computed through moments. With ``s = (v - v_i) / (v_i - v_{i-1})``,
``L_j(s) = sum_m A_jm s^m`` and ``C_ij = sum_m A_jm M_im``, where the kernel moments
``M_im = integral of s^m d rho`` (or ``d phi``) are exact for rhoAB in rho and Gauss-Legendre
sums in ``l = log rho`` otherwise (split at every knot of the time map, so each panel is smooth).

A corrector (``corrector_coefficients``) redoes a step once the model has been evaluated
at its end: the same integral over the step, with that new value as one more node (an
Adams-Moulton step in the interpolation variable). The value at the predicted point stays
in the history, as in UniPC, so the correction costs no model evaluation.
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
INTEGRANDS = ("eps", "v")

#: The fixed Adams-Bashforth weights of iPNDM, by polynomial degree.
IPNDM_WEIGHTS = (
    (1.0,),
    (3 / 2, -1 / 2),
    (23 / 12, -16 / 12, 5 / 12),
    (55 / 24, -59 / 24, 37 / 24, -9 / 24),
)
#: The fixed Adams-Moulton weights, newest node (the step's end) first, by polynomial degree.
ADAMS_MOULTON_WEIGHTS = (
    (1.0,),
    (1 / 2, 1 / 2),
    (5 / 12, 8 / 12, -1 / 12),
    (9 / 24, 19 / 24, -5 / 24, 1 / 24),
)


def phi_of_rho(rho):
    """``arctan(rho)``: the angle whose tangent is the noise-to-signal ratio (pi / 2 at rho = inf)."""
    return np.arctan(np.asarray(rho, dtype=np.float64))


def measure(integrand, rho):
    """The integration variable at each rho: ``rho`` for the eps integrand, ``phi`` for v."""
    if integrand == "eps":
        return np.asarray(rho, dtype=np.float64)
    if integrand == "v":
        return phi_of_rho(rho)
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


def step_degrees(v, degree, ends_at_zero, lower_order_final=True):
    """Polynomial degree of each step: warm start, unusable nodes and the final steps.

    ``v`` holds the interpolation variable at every sigma of the schedule. Early steps
    use the history they have. A node where ``v`` is infinite (``rho = inf`` at the flow
    start, for every variable but a flow time) cannot enter a polynomial, so it is left
    out of the history. With ``lower_order_final`` the step into sigma = 0 is at most
    degree 1 (a cubic extrapolated across the schedule's widest relative step is no model of
    the slope there), and with fewer than 15 steps it is degree 0 and the one before it at
    most degree 1, as in diffusers.
    """
    n_steps = len(v) - 1
    first_usable = 0 if np.isfinite(v[0]) else 1
    degrees = np.minimum(degree, np.maximum(np.arange(n_steps) - first_usable, 0))
    if lower_order_final and ends_at_zero:
        degrees[-1] = min(degrees[-1], 1)
        if n_steps < 15:
            degrees[-1] = 0
            if n_steps >= 2:
                degrees[-2] = min(degrees[-2], 1)
    return degrees


def corrector_degrees(v, rho, degrees, integrand):
    """Polynomial degree of each step's correction, or -1 where it has none.

    A step is corrected when the model is evaluated at its end (it is not the schedule's
    last step), every node is finite, and its integral is finite: in the eps integrand a
    step from rho = inf is not (the measure d rho is infinite there). The corrector uses the
    predictor's nodes plus the new one, up to MAX_DEGREE.
    """
    n_steps = len(v) - 1
    first_usable = 0 if np.isfinite(v[0]) else 1
    result = np.full(n_steps, -1)
    for i in range(n_steps - 1):
        if not np.isfinite(v[i + 1]) or (integrand == "eps" and not np.isfinite(rho[i])):
            continue
        degree = min(degrees[i] + 1, MAX_DEGREE, i + 1 - first_usable)
        if degree >= 1:
            result[i] = degree
    return result


# --------------------------------------------------------------------------- moments

def rho_moments(rho, steps, origin, scale, n_moments):
    """Exact ``M_im = integral from rho_i to rho_{i+1} of ((rho - origin) / scale)^m d rho``.

    Only valid when the interpolation variable is rho itself.
    """
    m = np.arange(n_moments) + 1
    s_start = (rho[steps] - origin) / scale
    s_end = (rho[steps + 1] - origin) / scale
    return scale[:, None] * (s_end[:, None] ** m - s_start[:, None] ** m) / m


def quadrature_moments(v_of_logrho, rho, steps, origin, scale, n_moments, knots=(), integrand="eps"):
    """``M_im = integral from rho_i to rho_{i+1} of ((v(rho) - origin) / scale)^m d mu``.

    ``mu`` is rho for the eps integrand and ``phi = arctan(rho)`` for v. Integrated in
    ``l = log rho`` as ``s(l)^m (d mu / dl) dl`` on Gauss-Legendre panels no wider than
    MAX_PANEL_WIDTH and split at ``knots``. The step into rho = 0 ends below
    ``ANALYTIC_TAIL_RHO`` with Gauss-Legendre in ``mu``, which needs ``v`` analytic in rho there;
    for v, the step from rho = inf starts with Gauss-Legendre in phi above ``1 / ANALYTIC_TAIL_RHO``,
    which needs ``v`` analytic in ``1 / rho`` there (a flow time is).
    """
    moments = np.zeros((len(steps), n_moments))
    with np.errstate(divide="ignore"):
        hi = np.log(rho[steps])
        lo = np.log(rho[steps + 1])
    if integrand == "v":
        def d_mu(log_rho):  # d phi / d l = sin(phi) cos(phi), written to stay finite for large |l|
            return 0.5 / np.cosh(log_rho)
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

    for k in np.flatnonzero(rho[steps + 1] == 0):
        rho_cut = min(rho[steps[k]], ANALYTIC_TAIL_RHO)
        mu_cut = float(measure(integrand, rho_cut))
        mu = mu_cut * 0.5 * (1.0 + _TAIL_LEGENDRE_X)
        log_rho = np.log(mu if integrand == "eps" else np.tan(mu))
        accumulate(np.full(log_rho.shape, k), log_rho, mu_cut * 0.5 * _TAIL_LEGENDRE_W)
        lo[k] = math.log(rho_cut)
    for k in np.flatnonzero(np.isinf(rho[steps])):
        if integrand == "eps":
            raise ValueError("the eps integrand has no finite integral from rho = inf")
        phi_cut = float(phi_of_rho(max(rho[steps[k] + 1], 1.0 / ANALYTIC_TAIL_RHO)))
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

def ab_coefficients(variant, rho, degrees, time_map=None, integrand="eps"):
    """``C_ij`` for every step: a list of float64 arrays, ``C[i][j]`` for ``j = 0..r_i``.

    ``C_ij`` integrates the Lagrange basis over the step in the integrand's measure (rho for
    eps, phi for v). ``rho`` is the schedule (decreasing, may start at inf and end at 0).
    Where the variable is singular at rho = 0 (log rho, or the time of a sigma table), the
    step into sigma = 0 interpolates in rho: the integrand is analytic in rho there, while a
    polynomial in ``log rho`` extrapolated to -inf is not a model of it.
    """
    return _step_integrals(variant, rho, degrees, time_map, integrand, lead=0)


def corrector_coefficients(variant, rho, degrees, time_map=None, integrand="eps"):
    """Like ``ab_coefficients``, with the nodes ``i + 1, i, ..., i + 1 - r`` (None where ``r < 0``)."""
    return _step_integrals(variant, rho, degrees, time_map, integrand, lead=1)


def _step_integrals(variant, rho, degrees, time_map, integrand, lead):
    rho = np.asarray(rho, dtype=np.float64)
    mu = measure(integrand, rho)
    delta = np.diff(mu)
    coefficients = [np.array([d]) if r >= 0 else None for d, r in zip(delta, degrees)]
    if variant == "ipndm":
        weights = ADAMS_MOULTON_WEIGHTS if lead else IPNDM_WEIGHTS
        return [None if r < 0 else d * np.array(weights[r]) for d, r in zip(delta, degrees)]

    steps = np.flatnonzero(degrees > 0)
    singular_at_zero = variant == "logrhoab" or (variant == "tab" and not time_map.finite_at_zero)
    if singular_at_zero and steps.size and rho[steps[-1] + 1] == 0:
        _lagrange_steps(coefficients, "rhoab", rho, delta, steps[-1:], degrees, None, integrand, lead)
        steps = steps[:-1]
    _lagrange_steps(coefficients, variant, rho, delta, steps, degrees, time_map, integrand, lead)
    return coefficients


def _lagrange_steps(coefficients, variant, rho, delta, steps, degrees, time_map, integrand, lead):
    """Fill ``coefficients[i]`` for ``i`` in ``steps`` (all of degree >= 1) with the variant's Lagrange integrals.

    The nodes are ``i + lead, ..., i + lead - r``: the history for a predictor (lead 0), the
    history and the step's end for a corrector (lead 1).
    """
    if steps.size == 0:
        return
    v = interpolation_nodes(variant, rho, time_map)
    n_moments = int(degrees[steps].max()) + 1
    origin = v[steps + lead]
    scale = v[steps + lead] - v[steps + lead - 1]
    if variant in ("rhoab", "ipndm_v"):
        v_of_logrho, knots = np.exp, ()
    elif variant == "logrhoab":
        v_of_logrho, knots = (lambda log_rho: log_rho), ()
    elif variant == "tab":
        v_of_logrho, knots = time_map.t_of_logrho, time_map.knots
    else:
        raise ValueError(f"unknown multistep variant {variant!r}")
    if v_of_logrho is np.exp and integrand == "eps":
        moments = rho_moments(rho, steps, origin, scale, n_moments)
    else:
        moments = quadrature_moments(v_of_logrho, rho, steps, origin, scale, n_moments, knots, integrand)
    moments[:, 0] = delta[steps]  # known exactly

    for r in np.unique(degrees[steps]):
        rows = np.flatnonzero(degrees[steps] == r)
        history = steps[rows, None] + lead - np.arange(r + 1)
        nodes = (v[history] - origin[rows, None]) / scale[rows, None]
        for i, c in zip(steps[rows], lagrange_from_moments(nodes, moments[rows])):
            coefficients[i] = c


def parasitic_radius(rho, C, degrees):
    """Per step: the largest |root| of its frozen recurrence besides the consistent root 1 (0 where none).

    The stiffest direction of the ODE is one where the data has no spread: there ``D`` does not
    depend on ``x`` and ``eps_hat = (xh - D) / rho``. A perturbation ``u = delta xh / rho`` of it
    obeys ``u_{i+1} = (rho_i u_i + sum_j C_ij u_{i-j}) / rho_{i+1}``, whose characteristic
    polynomial has the root 1 (the exact solution, u constant) and r parasitic roots. Steps
    into sigma = 0 and from rho = inf are left out (0): the first is DDIM there, the second has
    no history.
    """
    radius = np.zeros(len(C))
    for r in np.unique(degrees):
        if r == 0:
            continue
        rows = [i for i in np.flatnonzero(degrees == r) if rho[i + 1] > 0 and np.isfinite(rho[i])]
        if not rows:
            continue
        rows = np.array(rows)
        a = np.array([C[i] for i in rows]) / rho[rows + 1, None]
        a[:, 0] += rho[rows] / rho[rows + 1]
        # z^(r+1) - sum_j a_j z^(r-j), divided by (z - 1): the r parasitic roots
        deflated = np.cumsum(np.concatenate([np.ones((len(rows), 1)), -a], axis=1), axis=1)[:, :r + 1]
        companion = np.zeros((len(rows), r, r))
        companion[:, 0, :] = -deflated[:, 1:]
        companion[:, np.arange(1, r), np.arange(r - 1)] = 1.0
        radius[rows] = np.abs(np.linalg.eigvals(companion)).max(axis=1)
    return radius


def data_form_weights(sigma, alpha, C, lead=0):
    """Turn rho-space ``C_ij`` into the update ``x_{i+1} = alpha_{i+1} D_i + sum_j c_ij eps_hat_j``.

    From ``xh_i = D_i + rho_i eps_hat_i`` and ``sum_j C_ij = rho_{i+1} - rho_i``:
    ``c_ij = alpha_{i+1} C_ij``, except for the node ``i`` itself (position ``lead``: 0 for a
    predictor, 1 for a corrector), whose weight is ``sigma_{i+1}`` minus the others.
    This form stays finite at the flow start (rho_i = inf), has no cancellation in the
    step into sigma = 0, and with r = 0 it is DDIM: ``alpha_{i+1} D_i + sigma_{i+1} eps_hat_i``.
    """
    weights = []
    for i, c in enumerate(C):
        if c is None:
            weights.append(None)
            continue
        w = alpha[i + 1] * c
        w[lead] = sigma[i + 1] - (np.delete(w, lead).sum())
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
