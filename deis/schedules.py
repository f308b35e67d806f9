"""DEIS time schedules (the paper's section on time discretisation), as sigmas ending with 0.

* ``time_uniform``: uniform in ``t^(1/kappa)`` of the model's own time, from ``t(sigma_max)`` to
  ``t(sigma_min)``. ``kappa = 2`` ("quadratic in t") is the paper's and the official code's
  choice; ``kappa = 1`` is uniform in t.
* ``log_rho_uniform``: uniform in ``log rho`` (an exponential schedule).
* ``rho_polynomial``: uniform in ``rho^(1/power)`` (Karras et al. with ``power = 7``).

All three work in ``rho = sigma / alpha`` and return sigmas in the given parameterisation.
"""

import numpy as np

from .parameterisation import get_parameterisation


def _check(n, sigma_min, sigma_max):
    if int(n) != n or n < 1:
        raise ValueError(f"a schedule needs at least 1 step; got {n}")
    if not (np.isfinite(sigma_min) and np.isfinite(sigma_max) and 0 < sigma_min < sigma_max):
        raise ValueError(f"a schedule needs 0 < sigma_min < sigma_max; got {sigma_min}, {sigma_max}")


def _finite_rho_range(sigma_min, sigma_max, parameterisation, name):
    rho_min, rho_max = get_parameterisation(parameterisation).rho(np.array([sigma_min, sigma_max]))
    if not np.isfinite(rho_max):
        raise ValueError(f"{name} steps cannot start at rho = inf (flow sigma = 1); lower sigma_max")
    return rho_min, rho_max


def _finish(rho, parameterisation):
    sigmas = get_parameterisation(parameterisation).sigma_from_rho(rho)
    return np.append(sigmas, 0.0)


def time_uniform(n, sigma_min, sigma_max, time_map, parameterisation="ve", kappa=2.0):
    """``n`` sigmas uniform in ``t^(1/kappa)``, then 0. ``sigma_max = 1`` in the flow form starts at pure noise."""
    _check(n, sigma_min, sigma_max)
    if not kappa > 0:
        raise ValueError(f"kappa must be positive; got {kappa}")
    param = get_parameterisation(parameterisation)
    t_max, t_min = time_map.t_of_rho(param.rho(np.array([sigma_max, sigma_min])))
    if not np.isfinite(t_max):
        raise ValueError(f"this time map has no finite time at sigma_max = {sigma_max}")
    # t may be slightly negative below a table's first entry; the power acts on t measured from t_min.
    offset = min(t_min, 0.0)
    ramp = np.linspace((t_max - offset) ** (1 / kappa), (t_min - offset) ** (1 / kappa), n) ** kappa + offset
    rho = time_map.rho_of_t(ramp)
    rho[0] = param.rho(sigma_max)  # exact ends, free of round-off
    if n > 1:
        rho[-1] = param.rho(sigma_min)
    return _finish(rho, parameterisation)


def log_rho_uniform(n, sigma_min, sigma_max, parameterisation="ve"):
    _check(n, sigma_min, sigma_max)
    rho_min, rho_max = _finite_rho_range(sigma_min, sigma_max, parameterisation, "log-rho-uniform")
    return _finish(np.exp(np.linspace(np.log(rho_max), np.log(rho_min), n)), parameterisation)


def rho_polynomial(n, sigma_min, sigma_max, parameterisation="ve", power=7.0):
    _check(n, sigma_min, sigma_max)
    if not power > 0:
        raise ValueError(f"power must be positive; got {power}")
    rho_min, rho_max = _finite_rho_range(sigma_min, sigma_max, parameterisation, "rho-polynomial")
    ramp = np.linspace(rho_max ** (1 / power), rho_min ** (1 / power), n) ** power
    return _finish(ramp, parameterisation)
