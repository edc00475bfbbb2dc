"""Exercise 4's grading-mode limits, measured: the notebook's training run with autograd's gradients.

``python -m grader.calibration calibrate``
trains several seeds for ``GRADING_STEPS`` steps with ``loss.backward()`` (a correct manual backward
matches it to float32 rounding), prints each seed's train and val loss as the grader recomputes them
(``grader.training.split_losses``) and the limits they suggest; ``grader.training.GRADING_LIMITS``
records the measurement. Instructor-side: the notebooks never import this module.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import torch
import torch.nn.functional as F

from .model import PARAM_NAMES, sample_batch
from .training import (
    BATCH_SIZE,
    DECAY_STEP,
    GRADING_LIMITS,
    GRADING_STEPS,
    SEED,
    initialize,
    private_dataset,
    split_losses,
)


def train(seed: int = SEED, steps: int = GRADING_STEPS, dataset=None) -> list[torch.Tensor]:
    """The notebook's training loop with autograd's gradients (loss.backward()); returns the parameters.

    The same initialization, minibatches (one generator seeded with ``seed``), forward pass and
    learning rate schedule as the notebook, so that a correct manual backward follows the same run.
    """
    ds = dataset if dataset is not None else private_dataset()
    p, g = initialize(seed, ds)
    parameters = [p[k].requires_grad_() for k in PARAM_NAMES]
    C, W1, b1, W2, b2, bngain, bnbias = parameters
    n = BATCH_SIZE
    for i in range(steps):
        Xb, Yb = sample_batch(ds.Xtr, ds.Ytr, n, generator=g)
        emb = C[Xb]
        embcat = emb.view(emb.shape[0], -1)
        hprebn = embcat @ W1 + b1
        bnmean = hprebn.mean(0, keepdim=True)
        bndiff = hprebn - bnmean
        bnvar = 1 / (n - 1) * (bndiff**2).sum(0, keepdim=True)
        bnraw = bndiff * (bnvar + 1e-5) ** -0.5
        h = torch.tanh(bngain * bnraw + bnbias)
        loss = F.cross_entropy(h @ W2 + b2, Yb)
        for q in parameters:
            q.grad = None
        loss.backward()
        lr = 0.1 if i < DECAY_STEP else 0.01
        with torch.no_grad():
            for q in parameters:
                q.add_(q.grad, alpha=-lr)
    return [q.detach() for q in parameters]


def calibrate(seeds: int = 8, steps: int = GRADING_STEPS, out=sys.stdout) -> dict[str, list[float]]:
    """Train ``seeds`` runs of ``steps`` steps with autograd; print each seed's losses and the limits they suggest."""
    torch.set_num_threads(1)
    runs = [SEED] + list(range(1, seeds))
    measured: dict[str, list[float]] = {"train": [], "val": []}
    print(f"{steps:,} steps per run, with autograd's gradients; {torch.get_num_threads()} thread", file=out)
    for seed in runs:
        start = time.perf_counter()
        losses = split_losses(train(seed, steps))
        for k in measured:
            measured[k].append(losses[k])
        print(
            f"seed {seed:>10d}: train {losses['train']:.4f}  val {losses['val']:.4f}  "
            f"({time.perf_counter() - start:.1f} s)",
            file=out,
            flush=True,
        )
    for k, values in measured.items():
        worst, spread = max(values), max(values) - min(values)
        suggested = math.ceil((worst + spread) * 100) / 100
        print(
            f"{k:5s}: notebook seed {values[0]:.4f}, {min(values):.4f} .. {worst:.4f} (spread {spread:.4f}); "
            f"suggested limit {suggested:.2f}, in use {GRADING_LIMITS[k]}",
            file=out,
        )
    return measured


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m grader.calibration", description="Exercise 4's grading-mode limits."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    cal = sub.add_parser("calibrate", help="train several seeds for GRADING_STEPS steps and print their losses")
    cal.add_argument("--seeds", type=int, default=8)
    cal.add_argument("--steps", type=int, default=GRADING_STEPS)
    args = parser.parse_args(argv)
    calibrate(args.seeds, args.steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
