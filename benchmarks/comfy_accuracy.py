"""Accuracy inside a real ComfyUI, over several problem families, against every built-in ODE sampler.

    COMFYUI_PATH=/path/to/ComfyUI python -m benchmarks.comfy_accuracy [--out benchmarks/results/comfy_accuracy.md]
    COMFYUI_PATH=... python -m benchmarks.comfy_accuracy --search   # the selection protocol (benchmarks.selection)

Every run goes through ComfyUI itself: its schedulers (``calculate_sigmas``), its sampler
objects and ``comfy.sample.sample_custom`` (with its CFG for the guided family), on weightless
test models (tests/comfy_support.py) whose denoiser is a family's exact posterior mean or a
learned network (benchmarks/families.py). Models: SD1.5-style discrete EPS ("eps"), flow
with shift 3 ("flow") and Flux's shift 1.15 ("flux"); the digits models run on the models of
their own kind. Every scheduler ComfyUI 0.3.64 ships runs, and the pack's
``deis_time_quadratic``, at 5 to 50 model evaluations (NFE). Every sampler starts from the same
noise and makes the same number of model evaluations. The measure is the relative error at
sigma = 0 against the family's exact ODE solution (DOP853, rtol 1e-10).
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

from benchmarks import selection  # noqa: E402
from benchmarks.families import FAMILIES  # noqa: E402
from benchmarks.problems import relative_error  # noqa: E402
from benchmarks.report import publish  # noqa: E402
from benchmarks.selection import GUIDED, HELD_OUT, NFES, SCHEDULERS, cells, geomean  # noqa: E402

MODEL_TITLES = {"eps": "SD1.5-style EPS", "flow": "flow, shift 3", "flux": "flow, Flux shift 1.15",
                "flow-aura": "flow, AuraFlow shift 1.73", "flow-lumina": "flow, Lumina 2 shift 6",
                "zsnr": "v-prediction, zero terminal SNR", "edm": "EDM (Playground)", "svd": "SVD (EDM, sigma_max 700)",
                "audio": "Stable Audio (sigma_max 500)", "cascade": "Stable Cascade",
                "x4": "x4 upscaler (sigma_min 0.01)", "cascade-b": "Stable Cascade stage B (shift 1)"}
#: ComfyUI's deterministic samplers (the ODE samplers; the others draw noise), and their model
#: evaluations as a function of steps (the two-stage ones take an Euler step into sigma = 0).
BUILTINS = ("euler", "heun", "dpm_2", "lms", "dpmpp_2m", "ipndm", "ipndm_v", "deis", "res_multistep",
            "gradient_estimation", "uni_pc", "uni_pc_bh2")
TWO_STAGE = ("heun", "dpm_2")
#: The search's candidates (benchmarks/selection.py): Sampler DEIS (advanced) options, with tAB's time as
#: ``time`` ("model": the model's own, its sigma table or t = sigma; "vp_linear": the paper's VP time).
CANDIDATES = {**selection.CANDIDATES["sd"], **selection.CANDIDATES["flow"]}
#: The release before's deis_auto, per form, in this release's options (selection.BASELINE).
BASELINE_OPTIONS = {
    "sd": dict(variant="tab", time="vp_linear", degree=2, integrand="eps", corrector=False, final_degree=1,
               max_amplification=None, lower_order_final=True),
    "flow": dict(variant="tab", time="model", degree=2, integrand="v", corrector=False, final_degree=0,
                 max_amplification=1.5, lower_order_final=False),
}
CACHE = Path(__file__).resolve().parent.parent / "out" / "comfy_accuracy_cache.json"


def steps_for(name, nfe):
    if name in TWO_STAGE:
        return (nfe + 1) // 2 if nfe % 2 else None
    return nfe


def core_config(options):
    """A candidate's options as the core's ``Config``: ``time`` becomes tAB's ``time_map`` (absent: the model's own).
    Round 2's safeguards (``corrector_max_amplification``, ``corrector_max_step``) left the core with 0.2.0: the
    search rejected them (docs/selection.md keeps the record), and their candidates no longer run."""
    pack = comfy_support.import_pack()
    options = dict(options)
    if options.pop("time", "model") == "vp_linear":
        options["time_map"] = pack.deis.VPLinearTime()
    return pack.deis.Config(**{name: value for name, value in options.items() if value is not None
                               or name in ("max_amplification", "max_step_angle", "corrector_max_angle")})


def sampler_for(name, kind):
    """ComfyUI's sampler object for a built-in, a search candidate, the baseline or a pack entry."""
    import comfy.samplers

    if name in CANDIDATES or name == selection.BASELINE:
        pack = comfy_support.import_pack()
        options = CANDIDATES.get(name) or BASELINE_OPTIONS[selection.form_of(kind)]
        return comfy.samplers.KSAMPLER(pack.nodes.samplers.comfy_sampler(core_config(options)))
    return comfy.samplers.sampler_object(name)


def run(model, kind, name, scheduler, nfe, noise, latent, guidance=None):
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
        model, noise, cfg, sampler_for(name, kind), sigmas,
        comfy_support.empty_conditioning(positive=guidance is not None), comfy_support.empty_conditioning(), latent,
        disable_pbar=True, seed=0)
    # ComfyUI's ddim_uniform rounds: at some step counts it gives a step more than asked for, to every sampler.
    expected = (len(sigmas) - 1) * (2 if name in TWO_STAGE else 1) - (name in TWO_STAGE)
    # The pack takes a repeated sigma (beta on Stable Cascade) as the step of length 0 it is: no model call.
    skipped = int((sigmas[1:] == sigmas[:-1]).sum()) if name.startswith("deis_") or name in CANDIDATES else 0
    if len(calls) != expected - skipped or (scheduler != "ddim_uniform" and expected != nfe):
        raise RuntimeError(f"{name} made {len(calls)} model calls for NFE {nfe} on {scheduler}")
    return out, sigmas


def starts_at_max(model_sampling, sigmas):
    """ComfyUI's ``KSAMPLER.max_denoise``: does the sampler's start noise get the full-denoise scaling?"""
    return math.isclose(float(model_sampling.sigma_max), float(sigmas[0]), rel_tol=1e-5) or (
        float(sigmas[0]) > float(model_sampling.sigma_max))


def measure(names, families, results=None, seed=0, log=print, models=None, nfes=NFES):
    """{(family, model, scheduler, nfe, name): error at sigma = 0}, adding to ``results``.

    ``models``: only these of each family's models (default: all); ``nfes``: only these NFE."""
    comfy_support.import_pack()
    from benchmarks.families import reference_solution

    results = {} if results is None else results
    for family_name in families:
        family = FAMILIES[family_name]
        latent = torch.zeros(family.shape)
        noise = torch.randn(family.shape, generator=torch.Generator().manual_seed(seed))
        references = {}
        for kind in family.models:
            if models is not None and kind not in models:
                continue
            form = comfy_support.form_of(kind)
            model = comfy_support.exact_model(kind, denoiser=family.denoiser(form))
            model_sampling = model.get_model_object("model_sampling")
            todo = [(s, n, name) for s in SCHEDULERS for n in nfes for name in names
                    if (family_name, kind, s, n, name) not in results]
            for scheduler, nfe, name in todo:
                try:
                    ran = run(model, kind, name, scheduler, nfe, noise, latent, family.guidance)
                except (ValueError, RuntimeError) as error:
                    # A sampler that refuses or fails on a schedule (ComfyUI's uni_pc on Stable Cascade's beta
                    # schedule, which repeats a sigma) gives no output there: a failed cell, never a skipped one.
                    if isinstance(error, RuntimeError) and "model calls" in str(error):
                        raise
                    log(f"{name} failed on {family_name} {kind} {scheduler} {nfe}: {type(error).__name__}: {error}")
                    results[(family_name, kind, scheduler, nfe, name)] = math.nan
                    continue
                if ran is None:
                    continue
                out, sigmas = ran
                sigma0 = float(sigmas[0])
                if sigma0 not in references:
                    full = starts_at_max(model_sampling, sigmas)
                    start = model_sampling.noise_scaling(sigmas[0], noise, latent, full).double().numpy()
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


# --------------------------------------------------------------------------- report

STEP_RANGES = ((5, 6), (8, 10, 12), (15, 20), (25, 30), (40, 50))
#: The schedulers and steps the learned-model target looks at: what users run most.
USUAL_SCHEDULERS, USUAL_NFES = ("normal", "karras", "simple", "beta"), (15, 20, 25, 30)
#: The pack's ODE entries in this report of 0.2.0 (deis_auto, which 0.2.0 recommended, and deis_corrected; since
#: 0.3.0 deis_corrected is the recommendation, benchmarks/recommendation.py).
RECOMMENDED_NAME = "deis_auto"
PACK = (RECOMMENDED_NAME, "deis_corrected")
REFERENCES = ("deis", "dpmpp_2m", "uni_pc_bh2")


def summary_table(results, names, families, against="deis", form=None, models=None):
    """Per family: the geometric mean of the error ratio to ``against``, and the cells below it."""
    lines = ["| sampler | " + " | ".join(families) + " | balanced |", "|---|" + "---:|" * (len(families) + 1)]
    for name in names:
        row = []
        for family in families:
            ratios = selection.ratios(results, name, [family], against, form, models)
            row.append(f"{geomean(ratios):.2f} ({sum(r < 1 for r in ratios)}/{len(ratios)})" if ratios else "")
        row.append(f"{selection.balanced(results, name, families, against, form, models):.2f}")
        lines.append(f"| {name} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def failure_table(results, names, families, form, models=None):
    """Cells failed under the selection protocol's rules (benchmarks.selection), per family."""
    lines = ["| sampler | " + " | ".join(families) + " | worst vs deis | worst vs euler |",
             "|---|" + "---:|" * (len(families) + 2)]
    for name in names:
        counts = [str(len(selection.failures(results, name, [f], form, models))) for f in families]
        worst = [f"{selection.worst_ratio(results, name, families, other, form, models):.2f}"
                 for other in ("deis", "euler")]
        lines.append(f"| {name} | " + " | ".join(counts + worst) + " |")
    return "\n".join(lines)


def usual_cells_won(results, name, family, against=("deis", "uni_pc_bh2")):
    """Cells of the usual schedulers and steps where ``name`` is at most every one of ``against``."""
    cells_ = [c for c in cells([family]) if c[2] in USUAL_SCHEDULERS and c[3] in USUAL_NFES]
    won = sum(all(results[c + (name,)] <= results[c + (other,)] for other in against) for c in cells_)
    return won, len(cells_)


def beta_cells(results, name, form):
    """(cells at most deis's, cells) of the beta scheduler at 20 to 50 NFE, every family and model of the form."""
    won = total = 0
    for c in cells(list(FAMILIES), form):
        if c[2] != "beta" or c[3] not in selection.BETA_NFES:
            continue
        mine, theirs = results.get(c + (name,)), results.get(c + ("deis",))
        if mine is None or theirs is None or not math.isfinite(theirs):
            continue
        total += 1
        won += mine <= theirs
    return won, total


def high_sigma_rows(results, names):
    """Under CFG at 10 NFE on the models whose sigma_max is in the hundreds or thousands: error over euler's."""
    lines = ["| family | model | scheduler | " + " | ".join(names) + " |", "|---|---|---|" + "---:|" * len(names)]
    for family in GUIDED:
        for kind in ("zsnr", "svd", "audio"):
            if kind not in FAMILIES[family].models:
                continue
            for scheduler in selection.HIGH_SIGMA_SCHEDULERS:
                cell = (family, kind, scheduler, selection.HIGH_SIGMA_NFE)
                euler = results.get(cell + ("euler",))
                values = [results.get(cell + (n,)) for n in names]
                if euler is None or None in values:
                    continue
                lines.append(f"| {family} | {kind} | {scheduler} | " + " | ".join(f"{v / euler:.2f}" for v in values)
                             + " |")
    return "\n".join(lines)


def pair_error(results, name, scheduler, nfes, families, form, models=None):
    """The family-balanced geometric mean of ``name``'s error on ``scheduler`` at ``nfes``."""
    per_family = []
    for family in families:
        values = [results[c + (name,)] for c in cells([family], form, models)
                  if c[2] == scheduler and c[3] in nfes and c + (name,) in results]
        if values:
            per_family.append(geomean(values))
    return geomean(per_family) if per_family else math.inf


def best_pair(results, names, families, form, nfes, schedulers=SCHEDULERS, models=None):
    pairs = [(pair_error(results, n, s, nfes, families, form, models), n, s) for n in names for s in schedulers]
    return min(p for p in pairs if math.isfinite(p[0]))


def pick_rows(results, pack, families, guided, form, models=None):
    """For each step range, without and with CFG: (title, the pack's best pair, the best built-in pair, the
    pack's and the best built-in's on ``normal``), each pair as (error, sampler, scheduler)."""
    rows = []
    for title, fams in (("", families), (" with CFG", guided)):
        for nfes in STEP_RANGES if fams else ():
            rows.append((f"{nfes[0]} to {nfes[-1]}{title}", best_pair(results, pack, fams, form, nfes, models=models),
                         best_pair(results, BUILTINS, fams, form, nfes, models=models),
                         best_pair(results, pack, fams, form, nfes, ("normal",), models),
                         best_pair(results, BUILTINS, fams, form, nfes, ("normal",), models)))
    return rows


def pick_table(rows):
    lines = ["| steps | pack: best pair | its error | built-in: best pair | its error | pack / built-in "
             "| on `normal`: pack / best built-in |", "|---|---|---:|---|---:|---:|---|"]
    for title, ours, theirs, normal_ours, normal_theirs in rows:
        lines.append(f"| {title} | `{ours[1]}` + `{ours[2]}` | {ours[0]:.2e} | `{theirs[1]}` + `{theirs[2]}` | "
                     f"{theirs[0]:.2e} | {ours[0] / theirs[0]:.2f} | "
                     f"{normal_ours[0]:.2e} / {normal_theirs[0]:.2e} (`{normal_theirs[1]}`) |")
    return "\n".join(lines)


def report(results, args):
    """Measure the pack's entries and the built-ins on every cell, and write comfy_accuracy.md (and the plot)."""
    families = args.families or list(FAMILIES)
    names = list(PACK) + list(BUILTINS)
    measure(names, families, results)
    save_cache(results, args.cache[0])
    text = ["## Accuracy in ComfyUI over problem families", "",
            f"Error at sigma = 0 against the exact ODE solution, on {len(SCHEDULERS)} schedulers at {NFES[0]} to "
            f"{NFES[-1]} model calls (NFE). Tuning "
            f"families and models are those of benchmarks/selection.py; held out of every choice: the families "
            f"{', '.join(HELD_OUT)} and the models "
            f"{', '.join(m for ms in selection.HELD_OUT_MODELS.values() for m in ms)}."
            " The rules and the score are benchmarks/selection.py's.", ""]
    for form, models in selection.FORMS.items():
        tuning_models = selection.TUNING_MODELS[form]
        fams = [f for f in families if set(FAMILIES[f].models) & set(models)]
        tune = selection.tuning_families(form, fams)
        unguided = [f for f in fams if f not in GUIDED]
        text += [f"### {form}: the recommended `{RECOMMENDED_NAME}`", ""]
        text += ["| | " + " | ".join(f"vs `{a}`" for a in REFERENCES) + " |", "|---|" + "---:|" * len(REFERENCES)]
        for label, fs, ms in (("tuning families and models", tune, tuning_models),
                              ("every family and model, held out included", fams, models),
                              ("held out only", [f for f in fams if f in HELD_OUT], models)):
            for name in PACK:
                text.append(f"| `{name}`, {label} | " + " | ".join(
                    f"{selection.balanced(results, name, fs, a, form, ms):.3f}" for a in REFERENCES) + " |")
        text += ["", "Family-balanced geometric means of the error ratio.", ""]
        text += ["Failed cells (tuning cells; at 8 NFE or more: above 1.25x `deis`, above 1.05x `euler`, growing by "
                 "more than 10 % from 15 NFE up, or not finite), unguided / under CFG:", ""]
        text += ["| sampler | unguided | under CFG | held out (every model) |", "|---|---:|---:|---:|"]
        for name in names:
            unguided_failed, guided_failed = selection.failed_counts(results, name, form, fams)
            held = sum(len(selection.failures(results, name, [f], form)) for f in fams if f in HELD_OUT)
            text.append(f"| {name} | {unguided_failed} | {guided_failed} | {held} |")
        text.append("")
        for family in ("digits", "flow-digits"):
            if family in fams and set(FAMILIES[family].models) & set(models):
                for name in PACK:
                    won, total = usual_cells_won(results, name, family)
                    text.append(f"On `{family}` at {USUAL_NFES[0]} to {USUAL_NFES[-1]} steps on "
                                f"{', '.join(USUAL_SCHEDULERS)}, `{name}` is at most `deis`'s and `uni_pc_bh2`'s "
                                f"error in {won} of {total} cells.")
        if form == "flow":
            for name in PACK:
                won, total = beta_cells(results, name, form)
                text.append(f"`beta` at 20 to 50 NFE, every flow model and family: `{name}` at most `deis`'s error "
                            f"in {won} of {total} cells.")
        else:
            text += ["", "Under CFG at 10 NFE, error over `euler`'s on the models whose sigma_max is in the hundreds "
                     "or thousands:", "", high_sigma_rows(results, list(PACK) + ["deis"])]
        text += ["", "Failed cells per family (every model of the form) and the worst ratios:", "",
                 failure_table(results, names, fams, form), "",
                 "Geometric mean of the error over `deis`'s (cells below it), every model of the form:", "",
                 summary_table(results, names, fams, "deis", form), "",
                 "... over `uni_pc_bh2`'s:", "", summary_table(results, names, fams, "uni_pc_bh2", form), "",
                 "... over `dpmpp_2m`'s:", "", summary_table(results, names, fams, "dpmpp_2m", form), "",
                 "What to pick: the lowest family-balanced geometric mean of the error over the tuning families "
                 "without CFG, and over the guided families with CFG, on the tuning models (the pack's pairs are "
                 "its two ODE entries'):", "",
                 pick_table(pick_rows(results, list(PACK), [f for f in unguided if f in tune],
                                      [f for f in fams if f in GUIDED and f in tune], form, tuning_models)), ""]
    for family in families:
        text += ["", f"### {family}: error at sigma = 0; best in bold", markdown_cells(results, names, family)]
    publish("\n".join(text), args.out)
    if args.plot:
        plot(results, list(PACK) + ["deis", "dpmpp_2m", "euler", "uni_pc_bh2"], families, args.plot)


def markdown_cells(results, names, family):
    lines = []
    for kind in FAMILIES[family].models:
        for scheduler in SCHEDULERS:
            lines += ["", f"#### {family}, {MODEL_TITLES[kind]}, {scheduler}", "",
                      "| sampler | " + " | ".join(f"NFE {n}" for n in NFES) + " |", "|---|" + "---:|" * len(NFES)]
            values = {(n, m): results.get((family, kind, scheduler, n, m)) for n in NFES for m in names}
            best = {n: min((v for (k, _), v in values.items() if k == n and v is not None and math.isfinite(v)),
                           default=None) for n in NFES}
            for name in names:
                row = []
                for n in NFES:
                    value = values[(n, name)]
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
                medians.append(np.nanmedian(values) if values else np.nan)
            ax.plot(NFES, medians, marker="o", ms=3, lw=2.2 if name.startswith("deis_") else 1.2,
                    ls="-" if name.startswith("deis_") else "--", label=name)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(NFES, [str(n) for n in NFES], fontsize=7)
        ax.set_title(family + (" (held out)" if family in HELD_OUT else ""), fontsize=9)
        ax.set_xlabel("NFE", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("median error at sigma = 0\n(all models and schedulers)", fontsize=8)
    axes.ravel()[len(families) - 1].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- search

REFERENCE_NAMES = ("deis", "euler", "dpmpp_2m", "uni_pc_bh2", selection.BASELINE)


def screening(results):
    """The screening cells of ``results`` (rules 7 and 9): the NFE every candidate ran at, and rule 2c's cells."""
    return {k: v for k, v in results.items() if k[3] in selection.SCREENING_NFES or k[:4] in selection.SCREENING_EXTRA}


def search(results, log=print, shard=None, rounds=None, forms=None):
    """The selection protocol (benchmarks.selection): screen every candidate, measure the finalists in full,
    rank them per form, choose. With ``shard = (k, n)`` only screen the k-th of n slices of the candidates
    (a last run without a shard, reading every shard's cache, does the rest). Returns the markdown."""
    text = []
    for form, models in selection.TUNING_MODELS.items():
        if forms and form not in forms:
            continue
        families = selection.tuning_families(form)
        candidates = sorted(selection.CANDIDATES[form])
        if rounds:  # rule 12: the last ranking over rounds 2 and 3 only
            candidates = sorted({name for r in rounds for name in selection.ROUNDS[r - 1][form]})
        if shard is not None:
            k, n = shard
            candidates = candidates[k::n]
        for family in families:
            measure(REFERENCE_NAMES, [family], results, log=log, models=models)
            measure(candidates, [family], results, log=log, models=models, nfes=selection.SCREENING_NFES)
        extra_models = {cell[1] for cell in selection.SCREENING_EXTRA} & set(models)
        if extra_models:  # rule 9: rule 2c's cells
            measure(candidates, ["guided"], results, log=log, models=extra_models, nfes=(selection.HIGH_SIGMA_NFE,))
        if shard is not None:
            continue
        screened = selection.rank(screening(results), candidates + [selection.BASELINE], form)
        finalists = [row["name"] for row in screened if row["name"] != selection.BASELINE][:selection.FINALISTS]
        for family in families:
            measure(finalists, [family], results, log=log, models=models)
        ranked = selection.rank(results, finalists + [selection.BASELINE], form)
        chosen = selection.choose(ranked, results, form)
        corrected = selection.choose_corrected(ranked)
        text += ["", f"### {form}: the finalists on every tuning cell", "",
                 f"Chosen (rule 4): `{chosen}`" + ("" if chosen != selection.BASELINE else
                                                    " (no eligible candidate is 15 % better than the baseline)"),
                 "", f"Offered with the corrector (rule 11): `{corrected}`",
                 "", "| candidate | eligible | failed cells | failed under CFG | beta rule | zsnr rule | score "
                 "| vs deis | vs dpmpp_2m | vs uni_pc_bh2 |", "|---|---|---:|---:|---|---|---:|---:|---:|---:|"]
        text += [f"| {r['name']} | {'yes' if r['eligible'] else 'no'} | {r['failed']} | {r['guided_failed']} | "
                 f"{'holds' if r['beta'] else 'fails'} | {'holds' if r['high_sigma'] else 'fails'} | "
                 f"{r['score']:.3f} | {r['vs_deis']:.3f} | {r['vs_dpmpp_2m']:.3f} | {r['vs_uni_pc_bh2']:.3f} |"
                 for r in ranked]
        text += ["", f"Screening (8, 15, 30, 50 NFE), the first 40 of {len(screened)}:", "",
                 "| candidate | eligible | failed | under CFG | score | vs deis |", "|---|---|---:|---:|---:|---:|"]
        text += [f"| {r['name']} | {'yes' if r['eligible'] else 'no'} | {r['failed']} | {r['guided_failed']} | "
                 f"{r['score']:.3f} | {r['vs_deis']:.3f} |" for r in screened[:40]]
    return "\n".join(text)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument("--search", action="store_true", help="run the selection protocol (benchmarks/selection.py)")
    parser.add_argument("--shard", default=None, help="k/n: screen only the k-th of n slices of the candidates")
    parser.add_argument("--rounds", type=int, nargs="*", default=None,
                        help="search only these rounds' candidates (rule 12: 2 3)")
    parser.add_argument("--forms", nargs="*", default=None, help="search only these forms (sd, flow)")
    parser.add_argument("--families", nargs="*", default=None)
    parser.add_argument("--cache", type=Path, nargs="*", default=[CACHE],
                        help="result caches: read all, write the first")
    args = parser.parse_args()
    torch.set_num_threads(1)
    comfy_support.import_pack()

    results = {}
    for path in args.cache:
        results.update(load_cache(path))
    if args.search:
        shard = None if args.shard is None else tuple(int(v) for v in args.shard.split("/"))
        try:
            table = search(results, shard=shard, rounds=args.rounds, forms=args.forms)
        finally:
            save_cache(results, args.cache[0])
        publish("## The selection protocol's search (benchmarks/selection.py)\n" + table, args.out)
        return
    report(results, args)


if __name__ == "__main__":
    main()
