"""The two ways a model's sigma maps onto the exponential-integrator variable rho.

In the sampler's space every model is ``x = alpha(sigma) * x0 + sigma * eps``.
With ``rho = sigma / alpha`` and ``xh = x / alpha`` the probability-flow ODE is exactly
``d xh / d rho = eps_hat``, where ``eps_hat = (x - alpha * D) / sigma``.

* VE form, ``alpha = 1``: k-diffusion wrappers and ComfyUI's EPS / V_PREDICTION / EDM /
  X0 families. ``rho = sigma``.
* Flow form, ``alpha = 1 - sigma``: rectified-flow models (ComfyUI's CONST: SD3, Flux,
  Wan, ...). ``rho = sigma / (1 - sigma)``, infinite at the pure-noise end ``sigma = 1``.

Everything here works on float64 numpy arrays.
"""

import numpy as np


class Parameterisation:
    name = ""

    def alpha(self, sigma):
        raise NotImplementedError

    def rho(self, sigma):
        raise NotImplementedError

    def sigma_from_rho(self, rho):
        raise NotImplementedError

    def check_sigmas(self, sigmas):
        """Raise ValueError if ``sigmas`` (float64, already checked finite) lie outside this form's range."""

    def __repr__(self):
        return f"<{self.name} parameterisation>"


class VarianceExploding(Parameterisation):
    name = "ve"

    def alpha(self, sigma):
        return np.ones_like(np.asarray(sigma, dtype=np.float64))

    def rho(self, sigma):
        return np.asarray(sigma, dtype=np.float64).copy()

    def sigma_from_rho(self, rho):
        return np.asarray(rho, dtype=np.float64).copy()


class Flow(Parameterisation):
    name = "flow"

    def alpha(self, sigma):
        return 1.0 - np.asarray(sigma, dtype=np.float64)

    def rho(self, sigma):
        sigma = np.asarray(sigma, dtype=np.float64)
        with np.errstate(divide="ignore"):
            return np.where(sigma < 1.0, sigma / (1.0 - sigma), np.inf)

    def sigma_from_rho(self, rho):
        rho = np.asarray(rho, dtype=np.float64)
        # rho / (1 + rho), written so that rho = inf gives exactly 1.
        return np.where(np.isinf(rho), 1.0, rho / (1.0 + np.where(np.isinf(rho), 0.0, rho)))

    def check_sigmas(self, sigmas):
        if sigmas.max() > 1.0:
            raise ValueError(
                f"flow sigmas must lie in [0, 1] (sigma = 1 is pure noise); got sigma = {sigmas.max():g}")


VE = VarianceExploding()
FLOW = Flow()
PARAMETERISATIONS = {"ve": VE, "flow": FLOW}


def get_parameterisation(name):
    if isinstance(name, Parameterisation):
        return name
    try:
        return PARAMETERISATIONS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown parameterisation {name!r}; expected one of {sorted(PARAMETERISATIONS)}") from None
