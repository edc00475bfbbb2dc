"""Compare a hand-written gradient with the one autograd computed, and say what is wrong.

The pass rule, in float32:

* the shape must match the tensor the gradient belongs to, up to a leading size-1 dimension: the
  same numbers in the same order, as in the lecture's ``dbnmeani`` of shape (64,) for a (1, 64)
  tensor, or a ``(1, 64)`` ``db1`` for the (64,) ``b1``, pass with a note (the latter says that an
  in-place update needs the parameter's own shape). A shape that would only "match" by broadcasting
  ((32,) for (32, 1)) fails. One rule for every exercise: the notebooks state it;
* the norm-relative error ``||a - b|| / (||a|| + ||b||)`` is at most ``RTOL`` (1e-5). A correct
  answer gives about 1e-8 and every known mistake more than 1e-3. Differences of at most
  ``ATOL`` (1e-7) everywhere also pass: two gradients that are mathematically zero
  (``dlogit_maxes``, ``db1``) are float32 noise of about 1e-9 and have no relative error to speak of.

``exact`` (bit-for-bit equality) is reported as information only: it depends on the CPU's
vector unit. When a check fails, ``Comparison.hint`` holds one specific hint where one applies.

Every exercise's checker judges an answer into a ``Verdict`` and shows it with ``report`` (the
lecture's row, then AssertionError with the hint); the hints that more than one exercise gives
(``built_with_autograd``, ``repeated_index_hint``) are written here once.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch

RTOL = 1e-5
ATOL = 1e-7
PROPORTIONAL = 1e-3  # a is c*b when ||a - c b|| <= PROPORTIONAL * ||a||


@dataclass
class Context:
    """What the checker may use to name a mistake.

    factors: named constant factors, e.g. ``{"n": 32.0, "1/n": 1/32}`` (see ``batch_factors``).
    meanings: what a factor means here, by its name; it overrides ``FACTOR_MEANING``.
    branches: for a tensor used more than once in the forward pass, the gradient that flows
        back through each use, by the name of the tensor it flows from.
    terms: the expected gradient as a sum of terms, each by a description such as "the path
        through the batch mean", e.g. the gradients that autograd finds along separate paths
        of the forward pass. An answer that is another combination of the same terms is told
        which term is off, and by which (named) factor.
    diagnostics: extra functions ``(actual, expected) -> hint or None``, tried after the others.
    nonfinite: said after the NaN/inf hint, e.g. what about this case's inputs makes an exp overflow.
    """

    factors: Mapping[str, float] = field(default_factory=dict)
    meanings: Mapping[str, str] = field(default_factory=dict)
    branches: Mapping[str, torch.Tensor] = field(default_factory=dict)
    terms: Mapping[str, torch.Tensor] = field(default_factory=dict)
    diagnostics: tuple[Callable[[torch.Tensor, torch.Tensor], str | None], ...] = ()
    nonfinite: str = ""

    def meaning(self, factor: str) -> str:
        return self.meanings.get(factor, FACTOR_MEANING.get(factor, ""))

    def name_factor(self, c: float) -> str | None:
        """The name of the factor ``c`` is (within PROPORTIONAL), if it is one of ``factors``."""
        return next((name for name, value in self.factors.items() if abs(c - value) <= PROPORTIONAL * abs(value)), None)


# What a factor usually means, by its name in batch_factors.
FACTOR_MEANING = {
    "-1": "the sign is flipped",
    "n": "a 1/n is missing (the loss is a mean over the n examples of the batch)",
    "1/n": "there is a 1/n too many",
    "(n-1)/n": "it divides by n where the forward pass divides by n-1 (Bessel's correction)",
    "n/(n-1)": "it divides by n-1 where the forward pass divides by n",
    "2": "it is twice the expected gradient",
    "1/2": "it is half the expected gradient",
}


def batch_factors(n: int) -> dict[str, float]:
    """The constant factors that common mistakes introduce, for a batch of ``n`` examples."""
    return {
        "-1": -1.0,
        "n": float(n),
        "1/n": 1.0 / n,
        "(n-1)/n": (n - 1) / n,
        "n/(n-1)": n / (n - 1),
        "2": 2.0,
        "1/2": 0.5,
    }


@dataclass
class Comparison:
    ok: bool
    exact: bool | None = None  # bit-for-bit equal (information only)
    maxdiff: float | None = None
    relerr: float | None = None
    note: str = ""  # shown when ok, e.g. an accepted leading size-1 dimension
    hint: str = ""  # shown when not ok

    @property
    def approximate(self) -> bool:
        return self.ok


def fmt_shape(shape) -> str:
    return str(tuple(shape))


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """``||a - b|| / (||a|| + ||b||)``, in float64; 0 when both are 0."""
    a, b = a.double(), b.double()
    den = (a.norm() + b.norm()).item()
    return 0.0 if den == 0 else (a - b).norm().item() / den


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    """The pass rule on values alone (no shapes, no context): within RTOL, or everywhere within ATOL."""
    return relative_error(a, b) <= RTOL or (a.double() - b.double()).abs().max().item() <= ATOL


def leading_one_only(got, want) -> bool:
    """(64,) vs (1, 64) or the other way round: the same tensor up to a leading size-1 dimension."""
    got, want = tuple(got), tuple(want)
    return (len(want) == len(got) + 1 and want[0] == 1 and want[1:] == got) or (
        len(got) == len(want) + 1 and got[0] == 1 and got[1:] == want
    )


def shape_hint(got, want, what: str) -> str:
    """Why a gradient of shape ``got`` cannot be the gradient of a tensor of shape ``want``."""
    got, want = tuple(got), tuple(want)
    base = f"wrong shape: {fmt_shape(got)}, but {what} has shape {fmt_shape(want)}"
    if len(got) + 1 == len(want):
        for k in range(len(want)):
            if want[k] == 1 and want[:k] + want[k + 1 :] == got:
                return (
                    f"{base}: dimension {k} is missing. A sum or max over dim {k} needs keepdim=True "
                    f"to keep it (a gradient always has the shape of its tensor)."
                )
    if len(got) == len(want) + 1:
        for k in range(len(got)):
            if got[k] == 1 and got[:k] + got[k + 1 :] == want:
                return f"{base}: there is an extra size-1 dimension {k} (a keepdim=True too many?)."
    if len(got) == 2 and got == want[::-1]:
        return f"{base}: it is transposed. Check the order of the factors of the matrix product."
    if math.prod(got) == math.prod(want):
        return f"{base}: the number of elements is right; reshape it with .view{fmt_shape(want)}."
    try:
        grid = tuple(torch.broadcast_shapes(got, want))
    except RuntimeError:
        grid = None
    if grid is not None:
        return (
            f"{base}. The two would broadcast to a {'x'.join(map(str, grid))} grid, "
            f"so an elementwise comparison would compare the wrong numbers."
        )
    return base + "."


def _where(diff: torch.Tensor) -> tuple[int, ...]:
    flat = int(diff.abs().argmax())
    return tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), diff.shape))


def value_hint(a: torch.Tensor, b: torch.Tensor, what: str, context: Context) -> str:
    """The hint for a gradient of the right shape with the wrong values (``b`` is expected)."""
    a64, b64 = a.double(), b.double()
    if a.dim() == 2 and a.shape[0] == a.shape[1] and close(a.T, b):
        return "it is transposed. Check the order of the factors of the matrix product."
    if not a64.any():
        return "it is all zeros: nothing was written into it."
    # a proportional to b?
    bb = (b64 * b64).sum().item()
    if bb > 0:
        c = (a64 * b64).sum().item() / bb
        if (a64 - c * b64).norm().item() <= PROPORTIONAL * a64.norm().item() and abs(c - 1) > PROPORTIONAL:
            name = context.name_factor(c)
            if name is not None:
                meaning = context.meaning(name)
                return f"it is off by a constant factor {name} ({c:.4g} times the expected gradient)" + (
                    f": {meaning}." if meaning else "."
                )
            return (
                f"it is off by a constant factor: {c:.4g} times the expected gradient everywhere. "
                f"A constant in the expression is wrong."
            )
    # only some of the paths back?
    names = list(context.branches)
    for r in range(1, len(names)):
        for subset in itertools.combinations(names, r):
            partial = sum(context.branches[s].double() for s in subset)
            missing = [s for s in names if s not in subset]
            if close(a64, partial.reshape(a.shape)):
                have = ", ".join(f"`{s}`" for s in subset)
                lost = ", ".join(f"`{s}`" for s in missing)
                return (
                    f"it holds only the gradient that flows back from {have}; {what} is also used "
                    f"by {lost}. A tensor used more than once gets the sum of the gradients "
                    f"of all its uses (accumulate with +=, do not overwrite)."
                )
    hint = terms_hint(a64, context)
    if hint:
        return hint
    for diagnose in context.diagnostics:
        hint = diagnose(a, b)
        if hint:
            return hint
    diff = a64 - b64
    at = _where(diff)
    return (
        f"it is off: relative error {relative_error(a, b):.3g} (a correct answer has about 1e-8, "
        f"the limit is {RTOL:g}); the largest difference is {diff.abs().max().item():.3g} at index {at}, "
        f"where it has {a64[at].item():.6g} and the expected gradient {b64[at].item():.6g}."
    )


def fit(a: torch.Tensor, terms: list[torch.Tensor]) -> list[float] | None:
    """Least-squares coefficients c with ``a ~ sum(c_k * terms[k])``, if that fits within PROPORTIONAL.

    None when it does not fit, or when the terms are too close to parallel to tell apart.
    """
    T = torch.stack([t.double().flatten() for t in terms], dim=1)
    a = a.double().flatten()
    gram = T.T @ T
    if not bool(torch.isfinite(gram).all()) or torch.linalg.cond(gram).item() > 1e8:
        return None
    c = torch.linalg.solve(gram, T.T @ a)
    if (a - T @ c).norm().item() > PROPORTIONAL * a.norm().item():
        return None
    return c.tolist()


def terms_hint(a: torch.Tensor, context: Context) -> str | None:
    """Which of ``context.terms`` is off, when ``a`` is another combination of the same terms."""
    if len(context.terms) < 2:
        return None
    coefficients = fit(a, [t.reshape(a.shape) for t in context.terms.values()])
    if coefficients is None:
        return None
    wrong, named = [], {}
    for about, c in zip(context.terms, coefficients, strict=True):
        if abs(c) <= PROPORTIONAL:
            wrong.append(f"{about} is missing")
        elif abs(c - 1) > PROPORTIONAL:
            name = context.name_factor(c)
            wrong.append(f"{about} is {c:.4g} times what it should be" + (f", the factor {name}" if name else ""))
            if name and context.meaning(name):
                named.setdefault(context.meaning(name), []).append(name)
    if not wrong:
        return None
    right = len(context.terms) - len(wrong)
    hint = (
        "it is off in part: "
        + "; ".join(wrong)
        + "."
        + (" The other terms are right." if right > 1 else " The other term is right." if right else "")
    )
    for meaning, names in named.items():
        hint += f" The factor{'s' if len(names) > 1 else ''} {' and '.join(names)}: {meaning}."
    return hint


def describe_type(value) -> str:
    if value is None:
        return "it is None, not a tensor"
    if value is NotImplemented or value is Ellipsis:
        return f"it is still the placeholder {value!r}"
    if isinstance(value, (int, float)):
        return f"it is the number {value!r}, not a tensor"
    return f"it is a {type(value).__module__}.{type(value).__qualname__}, not a torch.Tensor"


def compare(actual, expected: torch.Tensor, what: str = "the tensor", context: Context | None = None) -> Comparison:
    """Compare ``actual`` (an answer) with ``expected`` (autograd's gradient of ``what``)."""
    context = context or Context()
    want = f"a tensor of shape {fmt_shape(expected.shape)}"
    if not isinstance(actual, torch.Tensor):
        return Comparison(False, hint=f"{describe_type(actual)}; it should be {want}.")
    if not (actual.is_floating_point()):
        return Comparison(
            False,
            hint=(
                f"it has dtype {actual.dtype}, an integer tensor; a gradient is {want} "
                f"of dtype {expected.dtype} (did torch.zeros_like copy an integer tensor?)."
            ),
        )
    notes = []
    if actual.dtype != expected.dtype:
        notes.append(f"dtype {actual.dtype}, the network uses {expected.dtype}")
    shape_ok = tuple(actual.shape) == tuple(expected.shape)
    if not shape_ok:
        if not leading_one_only(actual.shape, expected.shape):
            return Comparison(False, hint=shape_hint(actual.shape, expected.shape, what))
        if actual.dim() < expected.dim():
            why = "accepted, it broadcasts back onto the tensor"
        else:
            why = (
                "accepted (the same numbers), but an in-place update of the tensor with it fails "
                "(`p += -lr * grad` cannot grow p): drop the keepdim=True"
            )
        notes.append(f"shape {fmt_shape(actual.shape)} for {what} of shape {fmt_shape(expected.shape)}: {why}")
    a = actual.detach().reshape(expected.shape)
    finite = torch.isfinite(a)
    if not bool(finite.all()):
        nan, inf = int(torch.isnan(a).sum()), int(torch.isinf(a).sum())
        hint = (
            f"it contains {nan} NaN and {inf} inf of {a.numel()} entries: a division by zero, a log of 0, "
            f"or an exp that overflowed (subtract the max first)."
        )
        return Comparison(False, hint=hint + (f" {context.nonfinite}" if context.nonfinite else ""))
    exact = bool(torch.equal(a.to(expected.dtype), expected))
    maxdiff = (a.double() - expected.double()).abs().max().item() if a.numel() else 0.0
    relerr = relative_error(a, expected)
    ok = relerr <= RTOL or maxdiff <= ATOL
    result = Comparison(ok, exact, maxdiff, relerr, note="; ".join(notes))
    if not ok:
        result.hint = value_hint(a, expected, what, context)
    return result


def row(name: str, comparison: Comparison, status: str, note: str = "") -> str:
    """The lecture's row, ``name | exact | approximate | maxdiff``, then ``status``, and a note below it."""
    c = comparison
    maxdiff = "n/a" if c.maxdiff is None else f"{c.maxdiff:.2g}"
    exact = "n/a" if c.exact is None else str(c.exact)
    line = f"{name:15s} | exact: {exact:5s} | approximate: {str(c.approximate):5s} | maxdiff: {maxdiff:7s} | {status}"
    return line + (f"\n{'':15s}   note: {note}" if note else "")


@dataclass
class Verdict:
    """The judgement of one answer, in every exercise: the lecture's comparison with autograd's gradient.

    ``message`` is the verdict column when ``ok`` ("ok", or "ok: ..." under error carried forward),
    else what is wrong; ``note`` is shown below a passing row.
    """

    ok: bool
    comparison: Comparison
    message: str
    note: str = ""

    def row(self, name: str) -> str:
        return row(name, self.comparison, self.message if self.ok else "FAIL", self.note)


def report(name: str, verdict: Verdict) -> None:
    """Print the lecture's row for ``verdict``, then raise AssertionError with its hint when it is wrong."""
    print(verdict.row(name))
    if not verdict.ok:
        raise AssertionError(verdict.message)


def built_with_autograd(name: str, answer) -> str | None:
    """The problem with ``d{name}`` when it is still attached to an autograd graph, else None."""
    if isinstance(answer, torch.Tensor) and (answer.requires_grad or answer.grad_fn is not None):
        return f"d{name} was built with autograd switched on (it requires grad): derive it by hand."
    return None


def repeated_index_hint(Xb: torch.Tensor, rows: int, explain: Callable[[Sequence[int]], str]):
    """A diagnostic for an embedding table's gradient: are only the rows of repeated characters wrong?

    ``explain(wrong_rows)`` finishes the hint: each exercise says in its own words what to do instead.
    """
    counts = torch.bincount(Xb.flatten(), minlength=rows)

    def diagnose(a: torch.Tensor, b: torch.Tensor) -> str | None:
        if a.shape != b.shape or a.dim() != 2 or a.shape[0] != counts.shape[0]:
            return None
        bad = ((a - b).abs() > max(ATOL, 1e-4 * b.abs().max().item())).any(dim=1)
        if bad.any() and bool((counts[bad] > 1).all()):
            return "only the rows of characters that occur more than once in Xb are wrong " + explain(
                bad.nonzero().flatten().tolist()
            )
        return None

    return diagnose
