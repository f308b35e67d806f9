"""Stochastic samplers on the learned models, inside a real ComfyUI: sample quality against NFE.

    COMFYUI_PATH=/path/to/ComfyUI python -m benchmarks.stochastic [--out benchmarks/results/stochastic.md]
        [--plot benchmarks/results/stochastic.png]

Models: the learned digits denoiser on the SD1.5-style EPS model with the karras scheduler, and
the learned flow-matching digits model on the flow model (shift 3) with the simple scheduler,
both as weightless ComfyUI models (benchmarks/families.py). Every sampler draws 2,000 samples
from the same start noise and seed through ``comfy.sample.sample_custom``. Two measures:

* FD: the Frechet distance of the samples to the 1,797 real digits in pixel space (64-d);
* manifold: the mean distance from a sample to its nearest real digit.

``deis_sde`` is log-rho AB1 on the denoised value with the SDE's own kernel, which is the same
method as ComfyUI's ``dpmpp_2m_sde_heun``; the two differ here in their noise (ComfyUI's draws
from a Brownian tree) and, on flow models, in the first step (ComfyUI starts just below sigma = 1).

A last table reports, without a target, the standard deviation that each sampler ends with on
Gaussian data N(0.7, 0.5^2) at 10 and 30 karras steps (exact denoiser, 20,000 samples).
"""

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import comfy_support  # noqa: E402

from benchmarks.digits import load_data  # noqa: E402
from benchmarks.families import FAMILIES  # noqa: E402
from benchmarks.problems import GaussianMixture  # noqa: E402
from benchmarks.quality import frechet_distance  # noqa: E402
from benchmarks.report import publish  # noqa: E402

NFES = (10, 15, 20, 30)
SETTINGS = (("digits", "eps", "karras"), ("flow-digits", "flow", "simple"))
#: name: (ComfyUI sampler name, extra options); the first two are this pack's
SAMPLERS = {
    "deis_sde (eta 1)": ("deis_sde", {}),
    "deis_sde (eta 0.5)": ("deis_sde", {"eta": 0.5}),
    "euler_ancestral": ("euler_ancestral", {}),
    "dpmpp_2m_sde": ("dpmpp_2m_sde", {}),
    "dpmpp_2m_sde_heun": ("dpmpp_2m_sde_heun", {}),
    "dpmpp_3m_sde": ("dpmpp_3m_sde", {}),
    "er_sde": ("er_sde", {}),
    "sa_solver": ("sa_solver", {}),
}
SAMPLES = 2000
TOP = 2.0  # the plot's FD axis ends here; larger values are in the table


def sampler_object(name, options):
    import comfy.samplers

    return comfy.samplers.ksampler(name, options) if options else comfy.samplers.sampler_object(name)


def run(model, name, options, scheduler, steps, noise, seed=0):
    import comfy.sample
    import comfy.samplers

    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), scheduler, steps)
    cond = comfy_support.empty_conditioning()
    return comfy.sample.sample_custom(model, noise, 1.0, sampler_object(name, options), sigmas, cond, cond,
                                      torch.zeros_like(noise), disable_pbar=True, seed=seed)


def manifold_distance(samples, data):
    return float(torch.cdist(samples.reshape(len(samples), -1).double(), data.reshape(len(data), -1).double())
                 .min(dim=1).values.mean())


@torch.no_grad()
def measure():
    comfy_support.import_pack()
    data = load_data()
    results = {}
    for family, kind, scheduler in SETTINGS:
        denoiser = FAMILIES[family].denoiser("ve" if kind == "eps" else "flow")
        model = comfy_support.exact_model(kind, denoiser=denoiser)
        noise = torch.randn(SAMPLES, 4, 4, 4, generator=torch.Generator().manual_seed(0))
        for label, (name, options) in SAMPLERS.items():
            for nfe in NFES:
                out = run(model, name, options, scheduler, nfe, noise).reshape(SAMPLES, 1, 8, 8)
                results[(family, label, nfe)] = (frechet_distance(out, data), manifold_distance(out, data))
        results[(family, "data", 0)] = (0.0, 0.0)
    return results


@torch.no_grad()
def gaussian_stds(samples=20000, steps=(10, 30)):
    comfy_support.import_pack()
    gaussian = GaussianMixture(means=(0.7,), stds=(0.5,))
    plain = gaussian.denoiser("ve")
    model = comfy_support.exact_model("eps", denoiser=lambda x, sigma, cond=None: plain(x, sigma))
    noise = torch.randn(samples // 64, 4, 4, 4, generator=torch.Generator().manual_seed(1))
    rows = {}
    for label in ("deis_sde (eta 1)", "deis_sde (eta 0.5)", "euler_ancestral", "dpmpp_2m_sde"):
        name, options = SAMPLERS[label]
        rows[label] = [float(run(model, name, options, "karras", n, noise).std()) for n in steps]
    return rows, steps


def markdown(results, stds):
    lines = []
    for family, kind, scheduler in SETTINGS:
        for which, title in ((0, "Frechet distance to the digits (lower is better)"),
                             (1, "mean distance to the nearest real digit")):
            lines += ["", f"### {family} ({kind} model, {scheduler}): {title}", "",
                      "| sampler | " + " | ".join(f"NFE {n}" for n in NFES) + " |", "|---|" + "---:|" * len(NFES)]
            best = {n: min(results[(family, label, n)][which] for label in SAMPLERS) for n in NFES}
            for label in SAMPLERS:
                cells = []
                for n in NFES:
                    value = results[(family, label, n)][which]
                    cells.append(f"**{value:.3f}**" if value == best[n] else f"{value:.3f}")
                lines.append(f"| {label} | " + " | ".join(cells) + " |")
    rows, steps = stds
    lines += ["", "### Gaussian data N(0.7, 0.5^2): the standard deviation each sampler ends with (karras)", "",
              "| sampler | " + " | ".join(f"{n} steps" for n in steps) + " |", "|---|" + "---:|" * len(steps)]
    lines += [f"| {label} | " + " | ".join(f"{v:.3f}" for v in values) + " |" for label, values in rows.items()]
    return "\n".join(lines)


def summary(results):
    cells = [(f, n) for f, _, _ in SETTINGS for n in NFES]
    lines = []
    for label in ("deis_sde (eta 1)", "deis_sde (eta 0.5)"):
        wins = sum(results[(f, label, n)][0] <= results[(f, "dpmpp_2m_sde", n)][0] for f, n in cells)
        lines.append(f"`{label}` has an FD at most dpmpp_2m_sde's in {wins} of {len(cells)} cells.")
    return " ".join(lines)


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(SETTINGS), figsize=(5.2 * len(SETTINGS), 3.6))
    for ax, (family, kind, scheduler) in zip(axes, SETTINGS):
        for label in SAMPLERS:
            ours = label.startswith("deis")
            ax.plot(NFES, [results[(family, label, n)][0] for n in NFES], marker="o", ms=3, lw=2.2 if ours else 1.2,
                    ls="-" if ours else "--", label=label)
        ax.set_xticks(NFES, [str(n) for n in NFES])
        ax.set_yscale("log")
        off_scale = sorted({label for label in SAMPLERS for n in NFES if results[(family, label, n)][0] > TOP})
        if off_scale:
            ax.set_ylim(top=TOP)
        ax.set_title(f"{family}, {scheduler}" + (f" ({', '.join(off_scale)} above {TOP:g}: see the table)"
                                                 if off_scale else ""), fontsize=9)
        ax.set_xlabel("NFE")
    axes[0].set_ylabel("Frechet distance to the digits")
    axes[-1].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--plot", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(2)
    results = measure()
    text = "## Stochastic samplers on the learned models\n\n" + summary(results) + "\n" + markdown(results,
                                                                                                   gaussian_stds())
    publish(text, args.out)
    if args.plot:
        plot(results, args.plot)


if __name__ == "__main__":
    main()
