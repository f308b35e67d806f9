"""Schedules with a sigma nearly repeated: the error with the near-repeat rule against the error without it.

    python -m benchmarks.near_repeats [--out benchmarks/results/near_repeats.md]
    COMFYUI_PATH=/path/to/ComfyUI python -m benchmarks.near_repeats ...   # adds ComfyUI's own schedules

The rule (deis.coefficients.step_nodes): a node closer than MIN_NODE_SPACING of a step's length to a newer node
of the same polynomial is left out of it. "Without" sets that share to 0, the plain rule of earlier releases.

1. Stress: SD1.5's karras and a flow model's simple schedule (shift 3) at 20 steps, with one sigma inserted at a
   relative gap of 1e-2 to 1e-9 below each sigma in turn; the worst error over the positions, as a multiple of the
   error without the inserted sigma, for each entry, in float32 and float64.
2. With COMFYUI_PATH: the ComfyUI schedules on which the rule leaves a node out (linear_quadratic), the error
   with the rule over the error without it.

Every error is the relative distance at sigma = 0 to the exact solution of the ODE of a three-component Gaussian
mixture (benchmarks/problems.py), 2,000 samples.
"""

import functools
import os
import sys
from pathlib import Path

import numpy as np
import torch

from benchmarks import schedules
from benchmarks.problems import GaussianMixture, relative_error
from benchmarks.report import command

MIXTURE = GaussianMixture(means=(-1.0, 0.3, 1.2), stds=(0.3, 0.2, 0.4))
GAPS = (1e-2, 1e-4, 1e-6, 1e-9)
ENTRIES = ("deis_auto", "deis_corrected")


def base_schedule(form):
    """SD1.5's karras, or a flow model's simple schedule (shift 3), at 20 steps."""
    return schedules.flow_shift(20) if form == "flow" else schedules.sd15_karras(20)


def with_near_repeat(sigmas, position, gap):
    """``sigmas`` with ``sigmas[position] * (1 - gap)`` inserted after ``sigmas[position]``."""
    return np.insert(sigmas, position + 1, sigmas[position] * (1 - gap))


class RuleOff:
    """The plain rule of earlier releases in the core package ``deis``: no node is left out."""

    def __init__(self, deis):
        self.module = deis.coefficients

    def __enter__(self):
        self.saved, self.module.MIN_NODE_SPACING = self.module.MIN_NODE_SPACING, 0.0

    def __exit__(self, *exc):
        self.module.MIN_NODE_SPACING = self.saved


@functools.lru_cache(maxsize=None)
def start_and_reference(form, sigma_max):
    """2,000 starts at sigma_max and their exact ODE solutions at 0 (one solve for every schedule from there)."""
    x = torch.randn(2000, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * sigma_max
    return x, MIXTURE.reference(x.numpy(), sigma_max, 0.0, form)


def error(deis, entry, form, sigmas, dtype=torch.float64, model_time_map=None):
    x, reference = start_and_reference(form, float(sigmas[0]))
    denoiser = MIXTURE.denoiser(form)
    model = lambda x, sigma: denoiser(x.double(), sigma.double()).to(x.dtype)  # noqa: E731
    out = deis.sample_deis(model, x.to(dtype), torch.tensor(sigmas, dtype=dtype), disable=True, config=entry,
                           parameterisation=form, model_time_map=model_time_map, cache=deis.CoefficientCache())
    return relative_error(out.double().numpy(), reference)


def stress(deis):
    """{(entry, form, dtype, gap, rule): worst error ratio over the positions}."""
    rows = {}
    for form in ("ve", "flow"):
        base = base_schedule(form)
        time_map = deis.model_time_map(form, schedules.SD15.sigmas)
        for entry in ENTRIES:
            for dtype in (torch.float32, torch.float64):
                plain = error(deis, entry, form, base, dtype, time_map)
                for gap in GAPS:
                    for rule in ("with", "without"):
                        worst = 1.0
                        for position in range(1, len(base) - 1):
                            sigmas = with_near_repeat(base, position, gap)
                            if dtype == torch.float32 and np.float32(sigmas[position + 1]) == np.float32(
                                    sigmas[position]):
                                continue  # an exact repeat in float32, dropped
                            if rule == "with":
                                value = error(deis, entry, form, sigmas, dtype, time_map)
                            else:
                                with RuleOff(deis):
                                    value = error(deis, entry, form, sigmas, dtype, time_map)
                            worst = max(worst, value / plain)
                        rows[(entry, form, str(dtype)[6:], gap, rule)] = worst
    return rows


def comfy_cells(deis):
    """{(kind, scheduler, steps, entry): (error with the rule, error without)} on ComfyUI's schedules that have a
    near-repeat."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    import comfy_support

    pack = comfy_support.import_pack()
    import comfy.samplers

    deis = pack.deis
    cells = {}
    for kind in ("eps", "zsnr", "edm", "svd", "audio", "flow", "flux"):
        model = comfy_support.exact_model(kind)
        form = comfy_support.form_of(kind)
        info = comfy_support.model_form(model)
        for scheduler in ("linear_quadratic",):
            for steps in (5, 8, 10, 15, 20, 30, 50):
                sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), scheduler,
                                                         steps).double().numpy()
                sigmas = sigmas[np.append(True, np.diff(sigmas) != 0)]
                for entry in ENTRIES:
                    plan = deis.get_plan(sigmas, deis.named_config(entry, form), **info)
                    if not any(0.0 in tuple(s.update.weights)[:-1] + tuple(s.correction or ())[:-1]
                               for s in plan.steps):
                        continue
                    with_rule = error(deis, entry, form, sigmas, model_time_map=info.get("model_time_map"))
                    with RuleOff(deis):
                        without = error(deis, entry, form, sigmas, model_time_map=info.get("model_time_map"))
                    cells[(kind, scheduler, steps, entry)] = (with_rule, without)
    return cells


def markdown(rows, cells):
    lines = ["## Near-repeated sigmas", "",
             "Worst error over the positions of a sigma inserted at each relative gap, as a multiple of the error "
             "without it (SD1.5 karras and flow shift-3 simple, 20 steps):", "",
             "| entry | form | dtype | rule | " + " | ".join(f"gap {g:g}" for g in GAPS) + " |",
             "|---|---|---|---|" + "---:|" * len(GAPS)]
    for entry in ENTRIES:
        for form in ("ve", "flow"):
            for dtype in ("float32", "float64"):
                for rule in ("with", "without"):
                    values = [rows[(entry, form, dtype, g, rule)] for g in GAPS]
                    lines.append(f"| {entry} | {form} | {dtype} | {rule} | " + " | ".join(
                        f"{v:,.2f}" for v in values) + " |")
    worst = max(v for (_, _, _, _, rule), v in rows.items() if rule == "with")
    worst_before = max(v for (_, _, _, _, rule), v in rows.items() if rule == "without")
    lines += ["", f"Worst with the rule: {worst:.2f} times the error without the near-repeat; without the rule: "
                  f"{worst_before:,.0f} times.", ""]
    if cells:
        ratios = [w / o for w, o in cells.values()]
        lines += ["ComfyUI's schedules on which the rule leaves a node out: error with the rule / without it.", "",
                  "| model | scheduler | steps | entry | with | without | ratio |", "|---|---|---:|---|---:|---:|---:|"]
        for (kind, scheduler, steps, entry), (w, o) in sorted(cells.items()):
            lines.append(f"| {kind} | {scheduler} | {steps} | {entry} | {w:.3e} | {o:.3e} | {w / o:.3f} |")
        lines += ["", f"{len(cells)} cells; geometric mean of the ratio {np.exp(np.mean(np.log(ratios))):.3f}, "
                      f"from {min(ratios):.3f} to {max(ratios):.3f}.", ""]
    return "\n".join(lines)


def main():
    import deis
    import deis.coefficients  # noqa: F401

    command("benchmarks/results/near_repeats.md", lambda: markdown(
        stress(deis), comfy_cells(deis) if os.environ.get("COMFYUI_PATH") else {}))


if __name__ == "__main__":
    main()
