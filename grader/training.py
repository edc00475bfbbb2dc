"""Exercise 4: the whole backward pass as one function, the training run it drives, and its grading.

The student writes ``manual_backward(logits, Yb, h, W2, bnraw, bngain, bnvar_inv, embcat, W1, Xb, C)``,
which returns the gradients of the seven parameters ``C, W1, b1, W2, b2, bngain, bnbias``, and the
notebook trains the lecture's MLP with it. This module holds:

* the run's settings and **grading mode**: while nbgrader grades (``nbgrader autograde`` and
  ``nbgrader validate`` set ``NBGRADER_EXECUTION``), in CI (``CI``) or when ``BACKPROP_NINJA_GRADING``
  is set (the test suite sets it), the notebook trains for ``GRADING_STEPS`` instead of 200,000 steps;
* a progress bar that never writes to stderr (nbgrader scores a test cell 0 for any stderr output);
* the backward checker: the student's function called under ``torch.no_grad()`` on fresh copies of
  tensors from real forward passes (``grader.model``) and each gradient compared with autograd's
  (``grader.checks.compare``, shapes exactly the parameters');
* the judge of the trained model: the grader recomputes the train and val losses from the
  parameters (BatchNorm calibrated over the training set by the grader itself) and compares them
  with the limits of the mode: the lecture's quality for a full run, a calibrated limit in grading mode.

``python -m grader.training calibrate`` measures the grading-mode limits (see ``GRADING_LIMITS``).
Nothing here knows a gradient formula: every reference gradient, and the calibration runs, use autograd.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import sys
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import checks, ecf4, fused, integrity
from .checks import Comparison, Context, compare
from .data import load_dataset
from .fused import Exercise, Network, Verdict  # one verdict type for every exercise's hidden tests
from .model import CHECK_SEED, PARAM_NAMES, Case, forward_case, init_params, sample_batch

# ---------------------------------------------------------------------------------------------
# The run

N_EMBD = 10  # the dimensionality of the character embedding vectors
N_HIDDEN = 200  # the number of neurons in the hidden layer of the MLP
BATCH_SIZE = 32
SEED = CHECK_SEED  # 2147483647, the lecture's seed: the initialization and every minibatch
FULL_STEPS = 200_000  # the lecture's run: lr 0.1, then 0.01 after 100,000 steps
DECAY_STEP = 100_000

# Grading mode trains this many steps (all at lr 0.1): 2 to 3 s on the course machine, so the whole
# notebook executes in about 15 s while nbgrader grades it (nbgrader validate: 14.2 s, its start included).
GRADING_STEPS = 5_000
GRADING_ENV = "BACKPROP_NINJA_GRADING"
PROGRESS_ENV = "BACKPROP_NINJA_PROGRESS"

# A full run must reach the lecture's quality (the lecture prints about 2.07 train / 2.11 val).
FULL_LIMITS = {"train": 2.09, "val": 2.13}
# Grading mode: the limits for GRADING_STEPS steps, measured with `python -m grader.training calibrate`
# (autograd's gradients, which a correct manual backward matches to float32 rounding), 8 seeds, the
# notebook's seed 2147483647 first, on the course machine (2-core AMD EPYC, shared), 2026-11-28:
#   train: 2.3036 at the notebook's seed; 2.2952 .. 2.3176 over the 8 seeds (spread 0.0224)
#   val:   2.3048 at the notebook's seed; 2.2964 .. 2.3219 over the 8 seeds (spread 0.0255)
# Limit = the worst seed + the seed spread, rounded up to 0.01 (2.35): a correct backward passes
# whatever float rounding does to its trajectory (0.045 above the notebook's seed); an untrained
# network (3.3), a diverged one, or one trained with a wrong gradient that matters, fails.
GRADING_LIMITS = {"train": 2.35, "val": 2.35}

_FALSE = {"", "0", "false", "no", "off"}


def _on(value: str | None) -> bool:
    return value is not None and value.strip().lower() not in _FALSE


def grading_reason(environ=None) -> str | None:
    """Why this run is in grading mode (the environment variable that says so), or None.

    ``NBGRADER_EXECUTION`` (set by ``nbgrader autograde`` and ``nbgrader validate``) always means
    grading; otherwise ``BACKPROP_NINJA_GRADING`` decides when it is set (``0``/``false`` switches
    grading mode off), and ``CI`` when it is not.
    """
    env = os.environ if environ is None else environ
    if env.get("NBGRADER_EXECUTION"):
        return f"NBGRADER_EXECUTION={env['NBGRADER_EXECUTION']}"
    if GRADING_ENV in env:
        return f"{GRADING_ENV}={env[GRADING_ENV]}" if _on(env[GRADING_ENV]) else None
    if _on(env.get("CI")):
        return f"CI={env['CI']}"
    return None


def grading_mode(environ=None) -> bool:
    """True while nbgrader grades the notebook, in CI, or when BACKPROP_NINJA_GRADING is set."""
    return grading_reason(environ) is not None


def limits(environ=None) -> dict[str, float]:
    return GRADING_LIMITS if grading_mode(environ) else FULL_LIMITS


def describe_mode(max_steps: int, environ=None) -> str:
    reason = grading_reason(environ)
    if reason:
        return (
            f"grading mode ({reason}): {max_steps:,} steps; the trained network must reach train loss "
            f"<= {GRADING_LIMITS['train']} and val loss <= {GRADING_LIMITS['val']}"
        )
    return (
        f"the full run: {max_steps:,} steps; the trained network must reach train loss <= {FULL_LIMITS['train']} "
        f"and val loss <= {FULL_LIMITS['val']}"
    )


# ---------------------------------------------------------------------------------------------
# The progress bar


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


def progress(steps):
    """tqdm over ``steps``, never on stderr (tqdm's default: nbgrader scores a test cell 0 for any stderr).

    In a notebook, JupyterLab's progress widget; in grading mode, outside a kernel, or when
    ``BACKPROP_NINJA_PROGRESS=text`` (the answer keys: a stored widget shows nothing), a text bar on
    stdout that refreshes every few seconds. Set the running loss with ``bar.set_postfix(loss=...)``.
    """
    from tqdm import std

    if _in_kernel() and not grading_mode() and os.environ.get(PROGRESS_ENV) != "text":
        try:
            from tqdm import notebook

            class Widget(notebook.tqdm):
                monitor_interval = 0  # no monitor thread: nothing that could warn on stderr

            return Widget(steps, mininterval=0.5)
        except ImportError:  # no ipywidgets: fall back to text
            pass

    class Text(std.tqdm):
        monitor_interval = 0

        def set_postfix(self, ordered_dict=None, refresh=False, **kwargs):
            super().set_postfix(ordered_dict, refresh=False, **kwargs)  # shown at the next refresh, not a new line

    return Text(steps, file=sys.stdout, mininterval=2.0, ascii=True, ncols=100)


# ---------------------------------------------------------------------------------------------
# The network and its first batch


def initial_parameters(dataset=None) -> list[torch.Tensor]:
    """The training network at its initialization: [C, W1, b1, W2, b2, bngain, bnbias], from seed SEED."""
    ds = dataset if dataset is not None else _dataset()
    g = torch.Generator().manual_seed(SEED)
    p = init_params(ds.vocab_size, ds.block_size, N_EMBD, N_HIDDEN, generator=g)
    return [p[k] for k in PARAM_NAMES]


@functools.cache
def _dataset():
    """The grader's private copy of the data set and its split."""
    return load_dataset()


@functools.cache
def first_batch() -> Case:
    """The training network at its initialization and the training loop's first minibatch, run forward.

    The notebook draws both from one generator seeded with SEED, in this order; so does this.
    """
    ds = _dataset()
    g = torch.Generator().manual_seed(SEED)
    p = init_params(ds.vocab_size, ds.block_size, N_EMBD, N_HIDDEN, generator=g)
    Xb, Yb = sample_batch(ds.Xtr, ds.Ytr, BATCH_SIZE, generator=g)
    return forward_case(p, Xb, Yb)


FIRST_BATCH = (
    f"the training network ({N_EMBD}-dimensional embeddings, {N_HIDDEN} hidden units, seed {SEED}) "
    f"at its initialization, on the training loop's first batch of {BATCH_SIZE}"
)

# ---------------------------------------------------------------------------------------------
# The backward checker

FUNCTION = "manual_backward"
INPUTS = ("logits", "Yb", "h", "W2", "bnraw", "bngain", "bnvar_inv", "embcat", "W1", "Xb", "C")
EXERCISE = Exercise("parameters", FUNCTION, INPUTS)
RETURNS = ", ".join(f"d{k}" for k in PARAM_NAMES)

# The hidden tests' networks, besides the training network's first batch: other batch sizes (odd
# ones, and 3), vocabularies, hidden sizes, embedding sizes and context lengths, and new seeds. Each
# batch repeats characters, so an embedding gradient that drops repeated indices fails on every one.
HIDDEN = (
    Network(4001, batch_size=7, vocab_size=13, n_hidden=20),
    Network(4002, batch_size=50, vocab_size=40, n_hidden=100, n_embd=6, block_size=4),
    Network(4003, batch_size=33, n_hidden=200),
    Network(4004, batch_size=3, vocab_size=9, n_hidden=16),
)


@functools.cache
def _case(net: Network) -> Case:
    return net.case()


def _history():
    return integrity.kernel_history()


def _problem(history) -> str | None:
    return integrity.problem([FUNCTION], history)


def _describe(value) -> str:
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} value{'s' if len(value) != 1 else ''}"
    if isinstance(value, torch.Tensor):
        return f"one tensor of shape {checks.fmt_shape(value.shape)}"
    return checks.describe_type(value).removeprefix("it is ")


def call(fn, case: Case, where: str) -> tuple[dict | None, str]:
    """``fn`` on fresh copies of ``case``'s tensors, under no_grad: its gradients by parameter, or what went wrong."""
    args = fused._inputs(EXERCISE, case)
    try:
        with torch.no_grad():
            out = fn(*args)
    except Exception as exc:  # a student's bug is a verdict, never a crash of the grader
        sizes = fused._describe_sizes(fn) if case is not first_batch() else ""
        return None, fused._raised(EXERCISE, exc, where) + sizes
    if not isinstance(out, (tuple, list)) or len(out) != len(PARAM_NAMES):
        return None, (
            f"{FUNCTION} must return the seven gradients {RETURNS}, in that order (a tuple); "
            f"it returned {_describe(out)}."
        )
    return dict(zip(PARAM_NAMES, out, strict=True)), ""


def _repeated_index_hint(case: Case):
    """For dC: are only the rows of characters that occur more than once in Xb wrong?"""
    counts = torch.bincount(case.Xb.flatten(), minlength=case.values["C"].shape[0])

    def diagnose(a: torch.Tensor, b: torch.Tensor) -> str | None:
        if a.shape != b.shape or a.dim() != 2 or a.shape[0] != counts.shape[0]:
            return None
        bad = ((a - b).abs() > max(checks.ATOL, 1e-4 * b.abs().max().item())).any(dim=1)
        if bad.any() and bool((counts[bad] > 1).all()):
            return (
                f"only the rows of characters that occur more than once in Xb are wrong ({int(bad.sum())} rows). "
                f"An indexed `+=` such as dC[Xb] += demb applies each repeated index once (the last write "
                f"wins), so the gradients of a repeated character do not add up: use index_add_."
            )
        return None

    return diagnose


def context(name: str, case: Case) -> Context:
    named, meanings = fused.factors(case)
    diagnostics = (_repeated_index_hint(case),) if name == "C" else ()
    return Context(factors=named, meanings=meanings, diagnostics=diagnostics)


def _verdict(name: str, grads: dict, case: Case, where: str, problem: str | None, fn=None) -> Verdict:
    result, want = grads[name], case.grads[name]
    comparison = compare(result, want, f"`{name}`", context(name, case), strict_shape=True)
    if isinstance(result, torch.Tensor) and (result.requires_grad or result.grad_fn is not None):
        problem = f"d{name} was built with autograd switched on (it requires grad): derive it by hand."
    if not comparison.ok:
        message = f"d{name} is wrong {where}: {comparison.hint}"
        if isinstance(result, torch.Tensor) and tuple(result.shape) != tuple(want.shape):
            message += (
                f" A parameter's gradient has exactly its parameter's shape: the training loop updates "
                f"{name} in place with it (`{name}.add_(d{name}, alpha=-lr)`), which a gradient of another "
                f"shape crashes or silently broadcasts."
            )
        swapped = [
            k
            for k in PARAM_NAMES
            if k != name
            and isinstance(result, torch.Tensor)
            and tuple(result.shape) == tuple(case.grads[k].shape)
            and checks._close(result.detach(), case.grads[k])
        ]
        if swapped:
            message += f" It is the gradient of {swapped[0]}: {FUNCTION} must return {RETURNS} in this order."
        if fn is not None and case is not first_batch():
            message += fused._describe_sizes(fn)
        if problem:
            message += f" Also: {problem}"
        return Verdict(False, comparison, message)
    if problem:
        return Verdict(False, comparison, problem)
    return Verdict(True, comparison, "ok", comparison.note)


def judge(name: str, fn, case: Case, where: str, problem: str | None = None) -> Verdict:
    """``fn`` on ``case`` under no_grad; its gradient of ``name`` against autograd's."""
    grads, error = call(fn, case, where)
    if grads is None:
        return Verdict(False, Comparison(False), error + (f" Also: {problem}" if problem else ""))
    verdict = _verdict(name, grads, case, where, problem, fn)
    if not verdict.ok and not problem:  # error carried forward inside the function (grader/ecf4.py)
        args = fused._inputs(EXERCISE, case)
        verdict = ecf4.carried_forward(name, fn, args, case, grads[name], Verdict, verdict.comparison, where) or verdict
    return verdict


def _name(s: str) -> str:
    name = s[1:] if s.startswith("d") and s[1:] in PARAM_NAMES else s
    if name not in PARAM_NAMES:
        raise KeyError(f"{s!r}: {FUNCTION} returns the gradients of {', '.join(PARAM_NAMES)}")
    return name


def check_first_batch(fn) -> None:
    """The lecture's check before training: all seven gradients on the first batch, with hints. Never raises."""
    case = first_batch()
    print(f"{FIRST_BATCH}:")
    grads, error = call(fn, case, "on the first batch")
    if grads is None:
        print(error)
        return
    problem = _problem(_history())
    passed = 0
    for name in PARAM_NAMES:
        verdict = _verdict(name, grads, case, "on the first batch", problem)
        passed += verdict.ok
        print(checks.row(name, verdict.comparison, "ok" if verdict.ok else "FAIL", verdict.note))
        if not verdict.ok:
            print(f"{'':15s}   {verdict.message}")
    print(f"{passed} of {len(PARAM_NAMES)} gradients pass")


def check(s: str, fn, **network) -> None:
    """Print the row for ``fn``'s gradient of ``s`` on one new network (``Network(**network)``); raise if wrong."""
    name = _name(s)
    net = Network(**network)
    print(f"a new network: {net.describe()}")
    verdict = judge(name, fn, net.case(), f"on a new network ({net.describe()})", _problem(_history()))
    print(checks.row(name, verdict.comparison, verdict.message if verdict.ok else "FAIL", verdict.note))
    if not verdict.ok:
        raise AssertionError(verdict.message)


def verify(s: str, fn) -> None:
    """The hidden test: ``fn``'s gradient of ``s`` on the first batch and on every network of HIDDEN.

    Silent on success."""
    name = _name(s)
    problem = _problem(_history())
    verdict = judge(name, fn, first_batch(), "on the first batch of the training network", problem)
    if not verdict.ok:
        raise AssertionError(verdict.message)
    for net in HIDDEN:
        verdict = judge(name, fn, _case(net), f"on a new network ({net.describe()})", problem)
        if not verdict.ok:
            raise AssertionError(verdict.message + f" ({FUNCTION} is right on the training network's first batch.)")


# ---------------------------------------------------------------------------------------------
# The trained network


@torch.no_grad()
def split_losses(parameters, dataset=None) -> dict[str, float]:
    """Train and val loss of ``parameters`` (C, W1, b1, W2, b2, bngain, bnbias), as the lecture evaluates them.

    BatchNorm uses the mean and variance of the hidden pre-activations over the whole training set
    (the lecture's calibration), computed here, whatever the notebook computed.
    """
    ds = dataset if dataset is not None else _dataset()
    C, W1, b1, W2, b2, bngain, bnbias = (p.detach().float() for p in parameters)
    hpreact = C[ds.Xtr].view(ds.Xtr.shape[0], -1) @ W1 + b1
    bnmean = hpreact.mean(0, keepdim=True)
    bnvar = ((hpreact - bnmean) ** 2).sum(0, keepdim=True) / (hpreact.shape[0] - 1)  # = .var(0, unbiased=True), faster
    out = {}
    for split, (x, y) in {"train": (ds.Xtr, ds.Ytr), "val": (ds.Xdev, ds.Ydev)}.items():
        hpreact = C[x].view(x.shape[0], -1) @ W1 + b1
        hpreact = bngain * (hpreact - bnmean) * (bnvar + 1e-5) ** -0.5 + bnbias
        logits = torch.tanh(hpreact) @ W2 + b2
        out[split] = F.cross_entropy(logits, y).item()
    return out


_last: list = []  # the last parameters judged and their losses: the visible and the hidden check share them


def _losses(parameters) -> dict[str, float]:
    if _last and all(torch.equal(p.detach(), q) for p, q in zip(parameters, _last[0], strict=True)):
        return dict(_last[1])
    losses = split_losses(parameters)
    _last[:] = [[p.detach().clone() for p in parameters], losses]
    return dict(losses)


@functools.cache
def _initial_losses() -> dict[str, float]:
    return split_losses(initial_parameters())


@dataclass
class ModelVerdict:
    ok: bool
    message: str
    losses: dict[str, float] | None = None


def judge_model(parameters, environ=None) -> ModelVerdict:
    """Recompute the trained network's losses from ``parameters`` and compare them with the mode's limits."""
    if not isinstance(parameters, (list, tuple)) or len(parameters) != len(PARAM_NAMES):
        return ModelVerdict(
            False, f"parameters must be the list [{', '.join(PARAM_NAMES)}]; it is {_describe(parameters)}."
        )
    initial = initial_parameters()
    for name, p, p0 in zip(PARAM_NAMES, parameters, initial, strict=True):
        if not isinstance(p, torch.Tensor) or not p.is_floating_point():
            return ModelVerdict(False, f"{name} in parameters is {_describe(p)}, not a float tensor.")
        if tuple(p.shape) != tuple(p0.shape):
            return ModelVerdict(
                False,
                (
                    f"{name} has shape {checks.fmt_shape(p.shape)}, but the network's {name} has "
                    f"shape {checks.fmt_shape(p0.shape)}: a gradient of the wrong shape changed it "
                    f"(or it was rebuilt). Re-run the notebook from the top."
                ),
            )
    bad = [name for name, p in zip(PARAM_NAMES, parameters, strict=True) if not bool(torch.isfinite(p).all())]
    if bad:
        return ModelVerdict(
            False,
            (
                f"the trained network's {', '.join(bad)} contain NaN or inf: training diverged. "
                f"The learning rate is too large, or a gradient has the wrong sign or size "
                f"(the checks before training say which)."
            ),
        )
    if all(torch.equal(p.detach(), p0) for p, p0 in zip(parameters, initial, strict=True)):
        return ModelVerdict(
            False,
            (
                "the parameters are still their initial values: the training cell did not run, or "
                "stopped at its first step (an error in it, or in manual_backward)."
            ),
            _initial_losses(),
        )
    losses = _losses(parameters)
    limit = limits(environ)
    shown = ", ".join(f"{k} loss {v:.4f} (limit {limit[k]})" for k, v in losses.items())
    over = [k for k, v in losses.items() if not v <= limit[k]]
    if not over:
        return ModelVerdict(True, f"ok: {shown}", losses)
    message = f"the trained network is not good enough: {shown}."
    if not all(math.isfinite(v) for v in losses.values()):
        message += " A loss of NaN or inf: training diverged (a learning rate too large?)."
    elif losses["train"] > _initial_losses()["train"] + 0.1:
        message += (
            f" That is worse than the untrained network ({_initial_losses()['train']:.2f}): training diverged. "
            f"The learning rate is too large, or a gradient has the wrong sign or size (the checks before "
            f"training say which)."
        )
    elif losses["train"] >= _initial_losses()["train"] - 0.3:
        message += (
            f" That is about the untrained network's train loss ({_initial_losses()['train']:.2f}): it has "
            f"not learned. Did the training cell run to the end without an error?"
        )
    else:
        message += (
            " Are all seven gradients right (the checks before training), and did the training cell run all its steps?"
        )
    if grading_mode(environ):
        message += f" ({describe_mode(GRADING_STEPS, environ)}.)"
    return ModelVerdict(False, message, losses)


def check_model(parameters) -> None:
    """The visible check of the trained network: print the grader's losses and the limits; raise if above."""
    verdict = judge_model(parameters)
    if verdict.losses is not None:
        print("recomputed by the grader from your parameters (batchnorm calibrated over the training set):")
        print("  " + ", ".join(f"{k} {v:.4f}" for k, v in verdict.losses.items()))
    print(verdict.message if verdict.ok else "FAIL")
    if not verdict.ok:
        raise AssertionError(verdict.message)


def verify_model(parameters) -> None:
    """The hidden test of the trained network: the same judgement, silent on success."""
    verdict = judge_model(parameters)
    if not verdict.ok:
        raise AssertionError(verdict.message)


# ---------------------------------------------------------------------------------------------
# Calibration: the grading-mode limits, from runs with autograd's gradients


def train(seed: int = SEED, steps: int = GRADING_STEPS, dataset=None) -> list[torch.Tensor]:
    """The notebook's training loop with autograd's gradients (loss.backward()); returns the parameters.

    The same initialization, minibatches (one generator seeded with ``seed``), forward pass and
    learning rate schedule as the notebook, so that a correct manual backward follows the same run.
    """
    ds = dataset if dataset is not None else _dataset()
    g = torch.Generator().manual_seed(seed)
    p = init_params(ds.vocab_size, ds.block_size, N_EMBD, N_HIDDEN, generator=g)
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
    parser = argparse.ArgumentParser(prog="python -m grader.training", description="Exercise 4's grading-mode limits.")
    sub = parser.add_subparsers(dest="command", required=True)
    cal = sub.add_parser("calibrate", help="train several seeds for GRADING_STEPS steps and print their losses")
    cal.add_argument("--seeds", type=int, default=8)
    cal.add_argument("--steps", type=int, default=GRADING_STEPS)
    args = parser.parse_args(argv)
    calibrate(args.seeds, args.steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
