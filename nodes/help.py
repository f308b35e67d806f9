"""The nodes' help pages (web/docs/<Node>.md) list each input as its tooltip says: this renders that list from the
nodes' INPUT_TYPES, whose ranges and tooltips come from the core's declaration of its options (deis.OPTIONS).
``tests/help_pages.py`` writes it under each page's "## Inputs"; a test checks that the pages hold it."""

INPUTS_HEADING = "## Inputs"


def default_text(spec):
    kind, info = spec[0], spec[1] if len(spec) > 1 else {}
    if "default" not in info:
        return ""
    value = info["default"]
    if kind == "BOOLEAN":
        value = "true" if value else "false"
    return f" ({value})"


def node_inputs(node):
    """A node's inputs, required then optional, by name."""
    types = node.INPUT_TYPES()
    return {**types["required"], **types.get("optional", {})}


def inputs_markdown(node):
    """One section per input: its name and default as the UI shows them, then its tooltip."""
    sections = []
    for name, spec in node_inputs(node).items():
        sections.append(f"### {name}{default_text(spec)}\n\n{spec[1]['tooltip']}\n")
    return f"{INPUTS_HEADING}\n\n" + "\n".join(sections)


def page_with_inputs(page, node):
    """``page`` with everything from "## Inputs" on replaced by ``inputs_markdown(node)``."""
    head = page.split(INPUTS_HEADING)[0].rstrip()
    return f"{head}\n\n{inputs_markdown(node)}"
