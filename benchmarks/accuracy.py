"""Error against NFE for every DEIS variant and degree, beside k-diffusion's own samplers.

    python -m benchmarks.accuracy [--out benchmarks/results]   (writes accuracy.md and accuracy.png)

Problem: the exact Gaussian-mixture problem (benchmarks.problems.MIXTURE), reference by DOP853
at rtol 1e-12, in three settings:

* VE: k-diffusion's Karras schedule, sigma 0.002 to 80, then 0; tAB in the paper's VP time.
* discrete VP: the SD1.5 Karras schedule (sigma 0.0292 to 14.6), tAB in the SD1.5 table's time.
* flow, shift 3: ComfyUI's simple schedule from sigma = 1, in the flow form, tAB in t = sigma.

k-diffusion's samplers (euler, heun, lms, dpmpp_2m, dpmpp_3m_sde with eta = 0) come from the
k-diffusion package; in the flow setting they integrate dx/dsigma = (x - D) / sigma, which is
the same ODE. Every sampler gets the step count that spends the NFE budget (a Runge-Kutta or
Heun step costs several evaluations; their last step, into sigma = 0, costs one).
"""

import argparse
from pathlib import Path

import torch
import k_diffusion.sampling as K

from benchmarks import schedules
from benchmarks.problems import MIXTURE, relative_error
from deis import FlowTime, VPLinearTime, sample_deis

NFES = (5, 6, 8, 10, 12, 15, 20, 30, 50)
SETTINGS = {
    "VE, Karras 0.002-80": dict(schedule=lambda n: schedules.karras(n, 0.002, 80.0), form="ve",
                                time_map=VPLinearTime()),
    "discrete VP, SD1.5 Karras": dict(schedule=schedules.sd15_karras, form="ve", time_map=schedules.SD15),
    "flow, shift 3": dict(schedule=schedules.flow_shift, form="flow", time_map=FlowTime()),
}


def deis_rows():
    rows = {"DDIM (r=0)": (dict(variant="tab", degree=0), 1)}
    for variant, label in (("tab", "tAB"), ("rhoab", "rhoAB"), ("logrhoab", "log-rho AB"), ("ipndm", "iPNDM")):
        for degree in (1, 2, 3):
            rows[f"{label}{degree}"] = (dict(variant=variant, degree=degree), 1)
    for tableau, stages in (("heun2", 2), ("kutta3", 3), ("rk4", 4)):
        rows[f"rhoRK {tableau}"] = (dict(variant="rhork", tableau=tableau), stages)
    return rows


K_ROWS = {
    "k-diffusion euler": (lambda m, x, s: K.sample_euler(m, x, s, disable=True), 1),
    "k-diffusion heun": (lambda m, x, s: K.sample_heun(m, x, s, disable=True), 2),
    "k-diffusion lms": (lambda m, x, s: K.sample_lms(m, x, s, disable=True), 1),
    "k-diffusion dpmpp_2m": (lambda m, x, s: K.sample_dpmpp_2m(m, x, s, disable=True), 1),
    "k-diffusion dpmpp_3m_sde (eta 0)": (lambda m, x, s: K.sample_dpmpp_3m_sde(m, x, s, eta=0.0, disable=True), 1),
}


def steps_for(nfe, cost):
    """Steps whose evaluations fit ``nfe`` when every step but the last (into 0) costs ``cost``."""
    steps = (nfe - 1) // cost + 1
    return steps if (steps - 1) * cost + 1 == nfe or cost == 1 else None


def deis_runner(options, spec):
    if options["variant"] == "tab":
        options = dict(options, time_map=spec["time_map"])
    return lambda model, x, sigmas: sample_deis(model, x, sigmas, disable=True, parameterisation=spec["form"],
                                                **options)


def measure(nfes=NFES, shape=(2, 4, 8, 8), seed=0):
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    results = {}
    for setting, spec in SETTINGS.items():
        model = MIXTURE.denoiser(spec["form"])
        rows = {name: (deis_runner(options, spec), cost) for name, (options, cost) in deis_rows().items()}
        rows.update(K_ROWS)
        references = {}
        for nfe in nfes:
            for name, (run, cost) in rows.items():
                steps = steps_for(nfe, cost)
                if steps is None:
                    continue
                sigmas = torch.from_numpy(spec["schedule"](steps))
                x = noise if spec["form"] == "flow" else noise * sigmas[0]  # flow schedules start at sigma = 1
                if steps not in references:
                    references[steps] = MIXTURE.reference(x.numpy(), float(sigmas[0]), 0.0, spec["form"])
                results[(setting, name, nfe)] = relative_error(run(model, x, sigmas), references[steps])
    return results


def names_in(results):
    return list(dict.fromkeys(name for _, name, _ in results))


def markdown(results, nfes=NFES):
    lines = []
    for setting in SETTINGS:
        lines += ["", f"### {setting}", "", "| sampler | " + " | ".join(f"NFE {n}" for n in nfes) + " |",
                  "|---|" + "---:|" * len(nfes)]
        best = {n: min(v for (s, _, m), v in results.items() if s == setting and m == n) for n in nfes}
        for name in names_in(results):
            cells = []
            for n in nfes:
                v = results.get((setting, name, n))
                cells.append("" if v is None else f"**{v:.2e}**" if v == best[n] else f"{v:.2e}")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(results, path, nfes=NFES):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(SETTINGS), figsize=(6 * len(SETTINGS), 5.5), sharey=True)
    shown = [n for n in names_in(results) if n.endswith("3") or n.startswith(("k-diffusion", "DDIM"))]
    for ax, setting in zip(axes, SETTINGS):
        ax.set_prop_cycle(color=plt.cm.tab20.colors)
        for name in shown:
            points = [(n, results[(setting, name, n)]) for n in nfes if (setting, name, n) in results]
            if len(points) < 3:
                continue
            style = "--" if name.startswith("k-diffusion") else "-"
            ax.loglog(*zip(*points), style, marker="o", markersize=3, label=name)
        ax.set_title(setting)
        ax.set_xlabel("NFE")
        ax.set_xticks(nfes, [str(n) for n in nfes])
        ax.minorticks_off()
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("relative error at sigma = 0")
    axes[-1].legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    results = measure()
    args.out.mkdir(parents=True, exist_ok=True)
    title = "## Relative error at sigma = 0 against NFE, exact Gaussian-mixture problem; best in bold"
    text = title + "\n" + markdown(results)
    (args.out / "accuracy.md").write_text(text + "\n")
    plot(results, args.out / "accuracy.png")
    print(text)
    print(f"\nwrote {args.out / 'accuracy.md'} and {args.out / 'accuracy.png'}")


if __name__ == "__main__":
    main()
