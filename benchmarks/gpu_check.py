"""On a CUDA device: no host-device synchronisation in any DEIS step loop, and per-step overhead.

    python -m benchmarks.gpu_check

1. Every variant runs under ``torch.cuda.set_sync_debug_mode("error")`` from its first model
   call to its return: any synchronising operation in the step loop raises.
2. Per-step overhead against k-diffusion's ``sample_euler`` with a one-op denoiser, on
   SDXL-sized (1x4x128x128) and Flux-sized (1x16x128x128) latents in float16 and bfloat16,
   medians of repeated runs timed with CUDA events.

Without CUDA it prints one line and exits 0.
"""

import statistics
import sys

import torch

from benchmarks import schedules
from deis import Config, sample_deis, sample_deis_rk

#: The dropdown entries in both forms, the paper's tAB3 and rhoRK (``sample_deis_rk`` with a tableau).
CONFIGS = {
    "deis_auto, SD-style": dict(),
    "deis_auto, flow form": dict(parameterisation="flow"),
    "deis_corrected, SD-style": dict(config="deis_corrected"),
    "deis_corrected, flow form": dict(config="deis_corrected", parameterisation="flow"),
    "deis_sde": dict(config="deis_sde", model_time_map=schedules.SD15, extra_args={"seed": 0}),
    "tAB3 (SD1.5 table)": dict(config=Config(time_map=schedules.SD15)),
    "rhoRK rk4": dict(tableau="rk4"),
}


def check_no_sync(device):
    failures = []
    for name, options in CONFIGS.items():
        flow = options.get("parameterisation") == "flow"
        sigmas = torch.from_numpy(schedules.flow_shift(20) if flow else schedules.sd15_karras(20)).float().to(device)
        x = torch.randn(2, 4, 64, 64, device=device) * sigmas[0]
        def model(x, sigma):
            torch.cuda.set_sync_debug_mode("error")  # armed from the first model call on
            return x * 0.9

        try:
            options = dict(options)
            extra_args = options.pop("extra_args", None)
            sampler = sample_deis_rk if "tableau" in options else sample_deis
            sampler(model, x, sigmas, disable=True, callback=lambda d: None, extra_args=extra_args, **options)
            status = "ok"
        except RuntimeError as error:
            status = f"SYNCHRONISES: {error}"
            failures.append(name)
        finally:
            torch.cuda.set_sync_debug_mode(0)
        print(f"  {name}: {status}")
    return failures


def step_overhead(device, shape, dtype, steps=30, repeats=15):
    import k_diffusion.sampling as K

    sigmas = torch.from_numpy(schedules.sd15_karras(steps)).float().to(device)
    x = torch.randn(shape, device=device, dtype=dtype)
    model = lambda x, sigma, **kwargs: x * 0.9  # noqa: E731
    runs = {
        "euler": lambda: K.sample_euler(model, x, sigmas, disable=True),
        "deis_auto": lambda: sample_deis(model, x, sigmas, disable=True),
        "deis tAB3": lambda: sample_deis(model, x, sigmas, disable=True, config=Config(time_map=schedules.SD15)),
    }
    for run in runs.values():
        run()
    times = {name: [] for name in runs}
    model_times = []
    for _ in range(repeats):
        for name, run in list(runs.items()) + [("model", lambda: [model(x, sigmas[0]) for _ in range(steps)])]:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            run()
            end.record()
            torch.cuda.synchronize()
            (model_times if name == "model" else times[name]).append(start.elapsed_time(end) / steps * 1e3)
    model_us = statistics.median(model_times)
    return {name: statistics.median(t) - model_us for name, t in times.items()}


def main():
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; skipped")
        return 0
    device = torch.device("cuda")
    print(f"device: {torch.cuda.get_device_name(device)}, torch {torch.__version__}")
    print("1. step loops under torch.cuda.set_sync_debug_mode('error'):")
    failures = check_no_sync(device)
    print("2. per-step overhead (us, median; denoiser x * 0.9 subtracted):")
    print("| latent | dtype | euler | deis_auto | deis tAB3 | deis_auto / euler |")
    print("|---|---|---:|---:|---:|---:|")
    for label, shape in (("SDXL 1x4x128x128", (1, 4, 128, 128)), ("Flux 1x16x128x128", (1, 16, 128, 128))):
        for dtype in (torch.float16, torch.bfloat16):
            o = step_overhead(device, shape, dtype)
            print(f"| {label} | {str(dtype).split('.')[-1]} | {o['euler']:.0f} | {o['deis_auto']:.0f} | "
                  f"{o['deis tAB3']:.0f} | {o['deis_auto'] / o['euler']:.2f} |")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
