"""Exercise 1: each gradient judged by its own code, which the grader re-runs privately.

``atomic.check_value`` judges the value a student's gradient has (error carried forward: the right
local step applied to the student's own upstream gradients also passes). Here the student's *code*
for the gradient is judged too, found in the cells the kernel ran (``grader.rerun``):

* **Across crashes.** When ``dX`` is missing, or its code never (fully) ran because its cell raised
  earlier, or its value is unusable because an upstream gradient it reads has the wrong shape, the
  code is re-run privately with the student's upstream gradients where usable, the reference's
  otherwise, and that result is judged as the value would be. One mistake costs one point.
* **As a local step.** The code is re-run on a random upstream gradient (a seeded generator) and
  compared with autograd's vector-Jacobian product of the same op (``Reference.branches``): a
  formula that gives the right numbers only because the true gradient is zero on this network (the
  sign of ``dlogit_maxes``...) fails, and an answer whose code reads no upstream gradient (all zeros)
  is judged by its value alone, never as "the right step of a zero upstream".

When the code cannot be isolated (it reads what the grader cannot give it, or raises on the
random upstream), the value judgement stands: never a false fail. Every reference is autograd's.
It is long because both judgements, and the messages that say which one spoke, share one re-run.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from . import checks, rerun
from .checks import ATOL, Comparison, Context, batch_factors, compare, fmt_shape
from .hints_ops import op_text
from .ipython import stub_hint

RANDOM_SEED = 1234  # the random upstream gradients: torch.Generator().manual_seed(RANDOM_SEED + k)


class Missing:
    """Stands for an answer that is not defined in the notebook (``atomic.answer``)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name} is not defined>"


@dataclass
class StepCheck:
    ok: bool
    comparison: Comparison
    upstream: tuple[str, ...]  # the gradients the code read
    value: object = None  # what the code gave
    expected: torch.Tensor | None = None  # autograd's step
    given: dict | None = None  # the gradient that came down each op's output, by the output's name
    known: dict | None = None  # every gradient of the run, consistent with ``given`` (hints_ops: a layer skipped)


_step_cache: dict[tuple, StepCheck | None] = {}
_descendants: dict[str, set[str]] = {}


def reset() -> None:
    _step_cache.clear()
    rerun.forget()


_checker = None  # grader.atomic, which binds itself when it is imported (this module never imports it)


def bind(checker) -> None:
    """Exercise 1's checker (``grader.atomic``): its reference network, value judge and recorded answers."""
    global _checker
    _checker = checker


def _atomic():
    return _checker


def _forward(ref) -> dict:
    return {**ref.values, "Xb": ref.Xb, "Yb": ref.Yb}


def _tensor_names(ref) -> set[str]:
    return set(ref.values) | {"Xb", "Yb"}


def code_of(name: str, history, namespace: dict) -> rerun.Code | None:
    if not history:
        return None
    ref = _atomic().reference()
    return rerun.code_for(f"d{name}", history, _tensor_names(ref), available=namespace.keys())


def _downstream(ref, name: str) -> set[str]:
    """The tensors ``name`` flows into (its descendants in the forward pass)."""
    if name not in _descendants:
        out, frontier = set(), {name}
        while frontier:
            nxt = {op.out for op in ref.ops if frontier.intersection(op.inputs)} - out
            out |= nxt
            frontier = nxt
        _descendants[name] = out
    return _descendants[name]


def _shaped(value: torch.Tensor, like) -> torch.Tensor:
    """``value`` in the shape of the student's own tensor ``like`` when that is the same up to size-1 dims."""
    if (
        isinstance(like, torch.Tensor)
        and like.numel() == value.numel()
        and like.squeeze().shape == value.squeeze().shape
    ):
        return value.reshape(like.shape)
    return value


def local_step(name: str, code: rerun.Code, namespace: dict) -> StepCheck | None:
    """Run ``code`` on random upstream gradients and compare with autograd's step; None if it cannot be done.

    A random gradient goes into the tensors the code reads that are nearest the loss; the other
    gradients it reads (and the op outputs it does not read) get what autograd propagates from
    those, so that the inputs are consistent, as in a real backward pass.
    """
    atomic = _atomic()
    ref = atomic.reference()
    reads = sorted(g[1:] for g in code.gradients)
    if not reads or any(r not in ref.grads or r == "loss" for r in reads):
        return None
    key = (id(ref), name, code.source(), tuple((r, _shape_of(namespace.get(f"d{r}"))) for r in reads))
    if key in _step_cache:
        return _step_cache[key]
    free = [r for r in reads if not any(o != r and o in _downstream(ref, r) for o in reads)]
    g = torch.Generator().manual_seed(RANDOM_SEED + atomic.ORDER.index(name))
    known = {r: torch.randn(ref.grads[r].shape, generator=g, dtype=ref.grads[r].dtype) for r in free}
    order = list(atomic.ORDER)
    for t in order[: order.index(name)]:
        if t in known:
            continue
        outs = [op.out for op in ref.uses(t)]
        if outs and all(o in known for o in outs):
            known[t] = sum(ref.branches(t, {o: known[o] for o in outs}).values())
    result = None
    if all(r in known for r in reads):
        ups = [op.out for op in ref.uses(name)]
        for o in ups:
            if o not in known:  # a path the code does not read: any gradient may come down it
                known[o] = torch.randn(ref.grads[o].shape, generator=g, dtype=ref.grads[o].dtype)
        branches = ref.branches(name, {o: known[o] for o in ups})
        expected = sum(branches.values())
        given = {f"d{r}": _shaped(known[r], namespace.get(f"d{r}")) for r in reads}
        value, error = code.run(given, _forward(ref), namespace)
        if (
            error is None
            and _atomic()._usable(value, expected) is None
            and any(_misshapen(g, namespace) for g in given)
        ):
            # written right, but broadcast by an upstream gradient of the wrong shape: the step on the right shapes
            given = {f"d{r}": known[r] for r in reads}
            value, error = code.run(given, _forward(ref), namespace)
        if error is None:
            several = len(branches) > 1
            context = Context(
                factors=batch_factors(ref.n),
                branches=branches if several else {},
                terms={f"the path through `{o}`": b for o, b in branches.items()} if several else {},
            )
            comparison = compare(value, expected, f"`{name}`", context)
            upstream = {o: known[o] for o in ups}
            result = StepCheck(comparison.ok, comparison, tuple(reads), value, expected, upstream, dict(known))
    _step_cache[key] = result
    return result


def _shape_of(value):
    return tuple(value.shape) if isinstance(value, torch.Tensor) else None


def _cell_name(index: int, history) -> str:
    atomic = _atomic()
    written = [w[1:] for st in rerun.statements([history[index]]) for w in sorted(st.writes)]
    for stage, names in atomic.STAGES.items():
        if any(w in names for w in written):
            return f"the {stage} cell"
    return f"cell [{index}]"


def never_ran(code: rerun.Code, history) -> tuple[str, bool] | None:
    """Why ``code`` did not (fully) run in the notebook, and whether a time/memory limit stopped it."""
    ran, first, crash = code.ran()
    if ran:
        return None
    where = _cell_name(first.cell, history)
    if not crash.line:
        return f"in your notebook it never ran because {where} did not compile ({crash.error})", crash.limit
    if first.lineno <= crash.line <= first.end_lineno:
        return f"in your notebook it did not finish: line {crash.line} of {where} raised {crash.error}", crash.limit
    return f"in your notebook it never ran because line {crash.line} of {where} raised {crash.error}", crash.limit


def _upstream_for_rerun(code: rerun.Code, namespace: dict) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Each gradient the code reads: the student's own where usable, else the reference's."""
    atomic = _atomic()
    ref = atomic.reference()
    given, replaced = {}, []
    for g in sorted(code.gradients):
        tensor = g[1:]
        true = ref.grads[tensor]
        own = atomic._submitted.get(tensor)
        if own is None:
            own = atomic._usable(namespace.get(g), true)
        if own is None:
            replaced.append(g)
            given[g] = _shaped(true, namespace.get(g))
        else:
            given[g] = _shaped(own, namespace.get(g))
    return given, replaced


def _unusable(gradient: str, namespace: dict) -> bool:
    ref = _atomic().reference()
    tensor = gradient[1:]
    return tensor in ref.grads and _atomic()._usable(namespace.get(gradient), ref.grads[tensor]) is None


def _misshapen(gradient: str, namespace: dict) -> bool:
    """The student's ``gradient`` is a tensor of another shape than its tensor's (size-1 dimensions aside)."""
    ref = _atomic().reference()
    value = namespace.get(gradient)
    tensor = gradient[1:]
    return tensor in ref.grads and isinstance(value, torch.Tensor) and value.shape != ref.grads[tensor].shape


def _zero_for_every_input(true: torch.Tensor) -> bool:
    return bool(true.abs().max().item() <= ATOL)


def _describe_ops(ref, name: str) -> str:
    return " and ".join(f"`{op_text(op)}`" for op in ref.uses(name))


def judge(name: str, dt, namespace: dict | None, history, record: bool = True):
    """The verdict on ``dt`` (or a ``Missing``) as the gradient of ``name``: its value and its own code."""
    atomic = _atomic()
    ref = atomic.reference()
    namespace = namespace or {}
    true = ref.grads[name]
    target = f"d{name}"
    try:
        code = code_of(name, history, namespace)
    except Exception:  # noqa: BLE001 - reading the code must never break a check
        code = None
    missing = isinstance(dt, Missing)

    # 1. The code never (fully) ran, or could not: re-run it with usable upstream gradients.
    reason = limited = None
    if code is not None:  # (a slice that uses autograd is no code: rerun.code_for)
        stopped = never_ran(code, history)
        if stopped is not None and stopped[1]:
            reason = None  # a time or memory limit stopped it: it is not re-run
            limited = stopped[0].replace("raised ", "was stopped by the time or memory limit: ")
        elif stopped is not None:
            reason = stopped[0]
        elif missing:
            reason = "in your notebook it is not defined"
        elif atomic._usable(dt, true) is None:
            # an upstream gradient of the wrong shape (a missing keepdim=True) broadcasts this gradient's own,
            # right, code into the wrong shape: judge the code on upstream gradients of the right shape
            bad = [g for g in sorted(code.gradients) if _unusable(g, namespace) or _misshapen(g, namespace)]
            if bad:
                reason = (
                    f"in your notebook it is unusable because {', '.join(bad)}, which it reads, "
                    f"is missing or has the wrong shape"
                )
    error = None
    if reason is not None:
        given, _ = _upstream_for_rerun(code, namespace)
        value, error = code.run(given, _forward(ref), namespace)
        if error is None and atomic._usable(value, true) is None and any(_misshapen(g, namespace) for g in given):
            # the code was written for the student's own upstream shape, or only works with the true one: try both
            given = {g: t.reshape(ref.grads[g[1:]].shape) for g, t in given.items()}
            value, error = code.run(given, _forward(ref), namespace)
        if error is None and isinstance(value, torch.Tensor):
            verdict = atomic.judge_value(name, value, namespace, history, record=record)
            if not verdict.ok:
                _better_hint(name, verdict, code, namespace)
            verdict = _judge_code(name, value, verdict, code, namespace, record)
            if verdict.ok:
                ecf = verdict.message.removeprefix("ok").removeprefix(": this step is right")
                verdict.message = f"ok: your code for {target} is right; {reason}{ecf}"
            return verdict
        if error is None:
            error = f"it leaves {target} as {checks.describe_type(value).removeprefix('it is ')}"

    # 2. The value, as it is in the notebook (error carried forward).
    verdict = atomic.judge_value(name, None if missing else dt, namespace, history, record=record)
    if code is not None and not missing:
        shared = _shared_memory(namespace)
        if shared:
            aliased = _aliasing(name, code, namespace, history, shared, verdict, record)
            if aliased is not None:
                return aliased
    if not verdict.ok and not missing and code is not None:
        _better_hint(name, verdict, code, namespace)
        if error is not None and reason is not None:
            # its cell stopped before the gradient was finished, and the code stops again when re-run: the
            # error is the mistake to name, not what the half-finished value looks like
            verdict.message = (
                f"{target} is wrong: {reason.removeprefix('in your notebook ')}, and your code for it, re-run with "
                f"usable upstream gradients, stops there too ({error}). What it left: "
                f"{verdict.message.removeprefix(f'{target} is wrong: ')}"
            )
    if missing and not verdict.ok:
        if error is not None:
            verdict.message = (
                f"{target} is not defined ({reason}), and your code for it, re-run with usable upstream "
                f"gradients, does not give it either: {error}"
            )
        else:
            verdict.message = f"{target} is not defined. " + (
                f"Your code for it is not re-run: {limited}."
                if limited
                else (stub_hint(target) or "").removeprefix("Hint: ")
            )
        return verdict
    if not verdict.ok:
        return verdict
    if code is None:
        return _no_zero_credit(name, dt, verdict, record)
    return _judge_code(name, dt, verdict, code, namespace, record)


def _shared_memory(namespace: dict) -> dict[str, list[str]]:
    """Each gradient of the notebook that shares its memory with others: ``{"dbnraw": ["dbndiff"], ...}``."""
    by_storage: dict[int, list[str]] = {}
    for t in _atomic().ORDER:
        value = namespace.get(f"d{t}")
        if isinstance(value, torch.Tensor) and value.numel():
            by_storage.setdefault(value.untyped_storage().data_ptr(), []).append(f"d{t}")
    return {g: [o for o in group if o != g] for group in by_storage.values() if len(group) > 1 for g in group}


def _made_alias(target: str, code: rerun.Code, shared: dict[str, list[str]]) -> tuple[str, str, str] | None:
    """(the other gradient, the statement that made ``target`` a second name for it, the in-place statement
    that then changed both) when ``target``'s own code did that: ``dbndiff = dbnraw`` then ``dbndiff *= ...``."""
    for i, st in enumerate(code.statements):
        partners = [o for o in shared.get(target, ()) if o in st.reads]
        if target in st.rebinds and partners:
            later = [s for s in code.statements[i + 1 :] if target in s.writes and target not in s.rebinds]
            if later:
                return partners[0], st.text.strip(), later[0].text.strip()
    return None


def _aliasing(name: str, code: rerun.Code, namespace: dict, history, shared: dict, verdict, record: bool):
    """Memory shared between gradients (`dY = dX` without .clone(), then an in-place `dY *= ...`): the one
    mistake is charged once, to the gradient whose code made the second name and changed the other through
    it; a gradient whose own code is right (a right local step) passes, whatever that did to its value or to
    the values it read. None: no aliasing concerns this gradient, the verdict stands."""
    atomic = _atomic()
    ref = atomic.reference()
    target = f"d{name}"
    made = _made_alias(target, code, shared)
    if made is not None:
        other, alias, change = made
        atomic._remember(name, namespace.get(target), ref.grads[name], record, roots=(name,))
        verdict.ok = False
        verdict.message = (
            f"{target} is wrong: `{alias}` makes {target} a second name for {other}, not a copy (they share "
            f"memory), so `{change}` changed {other} too. Use {other}.clone()."
        )
        return verdict
    involved = [g for g in [target, *sorted(code.gradients)] if g in shared]
    if verdict.ok or not involved:
        return None
    step = local_step(name, code, namespace)
    if step is None or not step.ok:
        return None
    # what later gradients were computed from is the notebook's value: error carried forward starts there
    atomic._remember(name, namespace.get(target), ref.grads[name], record, roots=(name,))
    first = involved[0]
    # the statement that made the alias, from the other gradient's own code (none named when it cannot be read)
    partners = [(other, code_of(other[1:], history, namespace)) for other in shared[first]]
    makers = [f"`{m[1]}`" for other, theirs in partners if theirs and (m := _made_alias(other, theirs, shared))]
    verdict.ok = True
    verdict.message = (
        f"ok: your code for {target} is right; its value in your notebook is not what it computed, because "
        f"{first} and {', '.join(shared[first])} share memory and an in-place update through one changed the other"
        + (f" ({', '.join(makers)}: that costs its own point)" if makers else "")
    )
    return verdict


GENERIC = ("it is off: relative error", "(they share memory)")


def _better_hint(name: str, verdict, code: rerun.Code, namespace: dict) -> None:
    """Replace a generic "how far off" hint by what the wrong local step did, found from the op."""
    if not any(g in verdict.message for g in GENERIC) or not code.gradients:
        return
    try:
        step = local_step(name, code, namespace)
    except Exception:  # noqa: BLE001 - a hint must never break a check
        return
    if step is None or step.ok:
        return
    from . import hints_ops

    better = hints_ops.hint(_atomic().reference(), name, step.value, step.expected, step.given, step.known)
    if better is None and not step.comparison.hint.startswith("it is off:"):
        better = step.comparison.hint
    if better:
        verdict.message = f"d{name} is wrong: {better}"


def _no_zero_credit(name: str, dt, verdict, record: bool):
    """Where the code cannot be judged: a zero answer is not credited as the step of a zero upstream."""
    atomic = _atomic()
    if verdict.comparison.ok or not isinstance(dt, torch.Tensor) or dt.detach().abs().max().item() > ATOL:
        return verdict
    atomic._remember(name, dt, atomic.reference().grads[name], record, roots=(name,))
    verdict.ok = False
    verdict.message = (
        f"d{name} is wrong: {verdict.comparison.hint} (it equals the backward step applied to your own "
        f"upstream gradient only because that is zero too, which says nothing about your step)"
    )
    return verdict


def _judge_code(name: str, dt, verdict, code: rerun.Code, namespace: dict, record: bool):
    """A value that passed, judged again by its code; the verdict, failed where the code is wrong."""
    atomic = _atomic()
    ref = atomic.reference()
    true = ref.grads[name]
    target = f"d{name}"
    if not verdict.ok:
        return verdict
    zero_answer = isinstance(dt, torch.Tensor) and not bool(dt.detach().any())
    if zero_answer and _zero_for_every_input(true):
        return verdict  # the student knows it is zero
    if not code.gradients:
        if verdict.comparison.ok:
            return verdict  # derived in one go from the forward pass, and right
        # credited as the step of the student's own upstream, but the code never reads one
        atomic._remember(name, dt, true, record, roots=(name,))
        verdict.ok = False
        ups = ", ".join(f"d{op.out}" for op in ref.uses(name))
        verdict.message = (
            f"{target} is wrong: {verdict.comparison.hint} Your code for {target} does not use the gradient "
            f"that flows into it ({ups}), so it cannot be the backward step of {_describe_ops(ref, name)}."
        )
        return verdict
    step = local_step(name, code, namespace)
    if step is None:
        return _no_zero_credit(name, dt, verdict, record)
    if step.ok:
        return verdict
    atomic._remember(name, dt, true, record, roots=(name,))
    verdict.ok = False
    if _zero_for_every_input(true):
        why = (
            f"the true {target} is zero, for any input (the loss does not depend on {name}), "
            f"and your formula happens to give about zero too"
        )
    else:
        why = "the part of it your code gets wrong happens to be (almost) zero on this network"
    shapes = ", ".join(f"d{r}" for r in step.upstream)
    verdict.message = (
        f"{target} is wrong, although its value matches here: {why}. As the backward step of "
        f"{_describe_ops(ref, name)}, run on a random {shapes}, your code gives the wrong result: "
        f"{step.comparison.hint}"
    )
    return verdict


def describe_missing(value) -> str:
    return f"{value.name} is not defined" if isinstance(value, Missing) else fmt_shape(getattr(value, "shape", ()))
