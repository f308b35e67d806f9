"""Train a digits denoiser deterministically and save it as safetensors.

    python -m benchmarks.train_digits [--kind ve|flow|class] [--steps 20000] [--out PATH]

--kind flow trains the flow-matching model instead (``x = (1 - s) x0 + s eps``, velocity loss),
with s drawn half uniformly in (0, 1) and half as s = rho / (1 + rho) with log rho uniform over
[log 0.002, log 80], so that the low-noise end the samplers finish in is trained as well.
--kind class trains the EDM-style model with the digit's class as an input, replaced by "no class"
(``benchmarks.digits.NO_CLASS``) in a random ``LABEL_DROPOUT`` of the batch, as classifier-free guidance
trains image models: one network gives the conditional and the unconditional prediction.

EDM training (Karras et al. 2022) with k-diffusion's Denoiser preconditioning, but with log sigma
uniform over [log 0.002, log 80], the whole range the samplers visit (EDM's log-normal leaves
its ends untrained, and a sampler's stage there then meets an arbitrary output), Adam with a
one-cycle learning rate, and an EMA of the weights, which is what is saved. Seeded, with
deterministic algorithms and 2 threads: the same run makes the same file.
"""

import argparse
import copy
import hashlib
import time

import math

import torch

from benchmarks.digits import DEFAULT_WEIGHTS, MAKERS, NO_CLASS, load_data, load_labels

LOG_SIGMA_MIN, LOG_SIGMA_MAX = math.log(0.002), math.log(80.0)
#: The share of a class-conditional batch trained without its class.
LABEL_DROPOUT = 0.15


def noise_levels(kind, batch, generator):
    """Training sigmas (the EDM-style kinds) or flow times s (flow)."""
    log_rho = torch.rand(batch, generator=generator) * (LOG_SIGMA_MAX - LOG_SIGMA_MIN) + LOG_SIGMA_MIN
    if kind != "flow":
        return log_rho.exp()
    uniform = torch.rand(batch, generator=generator)
    return torch.where(torch.arange(batch) % 2 == 0, uniform, torch.sigmoid(log_rho))


def train(steps, batch=256, lr=2e-3, ema_decay=0.999, seed=0, log_every=1000, kind="ve"):
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(2)
    data, labels = load_data(), load_labels()
    sigma_data = float(data.std())
    model = MAKERS[kind](sigma_data)
    ema = copy.deepcopy(model.inner_model).requires_grad_(False)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=steps, pct_start=0.05)
    generator = torch.Generator().manual_seed(seed)
    start = time.time()
    for step in range(1, steps + 1):
        rows = torch.randint(len(data), (batch,), generator=generator)
        x0 = data[rows]
        sigma = noise_levels(kind, batch, generator)
        noise = torch.randn(x0.shape, generator=generator)
        if kind == "class":
            dropped = torch.rand(batch, generator=generator) < LABEL_DROPOUT
            label = torch.where(dropped, torch.full_like(labels[rows], NO_CLASS), labels[rows])
            loss = model.loss(x0, noise, sigma, label=label).mean()
        else:
            loss = model.loss(x0, noise, sigma).mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        with torch.no_grad():
            for p_ema, p in zip(ema.parameters(), model.inner_model.parameters()):
                p_ema.lerp_(p, 1 - ema_decay)
        if step % log_every == 0:
            print(f"step {step}/{steps}  loss {loss.item():.4f}  {time.time() - start:.0f} s", flush=True)
    return ema, sigma_data


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--kind", choices=tuple(MAKERS), default="ve")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    args.out = args.out or str(DEFAULT_WEIGHTS[args.kind])
    from safetensors.torch import save_file

    ema, sigma_data = train(args.steps, kind=args.kind)
    state = {k: v.contiguous() for k, v in ema.state_dict().items()}
    state["sigma_data"] = torch.tensor(sigma_data)
    save_file(state, args.out)
    digest = hashlib.sha256(open(args.out, "rb").read()).hexdigest()[:16]
    print(f"wrote {args.out} (sha256 {digest}...)")


if __name__ == "__main__":
    main()
