"""The demo: DEIS against k-diffusion's samplers on an exact Gaussian-mixture problem.

    python -m benchmarks.demo

Each sampler integrates the probability-flow ODE of a 3-component Gaussian mixture, whose
denoiser is exact, from the same noise along the SD1.5 Karras schedule (sigma 14.6 to 0.03,
then 0). The table shows the relative error of the final sample against a DOP853 solution
at rtol 1e-12, for 5, 10 and 20 model evaluations (NFE).
"""

import torch
import k_diffusion.sampling as K

from benchmarks import schedules
from benchmarks.problems import MIXTURE, relative_error
from deis import sample_deis

NFES = (5, 10, 20)


def samplers():
    table = schedules.SD15
    return {
        "DEIS tAB3 (SD1.5 time)": lambda m, x, s: sample_deis(m, x, s, disable=True, time_map=table),
        "DEIS tAB2 (SD1.5 time)": lambda m, x, s: sample_deis(m, x, s, disable=True, degree=2, time_map=table),
        "DEIS log-rho AB3": lambda m, x, s: sample_deis(m, x, s, disable=True, variant="logrhoab"),
        "DEIS rhoAB3": lambda m, x, s: sample_deis(m, x, s, disable=True, variant="rhoab"),
        "DEIS iPNDM": lambda m, x, s: sample_deis(m, x, s, disable=True, variant="ipndm"),
        "DDIM (= DEIS r=0)": lambda m, x, s: sample_deis(m, x, s, disable=True, degree=0),
        "k-diffusion euler": lambda m, x, s: K.sample_euler(m, x, s, disable=True),
        "k-diffusion lms": lambda m, x, s: K.sample_lms(m, x, s, disable=True),
        "k-diffusion dpmpp_2m": lambda m, x, s: K.sample_dpmpp_2m(m, x, s, disable=True),
    }


def main():
    torch.manual_seed(0)
    model = MIXTURE.denoiser()
    noise = torch.randn(4, 4, 32, 32, dtype=torch.float64)
    results = {}
    for nfe in NFES:
        sigmas = torch.from_numpy(schedules.sd15_karras(nfe))
        x = noise * sigmas[0]
        exact = MIXTURE.reference(x.numpy(), float(sigmas[0]), 0.0)
        for name, run in samplers().items():
            results.setdefault(name, []).append(relative_error(run(model, x, sigmas), exact))

    print(__doc__.split("\n\n")[2].replace("\n", " "))
    print()
    print("| sampler | " + " | ".join(f"NFE {n}" for n in NFES) + " |")
    print("|---|" + "---:|" * len(NFES))
    for name, errors in results.items():
        print(f"| {name} | " + " | ".join(f"{e:.2e}" for e in errors) + " |")


if __name__ == "__main__":
    main()
