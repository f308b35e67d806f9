"""DEIS core: pure torch + numpy, usable from any k-diffusion-style code.

    from deis import sample_deis
    x = sample_deis(denoiser, noise * sigmas[0], sigmas, variant="tab", degree=3)
    x = sample_deis_tab2_v(denoiser, noise * sigmas[0], sigmas)  # the recommended default
"""

from .cache import CoefficientCache, default_cache
from .coefficients import TABLEAUS
from .parameterisation import get_parameterisation
from .plan import VARIANTS, get_plan
from .sampling import (CONFIGURATIONS, sample_deis, sample_deis_ipndm, sample_deis_ipndm_v,
                       sample_deis_logrhoab3, sample_deis_rhoab3, sample_deis_rhork3, sample_deis_tab1,
                       sample_deis_tab2, sample_deis_tab2_v, sample_deis_tab3,
                       sample_deis_tab3_v)
from .timemaps import DiscreteVPTime, FlowTime, TimeMap, VPLinearTime, default_time_map

__all__ = [
    "CONFIGURATIONS", "TABLEAUS", "VARIANTS", "CoefficientCache", "DiscreteVPTime", "FlowTime", "TimeMap",
    "VPLinearTime", "default_cache", "default_time_map", "get_parameterisation", "get_plan", "sample_deis",
    "sample_deis_ipndm", "sample_deis_ipndm_v", "sample_deis_logrhoab3", "sample_deis_rhoab3",
    "sample_deis_rhork3", "sample_deis_tab1", "sample_deis_tab2", "sample_deis_tab2_v", "sample_deis_tab3",
    "sample_deis_tab3_v",
]
