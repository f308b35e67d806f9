"""Write the Inputs section of each node's help page from the nodes' inputs (nodes/help.py):
``bash dev.sh python tests/help_pages.py``. tests/test_nodes.py checks the pages are as this writes them."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pack_loader import REPO, load_pack  # noqa: E402

PAGES = {"SamplerDEIS": "SamplerDEIS", "SamplerDEISAdvanced": "SamplerDEISAdvanced", "DEISScheduler": "DEISScheduler"}


def pages():
    """(path, expected text) for each node's help page."""
    pack = load_pack()
    for node_name, page in PAGES.items():
        path = REPO / "web" / "docs" / f"{page}.md"
        yield path, pack.nodes.help.page_with_inputs(path.read_text(), pack.nodes.NODE_CLASS_MAPPINGS[node_name])


if __name__ == "__main__":
    for path, text in pages():
        path.write_text(text)
        print(f"wrote {path.relative_to(REPO)}")
