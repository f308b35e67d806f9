"""What a ComfyUI model tells the sampler: its form (VE or flow) and its own time. The one place that reads
``model_sampling``."""

import logging
import numbers
import weakref

from ..deis import model_time_map

log = logging.getLogger("comfyui-deis")

#: ComfyUI's model_sampling prediction classes whose sampler space is ``x = x0 + sigma * eps``.
VE_CLASSES = {"EPS", "V_PREDICTION", "EDM", "X0", "IMG_TO_IMG", "COSMOS_RFLOW"}
#: ... and whose sampler space is ``x = (1 - sigma) * x0 + sigma * eps``.
FLOW_CLASSES = {"CONST"}

_time_maps = weakref.WeakKeyDictionary()
_warned = set()


def model_sampling_of(model):
    """The model_sampling object behind the denoiser ComfyUI hands a sampler, or None."""
    try:
        return model.inner_model.model_patcher.get_model_object("model_sampling")
    except AttributeError:
        pass
    try:
        return model.inner_model.inner_model.model_sampling
    except AttributeError:
        return None


def parameterisation_of(model_sampling):
    """``"flow"`` for CONST models, ``"ve"`` for the EPS family and (with one warning) anything else."""
    names = {cls.__name__ for cls in type(model_sampling).__mro__}
    if names & FLOW_CLASSES:
        return "flow"
    if not names & VE_CLASSES:
        name = type(model_sampling).__name__
        if name not in _warned:
            _warned.add(name)
            log.warning("DEIS: unknown model_sampling class %s; sampling it in the VE form (alpha = 1)", name)
    return "ve"


def sigma_table_of(model_sampling):
    """The model's 1-D table of sigmas as float64 numpy, or None where it has none."""
    table = getattr(model_sampling, "sigmas", None)
    if table is None or getattr(table, "ndim", 0) != 1 or table.numel() < 2:
        return None
    return table.detach().cpu().double().numpy()


def time_map_of(model_sampling, parameterisation):
    """The model's own time for tAB (deis.timemaps.model_time_map), made once per model_sampling."""
    try:
        return _time_maps[model_sampling][parameterisation]
    except (KeyError, TypeError):
        pass
    time_map = model_time_map(parameterisation, sigma_table_of(model_sampling))
    try:
        _time_maps.setdefault(model_sampling, {})[parameterisation] = time_map
    except TypeError:
        pass
    return time_map


def model_options(model):
    """``parameterisation`` and ``model_time_map`` for the core, from the denoiser ComfyUI hands a sampler. A model
    whose model_sampling cannot be found is sampled in the VE form, with one warning naming what was missing."""
    model_sampling = model_sampling_of(model)
    if model_sampling is None:
        name = type(model).__name__
        if ("no model_sampling", name) not in _warned:
            _warned.add(("no model_sampling", name))
            log.warning("DEIS: the model handed to the sampler (%s) has no model_sampling (looked for "
                        "inner_model.model_patcher's and inner_model.inner_model's); sampling it in the VE form "
                        "(alpha = 1) in the paper's VP time", name)
        return dict(parameterisation="ve")
    parameterisation = parameterisation_of(model_sampling)
    return dict(parameterisation=parameterisation, model_time_map=time_map_of(model_sampling, parameterisation))


def guidance_of(model):
    """The CFG scale of the guider behind the denoiser ComfyUI hands a sampler, or None where it is not a number.

    The guider is the inner model of ComfyUI's KSamplerX0Inpaint. CFGGuider (KSampler's and SamplerCustom's) holds
    it as ``cfg``; BasicGuider inherits its ``cfg`` of 1, and applies no guidance; DualCFGGuider holds two scales,
    ``cfg1`` and ``cfg2``, and the larger is read (its own ``cfg`` is the inherited 1)."""
    guider = getattr(model, "inner_model", None)
    names = ("cfg1", "cfg2") if hasattr(guider, "cfg1") or hasattr(guider, "cfg2") else ("cfg",)
    scales = [as_scale(getattr(guider, name, None)) for name in names]
    return None if None in scales else max(scales)


def as_scale(value):
    """A guidance scale as a Python float: a number, a numpy number or a tensor of one value; else None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, numbers.Real):
        return float(value)
    if getattr(value, "ndim", None) == 0 or getattr(value, "shape", None) == (1,):
        try:
            return float(value)
        except (TypeError, ValueError):
            return None
    return None
