"""Sampler DEIS's DDIM with eta against ComfyUI's euler_ancestral at the same eta, on the learned models.

    COMFYUI_PATH=/path/to/ComfyUI python -m benchmarks.ddim_eta [--out benchmarks/results/ddim_eta.md]

The settings of benchmarks/stochastic.py (the two learned digits models, 2,000 samples from the same noise, the
Frechet distance to 4,000 of the model's own samples drawn by euler_ancestral at 500 steps), at 10 and 20 steps.
The rule, written before it ran: Sampler DEIS keeps DDIM with eta only if it is at most euler_ancestral's distance
at the same eta in every cell; otherwise the node refuses that pair and says why.
"""

import torch

from benchmarks import stochastic
from benchmarks.digits import load_data
from benchmarks.families import FAMILIES
from benchmarks.quality import frechet_distance
from benchmarks.report import command

STEPS = (10, 20)
ETAS = (0.5, 1.0)
DDIM = dict(degree=0, integrand="data")


def samplers():
    """label: (ComfyUI sampler name or None for the pack's core, options)."""
    table = {}
    for eta in ETAS:
        table[f"DEIS DDIM (eta {eta:g})"] = (None, dict(DDIM, eta=eta))
        table[f"euler_ancestral (eta {eta:g})"] = ("euler_ancestral", {"eta": eta})
    table.update({"deis_sde (eta 1)": ("deis_sde", {}), "dpmpp_2m_sde (eta 1)": ("dpmpp_2m_sde", {})})
    return table


@torch.no_grad()
def measure():
    stochastic.comfy_support.import_pack()
    data, results = load_data(), {}
    for family, kind, scheduler in stochastic.SETTINGS:
        model = stochastic.comfy_support.exact_model(kind, denoiser=FAMILIES[family].denoiser(
            "ve" if kind == "eps" else "flow"))
        other = torch.randn(stochastic.REFERENCE_SAMPLES, 4, 4, 4, generator=torch.Generator().manual_seed(1))
        reference = stochastic.run(model, "euler_ancestral", {}, scheduler, stochastic.REFERENCE_STEPS, other,
                                   seed=1).reshape(-1, 1, 8, 8)
        noise = torch.randn(stochastic.SAMPLES, 4, 4, 4, generator=torch.Generator().manual_seed(0))
        for label, (name, options) in samplers().items():
            for steps in STEPS:
                out = stochastic.run(model, name, options, scheduler, steps, noise).reshape(-1, 1, 8, 8)
                results[(family, label, steps)] = frechet_distance(out, reference)
        results[(family, "reference to the digits", 0)] = frechet_distance(reference, data)
    return results


def markdown(results):
    lines = ["## Sampler DEIS's DDIM with eta against euler_ancestral", "",
             "Frechet distance to the model's own samples (lower is better); settings of benchmarks/stochastic.py.",
             ""]
    worst = 0.0
    for family, kind, scheduler in stochastic.SETTINGS:
        lines += [f"### {family} ({kind}, {scheduler})", "", "| sampler | " + " | ".join(
            f"{s} steps" for s in STEPS) + " |", "|---|" + "---:|" * len(STEPS)]
        for label in samplers():
            lines.append(f"| {label} | " + " | ".join(f"{results[(family, label, s)]:.3f}" for s in STEPS) + " |")
        for eta in ETAS:
            ratios = [results[(family, f"DEIS DDIM (eta {eta:g})", s)] / results[(family, f"euler_ancestral (eta "
                                                                                           f"{eta:g})", s)]
                      for s in STEPS]
            worst = max(worst, *ratios)
            lines.append(f"| DDIM / euler_ancestral, eta {eta:g} | " + " | ".join(f"{r:.2f}" for r in ratios) + " |")
        lines.append("")
    verdict = "kept" if worst <= 1.0 else "refused by Sampler DEIS"
    lines += [f"Worst ratio of DDIM's distance to euler_ancestral's: {worst:.2f}. DDIM with eta: {verdict}.", ""]
    return "\n".join(lines)


def main():
    command("benchmarks/results/ddim_eta.md", lambda: markdown(measure()))


if __name__ == "__main__":
    main()
