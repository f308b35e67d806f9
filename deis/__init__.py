"""DEIS core: pure torch + numpy, usable from any k-diffusion-style code.

    from deis import Config, sample_deis, sample_deis_corrected
    x = sample_deis(denoiser, noise * sigmas[0], sigmas)  # deis_auto, SD-style (VE form)
    x = sample_deis_corrected(denoiser, noise, sigmas, parameterisation="flow")  # deis_corrected, a flow model
    x = sample_deis(denoiser, noise * sigmas[0], sigmas, corrector=True)  # deis_auto with the corrector
    x = sample_deis(denoiser, noise * sigmas[0], sigmas, config=Config())  # the paper's tAB3
    x = sample_deis_sde(denoiser, noise * sigmas[0], sigmas, eta=0.5)  # stochastic
"""

from .cache import CoefficientCache, default_cache
from .coefficients import INTEGRANDS, TABLEAUS
from .config import CONFIGURATIONS, ENTRIES, OPTIONS, Config, ConfigError, configure, named_config
from .parameterisation import get_parameterisation
from .plan import get_plan, get_runge_kutta_plan
from .sampling import (SAMPLERS, default_noise_sampler, sample_deis, sample_deis_auto, sample_deis_corrected,
                       sample_deis_rk, sample_deis_sde)
from .timemaps import DiscreteVPTime, FlowTime, TimeMap, VPLinearTime, default_time_map, model_time_map

__all__ = [
    "CONFIGURATIONS", "ENTRIES", "INTEGRANDS", "OPTIONS", "SAMPLERS", "TABLEAUS",
    "CoefficientCache", "Config", "ConfigError", "DiscreteVPTime", "FlowTime", "TimeMap", "VPLinearTime",
    "configure", "default_cache", "default_noise_sampler", "default_time_map", "get_parameterisation", "get_plan",
    "get_runge_kutta_plan", "model_time_map", "named_config", "sample_deis", "sample_deis_auto",
    "sample_deis_corrected", "sample_deis_rk", "sample_deis_sde",
]
