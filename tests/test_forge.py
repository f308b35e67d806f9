"""The pack in a real Forge WebUI: its samplers listed by the API, and a txt2img that runs one.

Needs FORGE_PATH: a Forge checkout set up as docs/development.md describes (repositories in
place, a venv at FORGE_PATH/venv or FORGE_PYTHON, and REQS_FILE, PIP_CONSTRAINT and
CLIP_PACKAGE exported). Skips with a message otherwise. The test links this
pack into extensions/, builds a random-weight SD1.5 checkpoint if there is none (no download),
starts Forge twice on 127.0.0.1 on the CPU, and removes the link afterwards.
"""

import base64
import hashlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LABELS = ["DEIS corrected", "DEIS auto", "DEIS SDE"]
ALIASES = ["deis_corrected", "deis_auto", "deis_sde"]
CHECKPOINT = "deis-test-random-sd15.safetensors"


def forge():
    path = os.environ.get("FORGE_PATH")
    if not path:
        pytest.skip("FORGE_PATH is not set: this test needs a Forge WebUI checkout set up as "
                    "docs/development.md describes")
    path = Path(path)
    if not (path / "launch.py").exists():
        pytest.fail(f"FORGE_PATH={path} is not a Forge checkout (no launch.py)")
    python = Path(os.environ.get("FORGE_PYTHON", path / "venv" / "bin" / "python"))
    if not python.exists():
        pytest.fail(f"no Python for Forge at {python}; set FORGE_PYTHON")
    return path, python


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pack_digest():
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    files = [name for name in listed.split("\0") if name]  # names may hold spaces (the example workflows)
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + (REPO / name).read_bytes())
    return digest.hexdigest()


class Forge:
    def __init__(self, root, python, log_dir):
        self.root, self.python, self.log_dir = root, python, log_dir
        self.port = free_port()
        self.process = None

    def start(self, label):
        env = dict(os.environ, DEIS_INSTALL_LOG=str(self.log_dir / "install.log"))
        self.log = self.log_dir / f"forge-{label}.log"
        with open(self.log, "w") as out:
            self.process = subprocess.Popen(
                [str(self.python), "launch.py", "--skip-torch-cuda-test", "--skip-python-version-check", "--api",
                 "--nowebui", "--server-name", "127.0.0.1", "--port", str(self.port), "--always-cpu"],
                cwd=self.root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 600
        while True:
            try:
                return self.get("/sdapi/v1/samplers")
            except OSError:
                if self.process.poll() is not None or time.time() > deadline:
                    self.stop()
                    pytest.fail(f"Forge did not start\n{self.log.read_text()[-4000:]}")
                time.sleep(1)

    def stop(self):
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)  # the server is a child of launch.py
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)

    def get(self, path):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=30) as response:
            return json.loads(response.read())

    def post(self, path, payload, timeout=900):
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=json.dumps(payload).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())


@pytest.fixture(scope="module")
def forge_with_pack(tmp_path_factory):
    root, python = forge()
    link = root / "extensions" / "sd-deis-samplers"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(REPO, target_is_directory=True)
    checkpoint = root / "models" / "Stable-diffusion" / CHECKPOINT
    if not checkpoint.exists():
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([str(python), str(REPO / "tests" / "forge_make_checkpoint.py"), str(root), str(checkpoint)],
                       check=True, timeout=600)
    server = Forge(root, python, tmp_path_factory.mktemp("forge"))
    try:
        yield server
    finally:
        server.stop()
        link.unlink()


def test_forge_lists_runs_and_restarts_with_the_pack(forge_with_pack):
    server = forge_with_pack
    before = pack_digest()
    samplers = server.start("first")
    by_name = {s["name"]: s for s in samplers}
    for label, alias in zip(LABELS, ALIASES):
        assert label in by_name and alias in by_name[label]["aliases"], label
    assert "DEIS" in by_name and "deis" in by_name["DEIS"]["aliases"]  # Forge's own DEIS is still there

    result = server.post("/sdapi/v1/txt2img", {
        "prompt": "a lighthouse", "steps": 4, "width": 64, "height": 64, "sampler_name": "DEIS auto",
        "seed": 1, "cfg_scale": 5, "override_settings": {"sd_model_checkpoint": CHECKPOINT.rsplit(".", 1)[0]}})
    assert result["images"] and base64.b64decode(result["images"][0])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Sampler: DEIS auto" in json.loads(result["info"])["infotexts"][0]
    corrected = server.post("/sdapi/v1/txt2img", {
        "prompt": "a lighthouse", "steps": 4, "width": 64, "height": 64, "sampler_name": "DEIS corrected",
        "seed": 1, "cfg_scale": 5, "override_settings": {"sd_model_checkpoint": CHECKPOINT.rsplit(".", 1)[0]}})
    assert "Sampler: DEIS corrected" in json.loads(corrected["info"])["infotexts"][0]
    assert corrected["images"][0] != result["images"][0]  # another configuration, another image
    # the stochastic entry, with the WebUI's eta: the same seed gives the same image
    sde = [server.post("/sdapi/v1/txt2img", {
        "prompt": "a lighthouse", "steps": 4, "width": 64, "height": 64, "sampler_name": "DEIS SDE", "seed": 7,
        "override_settings": {"sd_model_checkpoint": CHECKPOINT.rsplit(".", 1)[0]}})["images"][0] for _ in range(2)]
    assert sde[0] == sde[1]

    # img2img starts below sigma_max; hires fix runs a second, shorter schedule on the upscaled latent
    checkpoint = {"sd_model_checkpoint": CHECKPOINT.rsplit(".", 1)[0]}
    image = server.post("/sdapi/v1/img2img", {
        "init_images": [result["images"][0]], "denoising_strength": 0.5, "prompt": "a lighthouse", "steps": 6,
        "width": 64, "height": 64, "sampler_name": "DEIS auto", "seed": 2, "override_settings": checkpoint})
    assert image["images"] and "Sampler: DEIS auto" in json.loads(image["info"])["infotexts"][0]
    hires = server.post("/sdapi/v1/txt2img", {
        "prompt": "a lighthouse", "steps": 3, "width": 64, "height": 64, "sampler_name": "DEIS SDE", "seed": 3,
        "enable_hr": True, "hr_scale": 1.5, "hr_upscaler": "Latent", "hr_second_pass_steps": 2,
        "denoising_strength": 0.5, "hr_additional_modules": ["Use same choices"], "override_settings": checkpoint})
    png = base64.b64decode(hires["images"][0])
    assert int.from_bytes(png[16:20], "big") == 96  # the PNG's width: the second pass ran at 1.5x

    # "sigma noise" reaches DEIS SDE and its infotext, as with Forge's own SDE samplers. Forge keeps an
    # override of a setting at its default for the rest of the server's life, so this runs 1.0 first.
    noisy = {}
    for s_noise in (1.0, 0.5):
        answer = server.post("/sdapi/v1/txt2img", {
            "prompt": "a lighthouse", "steps": 4, "width": 64, "height": 64, "sampler_name": "DEIS SDE",
            "seed": 7, "override_settings": {**checkpoint, "s_noise": s_noise}})
        noisy[s_noise] = (answer["images"][0], json.loads(answer["info"])["infotexts"][0])
    assert noisy[1.0][0] == sde[0] and "Sigma noise" not in noisy[1.0][1]
    assert noisy[0.5][0] != sde[0] and "Sigma noise: 0.5" in noisy[0.5][1], noisy[0.5][1]

    # interrupt and skip act between steps: a long run comes back early
    import threading

    for action in ("interrupt", "skip"):
        timing = {}

        def long_run():
            start = time.time()
            server.post("/sdapi/v1/txt2img", {"prompt": "a lighthouse", "steps": 60, "width": 64, "height": 64,
                                              "sampler_name": "DEIS auto", "seed": 4, "override_settings": checkpoint})
            timing["seconds"] = time.time() - start

        thread = threading.Thread(target=long_run)
        thread.start()
        time.sleep(6)
        server.post(f"/sdapi/v1/{action}", {})
        thread.join(timeout=300)
        assert timing["seconds"] < 40, (action, timing)  # 60 steps take about 70 s on this CPU
    server.stop()

    samplers = server.start("second")
    assert [s["name"] for s in samplers if s["name"] in LABELS] == LABELS
    server.stop()
    runs = (server.log_dir / "install.log").read_text().splitlines()
    assert len(runs) == 2 and all(str(server.root) in line for line in runs), runs
    assert pack_digest() == before  # install.py changed nothing
