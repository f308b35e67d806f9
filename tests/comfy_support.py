"""A real ComfyUI for the integration tests (COMFYUI_PATH), and test models built from its own classes.

The test models have no weights: a ``comfy.model_base.BaseModel`` whose ``_apply_model``
returns the exact posterior mean of the Gaussian-mixture problem (benchmarks.problems),
wrapped in a ModelPatcher. One is a discrete-VP EPS model (SD1.x's sigma table), one a flow
CONST model with shift 3. Their latent format is the identity, so a latent is the sampler's x.
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


def exact_model(kind="eps", problem=None):
    """A ModelPatcher around a BaseModel whose denoiser is the mixture's exact posterior mean."""
    import torch
    import comfy.latent_formats
    import comfy.model_base
    import comfy.model_management
    import comfy.model_patcher
    import comfy.supported_models_base

    from benchmarks.problems import MIXTURE

    problem = MIXTURE if problem is None else problem
    form = "flow" if kind == "flow" else "ve"
    denoiser = problem.denoiser(form)

    class Config(comfy.supported_models_base.BASE):
        unet_config = {"disable_unet_model_creation": True}
        latent_format = comfy.latent_formats.LatentFormat
        sampling_settings = {"shift": 3.0, "multiplier": 1000} if kind == "flow" else {}

    class ExactModel(comfy.model_base.BaseModel):
        def _apply_model(self, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options={},
                         **kwargs):
            return denoiser(x, t.reshape(-1)).to(x.dtype)

        def get_dtype(self):
            return torch.float32

    config = Config({"disable_unet_model_creation": True})
    config.latent_format = comfy.latent_formats.LatentFormat()
    model_type = comfy.model_base.ModelType.FLOW if kind == "flow" else comfy.model_base.ModelType.EPS
    model = ExactModel(config, model_type=model_type)
    device = comfy.model_management.get_torch_device()
    return comfy.model_patcher.ModelPatcher(model, load_device=device, offload_device=device)


def empty_conditioning():
    import torch

    return [[torch.zeros(1, 1, 8), {}]]
