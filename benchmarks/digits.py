"""Small learned denoisers for scikit-learn's 8x8 digits: an EDM-style model and a flow-matching model.

The networks are deliberately small and imperfect: their scores are learned approximations, so the
samplers are compared on the kind of error a real model makes, not only on an exact problem.
``benchmarks/train_digits.py`` makes the weights; ``load_denoiser()`` loads the EDM-style (VE)
k-diffusion denoiser, ``load_flow_denoiser()`` the flow-matching one (``x = (1 - s) x0 + s eps``,
the network predicts the velocity ``eps - x0``; s runs from 1 at pure noise to 0), and
``load_denoiser(kind="class")`` the class-conditional EDM-style one: the digit's class is one more input, dropped
at random in training, so that one network gives both the conditional and the unconditional prediction, as image
models under classifier-free guidance do.
"""

import math
from pathlib import Path

import torch
from torch import nn

WEIGHTS = Path(__file__).resolve().parent / "weights" / "digits_denoiser.safetensors"
FLOW_WEIGHTS = Path(__file__).resolve().parent / "weights" / "flow_digits.safetensors"
CLASS_WEIGHTS = Path(__file__).resolve().parent / "weights" / "class_digits.safetensors"
HIDDEN, FOURIER = 384, 16
#: The class-conditional network's label for "no class": its unconditional prediction.
NO_CLASS = 10


def load_data():
    """The 1797 digits as a float32 tensor (N, 1, 8, 8) scaled to [-1, 1]."""
    from sklearn.datasets import load_digits

    images = torch.from_numpy(load_digits().images).float()
    return (images / 8.0 - 1.0).unsqueeze(1)


def load_labels():
    """The 1797 digits' classes, 0 to 9, as an int64 tensor."""
    from sklearn.datasets import load_digits

    return torch.from_numpy(load_digits().target).long()


class DigitsMLP(nn.Module):
    """F(c_in x, sigma): an MLP on the 64 pixels and Fourier features of log(sigma) / 4."""

    def __init__(self, hidden=HIDDEN, fourier=FOURIER, extra_inputs=0):
        super().__init__()
        self.register_buffer("frequencies", torch.arange(1, fourier + 1, dtype=torch.float32) * math.pi / 2)
        self.net = nn.Sequential(
            nn.Linear(64 + 2 * fourier + extra_inputs, hidden), nn.SiLU(),
            nn.Linear(hidden, hidden), nn.SiLU(),
            nn.Linear(hidden, hidden), nn.SiLU(),
            nn.Linear(hidden, 64))

    def forward(self, x, sigma):
        return self.net(self.features(x, self.noise_level(sigma))).view_as(x)

    def noise_level(self, sigma):
        return sigma.log() / 4

    def features(self, x, level):
        c_noise = level.to(x.dtype)[:, None] * self.frequencies.to(x.dtype)
        return torch.cat([x.flatten(1), c_noise.sin(), c_noise.cos()], dim=1)


class ClassDigitsMLP(DigitsMLP):
    """``DigitsMLP`` with the digit's class as one more input, one-hot over 0 to 9 and ``NO_CLASS``."""

    def __init__(self):
        super().__init__(extra_inputs=NO_CLASS + 1)

    def forward(self, x, sigma, label=None):
        if label is None:
            label = torch.full((x.shape[0],), NO_CLASS, dtype=torch.long, device=x.device)
        one_hot = nn.functional.one_hot(label, NO_CLASS + 1).to(x.dtype)
        features = torch.cat([self.features(x, self.noise_level(sigma)), one_hot], dim=1)
        return self.net(features).view_as(x)


class FlowDigitsMLP(DigitsMLP):
    """The velocity ``eps - x0`` at flow time s; the noise level is ``2 s - 1``, finite at both ends."""

    def noise_level(self, s):
        return 2 * s - 1


class FlowDenoiser(nn.Module):
    """``D(x, s) = x - s * velocity``: a k-diffusion-style denoiser in the flow form (alpha = 1 - s)."""

    def __init__(self, inner_model):
        super().__init__()
        self.inner_model = inner_model

    def forward(self, x, sigma, **kwargs):
        s = sigma.reshape(-1, *([1] * (x.ndim - 1))).to(x.dtype)
        return x - s * self.inner_model(x, sigma.to(x.dtype))

    def loss(self, x0, noise, s):
        """Conditional flow matching: the squared error of the velocity at ``x = (1 - s) x0 + s eps``."""
        s_ = s.reshape(-1, *([1] * (x0.ndim - 1)))
        x = (1 - s_) * x0 + s_ * noise
        return (self.inner_model(x, s) - (noise - x0)).pow(2).flatten(1).mean(1)


def make_denoiser(sigma_data):
    import k_diffusion as K

    return K.layers.Denoiser(DigitsMLP(), sigma_data=sigma_data)


def make_flow_denoiser(sigma_data=None):
    return FlowDenoiser(FlowDigitsMLP())


def make_class_denoiser(sigma_data):
    import k_diffusion as K

    return K.layers.Denoiser(ClassDigitsMLP(), sigma_data=sigma_data)


MAKERS = {"ve": make_denoiser, "flow": make_flow_denoiser, "class": make_class_denoiser}
DEFAULT_WEIGHTS = {"ve": WEIGHTS, "flow": FLOW_WEIGHTS, "class": CLASS_WEIGHTS}


def load_denoiser(path=None, dtype=torch.float32, kind="ve"):
    """A trained denoiser ``model(x, sigma) -> D``, in eval mode, without gradients.

    ``kind="ve"``: the EDM-style k-diffusion denoiser; ``"flow"``: the flow-matching one (sigma is the flow time
    s); ``"class"``: the class-conditional EDM-style one, ``model(x, sigma, label=None)``. ``path`` defaults to the
    kind's bundled weights.
    """
    from safetensors.torch import load_file

    state = load_file(str(DEFAULT_WEIGHTS[kind] if path is None else path))
    sigma_data = float(state.pop("sigma_data"))
    model = MAKERS[kind](sigma_data)
    model.inner_model.load_state_dict(state)
    return model.to(dtype).eval().requires_grad_(False)


def load_flow_denoiser(dtype=torch.float32):
    return load_denoiser(FLOW_WEIGHTS, dtype, kind="flow")
