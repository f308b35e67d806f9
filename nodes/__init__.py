"""ComfyUI adapters over the DEIS core: nodes, model awareness and registration."""

from .samplers import DEISScheduler, SamplerDEISAdvanced

NODE_CLASS_MAPPINGS = {
    "SamplerDEISAdvanced": SamplerDEISAdvanced,
    "DEISScheduler": DEISScheduler,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "SamplerDEISAdvanced": "Sampler DEIS (advanced)",
    "DEISScheduler": "DEIS Scheduler",
}
