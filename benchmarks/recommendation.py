"""Which corrected configuration the pack recommends, per form: the rule, written before the search, and the search.

    COMFYUI_PATH=/path/to/ComfyUI python -m benchmarks.recommendation measure --form sd   # fills the cache
    COMFYUI_PATH=/path/to/ComfyUI python -m benchmarks.recommendation report              # the tables

``deis_corrected`` is the recommendation (decided); this search chooses its configuration in each form. It was
written, with its candidates (``CANDIDATES``), before any candidate ran on its cells.

A cell is one (family, model, scheduler, NFE) at ``NFES`` on ``SCHEDULERS`` (what users run: 8 to 30 steps on
normal, karras, exponential, simple and beta); its value is a sampler's relative error at sigma = 0 against the
exact ODE solution, every sampler run through ComfyUI's own schedulers, CFG and sampler objects
(benchmarks.comfy_accuracy). Guided families run at CFG 6, and the pack's sampler reads that scale from ComfyUI's
guider, as it does for users (``corrector_max_cfg``).

The rule, for the recommended configuration of each form:

1. No cell above 2 times ComfyUI ``deis``'s error or 1.5 times ``euler``'s (``MAX_VS_DEIS``, ``MAX_VS_EULER``).
2. In each family, at most 5 % of the cells above 1.25 times ``deis``'s error (``DRIFT``, ``MAX_DRIFT_SHARE``).
3. Then the lowest family-balanced score: for each family, the geometric mean over its cells of the error over
   ``deis``'s, over ``uni_pc_bh2``'s and over ``dpmpp_2m``'s; the score is the geometric mean of the three over
   the families, each family weighing the same.

If no candidate meets 1 and 2, the recommendation is the one closest to them: the fewest cells over rule 1, then
the fewest over rule 2 (cells above 1.25 times deis's in families over 5 %), then the score. The rule is applied
to the tuning cells (``TUNING``); the held-out cells (``HELD_OUT``: families the search never ran, and model
kinds it never tuned on, two of them with sigma_min 0.01) run on the chosen configuration only, once it is
chosen, and are reported beside it. A family where every sampler's relative error is O(1) (the guided ODE is
chaotic there: which mode a sample reaches is decided by rounding) is counted as the rule says; the report shows
how many of a candidate's failed cells are such cells.

(A correction written after the search, the rule unchanged: the near-continuum under CFG 6 is stiff, not chaotic.
ComfyUI's deis has an error of the order of the sample itself up to 25 to 50 NFE and then drops to 1e-2 within a
few steps; euler converges earlier, from 25 to 30 NFE on several schedulers. The cells the report marks are
"unresolved": both deis's and euler's errors are above half the sample's, where no sampler has yet converged.)

Round 2 (written after round 1's tuning cells of the flow form had run without the flow-digits family, before
anything of round 2 ran; the rule unchanged): every flow candidate of round 1 failed rule 1 on ``normal`` at 8
to 12 NFE on the tight mixtures (up to 2.35 times euler's error, 0.25 times deis's), where euler is far ahead of
every higher-order built-in. Euler is DDIM on a flow model, the data integrand's step of degree 0; the v
integrand's is not. Round 2 adds the data integrand to the flow grid (``ROUND_2``), with round 1's other axes.

Round 3 (written after round 1's SD-style ranking and its held-out run, before anything of round 3 ran; the rule
unchanged): the linearly implicit correction at data scale 0.05 or 0.2 lost on the learned digits model with
``normal`` (1.7 and 2.8 times deis's error, against 1.2 without it), whose last step ends at sigma 0.029; and the
chosen configuration, without it, keeps the stall of ``normal`` on the held-out x4 upscaler (sigma_min 0.01),
2.4 times deis's error at 20 and 30 steps on the coordinate mixture, which the implicit correction at 0.05 halves.
The factor grows as sigma falls below the data scale, so a smaller scale acts near sigma 0.01 and hardly at 0.029.
Round 3 adds data scales 0.01 and 0.02 to round 1's leading SD-style structure (``ROUND_3``). (The x4 numbers
above come from a one-off run of the coordinate mixture on the x4 kind, ``normal`` at 10, 20 and 30 NFE, which the
results cache does not hold; the x4 kind informed this round, so it is not strictly held out of it.)

The table a user reads (``pick``): per form, the recommendation's one scheduler for 8 to 30 steps, the one with
the lowest family-balanced error over ``deis``'s, unguided and guided; and the steps the best built-in sampler,
on its best scheduler, needs to match the recommendation's error at 10 and at 20 steps (``steps_saved``).
"""

import argparse
import itertools
import json
import math
from pathlib import Path

import torch

from benchmarks import comfy_accuracy
from benchmarks.comfy_accuracy import BUILTINS
from benchmarks.report import publish
from benchmarks.selection import geomean

NFES = (8, 10, 12, 15, 20, 25, 30)
#: The built-ins also run here, for the steps a user saves: how many steps they need to match.
BUILTIN_NFES = (5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50)
SCHEDULERS = ("normal", "karras", "exponential", "simple", "beta")
MAX_VS_DEIS, MAX_VS_EULER = 2.0, 1.5
DRIFT, MAX_DRIFT_SHARE = 1.25, 0.05
REFERENCES = ("deis", "uni_pc_bh2", "dpmpp_2m")
#: The tuning cells: families and the model kinds each runs on, per form.
TUNING = {
    "sd": {"coordinate": ("eps",), "joint-16": ("eps",), "joint-64": ("eps",), "joint-256": ("eps",),
           "guided": ("eps", "zsnr"), "guided-curve": ("eps", "zsnr"), "digits": ("eps",), "class-digits": ("eps",)},
    "flow": {"coordinate": ("flow", "flux"), "joint-16": ("flow", "flux"), "joint-64": ("flow", "flux"),
             "joint-256": ("flow", "flux"), "guided": ("flow", "flux"), "guided-curve": ("flow", "flux"),
             "flow-digits": ("flow", "flux")},
}
#: Held out: families the search never runs, on every model kind of the form, four of them never tuned on in the
#: SD-style form (two with sigma_min 0.01: the x4 upscaler and Stable Cascade's stage B) and two in the flow form.
HELD_OUT_FAMILIES = ("spectral", "curve", "guided-spectral")
HELD_OUT = {
    "sd": {f: ("eps", "zsnr", "edm", "svd", "audio", "cascade", "x4", "cascade-b") for f in HELD_OUT_FAMILIES},
    "flow": {f: ("flow", "flux", "flow-aura", "flow-lumina") for f in HELD_OUT_FAMILIES},
}
GUIDED_FAMILIES = ("guided", "guided-curve", "class-digits", "guided-spectral")

#: What every candidate of a form shares: deis_corrected's configuration of the release before.
BASES = {
    "sd": dict(variant="tab", time="vp_linear", integrand="data", corrector=True, final_degree=1,
               max_step_angle=0.4),
    "flow": dict(variant="tab", integrand="v", corrector=True, final_degree=1, max_amplification=1.5),
}
#: The axes of the search: the remedies of the correction on long steps and under guidance, each an option of the
#: core (deis.OPTIONS): the linearly implicit correction (``corrector_data_scale``), a tighter angle gate
#: (``corrector_max_angle``), no correction above a CFG scale (``corrector_max_cfg``), the predictor's degree and
#: (flow) the angle above which a step is taken at degree 0 (``max_step_angle``).
AXES = {
    "sd": dict(degree=(1, 2), corrector_data_scale=(None, 0.05, 0.2), corrector_max_angle=(None, 0.1),
               corrector_max_cfg=(None, 4.0)),
    "flow": dict(degree=(1, 2), corrector_data_scale=(None, 0.05), corrector_max_angle=(0.15, 0.05),
                 max_step_angle=(0.6, 0.4), corrector_max_cfg=(None, 4.0)),
}
SHORT = dict(integrand="i", degree="d", corrector_data_scale="s", corrector_max_angle="cp", max_step_angle="pa",
             corrector_max_cfg="cfg")


#: Round 2 (see above): the flow form's grid again, on the data integrand.
ROUND_2 = {"flow": dict(integrand=("data",), **AXES["flow"])}
#: Round 3 (see above): smaller data scales of the implicit correction, SD-style.
ROUND_3 = {"sd": dict(degree=(1,), corrector_data_scale=(0.01, 0.02), corrector_max_angle=(None,),
                      corrector_max_cfg=(None, 4.0))}


def candidate_name(form, options):
    return form + "-" + "-".join(f"{SHORT[k]}{'off' if v is None else v if isinstance(v, str) else f'{v:g}'}"
                                 for k, v in options.items())


def _candidates():
    out = {form: {} for form in AXES}
    for form, axes in [*AXES.items(), *ROUND_2.items(), *ROUND_3.items()]:
        for values in itertools.product(*axes.values()):
            options = dict(zip(axes, values))
            out[form][candidate_name(form, options)] = {**BASES[form], **options}
    return out


CANDIDATES = _candidates()
OUT = Path(__file__).resolve().parent.parent / "out"


def cache_path(form):
    return OUT / f"recommendation_{form}.json"


def measure(results, names, cells_by_family, nfes, log=print, save=None):
    """Run ``names`` on every (family, model) of ``cells_by_family`` at every scheduler and NFE, into ``results``."""
    comfy_accuracy.SCHEDULERS = SCHEDULERS
    for name in names:
        if name in CANDIDATES["sd"] or name in CANDIDATES["flow"]:
            comfy_accuracy.CANDIDATES[name] = {**CANDIDATES["sd"], **CANDIDATES["flow"]}[name]
    for family, models in cells_by_family.items():
        comfy_accuracy.measure(names, [family], results, log=log, models=models, nfes=nfes)
        if save:
            save(results)
    return results


# --------------------------------------------------------------------------- the rule

def cells(cells_by_family, families=None):
    return [(f, m, s, n) for f, models in cells_by_family.items() if families is None or f in families
            for m in models for s in SCHEDULERS for n in NFES]


def ratio(results, cell, name, against):
    mine, theirs = results.get(cell + (name,)), results.get(cell + (against,))
    if mine is None or theirs is None or not math.isfinite(theirs) or theirs == 0:
        return None
    return mine / theirs if math.isfinite(mine) else math.inf


def rule_1_failures(results, name, cells_by_family):
    out = []
    for cell in cells(cells_by_family):
        vs_deis, vs_euler = ratio(results, cell, name, "deis"), ratio(results, cell, name, "euler")
        if (vs_deis is not None and vs_deis > MAX_VS_DEIS) or (vs_euler is not None and vs_euler > MAX_VS_EULER):
            out.append((cell, vs_deis, vs_euler))
    return out


def drift_counts(results, name, cells_by_family):
    """Per family: how many of its cells are above ``DRIFT`` times deis's error, of how many with a ratio."""
    counts = {}
    for family in cells_by_family:
        values = [ratio(results, c, name, "deis") for c in cells(cells_by_family, [family])]
        values = [v for v in values if v is not None]
        counts[family] = (sum(v > DRIFT for v in values), len(values))
    return counts


def drift_shares(results, name, cells_by_family):
    """Per family: the share of its cells above ``DRIFT`` times deis's error."""
    return {family: over / total if total else 0.0
            for family, (over, total) in drift_counts(results, name, cells_by_family).items()}


def rule_2_excess(results, name, cells_by_family):
    """Cells above DRIFT times deis's in the families over the 5 % share."""
    return sum(over for over, total in drift_counts(results, name, cells_by_family).values()
               if total and over / total > MAX_DRIFT_SHARE)


def balanced(results, name, cells_by_family, against, families=None):
    per_family = []
    for family in cells_by_family:
        if families is not None and family not in families:
            continue
        values = [ratio(results, c, name, against) for c in cells(cells_by_family, [family])]
        values = [v for v in values if v is not None and v > 0]
        if values:
            per_family.append(geomean(values))
    return geomean(per_family)


def score(results, name, cells_by_family):
    return geomean(balanced(results, name, cells_by_family, against) for against in REFERENCES)


def unresolved(results, cell):
    """Both deis's and euler's relative errors are above 0.5 here: no sampler has converged yet."""
    return all((results.get(cell + (r,)) or 0) > 0.5 for r in ("deis", "euler"))


def rank(results, names, cells_by_family):
    table = []
    for name in names:
        failed = rule_1_failures(results, name, cells_by_family)
        table.append(dict(
            name=name, rule_1=len(failed), rule_1_unresolved=sum(unresolved(results, c) for c, _, _ in failed),
            rule_2=rule_2_excess(results, name, cells_by_family), score=score(results, name, cells_by_family),
            **{f"vs_{a}": balanced(results, name, cells_by_family, a) for a in REFERENCES},
            shares=drift_shares(results, name, cells_by_family)))
    return sorted(table, key=lambda r: (r["rule_1"], r["rule_2"], r["score"]))


def choose(ranked):
    """Rules 1 to 3, or the closest to 1 and 2: ``rank`` already sorts so."""
    return ranked[0]["name"]


def rank_table(ranked, limit=None):
    lines = ["| candidate | rule 1 cells (of them unresolved) | rule 2 excess cells | score | vs deis | vs uni_pc_bh2 "
             "| vs dpmpp_2m | families over 5 % |", "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in ranked[:limit]:
        over = ", ".join(f"{f} {s:.0%}" for f, s in r["shares"].items() if s > MAX_DRIFT_SHARE) or "none"
        lines.append(f"| {r['name']} | {r['rule_1']} ({r['rule_1_unresolved']}) | {r['rule_2']} | {r['score']:.3f} | "
                     f"{r['vs_deis']:.3f} | {r['vs_uni_pc_bh2']:.3f} | {r['vs_dpmpp_2m']:.3f} | {over} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- what a user reads

def balanced_error(results, name, cells_by_family, scheduler, nfes):
    """The family-balanced geometric mean of ``name``'s relative error itself on one scheduler at ``nfes``."""
    per_family = []
    for family, models in cells_by_family.items():
        values = [results.get((family, m, scheduler, n, name)) for m in models for n in nfes]
        values = [v for v in values if v is not None and math.isfinite(v) and v > 0]
        if values:
            per_family.append(geomean(values))
    return geomean(per_family)


def best_scheduler(results, name, cells_by_family):
    """The scheduler on which ``name``'s error (family-balanced geometric mean over 8 to 30 NFE) is lowest, and that
    error on each scheduler."""
    errors = {s: balanced_error(results, name, cells_by_family, s, NFES) for s in SCHEDULERS}
    return min(SCHEDULERS, key=errors.get), errors


def steps_to_match(results, name, scheduler, target, cells_by_family):
    """The NFE at which ``name`` on ``scheduler`` first reaches the error ``target``, interpolated in log-log
    between measured NFEs; None beyond the last one measured."""
    points = [(n, balanced_error(results, name, cells_by_family, scheduler, [n])) for n in BUILTIN_NFES]
    points = [(n, e) for n, e in points if math.isfinite(e)]
    for (n0, e0), (n1, e1) in zip(points, points[1:]):
        if e0 <= target:
            return n0
        if e1 <= target:
            t = math.log(e0 / target) / math.log(e0 / e1)
            return math.exp(math.log(n0) + t * (math.log(n1) - math.log(n0)))
    return points[0][0] if points and points[0][1] <= target else None


def steps_saved(results, name, scheduler, cells_by_family, at=(10, 20)):
    """For each NFE in ``at``: the recommendation's error, and the best built-in (on its best scheduler) with the
    steps it needs to match it."""
    out = {}
    for nfe in at:
        target = balanced_error(results, name, cells_by_family, scheduler, [nfe])
        best = None
        for builtin, sched in itertools.product(BUILTINS, SCHEDULERS):
            steps = steps_to_match(results, builtin, sched, target, cells_by_family)
            if steps is not None and (best is None or steps < best[2]):
                best = (builtin, sched, steps)
        out[nfe] = (target, best)
    return out


# --------------------------------------------------------------------------- command line

def load(forms):
    results = {}
    for form in forms:
        if cache_path(form).exists():
            results.update(comfy_accuracy.load_cache(cache_path(form)))
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=("measure", "held-out", "report"))
    parser.add_argument("--form", choices=("sd", "flow"), default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    forms = [args.form] if args.form else list(TUNING)
    if args.what != "report":
        comfy_accuracy.comfy_support.import_pack()
        for form in forms:  # one cache a form, so that the two forms can run side by side
            results = load([form])

            def save(results, form=form):
                comfy_accuracy.save_cache(results, cache_path(form))

            if args.what == "measure":  # the references first, the rest of the built-ins last
                measure(results, ["deis", "euler"] + list(REFERENCES[1:]), TUNING[form], NFES, save=save)
                measure(results, list(CANDIDATES[form]), TUNING[form], NFES, save=save)
                measure(results, list(BUILTINS), TUNING[form], BUILTIN_NFES, save=save)
            else:
                chosen = choose(rank(results, CANDIDATES[form], TUNING[form]))
                measure(results, ["deis", "euler", "uni_pc_bh2", "dpmpp_2m", "ipndm", chosen], HELD_OUT[form],
                        NFES, save=save)
    if args.what == "report":
        publish(report(load(forms), forms), args.out)


#: What the search chose (the report recomputes it from the results) and the scheduler of the README's table, per
#: form: deis.CONFIGURATIONS["deis_corrected"] is this configuration (tests/test_one_story.py holds them together).
CHOSEN = {"sd": "sd-d1-s0.01-cpoff-cfg4", "flow": "flow-d1-s0.05-cp0.15-pa0.4-cfg4"}
TABLE = {"sd": "karras", "flow": "beta"}
#: deis_corrected's configuration in the release before, in this search's names: the row every table shows.
BEFORE = {"sd": "sd-d1-soff-cpoff-cfgoff", "flow": "flow-d2-soff-cp0.15-pa0.6-cfgoff"}
LEARNED = {"sd": ("digits",), "flow": ("flow-digits",)}
#: The usual settings of the targets: the schedulers of the learned-model and model-kind targets, and their steps.
KIND_SCHEDULERS, KIND_NFES = ("normal", "karras", "simple", "beta"), (20, 25, 30)


def everything(form):
    """Tuning and held-out cells of a form together."""
    return {**TUNING[form], **HELD_OUT[form]}


def ran_on(results, name, cells_by_family):
    """The part of ``cells_by_family`` where ``name`` has run."""
    return {f: tuple(m for m in models if (f, m, SCHEDULERS[0], NFES[0], name) in results)
            for f, models in cells_by_family.items()
            if any((f, m, SCHEDULERS[0], NFES[0], name) in results for m in models)}


def family_lines(results, name, cells_by_family):
    lines = ["| family | models | rule 1 cells (unresolved) | cells over 1.25x deis | worst vs deis | worst vs euler |",
             "|---|---|---:|---:|---:|---:|"]
    for family, models in cells_by_family.items():
        sub = {family: models}
        failed = rule_1_failures(results, name, sub)
        vs_deis = [ratio(results, c, name, "deis") for c in cells(sub)]
        vs_euler = [ratio(results, c, name, "euler") for c in cells(sub)]
        open_cells = sum(unresolved(results, c) for c, _, _ in failed)
        lines.append(f"| {family} | {', '.join(models)} | {len(failed)} ({open_cells})"
                     f" | {drift_shares(results, name, sub)[family]:.0%} | {max(v for v in vs_deis if v):.2f} | "
                     f"{max(v for v in vs_euler if v):.2f} |")
    return "\n".join(lines)


def learned_target(results, name, form):
    """Share of the learned models' cells at most deis's error, and at most the best built-in's."""
    sub = {f: TUNING[form][f] for f in LEARNED[form]}
    at_most_deis = at_most_best = total = 0
    for cell in cells(sub):
        mine = results.get(cell + (name,))
        builtins = [results.get(cell + (b,)) for b in BUILTINS]
        builtins = [b for b in builtins if b is not None and math.isfinite(b)]
        if mine is None or not builtins:
            continue
        total += 1
        at_most_deis += mine <= results[cell + ("deis",)]
        at_most_best += mine <= min(builtins)
    return at_most_deis / total, at_most_best / total, total


def worst_kind_cells(results, name, form):
    """Per model kind: the worst error over deis's at 20 to 30 NFE on the usual schedulers, every family."""
    worst = {}
    for family, models in everything(form).items():
        for model in models:
            for s in KIND_SCHEDULERS:
                for n in KIND_NFES:
                    r = ratio(results, (family, model, s, n), name, "deis")
                    if r is not None and r > worst.get(model, (0,))[0]:
                        worst[model] = (r, family, s, n)
    return worst


def pick_lines(results, name, form):
    guided = {f: m for f, m in TUNING[form].items() if f in GUIDED_FAMILIES}
    unguided = {f: m for f, m in TUNING[form].items() if f not in GUIDED_FAMILIES}
    lines = ["| scheduler | error, unguided | guided (CFG 6) | all |", "|---|---:|---:|---:|"]
    _, on_unguided = best_scheduler(results, name, unguided)
    _, on_guided = best_scheduler(results, name, guided)
    best, on_all = best_scheduler(results, name, TUNING[form])
    for s in SCHEDULERS:
        lines.append(f"| {s}{' (chosen)' if s == best else ''} | {on_unguided[s]:.3g} | {on_guided[s]:.3g} | "
                     f"{on_all[s]:.3g} |")
    return best, "\n".join(lines)


def report(results, forms):
    text = ["# The recommendation's configuration (benchmarks/recommendation.py)", "",
            "Written by `python -m benchmarks.recommendation report`; the rule and the candidates are in the module's "
            "docstring. Relative error at sigma = 0, every sampler through ComfyUI 0.3.64 on weightless test models, "
            f"{', '.join(SCHEDULERS)} at {', '.join(map(str, NFES))} NFE.", ""]
    for form in forms:
        ranked = rank(results, CANDIDATES[form], TUNING[form])
        chosen = ranked[0]["name"]
        assert chosen == CHOSEN[form], f"the results choose {chosen}; CHOSEN says {CHOSEN[form]}"
        before = next(r for r in ranked if r["name"] == BEFORE[form])
        text += [f"## {form}", "", f"Chosen: `{chosen}`: `{json.dumps(CANDIDATES[form][chosen])}`.", "",
                 f"Ranked by the rule ({len(ranked)} candidates; the first 12, and the release before's "
                 f"`{BEFORE[form]}`):", "", rank_table(ranked[:12] + ([before] if before not in ranked[:12] else [])),
                 "", "The chosen configuration on the tuning cells:", "",
                 family_lines(results, chosen, TUNING[form]), ""]
        held = ran_on(results, chosen, HELD_OUT[form])
        if held:
            text += ["Held out (families and model kinds the search never ran, run once it had chosen):", "",
                     family_lines(results, chosen, held), ""]
            every = ran_on(results, chosen, everything(form))
            text += [f"Family-balanced error, held out included: {balanced(results, chosen, every, 'deis'):.3f} of "
                     f"`deis`'s, {balanced(results, chosen, every, 'uni_pc_bh2'):.3f} of `uni_pc_bh2`'s, "
                     f"{balanced(results, chosen, every, 'dpmpp_2m'):.3f} of `dpmpp_2m`'s.", ""]
            worst = worst_kind_cells(results, chosen, form)
            text += ["Worst cell over `deis`'s error per model kind, 20 to 30 NFE on normal, karras, simple, beta: " +
                     "; ".join(f"{m} {r:.2f} ({f} {s} {n})" for m, (r, f, s, n) in sorted(worst.items())) + ".", ""]
        deis_share, best_share, total = learned_target(results, chosen, form)
        text += [f"Learned models ({', '.join(LEARNED[form])}, {total} cells): at most `deis`'s error in "
                 f"{deis_share:.0%}, at most the best built-in's in {best_share:.0%}.", ""]
        scheduler, lines = pick_lines(results, chosen, form)
        assert scheduler == TABLE[form], f"the results pick {scheduler}; TABLE says {TABLE[form]}"
        text += ["Its scheduler for 8 to 30 steps: the lowest error (family-balanced geometric mean of the relative "
                 "error at 8 to 30 NFE), unguided and guided families together:", "",
                 lines, ""]
        for nfe, (target, best) in steps_saved(results, chosen, scheduler, TUNING[form]).items():
            if best is None:
                text.append(f"- At {nfe} steps on {scheduler} (error {target:.3g}): no built-in matches it by 50.")
            else:
                text.append(f"- At {nfe} steps on {scheduler} (error {target:.3g}): the best built-in, `{best[0]}` on "
                            f"`{best[1]}`, needs about {best[2]:.0f} steps (interpolated between the step counts "
                            f"measured, in log error against log steps; guided and unguided families together).")
        text.append("")
    return "\n".join(text)


if __name__ == "__main__":
    main()
