"""Exercises 2 and 3: a backward pass derived in one go, written as a function, and checked on new networks.

Exercise 2's ``cross_entropy_backward(logits, Y) -> dlogits`` and Exercise 3's
``batchnorm_backward(dhpreact, bnraw, bngain, bnvar_inv) -> dhprebn`` are checked three ways:

* ``cmp(name, dt, t)``, the lecture's row for the answer on the check network;
* ``check(name, fn, ...)``, the same row for ``fn`` called on one new network;
* ``verify(name, fn, suite)``, the hidden tests: ``fn`` called on every network of a suite (new
  seeds, batch sizes, vocabularies, hidden sizes, large logits), silent on success.

Every network is a real forward pass (``grader.model``), and every reference is autograd's
gradient on it. The grader calls the function as a training step would: under ``torch.no_grad()``,
on fresh copies of tensors that no backward pass ever touched (``grader.functions``, which Exercise 4
shares). Nothing here knows the answer:
the hints come from comparing the answer with autograd, from the gradients autograd finds along
separate paths of the forward pass (``Case.path_gradient``), and from the case's shapes and targets.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from . import checks, guard, hints_ops, ipython
from .checks import Context, Verdict, compare, report
from .functions import Exercise, Network, call, code_problem, describe_sizes, factors, failed_call, judge_answer
from .model import Case, check_case

EXP_LIMIT = 88.72  # exp(x) is inf in float32 above this

EXERCISES = {
    "logits": Exercise("logits", "cross_entropy_backward", ("logits", "Yb")),
    "hprebn": Exercise("hprebn", "batchnorm_backward", ("dhpreact", "bnraw", "bngain", "bnvar_inv")),
}

CHECK_NETWORK = "the check network"

# The hidden tests, by exercise and suite. A suite stops at its first failing network, so the
# well-conditioned ones come first and name a mistake best. None is the lecture's check network.
SUITES: dict[str, dict[str, tuple[Network | None, ...]]] = {
    "logits": {
        CHECK_NETWORK: (None,),
        "new shapes": (
            Network(1001, batch_size=7, vocab_size=13, n_hidden=20),
            Network(1002, batch_size=50, vocab_size=40, n_hidden=100, n_embd=6, block_size=4),
            Network(1003, batch_size=33, n_hidden=200),
            Network(1004, batch_size=2, vocab_size=5, n_hidden=8),
        ),
        # the check network's shapes with new seeds, so that only the size of the logits is new
        "large logits": (Network(2001, max_logit=120.0), Network(2002, max_logit=100.0)),
    },
    "hprebn": {
        CHECK_NETWORK: (None,),
        # Batchnorm over a batch of 2 normalises each column to about +-0.71 whatever the input, so its
        # gradient is a near-total cancellation: in float32 a correct formula and autograd agree only
        # to about 1e-4. In float64 they agree to 1e-12, and every mistake still shows.
        "new shapes": (
            Network(3001, batch_size=7, vocab_size=13, n_hidden=20),
            Network(3002, batch_size=50, vocab_size=40, n_hidden=100, n_embd=6, block_size=4),
            Network(3003, batch_size=33, n_hidden=200),
            Network(3004, batch_size=2, n_hidden=16, dtype=torch.float64),
        ),
    },
}


@functools.cache
def check_network() -> Case:
    """The grader's private copy of the lecture's check network and batch (built once)."""
    return check_case()


def expected(name: str, case: Case) -> torch.Tensor:
    """Autograd's gradient of the loss with respect to ``name`` on ``case``.

    For the logits it differentiates ``F.cross_entropy(logits, Yb)`` itself, the loss Exercise 2 is
    about: on logits of about 100, the lecture's chunked forward pass takes the log of a probability
    that underflowed to 0 (its loss is inf), while F.cross_entropy stays exact. Elsewhere the two
    agree to about 1e-9. For ``hprebn`` it is the case's gradient, with ``grads["hpreact"]`` upstream.
    """
    if name == "logits":
        with torch.enable_grad():
            logits = case.values["logits"].detach().clone().requires_grad_()
            (grad,) = torch.autograd.grad(F.cross_entropy(logits, case.Yb), logits)
        return grad
    return case.grads[name]


# ---------------------------------------------------------------------------------------------
# What the checker may use to name a mistake on one case


def terms(name: str, case: Case) -> dict[str, torch.Tensor]:
    """The expected gradient split into the paths of the forward pass, each one's gradient from autograd."""
    if name == "logits":
        # logit_maxes only makes exp safe: its gradient is 0, so its path is held in both
        one_hot = case.path_gradient("logits", hold={"logit_maxes", "counts_sum"})
        both = case.path_gradient("logits", hold={"logit_maxes"})
        return {
            "the one-hot term (the -1 at each row's correct class: the path through counts[i, Yb[i]])": one_hot,
            "the softmax term (the path through each row's sum, counts_sum)": both - one_hot,
        }
    direct = case.path_gradient("hprebn", hold={"bnmeani", "bnvar_inv"})
    no_mean = case.path_gradient("hprebn", hold={"bnmeani"})
    return {
        "the direct term (the path through bndiff to bnraw, with the mean and the variance held fixed)": direct,
        "the variance term (the path through bnvar: every example moves its column's variance)": no_mean - direct,
        "the mean term (the path through bnmeani: every example moves its column's mean)": case.grads["hprebn"]
        - no_mean,
    }


def _one_hot_place(name: str, case: Case):
    """Exercise 2: is the -1 of the one-hot subtraction in the wrong entries?"""

    def diagnose(a: torch.Tensor, b: torch.Tensor) -> str | None:
        if name != "logits":
            return None
        n = case.n
        units = (a.double() - b.double()) * n  # the difference, in units of 1/n
        steps = units.round()
        if not bool(torch.isfinite(units).all()) or not steps.any() or (units - steps).norm() > 1e-3 * units.norm():
            return None  # not a pattern of whole steps of 1/n
        where = steps.nonzero().tolist()
        rows = sorted({r for r, _ in where})
        correct = F.one_hot(case.Yb, a.shape[1]).bool()
        if all(correct[r, c] for r, c in where) and len(set(steps[steps != 0].tolist())) == 1:
            k = 1 - steps[steps != 0][0].item()  # what the answer subtracts there, in units of 1/n
            where_ = f"it differs from the expected gradient only at the correct classes (i, Yb[i]) of {len(rows)} rows"
            if k == 0:
                return f"{where_}, where it does not subtract the 1/n: the one-hot subtraction is missing."
            return f"{where_}, where it subtracts {k:g}/n instead of 1/n: the one-hot part has the wrong size."
        row = where[0][0]
        cols = [c for r, c in where if r == row]
        return (
            f"it differs from the expected gradient by whole multiples of 1/n in {len(where)} entries of "
            f"{len(rows)} rows: the -1 of the one-hot part is in the wrong place. In row {row}, the correct "
            f"class is Yb[{row}] = {int(case.Yb[row])}, and the difference is at column(s) "
            f"{', '.join(str(c) for c in cols[:8])}{', ...' if len(cols) > 8 else ''} "
            f"({', '.join(f'{steps[row, c].item():+.0f}/n' for c in cols[:8])})."
        )

    return diagnose


def _column_factors(name: str, case: Case):
    """Exercise 3: is each column off by its own factor, and is that factor one of the inputs?"""

    def diagnose(a: torch.Tensor, b: torch.Tensor) -> str | None:
        if name != "hprebn":
            return None
        a, b = a.double(), b.double()
        bb = (b * b).sum(0)
        if not bool((bb > 0).all()):
            return None
        c = (a * b).sum(0) / bb  # the best factor for each column
        if (a - c * b).norm() > checks.PROPORTIONAL * a.norm():
            return None
        gain, inv = case.values["bngain"].double().flatten(), case.values["bnvar_inv"].double().flatten()
        for label, factor, meaning in (
            ("1/bngain", 1 / gain, "a factor bngain is missing"),
            ("bngain", gain, "bngain is in it twice"),
            ("1/bnvar_inv", 1 / inv, "a factor bnvar_inv is missing"),
            ("bnvar_inv", inv, "bnvar_inv is in it twice"),
        ):
            if ((c - factor).abs() <= checks.PROPORTIONAL * factor.abs()).all():
                return f"each column is off by its own factor, and the factors are {label}: {meaning}."
        return (
            f"each column is off by its own factor (from {c.min().item():.4g} to {c.max().item():.4g}): "
            f"something that differs from column to column (a per-feature input) is wrong."
        )

    return diagnose


def cross_entropy(Y: torch.Tensor):
    """Exercise 2's loss as its two ops, log_softmax over the classes then the mean negative log-likelihood: the
    same function as F.cross_entropy, written so that ``hints_ops.other_dim_hint`` sees the softmax's dim."""
    return lambda logits: F.nll_loss(F.log_softmax(logits, 1), Y)


def dims(case: Case) -> dict[int, str]:
    """What each dimension of the logits is."""
    return {0: f"the {case.n} examples of the batch", 1: f"the {case.values['logits'].shape[1]} classes"}


def _other_dim(name: str, case: Case):
    """Exercise 2: the softmax of the backward taken over another dimension (``hints_ops.other_dim_hint``)."""

    def diagnose(a: torch.Tensor, b: torch.Tensor) -> str | None:
        if name != "logits":
            return None
        return hints_ops.other_dim_hint(cross_entropy(case.Yb), case.values["logits"], a, dims(case))

    return diagnose


def context(name: str, case: Case, large: bool = False) -> Context:
    named, meanings = factors(case)
    nonfinite = ""
    if large:
        top = case.values["logits"].max().item()
        small = check_network().values["logits"].abs().max().item()
        nonfinite = (
            f"This network's logits go up to {top:.0f} (the check network's stay below {small:.1f}), and "
            f"exp(x) overflows float32 above x = {EXP_LIMIT}: an exp of the raw logits gives inf, "
            f"and inf/inf is NaN. It works on the check network and overflows here. Subtract each "
            f"row's max before exp, as the forward pass does: the softmax does not change."
        )
    return Context(
        factors=named,
        meanings=meanings,
        terms=terms(name, case),
        diagnostics=(_one_hot_place(name, case), _column_factors(name, case), _other_dim(name, case)),
        nonfinite=nonfinite,
    )


# ---------------------------------------------------------------------------------------------
# Judging the student's function


def _problem(exercise: Exercise) -> str | None:
    """Why the notebook's code cannot be graded, if it cannot: the function or its answer used autograd."""
    return code_problem([exercise.function, f"d{exercise.name}"])


def judge(exercise: Exercise, fn, case: Case, where: str, large: bool = False, problem: str | None = None) -> Verdict:
    """Call ``fn`` on ``case`` under no_grad and compare its answer with autograd's gradient.

    ``where`` says which network it is (for the message), ``large`` that its logits are large,
    ``problem`` what the integrity check found in the notebook's code.
    """
    result, error = call(exercise, fn, case, where, home=check_network)
    if error is not None:
        return failed_call(error, problem)
    return _verdict(exercise, result, case, where, large, problem, fn)


def _verdict(exercise: Exercise, result, case: Case, where: str, large: bool, problem: str | None, fn=None) -> Verdict:
    want = expected(exercise.name, case)
    comparison = compare(result, want, f"`{exercise.name}`", context(exercise.name, case, large))

    def more() -> str:
        out = ""
        check_shape = tuple(check_network().grads[exercise.name].shape)
        if isinstance(result, torch.Tensor) and tuple(result.shape) == check_shape != tuple(want.shape):
            out += (
                f" It has the check network's shape {checks.fmt_shape(check_shape)}: does the function use the "
                f"notebook's sizes instead of its inputs' shapes?"
            )
        if fn is not None and case is not check_network():
            out += describe_sizes(fn)
        return out

    return judge_answer(exercise.name, result, comparison, where, problem, more)


# ---------------------------------------------------------------------------------------------
# What the notebooks call


def _exercise(name: str) -> Exercise:
    if name not in EXERCISES:
        raise KeyError(f"{name!r}: the fused exercises check {' and '.join(repr(k) for k in EXERCISES)}")
    return EXERCISES[name]


def cmp(s: str, dt, t=None) -> None:
    """The lecture's check: print ``s | exact | approximate | maxdiff`` and a verdict for ``dt``.

    ``dt`` is the answer for the lecture's check network; the reference is autograd's gradient on
    the grader's private copy (``t``, the notebook's tensor, is accepted for the lecture's signature).
    Raises AssertionError, with a hint, when ``dt`` is wrong.
    """
    exercise = _exercise(s)
    report(s, _verdict(exercise, dt, check_network(), "on the check network", False, _problem(exercise)))


def check(s: str, fn, **network) -> None:
    """Print the row for ``fn`` called on one new network (``Network(**network)``); raise with a hint if wrong."""
    exercise = _exercise(s)
    net = Network(**network)
    print(f"a new network: {net.describe()}")
    where = f"on a new network ({net.describe()})"
    report(s, judge(exercise, fn, net.case(), where, bool(net.max_logit), _problem(exercise)))


def verify(s: str, fn, suite: str) -> None:
    """The hidden test: ``fn`` on every network of ``SUITES[s][suite]``; silent on success.

    Raises AssertionError with the first failure's hint. When ``fn`` is right on the check network
    but wrong on a new one, the message says so.
    """
    exercise = _exercise(s)
    problem = _problem(exercise)
    for net in SUITES[s][suite]:
        if net is None:
            verdict = judge(exercise, fn, check_network(), "on the check network", problem=problem)
        else:
            verdict = judge(
                exercise, fn, net.case(), f"on a new network ({net.describe()})", bool(net.max_logit), problem
            )
        if not verdict.ok:
            if net is not None and judge(exercise, fn, check_network(), "", problem=problem).ok:
                verdict.message += f" ({exercise.function} is right on the check network.)"
            raise AssertionError(verdict.message)


ipython.install()  # warnings on stdout: a warning is no mistake, on stderr it would zero a test cell
guard.snapshot()  # what the checks rely on, before any answer cell runs (grader/guard.py)
