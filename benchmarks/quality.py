"""Sample quality on the learned digits denoiser, like the paper's FID-against-NFE table.

    python -m benchmarks.quality [--samples 2000] [--out benchmarks/results/quality.md]

For each sampler and NFE, from the same noise (2,000 samples, sigma 80 to 0.002, then 0), on two
schedules: the paper's, uniform in sqrt(t) of the VP time (beta 0.1 to 20), and k-diffusion's
EDM/Karras schedule (rho 7):

* (a) the error against a 1,000-step tAB3 reference on the paper's schedule (relative L2 over
  all samples); the reference's own accuracy is shown by comparing it with 1,000 steps of tAB2
  on the EDM schedule;
* (b) the Frechet distance of the samples to the 1,797 digits, in pixel space (64-d), a
  fixed feature space. The reference's distance is the floor the model itself sets.
"""

import argparse
from pathlib import Path

import numpy as np
import torch
import k_diffusion.sampling as K

from benchmarks import schedules
from benchmarks.report import publish
from benchmarks.digits import load_data, load_denoiser
from deis import Config, VPLinearTime, sample_deis, sample_deis_rk
from deis.schedules import time_uniform

NFES = (5, 10, 15, 20, 50)
SCHEDULES = {
    "DEIS time-quadratic": lambda n: time_uniform(n, 0.002, 80.0, VPLinearTime()),
    "EDM Karras": schedules.edm,
}


def deis(tableau=None, **options):
    """The paper's tAB3 with ``options`` changed (``Config``), or rhoRK with ``tableau``."""
    if tableau is not None:
        return lambda model, x, sigmas: sample_deis_rk(model, x, sigmas, disable=True, tableau=tableau)
    return lambda model, x, sigmas: sample_deis(model, x, sigmas, disable=True, config=Config(**options))


K_ROWS = {
    "k-diffusion euler": (lambda m, x, s: K.sample_euler(m, x, s, disable=True), 1),
    "k-diffusion heun": (lambda m, x, s: K.sample_heun(m, x, s, disable=True), 2),
    "k-diffusion lms": (lambda m, x, s: K.sample_lms(m, x, s, disable=True), 1),
    "k-diffusion dpmpp_2m": (lambda m, x, s: K.sample_dpmpp_2m(m, x, s, disable=True), 1),
}


def steps_for(nfe, cost):
    """Steps whose evaluations fit ``nfe`` when every step but the last (into 0) costs ``cost``."""
    steps = (nfe - 1) // cost + 1
    return steps if (steps - 1) * cost + 1 == nfe or cost == 1 else None


SAMPLERS = {
    "deis_auto (tAB2 eps, VP time)": (deis(), 1),
    "DDIM (DEIS r=0)": (deis(variant="tab", degree=0), 1),
    "DEIS tAB2": (deis(variant="tab", degree=2), 1),
    "DEIS tAB3 (the paper's)": (deis(variant="tab", degree=3), 1),
    "DEIS tAB2 v": (deis(variant="tab", degree=2, integrand="v"), 1),
    "DEIS log-rho AB3": (deis(variant="logrhoab", degree=3), 1),
    "DEIS iPNDM": (deis(variant="ipndm", degree=3), 1),
    "DEIS rhoRK kutta3": (deis(tableau="kutta3"), 3),
    **K_ROWS,
}


def frechet_distance(a, b):
    """The Frechet distance of two samples' Gaussian fits.

    ``tr sqrt(C_a C_b)`` is taken as ``tr sqrt(S C_b S)`` with ``S = C_a^(1/2)``: a symmetric
    positive semi-definite square root, well defined where a covariance is singular (the digits
    have pixels that are always blank).
    """
    a, b = np.asarray(a, dtype=np.float64).reshape(len(a), -1), np.asarray(b, dtype=np.float64).reshape(len(b), -1)
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    values, vectors = np.linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(values.clip(min=0))) @ vectors.T
    cross = np.sqrt(np.linalg.eigvalsh(root_a @ cov_b @ root_a).clip(min=0)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * cross)


def relative_l2(x, reference):
    return float((x - reference).norm() / reference.norm())


@torch.no_grad()
def measure(samples=2000, seed=0, nfes=NFES):
    model = load_denoiser()
    data = load_data()
    noise = torch.randn(samples, 1, 8, 8, generator=torch.Generator().manual_seed(seed))

    def run(sampler, sigmas):
        sigmas = torch.from_numpy(sigmas).float()
        return sampler(model, noise * sigmas[0], sigmas)

    reference = run(deis(variant="tab", degree=3), SCHEDULES["DEIS time-quadratic"](1000))
    check = run(deis(variant="tab", degree=2), schedules.edm(1000))
    results = {"reference": (relative_l2(check, reference), frechet_distance(reference, data))}
    for schedule, make in SCHEDULES.items():
        for name, (sampler, cost) in SAMPLERS.items():
            for nfe in nfes:
                steps = steps_for(nfe, cost)
                if steps is not None:
                    out = run(sampler, make(steps))
                    results[(schedule, name, nfe)] = (relative_l2(out, reference), frechet_distance(out, data))
    return results


def markdown(results, nfes=NFES):
    ref_error, ref_fd = results["reference"]
    lines = [f"1,000-step tAB3 reference (time-quadratic): {ref_error:.1e} from 1,000 steps of tAB2 on the EDM "
             f"schedule; its Frechet distance to the data is {ref_fd:.3f} (the model's own floor).", ""]
    for schedule in SCHEDULES:
        for which, title in ((0, "(a) relative error against the reference"), (1, "(b) Frechet distance to the data")):
            lines += [f"### {schedule} schedule: {title}", "",
                      "| sampler | " + " | ".join(f"NFE {n}" for n in nfes) + " |", "|---|" + "---:|" * len(nfes)]
            best = {n: min(v[which] for k, v in results.items() if k != "reference" and k[0] == schedule
                           and k[2] == n) for n in nfes}
            for name in SAMPLERS:
                cells = []
                for n in nfes:
                    value = results.get((schedule, name, n))
                    text = "" if value is None else f"{value[which]:.2e}" if which == 0 else f"{value[which]:.3f}"
                    cells.append(f"**{text}**" if value is not None and value[which] == best[n] else text)
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
            lines.append("")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(2)
    text = "## Learned digits denoiser: quality against NFE\n\n" + markdown(measure(args.samples))
    publish(text, args.out)


if __name__ == "__main__":
    main()
