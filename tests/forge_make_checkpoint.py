"""Build an SD1.5-architecture checkpoint with random weights from the configs Forge ships.

    FORGE_PYTHON tests/forge_make_checkpoint.py FORGE_PATH OUT.safetensors

Run with Forge's own Python (it has diffusers, transformers and huggingface_guess). No download:
the UNet, VAE and CLIP text encoder are made from their configs, converted to the original
checkpoint layout with huggingface_guess.diffusers_convert, and saved as fp16 safetensors.
"""

import sys
from pathlib import Path

import torch


def main(forge, out):
    sys.path.insert(0, str(Path(forge, "repositories", "huggingface_guess")))
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from huggingface_guess import diffusers_convert
    from safetensors.torch import save_file
    from transformers import CLIPTextConfig, CLIPTextModel

    base = Path(forge, "backend", "huggingface", "runwayml", "stable-diffusion-v1-5")
    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(base / "unet"))
    vae = AutoencoderKL.from_config(AutoencoderKL.load_config(base / "vae"))
    text = CLIPTextModel(CLIPTextConfig.from_pretrained(base / "text_encoder"))
    state = {}
    for key, value in diffusers_convert.convert_unet_state_dict(unet.state_dict()).items():
        state["model.diffusion_model." + key] = value
    for key, value in diffusers_convert.convert_vae_state_dict(vae.state_dict()).items():
        state["first_stage_model." + key] = value
    for key, value in text.state_dict().items():
        state["cond_stage_model.transformer." + key] = value
    save_file({k: v.half().contiguous() for k, v in state.items()}, out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
