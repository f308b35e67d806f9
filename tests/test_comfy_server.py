"""The pack in a real ComfyUI server: /object_info lists it, and workflows queued through /prompt run it.

Needs COMFYUI_PATH (skips with a message otherwise). The server runs on 127.0.0.1 with --cpu in a
temporary base directory whose custom_nodes/ holds this pack and a small test-only pack that
provides weightless exact models (tests/comfy_support.py). Each workflow saves its latent with
ComfyUI's SaveLatent; the test reads it back and checks it against the exact ODE solution.
"""

import json
import math
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import numpy as np
import pytest
import torch

import comfy_support
from benchmarks.problems import MIXTURE, relative_error
from deis.timemaps import DiscreteVPTime

PACK_NAMES = ["deis_corrected", "deis_auto", "deis_sde"]
ODE_NAMES = ["deis_corrected", "deis_auto"]
SCHEDULER = "deis_time_quadratic"
WORKFLOW_NAMES = ["deis_corrected, KSampler", "Sampler DEIS + Scheduler"]

TEST_MODELS_PACK = '''
import sys
for path in ({repo!r}, {tests!r}):
    if path not in sys.path:
        sys.path.append(path)  # appended: ComfyUI's own "nodes" module must stay first
import comfy_support


class DEISTestExactModel:
    CATEGORY = "testing"
    RETURN_TYPES = ("MODEL", "CONDITIONING")
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {{"required": {{"kind": (["eps", "flow"],)}}}}

    def load(self, kind):
        return (comfy_support.exact_model(kind), comfy_support.empty_conditioning())


class AnyType(str):
    """A type every input accepts, as a subgraph input or a custom primitive gives."""

    def __ne__(self, other):
        return False


class DEISTestValue:
    """A value of any type through a link: the linked input arrives as None at validation."""
    CATEGORY = "testing"
    RETURN_TYPES = (AnyType("*"),)
    FUNCTION = "give"

    @classmethod
    def INPUT_TYPES(cls):
        return {{"required": {{"value": ("STRING", {{"default": ""}}), "kind": (["str", "int", "float", "bool"],)}}}}

    def give(self, value, kind):
        return ({{"str": str, "int": int, "float": float, "bool": lambda v: v == "true"}}[kind](value),)


NODE_CLASS_MAPPINGS = {{"DEISTestExactModel": DEISTestExactModel, "DEISTestValue": DEISTestValue}}
'''


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, base, port, process, log):
        self.base, self.port, self.process, self.log = base, port, process, log

    def get(self, path):
        return json.loads(self.get_bytes(path))

    def get_bytes(self, path):
        url = f"http://127.0.0.1:{self.port}{urllib.parse.quote(path)}"
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.read()

    def post(self, path, payload):
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=json.dumps(payload).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def post_status(self, path, payload):
        """(HTTP status, JSON body), also for an error answer."""
        try:
            return 200, self.post(path, payload)
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def run(self, workflow, timeout=120, status="success"):
        """Queue a workflow and wait for it to end with ``status``; returns its history entry."""
        prompt_id = self.post("/prompt", {"prompt": workflow, "client_id": str(uuid.uuid4())})["prompt_id"]
        deadline = time.time() + timeout
        while time.time() < deadline:
            history = self.get(f"/history/{prompt_id}")
            if prompt_id in history and history[prompt_id].get("status", {}).get("completed") is not None:
                entry = history[prompt_id]
                assert entry["status"]["status_str"] == status, (entry["status"], self.log_tail())
                return entry
            time.sleep(0.2)
        raise AssertionError(f"workflow did not finish in {timeout} s\n{self.log_tail()}")

    def saved_latent(self, entry):
        from safetensors.torch import load_file

        (output,) = [o for o in entry["outputs"].values() if "latents" in o]
        saved = output["latents"][0]
        path = os.path.join(self.base, "output", saved["subfolder"], saved["filename"])
        return load_file(path)["latent_tensor"]

    def log_tail(self):
        with open(self.log) as f:
            return f.read()[-4000:]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = comfy_support.comfy_path()
    base = tmp_path_factory.mktemp("comfy_base")
    custom = base / "custom_nodes"
    custom.mkdir()
    (custom / "comfyui-deis").symlink_to(comfy_support.REPO, target_is_directory=True)
    (custom / "deis_test_models").mkdir()
    (custom / "deis_test_models" / "__init__.py").write_text(
        TEST_MODELS_PACK.format(repo=str(comfy_support.REPO), tests=str(comfy_support.REPO / "tests")))
    port, log = free_port(), base / "server.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port), "--base-directory",
             str(base), "--disable-auto-launch", "--preview-method", "none"],
            cwd=root, stdout=out, stderr=subprocess.STDOUT)
    srv = Server(str(base), port, process, str(log))
    try:
        deadline = time.time() + 180
        while True:
            try:
                srv.get("/system_stats")
                break
            except OSError:
                if process.poll() is not None or time.time() > deadline:
                    pytest.fail(f"ComfyUI did not start\n{srv.log_tail()}")
                time.sleep(0.5)
        yield srv
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def test_object_info_lists_the_pack(server):
    info = server.get("/object_info")
    ksampler = info["KSampler"]["input"]["required"]
    samplers, schedulers = ksampler["sampler_name"][0], ksampler["scheduler"][0]
    assert all(name in samplers for name in PACK_NAMES), samplers
    after = samplers.index("deis") + 1
    assert samplers[after:after + len(PACK_NAMES)] == PACK_NAMES  # right after ComfyUI's own deis
    assert SCHEDULER in schedulers
    assert all(name in info["KSamplerAdvanced"]["input"]["required"]["sampler_name"][0] for name in PACK_NAMES)
    assert {"SamplerDEIS", "SamplerDEISAdvanced", "DEISScheduler"} <= set(info)
    assert info["SamplerDEIS"]["output"] == info["SamplerDEISAdvanced"]["output"] == ["SAMPLER"]
    assert info["DEISScheduler"]["output"] == ["SIGMAS"]
    assert "DEIS: the sampler pack failed" not in server.log_tail()


def ksampler_workflow(kind, sampler, scheduler, steps, seed, prefix):
    return {
        "model": {"class_type": "DEISTestExactModel", "inputs": {"kind": kind}},
        "latent": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "sample": {"class_type": "KSampler", "inputs": {
            "model": ["model", 0], "positive": ["model", 1], "negative": ["model", 1], "latent_image": ["latent", 0],
            "seed": seed, "steps": steps, "cfg": 1.0, "sampler_name": sampler, "scheduler": scheduler,
            "denoise": 1.0}},
        "save": {"class_type": "SaveLatent", "inputs": {"samples": ["sample", 0], "filename_prefix": prefix}},
    }


def comfy_noise(seed, shape=(1, 4, 8, 8)):
    """comfy.sample.prepare_noise, which KSampler and RandomNoise use."""
    return torch.randn(shape, dtype=torch.float32, generator=torch.manual_seed(seed), device="cpu")


def exact_final(kind, seed):
    noise = comfy_noise(seed).double().numpy()
    if kind == "flow":
        return MIXTURE.reference(noise, 1.0, 0.0, "flow")
    sigma_max = DiscreteVPTime.from_betas().sigmas[-1]
    return MIXTURE.reference(noise * math.sqrt(1 + sigma_max ** 2), sigma_max, 0.0)  # KSampler's max_denoise start


@pytest.mark.parametrize("kind, scheduler", [("eps", "karras"), ("flow", "simple"), ("eps", SCHEDULER)])
def test_ksampler_workflows_with_every_pack_sampler(server, kind, scheduler):
    seed, steps = 7, 10
    exact = exact_final(kind, seed)
    euler = relative_error(server.saved_latent(server.run(
        ksampler_workflow(kind, "euler", scheduler, steps, seed, f"{kind}_{scheduler}/euler"))), exact)
    for name in ODE_NAMES:
        latent = server.saved_latent(server.run(
            ksampler_workflow(kind, name, scheduler, steps, seed, f"{kind}_{scheduler}/{name}")))
        assert latent.shape == (1, 4, 8, 8)
        assert relative_error(latent, exact) < 0.6 * euler, (name, relative_error(latent, exact), euler)


@pytest.mark.parametrize("kind", ["eps", "flow"])
def test_sampler_custom_advanced_workflow_with_sampler_deis_and_deis_scheduler(server, kind):
    seed = 11

    def workflow(sampler_node, prefix):
        return {
            "model": {"class_type": "DEISTestExactModel", "inputs": {"kind": kind}},
            "latent": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
            "noise": {"class_type": "RandomNoise", "inputs": {"noise_seed": seed}},
            "guider": {"class_type": "CFGGuider", "inputs": {
                "model": ["model", 0], "positive": ["model", 1], "negative": ["model", 1], "cfg": 3.0}},
            "sampler": sampler_node,
            "sigmas": {"class_type": "DEISScheduler", "inputs": {
                "model": ["model", 0], "steps": 10, "denoise": 1.0, "schedule": "deis_time_quadratic", "kappa": 2.0,
                "power": 7.0}},
            "sample": {"class_type": "SamplerCustomAdvanced", "inputs": {
                "noise": ["noise", 0], "guider": ["guider", 0], "sampler": ["sampler", 0],
                "sigmas": ["sigmas", 0], "latent_image": ["latent", 0]}},
            "save": {"class_type": "SaveLatent", "inputs": {"samples": ["sample", 0], "filename_prefix": prefix}},
        }

    deis = {"class_type": "SamplerDEISAdvanced", "inputs": {
        "variant": "tab", "degree": 2, "integrand": "v", "corrector": True, "final_degree": 1,
        "max_amplification": 0.0, "max_step_angle": 0.0, "corrector_max_angle": 0.0, "eta": 0.0, "s_noise": 1.0,
        "corrector_data_scale": 0.0, "corrector_max_cfg": 0.0}}
    euler = {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}}
    exact = exact_final(kind, seed)
    ours = server.saved_latent(server.run(workflow(deis, f"custom_{kind}/deis")))
    theirs = server.saved_latent(server.run(workflow(euler, f"custom_{kind}/euler")))
    assert np.isfinite(ours.numpy()).all()
    assert relative_error(ours, exact) < 0.6 * relative_error(theirs, exact)


@pytest.mark.parametrize("kind", ["eps", "flow"])
def test_the_stochastic_entry_in_a_ksampler_workflow_follows_the_seed(server, kind):
    runs = [server.saved_latent(server.run(ksampler_workflow(kind, "deis_sde", "simple", 12, seed, f"sde_{kind}/{i}")))
            for i, seed in enumerate((3, 3, 4))]
    assert torch.equal(runs[0], runs[1]) and np.isfinite(runs[0].numpy()).all()
    assert float((runs[0] - runs[2]).abs().max()) > 0.1


def sampler_custom_workflow(sampler_node, scheduler_node=None, prefix="linked/x"):
    """SamplerCustom on the exact eps model with ``sampler_node`` (and DEIS Scheduler's ``scheduler_node``)."""
    scheduler_node = scheduler_node or {"class_type": "BasicScheduler", "inputs": {
        "model": ["model", 0], "scheduler": "karras", "steps": 4, "denoise": 1.0}}
    return {
        "model": {"class_type": "DEISTestExactModel", "inputs": {"kind": "eps"}},
        "latent": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "sampler": sampler_node, "sigmas": scheduler_node,
        "sample": {"class_type": "SamplerCustom", "inputs": {
            "model": ["model", 0], "add_noise": True, "noise_seed": 1, "cfg": 1.0, "positive": ["model", 1],
            "negative": ["model", 1], "sampler": ["sampler", 0], "sigmas": ["sigmas", 0],
            "latent_image": ["latent", 0]}},
        "save": {"class_type": "SaveLatent", "inputs": {"samples": ["sample", 0], "filename_prefix": prefix}},
    }


def linked(workflow, node, values):
    """``workflow`` with each of ``node``'s inputs in ``values`` fed through a DEISTestValue link."""
    for name, value in values.items():
        kind = {bool: "bool", int: "int", float: "float", str: "str"}[type(value)]
        text = ("true" if value else "false") if kind == "bool" else str(value)
        workflow[f"{node}-{name}"] = {"class_type": "DEISTestValue", "inputs": {"value": text, "kind": kind}}
        workflow[node]["inputs"][name] = [f"{node}-{name}", 0]
    return workflow


def test_every_node_runs_with_every_input_linked(server):
    advanced = dict(variant="tab_vp", degree=1, integrand="data", corrector=True, final_degree=1,
                    max_amplification=0.0, max_step_angle=0.4, corrector_max_angle=0.0, eta=0.0, s_noise=1.0,
                    corrector_data_scale=0.01, corrector_max_cfg=4.0)
    scheduler = dict(steps=4, denoise=1.0, schedule="log_rho_uniform", kappa=2.0, power=7.0)
    for sampler_node, values in ((("SamplerDEISAdvanced", advanced)), ("SamplerDEIS", dict(method="recommended",
                                                                                           eta=0.0))):
        workflow = sampler_custom_workflow({"class_type": sampler_node, "inputs": {}},
                                           {"class_type": "DEISScheduler", "inputs": {"model": ["model", 0]}},
                                           prefix=f"linked/{sampler_node}")
        linked(linked(workflow, "sampler", values), "sigmas", scheduler)
        entry = server.run(workflow)
        assert torch.isfinite(server.saved_latent(entry)).all()


def test_a_refused_setting_stops_the_run_with_one_message_naming_every_problem(server):
    """A setting that cannot run, linked or not, stops the workflow when the node runs: one error, every problem."""
    settings = dict(variant="tab", degree=3, integrand="v", corrector=True, final_degree=2, max_amplification=0.0,
                    max_step_angle=0.0, corrector_max_angle=0.0, eta=0.5, s_noise=1.0, corrector_data_scale=0.0,
                    corrector_max_cfg=0.0)
    workflow = sampler_custom_workflow({"class_type": "SamplerDEISAdvanced", "inputs": settings}, prefix="refused/x")
    status, body = server.post_status("/prompt", {"prompt": workflow})
    assert status == 200, body  # queued: nothing at validation to repeat once per input
    entry = server.run(workflow, status="error")
    errors = [data for kind, data in entry["status"]["messages"] if kind == "execution_error"]
    assert len(errors) == 1
    message = errors[0]["exception_message"]
    assert message.startswith("Sampler DEIS (advanced): 4 problems:\n(1) ") and message.count("\n(") == 4
    for words in ("degree 3 with the corrector", "eta 0.5 needs integrand data", "final_degree 2 with eta 0.5"):
        assert words in message, message


def test_an_earlier_releases_method_is_refused_at_queue_time_once(server):
    workflow = sampler_custom_workflow({"class_type": "SamplerDEIS", "inputs": {"method": "auto", "eta": 0.0}})
    status, body = server.post_status("/prompt", {"prompt": workflow})
    assert status == 400, body
    (node_errors,) = body["node_errors"].values()
    assert len(node_errors["errors"]) == 1
    assert "is method 'uncorrected' now" in node_errors["errors"][0]["details"]


def test_help_pages_and_workflow_templates_are_served(server):
    """ComfyUI serves WEB_DIRECTORY's docs/<NodeName>.md as node help, and example_workflows/ as templates."""
    for node in ("SamplerDEIS", "SamplerDEISAdvanced", "DEISScheduler"):
        page = server.get_bytes(f"/extensions/comfyui-deis/docs/{node}.md").decode()
        assert page.startswith("# ") and "## Inputs" in page
        assert not [line for line in page.splitlines() if line.startswith("|")]  # no table: the sidebar is narrow
    templates = server.get("/workflow_templates")
    assert sorted(templates["comfyui-deis"]) == sorted(WORKFLOW_NAMES)
    for name in templates["comfyui-deis"]:
        assert server.get_bytes(f"/api/workflow_templates/comfyui-deis/{name}.jpg")[:3] == b"\xff\xd8\xff"
        assert json.loads(server.get_bytes(f"/api/workflow_templates/comfyui-deis/{name}.json"))["nodes"]


def test_every_node_input_has_a_tooltip(server):
    info = server.get("/object_info")
    for node in ("SamplerDEIS", "SamplerDEISAdvanced", "DEISScheduler"):
        for name, (kind, *rest) in info[node]["input"]["required"].items():
            assert rest and rest[0].get("tooltip"), (node, name)


def widget_inputs(spec):
    """(name, options) of each widget of a node, in widgets_values order, from /object_info."""
    widgets = []
    for section in ("required", "optional"):
        for name, (kind, *rest) in spec["input"].get(section, {}).items():
            options = rest[0] if rest else {}
            if isinstance(kind, list) or kind in ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"):
                widgets.append((name, kind))
                if options.get("control_after_generate"):
                    widgets.append(("control_after_generate", ["fixed", "increment", "decrement", "randomize"]))
    return widgets


@pytest.mark.parametrize("name", [f"{name}.json" for name in WORKFLOW_NAMES])
def test_example_workflows_match_this_comfyui(server, name):
    """Every node exists, every link joins matching types, every widget value is one ComfyUI accepts."""
    workflow = json.loads((comfy_support.REPO / "example_workflows" / name).read_text())
    info = server.get("/object_info")
    by_id = {node["id"]: node for node in workflow["nodes"]}
    for link_id, origin, origin_slot, target, target_slot, kind in workflow["links"]:
        assert by_id[origin]["outputs"][origin_slot]["type"] == kind == by_id[target]["inputs"][target_slot]["type"]
    used = set()
    for node in workflow["nodes"]:
        spec = info[node["type"]]
        widgets = widget_inputs(spec)
        assert len(node["widgets_values"]) == len(widgets), node["type"]
        for (widget, options), value in zip(widgets, node["widgets_values"]):
            if isinstance(options, list) and widget != "ckpt_name":
                assert value in options, (node["type"], widget, value)
            used.add(value if isinstance(value, str) else None)
    assert set(PACK_NAMES) & used or {"SamplerDEIS"} & {n["type"] for n in workflow["nodes"]}
