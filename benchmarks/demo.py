"""The demo: DEIS against DDIM/Euler and DPM-Solver++(2M) on a small learned model, at 5 and 10 NFE.

    python -m benchmarks.demo [--out out/demo_grid.png]

The bundled denoiser (benchmarks/weights, trained on scikit-learn's 8x8 digits) samples 2,000
digits from the same noise with each sampler on the paper's schedule (uniform in sqrt(t) of the
VP time, sigma 80 to 0.002). The table
gives (a) the error against a 500-step tAB3 solution of the same ODE from the same noise, and
(b) the Frechet distance of the samples to the real digits in pixel space; the grid shows the
first samples of each.
"""

import argparse
from pathlib import Path

import numpy as np
import torch
import k_diffusion.sampling as K

from benchmarks.digits import load_data, load_denoiser
from benchmarks.quality import frechet_distance, relative_l2
from deis import VPLinearTime, sample_deis, sample_deis_tab2_v, sample_deis_tab3_v
from deis.schedules import time_uniform

NFES = (5, 10)
SAMPLERS = {
    "DEIS tAB2 v": lambda m, x, s: sample_deis_tab2_v(m, x, s, disable=True),
    "DEIS tAB3 v": lambda m, x, s: sample_deis_tab3_v(m, x, s, disable=True),
    "DEIS tAB3 v + corrector": lambda m, x, s: sample_deis_tab3_v(m, x, s, disable=True, corrector=True),
    "DEIS tAB3": lambda m, x, s: sample_deis(m, x, s, disable=True, variant="tab", degree=3),
    "DEIS tAB2": lambda m, x, s: sample_deis(m, x, s, disable=True, variant="tab", degree=2),
    "DDIM / Euler": lambda m, x, s: K.sample_euler(m, x, s, disable=True),
    "DPM-Solver++(2M)": lambda m, x, s: K.sample_dpmpp_2m(m, x, s, disable=True),
}


@torch.no_grad()
def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("out/demo_grid.png"))
    parser.add_argument("--samples", type=int, default=2000)
    args = parser.parse_args()
    torch.set_num_threads(2)
    model, data = load_denoiser(), load_data()
    noise = torch.randn(args.samples, 1, 8, 8, generator=torch.Generator().manual_seed(0))

    def run(sampler, steps):
        sigmas = torch.from_numpy(time_uniform(steps, 0.002, 80.0, VPLinearTime())).float()
        return sampler(model, noise * sigmas[0], sigmas)

    reference = run(SAMPLERS["DEIS tAB3"], 500)
    print(__doc__.split("\n\n")[2].replace("\n", " "), "\n")
    print(f"500-step reference: Frechet distance {frechet_distance(reference, data):.3f} (the model's floor)\n")
    print("| sampler | " + " | ".join(f"error NFE {n} | FD NFE {n}" for n in NFES) + " |")
    print("|---|" + "---:|---:|" * len(NFES))
    images = {("500-step reference", 0): reference}
    for name, sampler in SAMPLERS.items():
        cells = []
        for nfe in NFES:
            out = run(sampler, nfe)
            images[(name, nfe)] = out
            cells += [f"{relative_l2(out, reference):.3f}", f"{frechet_distance(out, data):.3f}"]
        print(f"| {name} | " + " | ".join(cells) + " |")
    save_grid(images, args.out)
    print(f"\nwrote {args.out}")


def save_grid(images, path, per_row=12):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(images), 1, figsize=(per_row * 0.6, len(images) * 0.75))
    for ax, ((name, nfe), batch) in zip(axes, images.items()):
        strip = np.concatenate([np.pad(img[0].numpy(), 1, constant_values=-1.0) for img in batch[:per_row]], axis=1)
        ax.imshow(strip.clip(-1, 1), cmap="gray_r", vmin=-1, vmax=1, interpolation="nearest")
        ax.set_axis_off()
        ax.set_title(name if nfe == 0 else f"{name}, NFE {nfe}", fontsize=8, loc="left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
