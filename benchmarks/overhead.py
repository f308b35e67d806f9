"""Coefficient time (cold and cached) and per-step sampler overhead, as medians and ratios from one run.

    python -m benchmarks.overhead [--steps 50] [--repeats 21] [--out benchmarks/results/overhead.md]

Per-step overhead is a step's time minus the denoiser's own time, with a denoiser that costs one
elementwise op (``x * 0.9``) on a 1x4x128x128 float32 latent. The samplers run interleaved,
repeat after repeat, so that machine noise hits them alike. With COMFYUI_PATH set, ComfyUI's
built-in ``deis`` coefficient code is timed beside ours.
"""

import argparse
import importlib.util
import os
import statistics
import time
import tracemalloc
import weakref
from pathlib import Path

import torch
import k_diffusion.sampling as K
from torch.utils._python_dispatch import TorchDispatchMode

from benchmarks import schedules
from benchmarks.report import publish
from deis import (CoefficientCache, Config, VPLinearTime, get_plan, get_runge_kutta_plan, named_config, sample_deis,
                  sample_deis_rk)
from deis.parameterisation import get_parameterisation
from deis.plan import host_sigmas, multistep_plan, runge_kutta_plan, tab_time

#: name: (configuration or rhoRK's tableau, form, schedule). The dropdown entries first: deis_auto and deis_corrected
#: in each form, deis_sde.
COLD_CONFIGS = {
    "deis_auto, SD-style (tAB2 eps, VP time)": (named_config("deis_auto", "ve"), "ve", schedules.sd15_karras),
    "deis_auto, flow (tAB2 v, flow time, capped)": (named_config("deis_auto", "flow"), "flow", schedules.flow_shift),
    "deis_corrected, SD-style (tAB1 data, corrected)": (named_config("deis_corrected", "ve"), "ve",
                                                        schedules.sd15_karras),
    "deis_corrected, flow (tAB1 v, corrected)": (named_config("deis_corrected", "flow"), "flow",
                                                 schedules.flow_shift),
    "deis_sde (tAB1 data, SD1.5 table, eta 1)": (named_config("deis_sde", "ve").replace(time_map=schedules.SD15), "ve",
                                                 schedules.sd15_karras),
    "tAB3, the paper's (SD1.5 table)": (Config(time_map=schedules.SD15), "ve", schedules.sd15_karras),
    "tAB3 (VP-linear)": (Config(time_map=VPLinearTime()), "ve", schedules.sd15_karras),
    "iPNDM": (Config(variant="ipndm"), "ve", schedules.sd15_karras),
    "rhoRK (kutta3)": ("kutta3", "ve", schedules.sd15_karras),
}


def cold_plan(config, form, sigmas):
    """A plan computed from scratch, without the cache."""
    param = get_parameterisation(form)
    if isinstance(config, str):
        return runge_kutta_plan(host_sigmas(sigmas), config, param)
    return multistep_plan(host_sigmas(sigmas), config, param, tab_time(config, param))


def cached_plan(config, form, sigmas, cache):
    if isinstance(config, str):
        return get_runge_kutta_plan(sigmas, config, form, cache)
    return get_plan(sigmas, config, form, cache=cache)


def median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def comfy_deis_coefficients():
    """ComfyUI's own coefficient function, loaded by file path (it needs only torch and numpy)."""
    root = os.environ.get("COMFYUI_PATH")
    path = Path(root or "", "comfy", "k_diffusion", "deis.py")
    if not root or not path.exists():
        return None
    spec = importlib.util.spec_from_file_location("comfy_builtin_deis", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_deis_coeff_list


def comfy_samplers():
    """ComfyUI's own ``sample_deis``, ``sample_euler`` and ``sample_euler_ancestral`` (COMFYUI_PATH), else None."""
    if not os.environ.get("COMFYUI_PATH"):
        return None
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    import comfy_support

    comfy_support.import_comfy()
    import comfy.k_diffusion.sampling

    sampling = comfy.k_diffusion.sampling
    return sampling.sample_deis, sampling.sample_euler, sampling.sample_euler_ancestral


def coefficient_times(steps, repeats):
    rows = []
    for name, (config, form, schedule) in COLD_CONFIGS.items():
        sigmas = schedule(steps)
        cold = median_time(lambda: cold_plan(config, form, sigmas), repeats)
        cache = CoefficientCache()
        tensor_sigmas = torch.tensor(sigmas, dtype=torch.float32)
        cached_plan(config, form, tensor_sigmas, cache)
        warm = median_time(lambda: cached_plan(config, form, tensor_sigmas, cache), repeats * 10)
        rows.append((name, cold, warm))
    comfy = comfy_deis_coefficients()
    if comfy is not None:
        tensor_sigmas = torch.tensor(schedules.sd15_karras(steps), dtype=torch.float32)
        rows.append(("ComfyUI built-in deis (max_order 3)", median_time(lambda: comfy(tensor_sigmas, 3), 5), None))
    return rows


class VEDenoiser:
    """``x * 0.9``, with the ``inner_model.inner_model.model_sampling`` that ComfyUI's euler_ancestral
    reads to tell a flow model (None: not one)."""

    def __init__(self):
        self.inner_model = self
        self.model_sampling = None

    def __call__(self, x, sigma, **kwargs):
        return x * 0.9


def step_overheads(steps, repeats):
    x = torch.randn(1, 4, 128, 128, generator=torch.Generator().manual_seed(0))
    sigmas = torch.from_numpy(schedules.sd15_karras(steps)).float()
    model = lambda x, sigma, **kwargs: x * 0.9  # noqa: E731

    def plain_euler():
        """The four tensor ops of an Euler step and nothing else: the floor for any sampler."""
        s_in, y = x.new_ones([x.shape[0]]), x
        for i in range(steps):
            denoised = model(y, sigmas[i] * s_in)
            y = y + (y - denoised) / sigmas[i] * (sigmas[i + 1] - sigmas[i])
        return y

    samplers = {
        "plain Euler loop (4 ops/step)": plain_euler,
        "k-diffusion euler": lambda: K.sample_euler(model, x, sigmas, disable=True),
        "k-diffusion lms": lambda: K.sample_lms(model, x, sigmas, disable=True),
        "deis_auto (tAB2 eps, VP time)": lambda: sample_deis(model, x, sigmas, disable=True),
        "deis_corrected (tAB1 data, corrected)": lambda: sample_deis(model, x, sigmas, disable=True,
                                                                     config="deis_corrected"),
        "deis_sde (tAB1 data, eta 1; draws noise)": lambda: sample_deis(
            model, x, sigmas, disable=True, config="deis_sde", model_time_map=schedules.SD15, extra_args={"seed": 0}),
        "deis tAB3": lambda: sample_deis(model, x, sigmas, disable=True, config=Config(time_map=schedules.SD15)),
    }
    comfy = comfy_samplers()
    if comfy is not None:
        comfy_deis, comfy_euler, comfy_ancestral = comfy
        samplers["ComfyUI euler"] = lambda: comfy_euler(model, x, sigmas, disable=True)
        samplers["ComfyUI euler_ancestral (draws noise)"] = lambda: comfy_ancestral(
            VEDenoiser(), x, sigmas, disable=True, extra_args={"seed": 0})
        samplers["ComfyUI built-in deis"] = lambda: comfy_deis(model, x, sigmas, disable=True)
    for run in samplers.values():  # warm-up, and fills the coefficient cache
        run()
    model_time, times = [], {name: [] for name in samplers}
    for _ in range(repeats):
        model_time.append(median_time(lambda: model(x, sigmas[0]), 5))
        for name, run in samplers.items():
            start = time.perf_counter()
            run()
            times[name].append((time.perf_counter() - start) / steps)
    denoiser = statistics.median(model_time)
    return denoiser, {name: statistics.median(t) - denoiser for name, t in times.items()}


class LiveTensorBytes(TorchDispatchMode):
    """Counts the bytes of tensors that ops create and that are still alive, and their peak."""

    def __init__(self):
        super().__init__()
        self.live = self.peak = 0
        self.storages = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in (out if isinstance(out, (tuple, list)) else (out,)):
            if not isinstance(tensor, torch.Tensor):
                continue
            storage = tensor.untyped_storage()
            key = storage.data_ptr()
            if key in self.storages or tensor.numel() == 0:
                continue  # an in-place op or a view: no new memory
            self.storages.add(key)
            self.live += storage.nbytes()
            self.peak = max(self.peak, self.live)
            weakref.finalize(tensor, self._release, key, storage.nbytes())
        return out

    def _release(self, key, size):
        self.storages.discard(key)
        self.live -= size


def peak_memory(steps):
    """Peak bytes of tensors each sampler allocates (its input excluded), and a cold plan's host peak."""
    x = torch.randn(1, 4, 128, 128, generator=torch.Generator().manual_seed(0))
    sigmas = torch.from_numpy(schedules.sd15_karras(steps)).float()
    model = lambda x, sigma, **kwargs: x * 0.9  # noqa: E731
    runs = {
        "k-diffusion euler": lambda: K.sample_euler(model, x, sigmas, disable=True),
        "k-diffusion lms": lambda: K.sample_lms(model, x, sigmas, disable=True),
        "deis_auto (tAB2 eps, VP time)": lambda: sample_deis(model, x, sigmas, disable=True),
        "deis_corrected (tAB1 data, corrected)": lambda: sample_deis(model, x, sigmas, disable=True,
                                                                     config="deis_corrected"),
        "deis tAB3": lambda: sample_deis(model, x, sigmas, disable=True, config=Config(time_map=schedules.SD15)),
        "deis rhoRK rk4": lambda: sample_deis_rk(model, x, sigmas, disable=True, tableau="rk4"),
    }
    peaks = {}
    for name, run in runs.items():
        run()  # plans are cached: this measures the step loop
        with LiveTensorBytes() as counter:
            out = run()
        del out
        peaks[name] = counter.peak
    tracemalloc.start()
    get_plan(sigmas, Config(time_map=schedules.SD15), cache=CoefficientCache())
    _, plan_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peaks, plan_peak, x.numel() * x.element_size()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown here")
    args = parser.parse_args()

    torch.set_grad_enabled(False)
    lines = [f"## Coefficients, {args.steps}-step SD1.5 karras schedule (the flow row: flow shift 3; "
             f"median of {args.repeats})", "",
             "| configuration | cold | cache hit |", "|---|---:|---:|"]
    for name, cold, warm in coefficient_times(args.steps, args.repeats):
        lines.append(f"| {name} | {cold * 1e3:.3f} ms | {'' if warm is None else f'{warm * 1e6:.1f} us'} |")

    denoiser, overhead = step_overheads(args.steps, args.repeats)
    lms = overhead["k-diffusion lms"]
    euler_name = "ComfyUI euler" if "ComfyUI euler" in overhead else "k-diffusion euler"
    euler = overhead[euler_name]
    lines += ["", f"## Per-step sampler overhead, 1x4x128x128 float32, denoiser `x * 0.9` "
              f"({denoiser * 1e6:.0f} us), {args.steps} steps, median of {args.repeats}", "",
              f"| sampler | overhead per step | / {euler_name} | / plain Euler | lms / this |",
              "|---|---:|---:|---:|---:|"]
    plain = overhead["plain Euler loop (4 ops/step)"]
    for name, value in overhead.items():
        lines.append(f"| {name} | {value * 1e6:.0f} us | {value / euler:.2f} | {value / plain:.2f} | "
                     f"{lms / value:.1f} |")
    lines += ["", "k-diffusion 0.1.1's `sample_euler` draws `randn_like(x)` every step even without churn, "
              "which is most of its overhead; the plain Euler loop is the floor without it."]

    peaks, plan_peak, latent_bytes = peak_memory(args.steps)
    lines += ["", f"## Peak memory of the step loop, 1x4x128x128 float32 ({latent_bytes // 1024} KiB a latent)", "",
              "| sampler | peak bytes of live tensors it allocates | in latents |", "|---|---:|---:|"]
    for name, peak in peaks.items():
        lines.append(f"| {name} | {peak // 1024} KiB | {peak / latent_bytes:.1f} |")
    lines += ["", f"A cold tAB3 plan on the SD1.5 table peaks at {plan_peak // 1024} KiB of host memory "
              f"(numpy, tracemalloc) while it is computed; the cached plan is a few KiB of floats."]
    text = "\n".join(lines)
    publish(text, args.out)


if __name__ == "__main__":
    main()
