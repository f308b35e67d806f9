"""Reference schedules, built as ComfyUI and k-diffusion build them, in float64."""

import numpy as np

from deis.timemaps import DiscreteVPTime

#: The SD1.x sigma table (sqrt-linear betas 0.00085..0.012, 1000 steps).
SD15 = DiscreteVPTime.from_betas()


def karras(n, sigma_min, sigma_max, rho=7.0):
    """k-diffusion's ``get_sigmas_karras``: n sigmas, then 0."""
    ramp = np.linspace(0, 1, n)
    sigmas = (sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return np.append(sigmas, 0.0)


def sd15_karras(n):
    return karras(n, SD15.sigmas[0], SD15.sigmas[-1])


def normal(table, n):
    """ComfyUI's ``normal`` scheduler on a model with the sigma table ``table`` (a DiscreteVPTime): uniform in the
    table index from the last to 0, then 0."""
    return np.append(table.rho_of_t(np.linspace(table.sigmas.size - 1, 0, n)), 0.0)


def sd15_normal(n):
    """ComfyUI's ``normal`` scheduler on SD1.x."""
    return normal(SD15, n)


def flow_shift(n, shift=3.0):
    """ComfyUI's ``simple`` scheduler on a flow model with this shift: starts at sigma = 1, ends at 0."""
    t = np.linspace(1, 0, n + 1)
    return shift * t / (1 + (shift - 1) * t)


def edm(n):
    """EDM/Karras (sigma 0.002 to 80, rho 7), then 0."""
    return karras(n, 0.002, 80.0)


def flow_beta(n, shift=3.0, a=0.6, b=0.6, timesteps=1000):
    """ComfyUI's ``beta`` scheduler on a flow model with this shift: n timesteps at the quantiles of a Beta(a, b)
    distribution, rounded to the model's table of sigmas (``shift t / (1 + (shift - 1) t)`` at ``t = k / 1000``), a
    repeated timestep kept once, then 0."""
    from scipy.stats import beta

    t = np.arange(1, timesteps + 1) / timesteps
    table = shift * t / (1 + (shift - 1) * t)
    indices = np.rint(beta.ppf(1 - np.linspace(0, 1, n, endpoint=False), a, b) * (timesteps - 1)).astype(int)
    kept = [k for j, k in enumerate(indices) if j == 0 or k != indices[j - 1]]
    return np.append(table[kept], 0.0)
