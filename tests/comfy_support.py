"""A real ComfyUI for the integration tests (COMFYUI_PATH), and test models built from its own classes.

The test models have no weights: a ``comfy.model_base.BaseModel`` whose ``_apply_model``
returns the exact posterior mean of the Gaussian-mixture problem (benchmarks.problems), or a
given denoiser, wrapped in a ModelPatcher. Their kinds are ComfyUI's own model types and
sampling settings (``MODEL_KINDS``); their latent format is the identity, so a latent is the
sampler's x.
"""

import importlib.util
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACK_MODULE = "comfyui_deis_pack_under_test"


def comfy_path():
    path = os.environ.get("COMFYUI_PATH")
    if not path:
        pytest.skip("COMFYUI_PATH is not set: these tests need a ComfyUI checkout "
                    "(fetch Comfy-Org/ComfyUI, check it out, install its requirements, set COMFYUI_PATH)")
    if not Path(path, "comfy", "samplers.py").exists():
        pytest.fail(f"COMFYUI_PATH={path} is not a ComfyUI checkout (no comfy/samplers.py)")
    return Path(path)


def import_comfy():
    """Import ComfyUI's modules in this process, on the CPU."""
    path = str(comfy_path())
    if path not in sys.path:
        sys.path.insert(0, path)
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    import comfy.samplers  # noqa: F401  (after args.cpu: this torch is a CUDA build)
    return path


def import_pack():
    """Load the pack the way ComfyUI does: by path, as a package under a name that is not its folder's."""
    import_comfy()
    if PACK_MODULE in sys.modules:
        return sys.modules[PACK_MODULE]
    spec = importlib.util.spec_from_file_location(PACK_MODULE, REPO / "__init__.py",
                                                  submodule_search_locations=[str(REPO)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK_MODULE] = module
    spec.loader.exec_module(module)
    return module


#: The test models' kinds: ComfyUI's model type and sampling settings, and the form of their sampler space.
MODEL_KINDS = {
    "eps": ("EPS", {}, "ve"),  # SD1.x / SD2.x / SDXL: the discrete table of 1000 sigmas
    "flow": ("FLOW", {"shift": 3.0, "multiplier": 1000}, "flow"),  # SD3, HiDream
    "flux": ("FLUX", {"shift": 1.15}, "flow"),  # Flux, Qwen-Image
    "flow-aura": ("FLOW", {"shift": 1.73, "multiplier": 1.0}, "flow"),  # AuraFlow
    "flow-lumina": ("FLOW", {"shift": 6.0, "multiplier": 1.0}, "flow"),  # Lumina 2, Mochi
    "zsnr": ("V_PREDICTION", {"zsnr": True}, "ve"),  # v-prediction with zero terminal SNR (sigma_max ~4500)
    "edm": ("EDM", {"sigma_max": 80.0, "sigma_min": 0.002, "sigma_data": 0.5}, "ve"),  # Playground v2.5
    "svd": ("V_PREDICTION_EDM", {"sigma_max": 700.0, "sigma_min": 0.002}, "ve"),  # Stable Video Diffusion
    "audio": ("V_PREDICTION_CONTINUOUS", {"sigma_max": 500.0, "sigma_min": 0.03}, "ve"),  # Stable Audio
    "cascade": ("STABLE_CASCADE", {"shift": 2.0}, "ve"),  # Stable Cascade stage C
    # sigma_min 0.01 and about 0.01: the x4 upscaler's v-prediction (beta 1e-4 to 0.02) and Stable Cascade stage B
    "x4": ("V_PREDICTION", {"linear_start": 1e-4, "linear_end": 0.02}, "ve"),
    "cascade-b": ("STABLE_CASCADE", {"shift": 1.0}, "ve"),
}


def form_of(kind):
    """``"ve"`` or ``"flow"``: the sampler space of a test model kind."""
    return MODEL_KINDS[kind][2]


def exact_model(kind="eps", problem=None, denoiser=None):
    """A ModelPatcher around a BaseModel whose denoiser is exact (the mixture's posterior mean by default).

    ``kind``: one of ``MODEL_KINDS`` (ComfyUI's model type and sampling settings: SD1.x's sigma table, flow
    with shift 3, Flux's shift, zero terminal SNR, EDM, SVD, Stable Audio, Stable Cascade, ...).
    ``denoiser(x, sigma, cond)``, where given, replaces the mixture's: ``cond`` is a bool per row, True where
    the row's conditioning is a positive prompt (a cross-attention tensor of ones;
    ``empty_conditioning(positive=True)``).
    """
    import torch
    import comfy.latent_formats
    import comfy.model_base
    import comfy.model_management
    import comfy.model_patcher
    import comfy.supported_models_base

    from benchmarks.problems import MIXTURE

    model_type, settings, form = MODEL_KINDS[kind]
    if denoiser is None:
        problem = MIXTURE if problem is None else problem
        plain = problem.denoiser(form)

        def denoiser(x, sigma, cond=None):
            return plain(x, sigma)

    class Config(comfy.supported_models_base.BASE):
        unet_config = {"disable_unet_model_creation": True}
        latent_format = comfy.latent_formats.LatentFormat
        sampling_settings = dict(settings)

    class ExactModel(comfy.model_base.BaseModel):
        def _apply_model(self, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options={},
                         **kwargs):
            cond = None if c_crossattn is None else c_crossattn.reshape(x.shape[0], -1)[:, 0] > 0.5
            return denoiser(x, t.reshape(-1), cond).to(x.dtype)

        def get_dtype(self):
            return torch.float32

    config = Config({"disable_unet_model_creation": True})
    config.latent_format = comfy.latent_formats.LatentFormat()
    model = ExactModel(config, model_type=getattr(comfy.model_base.ModelType, model_type))
    device = comfy.model_management.get_torch_device()
    return comfy.model_patcher.ModelPatcher(model, load_device=device, offload_device=device)


def empty_conditioning(positive=False):
    """A conditioning list; ``positive`` marks it (ones) so that a test model can tell cond from uncond."""
    import torch

    return [[torch.ones(1, 1, 8) if positive else torch.zeros(1, 1, 8), {}]]


def model_form(model):
    """What the pack reads from a ComfyUI model (its form and its own time), as ``deis.get_plan`` takes it."""
    import types

    pack = import_pack()
    wrapped = types.SimpleNamespace(inner_model=types.SimpleNamespace(model_patcher=model))
    return pack.nodes.model_info.model_options(wrapped)
