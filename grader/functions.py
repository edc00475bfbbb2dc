"""What Exercises 2-4 have in common: a backward pass written as a function, called by the grader.

The student writes a function (``cross_entropy_backward``, ``batchnorm_backward``,
``manual_backward``); ``grader.fused`` and ``grader.training`` call it on networks of their
choice. This module holds what the three share:

* ``Exercise``: the function's name and arguments, and fresh copies of those arguments from a
  ``grader.model.Case``;
* ``Network``: a new network and batch (other seeds, batch sizes, vocabularies, hidden sizes);
* ``call``: the function called as a training step would call it, under ``torch.no_grad()`` on
  fresh copies of tensors that no backward pass ever touched; an exception is a hint, never a crash;
* ``judge_answer``: the verdict on one returned gradient (``grader.checks.Verdict``);
* the hints for a function that works on the check network only (the notebook's global ``n`` or
  ``batch_size``, a hard-coded 32: ``factors``, ``describe_sizes``) and for one that raised
  (``raised``), and ``code_problem``, what the integrity check finds in the notebook's code.

Nothing here knows a gradient: every reference comes from autograd.
"""

from __future__ import annotations

import dis
import types
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch

from . import integrity
from .checks import Comparison, Verdict, batch_factors, built_with_autograd, fmt_shape
from .model import Case, random_case

CHECK_BATCH = 32  # the check network's batch size, as the notebooks' global n and batch_size


@dataclass(frozen=True)
class Exercise:
    name: str  # the tensor whose gradient the function returns
    function: str  # the function the student writes
    inputs: tuple[str, ...]  # its arguments: tensors of the case ("d" + name: that tensor's gradient)

    @property
    def call(self) -> str:
        return f"{self.function}({', '.join(self.inputs)})"

    def arguments(self, case: Case) -> list[torch.Tensor]:
        """Fresh copies of the function's arguments: the function may change them in place."""
        out = []
        for name in self.inputs:
            if name.startswith("d") and name[1:] in case.grads:
                out.append(case.grads[name[1:]].detach().clone())
            else:
                out.append(case.tensors(name)[0].detach().clone())
        return out


@dataclass(frozen=True)
class Network:
    """A fresh network and batch (``grader.model.random_case``), by what makes it new."""

    seed: int
    batch_size: int = 32
    vocab_size: int = 27
    n_hidden: int = 64
    n_embd: int = 10
    block_size: int = 3
    max_logit: float | None = None
    dtype: torch.dtype = torch.float32

    def case(self) -> Case:
        return random_case(
            self.seed,
            self.batch_size,
            self.n_embd,
            self.n_hidden,
            self.vocab_size,
            self.block_size,
            max_logit=self.max_logit,
            dtype=self.dtype,
        )

    def describe(self) -> str:
        extra = [f"|logits| up to {self.max_logit:g}"] if self.max_logit else []
        extra += ["float64"] if self.dtype == torch.float64 else []
        return ", ".join(
            [
                f"batch {self.batch_size}",
                f"vocab {self.vocab_size}",
                f"{self.n_hidden} hidden units",
                f"seed {self.seed}",
                *extra,
            ]
        )


# ---------------------------------------------------------------------------------------------
# A function that works on the check network only


def factors(case: Case) -> tuple[dict[str, float], dict[str, str]]:
    """Named factors for a batch of ``case.n``, and what they mean, including the global-n mistake."""
    n = case.n
    named = batch_factors(n)
    meanings = {
        "(n-1)/n": "it divides by n where the forward pass divides by n-1: that is the biased variance, "
        "and the forward pass uses Bessel's correction, the unbiased one"
    }
    if n != CHECK_BATCH:
        uses_32 = (
            f"the function uses {CHECK_BATCH}, the check network's batch size, where this batch has "
            f"{n} examples: does it read the notebook's global n or batch_size (or a hard-coded "
            f"{CHECK_BATCH}) instead of its inputs' shapes? That is right on the check network and wrong "
            f"on every other batch"
        )
        global_n = {
            f"n/{CHECK_BATCH}": n / CHECK_BATCH,
            f"{CHECK_BATCH}/n": CHECK_BATCH / n,
            f"(n-1)/{CHECK_BATCH - 1}": (n - 1) / (CHECK_BATCH - 1),
            f"{CHECK_BATCH - 1}/(n-1)": (CHECK_BATCH - 1) / (n - 1),
        }
        named = {**global_n, **named}
        meanings.update(dict.fromkeys(global_n, uses_32))
    return named, meanings


def _code_objects(fn):
    """``fn``'s code and every code object nested in it (comprehensions, inner functions)."""
    code = getattr(fn, "__code__", None)
    stack = [code] if isinstance(code, types.CodeType) else []
    while stack:
        c = stack.pop()
        yield c
        stack += [k for k in c.co_consts if isinstance(k, types.CodeType)]


def global_reads(fn) -> dict[str, object]:
    """The notebook variables (numbers and tensors) that ``fn``'s code reads as globals, with their values."""
    namespace = getattr(fn, "__globals__", {})
    found: dict[str, object] = {}
    for c in _code_objects(fn):
        for ins in dis.get_instructions(c):
            if ins.opname in ("LOAD_GLOBAL", "LOAD_NAME") and isinstance(ins.argval, str):
                value = namespace.get(ins.argval)
                if isinstance(value, (int, float, torch.Tensor)) and not isinstance(value, bool):
                    found[ins.argval] = value
    return found


# The sizes of the notebooks' networks, which a function that works on any network must not contain.
NOTEBOOK_SIZES = {
    32: "the check network's batch size",
    27: "the vocabulary size",
    64: "the check network's hidden size",
    200: "the training network's hidden size",
}


def constants(fn) -> dict[int, str]:
    """The notebooks' sizes (``NOTEBOOK_SIZES``) that appear as numbers in ``fn``'s code."""
    found: dict[int, str] = {}
    for c in _code_objects(fn):
        for k in c.co_consts:
            if isinstance(k, int) and not isinstance(k, bool) and k in NOTEBOOK_SIZES:
                found[k] = NOTEBOOK_SIZES[k]
    return found


def describe_sizes(fn) -> str:
    """Why ``fn`` may work on the check network only: the notebook's globals or sizes in its code."""
    name = getattr(fn, "__name__", "the function")
    out = ""
    found = global_reads(fn)
    if found:
        shown = ", ".join(
            f"`{k}` (= {v})" if not isinstance(v, torch.Tensor) else f"`{k}` (a tensor of shape {fmt_shape(v.shape)})"
            for k, v in found.items()
        )
        out += f" Note: {name} reads the notebook's global {shown}."
    numbers = constants(fn)
    if numbers:
        out += f" Note: {name} has the number " + ", ".join(f"{k} ({v})" for k, v in numbers.items()) + " in it."
    if out:
        out += (
            " A function must work on any network and batch: take everything from its arguments "
            "(the batch size is their .shape[0])."
        )
    return out


# ---------------------------------------------------------------------------------------------
# Calling the student's function, and the verdict on what it returned


def raised(exercise: Exercise, exc: Exception, where: str) -> str:
    """The hint for ``exercise``'s function raising ``exc`` on the network ``where`` names."""
    text = f"{exercise.call} raised {type(exc).__name__}: {exc}".rstrip(": ")
    if isinstance(exc, NotImplementedError):
        return (
            f"{exercise.function} still raises NotImplementedError() (the stub): replace the stub in its answer "
            f"cell with your code and run that cell."
        )
    return f"{text} {where}." + (" " + AUTOGRAD_CRASH if autograd_crash(exc) else "")


AUTOGRAD_CRASH = (
    "The grader calls it as a training step would: under torch.no_grad(), on tensors that never saw backward(). "
    "A backward pass by hand needs neither autograd nor .grad: derive the gradient and compute it from the inputs."
)


def autograd_crash(exc: BaseException) -> bool:
    """Is ``exc`` autograd's complaint that there is no graph (backward() or .grad under no_grad)?"""
    message = str(exc)
    return isinstance(exc, RuntimeError) and (
        "does not require grad" in message or "grad_fn" in message or "backward" in message
    )


def call(exercise: Exercise, fn, case: Case, where: str, home: Callable[[], Case]) -> tuple[object, str | None]:
    """``fn`` on fresh copies of ``case``'s tensors, under no_grad: ``(what it returned, None)``, or
    ``(None, the hint)`` when it raised.

    ``home()`` is the network the notebook's own globals describe (the check network, the training
    network's first batch), built only when needed: on any other, the hint also names the notebook
    sizes ``fn`` uses.
    """
    args = exercise.arguments(case)
    try:
        # a warning the student's code raises (`F.softmax(logits)` without dim) is not a mistake, but on stderr
        # it would zero the test cell (nbgrader scores any stderr 0): it stays here
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn(*args), None
    except Exception as exc:  # a student's bug is a verdict, never a crash of the grader
        return None, raised(exercise, exc, where) + (describe_sizes(fn) if case is not home() else "")


def failed_call(error: str, problem: str | None) -> Verdict:
    """The verdict when the function raised (``error``, from ``call``)."""
    return Verdict(False, Comparison(False), error + (f" Also: {problem}" if problem else ""))


def judge_answer(
    name: str, answer, comparison: Comparison, where: str, problem: str | None, more: Callable[[], str]
) -> Verdict:
    """The verdict on ``answer``, the function's ``d{name}`` on the network ``where`` names.

    ``comparison`` is the answer against autograd's gradient; ``problem``, what the integrity check
    found in the notebook's code; ``more()``, what the exercise adds to a wrong answer's hint.
    """
    problem = built_with_autograd(name, answer) or problem
    if not comparison.ok:
        message = f"d{name} is wrong {where}: {comparison.hint}" + more()
        if problem:
            message += f" Also: {problem}"
        return Verdict(False, comparison, message)
    if problem:
        return Verdict(False, comparison, problem)
    return Verdict(True, comparison, "ok", comparison.note)


def code_problem(names) -> str | None:
    """Why the notebook's code cannot be graded, if it cannot: ``names`` (the function, its answer) used autograd."""
    return integrity.problem(names, integrity.kernel_history())
