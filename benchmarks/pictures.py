"""Same-seed pictures from the learned models: samples and their error maps, sampler by sampler.

    COMFYUI_PATH=/path/to/ComfyUI python -m benchmarks.pictures [--out benchmarks/results]

Every sampler runs inside ComfyUI (``comfy.sample.sample_custom``) from the same start noise, at
8, 10 and 12 steps: the pack's ``deis_auto``, ComfyUI's ``deis``, ``dpmpp_2m``, ``ipndm_v`` and
``euler``. Each model runs with the scheduler the README's table gives ``deis_auto`` for 8 to 12
steps, the same for every sampler: the learned digits model as an SD1.5-style model with karras,
the learned flow-matching model as a flow model (shift 3) with kl_optimal. The top row is the
exact solution of the same ODE (DOP853); under each strip of samples is its error map,
|sample - exact|. Writes comparison_digits.png and comparison_flow_digits.png.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

NFES = (8, 10, 12)
SHOW = 6  # samples shown per cell
BATCH = 64  # samples per cell behind the error number
SETTINGS = {"digits": ("eps", "karras"), "flow-digits": ("flow", "kl_optimal")}
SAMPLERS = ("deis_auto", "deis_corrected", "deis", "dpmpp_2m", "ipndm_v", "euler")
ERROR_SCALE = 0.5  # the colour scale's top (errors above it show as its colour); pixels run from -1 to 1

def strip(batch, error=None):
    """An RGB strip of the first SHOW digits (grey, ink dark), and under it their error maps."""
    import matplotlib

    digits = [np.pad(img.reshape(8, 8), 1, constant_values=-1.0) for img in batch[:SHOW]]
    grey = (1 - (np.concatenate(digits, axis=1).clip(-1, 1) + 1) / 2)[..., None].repeat(3, axis=2)
    if error is None:
        return grey
    maps = [np.pad(e.reshape(8, 8), 1, constant_values=0.0) for e in error[:SHOW]]
    colour = matplotlib.colormaps["magma"]((np.concatenate(maps, axis=1) / ERROR_SCALE).clip(0, 1))[..., :3]
    return np.concatenate([grey, colour], axis=0)


def relative_l2(x, reference):
    x, reference = np.asarray(x, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    return float(np.linalg.norm(x - reference) / np.linalg.norm(reference))


def draw(title, reference, rows, path, nfes=NFES):
    """``rows``: {sampler label: {nfe: samples (N, 64)}}; ``reference``: (N, 64)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows) + 1, len(nfes), figsize=(2.3 * len(nfes) + 0.9, 1.05 * (len(rows) + 1) + 0.6),
                             gridspec_kw={"height_ratios": [0.55] + [1.0] * len(rows)})
    for ax in axes.ravel():
        ax.set_xticks([]), ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
    axes[0, 0].imshow(strip(reference), interpolation="nearest")
    axes[0, 0].set_ylabel("exact", rotation=0, ha="right", va="center", fontsize=9)
    for ax in axes[0, 1:]:
        ax.set_visible(False)
    for r, (label, by_nfe) in enumerate(rows.items(), start=1):
        for c, nfe in enumerate(nfes):
            samples = by_nfe[nfe]
            ax = axes[r, c]
            ax.imshow(strip(samples, np.abs(samples - reference)), interpolation="nearest")
            ax.set_title(f"NFE {nfe}: error {relative_l2(samples, reference):.3f}", fontsize=8)
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9,
                              fontweight="bold" if label.startswith("deis_auto") or "DEIS" in label else None)
    fig.suptitle(title, fontsize=10)
    colour = plt.cm.ScalarMappable(cmap="magma", norm=matplotlib.colors.Normalize(0, ERROR_SCALE))
    fig.colorbar(colour, ax=axes[1:, :].ravel().tolist(), fraction=0.025, pad=0.02,
                 label="|sample - exact| (pixels span -1 to 1)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


@torch.no_grad()
def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    import comfy_support
    from benchmarks.comfy_accuracy import run
    from benchmarks.families import FAMILIES, reference_solution

    comfy_support.import_pack()
    pictures = {}
    for family, (kind, scheduler) in SETTINGS.items():
        form = "ve" if kind == "eps" else "flow"
        denoiser = FAMILIES[family].denoiser(form)
        model = comfy_support.exact_model(kind, denoiser=denoiser)
        model_sampling = model.get_model_object("model_sampling")
        shape = (BATCH, 4, 4, 4)
        noise = torch.randn(shape, generator=torch.Generator().manual_seed(0))
        latent = torch.zeros(shape)
        rows, reference = {}, None
        for name in SAMPLERS:
            rows[name] = {}
            for nfe in NFES:
                out, sigmas = run(model, kind, name, scheduler, nfe, noise, latent)
                if reference is None:
                    start = model_sampling.noise_scaling(sigmas[0], noise, latent, True).double().numpy()
                    reference = reference_solution(denoiser, start, float(sigmas[0])).reshape(BATCH, 64)
                rows[name][nfe] = out.double().numpy().reshape(BATCH, 64)
        title = (f"learned {'digits model as an SD1.5-style model' if kind == 'eps' else 'flow-matching digits model'}"
                 f", {scheduler} scheduler (the README's pick for 8 to 12 steps), same noise for every sampler")
        path = args.out / f"comparison_{family.replace('-', '_')}.png"
        draw(title, reference, rows, path)
        pictures[family] = path
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
