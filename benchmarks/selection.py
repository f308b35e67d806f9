"""The selection protocol: which DEIS configuration may be recommended, written before the search.

A cell is one (family, model, scheduler, NFE); its value is a sampler's error at sigma = 0
(benchmarks.comfy_accuracy). The rules, in order:

1. Robustness first. A configuration fails a cell at 8 NFE or more when
   - its output is not finite, or
   - its error is above 1.25 times ComfyUI's ``deis``'s, or
   - its error is above 1.05 times ComfyUI's ``euler``'s, or
   - from 15 NFE up, its error is more than 10 % above its own error at any smaller NFE of 15
     or more on the same model and scheduler (more steps must not cost accuracy).
   It is eligible for a form (SD-style: the ``eps`` model; flow: ``flow`` and ``flux``) only if
   it fails no cell of that form in any unguided tuning family, and in the guided family fails
   at most 8 cells, none of them by more than 2 times ``deis``'s error or 1.5 times ``euler``'s.
   If no configuration of a form is eligible, the ranking falls back to the number of failed cells
   over all tuning families, guided included (fewest first), then to the score below.
2. Among the eligible, rank by the family-balanced score: for each tuning family, the geometric
   mean over its cells of the form (NFE 5 to 50) of the error over ``deis``'s, and the same over
   ``dpmpp_2m``'s; the score is the geometric mean of both over the families, each family
   weighing the same. Lower is better.
3. Each form is ranked on its own; the recommended sampler may depend only on what the pack
   knows before sampling (the form and the schedule), not on the family.
4. ``spectral`` is held out: no choice looks at it; it is reported once the choice is made.
5. A configuration enters the KSampler dropdown only as a form's winner, or as the eligible
   configuration with the lowest error under guidance; the dropdown keeps four entries or fewer.
6. The search is staged to fit the machine: every candidate is first measured at 8, 15, 30 and
   50 NFE only; per form, the 24 ranked first there by these same rules are measured on every
   cell and ranked again. Only that second ranking chooses.
"""

import math

from benchmarks.families import FAMILIES

NFES = (5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50)
SCHEDULERS = ("normal", "karras", "exponential", "sgm_uniform", "simple", "ddim_uniform", "beta",
              "linear_quadratic", "kl_optimal", "deis_time_quadratic")
HELD_OUT = ("spectral",)
GUIDED = ("guided",)
FORMS = {"sd": ("eps",), "flow": ("flow", "flux")}

CHECKED_FROM_NFE = 8
MAX_VS_DEIS = 1.25
MAX_VS_EULER = 1.05
GROWTH_FROM_NFE = 15
MAX_GROWTH = 1.10
GUIDED_MAX_FAILURES = 8
GUIDED_MAX_VS_DEIS = 2.0
GUIDED_MAX_VS_EULER = 1.5
SCREENING_NFES = (8, 15, 30, 50)
FINALISTS = 24


def form_of(model):
    return next(form for form, models in FORMS.items() if model in models)


def rows(families, form=None):
    """(family, model, scheduler) for every row of cells, optionally of one form only."""
    return [(f, m, s) for f in families for m in FAMILIES[f].models for s in SCHEDULERS
            if form is None or form_of(m) == form]


def cells(families, form=None):
    return [row + (n,) for row in rows(families, form) for n in NFES]


def failures(results, name, families, form=None):
    """``{cell: [reasons]}`` for every cell at ``CHECKED_FROM_NFE`` or more that ``name`` fails."""
    failed = {}
    for row in rows(families, form):
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


def worst_ratio(results, name, families, against, form=None):
    """The largest error ratio of ``name`` over ``against`` in the checked cells."""
    return max((r for c, r in cell_ratios(results, name, families, against, form) if c[3] >= CHECKED_FROM_NFE),
               default=float("nan"))


def guided_holds(results, name, family, form=None):
    """The guided family's rule: few failed cells, and none far off ``deis`` or ``euler``."""
    return (len(failures(results, name, [family], form)) <= GUIDED_MAX_FAILURES
            and worst_ratio(results, name, [family], "deis", form) <= GUIDED_MAX_VS_DEIS
            and worst_ratio(results, name, [family], "euler", form) <= GUIDED_MAX_VS_EULER)


def eligible(results, name, tuning, form):
    unguided = [f for f in tuning if f not in GUIDED]
    return (not failures(results, name, unguided, form)
            and all(guided_holds(results, name, f, form) for f in tuning if f in GUIDED))


def geomean(values):
    values = list(values)
    return math.exp(sum(map(math.log, values)) / len(values)) if values else float("nan")


def cell_ratios(results, name, families, against, form=None):
    """(cell, error of ``name`` over ``against``'s) where both ran and ``against``'s output is finite.

    A non-finite output of ``name`` gives an infinite ratio; ComfyUI's ``deis`` returns NaN on
    a few cells (Flux's shift, ``exponential``, 50 steps), which then have no ratio to it.
    """
    out = []
    for c in cells(families, form):
        mine, theirs = results.get(c + (name,)), results.get(c + (against,))
        if mine is None or theirs is None or not math.isfinite(theirs):
            continue
        out.append((c, mine / theirs if math.isfinite(mine) else math.inf))
    return out


def ratios(results, name, families, against, form=None):
    return [r for _, r in cell_ratios(results, name, families, against, form)]


def balanced(results, name, families, against, form=None):
    """The family-balanced geometric mean of the error ratio: each family's geomean weighs the same."""
    per_family = (ratios(results, name, [f], against, form) for f in families)
    return geomean(geomean(r) for r in per_family if r)


def score(results, name, tuning, form):
    """Rule 2: the geometric mean of the balanced ratios to ``deis`` and to ``dpmpp_2m``."""
    return math.sqrt(balanced(results, name, tuning, "deis", form) * balanced(results, name, tuning, "dpmpp_2m", form))


def rank(results, candidates, tuning, form):
    """Candidates of one form, eligible ones first, each group by score; with their failure counts."""
    unguided = [f for f in tuning if f not in GUIDED]
    table = []
    for name in candidates:
        table.append(dict(name=name, eligible=eligible(results, name, tuning, form),
                          failed=len(failures(results, name, unguided, form)),
                          guided_failed=sum(len(failures(results, name, [f], form)) for f in tuning if f in GUIDED),
                          score=score(results, name, tuning, form),
                          vs_deis=balanced(results, name, tuning, "deis", form),
                          vs_dpmpp_2m=balanced(results, name, tuning, "dpmpp_2m", form)))
    return sorted(table, key=lambda r: (not r["eligible"], 0 if r["eligible"] else r["failed"] + r["guided_failed"],
                                        r["score"]))
