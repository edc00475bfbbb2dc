"""Exercise 4: error carried forward inside ``manual_backward``, one mistake charged once.

When a parameter's gradient is wrong, the grader calls the function again (on fresh copies, under
no_grad) and reads its locals at return under the lecture's names: ``dlogits``, ``dh``, ``dhpreact``,
``dhprebn``, ``dembcat``. Each is checked as a step from the one before it (autograd's vector-
Jacobian product of the forward pass between the two, applied to the student's own upstream), so
the first wrong step is found. Its mistake costs the point of the first parameter gradient that
depends on it; every other parameter gradient that is the right step from the student's own
upstream gets its point. A function without these names keeps the plain judgement, and its hint names
the first wrong parameter gradient in the order the backward pass reaches them (``first_wrong``).
"""

from __future__ import annotations

import sys

import torch

from .checks import close as _close

# The lecture's intermediate gradients in the order the backward pass computes them, the step each
# one is, and the parameters whose gradients come from it.
CHAIN = ("logits", "h", "hpreact", "hprebn", "embcat")
STEP = {
    "logits": "the cross-entropy step",
    "h": "the second linear layer's step",
    "hpreact": "the tanh step",
    "hprebn": "the batchnorm step",
    "embcat": "the first linear layer's step",
}
FEEDS = {"logits": ("W2", "b2"), "h": (), "hpreact": ("bngain", "bnbias"), "hprebn": ("W1", "b1"), "embcat": ("C",)}
ORDER = ("W2", "b2", "bngain", "bnbias", "W1", "b1", "C")  # the parameters, as the backward pass reaches them


def locals_at_return(fn, args) -> dict | None:
    """``fn(*args)`` under no_grad; its local variables when it returns (None if it raised)."""
    captured: dict = {}
    code = getattr(fn, "__code__", None)
    if code is None:
        return None

    def profile(frame, event, arg):
        if event == "return" and frame.f_code is code:
            captured.update(frame.f_locals)

    old = sys.getprofile()
    sys.setprofile(profile)
    try:
        with torch.no_grad():
            fn(*args)
    except Exception:  # noqa: BLE001 - the verdict already says what went wrong
        return None
    finally:
        sys.setprofile(old)
    return captured


def vjp(case, upstream_of: str, wrt: str, upstream: torch.Tensor) -> torch.Tensor:
    """d ``upstream_of`` / d ``wrt`` applied to ``upstream``: the forward pass between them, re-run, by autograd."""
    values = case.rerun(wrt, until=upstream_of)
    (grad,) = torch.autograd.grad(values[upstream_of], values[wrt], upstream.reshape(values[upstream_of].shape))
    return grad


def _as(value, like: torch.Tensor) -> torch.Tensor | None:
    if not isinstance(value, torch.Tensor) or not value.is_floating_point() or value.numel() != like.numel():
        return None
    return value.detach().to(like.dtype).reshape(like.shape)


def analyse(fn, args, case) -> dict | None:
    """The student's intermediates, which step is the first wrong one, and which parameters are right given it."""
    found = locals_at_return(fn, args)
    if found is None:
        return None
    own = {t: _as(found.get(f"d{t}"), case.grads[t]) for t in CHAIN}
    if any(v is None for v in own.values()):
        return None  # another way of writing it: the plain judgement stands
    wrong_steps = []
    for i, t in enumerate(CHAIN):
        expected = case.grads[t] if i == 0 else vjp(case, CHAIN[i - 1], t, own[CHAIN[i - 1]])
        if not _close(own[t], expected):
            wrong_steps.append(t)
    if not wrong_steps:
        return None
    return {"own": own, "wrong": wrong_steps, "found": found}


def charged(wrong_step: str) -> str | None:
    """The parameter whose point the mistake in ``wrong_step`` costs: the first that depends on it."""
    for t in CHAIN[CHAIN.index(wrong_step) :]:
        if FEEDS[t]:
            return FEEDS[t][0]
    return None


def _source(param: str) -> str:
    return next(t for t, ps in FEEDS.items() if param in ps)


def carried_forward(name: str, fn, args, case, result, verdict_cls, comparison, where: str = ""):
    """A verdict for the wrong gradient ``result`` of ``name``, error carried forward; None to keep the plain one."""
    info = analyse(fn, args, case)
    if info is None:
        return None
    own, wrong = info["own"], info["wrong"]
    source = _source(name)
    step = vjp(case, source, name, own[source])
    got = _as(result, case.grads[name])
    right_given = got is not None and tuple(result.shape) == tuple(case.grads[name].shape) and _close(got, step)
    first = wrong[0]
    fine = [
        p for p in ORDER if CHAIN.index(_source(p)) >= CHAIN.index(first) and _right_given(p, info["found"], case, own)
    ]
    summary = f"d{first} ({STEP[first]}) is wrong" + (
        f"; {_names(fine)} {'is' if len(fine) == 1 else 'are'} right given it" if fine else ""
    )
    if charged(first) == name or not right_given:
        return verdict_cls(False, comparison, f"d{name} is wrong{' ' + where if where else ''}: {summary}.")
    return verdict_cls(True, comparison, f"ok: this step is right given your d{source}; {summary}", comparison.note)


def _right_given(param, found, case, own) -> bool:
    value = _as(found.get(f"d{param}"), case.grads[param])
    if value is None:
        return False
    source = _source(param)
    return _close(value, vjp(case, source, param, own[source]))


def _names(params) -> str:
    names = [f"d{p}" for p in params]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def first_wrong(grads: dict, case) -> str | None:
    """The first parameter, in ``ORDER``, whose gradient in ``grads`` is not autograd's (None: all are right)."""
    for p in ORDER:
        value = grads.get(p)
        right = (
            isinstance(value, torch.Tensor)
            and tuple(value.shape) == tuple(case.grads[p].shape)
            and _close(value.detach().to(case.grads[p].dtype), case.grads[p])
        )
        if not right:
            return p
    return None


def chain_note(name: str, grads: dict, case) -> str:
    """Where to start when the function's intermediates cannot be read: the first wrong parameter gradient."""
    first = first_wrong(grads, case)
    if first is None:
        return ""
    order = _names(ORDER)
    if first == name:
        return f" It is the first wrong one of {order}, in the order the backward pass reaches them: start here."
    return (
        f" The first wrong one of {order} (in the order the backward pass reaches them) is d{first}: a mistake"
        f" there spoils the gradients after it, so start there."
    )
