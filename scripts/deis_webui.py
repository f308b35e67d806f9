"""A1111 / Forge WebUI entry: the DEIS samplers in the WebUI's sampler list.

The WebUI imports every file in an extension's scripts/ at start (and again on "Reload UI").
This one loads the pack's ``deis`` core by file path, under a module name of its own, so that
another extension's ``deis`` or ``nodes`` package on ``sys.path`` cannot stand in for it, and
registers one WebUI sampler per curated configuration. It imports nothing from ComfyUI, and
ComfyUI never imports scripts/.
"""

import importlib.util
import logging
import sys
from pathlib import Path

PACK = Path(__file__).resolve().parent.parent
CORE_MODULE = "deis_sampler_pack_core"

log = logging.getLogger("deis-webui")

#: The WebUI's label of each of the core's entries (deis.ENTRIES, ComfyUI's dropdown entries), whose ComfyUI name
#: is the alias.
LABELS = {"deis_corrected": "DEIS corrected", "deis_auto": "DEIS auto", "deis_sde": "DEIS SDE"}


def load_core():
    """The pack's ``deis`` package, loaded from this pack's files whatever ``sys.path`` holds."""
    core = sys.modules.get(CORE_MODULE)
    if core is not None and Path(core.__file__).resolve().parent == PACK / "deis":
        return core
    spec = importlib.util.spec_from_file_location(CORE_MODULE, PACK / "deis" / "__init__.py",
                                                  submodule_search_locations=[str(PACK / "deis")])
    core = importlib.util.module_from_spec(spec)
    sys.modules[CORE_MODULE] = core
    spec.loader.exec_module(core)
    return core


def predictor_of(model):
    """The object that knows the model's sigmas: Forge's predictor, or A1111's k-diffusion wrapper."""
    inner = getattr(model, "inner_model", None)
    for candidate in (getattr(inner, "predictor", None), inner):
        if candidate is not None and getattr(candidate, "sigmas", None) is not None:
            return candidate
    return None


def model_options(core, model):
    """What the WebUI's model tells the core: the flow form for Forge's ``prediction_type == 'const'``, and the
    model's own time from its sigmas (``deis.model_time_map``)."""
    predictor = predictor_of(model)
    parameterisation = "flow" if getattr(predictor, "prediction_type", None) == "const" else "ve"
    table = None if predictor is None else predictor.sigmas.detach().cpu().double().numpy()
    return dict(parameterisation=parameterisation, model_time_map=core.model_time_map(parameterisation, table))


def webui_sampler(entry):
    """A k-diffusion-signature sampler for the entry ``entry`` that reads the WebUI's model before calling the core.

    A stochastic entry takes ``eta`` and ``s_noise`` in its signature. The WebUI passes ``eta`` ("Eta for
    k-diffusion samplers") to any sampler whose signature has it; ``s_noise`` ("sigma noise") only to those that
    list it among their extra parameters (``EXTRA_PARAMS``).
    """
    core = load_core()

    def sample(model, x, sigmas, extra_args=None, callback=None, disable=None):
        return core.sample_deis(model, x, sigmas, extra_args, callback, disable, config=entry,
                                cfg=guidance_of(extra_args), **model_options(core, model))

    def sample_stochastic(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=None, s_noise=1.0,
                          noise_sampler=None):
        form = model_options(core, model)
        eta = core.CONFIGURATIONS[entry][form["parameterisation"]].eta if eta is None else eta
        return core.sample_deis(model, x, sigmas, extra_args, callback, disable, config=entry, **form, eta=eta,
                                s_noise=s_noise, noise_sampler=noise_sampler)

    return sample_stochastic if is_stochastic(core, entry) else sample


def guidance_of(extra_args):
    """The CFG scale the WebUI samples at: its k-diffusion samplers pass ``cond_scale`` (the "CFG Scale" setting) in
    ``extra_args``; None where it does not."""
    cfg = (extra_args or {}).get("cond_scale")
    return float(cfg) if isinstance(cfg, (int, float)) and not isinstance(cfg, bool) else None


def is_stochastic(core, entry):
    return any(config.eta for config in core.CONFIGURATIONS[entry].values())


#: The WebUI's settings a stochastic sampler takes beyond eta. The WebUI looks a k-diffusion sampler's
#: extra parameters up by its function's name in ``sampler_extra_params``, which a function passed in
#: does not have; ``make_sampler`` sets them on the sampler instead, so that the WebUI passes the
#: "sigma noise" setting and records it in the infotext, as it does for its own SDE samplers.
EXTRA_PARAMS = ["s_noise"]


def make_sampler(kdiffusion, function, model, stochastic):
    sampler = kdiffusion.KDiffusionSampler(function, model)
    if stochastic:
        sampler.extra_params = list(EXTRA_PARAMS)
    return sampler


def register():
    """Add each configuration to the WebUI's samplers once; never replace a sampler it already has."""
    from modules import sd_samplers, sd_samplers_common, sd_samplers_kdiffusion

    core = load_core()
    taken = {data.name for data in sd_samplers.all_samplers}
    added = []
    for alias in core.ENTRIES:
        label = LABELS[alias]
        if label in taken:
            continue
        function, stochastic = webui_sampler(alias), is_stochastic(core, alias)
        data = sd_samplers_common.SamplerData(
            label, lambda model, function=function, stochastic=stochastic: make_sampler(
                sd_samplers_kdiffusion, function, model, stochastic), [alias], {})
        if hasattr(sd_samplers, "add_sampler"):  # Forge
            sd_samplers.add_sampler(data)
        else:  # A1111
            sd_samplers.all_samplers.append(data)
            sd_samplers.all_samplers_map = {x.name: x for x in sd_samplers.all_samplers}
        added.append(label)
    if added and not hasattr(sd_samplers, "add_sampler"):
        sd_samplers.set_samplers()
    return added


try:
    register()
except ImportError as error:  # not inside a WebUI
    log.debug("DEIS: no WebUI here (%s); nothing registered", error)
except Exception:  # a changed WebUI: report, never break its start
    log.exception("DEIS: could not register the samplers with this WebUI")
