"""Same-seed pictures from the learned models: samples and their error maps, sampler by sampler.

    COMFYUI_PATH=/path/to/ComfyUI python -m benchmarks.pictures [--out benchmarks/results]

Every sampler runs inside ComfyUI (``comfy.sample.sample_custom``) from the same start noise, at 8, 10 and 20
steps: the pack's recommended ``deis_corrected``, ComfyUI's ``deis``, ``uni_pc_bh2``, ``ipndm``, ``dpmpp_2m`` and
``euler``. Each model runs with the scheduler the README's table gives its form (``benchmarks.recommendation.TABLE``),
the same for every sampler: the learned digits model as an SD1.5-style model, unguided and (the class-conditional
model) under CFG 6 towards the digit 3, and the learned flow-matching model as a flow model (shift 3). The top row
is the exact solution of the same ODE (DOP853); under each strip of samples is its error map, |sample - exact|.
Writes comparison_digits.png, comparison_class_digits.png, comparison_flow_digits.png and pictures.md (the
errors, for the README's captions).
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from benchmarks.recommendation import TABLE  # noqa: E402

NFES = (8, 10, 20)
SHOW = 6  # samples shown per cell
BATCH = 64  # samples per cell behind the error number
#: family: (model kind, form)
SETTINGS = {"digits": ("eps", "sd"), "class-digits": ("eps", "sd"), "flow-digits": ("flow", "flow")}
SAMPLERS = ("deis_corrected", "deis", "uni_pc_bh2", "ipndm", "dpmpp_2m", "euler")
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
                              fontweight="bold" if label.startswith("deis_") else None)
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
    lines = ["# Same-seed pictures (benchmarks/pictures.py)", "",
             f"Relative error of {BATCH} samples against the exact ODE solution, each model on its form's scheduler "
             "of the README's table.", "", "| model | scheduler | CFG | sampler | " +
             " | ".join(f"{n} steps" for n in NFES) + " |", "|---|---|---:|---|" + "---:|" * len(NFES)]
    for family, (kind, form) in SETTINGS.items():
        scheduler, parameterisation = TABLE[form], "flow" if form == "flow" else "ve"
        guidance = FAMILIES[family].guidance
        denoiser = FAMILIES[family].denoiser(parameterisation)
        model = comfy_support.exact_model(kind, denoiser=denoiser)
        model_sampling = model.get_model_object("model_sampling")
        shape = (BATCH, 4, 4, 4)
        noise = torch.randn(shape, generator=torch.Generator().manual_seed(0))
        latent = torch.zeros(shape)
        rows, reference = {}, None
        for name in SAMPLERS:
            rows[name] = {}
            for nfe in NFES:
                out, sigmas = run(model, kind, name, scheduler, nfe, noise, latent, guidance)
                if reference is None:
                    start = model_sampling.noise_scaling(sigmas[0], noise, latent, True).double().numpy()
                    reference = reference_solution(FAMILIES[family].reference_denoiser(parameterisation), start,
                                                   float(sigmas[0])).reshape(BATCH, 64)
                rows[name][nfe] = out.double().numpy().reshape(BATCH, 64)
            errors = " | ".join(f"{relative_l2(rows[name][n], reference):.3f}" for n in NFES)
            lines.append(f"| {family} | {scheduler} | {guidance or 1:g} | {name} | {errors} |")
        what = {"digits": "digits model as an SD1.5-style model", "class-digits": "class-conditional digits model "
                "(SD1.5-style) under CFG 6 towards 3", "flow-digits": "flow-matching digits model"}[family]
        title = f"learned {what}, {scheduler} scheduler (the README's pick), same noise for every sampler"
        path = args.out / f"comparison_{family.replace('-', '_')}.png"
        draw(title, reference, rows, path)
        print(f"wrote {path}")
    (args.out / "pictures.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
