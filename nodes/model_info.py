"""What a ComfyUI model tells the sampler: its parameterisation and, for tAB, its own time."""

import logging
import weakref

from ..deis import DiscreteVPTime, FlowTime, default_time_map

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


def parameterisation_of(model_sampling, strict=False):
    """``"flow"`` for CONST models, ``"ve"`` for the EPS family and (with one warning) anything else;
    with ``strict``, None for a model_sampling class the pack does not know."""
    names = {cls.__name__ for cls in type(model_sampling).__mro__}
    if names & FLOW_CLASSES:
        return "flow"
    if strict and not names & VE_CLASSES:
        return None
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
    """The model's own time for tAB: its sigma table if it has one, flow time for flow models."""
    if parameterisation == "flow":
        return FlowTime()
    try:
        return _time_maps[model_sampling]
    except (KeyError, TypeError):
        pass
    table = sigma_table_of(model_sampling)
    time_map = default_time_map("ve")
    if table is not None:
        try:
            time_map = DiscreteVPTime(table)
        except ValueError as error:
            log.warning("DEIS: the model's sigma table is unusable (%s); tAB uses VP-linear time", error)
    try:
        _time_maps[model_sampling] = time_map
    except TypeError:
        pass
    return time_map


def discrete_time_map_of(model_sampling):
    """The model's sigma table as a time map; ValueError if it has none."""
    table = sigma_table_of(model_sampling)
    if table is None:
        raise ValueError(f"time 'discrete_table' needs a model with a sigma table; "
                         f"{type(model_sampling).__name__} has none")
    return DiscreteVPTime(table)
