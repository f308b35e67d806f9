"""An independent, high-precision computation of the multistep DEIS coefficients (mpmath).

It shares nothing with deis.coefficients but the definition
``C_ij = integral from rho_i to rho_{i+1} of L_j(v(rho)) d rho``: the Lagrange basis is
built as a polynomial in mpmath, the time maps are written again from their formulas,
and the integrals are either exact antiderivatives or tanh-sinh quadrature in rho
(never the Gauss-Legendre panels in log rho that the package uses).
"""

import mpmath as mp

mp.mp.dps = 30


def rho_of_sigma(sigma, parameterisation):
    sigma = mp.mpf(sigma)
    if parameterisation == "flow":
        return mp.inf if sigma == 1 else sigma / (1 - sigma)
    return sigma


def _mul_linear(poly, node, scale):
    """poly(t) * (t - node) / scale, highest power first."""
    out = [mp.mpf(0)] * (len(poly) + 1)
    for m, a in enumerate(poly):
        out[m] += a / scale
        out[m + 1] -= a * node / scale
    return out


def lagrange_basis(nodes, j):
    poly = [mp.mpf(1)]
    for k, node in enumerate(nodes):
        if k != j:
            poly = _mul_linear(poly, node, nodes[j] - node)
    return poly


def derivative(poly):
    n = len(poly) - 1
    return [a * (n - m) for m, a in enumerate(poly[:-1])] or [mp.mpf(0)]


class VPLinear:
    def __init__(self, beta_min=0.1, beta_max=20.0):
        self.b0, self.bd = mp.mpf(beta_min), mp.mpf(beta_max) - mp.mpf(beta_min)

    def t(self, rho):
        if rho == mp.inf:
            return mp.inf
        return (mp.sqrt(self.b0 ** 2 + 2 * self.bd * mp.log(1 + rho ** 2)) - self.b0) / self.bd


class Flow:
    def t(self, rho):
        return mp.mpf(1) if rho == mp.inf else rho / (1 + rho)


class Table:
    """Fractional index into a sigma table, log-linear between entries and beyond both ends."""

    def __init__(self, sigmas):
        self.log_sigmas = [mp.log(mp.mpf(float(s))) for s in sigmas]

    def segment(self, t):
        """The table segment used at time t: [k, k+1], extended past both ends."""
        last = len(self.log_sigmas) - 2
        return last if t == mp.inf else 0 if t == -mp.inf else min(max(int(mp.floor(t)), 0), last)

    def t(self, rho):
        if rho == mp.inf:
            return mp.inf
        log_rho, ls = mp.log(rho), self.log_sigmas
        k = max((n for n in range(len(ls) - 1) if ls[n] <= log_rho), default=0)
        k = min(k, len(ls) - 2)
        return k + (log_rho - ls[k]) / (ls[k + 1] - ls[k])

    def integral(self, poly, t_from, t_to):
        """integral of poly(t) d rho(t) from t_from to t_to, exactly, segment by segment.

        On a segment ``rho = exp(a + b t)``, and ``poly(t) b e^(a + b t)`` has the antiderivative
        ``e^(a + b t) * sum_n (-1)^n poly^(n)(t) / b^n``.
        """
        lo, hi = sorted((t_from, t_to))
        total = mp.mpf(0)
        first, last = self.segment(lo), self.segment(hi)
        for k in range(first, last + 1):
            slope = self.log_sigmas[k + 1] - self.log_sigmas[k]
            a = self.log_sigmas[k] - k * slope
            left = lo if k == first else mp.mpf(k)
            right = hi if k == last else mp.mpf(k + 1)
            total += self._antiderivative(poly, a, slope, right) - self._antiderivative(poly, a, slope, left)
        return total if t_to > t_from else -total

    @staticmethod
    def _antiderivative(poly, a, b, t):
        if t == -mp.inf:
            return mp.mpf(0)
        total, p, n = mp.mpf(0), poly, 0
        while any(c != 0 for c in p):
            total += (-1) ** n * mp.polyval(p, t) / b ** n
            p, n = derivative(p), n + 1
        return mp.exp(a + b * t) * total


def coefficients(variant, sigmas, parameterisation, i, degree, time_map=None, nodes=None, integrand="eps"):
    """``C_i0..C_ir`` for step i (floats): the integral over the step of each Lagrange basis polynomial on the
    nodes ``nodes`` (schedule indices; default the predictor's, ``i, i - 1, ..., i - degree``), against
    d rho (eps), d arctan(rho) (v) or d (1 / rho) (data)."""
    rho = [rho_of_sigma(s, parameterisation) for s in sigmas]
    if rho[i + 1] == 0:
        variant = "rhoab"  # the package takes every step into rho = 0 in rho
    if variant == "rhoab":
        v = lambda x: x  # noqa: E731
    elif variant == "logrhoab":
        v = mp.log
    else:
        v = time_map.t
    nodes = list(range(i, i - degree - 1, -1)) if nodes is None else list(nodes)
    values = [v(rho[k]) for k in nodes]
    return [float(integral(variant, lagrange_basis(values, j), rho[i], rho[i + 1], time_map, integrand))
            for j in range(len(nodes))]


def integral(variant, poly, rho_from, rho_to, time_map=None, integrand="eps"):
    """integral from rho_from to rho_to of poly(v(rho)) d mu, for the variant's variable v and the integrand's
    measure mu (rho, arctan(rho) or 1 / rho)."""
    if integrand == "eps":
        if variant == "rhoab":
            antiderivative = [a / (len(poly) - m) for m, a in enumerate(poly)] + [0]
            return mp.polyval(antiderivative, rho_to) - mp.polyval(antiderivative, rho_from)
        if variant == "tab" and isinstance(time_map, Table):
            return time_map.integral(poly, time_map.t(rho_from), time_map.t(rho_to))
    v = (lambda x: x) if variant == "rhoab" else mp.log if variant == "logrhoab" else time_map.t
    density = {"eps": lambda x: 1, "v": lambda x: 1 / (1 + x ** 2), "data": lambda x: -1 / x ** 2}[integrand]
    points = [rho_to, rho_from]
    if isinstance(time_map, Table) and variant == "tab":  # the table's time has a kink at every entry
        inside = [mp.exp(ls) for ls in time_map.log_sigmas if rho_to < mp.exp(ls) < rho_from]
        points = [rho_to] + sorted(inside) + [rho_from]
    if rho_from == mp.inf:  # the flow start: the v and data measures are finite there
        points[-1] = mp.inf
    return -mp.quad(lambda x: mp.polyval(poly, v(x)) * density(x), points)


def ab_nodes(degrees):
    """The predictor's nodes of every step, consecutive: ``(i, i - 1, ..., i - r_i)``, newest first."""
    return [tuple(range(i, i - r - 1, -1)) for i, r in enumerate(degrees)]


def am_nodes(degrees):
    """The correction's nodes of every step: the point the predictor predicted and its nodes,
    ``(i + 1, i, ..., i - r_i)``."""
    return [tuple(range(i + 1, i - r - 1, -1)) for i, r in enumerate(degrees)]
