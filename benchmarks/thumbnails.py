"""The example workflows' thumbnails: each workflow's own graph, drawn from its JSON.

    python -m benchmarks.thumbnails

A sample from the SD1.5 checkpoint the workflows load cannot be made here (the project has no
weights), and a picture from another model would not be what the workflow makes; so the card shows
the workflow itself: its nodes in the order they run, with the settings that matter, the DEIS
nodes and entries in amber.
"""

import json
from pathlib import Path

FOLDER = Path(__file__).resolve().parent.parent / "example_workflows"
TITLES = {"CheckpointLoaderSimple": "Load Checkpoint", "CLIPTextEncode": "CLIP Text Encode",
          "EmptyLatentImage": "Empty Latent Image", "VAEDecode": "VAE Decode", "SaveImage": "Save Image",
          "RandomNoise": "Random Noise", "CFGGuider": "CFG Guider", "SamplerDEIS": "Sampler DEIS",
          "DEISScheduler": "DEIS Scheduler", "SamplerCustomAdvanced": "SamplerCustom (Adv.)"}
SIZE, COLUMNS = 400, 2
BACKGROUND, BOX, TEXT, DEIS = (24, 24, 28), (58, 58, 66), (235, 235, 235), (250, 200, 90)


def detail(node):
    """The node's settings a reader of the workflow looks for, in a line or two."""
    values = node.get("widgets_values") or []
    kind = node["type"]
    if kind == "KSampler":
        return f"{values[4]} · {values[5]}\n{values[2]} steps · CFG {values[3]:g}"
    if kind == "SamplerDEIS":
        return f"{values[0]} · eta {values[1]:g}"
    if kind == "DEISScheduler":
        return f"{values[2]} · {values[0]} steps"
    if kind == "CFGGuider":
        return f"CFG {values[0]:g}"
    if kind == "CLIPTextEncode":
        return values[0] if len(values[0]) <= 24 else values[0][:23] + "…"
    if kind == "EmptyLatentImage":
        return f"{values[0]} x {values[1]}"
    return ""


def running_order(workflow):
    """The nodes in an order where each comes after every node it takes an input from."""
    nodes = {node["id"]: node for node in workflow["nodes"]}
    sources = {node_id: set() for node_id in nodes}
    for _, source, _, target, _, _ in workflow["links"]:
        sources[target].add(source)
    order, placed = [], set()
    while len(order) < len(nodes):
        ready = sorted((n for n in nodes if n not in placed and sources[n] <= placed), key=lambda n: nodes[n]["pos"])
        order.append(nodes[ready[0]])
        placed.add(ready[0])
    return order


def draw(workflow, path):
    from PIL import Image, ImageDraw, ImageFont

    order = running_order(workflow)
    card = Image.new("RGB", (SIZE, SIZE), BACKGROUND)
    pen = ImageDraw.Draw(card)
    title_font, name_font, detail_font = (ImageFont.load_default(size=s) for s in (30, 15, 13))
    pen.text((14, 10), "DEIS workflow", fill=DEIS, font=title_font)
    rows = -(-len(order) // COLUMNS)
    top, gap = 54, 6
    height = (SIZE - top - 8) // rows - gap
    width = (SIZE - 14 * 2 - gap * (COLUMNS - 1)) // COLUMNS
    for k, node in enumerate(order):
        column, row = divmod(k, rows)
        x, y = 14 + column * (width + gap), top + row * (height + gap)
        is_deis = "DEIS" in node["type"] or "deis" in detail(node)
        pen.rounded_rectangle((x, y, x + width, y + height), radius=6, fill=BOX, outline=DEIS if is_deis else None,
                              width=2)
        pen.text((x + 8, y + 5), f"{k + 1}. {TITLES.get(node['type'], node['type'])}", fill=DEIS if is_deis else TEXT,
                 font=name_font)
        pen.multiline_text((x + 8, y + 26), detail(node), fill=TEXT, font=detail_font, spacing=2)
    card.save(path, "JPEG", quality=92)


def main():
    for path in sorted(FOLDER.glob("*.json")):
        draw(json.loads(path.read_text()), path.with_suffix(".jpg"))
        print(f"wrote {path.with_suffix('.jpg')}")


if __name__ == "__main__":
    main()
