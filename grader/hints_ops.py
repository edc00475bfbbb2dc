"""Hints computed from the op, by autograd: what a wrong local backward step did instead.

Given the student's step for ``name`` run on known upstream gradients (``grader.owncode``), and the
op(s) of the forward pass that use ``name``, try what the op's structure offers, and name what fits:

* **the derivative taken at the wrong tensor.** Autograd's backward of an op works from the tensors
  it saved in the forward pass (tanh saves its output ``h``, a product saves both factors).
  ``torch.autograd.graph.saved_tensors_hooks`` lets the grader hand the backward another tensor of
  the same shape in place of one of them: ``1 - hpreact**2`` is tanh's backward with hpreact where
  h belongs, ``(bnraw * dbnraw).sum(0)`` the product's with bnraw where bndiff belongs;
* **a factor missing or too many:** the step is the expected one times a power of one of the op's
  tensors (``dnorm_logits = dcounts`` misses the factor counts; an exponent off by one);
* **one path of a tensor used twice** off by a named factor or missing (``checks.terms_hint``, with
  the paths autograd finds, used by the caller).

No formula is written here: every candidate is autograd's backward of the op, with one of its
inputs changed, or the expected step times one of the op's own tensors.
"""

from __future__ import annotations

import ast
import inspect

import torch

from .checks import close as _close

POWERS = {
    1: "there is a factor {t} too many",
    -1: "a factor {t} is missing",
    2: "there is a factor {t}**2 too many",
    -2: "a factor {t}**2 is missing",
}


def _vjp(op, name: str, values: dict, upstream: torch.Tensor, swap=None) -> tuple[torch.Tensor | None, list]:
    """d(op)/d(name) applied to ``upstream``; ``swap`` maps a saved tensor's index to its replacement."""
    saved: list[torch.Tensor] = []

    def pack(t):
        saved.append(t)
        return len(saved) - 1, t

    def unpack(packed):
        i, t = packed
        return swap.get(i, t) if swap else t

    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        args = [values[k].clone().requires_grad_(k == name) for k in op.inputs]
        out = op.fn(*args)
        (grad,) = torch.autograd.grad(out, args[op.inputs.index(name)], upstream, allow_unused=True)
    return grad, saved


def _which(t: torch.Tensor, op, values: dict) -> str | None:
    """The name of the op's tensor that ``t`` (a saved tensor) is, if it is one."""
    t = t.detach()
    for k in (*op.inputs, op.out):
        v = values[k]
        if v.shape == t.shape and v.dtype == t.dtype and torch.equal(v, t):
            return k
    return None


def op_text(op) -> str:
    """``norm_logits = logits - logit_maxes``: the op's line of the forward pass."""
    try:
        src = inspect.getsource(op.fn).strip()
    except (OSError, TypeError):
        src = ""
    for candidate in (src, src.split("#")[0].strip().rstrip(",")):
        try:
            tree = ast.parse(candidate)
        except SyntaxError:
            continue
        lam = next((n for n in ast.walk(tree) if isinstance(n, ast.Lambda)), None)
        if lam is not None:
            return f"{op.out} = {ast.unparse(lam.body)}"
    return f"{op.out} = f({', '.join(op.inputs)})"


_op_text = op_text


def wrong_tensor_hint(ref, name: str, actual: torch.Tensor, upstream: dict[str, torch.Tensor]) -> str | None:
    """The step of one op computed with another tensor in place of one that op's backward uses."""
    values = ref.values
    uses = ref.uses(name)
    branches = {op.out: _vjp(op, name, values, upstream[op.out])[0] for op in uses}
    for op in uses:
        others = sum((b for o, b in branches.items() if o != op.out and b is not None), torch.zeros_like(actual))
        _, saved = _vjp(op, name, values, upstream[op.out])
        for i, t in enumerate(saved):
            if not isinstance(t, torch.Tensor) or t.dim() == 0:
                continue
            belongs = _which(t, op, values)
            if belongs is None:
                continue
            for candidate, value in values.items():
                if candidate in (belongs, "loss") or value.shape != t.shape or value.dtype != t.dtype:
                    continue
                grad, _ = _vjp(op, name, values, upstream[op.out], swap={i: value})
                if grad is None or not bool(torch.isfinite(grad).all()):
                    continue
                if _close(actual.double(), (others + grad).double()):
                    role = " (the op's output)" if belongs == op.out else ""
                    return (
                        f"it is the backward step of `{_op_text(op)}` computed with {candidate} where "
                        f"{belongs}{role} belongs: the local derivative is taken at the wrong tensor."
                    )
    return None


def factor_hint(ref, name: str, actual: torch.Tensor, expected: torch.Tensor) -> str | None:
    """The step is the expected one times a power of one of the op's tensors."""
    values = ref.values
    seen = set()
    for op in ref.uses(name):
        for t in (*op.inputs, op.out):
            if t in seen or t == name and len(ref.uses(name)) > 1:
                continue
            seen.add(t)
            v = values[t].double()
            try:
                torch.broadcast_shapes(v.shape, expected.shape)
            except RuntimeError:
                continue
            for k, text in POWERS.items():
                with torch.no_grad():
                    candidate = expected.double() * v**k
                if candidate.shape != expected.shape or not bool(torch.isfinite(candidate).all()):
                    continue
                if _close(actual.double(), candidate):
                    where = f" (the output of `{_op_text(op)}`)" if t == op.out else ""
                    return text.format(t=t) + where + ": the local derivative of the op is not what it should be."
    return None


def hint(ref, name: str, actual, expected: torch.Tensor, upstream: dict[str, torch.Tensor]) -> str | None:
    """A hint naming what the wrong step did, or None when nothing fits."""
    if not isinstance(actual, torch.Tensor) or actual.shape != expected.shape:
        return None
    actual = actual.detach().to(expected.dtype)
    if not bool(torch.isfinite(actual).all()):
        return None
    try:
        return wrong_tensor_hint(ref, name, actual, upstream) or factor_hint(ref, name, actual, expected)
    except RuntimeError:
        return None
