"""Accuracy inside a real ComfyUI, over several problem families, against every built-in ODE sampler.

    COMFYUI_PATH=/path/to/ComfyUI python -m benchmarks.comfy_accuracy [--out benchmarks/results/comfy_accuracy.md]
    COMFYUI_PATH=... python -m benchmarks.comfy_accuracy --search   # the selection protocol below

Every run goes through ComfyUI itself: its schedulers (``calculate_sigmas``), its sampler
objects and ``comfy.sample.sample_custom`` (with its CFG for the guided family), on weightless
test models (tests/comfy_support.py) whose denoiser is a family's exact posterior mean or a
learned network (benchmarks/families.py). Models: SD1.5-style discrete EPS ("eps"), flow
with shift 3 ("flow") and Flux's shift 1.15 ("flux"); the digits models run on the models of
their own kind. Every sampler starts from the same noise and makes the same number of model
evaluations (NFE). The measure is the relative error at sigma = 0 against the family's exact
ODE solution (DOP853, rtol 1e-10).

Selection protocol (written before the search, and followed by ``--search``):

1. A candidate's score is its worst family: the largest, over the tuning families, of the
   geometric mean over that family's cells of its error divided by ComfyUI's ``deis``'s.
   Lower is better. Ties (within 2 %) go to the candidate that beats ``deis`` in more cells of
   its worst family by that count.
2. ``flow-digits`` (the learned flow-matching model) is held out: it is not looked at while
   candidates are compared, and is reported separately once the choice is made.
3. Nothing is chosen because it wins one family: a candidate enters the dropdown only if it is
   the score's winner, or the best of the candidates in at least two tuning families.
4. The default may depend on what the pack knows before sampling (VE or flow form), not on
   the family.
"""

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import comfy_support  # noqa: E402

from benchmarks.families import FAMILIES  # noqa: E402
from benchmarks.problems import relative_error  # noqa: E402
from benchmarks.report import publish  # noqa: E402

NFES = (5, 6, 8, 10, 12, 15, 20)
SCHEDULERS = ("karras", "exponential", "normal", "sgm_uniform", "simple", "beta", "deis_time_quadratic")
HELD_OUT = ("flow-digits",)
MODEL_TITLES = {"eps": "SD1.5-style EPS", "flow": "flow, shift 3", "flux": "flow, Flux shift 1.15"}
#: ComfyUI's deterministic samplers (the ODE samplers; the others draw noise), and their model
#: evaluations as a function of steps (the two-stage ones take an Euler step into sigma = 0).
BUILTINS = ("euler", "heun", "dpm_2", "lms", "dpmpp_2m", "ipndm", "ipndm_v", "deis", "res_multistep",
            "gradient_estimation", "uni_pc", "uni_pc_bh2")
TWO_STAGE = ("heun", "dpm_2")
#: Search candidates: SamplerDEIS options. The time of "tab" is the model's own (its sigma
#: table, or t = sigma for flow models) unless "time" says otherwise.
CANDIDATES = {
    f"{variant}{degree}{'' if time == 'auto' else '-' + time}-{integrand}{'' if lof else '-full'}": dict(
        variant=variant, degree=degree, integrand=integrand, lower_order_final=lof,
        **({"time": time} if variant == "tab" else {}))
    for variant, time in (("tab", "auto"), ("tab", "vp_linear"), ("logrhoab", "auto"))
    for integrand in ("eps", "v", "data")
    for degree in (1, 2, 3)
    for lof in (True, False)
}
CACHE = Path(__file__).resolve().parent.parent / "out" / "comfy_accuracy_cache.json"


def steps_for(name, nfe):
    if name in TWO_STAGE:
        return (nfe + 1) // 2 if nfe % 2 else None
    return nfe


def sampler_for(name):
    import comfy.samplers

    if name in CANDIDATES:
        pack = comfy_support.import_pack()
        return comfy.samplers.KSAMPLER(pack.nodes.samplers.comfy_sampler({}), extra_options=dict(CANDIDATES[name]))
    return comfy.samplers.sampler_object(name)


def run(model, name, scheduler, nfe, noise, latent, guidance=None):
    """(x at sigma = 0, sigmas), or None where the NFE does not fit the sampler."""
    import comfy.sample
    import comfy.samplers

    steps = steps_for(name, nfe)
    if steps is None:
        return None
    model_sampling = model.get_model_object("model_sampling")
    discard = name in comfy.samplers.KSampler.DISCARD_PENULTIMATE_SIGMA_SAMPLERS
    sigmas = comfy.samplers.calculate_sigmas(model_sampling, scheduler, steps + discard)
    if discard:
        sigmas = torch.cat([sigmas[:-2], sigmas[-1:]])
    calls = []

    def wrapper(apply_model, args):
        calls.append(1)
        return apply_model(args["input"], args["timestep"], **args["c"])

    model = model.clone()
    model.set_model_unet_function_wrapper(wrapper)
    cfg = 1.0 if guidance is None else guidance
    out = comfy.sample.sample_custom(
        model, noise, cfg, sampler_for(name), sigmas, comfy_support.empty_conditioning(positive=guidance is not None),
        comfy_support.empty_conditioning(), latent, disable_pbar=True, seed=0)
    if len(calls) != nfe:
        raise RuntimeError(f"{name} made {len(calls)} model calls for NFE {nfe}")
    return out, sigmas


def cells(families):
    return [(f, m, s, n) for f in families for m in FAMILIES[f].models for s in SCHEDULERS for n in NFES]


def measure(names, families, results=None, seed=0, log=print):
    """{(family, model, scheduler, nfe, name): error at sigma = 0}, adding to ``results``."""
    comfy_support.import_pack()
    from benchmarks.families import reference_solution

    results = {} if results is None else results
    for family_name in families:
        family = FAMILIES[family_name]
        latent = torch.zeros(family.shape)
        noise = torch.randn(family.shape, generator=torch.Generator().manual_seed(seed))
        references = {}
        for kind in family.models:
            form = "ve" if kind == "eps" else "flow"
            model = comfy_support.exact_model(kind, denoiser=family.denoiser(form))
            model_sampling = model.get_model_object("model_sampling")
            todo = [(s, n, name) for s in SCHEDULERS for n in NFES for name in names
                    if (family_name, kind, s, n, name) not in results]
            for scheduler, nfe, name in todo:
                ran = run(model, name, scheduler, nfe, noise, latent, family.guidance)
                if ran is None:
                    continue
                out, sigmas = ran
                sigma0 = float(sigmas[0])
                if sigma0 not in references:
                    start = model_sampling.noise_scaling(sigmas[0], noise, latent, True).double().numpy()
                    references[sigma0] = reference_solution(family.reference_denoiser(form), start, sigma0)
                results[(family_name, kind, scheduler, nfe, name)] = relative_error(out, references[sigma0])
            log(f"{family_name} {kind}: {len(todo)} runs")
    return results


def load_cache(path=CACHE):
    if not path.exists():
        return {}
    return {tuple(k.split("|")[:3]) + (int(k.split("|")[3]), k.split("|")[4]): v
            for k, v in json.loads(path.read_text()).items()}


def save_cache(results, path=CACHE):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"|".join(map(str, k)): v for k, v in results.items()}))


# --------------------------------------------------------------------------- scoring

def geomean(values):
    values = list(values)
    return math.exp(sum(map(math.log, values)) / len(values)) if values else float("nan")


def family_ratios(results, name, families, against="deis"):
    """Per cell of the families: the error of ``name`` over ``against``'s."""
    families = [families] if isinstance(families, str) else families
    return [results[c + (name,)] / results[c + (against,)] for c in cells(families)
            if c + (name,) in results and c + (against,) in results]


def family_stats(results, name, families, against="deis"):
    ratios = family_ratios(results, name, families, against)
    return geomean(ratios), sum(r < 1 for r in ratios), len(ratios)


def score(results, name, families):
    """The selection protocol's score: (worst family's geometric mean, cells beating deis there)."""
    stats = {f: family_stats(results, name, f) for f in families}
    worst = max(stats, key=lambda f: stats[f][0])
    return stats[worst][0], -stats[worst][1], worst


def best_at_low_nfe(results, pack, families, max_nfe=10):
    """Cells at NFE <= max_nfe where the best of ``pack`` is at least as good as the best built-in."""
    wins = total = 0
    for c in cells(families):
        if c[3] > max_nfe:
            continue
        ours = [results[c + (n,)] for n in pack if c + (n,) in results]
        theirs = [results[c + (n,)] for n in BUILTINS if c + (n,) in results]
        total += 1
        wins += min(ours) <= min(theirs)
    return wins, total


# --------------------------------------------------------------------------- report

def summary_table(results, names, families, against="deis"):
    lines = ["| sampler | " + " | ".join(families) + " | all |", "|---|" + "---:|" * (len(families) + 1)]
    for name in names:
        row = []
        for f in list(families) + [families]:
            g, wins, total = family_stats(results, name, f, against)
            row.append(f"{g:.2f} ({wins}/{total})")
        lines.append(f"| {name} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def markdown_cells(results, names, family):
    lines = []
    for kind in FAMILIES[family].models:
        for scheduler in SCHEDULERS:
            lines += ["", f"#### {family}, {MODEL_TITLES[kind]}, {scheduler}", "",
                      "| sampler | " + " | ".join(f"NFE {n}" for n in NFES) + " |", "|---|" + "---:|" * len(NFES)]
            best = {n: min((results[(family, kind, scheduler, n, m)] for m in names
                            if (family, kind, scheduler, n, m) in results), default=None) for n in NFES}
            for name in names:
                row = []
                for n in NFES:
                    value = results.get((family, kind, scheduler, n, name))
                    row.append("" if value is None else f"**{value:.2e}**" if value == best[n] else f"{value:.2e}")
                lines.append(f"| {name} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def plot(results, names, families, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = 4
    rows = -(-len(families) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.4 * columns, 3.0 * rows), sharey=True, squeeze=False)
    for ax in axes.ravel()[len(families):]:
        ax.set_visible(False)
    for ax, family in zip(axes.ravel(), families):
        for name in names:
            medians = []
            for n in NFES:
                values = [results[c + (name,)] for c in cells([family]) if c[3] == n and c + (name,) in results]
                medians.append(np.median(values) if values else np.nan)
            ax.plot(NFES, medians, marker="o", ms=3, lw=2.2 if name.startswith("deis_") else 1.2,
                    ls="-" if name.startswith("deis_") else "--", label=name)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(NFES, [str(n) for n in NFES], fontsize=7)
        ax.set_title(family, fontsize=9)
        ax.set_xlabel("NFE", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("median error at sigma = 0\n(all models and schedulers)", fontsize=8)
    axes.ravel()[len(families) - 1].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def search(results, tuning, candidates):
    """The protocol's ranking of ``candidates`` over the tuning families (best first)."""
    ranked = sorted(candidates, key=lambda n: score(results, n, tuning)[:2])
    lines = ["| candidate | worst family | its geomean vs deis | its cells beating deis | "
             + " | ".join(tuning) + " |", "|---|---|---:|---:|" + "---:|" * len(tuning)]
    for name in ranked:
        g, minus_wins, worst = score(results, name, tuning)
        per = [f"{family_stats(results, name, f)[0]:.2f}" for f in tuning]
        lines.append(f"| {name} | {worst} | {g:.2f} | {-minus_wins} | " + " | ".join(per) + " |")
    return ranked, "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument("--search", action="store_true", help="rank the search candidates (tuning families only)")
    parser.add_argument("--families", nargs="*", default=None)
    parser.add_argument("--candidates", nargs="*", default=None, help="search candidates to run (default: all)")
    parser.add_argument("--cache", type=Path, nargs="*", default=[CACHE],
                        help="result caches: read all, write the first")
    args = parser.parse_args()
    torch.set_num_threads(1)
    comfy_support.import_pack()
    from comfyui_deis_pack_under_test.nodes.samplers import KSAMPLER_CONFIGURATIONS, RECOMMENDED

    results = {}
    for path in args.cache:
        results.update(load_cache(path))
    if args.search:
        tuning = args.families or [f for f in FAMILIES if f not in HELD_OUT]
        candidates = args.candidates or list(CANDIDATES)
        measure(list(BUILTINS) + candidates, tuning, results)
        save_cache(results, args.cache[0])
        ranked, table = search(results, tuning, candidates)
        publish("## Search over the tuning families (score: worst family's geomean vs deis)\n\n" + table, args.out)
        return

    families = args.families or list(FAMILIES)
    pack = [name for name, options in KSAMPLER_CONFIGURATIONS.items() if not options.get("eta")]  # ODE entries
    names = pack + list(BUILTINS)
    measure(names, families, results)
    save_cache(results, args.cache[0])
    tuning = [f for f in families if f not in HELD_OUT]
    wins, total = best_at_low_nfe(results, pack, families)
    text = [
        "## Accuracy in ComfyUI over problem families", "",
        "Each cell: geometric mean over the family's cells (models x schedulers x NFE 5 to 20) of the "
        "sampler's error at sigma = 0 divided by ComfyUI's built-in `deis`'s, and in brackets the cells "
        "where it is below `deis`'s. Held out of the selection: " + ", ".join(HELD_OUT) + ".", "",
        summary_table(results, names, families), "",
        "The pack's entries against `dpmpp_2m` (the same measure, over `dpmpp_2m`'s error):", "",
        summary_table(results, pack, families, against="dpmpp_2m"), "",
        f"Recommended `{RECOMMENDED}`: score (worst tuning family's geomean) "
        f"{score(results, RECOMMENDED, tuning)[0]:.2f} ({score(results, RECOMMENDED, tuning)[2]}). "
        f"At NFE <= 10 the best dropdown entry is at least as good as the best built-in in {wins} of {total} cells.",
    ]
    for family in families:
        text += ["", f"### {family}: error at sigma = 0; best in bold", markdown_cells(results, names, family)]
    publish("\n".join(text), args.out)
    if args.plot:
        plot(results, [RECOMMENDED, "deis_data", "deis", "dpmpp_2m", "euler", "uni_pc_bh2"], families, args.plot)


if __name__ == "__main__":
    main()
