"""The ComfyUI nodes' logic, without ComfyUI: the pack loaded by path as ComfyUI loads it (tests/pack_loader.py).

What a user sees: widgets whose ranges and tooltips come from the core's declaration (deis.OPTIONS), inputs that
may be linked (ComfyUI validates a linked input as None), one message naming every problem of a setting, inputs
that the chosen option does not use ignored, and help pages that list each input as its tooltip says.
"""

import itertools
import logging
import re

import numpy as np
import pytest
import torch

from help_pages import pages
from pack_loader import REPO as PACK_ROOT, load_pack

PACK = load_pack()
SAMPLERS = PACK.nodes.samplers
CORE = PACK.deis
NODES = PACK.nodes.NODE_CLASS_MAPPINGS


def advanced_defaults():
    inputs = PACK.nodes.help.node_inputs(SAMPLERS.SamplerDEISAdvanced)
    return {name: spec[1]["default"] for name, spec in inputs.items()}


# --------------------------------------------------------------------------- linked inputs

def test_every_input_may_be_linked():
    """ComfyUI hands VALIDATE_INPUTS None for a linked input, and repeats its refusal once per input it takes. Only
    Sampler DEIS has one, for its method alone (an earlier release's value), and it takes None; the other nodes
    leave the checks of single inputs to ComfyUI (which skips links) and check settings when they run."""
    import inspect

    validating = {name: node.VALIDATE_INPUTS for name, node in NODES.items() if hasattr(node, "VALIDATE_INPUTS")}
    assert list(validating) == ["SamplerDEIS"]
    assert list(inspect.signature(validating["SamplerDEIS"]).parameters) == ["method"]
    assert validating["SamplerDEIS"](method=None) is True


@pytest.mark.parametrize("earlier, now", [("auto", "uncorrected"), ("corrected", "recommended")])
def test_sampler_deis_refuses_an_earlier_releases_method_once_naming_the_method_that_replaced_it(earlier, now):
    """0.1.0's variant auto is deis_auto, method uncorrected now; 0.2.0's method corrected is the recommendation."""
    message = SAMPLERS.SamplerDEIS.VALIDATE_INPUTS(earlier)
    assert message.startswith(f"Sampler DEIS: method '{earlier}' is from a Sampler DEIS saved by an earlier release")
    assert message.endswith(f"it is method '{now}' now: set method to {now}")
    assert SAMPLERS.SamplerDEIS.VALIDATE_INPUTS(now) is True


def test_the_guidance_scale_is_read_from_comfyuis_guider_and_nothing_else():
    """KSampler's and SamplerCustom's CFGGuider carries ``cfg``: the pack's samplers read it (corrector_max_cfg);
    a guider without one (BasicGuider) or a non-number gives None, an unknown scale."""
    class Guider:
        cfg = 6.5

    class Wrapped:  # ComfyUI's KSamplerX0Inpaint: the guider is its inner_model
        inner_model = Guider()

    read = PACK.nodes.model_info.guidance_of
    assert read(Wrapped()) == 6.5
    for scale in (np.float32(6.5), torch.tensor(6.5)):
        Guider.cfg = scale
        assert read(Wrapped()) == 6.5
    Guider.cfg = True
    assert read(Wrapped()) is None
    del Guider.cfg
    assert read(Wrapped()) is None and read(object()) is None


def test_a_dual_cfg_guider_gives_its_larger_scale():
    """DualCFGGuider inherits CFGGuider's cfg of 1 and guides with cfg1 and cfg2: the larger is the scale."""
    class DualGuider:
        cfg, cfg1, cfg2 = 1.0, 3.0, 8.0

    class Wrapped:
        inner_model = DualGuider()

    assert PACK.nodes.model_info.guidance_of(Wrapped()) == 8.0


def test_a_sampler_deis_advanced_saved_before_its_added_inputs_runs_without_them():
    """A 0.2.0 node (an API prompt without corrector_data_scale and corrector_max_cfg) runs with both off, as then;
    a new node opens on them set as deis_corrected has them."""
    saved = {name: value for name, value in advanced_defaults().items() if name not in SAMPLERS.ADDED_INPUTS}
    config = SAMPLERS.advanced_config(**saved)
    assert config.corrector_data_scale is None and config.corrector_max_cfg is None
    assert set(SAMPLERS.SamplerDEISAdvanced.INPUT_TYPES()["optional"]) == set(SAMPLERS.ADDED_INPUTS)


# --------------------------------------------------------------------------- one message, every problem

def test_sampler_deis_advanced_names_every_problem_in_one_message():
    widgets = dict(advanced_defaults(), degree=3, eta=0.5, integrand="v", final_degree=2)
    with pytest.raises(ValueError) as refused:
        SAMPLERS.advanced_config(**widgets)
    message = str(refused.value)
    assert message.startswith("Sampler DEIS (advanced): 4 problems:\n(1) ")
    for words in ("degree 3 with the corrector", "turn the corrector off", "eta 0.5 needs integrand data",
                  "set integrand to data", "final_degree 2 with eta 0.5", "degree 3 is unstable with eta above 0"):
        assert words in message, words
    assert message.count("\n(") == 4 and "True" not in message and "False" not in message  # the UI says true/false


def test_a_single_problem_reads_as_one_sentence():
    with pytest.raises(ValueError, match=r"^Sampler DEIS \(advanced\): degree 3 with the corrector"):
        SAMPLERS.advanced_config(**dict(advanced_defaults(), degree=3))


#: Values a widget can hold (ComfyUI keeps each within its min and max) and one beyond, as a link may bring.
GRID = dict(variant=list(SAMPLERS.ADVANCED_VARIANTS), degree=[1, 2, 3], integrand=["eps", "v", "data"],
            corrector=[False, True], final_degree=[0, 1, 2], eta=[0.0, 0.5])


def test_every_widget_combination_runs_or_is_refused_with_the_nodes_name():
    accepted = 0
    for values in itertools.product(*GRID.values()):
        widgets = dict(advanced_defaults(), **dict(zip(GRID, values)))
        try:
            config = SAMPLERS.advanced_config(**widgets)
        except ValueError as error:
            assert str(error).startswith("Sampler DEIS (advanced): "), error
            continue
        accepted += 1
        assert isinstance(config, CORE.Config)
        assert config.corrector == widgets["corrector"] and config.eta == widgets["eta"]
        assert config.step_into_zero_degree == min(widgets["final_degree"], widgets["degree"])
    assert 0 < accepted < len(list(itertools.product(*GRID.values())))


def test_sampler_deis_refuses_eta_where_the_method_cannot_carry_it():
    for method in SAMPLERS.METHODS:
        if method in SAMPLERS.METHODS_WITH_ETA:
            assert SAMPLERS.method_sampler(method, 0.5).deis_pack
        else:
            refusal = f'Sampler DEIS: eta 0.5 adds noise, which method "{method}"'
            with pytest.raises(ValueError, match=re.escape(refusal)):
                SAMPLERS.method_sampler(method, 0.5)
        assert SAMPLERS.method_sampler(method, 0.0).deis_pack
    with pytest.raises(ValueError, match="no better than ComfyUI's euler_ancestral, up to 1.37 times further"):
        SAMPLERS.method_sampler("DDIM", 1.0)


@pytest.mark.parametrize("method", ["recommended", "DDIM"])
@pytest.mark.parametrize("eta, words", [(1.5, "eta 1.5 is outside its range"), (-0.5, "eta -0.5 is outside its range"),
                                        ("0.5", "eta must be a number from 0 to 1; got '0.5'")])
def test_a_linked_eta_out_of_range_is_refused_when_the_node_runs(method, eta, words):
    with pytest.raises(ValueError, match=re.escape(f"Sampler DEIS: {words}")):
        SAMPLERS.method_sampler(method, eta)


# --------------------------------------------------------------------------- inputs the choice does not use

def acts(widgets):
    """What Sampler DEIS (advanced)'s widgets do: the plan key of their configuration, tAB's time as it sets it."""
    config = SAMPLERS.advanced_config(**widgets)
    return config.plan_key(config.time_map if config.variant == "tab" else None)


def test_an_input_the_chosen_option_does_not_use_is_ignored():
    assert acts(dict(advanced_defaults(), s_noise=1.7)) == acts(advanced_defaults())  # eta is 0
    off = dict(advanced_defaults(), corrector=False)
    assert acts(dict(off, corrector_max_angle=0.3)) == acts(off)
    assert acts(dict(off, corrector_max_angle=0.3, corrector=True)) != acts(dict(off, corrector=True))
    assert acts(dict(off, corrector_data_scale=0.2)) == acts(off)
    assert acts(dict(off, corrector_data_scale=0.2, corrector=True)) != acts(dict(off, corrector=True))
    options = SAMPLERS.scheduler_options("log_rho_uniform", kappa=3.0, power=9.0)
    assert options == SAMPLERS.scheduler_options("log_rho_uniform", kappa=2.0, power=7.0)
    assert SAMPLERS.scheduler_options("rho_polynomial", kappa=3.0, power=9.0)["power"] == 9.0


def test_a_shape_out_of_range_is_refused_only_where_the_schedule_uses_it():
    with pytest.raises(ValueError, match=r"^DEIS Scheduler: kappa must be from 0.5 to 8; got 9.0"):
        SAMPLERS.scheduler_options("deis_time_quadratic", kappa=9.0, power=7.0)
    SAMPLERS.scheduler_options("log_rho_uniform", kappa=9.0, power=7.0)


# --------------------------------------------------------------------------- one declaration

def test_sampler_deis_advanced_opens_on_deis_correcteds_sd_style_configuration():
    assert SAMPLERS.advanced_config(**advanced_defaults()) == CORE.CONFIGURATIONS["deis_corrected"]["ve"]


def test_widget_ranges_and_tooltips_come_from_the_declaration():
    inputs = PACK.nodes.help.node_inputs(SAMPLERS.SamplerDEISAdvanced)
    for name in SAMPLERS.ADVANCED_WIDGETS[1:]:
        spec, declared = inputs[name][1], CORE.OPTIONS[name].metadata
        meaning = declared["meaning"]
        assert meaning[0].upper() + meaning[1:] in spec["tooltip"], name
        if "min" in spec:
            assert spec["min"] == (declared["off"] if declared["off"] is not None else
                                   max(declared["low"], 1 if name == "degree" else declared["low"])), name
            assert spec["max"] <= declared["high"] + 1e-9, name
        if declared["choices"] is not None:
            assert inputs[name][0] == list(declared["choices"]), name


def test_a_changed_declaration_changes_the_widget(monkeypatch):
    """The mutation the test above must catch: a meaning changed in the declaration alone reaches the tooltip."""
    field = CORE.OPTIONS["final_degree"]
    monkeypatch.setattr(field, "metadata", {**field.metadata, "meaning": "changed in one place"})
    tooltip = PACK.nodes.help.node_inputs(SAMPLERS.SamplerDEISAdvanced)["final_degree"][1]["tooltip"]
    assert "Changed in one place." in tooltip


@pytest.mark.parametrize("path, expected", list(pages()), ids=lambda v: getattr(v, "name", "text"))
def test_help_pages_list_each_input_as_its_tooltip_says(path, expected):
    """The pages' inputs are the tooltips (written by tests/help_pages.py); a stale page fails here."""
    assert path.read_text() == expected, f"{path.name} is stale: run bash dev.sh python tests/help_pages.py"


def test_every_input_has_a_tooltip_and_the_help_page_shows_its_default():
    for name, node in NODES.items():
        page = (PACK_ROOT / "web" / "docs" / f"{name}.md").read_text()
        for input_name, spec in PACK.nodes.help.node_inputs(node).items():
            assert len(spec) > 1 and spec[1].get("tooltip"), (name, input_name)
            assert f"### {input_name}{PACK.nodes.help.default_text(spec)}\n" in page, (name, input_name)
            if "default" in spec[1] and spec[0] != "BOOLEAN":
                assert f"({spec[1]['default']})" in page, (name, input_name)


# --------------------------------------------------------------------------- the model's form

class NoModelSampling:
    inner_model = object()


def test_a_model_whose_form_cannot_be_read_is_sampled_as_ve_with_one_warning(caplog):
    info = PACK.nodes.model_info
    info._warned.discard(("no model_sampling", "NoModelSampling"))
    with caplog.at_level(logging.WARNING, logger="comfyui-deis"):
        assert info.model_options(NoModelSampling()) == dict(parameterisation="ve")
        assert info.model_options(NoModelSampling()) == dict(parameterisation="ve")
    warnings = [r.getMessage() for r in caplog.records if "no model_sampling" in r.getMessage()]
    assert len(warnings) == 1 and "NoModelSampling" in warnings[0] and "VE form" in warnings[0]


def test_the_entries_run_without_comfyui():
    """The KSampler entries' functions sample a k-diffusion denoiser (the VE form, with the warning above)."""
    sigmas = torch.tensor([14.6, 5.0, 1.0, 0.2, 0.0], dtype=torch.float64)
    x = torch.randn(1, 1, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 14.6

    class Denoiser:
        inner_model = object()

        def __call__(self, x, sigma, **extra_args):
            return x / (1 + sigma.reshape(-1, 1, 1, 1) ** 2)

    for name, function in SAMPLERS.SAMPLER_FUNCTIONS.items():
        out = function(Denoiser(), x, sigmas, disable=True, extra_args={"seed": 0})
        assert torch.isfinite(out).all(), name
