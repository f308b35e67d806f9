"""DEIS core: pure torch + numpy, usable from any k-diffusion-style code.

    from deis import sample_deis
    x = sample_deis(denoiser, noise * sigmas[0], sigmas)  # the recommended configuration (VE form)
    x = sample_deis(denoiser, noise, sigmas, parameterisation="flow")  # ... for a flow model
    x = sample_deis(denoiser, noise * sigmas[0], sigmas, variant="tab", degree=3)  # the paper's tAB3
    x = sample_deis(denoiser, noise * sigmas[0], sigmas, eta=1.0)  # stochastic: deis_sde
"""

from .cache import CoefficientCache, default_cache
from .coefficients import INTEGRANDS, TABLEAUS
from .options import (RECOMMENDED, RECOMMENDED_CORRECTED, RECOMMENDED_STOCHASTIC, VARIANTS, Options,
                      recommended_options, resolve)
from .parameterisation import get_parameterisation
from .plan import get_plan
from .sampling import (CONFIGURATIONS, default_noise_sampler, sample_deis, sample_deis_auto, sample_deis_corrected,
                       sample_deis_sde)
from .timemaps import DiscreteVPTime, FlowTime, TimeMap, VPLinearTime, default_time_map, model_time_map

__all__ = [
    "CONFIGURATIONS", "INTEGRANDS", "RECOMMENDED", "RECOMMENDED_CORRECTED", "RECOMMENDED_STOCHASTIC", "TABLEAUS",
    "VARIANTS",
    "CoefficientCache", "DiscreteVPTime", "FlowTime", "Options", "TimeMap", "VPLinearTime", "default_cache",
    "default_noise_sampler", "default_time_map", "get_parameterisation", "model_time_map", "get_plan",
    "recommended_options",
    "resolve", "sample_deis", "sample_deis_auto", "sample_deis_corrected", "sample_deis_sde",
]
