"""Benchmark of Exercise 4's training step (instructor-side; not collected by pytest, and not a timed test).

    .venv/bin/python tests/bench_training.py            # the three steps, on the same batches
    .venv/bin/python tests/bench_training.py --full     # and the full 200,000-step run of the reference

In one process, from the same initialization and on the same minibatches, it times three training steps
(forward, backward, update):

* ``lecture``:   the lecture's loop: its forward pass (``hprebn.var``), its manual backward with the
                 double loop for dC and ``dlogits[range(n), Yb]``, and ``p.data += -lr * grad``;
* ``reference``: the notebook's loop with the reference ``manual_backward`` (the solution in source/);
* ``autograd``:  the notebook's forward pass with autograd on, ``loss.backward()``, the same update.

It prints microseconds per step (the best of several rounds, and the backward pass alone) and the ratios.
The reference must beat autograd (ratio below 1) and the lecture's loop by at least 2.5x. ``--full`` runs
the notebook's 200,000 steps with the reference, as a student's full run does, and prints the wall time
and the losses the grader recomputes (must be under 2 minutes, train <= 2.09, val <= 2.13).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import nbformat
import torch
import torch.nn.functional as F

from grader import training
from grader.instructor import course
from grader.model import PARAM_NAMES

SOURCE = Path(course.REPO) / "source" / course.ASSIGNMENT / "04_full_training.ipynb"


def reference_backward():
    """The solution's manual_backward, read from the source notebook (instructor-side)."""
    ns: dict = {"torch": torch, "F": F}
    exec(course.solutions(nbformat.read(SOURCE, as_version=4))["answer_manual_backward"], ns)
    return ns["manual_backward"]


def machine() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    load = os.getloadavg()
    return (
        f"{os.cpu_count()} cores (nproc), {model}; torch {torch.__version__}, {torch.get_num_threads()} thread; "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )


def fresh():
    return [p.clone() for p in training.initial_parameters()]


def lecture_step(params, Xb, Yb, lr, timer):
    """The lecture's exercise-4 loop body, as written in the lecture."""
    C, W1, b1, W2, b2, bngain, bnbias = params
    n = Xb.shape[0]
    emb = C[Xb]
    embcat = emb.view(emb.shape[0], -1)
    hprebn = embcat @ W1 + b1
    bnmean = hprebn.mean(0, keepdim=True)
    bnvar = hprebn.var(0, keepdim=True, unbiased=True)
    bnvar_inv = (bnvar + 1e-5) ** -0.5
    bnraw = (hprebn - bnmean) * bnvar_inv
    hpreact = bngain * bnraw + bnbias
    h = torch.tanh(hpreact)
    logits = h @ W2 + b2
    loss = F.cross_entropy(logits, Yb)
    t = time.perf_counter()
    dlogits = F.softmax(logits, 1)
    dlogits[range(n), Yb] -= 1
    dlogits /= n
    dh = dlogits @ W2.T
    dW2 = h.T @ dlogits
    db2 = dlogits.sum(0)
    dhpreact = (1.0 - h**2) * dh
    dbngain = (bnraw * dhpreact).sum(0, keepdim=True)
    dbnbias = dhpreact.sum(0, keepdim=True)
    dhprebn = (
        bngain * bnvar_inv / n * (n * dhpreact - dhpreact.sum(0) - n / (n - 1) * bnraw * (dhpreact * bnraw).sum(0))
    )
    dembcat = dhprebn @ W1.T
    dW1 = embcat.T @ dhprebn
    db1 = dhprebn.sum(0)
    demb = dembcat.view(emb.shape)
    dC = torch.zeros_like(C)
    for k in range(Xb.shape[0]):
        for j in range(Xb.shape[1]):
            ix = Xb[k, j]
            dC[ix] += demb[k, j]
    grads = [dC, dW1, db1, dW2, db2, dbngain, dbnbias]
    timer[0] += time.perf_counter() - t
    for p, grad in zip(params, grads, strict=True):
        p.data += -lr * grad
    return loss


def notebook_forward(params, Xb, Yb):
    """The notebook's forward pass (source/backprop_ninja/04_full_training.ipynb, cell `train`)."""
    C, W1, b1, W2, b2, bngain, bnbias = params
    n = Xb.shape[0]
    emb = C[Xb]
    embcat = emb.view(emb.shape[0], -1)
    hprebn = embcat @ W1 + b1
    bnmean = hprebn.mean(0, keepdim=True)
    bndiff = hprebn - bnmean
    bnvar = 1 / (n - 1) * (bndiff**2).sum(0, keepdim=True)
    bnvar_inv = (bnvar + 1e-5) ** -0.5
    bnraw = bndiff * bnvar_inv
    hpreact = bngain * bnraw + bnbias
    h = torch.tanh(hpreact)
    logits = h @ W2 + b2
    loss = F.cross_entropy(logits, Yb)
    return loss, (logits, Yb, h, W2, bnraw, bngain, bnvar_inv, embcat, W1, Xb, C)


def reference_step(manual_backward):
    def step(params, Xb, Yb, lr, timer):
        loss, inputs = notebook_forward(params, Xb, Yb)
        t = time.perf_counter()
        grads = manual_backward(*inputs)
        timer[0] += time.perf_counter() - t
        for p, grad in zip(params, grads, strict=True):
            p.add_(grad, alpha=-lr)
        return loss

    return step


def autograd_step(params, Xb, Yb, lr, timer):
    with torch.enable_grad():
        for p in params:
            p.requires_grad_(True)
            p.grad = None
        loss, _ = notebook_forward(params, Xb, Yb)
        t = time.perf_counter()
        loss.backward()
        timer[0] += time.perf_counter() - t
    for p in params:
        p.add_(p.grad, alpha=-lr)
    return loss.detach()


def bench(steps: int, rounds: int) -> dict[str, tuple[float, float]]:
    ds = training.private_dataset()
    g = torch.Generator().manual_seed(training.SEED)
    batches = [training.sample_batch(ds.Xtr, ds.Ytr, training.BATCH_SIZE, g) for _ in range(steps)]
    variants = {"lecture": lecture_step, "reference": reference_step(reference_backward()), "autograd": autograd_step}
    best: dict[str, tuple[float, float]] = {}
    finals: dict[str, float] = {}
    for _ in range(rounds):
        for name, step in variants.items():  # interleaved, so that a busy moment hits all three
            params, timer = fresh(), [0.0]
            start = time.perf_counter()
            with torch.no_grad():
                for Xb, Yb in batches:
                    loss = step(params, Xb, Yb, 0.1, timer)
            total = (time.perf_counter() - start) / steps * 1e6
            backward = timer[0] / steps * 1e6
            if name not in best or total < best[name][0]:
                best[name] = (total, backward)
            finals[name] = loss.item()
    print(
        f"last-batch loss after {steps} steps (the same run, three ways): "
        + ", ".join(f"{k} {v:.4f}" for k, v in finals.items())
    )
    return best


def full_run() -> bool:
    """The notebook's 200,000 steps with the reference, as in a student's full run."""
    manual_backward = reference_backward()
    step = reference_step(manual_backward)
    ds = training.private_dataset()
    p, g = training.initialize(training.SEED, ds)  # as the notebook: the initialization, then every batch
    params = [p[k] for k in PARAM_NAMES]
    bar = training.progress(range(training.FULL_STEPS))
    timer = [0.0]
    start = time.perf_counter()
    with torch.no_grad():
        for i in bar:
            Xb, Yb = training.sample_batch(ds.Xtr, ds.Ytr, training.BATCH_SIZE, g)
            lr = 0.1 if i < training.DECAY_STEP else 0.01
            step(params, Xb, Yb, lr, timer)
    bar.close()
    wall = time.perf_counter() - start
    losses = training.split_losses(params)
    ok = wall < 120 and losses["train"] <= 2.09 and losses["val"] <= 2.13
    print(
        f"full run: {training.FULL_STEPS:,} steps in {wall:.1f} s ({wall / training.FULL_STEPS * 1e6:.0f} us/step); "
        f"train {losses['train']:.4f}, val {losses['val']:.4f} (limits 2.09 / 2.13, 120 s): {'PASS' if ok else 'FAIL'}"
    )
    return ok


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000, help="steps per round (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the best is kept (default %(default)s)")
    parser.add_argument("--full", action="store_true", help="also time the full 200,000-step run of the reference")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # as the notebook does
    print(machine())
    best = bench(args.steps, args.rounds)
    print(f"{'step':10s} {'us/step':>9s} {'backward us':>12s}")
    for name, (total, backward) in best.items():
        print(f"{name:10s} {total:9.0f} {backward:12.0f}")
    ref, lec, auto = best["reference"][0], best["lecture"][0], best["autograd"][0]
    print(
        f"reference / autograd: {ref / auto:.2f} (must be < 1)   lecture / reference: {lec / ref:.2f}x (must be >= 2.5)"
    )
    print(
        f"backward only: reference / autograd {best['reference'][1] / best['autograd'][1]:.2f}, "
        f"lecture / reference {best['lecture'][1] / best['reference'][1]:.2f}x"
    )
    ok = ref / auto < 1 and lec / ref >= 2.5
    if args.full:
        ok = full_run() and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
