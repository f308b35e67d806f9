"""The example workflows as files: readable names, thumbnails, compact layouts, a model to download.

(tests/test_one_story.py holds their settings to the README's table; tests/test_comfy_server.py
validates them against a running ComfyUI's /object_info.)
"""

import itertools
import json
from pathlib import Path

import pytest

FOLDER = Path(__file__).resolve().parent.parent / "example_workflows"
WORKFLOWS = sorted(FOLDER.glob("*.json"))
#: LiteGraph draws a node's title bar above its position.
TITLE_HEIGHT = 30


def boxes(workflow):
    return {node["id"]: (node["pos"][0], node["pos"][1] - TITLE_HEIGHT, node["pos"][0] + node["size"][0],
                         node["pos"][1] + node["size"][1]) for node in workflow["nodes"]}


#: The template browser shows a pack workflow's file name as its card's title, and cuts what does not fit: about
#: 24 characters at its card width (seen in ComfyUI 0.3.64's frontend).
CARD_TITLE_LENGTH = 24


def test_there_are_two_workflows_with_readable_names_and_thumbnails():
    assert [p.stem for p in WORKFLOWS] == ["Sampler DEIS + Scheduler", "deis_corrected, KSampler"]
    assert all(len(p.stem) <= CARD_TITLE_LENGTH for p in WORKFLOWS)
    from PIL import Image

    for path in WORKFLOWS:
        thumbnail = path.with_suffix(".jpg")
        assert thumbnail.exists() and thumbnail.read_bytes()[:3] == b"\xff\xd8\xff", thumbnail  # a JPEG
        assert Image.open(thumbnail).size == (400, 400)  # the template browser shows it in a square


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_the_thumbnail_is_the_workflow_as_it_is_now(path, tmp_path):
    """The card draws the workflow's own graph (benchmarks/thumbnails.py); a changed workflow needs a new one."""
    import numpy as np
    from PIL import Image

    from benchmarks import thumbnails

    workflow = json.loads(path.read_text())
    thumbnails.draw(workflow, tmp_path / "now.jpg")
    shipped, now = (np.asarray(Image.open(p), dtype=float) for p in (path.with_suffix(".jpg"), tmp_path / "now.jpg"))
    assert np.abs(shipped - now).mean() < 0.05, path.name
    for node in workflow["nodes"]:
        if node["type"] in ("KSampler", "SamplerDEIS"):
            node["widgets_values"][4 if node["type"] == "KSampler" else 0] = "euler"
    thumbnails.draw(workflow, tmp_path / "changed.jpg")
    changed = np.asarray(Image.open(tmp_path / "changed.jpg"), dtype=float)
    assert np.abs(shipped - changed).mean() > 0.2  # the check can tell a changed sampler


#: ComfyUI's frontend fits a workflow without a saved view to 75 % of its canvas; a 1600x1000 window has a
#: 1536x922 canvas, so a layout up to this size opens at 75 % zoom or more, where node text is drawn.
MAX_LAYOUT = (1536, 922)
#: A node's source badge sits just above its title bar; this much room keeps it off the node above.
BADGE_ROOM = 52


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_the_layout_opens_at_75_percent_and_leaves_room_for_badges(path):
    workflow = json.loads(path.read_text())
    left, top = min(b[0] for b in boxes(workflow).values()), min(b[1] for b in boxes(workflow).values())
    right, bottom = max(b[2] for b in boxes(workflow).values()), max(b[3] for b in boxes(workflow).values())
    assert right - left + 20 <= MAX_LAYOUT[0] and bottom - top + 20 <= MAX_LAYOUT[1], (right - left, bottom - top)
    assert "ds" not in workflow.get("extra", {})  # no saved view: the frontend fits it to any window
    nodes = workflow["nodes"]
    for a, b in itertools.permutations(nodes, 2):
        same_column = a["pos"][0] < b["pos"][0] + b["size"][0] and b["pos"][0] < a["pos"][0] + a["size"][0]
        if same_column and b["pos"][1] > a["pos"][1]:
            assert b["pos"][1] - (a["pos"][1] + a["size"][1]) >= BADGE_ROOM, (path.name, a["type"], b["type"])


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_the_loader_names_its_model_and_where_to_download_it(path):
    """The frontend offers a missing model for download from the loader's properties.models."""
    loader = next(n for n in json.loads(path.read_text())["nodes"] if n["type"] == "CheckpointLoaderSimple")
    (model,) = loader["properties"]["models"]
    assert model["name"] == loader["widgets_values"][0] and model["directory"] == "checkpoints"
    assert model["url"].startswith("https://huggingface.co/") and model["name"] in model["url"]


def overlapping(workflow):
    """The pairs of nodes whose boxes, title bars included, overlap."""
    return [(a, b) for (a, box_a), (b, box_b) in itertools.combinations(boxes(workflow).items(), 2)
            if box_a[0] < box_b[2] and box_b[0] < box_a[2] and box_a[1] < box_b[3] and box_b[1] < box_a[3]]


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_no_two_nodes_overlap(path):
    assert overlapping(json.loads(path.read_text())) == []


def test_the_overlap_check_can_fail():
    """A node 20 px below another: its title bar (30 px, drawn above its position) lies on the first."""
    workflow = {"nodes": [{"id": 1, "pos": [0, 0], "size": [100, 100]}, {"id": 2, "pos": [50, 120], "size": [10, 10]}]}
    assert overlapping(workflow) == [(1, 2)]
    workflow["nodes"][1]["pos"][1] = 131
    assert overlapping(workflow) == []
