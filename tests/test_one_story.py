"""One story everywhere: the README's table, the entries' descriptions, the help pages, the tooltips
and the example workflows agree on what each sampler is and when to use it."""

import json
import re
from pathlib import Path

import pytest

from pack_loader import load_pack
from test_webui_entry import load_script

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()
HELP_PAGES = sorted((REPO / "web" / "docs").glob("*.md"))
DOCS = sorted((REPO / "docs").glob("*.md"))
WORKFLOWS = sorted((REPO / "example_workflows").glob("*.json"))
#: DEIS Scheduler's schedules that are one of KSampler's schedulers on an SD-style model.
SAME_SCHEDULE = {"log_rho_uniform": "exponential", "rho_polynomial": "karras",
                 "deis_time_quadratic": "deis_time_quadratic"}
#: Words that say what method a sampler is; a page that describes an entry with one its own description
#: lacks describes it a second way.
METHOD_WORDS = ("tAB1", "tAB2", "tAB3", "log-rho", "logrhoab", "rhoAB", "iPNDM", "Runge-Kutta", "predicted noise",
                "v-prediction", "denoised", "dpmpp_2m_sde_heun")


def pack():
    return load_pack()


def markdown_table(text, header_start):
    """The rows (lists of cells) of the first markdown table whose header row starts with ``header_start``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def code(cell):
    return re.findall(r"`([^`]+)`", cell)


def number_range(cell):
    """"8 to 12" -> (8, 12); "1" -> (1, 1); "any" -> (0, inf)."""
    if cell == "any":
        return 0.0, float("inf")
    numbers = [float(n) for n in re.findall(r"\d+(?:\.\d+)?", cell)]
    return numbers[0], numbers[-1]


def pick_table():
    rows = markdown_table(README, "| model | steps | CFG | sampler | scheduler |")
    assert len(rows) >= 3
    return [dict(model=r[0], steps=number_range(r[1]), cfg=number_range(r[2]), sampler=code(r[3])[0],
                 schedulers=code(r[4])) for r in rows]


def entries_table():
    return {code(r[0])[0]: r[1] for r in markdown_table(README, "| entry | what it is |")}


def sentences(text):
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # code says how to call a sampler, not what it is
    return re.split(r"(?<=[.!?])\s+|\n\s*\n|\n\s*[-*] ", text)


def describing(text, name):
    """Sentences that say what ``name`` is (``name`` is / : / followed by a method word), not comparisons."""
    out = []
    for sentence in sentences(text):
        if name not in sentence or re.search(r"\b(before|instead|previous|used to)\b", sentence):
            continue
        if re.search(rf"`?{name}`?\*{{0,2}}(\s+is\b|:|\s*\()", sentence):
            out.append(" ".join(sentence.split()))
    return out


def test_every_entry_is_described_the_same_way_in_the_readme_the_help_page_and_the_code():
    descriptions = pack().nodes.samplers.ENTRY_DESCRIPTIONS
    assert set(descriptions) == set(pack().deis.ENTRIES)
    assert {name: text for name, text in entries_table().items() if name in descriptions} == descriptions
    help_page = (REPO / "web" / "docs" / "SamplerDEIS.md").read_text()
    for name in descriptions:
        assert f"**{name}**" in help_page, name  # Sampler DEIS's help says which method is which entry


@pytest.mark.parametrize("name", ["deis_auto", "deis_corrected", "deis_sde"])
def test_no_page_describes_an_entry_a_second_way(name):
    canonical = pack().nodes.samplers.ENTRY_DESCRIPTIONS[name]
    allowed = {w for w in METHOD_WORDS if w in canonical}
    texts = {"README.md": README, **{p.name: p.read_text() for p in HELP_PAGES + DOCS}}
    tooltips = pack().nodes.samplers.SamplerDEIS.INPUT_TYPES()["required"]
    texts["tooltips"] = "\n\n".join(options[1]["tooltip"] for options in tooltips.values())
    checked = 0
    for source, text in texts.items():
        for sentence in describing(text, name):
            checked += 1
            extra = [w for w in METHOD_WORDS if w in sentence and w not in allowed]
            assert not extra, (source, sentence, extra)
    assert checked >= 1  # the README at least: the check ran on something


def test_the_checks_can_tell_a_second_description():
    stale = "`deis_sde` is log-rho AB1 on the denoised image (ComfyUI's dpmpp_2m_sde_heun)."
    assert describing(stale, "deis_sde") and "log-rho" in describing(stale, "deis_sde")[0]
    assert not describing("The release before used log-rho AB1 for `deis_sde`.", "deis_sde")


#: Names of earlier releases that users met: an entry and two Python options.
REMOVED = ("deis_data", "corrector_max_step", "corrector_max_amplification")


@pytest.mark.parametrize("name", REMOVED)
def test_removed_names_are_mentioned_only_in_the_changelog_as_removed(name):
    changelog = (REPO / "CHANGELOG.md").read_text()
    assert any(name in s and re.search(r"\b(Removed|Gone)\b", s, re.I) for s in changelog.split("\n- "))
    for path in [REPO / "README.md", *HELP_PAGES, *[d for d in DOCS if d.name != "selection.md"], *WORKFLOWS,
                 REPO / "scripts" / "deis_webui.py"]:  # docs/selection.md is the search's record
        assert name not in path.read_text(), path.name


def test_the_webui_labels_the_same_entries_as_comfyui_in_the_same_order():
    """The WebUI registers the core's entries (no copy of their configurations); it only gives each a label."""
    module = load_script("deis_webui_story")
    assert list(module.LABELS) == list(pack().deis.ENTRIES) == list(pack().nodes.samplers.SAMPLER_FUNCTIONS)
    assert len(set(module.LABELS.values())) == len(module.LABELS)


def workflow_settings(path):
    """(sampler, scheduler, steps, cfg) the workflow runs, in KSampler's names."""
    nodes = {n["type"]: n for n in json.loads(path.read_text())["nodes"]}
    if "KSampler" in nodes:
        seed, control, steps, cfg, sampler, scheduler, denoise = nodes["KSampler"]["widgets_values"]
        return sampler, scheduler, steps, cfg
    method, eta = nodes["SamplerDEIS"]["widgets_values"]
    assert eta == 0.0
    entry = {"recommended": "deis_corrected", "uncorrected": "deis_auto"}[method]  # the KSampler entry it is
    steps, denoise, schedule = nodes["DEISScheduler"]["widgets_values"][:3]
    return entry, SAME_SCHEDULE[schedule], steps, nodes["CFGGuider"]["widgets_values"][0]


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_each_workflow_runs_a_row_of_the_readme_table(path):
    sampler, scheduler, steps, cfg = workflow_settings(path)
    rows = [r for r in pick_table() if r["model"].startswith("SD1.x")]  # the workflows load SD1.5
    matching = [r for r in rows if r["sampler"] == sampler and scheduler in r["schedulers"]
                and r["steps"][0] <= steps <= r["steps"][1] and r["cfg"][0] <= cfg <= r["cfg"][1]]
    assert matching, (path.name, sampler, scheduler, steps, cfg)
    assert f"CFG {cfg:g}" in README  # the README says which CFG the workflows use


def test_a_workflow_that_contradicts_the_table_is_caught(tmp_path):
    (ksampler,) = [p for p in WORKFLOWS if '"KSampler"' in p.read_text()]
    workflow = json.loads(ksampler.read_text())
    for node in workflow["nodes"]:
        if node["type"] == "KSampler":
            node["widgets_values"][5] = "normal"
    path = tmp_path / "contradiction.json"
    path.write_text(json.dumps(workflow))
    with pytest.raises(AssertionError):
        test_each_workflow_runs_a_row_of_the_readme_table(path)


def test_each_variant_is_described_once_the_same_way_in_the_tooltip_and_the_help_page():
    samplers = pack().nodes.samplers
    tooltip = pack().nodes.help.node_inputs(samplers.SamplerDEISAdvanced)["variant"][1]["tooltip"]
    help_page = (REPO / "web" / "docs" / "SamplerDEISAdvanced.md").read_text()
    for name, text in samplers.VARIANT_TEXT.items():
        assert f"{name}: {text}." in tooltip, name
        assert f"{name}: {text}." in help_page, name


def test_deis_corrected_is_the_configuration_the_recommendation_search_chose():
    """The choice the committed results record (benchmarks/results/recommendation.md; its report asserts that CHOSEN is
    what the results choose) is the entry's configuration in each form: the README's numbers are the shipped
    sampler's."""
    from benchmarks.recommendation import CANDIDATES, CHOSEN

    core = pack().deis
    results = (REPO / "benchmarks" / "results" / "recommendation.md").read_text()
    assert re.findall(r"^Chosen: `([^`]+)`", results, re.M) == [CHOSEN["sd"], CHOSEN["flow"]]
    for form, name in (("sd", "ve"), ("flow", "flow")):
        options = dict(CANDIDATES[form][CHOSEN[form]])
        time = options.pop("time", "model")
        own_time = core.VPLinearTime() if time == "vp_linear" else core.FlowTime() if form == "flow" else None
        assert core.Config(**options, time_map=own_time) == core.CONFIGURATIONS["deis_corrected"][name]
