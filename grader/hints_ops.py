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
* **the op applied to its own output:** the candidate tensors include the op run again on its output
  (``torch.tanh(h)`` where ``h`` belongs): a derivative written in terms of the output, taken at the op
  of the output, applies the op twice;
* **terms grouped wrongly:** for an elementwise op, autograd gives its local derivative ``D`` (the step of
  an upstream of ones, checked to be elementwise on a seeded random upstream); an answer that is another
  combination of ``1``, ``D``, ``u`` and ``D * u`` (``u`` the upstream) than ``D * u`` is a grouping
  (parenthesis) mistake, and a least-squares fit says which term is outside the product;
* **a layer skipped:** the op's step computed with the gradient of a later tensor of the same shape in
  place of its own upstream (``dW1`` from ``dhpreact`` where ``dhprebn`` belongs), naming the layers of
  the ops in between from the section comments of the lecture's forward pass (``grader.model``);
* **a dimension that should be another** (``other_dim_hint``): a loss's backward computed with the
  tensors its ops saved in a forward pass along another dimension (a ``TorchFunctionMode`` changes the
  ``dim`` of every reduction and softmax the forward pass calls);
* **one path of a tensor used twice** off by a named factor or missing (``checks.terms_hint``, with
  the paths autograd finds, used by the caller).

It is long because each kind of mistake is its own small experiment on the op, and they share the one
way of running the op's backward with something changed.

No formula is written here: every candidate is autograd's backward of the op, with one of its
inputs, saved tensors, upstream gradient or dimensions changed, or the expected step times one of the
op's own tensors, or a fit of the answer to the terms autograd gives.
"""

from __future__ import annotations

import ast
import functools
import inspect

import torch
from torch.overrides import TorchFunctionMode

from .checks import PROPORTIONAL, fit
from .checks import close as _close

PROBE_SEED = 4242  # the random upstream that tells an elementwise op from another: torch.Generator().manual_seed

POWERS = {
    1: "there is a factor {t} too many",
    -1: "a factor {t} is missing",
    2: "there is a factor {t}**2 too many",
    -2: "a factor {t}**2 is missing",
}


def uses_of(ref, name: str) -> list:
    """The ops of ``ref``'s forward pass (a ``grader.model.Case``) that take ``name`` as an input."""
    return [op for op in ref.ops if name in op.inputs]


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
    uses = uses_of(ref, name)
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
            for candidate, value in _candidates(op, belongs, values):
                if candidate in (belongs, "loss") or value.shape != t.shape or value.dtype != t.dtype:
                    continue
                grad, _ = _vjp(op, name, values, upstream[op.out], swap={i: value})
                if grad is None or not bool(torch.isfinite(grad).all()):
                    continue
                if _close(actual.double(), (others + grad).double()):
                    role = " (the op's output)" if belongs == op.out else ""
                    if candidate == again(op, belongs):
                        return (
                            f"it is the backward step of `{_op_text(op)}` computed with {candidate} where "
                            f"{belongs}{role} belongs: the op is applied twice. Its local derivative, written "
                            f"with its output, needs {belongs} itself, not the op applied to {belongs} again."
                        )
                    return (
                        f"it is the backward step of `{_op_text(op)}` computed with {candidate} where "
                        f"{belongs}{role} belongs: the local derivative is taken at the wrong tensor."
                    )
    return None


def again(op, output: str) -> str:
    """``torch.tanh(h)``: the op's expression with its (one) input replaced by ``output``."""
    text = op_text(op).split(" = ", 1)[-1]
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        return f"{op.out}({output})"
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id == op.inputs[0]:
            node.id = output
    return ast.unparse(tree)


def _candidates(op, belongs: str, values: dict):
    """The tensors to try in place of a saved one: the case's, and the op applied again to its own output."""
    yield from values.items()
    if belongs == op.out and len(op.inputs) == 1:
        with torch.no_grad():
            yield again(op, belongs), op.fn(values[op.out])


def factor_hint(ref, name: str, actual: torch.Tensor, expected: torch.Tensor) -> str | None:
    """The step is the expected one times a power of one of the op's tensors."""
    values = ref.values
    seen = set()
    for op in uses_of(ref, name):
        for t in (*op.inputs, op.out):
            if t in seen or t == name and len(uses_of(ref, name)) > 1:
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


# ---------------------------------------------------------------------------------------------
# Terms grouped wrongly: a fit to the local derivative and the upstream


def elementwise_derivative(op, name: str, values: dict) -> torch.Tensor | None:
    """d ``op.out`` / d ``name`` entry by entry (autograd's step of an upstream of ones), when the op is elementwise.

    Elementwise means the step of any upstream ``u`` is ``D * u``: checked on a seeded random upstream.
    """
    out = values[op.out]
    if out.shape != values[name].shape:
        return None
    derivative, _ = _vjp(op, name, values, torch.ones_like(out))
    probe = torch.randn(out.shape, generator=torch.Generator().manual_seed(PROBE_SEED), dtype=out.dtype)
    step, _ = _vjp(op, name, values, probe)
    if derivative is None or step is None or not _close(step.double(), (derivative * probe).double()):
        return None
    return derivative


def grouping_hint(ref, name: str, actual: torch.Tensor, upstream: dict[str, torch.Tensor]) -> str | None:
    """The step is another combination of 1, the local derivative D, the upstream u and D * u than D * u."""
    uses = uses_of(ref, name)
    if len(uses) != 1:
        return None
    op = uses[0]
    derivative = elementwise_derivative(op, name, ref.values)
    u = upstream.get(op.out)
    if derivative is None or u is None or u.shape != actual.shape:
        return None
    d, u = derivative.double(), u.double()
    coefficients = fit(actual.double(), [torch.ones_like(d), d, u, d * u])
    if coefficients is None:
        return None
    one, alone, bare, product = coefficients
    if _near(one, 0) and _near(alone, 0) and _near(bare, 0):
        return None  # a multiple of the right step: the factor hints say which
    du = f"d{op.out}"
    local = f"the local derivative of `{op_text(op)}`"
    if _near(product, 1) and _near(alone, 0) and not _near(one, 0) and _near(bare, -one):
        k = f"{one:.4g}"
        return (
            f"it is {k} + ({local} - {k}) * {du}: the term {k} of the local derivative is not multiplied by "
            f"{du}, the rest is. A misplaced parenthesis? The whole local derivative multiplies {du}."
        )
    shown = " + ".join(
        f"{c:.3g}" if term == "1" else f"{c:.3g}*{term}"
        for c, term in zip(coefficients, ("1", "D", du, f"D*{du}"), strict=True)
        if not _near(c, 0)
    )
    return (
        f"it is {shown}, with D {local}, where D*{du} belongs: the step combines the local derivative and "
        f"{du} with the wrong grouping. Check the parentheses: the whole local derivative multiplies {du}."
    )


def _near(c: float, value: float) -> bool:
    return abs(c - value) <= PROPORTIONAL * max(1.0, abs(value))


# ---------------------------------------------------------------------------------------------
# A layer skipped: a later gradient in place of the op's own upstream


@functools.cache
def _layers() -> dict[str, str]:
    """Each op's layer, from the section comments of the lecture's forward pass (``# BatchNorm layer``)."""
    from . import model

    layers, current = {}, ""
    for line in inspect.getsource(model.forward_ops).splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            current = stripped.lstrip("# ").split(" (")[0]
            continue
        found = stripped.startswith('Op("') and stripped[4:].split('"')[0]
        if found:
            layers[found] = current
    return layers


def _between(ref, start: str, end: str) -> list[str]:
    """The ops from the one after ``start`` up to ``end``, in the order of the forward pass."""
    outs = [op.out for op in ref.ops]
    return outs[outs.index(start) + 1 : outs.index(end) + 1]


def skipped_layer_hint(ref, name: str, actual: torch.Tensor, gradients: dict[str, torch.Tensor]) -> str | None:
    """The op's step computed with the gradient of a later tensor (``gradients``) in place of its upstream."""
    uses = uses_of(ref, name)
    if len(uses) != 1:
        return None
    op = uses[0]
    outs = [o.out for o in ref.ops]
    for later in outs[outs.index(op.out) + 1 :]:
        grad = gradients.get(later)
        if later == "loss" or grad is None or grad.shape != ref.values[op.out].shape:
            continue
        step, _ = _vjp(op, name, ref.values, grad)
        if step is None or step.shape != actual.shape or not _close(actual.double(), step.double()):
            continue
        skipped = _between(ref, op.out, later)
        layers = list(dict.fromkeys(_layers().get(o, "") for o in skipped if _layers().get(o)))
        named = " and ".join(f"the {layer}" if "layer" in layer else f"the {layer.lower()}" for layer in layers)
        return (
            f"it is the backward step of `{op_text(op)}` computed with d{later} where d{op.out} belongs: "
            f"it skips {named or 'the ops'} between them ({', '.join(skipped)}), whose backward comes first."
        )
    return None


# ---------------------------------------------------------------------------------------------
# A dimension that should be another


class _Dims(TorchFunctionMode):
    """Records the ``dim`` of every reduction or softmax called, and changes it when ``swap`` says so."""

    TAKES_DIM = frozenset({"softmax", "log_softmax", "sum", "mean", "max", "min", "amax", "logsumexp", "cumsum"})

    def __init__(self, swap: tuple[int, int] | None = None):
        super().__init__()
        self.swap, self.seen = swap, []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        name = getattr(func, "__name__", "")
        if name in self.TAKES_DIM:
            ndim = args[0].dim() if args and isinstance(args[0], torch.Tensor) else 0
            if isinstance(kwargs.get("dim"), int):
                dim = kwargs["dim"] % max(ndim, 1)
                kwargs["dim"] = self._changed(name, dim)
            elif len(args) > 1 and isinstance(args[1], int) and not isinstance(args[1], bool):
                dim = args[1] % max(ndim, 1)
                args = (args[0], self._changed(name, dim), *args[2:])
        return func(*args, **kwargs)

    def _changed(self, name: str, dim: int) -> int:
        self.seen.append((name, dim))
        return self.swap[1] if self.swap and dim == self.swap[0] else dim


def _saved_by(loss_fn, x: torch.Tensor, swap=None, replace=None):
    """Run ``loss_fn(x)`` keeping what autograd saves; with ``replace``, its backward uses those saved tensors."""
    saved: list = []

    def pack(t):
        saved.append(t)
        return len(saved) - 1, t

    def unpack(packed):
        i, t = packed
        return replace[i] if replace is not None and i < len(replace) else t

    mode = _Dims(swap)
    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, unpack), mode:
        leaf = x.detach().clone().requires_grad_()
        loss = loss_fn(leaf)
    if replace is None:
        return saved, mode.seen, None
    (grad,) = torch.autograd.grad(loss, leaf)  # the unpack hook hands the backward the replacements
    return saved, mode.seen, grad


def other_dim_hint(loss_fn, x: torch.Tensor, actual: torch.Tensor, meanings: dict[int, str]) -> str | None:
    """``actual`` is ``loss_fn``'s backward with what its ops saved computed along another dimension of ``x``.

    ``meanings``: what each dimension of ``x`` is ("the 32 examples of the batch").
    """
    saved, seen, _ = _saved_by(loss_fn, x)
    for op_name, dim in dict.fromkeys(seen):
        for other in range(x.dim()):
            if other == dim:
                continue
            swapped, _, _ = _saved_by(loss_fn, x, swap=(dim, other))
            if len(swapped) != len(saved):
                continue
            usable = [
                new if isinstance(new, torch.Tensor) and new.shape == old.shape and new.dtype == old.dtype else old
                for old, new in zip(saved, swapped, strict=True)
            ]
            _, _, grad = _saved_by(loss_fn, x, replace=[t.detach() for t in usable])
            if grad is not None and grad.shape == actual.shape and _close(actual.double(), grad.double()):
                shown = {"log_softmax": "softmax"}.get(op_name, op_name)  # a log_softmax's dim is its softmax's
                return (
                    f"it is the backward of the {shown} over dim {other} ({meanings.get(other, '')}) where "
                    f"dim {dim} ({meanings.get(dim, '')}) belongs: the {shown} is taken along the wrong dimension."
                )
    return None


def hint(
    ref, name: str, actual, expected: torch.Tensor, upstream: dict[str, torch.Tensor], gradients: dict | None = None
) -> str | None:
    """A hint naming what the wrong step did, or None when nothing fits.

    ``gradients``: the gradients of the later tensors, consistent with ``upstream``, when the caller has them
    (the skipped-layer hint needs them).
    """
    if not isinstance(actual, torch.Tensor) or actual.shape != expected.shape:
        return None
    actual = actual.detach().to(expected.dtype)
    if not bool(torch.isfinite(actual).all()):
        return None
    try:
        return (
            wrong_tensor_hint(ref, name, actual, upstream)
            or factor_hint(ref, name, actual, expected)
            or grouping_hint(ref, name, actual, upstream)
            or skipped_layer_hint(ref, name, actual, gradients or {})
        )
    except RuntimeError:
        return None
