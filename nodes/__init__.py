"""ComfyUI adapters over the DEIS core: nodes, model awareness and registration."""

from .samplers import DEISScheduler, SamplerDEIS

NODE_CLASS_MAPPINGS = {
    "SamplerDEIS": SamplerDEIS,
    "DEISScheduler": DEISScheduler,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "SamplerDEIS": "Sampler DEIS",
    "DEISScheduler": "DEIS Scheduler",
}
