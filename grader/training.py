"""Exercise 4: the whole backward pass as one function, the training run it drives, and its grading.

The student writes ``manual_backward(logits, Yb, h, W2, bnraw, bngain, bnvar_inv, embcat, W1, Xb, C)``,
which returns the gradients of the seven parameters ``C, W1, b1, W2, b2, bngain, bnbias``, and the
notebook trains the lecture's MLP with it. This module holds:

* the run's settings and its limits in **grading mode** (``grader.mode``: while nbgrader grades, in CI,
  or when ``BACKPROP_NINJA_GRADING`` is set) the notebook trains for ``GRADING_STEPS`` instead of 200,000
  steps; ``grading_mode`` and ``grading_reason`` are re-exported from ``grader.mode`` for the notebook;
* ``progress``, the training loop's progress bar (``grader.ipython``: never on stderr);
* the backward checker: the student's function called under ``torch.no_grad()`` on fresh copies of
  tensors from real forward passes (``grader.functions``, shared with Exercises 2 and 3) and each
  gradient compared with autograd's (``grader.checks.compare``, shapes exactly the parameters');
* the judge of the trained model: the grader recomputes the train and val losses from the
  parameters (BatchNorm calibrated over the training set by the grader itself) and compares them
  with the limits of the mode: the lecture's quality for a full run, a calibrated limit in grading mode.

``python -m grader.calibration calibrate`` measures the grading-mode limits (see
``GRADING_LIMITS``). Nothing here knows a gradient formula: every reference gradient, and the calibration
runs, use autograd. It is long because it is one exercise's whole checker (about 400 lines), two judges that share the
run's settings; what it shares with the other exercises lives in ``grader.functions`` and ``grader.checks``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import checks, ecf4, graph, guard, hints_ops, ipython
from .checks import Context, Verdict, compare, report
from .data import load_dataset
from .functions import Exercise, Network, code_problem, describe_sizes, factors, failed_call, judge_answer
from .functions import call as call_function
from .ipython import progress  # noqa: F401 (the notebook calls grader.training.progress)
from .mode import GRADING_ENV, PROGRESS_ENV, grading_mode, grading_reason  # noqa: F401 (grader.training's API)
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

# A full run must reach the lecture's quality (the lecture prints about 2.07 train / 2.11 val).
FULL_LIMITS = {"train": 2.09, "val": 2.13}
# Grading mode: the limits for GRADING_STEPS steps, measured with `python -m grader.calibration calibrate`
# (autograd's gradients, which a correct manual backward matches to float32 rounding), 8 seeds, the
# notebook's seed 2147483647 first, on the course machine (2-core AMD EPYC, shared), 2026-11-28:
#   train: 2.3036 at the notebook's seed; 2.2952 .. 2.3176 over the 8 seeds (spread 0.0224)
#   val:   2.3048 at the notebook's seed; 2.2964 .. 2.3219 over the 8 seeds (spread 0.0255)
# Limit = the worst seed + the seed spread, rounded up to 0.01 (2.35): a correct backward passes
# whatever float rounding does to its trajectory (0.045 above the notebook's seed); an untrained
# network (3.3), a diverged one, or one trained with a wrong gradient that matters, fails.
GRADING_LIMITS = {"train": 2.35, "val": 2.35}


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
# The network and its first batch


def initialize(seed: int = SEED, dataset=None) -> tuple[dict[str, torch.Tensor], torch.Generator]:
    """The training network's parameters drawn from a generator seeded with ``seed``, and that generator.

    The notebook draws the initialization and then every minibatch from that one generator.
    """
    ds = dataset if dataset is not None else private_dataset()
    g = torch.Generator().manual_seed(seed)
    return init_params(ds.vocab_size, ds.block_size, N_EMBD, N_HIDDEN, generator=g), g


def initial_parameters(dataset=None) -> list[torch.Tensor]:
    """The training network at its initialization: [C, W1, b1, W2, b2, bngain, bnbias], from seed SEED."""
    p, _ = initialize(SEED, dataset)
    return [p[k] for k in PARAM_NAMES]


@functools.cache
def private_dataset():
    """The grader's private copy of the data set and its split."""
    return load_dataset()


@functools.cache
def first_batch() -> Case:
    """The training network at its initialization and the training loop's first minibatch, run forward.

    The notebook draws both from one generator seeded with SEED, in this order; so does this.
    """
    ds = private_dataset()
    p, g = initialize(SEED, ds)
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


def _problem() -> str | None:
    return code_problem([FUNCTION])


def _describe(value) -> str:
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} value{'s' if len(value) != 1 else ''}"
    if isinstance(value, torch.Tensor):
        return f"one tensor of shape {checks.fmt_shape(value.shape)}"
    return checks.describe_type(value).removeprefix("it is ")


def gradients(fn, case: Case, where: str) -> tuple[dict | None, str]:
    """``fn`` on fresh copies of ``case``'s tensors, under no_grad: its gradients by parameter, or what went wrong."""
    out, error = call_function(EXERCISE, fn, case, where, home=first_batch)
    if error is not None:
        return None, error
    if not isinstance(out, (tuple, list)) or len(out) != len(PARAM_NAMES):
        return None, (
            f"{FUNCTION} must return the seven gradients {RETURNS}, in that order (a tuple); "
            f"it returned {_describe(out)}."
        )
    return dict(zip(PARAM_NAMES, out, strict=True)), ""


def _repeated_rows(rows: Sequence[int]) -> str:
    return (
        f"({len(rows)} rows). An indexed `+=` such as dC[Xb] += demb applies each repeated index once (the last "
        f"write wins), so the gradients of a repeated character do not add up: use index_add_."
    )


def context(name: str, case: Case) -> Context:
    named, meanings = factors(case)
    rows = case.values["C"].shape[0]
    diagnostics = (checks.repeated_index_hint(case.Xb, rows, _repeated_rows),) if name == "C" else ()
    skipped = (lambda a, b: hints_ops.skipped_layer_hint(case, name, a, case.grads),)  # dW1 from dhpreact
    return Context(factors=named, meanings=meanings, diagnostics=diagnostics + skipped)


def _verdict(name: str, grads: dict, case: Case, where: str, problem: str | None, fn=None) -> Verdict:
    result, want = grads[name], case.grads[name]
    comparison = compare(result, want, f"`{name}`", context(name, case))

    def more() -> str:
        out = ""
        if isinstance(result, torch.Tensor) and tuple(result.shape) != tuple(want.shape):
            out += (
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
            and checks.close(result.detach(), case.grads[k])
        ]
        if swapped:
            out += f" It is the gradient of {swapped[0]}: {FUNCTION} must return {RETURNS} in this order."
        if fn is not None and case is not first_batch():
            out += describe_sizes(fn)
        return out

    return judge_answer(name, result, comparison, where, problem, more)


def crashed(fn, case: Case, where: str, problem: str | None) -> dict[str, Verdict] | None:
    """The seven verdicts for a ``fn`` that raises on ``case``, judged line by line (``grader.ecf4.after_crash``).

    None when it does not raise, or cannot be judged that way (no source; autograd in it): the plain failure.
    """
    if problem:
        return None
    args = EXERCISE.arguments(case)
    try:
        with torch.no_grad():
            fn(*EXERCISE.arguments(case))
        return None
    except NotImplementedError:
        return None  # the stub: its own hint says what to do
    except Exception:  # noqa: BLE001 - it raises: judge it line by line
        pass
    more = describe_sizes(fn) if case is not first_batch() else ""

    def judge_value(name: str, value) -> Verdict:
        grads = dict.fromkeys(PARAM_NAMES)
        grads[name] = value
        return _verdict(name, grads, case, where, problem, None)

    found = ecf4.after_crash(fn, args, case, where, judge_value, Verdict, more)
    if found is None:
        return None
    verdicts, first = found
    if case is first_batch():
        _crash_seen[:] = [first]
    return verdicts


# The first line that raised when manual_backward was last judged on the first batch: the trained model's hint.
_crash_seen: list[str] = []


def judge(name: str, fn, case: Case, where: str, problem: str | None = None) -> Verdict:
    """``fn`` on ``case`` under no_grad; its gradient of ``name`` against autograd's."""
    grads, error = gradients(fn, case, where)
    if grads is None:
        verdicts = crashed(fn, case, where, problem)
        return verdicts[name] if verdicts else failed_call(error, problem)
    verdict = _verdict(name, grads, case, where, problem, fn)
    if not verdict.ok and not problem:  # error carried forward inside the function (grader/ecf4.py)
        args = EXERCISE.arguments(case)
        carried = ecf4.carried_forward(name, fn, args, case, grads[name], Verdict, verdict.comparison, where)
        if carried is None:  # not the lecture's names (or its intermediates are right): where to start
            verdict.message += ecf4.chain_note(name, grads, case)
        verdict = carried or verdict
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
    grads, error = gradients(fn, case, "on the first batch")
    problem = _problem()
    _crash_seen.clear()
    judged = crashed(fn, case, "on the first batch", problem) if grads is None else None
    if grads is None and judged is None:
        print(error)
        return
    if judged is not None:
        print(f"{FUNCTION} raises: {_crash_seen[0]}. Each gradient is judged line by line instead:")
    passed, verdicts = 0, {}
    for name in PARAM_NAMES:
        verdict = verdicts[name] = (
            judged[name] if judged else _verdict(name, grads, case, "on the first batch", problem)
        )
        passed += verdict.ok
        print(verdict.row(name))
        if not verdict.ok:
            print(f"{'':15s}   {verdict.message}")
    print(f"{passed} of {len(PARAM_NAMES)} gradients pass")
    graph.show_exercise4(verdicts)  # the graph with the seven parameters coloured, in a kernel only


def check(s: str, fn, **network) -> None:
    """Print the row for ``fn``'s gradient of ``s`` on one new network (``Network(**network)``); raise if wrong."""
    name = _name(s)
    net = Network(**network)
    print(f"a new network: {net.describe()}")
    report(name, judge(name, fn, net.case(), f"on a new network ({net.describe()})", _problem()))


def verify(s: str, fn) -> None:
    """The hidden test: ``fn``'s gradient of ``s`` on the first batch and on every network of HIDDEN.

    Silent on success."""
    name = _name(s)
    problem = _problem()
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
    ds = dataset if dataset is not None else private_dataset()
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
                + (
                    f" {FUNCTION} raises on the training network's first batch: {_crash_seen[0]}. The training loop"
                    f" stops at its first step, so there is no trained network to judge: fix that line and run the"
                    f" training cell again."
                    if _crash_seen
                    else ""
                )
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


ipython.install()  # warnings on stdout: a warning is no mistake, on stderr it would zero a test cell
guard.snapshot()  # what the checks rely on, before any answer cell runs (grader/guard.py)
