"""ComfyUI adapters over the DEIS core: nodes, model awareness and registration."""

from . import help  # noqa: F401  (the help pages' inputs, tests/help_pages.py)
from .samplers import DEISScheduler, SamplerDEIS, SamplerDEISAdvanced

NODE_CLASS_MAPPINGS = {
    "SamplerDEIS": SamplerDEIS,
    "SamplerDEISAdvanced": SamplerDEISAdvanced,
    "DEISScheduler": DEISScheduler,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "SamplerDEIS": "Sampler DEIS",
    "SamplerDEISAdvanced": "Sampler DEIS (advanced)",
    "DEISScheduler": "DEIS Scheduler",
}
