"""The demo: DEIS beside DDIM/Euler and DPM-Solver++(2M) on the two bundled learned models, at 8, 10 and 12 NFE.

    python -m benchmarks.demo [--out out]

Two small learned denoisers trained on scikit-learn's 8x8 digits (benchmarks/weights): an
SD-style (VE) model, sampled with the karras schedule on SD1.5's sigma range, and a
flow-matching model, sampled with ComfyUI's beta schedule on a flow model of shift 3: the
README's picks, with its recommended deis_corrected first. Each sampler starts from the same 1,000 noises. The table
gives the error against the exact solution of the same ODE (DOP853), and the Frechet distance
of the samples to the real digits in pixel space; the pictures (out/demo_digits.png,
out/demo_flow_digits.png) show the first samples and their error maps. No ComfyUI is needed:
DEIS runs from its core, DPM-Solver++(2M) as k-diffusion writes it (and its flow-form version,
as ComfyUI runs it on flow models).
"""

import argparse
import time
from pathlib import Path

import torch
import k_diffusion.sampling as K

from benchmarks import schedules
from benchmarks.digits import load_data, load_denoiser
from benchmarks.families import reference_solution
from benchmarks.pictures import draw, relative_l2
from benchmarks.quality import frechet_distance
from deis import Config, sample_deis, sample_deis_corrected

NFES = (8, 10, 12)
SD15_SIGMA_RANGE = (0.0292, 14.6146)


def dpmpp_2m_flow(model, x, sigmas):
    """DPM-Solver++(2M) on ``x = (1 - s) x0 + s eps``, in ``lambda = log((1 - s) / s)``, as ComfyUI runs it."""
    old, h_last, s_in = None, None, x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        if s_next == 0:
            x = denoised
        else:
            h = torch.log(torch.tensor((1 - s_next) / s_next)) - (torch.log(torch.tensor((1 - s) / s)) if s < 1
                                                                     else -torch.tensor(float("inf")))
            if old is None or not torch.isfinite(h_last):
                d = denoised
            else:
                r = h_last / h
                d = (1 + 1 / (2 * r)) * denoised - 1 / (2 * r) * old
            x = (s_next / s) * x - (1 - s_next) * torch.expm1(-h) * d
            h_last = h
        old = denoised
    return x


SETTINGS = {
    "digits": dict(
        kind="ve", title="learned SD-style digits model, karras schedule (SD1.5's sigma range)",
        schedule=lambda n: K.get_sigmas_karras(n, *SD15_SIGMA_RANGE),
        samplers={
            "DEIS corrected (deis_corrected)": lambda m, x, s: sample_deis_corrected(m, x, s, disable=True),
            "DEIS uncorrected (deis_auto)": lambda m, x, s: sample_deis(m, x, s, disable=True),
            "DEIS tAB3 (the paper's)": lambda m, x, s: sample_deis(m, x, s, disable=True, config=Config()),
            "DDIM / Euler": lambda m, x, s: K.sample_euler(m, x, s, disable=True),
            "DPM-Solver++(2M)": lambda m, x, s: K.sample_dpmpp_2m(m, x, s, disable=True),
        }),
    "flow-digits": dict(
        kind="flow", title="learned flow-matching digits model, beta schedule (shift 3)",
        schedule=lambda n: torch.from_numpy(schedules.flow_beta(n)).float(),
        samplers={
            "DEIS corrected (deis_corrected)": lambda m, x, s: sample_deis_corrected(m, x, s, disable=True,
                                                                                     parameterisation="flow"),
            "DEIS uncorrected (deis_auto)": lambda m, x, s: sample_deis(m, x, s, disable=True,
                                                                       parameterisation="flow"),
            "DEIS tAB3 (the paper's)": lambda m, x, s: sample_deis(m, x, s, disable=True, parameterisation="flow",
                                                                   config=Config()),
            "DDIM / Euler": lambda m, x, s: sample_deis(m, x, s, disable=True, parameterisation="flow",
                                                        config=Config(degree=0)),
            "DPM-Solver++(2M)": lambda m, x, s: dpmpp_2m_flow(m, x, s),
        }),
}


@torch.no_grad()
def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("out"))
    parser.add_argument("--samples", type=int, default=1000)
    args = parser.parse_args()
    torch.set_num_threads(2)
    started = time.perf_counter()
    data = load_data()
    print(__doc__.split("\n\n")[2].replace("\n", " "), "\n")
    print("| model | sampler | " + " | ".join(f"error NFE {n} | FD NFE {n}" for n in NFES) + " |")
    print("|---|---|" + "---:|---:|" * len(NFES))
    for name, setting in SETTINGS.items():
        model = load_denoiser(kind=setting["kind"])
        noise = torch.randn(args.samples, 1, 8, 8, generator=torch.Generator().manual_seed(0))
        start_sigma = float(setting["schedule"](NFES[0])[0])
        start = noise * start_sigma if setting["kind"] == "ve" else noise
        exact = torch.from_numpy(reference_solution(load_denoiser(kind=setting["kind"], dtype=torch.float64),
                                                    start.double().numpy(), start_sigma, rtol=1e-8)).float()
        rows = {}
        for label, sampler in setting["samplers"].items():
            rows[label], cells = {}, []
            for nfe in NFES:
                out = sampler(model, start, setting["schedule"](nfe))
                rows[label][nfe] = out.reshape(len(out), 64).double().numpy()
                cells += [f"{relative_l2(out, exact):.3f}", f"{frechet_distance(out, data):.3f}"]
            print(f"| {name} | {label} | " + " | ".join(cells) + " |")
        path = args.out / f"demo_{name.replace('-', '_')}.png"
        draw(setting["title"], exact.reshape(len(exact), 64).double().numpy(), rows, path, nfes=NFES)
        print(f"| {name} | exact ODE solution | FD {frechet_distance(exact, data):.3f} (the model's own floor) |")
    print(f"\nwrote {args.out / 'demo_digits.png'} and {args.out / 'demo_flow_digits.png'} "
          f"in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
