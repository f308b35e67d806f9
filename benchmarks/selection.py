"""The selection protocol: which DEIS configuration may be recommended, written before the search.

This is the protocol of the release that adds the corrector (an Adams-Moulton correction, UniPC's
UniC, at no extra model call). It was written, with its design space (``CANDIDATES``), before any
candidate of that space ran on the benchmark.

A cell is one (family, model, scheduler, NFE); its value is a sampler's error at sigma = 0
(benchmarks.comfy_accuracy). ``BASELINE`` is the recommended configuration of the release before
(the KSampler entry ``deis_auto`` as it was), run in the same harness as every candidate.

1. A configuration fails a cell at 8 NFE or more when
   - its output is not finite, or
   - its error is above 1.25 times ComfyUI's ``deis``'s, or
   - its error is above 1.05 times ComfyUI's ``euler``'s, or
   - from 15 NFE up, its error is more than 10 % above its own error at any smaller NFE of 15
     or more on the same model and scheduler (more steps must not cost accuracy).
2. It is eligible for a form (SD-style: the VE models; flow: the flow models) only if, on the tuning
   cells of that form:
   a. it fails no more unguided cells than ``BASELINE``, and no more guided cells;
   b. (flow) its error is at most ``deis``'s in every cell of the ``beta`` scheduler at 20 to 50 NFE;
   c. (SD-style) on the v-prediction model with zero terminal SNR (sigma_max 4500) under CFG, at 10
      NFE on ``karras`` and ``deis_time_quadratic``, its error is at most 1.5 times ``euler``'s.
3. Among the eligible, rank by the family-balanced score: for each tuning family, the geometric
   mean over its cells of the form (NFE 5 to 50) of the error over ``deis``'s, over
   ``dpmpp_2m``'s and over ``uni_pc_bh2``'s; the score is the geometric mean of the three over the
   families, each family weighing the same. Lower is better.
4. The form's recommended configuration changes only to the first-ranked eligible candidate, and
   only if its family-balanced error over ``deis``'s is at most 0.85 times ``BASELINE``'s (15 %
   lower). Otherwise ``BASELINE`` stays for that form, and the search is recorded in docs/.
5. Each form is ranked on its own; the configuration may depend only on what the pack knows before
   sampling (the form and the schedule), not on the family.
6. Held out of every choice, and reported once it is made: the families ``HELD_OUT`` and the model
   kinds ``HELD_OUT_MODELS`` (they run on no candidate but the chosen ones).
7. The search is staged to fit the machine: every candidate is first measured at 8, 15, 30 and
   50 NFE only; per form, the 24 ranked first there by these same rules (eligibility against
   ``BASELINE``'s failures on the same cells) are measured on every cell and ranked again. Only that
   second ranking chooses.
8. Round 2 (written after round 1's screening, before any of its candidates ran; the rules above unchanged):
   round 1 failed more cells than ``BASELINE`` with every corrected candidate, at 8 and 15 NFE and on the
   schedules that end with steps several times longer than the ones before (flow ``normal`` and
   ``ddim_uniform``, ``linear_quadratic``). Round 2 takes the 12 corrected candidates of round 1 with the
   best screening score per form, and adds two safeguards on the correction, each where the plan is known
   before sampling: ``corrector_max_amplification`` (1.1 or 1.5: the correction's degree lowered until
   its weights amplify an error at most that many times as much as the constant-step Adams-Moulton
   formula of its degree; no correction where degree 1 does), and ``corrector_max_step`` (0.5 or 1: no
   correction of a step longer than that in log rho). Its candidates are screened and ranked with round
   1's by rules 1 to 7.
9. Round 3 (written after round 1's full ranking and before round 2's results; the rules above
   unchanged but for a mistake in rule 7 it mends): rule 2c looks at 10 NFE, which rule 7's screening
   cells left out, so in round 1 it could not act at screening. From round 3 on, screening also runs
   rule 2c's cells (the guided family on the zero-terminal-SNR model at 10 NFE, ``karras`` and
   ``deis_time_quadratic``). On those cells the predictor's amplification cap is what keeps a corrected
   data step near ``euler``'s error, which round 1's best corrected candidates lacked. Round 3: the
   corrected data integrand (SD-style; flow: data and v) at degree 1 and 2 in each variable, with the
   predictor's cap at 1.25 or 1.5, the step into 0 at degree 1 (and 2 at degree 2), and the correction
   plain, capped at 1.5 or on steps up to 1 in log rho.
10. The KSampler dropdown keeps four entries or fewer: the recommended sampler (``deis_auto``, one
   configuration per form), the stochastic one (``deis_sde``, chosen by benchmarks/stochastic.py), and
   where the corrector is not recommended in a form, an entry that offers it (``deis_corrected``, rule 11).
11. The corrected configuration offered beside the recommended one (written with rule 10, before the last
   ranking over every round): per form, among the corrected finalists that hold rules 2b and 2c, the one
   with the fewest failed tuning cells (unguided and guided together), then the best score; without such
   a finalist, the corrected finalist with the fewest failed cells.
12. (Written after the loss below, before anything of it ran.) The result caches of rounds 1 to 3 were lost
   with the machine after round 1's full ranking and rounds 2 and 3's screening, before the last ranking over
   every round ran. Round 1's full ranking is kept in docs/selection.md: no corrected candidate was eligible in
   either form. The last ranking is run again on the candidates of rounds 2 and 3 only (those made after
   round 1 showed every corrected candidate failing more cells than ``BASELINE``): screened again by rules 7
   and 9, the 24 best per form measured on every tuning cell and ranked with ``BASELINE``, and rules 4 and 11
   applied to that ranking.
13. Round 4 (written after rule 12's ranking, before any of its candidates ran; rules 1 to 7, 9 and 11
   unchanged). Rule 12's ranking chose ``BASELINE`` in both forms: every corrected finalist failed more
   unguided cells, and on the SD-style side the guided family on the zero-terminal-SNR model (rule 2c) blew up
   (up to 150 times ``euler``'s error at 8 to 15 NFE). Prototypes on the screening cells of the tuning
   families (no held-out family or model was run) traced three causes, each fixed by the schedule before
   sampling: a correction over a step that spans much of the way from noise to data (a step's angle in
   ``phi = arctan(sigma / alpha)``, which unlike its length in log rho is small at very high and very low
   noise); a step of higher degree over such a step under CFG; and the last correction carried in full into a
   step into 0 taken from high noise (``linear_quadratic``). Round 4 adds two options, ``corrector_max_angle``
   (no correction of a step wider than that angle) and ``max_step_angle`` (a step wider than that is taken at
   degree 0, uncorrected), and changes the step into 0 for every corrected configuration: it carries the last
   correction scaled by ``cos(phi)``, what the exact flow does to a change of x for unit-variance data (it
   carried it in full). Its candidates are the grid ``_round_4`` builds and rule 12's two corrected choices
   (rule 11), run again with the new step into 0. They are screened (rules 7 and 9); the 24 best per form are
   measured on every tuning cell and ranked with ``BASELINE`` (whose plan the change does not touch); rule 4
   chooses and rule 11 names the corrected entry, both from that ranking only.
"""

import math

from benchmarks.families import FAMILIES

NFES = (5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50)
SCHEDULERS = ("normal", "karras", "exponential", "sgm_uniform", "simple", "ddim_uniform", "beta",
              "linear_quadratic", "kl_optimal", "deis_time_quadratic")
HELD_OUT = ("spectral", "curve", "guided-spectral")
GUIDED = ("guided", "guided-spectral", "class-digits")
TUNING_MODELS = {"sd": ("eps", "zsnr"), "flow": ("flow", "flux")}
HELD_OUT_MODELS = {"sd": ("edm", "svd", "audio", "cascade", "x4", "cascade-b"), "flow": ("flow-aura", "flow-lumina")}
FORMS = {form: TUNING_MODELS[form] + HELD_OUT_MODELS[form] for form in TUNING_MODELS}
#: The release before's recommended configuration, by form, as Sampler DEIS (advanced) options.
BASELINE = "baseline"

CHECKED_FROM_NFE = 8
MAX_VS_DEIS = 1.25
MAX_VS_EULER = 1.05
GROWTH_FROM_NFE = 15
MAX_GROWTH = 1.10
BETA_NFES = (20, 25, 30, 40, 50)
HIGH_SIGMA_MODEL, HIGH_SIGMA_NFE, HIGH_SIGMA_SCHEDULERS, HIGH_SIGMA_VS_EULER = (
    "zsnr", 10, ("karras", "deis_time_quadratic"), 1.5)
REFERENCES = ("deis", "dpmpp_2m", "uni_pc_bh2")
SHIP_FACTOR = 0.85
SCREENING_NFES = (8, 15, 30, 50)
FINALISTS = 24


def candidate_name(options):
    """A short, unique name for a candidate's options."""
    time = {"model": "", "vp_linear": "vp"}.get(options.get("time"), "")
    parts = [f"{options['variant']}{time}{options['degree']}", options["integrand"],
             "c" if options["corrector"] else "p", f"f{options['final_degree']}"]
    if options.get("max_amplification"):
        parts.append(f"a{options['max_amplification']:g}")
    if not options["lower_order_final"]:
        parts.append("full")
    if options.get("corrector_max_amplification"):
        parts.append(f"ca{options['corrector_max_amplification']:g}")
    if options.get("corrector_max_step"):
        parts.append(f"cs{options['corrector_max_step']:g}")
    if options.get("corrector_max_angle"):
        parts.append(f"cp{options['corrector_max_angle']:g}")
    if options.get("max_step_angle"):
        parts.append(f"pa{options['max_step_angle']:g}")
    return "-".join(parts)


def _design_space():
    """The candidates of this release's search, per form: every combination of the interpolation variable,
    the integrand, the degree, the corrector, the degree of the step into sigma = 0, the amplification cap
    and (flow) lower_order_final. A degree of the step into 0 above the plan's degree would repeat a lower
    one, so it is left out."""
    space = {}
    variables = {"sd": (("tab", "model"), ("tab", "vp_linear"), ("logrhoab", None)),
                 "flow": (("tab", "model"), ("logrhoab", None))}
    for form, choices in variables.items():
        space[form] = {}
        for variant, time in choices:
            for integrand in ("eps", "v", "data"):
                for degree in (1, 2, 3):
                    for corrector in (False, True):
                        for final in range(min(degree, 2) + 1):
                            for cap in (None, 1.5):
                                for lof in ((True,) if form == "sd" else (True, False)):
                                    options = dict(variant=variant, degree=degree, integrand=integrand,
                                                   corrector=corrector, final_degree=final, max_amplification=cap,
                                                   lower_order_final=lof)
                                    if time:
                                        options["time"] = time
                                    space[form][candidate_name(options)] = options
    return space


CANDIDATES = _design_space()
ROUND_1 = {form: dict(space) for form, space in CANDIDATES.items()}
#: Round 2's base candidates (rule 8): round 1's 12 corrected candidates with the best screening score per form.
ROUND_2_BASES = {
    "sd": ("tab2-data-c-f2", "tabvp2-data-c-f2", "tabvp3-data-c-f2", "tab3-data-c-f2", "tabvp2-v-c-f2",
           "logrhoab1-v-c-f1", "tabvp3-data-c-f1", "tabvp2-data-c-f1", "tabvp1-data-c-f1", "logrhoab2-v-c-f2",
           "tab1-data-c-f1", "tab2-data-c-f1"),
    "flow": ("tab2-v-c-f2-a1.5", "tab2-v-c-f1-a1.5", "tab2-v-c-f2-a1.5-full", "tab2-v-c-f1-a1.5-full",
             "tab3-v-c-f2-a1.5", "tab3-v-c-f1-a1.5", "tab3-v-c-f2-a1.5-full", "tab2-v-c-f2", "tab3-v-c-f1-a1.5-full",
             "tab2-v-c-f1", "tab2-v-c-f0-a1.5", "tab1-v-c-f1-a1.5"),
}


def _round_2():
    space = {}
    for form, bases in ROUND_2_BASES.items():
        space[form] = {}
        for base in bases:
            for cap in (None, 1.1, 1.5):
                for step in (None, 0.5, 1.0):
                    if cap is None and step is None:
                        continue
                    options = dict(CANDIDATES[form][base], corrector_max_amplification=cap, corrector_max_step=step)
                    space[form][candidate_name(options)] = options
    return space


ROUND_2 = _round_2()


def _round_3():
    space = {}
    variables = {"sd": (("tab", "model"), ("tab", "vp_linear"), ("logrhoab", None)), "flow": (("tab", "model"),)}
    integrands = {"sd": ("data",), "flow": ("data", "v")}
    for form in variables:
        space[form] = {}
        for (variant, time), integrand, degree, cap, safeguard in (
                (vt, i, d, c, g) for vt in variables[form] for i in integrands[form] for d in (1, 2)
                for c in (1.25, 1.5) for g in (None, "ca", "cs")):
            for final in range(1, degree + 1):
                options = dict(variant=variant, degree=degree, integrand=integrand, corrector=True, final_degree=final,
                               max_amplification=cap, lower_order_final=True,
                               corrector_max_amplification=1.5 if safeguard == "ca" else None,
                               corrector_max_step=1.0 if safeguard == "cs" else None)
                if time:
                    options["time"] = time
                space[form][candidate_name(options)] = options
    return space


ROUND_3 = _round_3()
#: Rule 12's corrected choices (rule 11), per form: run again in round 4 with its step into 0.
RULE_12_CORRECTED = {"sd": "tabvp1-data-c-f1-ca1.5", "flow": "tab1-v-c-f1-a1.5"}


def _round_4():
    """Rule 13: the angle safeguards, on the integrands and variables rule 12's finalists favoured."""
    grids = {
        "sd": dict(choices=[("tab", "vp_linear", "data"), ("tab", "model", "data"), ("tab", "vp_linear", "v")],
                   caps=(None,), wide=(0.4, 0.6), corrector_angles=(None, 0.3)),
        "flow": dict(choices=[("tab", "model", "v"), ("tab", "model", "data")], caps=(1.25, 1.5),
                     wide=(None, 0.6), corrector_angles=(0.15, 0.2, 0.3)),
    }
    space = {}
    for form, grid in grids.items():
        space[form] = {}
        for (variant, time, integrand), degree, cap, wide, angle in (
                (c, d, a, w, p) for c in grid["choices"] for d in (1, 2) for a in grid["caps"] for w in grid["wide"]
                for p in grid["corrector_angles"]):
            if wide is not None and angle is not None and angle >= wide:
                continue  # the correction limit would repeat the wider one
            for final in range(1, degree + 1):
                if integrand != "data" and final == 2:
                    continue
                options = dict(variant=variant, degree=degree, integrand=integrand, corrector=True, final_degree=final,
                               max_amplification=cap, lower_order_final=True, corrector_max_angle=angle,
                               max_step_angle=wide)
                if time != "model":
                    options["time"] = time
                space[form][candidate_name(options)] = options
    for form, name in RULE_12_CORRECTED.items():
        space[form][name + "-r4"] = dict(CANDIDATES[form][name])
    return space


for _round in (ROUND_2, ROUND_3):
    for _form, _space in _round.items():
        CANDIDATES[_form].update(_space)
ROUND_4 = _round_4()
for _form, _space in ROUND_4.items():
    CANDIDATES[_form].update(_space)
ROUNDS = (ROUND_1, ROUND_2, ROUND_3, ROUND_4)
CANDIDATES_ALL = {**CANDIDATES["sd"], **CANDIDATES["flow"]}
#: Rule 9: the cells rule 2c looks at, screened from round 3 on (for every round's candidates).
SCREENING_EXTRA = tuple(("guided", HIGH_SIGMA_MODEL, s, HIGH_SIGMA_NFE) for s in HIGH_SIGMA_SCHEDULERS)


def form_of(model):
    return next(form for form, models in FORMS.items() if model in models)


def rows(families, form=None, models=None):
    """(family, model, scheduler) for every row of cells, optionally of one form, or of given models, only."""
    return [(f, m, s) for f in families for m in FAMILIES[f].models for s in SCHEDULERS
            if (form is None or form_of(m) == form) and (models is None or m in models)]


def cells(families, form=None, models=None):
    return [row + (n,) for row in rows(families, form, models) for n in NFES]


def tuning_families(form, families=None):
    """The families of the form's tuning cells (guided ones included)."""
    return [f for f in (families or FAMILIES) if f not in HELD_OUT
            and set(FAMILIES[f].models) & set(TUNING_MODELS[form])]


def failures(results, name, families, form=None, models=None):
    """``{cell: [reasons]}`` for every cell at ``CHECKED_FROM_NFE`` or more that ``name`` fails."""
    failed = {}
    for row in rows(families, form, models):
        errors = {n: results.get(row + (n, name)) for n in NFES}
        for n in NFES:
            error = errors[n]
            if n < CHECKED_FROM_NFE or error is None:
                continue
            reasons = []
            if not math.isfinite(error):
                reasons.append("not finite")
            else:
                for against, bound in (("deis", MAX_VS_DEIS), ("euler", MAX_VS_EULER)):
                    ratio = error / results[row + (n, against)]  # NaN where the built-in is: no bound there
                    if ratio > bound:
                        reasons.append(f"{ratio:.2f}x {against}")
                earlier = [errors[k] for k in NFES if GROWTH_FROM_NFE <= k < n and errors[k] is not None]
                if n >= GROWTH_FROM_NFE and earlier and error > MAX_GROWTH * min(earlier):
                    reasons.append(f"{error / min(earlier):.2f}x its error at fewer steps")
            if reasons:
                failed[row + (n,)] = reasons
    return failed


def failed_counts(results, name, form, families=None):
    """(unguided, guided) failed tuning cells of ``name`` in ``form``."""
    models = TUNING_MODELS[form]
    tuning = tuning_families(form, families)
    unguided = sum(len(failures(results, name, [f], form, models)) for f in tuning if f not in GUIDED)
    guided = sum(len(failures(results, name, [f], form, models)) for f in tuning if f in GUIDED)
    return unguided, guided


def beta_holds(results, name, form, families=None):
    """Rule 2b: at most deis's error in every tuning cell of ``beta`` at 20 to 50 NFE (flow)."""
    if form != "flow":
        return True
    for row in rows(tuning_families(form, families), form, TUNING_MODELS[form]):
        if row[2] != "beta":
            continue
        for n in BETA_NFES:
            mine, theirs = results.get(row + (n, name)), results.get(row + (n, "deis"))
            if mine is None or theirs is None or not math.isfinite(theirs):
                continue
            if not mine <= theirs:
                return False
    return True


def high_sigma_holds(results, name, form, families=None):
    """Rule 2c: under CFG on the zero-terminal-SNR model, at most 1.5 times euler's error at 10 NFE."""
    if form != "sd":
        return True
    for family in tuning_families(form, families):
        if family not in GUIDED or HIGH_SIGMA_MODEL not in FAMILIES[family].models:
            continue
        for scheduler in HIGH_SIGMA_SCHEDULERS:
            cell = (family, HIGH_SIGMA_MODEL, scheduler, HIGH_SIGMA_NFE)
            mine, euler = results.get(cell + (name,)), results.get(cell + ("euler",))
            if mine is None or euler is None:
                continue
            if not mine <= HIGH_SIGMA_VS_EULER * euler:
                return False
    return True


def eligible(results, name, form, families=None):
    """Rule 2, against ``BASELINE``'s failures on the same cells."""
    mine, baseline = failed_counts(results, name, form, families), failed_counts(results, BASELINE, form, families)
    return (mine[0] <= baseline[0] and mine[1] <= baseline[1] and beta_holds(results, name, form, families)
            and high_sigma_holds(results, name, form, families))


def geomean(values):
    values = list(values)
    return math.exp(sum(map(math.log, values)) / len(values)) if values else float("nan")


def cell_ratios(results, name, families, against, form=None, models=None):
    """(cell, error of ``name`` over ``against``'s) where both ran and ``against``'s output is finite.

    A non-finite output of ``name`` gives an infinite ratio; ComfyUI's ``deis`` returns NaN on
    a few cells (Flux's shift, ``exponential``, 50 steps), which then have no ratio to it.
    """
    out = []
    for c in cells(families, form, models):
        mine, theirs = results.get(c + (name,)), results.get(c + (against,))
        if mine is None or theirs is None or not math.isfinite(theirs):
            continue
        out.append((c, mine / theirs if math.isfinite(mine) else math.inf))
    return out


def ratios(results, name, families, against, form=None, models=None):
    return [r for _, r in cell_ratios(results, name, families, against, form, models)]


def worst_ratio(results, name, families, against, form=None, models=None):
    """The largest error ratio of ``name`` over ``against`` in the checked cells."""
    return max((r for c, r in cell_ratios(results, name, families, against, form, models)
                if c[3] >= CHECKED_FROM_NFE), default=float("nan"))


def balanced(results, name, families, against, form=None, models=None):
    """The family-balanced geometric mean of the error ratio: each family's geomean weighs the same."""
    per_family = (ratios(results, name, [f], against, form, models) for f in families)
    return geomean(geomean(r) for r in per_family if r)


def score(results, name, form, families=None):
    """Rule 3: the geometric mean of the tuning cells' balanced ratios to deis, dpmpp_2m and uni_pc_bh2."""
    tuning, models = tuning_families(form, families), TUNING_MODELS[form]
    return geomean(balanced(results, name, tuning, against, form, models) for against in REFERENCES)


def rank(results, candidates, form, families=None):
    """Candidates of one form, eligible ones first, each group by score; with their failure counts."""
    tuning, models = tuning_families(form, families), TUNING_MODELS[form]
    table = []
    for name in candidates:
        unguided, guided = failed_counts(results, name, form, families)
        table.append(dict(name=name, eligible=eligible(results, name, form, families), failed=unguided,
                          guided_failed=guided, beta=beta_holds(results, name, form, families),
                          high_sigma=high_sigma_holds(results, name, form, families),
                          score=score(results, name, form, families),
                          **{f"vs_{a}": balanced(results, name, tuning, a, form, models) for a in REFERENCES}))
    return sorted(table, key=lambda r: (not r["eligible"], r["score"]))


def choose_corrected(ranked):
    """Rule 11: the corrected configuration offered where the corrector is not recommended."""
    corrected = [r for r in ranked if r["name"] != BASELINE and r["name"] in CANDIDATES_ALL
                 and CANDIDATES_ALL[r["name"]]["corrector"]]
    holding = [r for r in corrected if r["beta"] and r["high_sigma"]] or corrected
    return min(holding, key=lambda r: (r["failed"] + r["guided_failed"], r["score"]))["name"] if holding else None


def choose(ranked, results, form, families=None):
    """Rule 4: the first eligible candidate if it is 15 % better than ``BASELINE`` against deis, else ``BASELINE``."""
    tuning, models = tuning_families(form, families), TUNING_MODELS[form]
    baseline = balanced(results, BASELINE, tuning, "deis", form, models)
    for row in ranked:
        if row["eligible"] and row["name"] != BASELINE:
            return row["name"] if row["vs_deis"] <= SHIP_FACTOR * baseline else BASELINE
    return BASELINE
