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


def sd15_normal(n):
    """ComfyUI's ``normal`` scheduler on SD1.x: uniform in the table index from 999 to 0, then 0."""
    return np.append(SD15.rho_of_t(np.linspace(SD15.sigmas.size - 1, 0, n)), 0.0)


def flow_shift(n, shift=3.0):
    """ComfyUI's ``simple`` scheduler on a flow model with this shift: starts at sigma = 1, ends at 0."""
    t = np.linspace(1, 0, n + 1)
    return shift * t / (1 + (shift - 1) * t)


def edm(n):
    """EDM/Karras (sigma 0.002 to 80, rho 7), then 0."""
    return karras(n, 0.002, 80.0)
