"""Exercise 1: backprop through the lecture's forward pass, one atomic operation at a time.

``cmp(name, dt, t)`` prints the lecture's row, comparing the answer ``dt`` with the gradient
autograd computes for ``name`` on a private copy of the check network, and adds a verdict.

Marking is error carried forward, as a good examiner marks: a gradient also passes when it is
the correct local backward step applied to the student's *own* upstream gradients, so one
mistake costs one point. That step comes from autograd too: each op that uses the tensor is
re-run on detached inputs and differentiated alone (``Reference.branches``).
"""

from __future__ import annotations

import sys

import torch

from . import graph, guard, integrity, owncode, rerun
from .checks import Context, Verdict, batch_factors, built_with_autograd, compare, repeated_index_hint, report
from .ipython import expect_names
from .model import ORDER, STAGES, check_case  # noqa: F401 (grader.atomic.STAGES, ORDER: the notebooks' API)
from .owncode import Missing


class Reference:
    """The check network, built privately: its own data, parameters, batch and forward pass."""

    def __init__(self, case=None) -> None:
        case = case if case is not None else check_case()
        self.Xb, self.Yb, self.n, self.ops = case.Xb, case.Yb, case.n, case.ops
        self.values, self.grads = case.values, case.grads

    def uses(self, name: str):
        return [op for op in self.ops if name in op.inputs]

    def branches(self, name: str, upstream: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The gradient flowing into ``name`` through each op that uses it, by the op's output.

        ``upstream[out]`` is the gradient of the loss with respect to that op's output.
        """
        out = {}
        with torch.enable_grad():
            for op in self.uses(name):
                args = [self.values[k].clone().requires_grad_(k == name) for k in op.inputs]
                result = op.fn(*args)
                (out[op.out],) = torch.autograd.grad(result, args[op.inputs.index(name)], upstream[op.out])
        return out


_reference: Reference | None = None


def reference() -> Reference:
    global _reference
    if _reference is None:
        _reference = Reference()
    return _reference


# What the student submitted for each gradient at its last check, and the mistakes it inherits.
_submitted: dict[str, torch.Tensor] = {}
_roots: dict[str, tuple[str, ...]] = {}


def _usable(value, like: torch.Tensor) -> torch.Tensor | None:
    """``value`` as a float tensor of ``like``'s shape, or None if it cannot stand in for it."""
    if not isinstance(value, torch.Tensor) or not value.is_floating_point() or value.numel() != like.numel():
        return None
    if value.squeeze().shape != like.squeeze().shape:  # size-1 dimensions aside, the same shape
        return None
    value = value.detach().to(like.dtype).reshape(like.shape)
    return value if bool(torch.isfinite(value).all()) else None


def _repeated_rows(rows) -> str:
    return (
        f"(rows {', '.join(str(i) for i in rows)}). An indexed `+=` such as dC[Xb] += ... applies each repeated "
        f"index only once, so their gradients do not add up: accumulate one example at a time, or with index_add_."
    )


def _alias_hint(dt, name: str, namespace: dict):
    def diagnose(a: torch.Tensor, b: torch.Tensor) -> str | None:
        if not isinstance(dt, torch.Tensor):
            return None
        ptr = dt.untyped_storage().data_ptr()
        others = [
            k
            for k, v in namespace.items()
            if k != f"d{name}"
            and k.startswith("d")
            and isinstance(v, torch.Tensor)
            and v.untyped_storage().data_ptr() == ptr
        ]
        if others:
            other = others[0]
            return (
                f"d{name} and {other} are one tensor (they share memory): `{other} = d{name}` gives it a "
                f"second name, not a copy, so an in-place `{other} += ...` changed d{name} too. "
                f"Use .clone()."
            )
        return None

    return diagnose


def _integrity_problem(name: str, dt, history) -> str | None:
    return built_with_autograd(name, dt) or integrity.problem([f"d{name}"], history, barriers=[f"d{k}" for k in ORDER])


def judge(name: str, dt, namespace: dict | None = None, history=None, record: bool = True) -> Verdict:
    """Judge ``dt`` (or ``answer(...)``'s ``Missing``) as the gradient of ``name``: its value, error
    carried forward, and the student's own code for it, re-run privately (``grader.owncode``)."""
    if name not in ORDER:
        raise KeyError(f"{name!r} is not one of the 26 tensors of Exercise 1: {', '.join(ORDER)}")
    return owncode.judge(name, dt, namespace, history, record)


def judge_value(name: str, dt, namespace: dict | None = None, history=None, record: bool = True) -> Verdict:
    """Judge the value ``dt`` as the gradient of ``name``, error carried forward."""
    if name not in ORDER:
        raise KeyError(f"{name!r} is not one of the 26 tensors of Exercise 1: {', '.join(ORDER)}")
    ref = reference()
    true = ref.grads[name]
    what = f"`{name}`"
    vs_autograd = compare(dt, true, what)
    problem = _integrity_problem(name, dt, history)
    if problem:
        _remember(name, dt, true, record, roots=(name,))
        return Verdict(False, vs_autograd, problem)

    # The local backward step, applied to the student's own upstream gradients where they have them.
    upstream, inherited = {}, set()
    for op in ref.uses(name):
        own = _usable(_submitted.get(op.out), ref.grads[op.out])
        if own is not None and not compare(own, ref.grads[op.out]).ok:
            upstream[op.out] = own
            inherited.update(_roots.get(op.out, (op.out,)))
        else:
            upstream[op.out] = ref.grads[op.out]
    branches = ref.branches(name, upstream)
    step = sum(branches.values())
    context = Context(
        factors=batch_factors(ref.n),
        branches=branches if len(branches) > 1 else {},
        diagnostics=(_alias_hint(dt, name, namespace or {}),)
        + ((repeated_index_hint(ref.Xb, true.shape[0], _repeated_rows),) if name == "C" else ()),
    )
    vs_step = compare(dt, step, what, context)
    if vs_autograd.ok:
        _remember(name, dt, true, record, roots=())
        return Verdict(True, vs_autograd, "ok", vs_autograd.note)
    if vs_step.ok:
        roots = tuple(sorted(inherited))
        _remember(name, dt, true, record, roots=roots)
        sources = ", ".join(f"d{r}" for r in roots)
        return Verdict(True, vs_autograd, f"ok: this step is right; the difference comes from {sources}", vs_step.note)
    _remember(name, dt, true, record, roots=(name,))
    return Verdict(False, vs_autograd, f"d{name} is wrong: {vs_step.hint}")


def reset() -> None:
    """Forget every recorded answer (the upstream gradients used for error carried forward)."""
    _submitted.clear()
    _roots.clear()
    owncode.reset()


def _remember(name: str, dt, true: torch.Tensor, record: bool, roots: tuple[str, ...]) -> None:
    if not record:
        return
    usable = _usable(dt, true)
    if usable is None:
        _submitted.pop(name, None)
    else:
        _submitted[name] = usable.clone()
    _roots[name] = roots


def _caller_globals() -> dict:
    return sys._getframe(2).f_globals


def cmp(s: str, dt, t=None) -> None:
    """The lecture's check: print ``s | exact | approximate | maxdiff`` and a verdict for ``dt``.

    ``t`` (the forward tensor, whose ``.grad`` the lecture compares with) is accepted for the
    lecture's signature; the reference is autograd's gradient on the grader's private copy.
    Raises AssertionError, with a hint, when ``dt`` is wrong.
    """
    report(s, judge(s, dt, _caller_globals(), integrity.kernel_history()))


def answer(name: str):
    """The notebook's ``name`` (e.g. ``answer('dbnvar_inv')``), or a ``Missing`` that the check re-runs.

    A test cell reads the answer through it, so that a gradient whose cell crashed earlier is still
    checked (its code is re-run privately) instead of the cell stopping at a NameError.
    """
    return sys._getframe(1).f_globals.get(name, Missing(name))


def verify(s: str, dt=None) -> None:
    """The hidden test: the same judgement as ``cmp``, from the grader itself; silent on success.

    Without ``dt`` it reads ``d`` + ``s`` from the notebook itself (a ``Missing`` when undefined).
    """
    namespace = _caller_globals()
    if dt is None:
        dt = namespace.get(f"d{s}", Missing(f"d{s}"))
    verdict = judge(s, dt, namespace, integrity.kernel_history())
    if not verdict.ok:
        raise AssertionError(verdict.message)


def _print_rows(names, namespace: dict, verdicts: dict | None = None) -> int:
    """Print a row (and the hint, when wrong) for each of ``names`` as it is now; return how many pass."""
    history = integrity.kernel_history()
    passed = 0
    for name in names:
        key = f"d{name}"
        if key not in namespace:
            print(f"{name:15s} | {key} is not defined yet (is its answer cell still the NotImplementedError() stub?)")
            continue
        verdict = judge(name, namespace[key], namespace, history)
        if verdicts is not None:
            verdicts[name] = verdict
        passed += verdict.ok
        print(verdict.row(name).splitlines()[0] + ("" if verdict.ok else f": {verdict.message}"))
    return passed


def check_stage(stage: str, namespace: dict | None = None) -> None:
    """Your gradients of one stage so far, with hints; for you, not graded, and it never raises.

    The graded checks come after all the answer cells, so a line written in a later answer cell
    still counts.
    """
    if stage not in STAGES:
        raise KeyError(f"{stage!r} is not a stage: {', '.join(STAGES)}")
    namespace = namespace if namespace is not None else sys._getframe(1).f_globals
    _print_rows(STAGES[stage], namespace, verdicts := {})
    _picture(namespace, verdicts)  # the picture of the whole graph, in a kernel only


def table(namespace: dict | None = None) -> None:
    """Print all 26 rows for the gradients as they are now (``d`` + name in ``namespace``)."""
    namespace = namespace if namespace is not None else sys._getframe(1).f_globals
    passed = _print_rows(ORDER, namespace, verdicts := {})
    print(f"{passed} of {len(ORDER)} gradients pass")
    _picture(namespace, verdicts)  # the picture of the whole graph, in a kernel only


expect_names([f"d{name}" for name in ORDER], "Its answer cell")


def statuses(namespace: dict, verdicts: dict) -> dict[str, str]:
    """Every tensor's status for the picture (``grader.graph``): ``verdicts`` (the rows just printed), the
    rest judged now, without being recorded (``record=False``), so the picture changes nothing that a later
    check sees."""
    history = None
    out = {}
    for name in ORDER:
        if name in verdicts:
            out[name] = graph.status(verdicts[name])
        elif f"d{name}" in namespace:
            if history is None:
                history = integrity.kernel_history()
            out[name] = graph.status(judge(name, namespace[f"d{name}"], namespace, history, record=False))
        else:
            out[name] = graph.UNDEFINED
    return out


def _picture(namespace: dict, verdicts: dict) -> bool:
    """``check_stage`` and ``table``: the whole graph of Exercise 1, coloured by every gradient's verdict."""
    if not graph.in_kernel():
        return False
    return graph.show(statuses(namespace, verdicts), exercise="exercise1")


rerun.install()
owncode.bind(sys.modules[__name__])
guard.snapshot()  # what the checks rely on, before any answer cell runs (grader/guard.py)
