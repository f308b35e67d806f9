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
from deis import sample_deis

CONFIGS = {
    "tAB3 (SD1.5 table)": dict(variant="tab", degree=3, time_map=schedules.SD15),
    "tAB3 (VP-linear)": dict(variant="tab", degree=3),
    "rhoAB3": dict(variant="rhoab", degree=3),
    "log-rho AB3": dict(variant="logrhoab", degree=3),
    "iPNDM": dict(variant="ipndm", degree=3),
    "iPNDM-v": dict(variant="ipndm_v", degree=3),
    "rhoRK rk4": dict(variant="rhork", tableau="rk4"),
}


def check_no_sync(device):
    sigmas = torch.from_numpy(schedules.sd15_karras(20)).float().to(device)
    x = torch.randn(2, 4, 64, 64, device=device) * sigmas[0]
    failures = []
    for name, options in CONFIGS.items():
        def model(x, sigma):
            torch.cuda.set_sync_debug_mode("error")  # armed from the first model call on
            return x * 0.9

        try:
            sample_deis(model, x, sigmas, disable=True, callback=lambda d: None, **options)
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
        "deis tAB3": lambda: sample_deis(model, x, sigmas, disable=True, time_map=schedules.SD15),
        "deis iPNDM": lambda: sample_deis(model, x, sigmas, disable=True, variant="ipndm"),
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
    print("| latent | dtype | euler | deis tAB3 | deis iPNDM | tAB3 / euler |")
    print("|---|---|---:|---:|---:|---:|")
    for label, shape in (("SDXL 1x4x128x128", (1, 4, 128, 128)), ("Flux 1x16x128x128", (1, 16, 128, 128))):
        for dtype in (torch.float16, torch.bfloat16):
            o = step_overhead(device, shape, dtype)
            print(f"| {label} | {str(dtype).split('.')[-1]} | {o['euler']:.0f} | {o['deis tAB3']:.0f} | "
                  f"{o['deis iPNDM']:.0f} | {o['deis tAB3'] / o['euler']:.2f} |")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
