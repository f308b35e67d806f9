"""A small learned denoiser for scikit-learn's 8x8 digits, wrapped as a k-diffusion denoiser.

The network is deliberately small and imperfect: its score is a learned approximation, so the
samplers are compared on the kind of error a real model makes, not only on an exact problem.
``benchmarks/train_digits.py`` makes the weights; ``load_denoiser()`` loads them.
"""

import math
from pathlib import Path

import torch
from torch import nn

WEIGHTS = Path(__file__).resolve().parent / "weights" / "digits_denoiser.safetensors"
HIDDEN, FOURIER = 384, 16


def load_data():
    """The 1797 digits as a float32 tensor (N, 1, 8, 8) scaled to [-1, 1]."""
    from sklearn.datasets import load_digits

    images = torch.from_numpy(load_digits().images).float()
    return (images / 8.0 - 1.0).unsqueeze(1)


class DigitsMLP(nn.Module):
    """F(c_in x, sigma): an MLP on the 64 pixels and Fourier features of log(sigma) / 4."""

    def __init__(self, hidden=HIDDEN, fourier=FOURIER):
        super().__init__()
        self.register_buffer("frequencies", torch.arange(1, fourier + 1, dtype=torch.float32) * math.pi / 2)
        self.net = nn.Sequential(
            nn.Linear(64 + 2 * fourier, hidden), nn.SiLU(),
            nn.Linear(hidden, hidden), nn.SiLU(),
            nn.Linear(hidden, hidden), nn.SiLU(),
            nn.Linear(hidden, 64))

    def forward(self, x, sigma):
        c_noise = (sigma.log() / 4).to(x.dtype)[:, None] * self.frequencies.to(x.dtype)
        features = torch.cat([x.flatten(1), c_noise.sin(), c_noise.cos()], dim=1)
        return self.net(features).view_as(x)


def make_denoiser(sigma_data):
    import k_diffusion as K

    return K.layers.Denoiser(DigitsMLP(), sigma_data=sigma_data)


def load_denoiser(path=WEIGHTS, dtype=torch.float32):
    """The trained k-diffusion denoiser ``model(x, sigma) -> D``, in eval mode, without gradients."""
    from safetensors.torch import load_file

    state = load_file(str(path))
    sigma_data = float(state.pop("sigma_data"))
    model = make_denoiser(sigma_data)
    model.inner_model.load_state_dict(state)
    return model.to(dtype).eval().requires_grad_(False)
