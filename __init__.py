"""ComfyUI entry point of the DEIS sampler pack.

ComfyUI imports this file as a package from custom_nodes/. It registers the DEIS entries in
KSampler's sampler and scheduler dropdowns and provides the SamplerDEIS and DEISScheduler
nodes. A failure here is logged, never raised: it must not stop ComfyUI from starting.
"""

import logging

NODE_CLASS_MAPPINGS = {}
NODE_DISPLAY_NAME_MAPPINGS = {}
#: ComfyUI serves web/docs/<NodeName>.md as each node's help page.
WEB_DIRECTORY = "./web"

try:
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # noqa: F811
    from .nodes.registration import register_all

    register_all()
except Exception:  # pragma: no cover - reported in ComfyUI's log instead of breaking its start
    logging.getLogger("comfyui-deis").exception("DEIS: the sampler pack failed to load")

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
