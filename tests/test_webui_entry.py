"""scripts/deis_webui.py against stand-ins for the WebUI's sampler modules, with decoy packages on sys.path.

The real Forge test is tests/test_forge.py (FORGE_PATH); this one needs nothing installed.
"""

import importlib.util
import sys
import types
from collections import namedtuple

import pytest
import torch

from benchmarks import schedules
from benchmarks.problems import MIXTURE, relative_error
from deis import DiscreteVPTime, FlowTime, sample_deis

SCRIPT = __import__("pathlib").Path(__file__).resolve().parent.parent / "scripts" / "deis_webui.py"
LABELS = ["DEIS corrected", "DEIS auto", "DEIS SDE"]


def fake_webui(forge=True):
    """Stand-ins for modules.sd_samplers, sd_samplers_common and sd_samplers_kdiffusion."""
    SamplerData = namedtuple("SamplerData", "name constructor aliases options")
    common = types.ModuleType("modules.sd_samplers_common")
    common.SamplerData = SamplerData

    kdiffusion = types.ModuleType("modules.sd_samplers_kdiffusion")

    kdiffusion.sampler_extra_params = {"sample_dpmpp_2m_sde": ["s_noise"]}

    class KDiffusionSampler:
        """As the WebUI's: extra parameters looked up by the function's name, which a function passed in lacks."""

        def __init__(self, funcname, sd_model):
            self.func, self.sd_model = funcname, sd_model
            self.extra_params = kdiffusion.sampler_extra_params.get(funcname, [])

    kdiffusion.KDiffusionSampler = KDiffusionSampler

    samplers = types.ModuleType("modules.sd_samplers")
    samplers.all_samplers = [SamplerData("DEIS", None, ["deis"], {}), SamplerData("Euler", None, ["k_euler"], {})]
    samplers.all_samplers_map = {x.name: x for x in samplers.all_samplers}
    samplers.set_samplers_calls = 0

    def set_samplers():
        samplers.set_samplers_calls += 1

    samplers.set_samplers = set_samplers
    if forge:
        def add_sampler(sampler):
            if sampler.name not in [x.name for x in samplers.all_samplers]:
                samplers.all_samplers.append(sampler)
                samplers.all_samplers_map = {x.name: x for x in samplers.all_samplers}
                set_samplers()

        samplers.add_sampler = add_sampler
    package = types.ModuleType("modules")
    package.__path__ = []
    package.sd_samplers, package.sd_samplers_common, package.sd_samplers_kdiffusion = samplers, common, kdiffusion
    return {"modules": package, "modules.sd_samplers": samplers, "modules.sd_samplers_common": common,
            "modules.sd_samplers_kdiffusion": kdiffusion}


@pytest.fixture
def webui(tmp_path, monkeypatch):
    """A WebUI process: fake sampler modules, and decoy `deis` and `nodes` packages first on sys.path."""
    for name in ("deis", "nodes"):
        decoy = tmp_path / "other_extension" / name
        decoy.mkdir(parents=True)
        (decoy / "__init__.py").write_text(f"raise RuntimeError('the decoy {name} package was imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "other_extension"))
    for name in ("deis", "nodes", "deis_sampler_pack_core"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    for name in [m for m in sys.modules if m.startswith("deis.") or m.startswith("deis_sampler_pack_core.")]:
        monkeypatch.delitem(sys.modules, name)
    fakes = fake_webui()
    for name, module in fakes.items():
        monkeypatch.setitem(sys.modules, name, module)
    return fakes


def load_script(name="deis_webui"):
    """Import the script the way the WebUI does: a standalone module loaded from its path."""
    spec = importlib.util.spec_from_file_location(name, SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_registers_every_label_once_beside_the_webuis_own_deis(webui):
    samplers = webui["modules.sd_samplers"]
    load_script()
    names = [x.name for x in samplers.all_samplers]
    assert names[:2] == ["DEIS", "Euler"] and names[2:] == LABELS
    aliases = {x.name: x.aliases for x in samplers.all_samplers}
    assert aliases["DEIS auto"] == ["deis_auto"] and aliases["DEIS"] == ["deis"]
    load_script("deis_webui_reloaded")  # "Reload UI" imports the script again
    assert [x.name for x in samplers.all_samplers] == names
    assert "deis" not in sys.modules and "nodes" not in sys.modules  # the decoys were never imported


def test_registration_on_a1111_appends_and_rebuilds_the_map(monkeypatch, webui):
    for name, module in fake_webui(forge=False).items():
        monkeypatch.setitem(sys.modules, name, module)
    samplers = sys.modules["modules.sd_samplers"]
    load_script()
    assert [x.name for x in samplers.all_samplers][2:] == LABELS
    assert set(samplers.all_samplers_map) == {"DEIS", "Euler", *LABELS} and samplers.set_samplers_calls == 1
    load_script("again")
    assert len(samplers.all_samplers) == 2 + len(LABELS) and samplers.set_samplers_calls == 1


class CFGDenoiserStandIn:
    """What Forge hands a sampler: a denoiser whose inner_model.predictor knows the sigmas and prediction type."""

    def __init__(self, form, sigmas_table):
        self.form = form
        self.inner_model = types.SimpleNamespace(predictor=types.SimpleNamespace(
            sigmas=sigmas_table, prediction_type="const" if form == "flow" else "epsilon"))

    def __call__(self, x, sigma, **kwargs):
        return MIXTURE.denoiser(self.form)(x, sigma)


@pytest.mark.parametrize("form", ["ve", "flow"])
def test_the_registered_samplers_run_the_core_model_aware(webui, form):
    samplers = webui["modules.sd_samplers"]
    load_script()
    table = torch.from_numpy(schedules.SD15.sigmas).float()
    if form == "flow":
        table = torch.linspace(0.001, 1.0, 1000)
    model = CFGDenoiserStandIn(form, table)
    sigmas = torch.from_numpy(schedules.flow_shift(10) if form == "flow" else schedules.sd15_karras(10))
    x = torch.randn(1, 4, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x = x if form == "flow" else x * sigmas[0]
    sde = samplers.all_samplers_map["DEIS SDE"].constructor("sd_model")
    calls = []
    out = sde.func(model, x, sigmas=sigmas, extra_args={}, disable=True, callback=calls.append, eta=0.0)
    time_map = FlowTime() if form == "flow" else DiscreteVPTime(table.double().numpy())
    expected = sample_deis(model, x, sigmas, disable=True, parameterisation=form, model_time_map=time_map,
                           config="deis_sde", eta=0.0)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    assert len(calls) == 10
    auto = samplers.all_samplers_map["DEIS auto"].constructor("sd_model").func(model, x, sigmas=sigmas, disable=True)
    uncorrected = sample_deis(model, x, sigmas, disable=True, parameterisation=form, model_time_map=time_map)
    torch.testing.assert_close(auto, uncorrected, rtol=0, atol=0)
    corrected = samplers.all_samplers_map["DEIS corrected"].constructor("sd_model").func
    outs = []
    for cfg in (1.0, 7.0):  # the WebUI's CFG scale reaches the core (corrector_max_cfg reads it)
        outs.append(corrected(model, x, sigmas=sigmas, extra_args={"cond_scale": cfg}, disable=True))
        expected = sample_deis(model, x, sigmas, disable=True, parameterisation=form, model_time_map=time_map,
                               config="deis_corrected", cfg=cfg)
        torch.testing.assert_close(outs[-1], expected, rtol=0, atol=0)
    assert not torch.equal(*outs)  # above the entry's corrector_max_cfg the correction is left out
    if form == "flow":  # a flow model read as VE would give something else: the form is read
        assert not torch.allclose(auto, sample_deis(model, x, sigmas, disable=True, model_time_map=time_map))
    exact = MIXTURE.reference(x.numpy(), float(sigmas[0]), 0.0, form)
    assert relative_error(auto, exact) < 0.2


@pytest.mark.parametrize("form", ["ve", "flow"])
def test_the_stochastic_entry_takes_the_webuis_eta_and_s_noise(webui, form):
    """The WebUI passes eta to a sampler whose signature has it, and s_noise ("sigma noise") where the sampler
    also lists it among its extra parameters, which it looks up by function name for its own samplers."""
    import inspect

    samplers = webui["modules.sd_samplers"]
    load_script()
    constructed = samplers.all_samplers_map["DEIS SDE"].constructor(None)
    sde = constructed.func
    assert {"eta", "s_noise", "noise_sampler"} <= set(inspect.signature(sde).parameters)
    assert constructed.extra_params == ["s_noise"]
    assert samplers.all_samplers_map["DEIS auto"].constructor(None).extra_params == []
    model = CFGDenoiserStandIn(form, torch.from_numpy(schedules.SD15.sigmas).float())
    sigmas = torch.from_numpy(schedules.flow_shift(8) if form == "flow" else schedules.sd15_karras(8))
    x = torch.randn(1, 4, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    draws = [torch.randn(1, 4, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(k))
             for k in range(8)]

    def noise_sampler():
        it = iter(draws)
        return lambda sigma, sigma_next: next(it)

    out = sde(model, x, sigmas, disable=True, eta=0.5, s_noise=0.9, noise_sampler=noise_sampler())
    expected = sample_deis(model, x, sigmas, disable=True, parameterisation=form, s_noise=0.9,
                           noise_sampler=noise_sampler(), config="deis_sde", eta=0.5,
                           model_time_map=FlowTime() if form == "flow" else DiscreteVPTime(
                               model.inner_model.predictor.sigmas))
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    ode = sde(model, x, sigmas, disable=True, eta=0.0)
    assert not torch.equal(ode, out)


def test_outside_a_webui_the_script_registers_nothing_and_raises_nothing(monkeypatch):
    monkeypatch.setitem(sys.modules, "modules", None)  # `from modules import ...` fails
    module = load_script("standalone")
    assert module.load_core().sample_deis is not None


def test_install_py_is_quiet_and_idempotent(tmp_path):
    import subprocess

    for _ in range(2):
        result = subprocess.run([sys.executable, str(SCRIPT.parent.parent / "install.py")], cwd=tmp_path,
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0
        assert result.stdout == "" and result.stderr == ""  # everything it checks is in this environment
    assert list(tmp_path.iterdir()) == []  # run from another directory (the WebUI root), it writes nothing
    source = (SCRIPT.parent.parent / "install.py").read_text()
    assert "subprocess" not in source and "import torch" not in source  # it installs nothing, torch least
