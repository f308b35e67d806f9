"""Accuracy inside a real ComfyUI: every pack configuration beside ComfyUI's built-in samplers.

    COMFYUI_PATH=/path/to/ComfyUI python -m benchmarks.comfy_accuracy [--out benchmarks/results/comfy_accuracy.md]

Problem: the exact Gaussian-mixture problem (benchmarks.problems.MIXTURE), as a weightless
ComfyUI BaseModel (tests/comfy_support.py): an SD1.5-style discrete EPS model and a flow
CONST model with shift 3. Schedules: ComfyUI's karras, normal and simple schedulers and this
pack's deis_time_quadratic, through ComfyUI's own calculate_sigmas. Every sampler runs through
comfy.sample.sample_custom from the same noise, at the same number of model evaluations (NFE).

Two errors, relative to a DOP853 solution at rtol 1e-12: at the end of the schedule
(sigma = 0), and at the last nonzero sigma (the state the callback sees before the final
step: pure integration error).
"""

import argparse
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import comfy_support  # noqa: E402

from benchmarks.report import publish  # noqa: E402
from benchmarks.problems import MIXTURE, relative_error  # noqa: E402

NFES = (5, 6, 8, 10, 15, 20)
SCHEDULERS = ("karras", "normal", "simple", "deis_time_quadratic")
MODELS = ("eps", "flow")
BUILTINS = ("euler", "dpmpp_2m", "ipndm", "ipndm_v", "deis", "uni_pc_bh2", "res_multistep")
#: model evaluations per step
COST = {"deis_rhork3": 3}


def pack_samplers():
    from comfyui_deis_pack_under_test.nodes.samplers import KSAMPLER_CONFIGURATIONS

    return list(KSAMPLER_CONFIGURATIONS)


def run(model, name, scheduler, nfe, noise, latent):
    """(final x, x at the last nonzero sigma, sigmas), or None where the NFE does not fit the sampler."""
    import comfy.sample
    import comfy.samplers

    steps, rest = divmod(nfe, COST.get(name, 1))
    if steps < 1 or rest:
        return None
    model_sampling = model.get_model_object("model_sampling")
    discard = name in comfy.samplers.KSampler.DISCARD_PENULTIMATE_SIGMA_SAMPLERS
    sigmas = comfy.samplers.calculate_sigmas(model_sampling, scheduler, steps + discard)
    if discard:
        sigmas = torch.cat([sigmas[:-2], sigmas[-1:]])
    # The state at the last nonzero sigma is what the model is called with there. (The callback's
    # 'x' is no help: several built-in samplers pass their initial x to it at every step.)
    seen = {}
    last_sigma = float(sigmas[-2])

    def wrapper(apply_model, args):
        if "x" not in seen and abs(float(args["timestep"].reshape(-1)[0]) - last_sigma) <= 1e-6 * last_sigma:
            seen["x"] = args["input"].clone()
        return apply_model(args["input"], args["timestep"], **args["c"])

    model = model.clone()
    model.set_model_unet_function_wrapper(wrapper)
    out = comfy.sample.sample_custom(
        model, noise, 1.0, comfy.samplers.sampler_object(name), sigmas, comfy_support.empty_conditioning(),
        comfy_support.empty_conditioning(), latent, disable_pbar=True, seed=0)
    return out, seen["x"], sigmas


def measure(names, nfes=NFES, schedulers=SCHEDULERS, models=MODELS, seed=0, shape=(2, 4, 8, 8)):
    """{(model, scheduler, name, nfe): (final error, last-nonzero-sigma error)}"""
    comfy_support.import_pack()
    latent = torch.zeros(shape)
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    results, references = {}, {}

    def reference(start, sigma_start, sigma_end, form):
        key = (form, sigma_start, sigma_end)
        if key not in references:
            references[key] = MIXTURE.reference(start, sigma_start, sigma_end, form)
        return references[key]

    for kind in models:
        model = comfy_support.exact_model(kind)
        form = "flow" if kind == "flow" else "ve"
        model_sampling = model.get_model_object("model_sampling")
        for scheduler in schedulers:
            for nfe in nfes:
                for name in names:
                    ran = run(model, name, scheduler, nfe, noise, latent)
                    if ran is None:
                        continue
                    out, before_last, sigmas = ran
                    start = model_sampling.noise_scaling(sigmas[0], noise, latent, True).double().numpy()
                    sigma_last = float(sigmas[-2])
                    final = relative_error(out, reference(start, float(sigmas[0]), 0.0, form))
                    last = relative_error(before_last, reference(start, float(sigmas[0]), sigma_last, form))
                    results[(kind, scheduler, name, nfe)] = (final, last)
    return results


def markdown(results, names, nfes=NFES, schedulers=SCHEDULERS, models=MODELS, which=0):
    lines = []
    for kind in models:
        for scheduler in schedulers:
            lines += ["", f"### {'SD1.5-style EPS' if kind == 'eps' else 'flow, shift 3'} model, {scheduler}", "",
                      "| sampler | " + " | ".join(f"NFE {n}" for n in nfes) + " |", "|---|" + "---:|" * len(nfes)]
            best = {n: min(results[(kind, scheduler, m, n)][which] for m in names
                           if (kind, scheduler, m, n) in results) for n in nfes}
            for name in names:
                cells = []
                for n in nfes:
                    value = results.get((kind, scheduler, name, n))
                    cells.append("" if value is None else
                                 (f"**{value[which]:.2e}**" if value[which] == best[n] else f"{value[which]:.2e}"))
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary(results, names, default, nfes=NFES, schedulers=SCHEDULERS, models=MODELS):
    """How often the default beats built-in deis, and the pack's best beats every built-in (NFE <= 10), per measure."""
    cells = [(k, s, n) for k in models for s in schedulers for n in nfes]
    low = [(k, s, n) for k, s, n in cells if n <= 10]
    pack = [m for m in names if m not in BUILTINS]

    def best(samplers, cell, measure):
        k, s, n = cell
        return min(results[(k, s, m, n)][measure] for m in samplers if (k, s, m, n) in results)

    lines = []
    for measure, label in ((0, "final error"), (1, "error at the last nonzero sigma")):
        ratios = [best([default], cell, measure) / best(["deis"], cell, measure) for cell in cells]
        beats_deis = sum(ratio < 1 for ratio in ratios)
        best_wins = sum(best(pack, cell, measure) < best(BUILTINS, cell, measure) for cell in low)
        ratio = math.exp(sum(map(math.log, ratios)) / len(cells))
        lines.append(f"{label.capitalize()}: {default} beats ComfyUI's built-in deis in {beats_deis} of {len(cells)} "
                     f"cells (geometric mean of its error over deis's: {ratio:.2f}); at NFE <= 10 the pack's best "
                     f"configuration beats every built-in sampler in {best_wins} of {len(low)} cells.")
    return "\n\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    comfy_support.import_pack()
    from comfyui_deis_pack_under_test.nodes.samplers import RECOMMENDED

    names = pack_samplers() + list(BUILTINS)
    results = measure(names)
    text = "\n".join([
        "## Accuracy in ComfyUI: exact Gaussian-mixture problem", "",
        summary(results, names, RECOMMENDED), "",
        "## Final error (at sigma = 0); best in bold", markdown(results, names), "",
        "## Error at the last nonzero sigma (integration error only)", markdown(results, names, which=1)])
    publish(text, args.out)


if __name__ == "__main__":
    main()
