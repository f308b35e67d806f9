"""Problem families for the accuracy benchmark: exact mixtures, guided sampling and learned models.

Every family gives a denoiser in a model's own form (``x = alpha x0 + sigma eps`` with alpha = 1
for SD-style models, ``1 - sigma`` for flow models) and the exact solution of its
probability-flow ODE from a start to sigma = 0. In both forms the ODE is

    dx / dsigma = (x - D(x, sigma)) / sigma

which is finite at a flow model's start (sigma = 1, where D is the data mean), so one
tight DOP853 solve (rtol 1e-10, float64) serves both; it stops at sigma = 1e-6 and takes the
DDIM step x = D from there, which is exact to O(1e-12).

The families:

- ``coordinate``: benchmarks.problems.MIXTURE, every coordinate drawn on its own from a 1-D
  mixture with wide modes. Each coordinate resolves smoothly over a wide band of noise levels.
- ``joint-16``, ``joint-64``, ``joint-256``: a handful of points in 16 to 256 dimensions with
  a small isotropic spread around each. Which component a sample becomes is decided jointly,
  across all coordinates, in a narrow band of noise levels, as with images.
- ``guided``: ``joint-64`` under classifier-free guidance at scale 6 through ComfyUI's CFG,
  conditioned on three of its eight components; the reference is the guided ODE
  ``D = D_uncond + 6 (D_cond - D_uncond)``.
- ``digits``: the learned EDM-style denoiser on scikit-learn's digits (benchmarks.digits).
- ``flow-digits``: the learned flow-matching denoiser on the same digits.
- ``class-digits``: the learned class-conditional EDM-style denoiser (one network, trained with the class dropped at
  random) under classifier-free guidance at scale 6 towards the digit 3, as image models are sampled. Added for
  the next search of benchmarks/selection.py; benchmarks/results/comfy_accuracy.md predates it.
- ``guided-curve``: a near-continuum (48 tight components along a closed curve in 64 dimensions) under
  classifier-free guidance at scale 6 towards every fourth of them, as guidance acts on an image model's data
  manifold: the guided ODE is stiff there. Added for the search of benchmarks/recommendation.py.
Held out of every choice (``benchmarks.selection.HELD_OUT``), on every model kind of the benchmark:

- ``spectral``: a mixture in 256 dimensions whose coordinates vary on scales that fall as a power
  law (coordinate j on the scale j^-1/2, from 1 to 0.06), between the components as within them,
  as an image's frequencies do: each coordinate resolves at its own noise level, over two decades
  of sigma at once.
- ``curve``: 48 tight components strung along a smooth closed curve in 64 dimensions: a
  near-continuum of modes, as a data manifold is, where a sample must settle on a position along
  the curve rather than on one of a few separate points.
- ``guided-spectral``: ``spectral`` under classifier-free guidance at scale 5, conditioned on two of
  its six components.
"""

import math

import numpy as np
import torch

from benchmarks.problems import MIXTURE

#: Where the reference solve stops before its final DDIM step into sigma = 0.
SIGMA_END = 1e-6


class JointMixture:
    """A mixture of isotropic Gaussians ``N(m_k, s_k^2 I)`` in ``dim`` dimensions."""

    def __init__(self, dim, components, spread, seed, conditional=None, spectrum=None, curve=False):
        generator = np.random.default_rng(seed)
        # Means on a scale that gives the data about unit variance per coordinate.
        self.means = generator.normal(size=(components, dim)) * math.sqrt(max(1.0 - spread ** 2, 0.1))
        if curve:
            # Points along a closed curve: a few random harmonics per coordinate, scaled to unit variance.
            tau = np.arange(components) / components
            harmonics = np.arange(1, 5)
            amplitude = generator.normal(size=(dim, harmonics.size)) / harmonics
            phase = generator.uniform(0, 2 * np.pi, size=(dim, harmonics.size))
            path = (amplitude[None] * np.cos(2 * np.pi * harmonics * tau[:, None, None] + phase[None])).sum(-1)
            self.means = path / path.std(axis=0, keepdims=True) * math.sqrt(1.0 - spread ** 2)
        self.stds = spread * generator.uniform(0.5, 1.5, size=components)[:, None] * np.ones((1, dim))
        if spectrum is not None:
            # An image-like power spectrum: coordinate j (from 1) varies on the scale j^(-spectrum / 2),
            # between the components as within them, so each resolves at its own noise level.
            scale = np.arange(1, dim + 1, dtype=np.float64) ** (-spectrum / 2)
            self.means, self.stds = self.means * scale, self.stds * scale
        self.log_weights = np.log(np.full(components, 1.0 / components))
        self.dim = dim
        #: The components a conditional model is trained on (None: unconditional only).
        self.conditional = None if conditional is None else list(conditional)

    def posterior_mean(self, x, alpha, sigma, components=None):
        """E[x0 | x] for x of shape (batch, dim) and per-row alpha, sigma (float64 torch)."""
        keep = slice(None) if components is None else components
        m = torch.as_tensor(self.means[keep], dtype=x.dtype)
        s2 = torch.as_tensor(self.stds[keep] ** 2, dtype=x.dtype)  # (K, dim)
        log_pi = torch.as_tensor(self.log_weights[keep], dtype=x.dtype)
        alpha, sigma = alpha[:, None, None], sigma[:, None, None]
        var = alpha ** 2 * s2 + sigma ** 2  # (batch, K, dim)
        offset = x[:, None, :] - alpha * m  # (batch, K, dim)
        log_w = log_pi - 0.5 * (offset ** 2 / var + torch.log(var)).sum(-1)
        w = torch.softmax(log_w, dim=-1)
        means = m + alpha * s2 / var * offset
        return (w[..., None] * means).sum(1)

    def denoiser(self, form, guidance=None):
        """``model(x, sigma, cond=None) -> D``; with ``cond`` (a bool per row) rows use the conditional model."""

        def model(x, sigma, cond=None):
            flat = x.double().reshape(x.shape[0], -1)
            sigma = sigma.double().reshape(-1).expand(x.shape[0])
            alpha = 1.0 - sigma if form == "flow" else torch.ones_like(sigma)
            out = self.posterior_mean(flat, alpha, sigma)
            if cond is not None and bool(cond.any()):
                conditioned = self.posterior_mean(flat[cond], alpha[cond], sigma[cond], self.conditional)
                out[cond] = conditioned
            return out.reshape(x.shape).to(x.dtype)

        return model

    def guided_denoiser(self, form, scale):
        """The guided denoiser ``D_u + scale (D_c - D_u)``, for the reference."""
        return guided(self.denoiser(form), scale)


def reference_solution(denoiser, x, sigma0, rtol=1e-10):
    """The exact ODE solution at sigma = 0 from ``x`` at ``sigma0`` (float64 numpy), for any form.

    ``denoiser(x, sigma_batch)`` is a torch denoiser in the model's own form.
    """
    from scipy.integrate import solve_ivp

    x = np.asarray(x, dtype=np.float64)
    shape = x.shape

    def D(flat, sigma):
        xt = torch.from_numpy(flat.reshape(shape))
        with torch.no_grad():
            return denoiser(xt, torch.full([shape[0]], sigma, dtype=torch.float64)).double().numpy().ravel()

    def rhs(sigma, y):
        return (y - D(y, sigma)) / sigma

    sol = solve_ivp(rhs, (float(sigma0), SIGMA_END), x.ravel(), method="DOP853", rtol=rtol, atol=rtol)
    if not sol.success:
        raise RuntimeError(f"reference solve failed: {sol.message}")
    return D(sol.y[:, -1], SIGMA_END).reshape(shape)


def learned(kind):
    """A learned digits denoiser as a float64 torch callable ``(x, sigma) -> D`` on any 64-value layout."""
    from benchmarks.digits import load_denoiser

    network = load_denoiser(kind=kind, dtype=torch.float64)

    def model(x, sigma, cond=None):
        with torch.no_grad():
            out = network(x.double().reshape(-1, 1, 8, 8), sigma.double().reshape(-1).expand(x.shape[0]))
        return out.reshape(x.shape).to(x.dtype)

    return model


def learned_with_class(target):
    """The class-conditional digits denoiser: rows whose ``cond`` is set see the class ``target``, the others none."""
    from benchmarks.digits import NO_CLASS, load_denoiser

    network = load_denoiser(kind="class", dtype=torch.float64)

    def model(x, sigma, cond=None):
        images = x.double().reshape(-1, 1, 8, 8)
        assert images.shape[0] == x.shape[0], "one 8x8 image per row of x"
        label = torch.full((images.shape[0],), NO_CLASS, dtype=torch.long)
        if cond is not None:
            label[cond] = target
        with torch.no_grad():
            out = network(images, sigma.double().reshape(-1).expand(images.shape[0]), label=label)
        return out.reshape(x.shape).to(x.dtype)

    return model


def guided(denoiser, scale):
    """``D_u + scale (D_c - D_u)`` from a denoiser that takes ``cond``, for a guided family's reference."""

    def model(x, sigma):
        cond = torch.ones(x.shape[0], dtype=torch.bool)
        uncond = denoiser(x, sigma)
        return uncond + scale * (denoiser(x, sigma, cond) - uncond)

    return model


class Family:
    """One problem family: its denoiser per form, its latent shape, its models and its CFG scale."""

    def __init__(self, name, shape, models, make_denoiser, guidance=None, reference_denoiser=None):
        self.name, self.shape, self.models, self.guidance = name, shape, models, guidance
        self._make, self._reference = make_denoiser, reference_denoiser
        self._denoisers = {}

    def denoiser(self, form):
        if form not in self._denoisers:
            self._denoisers[form] = self._make(form)
        return self._denoisers[form]

    def reference_denoiser(self, form):
        return self._reference(form) if self._reference else self.denoiser(form)


def _coordinate(form):
    plain = MIXTURE.denoiser(form)
    return lambda x, sigma, cond=None: plain(x, sigma)


JOINT_16 = JointMixture(dim=16, components=3, spread=0.1, seed=16)
JOINT_64 = JointMixture(dim=64, components=8, spread=0.05, seed=64, conditional=(0, 1, 2))
JOINT_256 = JointMixture(dim=256, components=16, spread=0.2, seed=256)
SPECTRAL = JointMixture(dim=256, components=6, spread=0.3, seed=1024, spectrum=1.0, conditional=(0, 1))
CURVE = JointMixture(dim=64, components=48, spread=0.05, seed=4096, curve=True)
#: Another near-continuum, guided towards every fourth of its modes: what guidance does to an image model.
GUIDED_CURVE = JointMixture(dim=64, components=48, spread=0.05, seed=8192, curve=True, conditional=range(0, 48, 4))
GUIDANCE_SCALE = 6.0
#: The digit the class-conditional family is guided towards.
CLASS_TARGET = 3
HELD_OUT_GUIDANCE_SCALE = 5.0

MIXTURE_MODELS = ("eps", "flow", "flux")
#: The guided family also runs on a v-prediction model with zero terminal SNR, whose sigma_max is 4500.
GUIDED_MODELS = MIXTURE_MODELS + ("zsnr",)
#: The held-out families run on every model kind of tests/comfy_support.py: besides the three above, two
#: more flow shifts (AuraFlow 1.73, Lumina 2 6), zero terminal SNR, EDM (Playground), SVD (sigma_max 700),
#: Stable Audio (500), Stable Cascade, the x4 upscaler and Stable Cascade's stage B (both sigma_min 0.01; added for the
#: next search, after benchmarks/results/comfy_accuracy.md).
ALL_MODELS = MIXTURE_MODELS + ("flow-aura", "flow-lumina", "zsnr", "edm", "svd", "audio", "cascade", "x4",
                                "cascade-b")
FAMILIES = {f.name: f for f in (
    Family("coordinate", (2, 4, 8, 8), MIXTURE_MODELS, _coordinate),
    Family("joint-16", (8, 4, 2, 2), MIXTURE_MODELS, JOINT_16.denoiser),
    Family("joint-64", (8, 4, 4, 4), MIXTURE_MODELS, JOINT_64.denoiser),
    Family("joint-256", (4, 4, 8, 8), MIXTURE_MODELS, JOINT_256.denoiser),
    Family("guided", (8, 4, 4, 4), GUIDED_MODELS, JOINT_64.denoiser, guidance=GUIDANCE_SCALE,
           reference_denoiser=lambda form: JOINT_64.guided_denoiser(form, GUIDANCE_SCALE)),
    Family("digits", (16, 4, 4, 4), ("eps",), lambda form: learned("ve")),
    Family("flow-digits", (16, 4, 4, 4), ("flow", "flux"), lambda form: learned("flow")),
    Family("class-digits", (16, 4, 4, 4), ("eps",), lambda form: learned_with_class(CLASS_TARGET),
           guidance=GUIDANCE_SCALE, reference_denoiser=lambda form: guided(learned_with_class(CLASS_TARGET),
                                                                           GUIDANCE_SCALE)),
    Family("guided-curve", (8, 4, 4, 4), GUIDED_MODELS, GUIDED_CURVE.denoiser, guidance=GUIDANCE_SCALE,
           reference_denoiser=lambda form: GUIDED_CURVE.guided_denoiser(form, GUIDANCE_SCALE)),
    Family("spectral", (8, 4, 8, 8), ALL_MODELS, SPECTRAL.denoiser),
    Family("curve", (8, 4, 4, 4), ALL_MODELS, CURVE.denoiser),
    Family("guided-spectral", (8, 4, 8, 8), ALL_MODELS, SPECTRAL.denoiser, guidance=HELD_OUT_GUIDANCE_SCALE,
           reference_denoiser=lambda form: SPECTRAL.guided_denoiser(form, HELD_OUT_GUIDANCE_SCALE)),
)}
