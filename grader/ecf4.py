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

from . import linewise
from .checks import Comparison
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


def analyse(fn, args, case, found: dict | None = None) -> dict | None:
    """The student's intermediates, which step is the first wrong one, and which parameters are right given it.

    ``found``: the function's names when it is over, if the caller has them (else it is called to read its locals).
    """
    found = found if found is not None else locals_at_return(fn, args)
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


def step_hint(case, t: str, own: dict) -> str | None:
    """What the wrong step ``d{t}`` did, from the op (``grader.hints_ops``), given the student's own upstream."""
    from . import fused, hints_ops

    try:
        if t == CHAIN[0]:  # the cross-entropy step: its softmax along another dimension?
            return hints_ops.other_dim_hint(
                fused.cross_entropy(case.Yb), case.values["logits"], own[t], fused.dims(case)
            )
        upstream = CHAIN[CHAIN.index(t) - 1]
        if [op.out for op in hints_ops.uses_of(case, t)] != [upstream]:
            return None  # used by more than one op (hprebn): the fused hints of Exercise 3 are not repeated here
        expected = vjp(case, upstream, t, own[upstream])
        return hints_ops.hint(case, t, own[t], expected, {upstream: own[upstream]}, case.grads)
    except RuntimeError:
        return None


def charged(wrong_step: str) -> str | None:
    """The parameter whose point the mistake in ``wrong_step`` costs: the first that depends on it."""
    for t in CHAIN[CHAIN.index(wrong_step) :]:
        if FEEDS[t]:
            return FEEDS[t][0]
    return None


def _source(param: str) -> str:
    return next(t for t, ps in FEEDS.items() if param in ps)


def carried_forward(name: str, fn, args, case, result, verdict_cls, comparison, where: str = "", found=None):
    """A verdict for the wrong gradient ``result`` of ``name``, error carried forward; None to keep the plain one."""
    info = analyse(fn, args, case, found)
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
    about = step_hint(case, first, own)
    summary += f". About d{first}: {about.rstrip('.')}" if about else ""
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


# ---------------------------------------------------------------------------------------------
# A function that raised: judged line by line (grader/linewise.py)
#
# A crash throws every gradient away, the right ones too. The grader re-runs the function one statement
# at a time on its own tensors: a gradient whose code never reads the line that raised is judged as if
# the function had returned it; a gradient that reads it has no value, and fails naming that line. An
# intermediate of the lecture's chain (dlogits, dh, ...) whose line raised gets, the moment the next
# line reads it, the right step from the student's own upstream (autograd's vector-Jacobian product):
# the lines after it are judged on their own, and the crash is charged once, to the first parameter
# gradient that depends on it, as a wrong step is.


def _carry(case):
    """The value a crashed intermediate ``d{t}`` of the chain gets: the right step from the student's upstream."""

    def substitute(name: str, namespace: dict) -> torch.Tensor | None:
        t = name[1:] if name.startswith("d") else None
        if t not in CHAIN:
            return None
        i = CHAIN.index(t)
        if i > 0:
            upstream = _as(namespace.get(f"d{CHAIN[i - 1]}"), case.grads[CHAIN[i - 1]])
            if upstream is not None:
                return vjp(case, CHAIN[i - 1], t, upstream).detach()
        return case.grads[t].detach().clone()

    return substitute


def _charges(run, values: dict) -> dict:
    """Each crash charged once: ``{parameter: (crash, the intermediate carried forward for it or None)}``.

    A crash that leaves some returned gradients without a value is charged to them already (they fail).
    Otherwise it costs the first parameter that depends on an intermediate carried forward for it, or,
    when nothing returned reads the line (a stray print), the first gradient the function computes after it.
    """
    out: dict = {}
    for crash in run.crashes:
        if any(c is crash for _, c in values.values()):
            continue
        carried = [name[1:] for name, c in run.substituted.items() if c is crash and name[1:] in CHAIN]
        if carried:
            first = min(carried, key=lambda t: ORDER.index(charged(t)) if charged(t) else len(ORDER))
            if charged(first):
                out.setdefault(charged(first), (crash, first))
                continue
        after = sorted((line, p) for p in ORDER if (line := run.owner.get(f"d{p}", 0)) > crash.line)
        out.setdefault(after[0][1] if after else ORDER[0], (crash, None))
    return out


def after_crash(fn, args, case, where: str, judge_value, verdict_cls, more: str = "") -> tuple[dict, str] | None:
    """The seven verdicts for a ``fn`` that raised on ``args``, line by line, and its first crash described;
    None to keep the plain failure.

    ``judge_value(p, value)`` is the exercise's verdict on a value; ``more`` is added to every failure
    (what the exercise says about this network, such as the notebook's sizes inside the function).
    """
    from .functions import autograd_crash
    from .model import PARAM_NAMES

    run = linewise.run(fn, args, substitute=_carry(case))
    if run is None or not run.crashes or any(autograd_crash(c.exc) for c in run.crashes):
        return None  # no source, or the crash is autograd's (a backward pass by hand cannot need it)
    returned = run.returned
    if len(returned) == 1 and returned[0][1] is not None:
        returned = returned * len(PARAM_NAMES)  # `return grads` with grads spoiled: all seven are
    if len(returned) != len(PARAM_NAMES):
        return None
    values = dict(zip(PARAM_NAMES, returned, strict=True))
    function, first = fn.__name__, run.crashes[0]
    charges = _charges(run, values)
    verdicts: dict = {}
    for p in PARAM_NAMES:
        value, crash = values[p]
        if crash is not None:
            own = run.owner.get(f"d{p}") == crash.line
            message = f"d{p} is wrong {where}: {crash.describe(function)}" + (
                f": that is the line of d{p}, so it never got a value." if own else f", and d{p} depends on that line."
            )
            message += more
            verdicts[p] = verdict_cls(False, Comparison(False), message)
        elif p not in charges:
            verdicts[p] = _judged(p, value, fn, args, case, where, judge_value, verdict_cls, run, first, function)
    for p, (crash, carried) in charges.items():
        if carried is None:
            message = (
                f"{crash.describe(function)}: {function} stops there, so the training loop never gets its "
                f"gradients. That line is charged to d{p}, the first gradient computed after it."
            )
        else:
            fine = [
                q for q in ORDER if q in verdicts and verdicts[q].ok and CHAIN.index(_source(q)) >= CHAIN.index(carried)
            ]
            message = (
                f"{crash.describe(function)}, so d{carried} ({STEP[carried]}) never got its value. The grader "
                f"carried the right d{carried} forward in its place"
                + (f": {_names(fine)} {'is' if len(fine) == 1 else 'are'} right given it." if fine else ".")
            )
        verdicts[p] = verdict_cls(False, Comparison(False), f"d{p} is wrong {where}: {message}{more}")
    return verdicts, first.describe(function)


def _judged(p, value, fn, args, case, where, judge_value, verdict_cls, run, first, function):
    """The verdict on a gradient the line-by-line run computed, error carried forward as for a function that returns."""
    crashed = f"{function} itself raises: {first.describe(function)}"
    verdict = judge_value(p, value)
    if verdict.ok:
        return verdict_cls(True, verdict.comparison, f"ok: your code for d{p} is right; {crashed}", verdict.note)
    carried = carried_forward(p, fn, args, case, value, verdict_cls, verdict.comparison, where, found=run.namespace)
    verdict = carried or verdict
    verdict.message += f" (Also: {crashed}.)"
    return verdict
