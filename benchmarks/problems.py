"""Exact test problems: data whose denoiser and probability-flow ODE are known.

Every coordinate of ``x0`` is drawn independently from a 1-D Gaussian mixture. Then

    D(x, sigma) = E[x0 | x] = sum_k w_k(x) * (m_k + alpha s_k^2 / (alpha^2 s_k^2 + sigma^2) * (x - alpha m_k))

with responsibilities ``w_k`` proportional to ``pi_k N(x; alpha m_k, alpha^2 s_k^2 + sigma^2)``, for
``x = alpha x0 + sigma eps`` in either parameterisation. With one component the ODE has the
closed-form solution of DEIS-NOTES section 6; with several, ``reference`` integrates
``d xh / d rho = (xh - D) / rho`` with scipy's DOP853 at rtol 1e-12 in float64.
"""

import math

import numpy as np
import torch

VE, FLOW = "ve", "flow"


class GaussianMixture:
    def __init__(self, means=(0.5,), stds=(1.0,), weights=None):
        self.means = np.asarray(means, dtype=np.float64)
        self.stds = np.asarray(stds, dtype=np.float64)
        weights = np.ones_like(self.means) if weights is None else np.asarray(weights, dtype=np.float64)
        self.weights = weights / weights.sum()

    # ----------------------------------------------------------------- denoisers
    def _posterior_mean(self, x, alpha, sigma, lib):
        """E[x0 | x] for arrays (numpy or torch) broadcastable against the component axis (last)."""
        m, s, pi = (lib.as_tensor(a, dtype=x.dtype, device=x.device) if lib is torch else a
                    for a in (self.means, self.stds, self.weights))
        x, alpha, sigma = x[..., None], alpha[..., None], sigma[..., None]
        var = alpha ** 2 * s ** 2 + sigma ** 2
        log_w = lib.log(pi) - 0.5 * (x - alpha * m) ** 2 / var - 0.5 * lib.log(var)
        if lib is torch:
            w = torch.softmax(log_w, dim=-1)
        else:
            w = np.exp(log_w - log_w.max(axis=-1, keepdims=True))
            w /= w.sum(axis=-1, keepdims=True)
        means = m + alpha * s ** 2 / var * (x - alpha * m)
        return (w * means).sum(-1)

    def denoiser(self, parameterisation=VE):
        """A k-diffusion-style denoiser ``model(x, sigma_batch) -> D`` in the given parameterisation."""

        def model(x, sigma, **kwargs):
            # Computed in float64 and returned in x's dtype, as a network run in x's dtype would.
            x64 = x.double()
            sigma = sigma.double().reshape(-1, *([1] * (x.ndim - 1))).expand_as(x64)
            alpha = 1.0 - sigma if parameterisation == FLOW else torch.ones_like(sigma)
            return self._posterior_mean(x64, alpha, sigma, torch).to(x.dtype)

        return model

    # ----------------------------------------------------------------- exact solutions
    def _xh_far(self, z, rho):
        """``xh`` at large ``rho`` on the trajectory with ``xh ~ rho z`` as rho -> inf."""
        mean = (self.weights * self.means).sum()
        var = (self.weights * (self.stds ** 2 + self.means ** 2)).sum() - mean ** 2
        if self.means.size == 1:
            return mean + z * math.sqrt(var + rho ** 2)
        start = max(rho, 1e4)
        xh = start * z + mean + var * z / (2 * start)
        return xh if start == rho else self._solve(xh, start, rho)

    def reference(self, x, sigma0, sigma1, parameterisation=VE):
        """The exact ODE solution from ``x`` at ``sigma0`` to ``sigma1`` (numpy float64)."""
        x = np.asarray(x, dtype=np.float64)
        rho0, rho1 = rho_of(sigma0, parameterisation), rho_of(sigma1, parameterisation)
        if math.isinf(rho0):  # flow start: x is the noise itself
            return to_x(self._xh_far(x, rho1), sigma1, parameterisation)
        xh0 = x / (1.0 - float(sigma0)) if parameterisation == FLOW else x
        if self.means.size == 1:
            mu, s = self.means[0], self.stds[0]
            xh1 = mu + (xh0 - mu) * math.sqrt((s ** 2 + rho1 ** 2) / (s ** 2 + rho0 ** 2))
        else:
            xh1 = self._solve(xh0, rho0, rho1)
        return to_x(xh1, sigma1, parameterisation)

    def _solve(self, xh0, rho0, rho1):
        from scipy.integrate import solve_ivp

        shape = xh0.shape
        end = max(rho1, 1e-7)  # eps_hat is smooth down to 0; the last 1e-7 of rho moves x by ~1e-14

        def rhs(rho, y):
            d = self._posterior_mean(y, np.ones_like(y), np.full_like(y, rho), np)
            return (y - d) / rho

        sol = solve_ivp(rhs, (rho0, end), xh0.ravel(), method="DOP853", rtol=1e-12, atol=1e-12)
        xh1 = sol.y[:, -1]
        if rho1 == 0:
            xh1 = self._posterior_mean(xh1, np.ones_like(xh1), np.full_like(xh1, end), np)
        return xh1.reshape(shape)


def rho_of(sigma, parameterisation):
    sigma = float(sigma)
    if parameterisation == FLOW:
        return math.inf if sigma >= 1 else sigma / (1 - sigma)
    return sigma


def to_x(xh, sigma, parameterisation):
    return xh * (1.0 - float(sigma)) if parameterisation == FLOW else xh


def relative_error(x, reference):
    x = x.detach().double().cpu().numpy() if torch.is_tensor(x) else np.asarray(x, dtype=np.float64)
    return float(np.linalg.norm(x - reference) / np.linalg.norm(reference))


#: The single Gaussian of DEIS-NOTES section 6.
GAUSSIAN = GaussianMixture(means=(0.5,), stds=(1.0,))
#: A bimodal mixture with narrow modes: nonlinear, and hard at low step counts.
MIXTURE = GaussianMixture(means=(-1.0, 0.5, 2.0), stds=(0.3, 0.2, 0.5), weights=(0.3, 0.4, 0.3))
