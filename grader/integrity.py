"""Which variables did the student's code compute with autograd?

The hidden checks must reject a gradient that was copied from autograd instead of derived
by hand. They read the code the kernel ran (IPython's input history, in execution order)
and follow values from statement to statement: a name assigned from an expression that calls
``backward()``, reads ``.grad``, uses ``torch.autograd`` (or ``torch.func``, ``requires_grad``,
private attributes, ``exec``/``eval``) is *autograd-derived*, and so is everything computed
from it later. A plain re-assignment from clean values makes the name clean again, so a
scratch experiment with autograd that is later replaced by a hand-derived line is fine.

This is a check against honest mistakes and casual copying, not a sandbox: code in the same
kernel can always subvert it. ``python -m grader autograde`` flags such code for review.
"""

from __future__ import annotations

import ast
import copy

from . import guard, ipysource

FORBIDDEN_ATTRS = {
    "grad": "reads .grad",
    "_grad": "reads ._grad",
    "backward": "calls backward()",
    "retain_grad": "calls retain_grad()",
    "requires_grad": "switches on requires_grad",
    "requires_grad_": "switches on requires_grad",
    "grad_fn": "reads .grad_fn",
    "register_hook": "registers an autograd hook",
    "autograd": "uses torch.autograd",
    "enable_grad": "switches autograd on",
    "set_grad_enabled": "switches autograd on",
}
FORBIDDEN_MODULES = ("torch.autograd", "torch.func", "functorch")
HIDING_CALLS = {"exec", "eval", "compile", "__import__"}


def _unparse(node: ast.AST) -> str:
    text = ast.unparse(node).splitlines()[0]
    return text if len(text) <= 80 else text[:77] + "..."


def _dotted(node: ast.AST) -> str | None:
    """``torch.autograd.grad`` for that attribute chain; None if it does not start at a name."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return ".".join([node.id, *reversed(parts)]) if isinstance(node, ast.Name) else None


def _forbidden_module(dotted: str) -> str | None:
    for module in FORBIDDEN_MODULES:
        if dotted == module or dotted.startswith(module + "."):
            return module
    return None


def forbidden(node: ast.AST) -> str | None:
    """The first use of autograd inside ``node``, described, or None."""
    for sub in ast.walk(node):
        why = None
        if isinstance(sub, ast.Attribute):
            module = _forbidden_module(_dotted(sub) or "")
            if module:
                why = f"uses {module}"
            elif sub.attr in FORBIDDEN_ATTRS:
                why = FORBIDDEN_ATTRS[sub.attr]
            elif sub.attr.startswith("_") and not sub.attr.startswith("__"):
                why = f"reads a private attribute .{sub.attr}"
        elif isinstance(sub, ast.keyword) and sub.arg == "requires_grad":
            why = "switches on requires_grad"
        elif isinstance(sub, ast.Name) and sub.id in ("autograd", "functorch"):
            why = f"uses {sub.id}"
        elif isinstance(sub, (ast.Import, ast.ImportFrom)):
            modules = [a.name for a in sub.names] + (
                [sub.module] if isinstance(sub, ast.ImportFrom) and sub.module else []
            )
            if any(_forbidden_module(m) for m in modules):
                why = "imports torch.autograd or torch.func"
        elif isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name):
            if sub.func.id in HIDING_CALLS:
                why = f"runs code through {sub.func.id}()"
            elif sub.func.id in ("getattr", "setattr", "delattr") and len(sub.args) >= 2:
                attr = sub.args[1]
                if not (isinstance(attr, ast.Constant) and isinstance(attr.value, str)):
                    why = f"calls {sub.func.id}() with a computed attribute name"
                elif attr.value in FORBIDDEN_ATTRS or attr.value.startswith("_"):
                    why = f"{sub.func.id}(..., {attr.value!r})"
        if why:
            return f"`{_unparse(node)}` {why}"
    return None


def _base_name(target: ast.AST) -> str | None:
    while isinstance(target, (ast.Subscript, ast.Attribute, ast.Starred)):
        target = target.value
    return target.id if isinstance(target, ast.Name) else None


def _written(target: ast.AST) -> list[ast.AST]:
    """The targets an assignment writes into, tuple and starred targets unpacked (never their indices)."""
    if isinstance(target, (ast.Tuple, ast.List)):
        return [w for elt in target.elts for w in _written(elt)]
    if isinstance(target, ast.Starred):
        return _written(target.value)
    return [target]


def _names(targets) -> list[str]:
    out = []
    for t in targets:
        if isinstance(t, (ast.Tuple, ast.List)):
            out += _names(t.elts)
        else:
            name = _base_name(t)
            if name:
                out.append(name)
    return out


class Dataflow:
    """Follows autograd-derived values through a sequence of cells (see the module docstring)."""

    def __init__(self, barriers=()) -> None:
        self.barriers = frozenset(barriers)  # names judged on their own: their taint does not spread
        self.derived: dict[str, str] = {}  # name -> why it is autograd-derived
        self.imported: set[str] = set()  # names bound by import statements
        self.patches: list[str] = []  # statements that change an imported module or object

    def run_cell(self, source: str) -> None:
        # as IPython runs it: a one-line `time dW2 = W2.grad` runs the assignment (grader/ipysource.py);
        # a cell that does not compile ran nothing
        for stmt in ipysource.statements(source):
            self._statement(stmt)

    def _why(self, node: ast.AST) -> str | None:
        why = forbidden(node)
        if why:
            return why
        for sub in ast.walk(node):
            if (
                isinstance(sub, ast.Name)
                and isinstance(sub.ctx, ast.Load)
                and sub.id in self.derived
                and sub.id not in self.barriers
            ):
                return f"`{_unparse(node)}` uses {sub.id}, which {self.derived[sub.id]}"
        return None

    def _set(self, names, why: str | None, rebinds: bool) -> None:
        for name in names:
            if why:
                self.derived[name] = why
            elif rebinds:
                self.derived.pop(name, None)

    def _patch_check(self, stmt: ast.stmt) -> None:
        targets = []
        if isinstance(stmt, ast.Assign):
            targets = stmt.targets
        elif isinstance(stmt, (ast.AugAssign, ast.AnnAssign)):
            targets = [stmt.target]
        elif isinstance(stmt, ast.Delete):
            targets = stmt.targets
        for t in targets:
            # only what the statement writes into: `torch.tanh = ...`, `F.__dict__['x'] = ...`, and the
            # items of a tuple target. The expressions that index the target are read, not written:
            # `dlogprobs[torch.arange(n), Yb] = ...` writes into dlogprobs, not into torch.
            for written in _written(t):
                if isinstance(written, (ast.Attribute, ast.Subscript)) and _base_name(written) in self.imported:
                    self.patches.append(f"`{_unparse(stmt)}` changes {_base_name(written)}")
                    return
        if isinstance(stmt, ast.ImportFrom) and any(a.name.startswith("_") for a in stmt.names):
            self.patches.append(f"`{_unparse(stmt)}` imports a private name")

    def _statement(self, stmt: ast.stmt) -> None:
        self._patch_check(stmt)
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            self._set([stmt.name], self._why(stmt), rebinds=True)
        elif isinstance(stmt, (ast.For, ast.AsyncFor)):
            self._set(_names([stmt.target]), self._why(stmt.iter), rebinds=True)
            self._block(stmt.body + stmt.orelse, repeat=True)
        elif isinstance(stmt, ast.While):
            self._block(stmt.body + stmt.orelse, repeat=True)
        elif isinstance(stmt, ast.If):
            self._block(stmt.body + stmt.orelse)
        elif isinstance(stmt, (ast.With, ast.AsyncWith)):
            whys = [self._why(item.context_expr) for item in stmt.items]
            for item, why in zip(stmt.items, whys, strict=True):
                if item.optional_vars is not None:
                    self._set(_names([item.optional_vars]), why, rebinds=True)
            self._block(stmt.body)
            why = next((w for w in whys if w), None)
            if why:  # e.g. `with torch.enable_grad():` -- everything assigned inside is autograd-derived
                self._set(_assigned(stmt), why, rebinds=False)
        elif isinstance(stmt, ast.Try):
            self._block(stmt.body + [s for h in stmt.handlers for s in h.body] + stmt.orelse + stmt.finalbody)
        elif isinstance(stmt, ast.Assign):
            why = self._why(stmt)
            for t in stmt.targets:
                self._set(_names([t]), why, rebinds=isinstance(t, (ast.Name, ast.Tuple, ast.List)))
        elif isinstance(stmt, (ast.AugAssign, ast.AnnAssign)):
            self._set(_names([stmt.target]), self._why(stmt), rebinds=isinstance(stmt, ast.AnnAssign))
        elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
            # a method call may change its receiver in place: dC.index_add_(...), x.copy_(y)
            func = stmt.value.func
            if isinstance(func, ast.Attribute):
                self._set(_names([func.value]), self._why(stmt), rebinds=False)
        elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
            for alias in stmt.names:
                name = alias.asname or alias.name.split(".")[0]
                self.imported.add(name)
                # `import torch.func` binds `torch`, which stays clean; `from torch.autograd import grad`
                # and `import torch.autograd as ag` bind the forbidden thing itself
                binds_module = isinstance(stmt, ast.ImportFrom) or alias.asname or "." not in alias.name
                self._set([name], forbidden(stmt) if binds_module else None, rebinds=True)
        elif isinstance(stmt, ast.Delete):
            for name in _names(stmt.targets):
                self.derived.pop(name, None)

    def _block(self, body, repeat: bool = False) -> None:
        for _ in range(2 if repeat else 1):  # a second pass lets a loop carry a value around
            for stmt in body:
                self._statement(stmt)


def _assigned(node: ast.AST) -> list[str]:
    names = []
    for sub in ast.walk(node):
        if isinstance(sub, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            names += _names(sub.targets if isinstance(sub, ast.Assign) else [sub.target])
    return names


def analyse(sources, barriers=()) -> Dataflow:
    """Run the cells ``sources`` through ``Dataflow``: see its ``derived`` and ``patches``.

    ``barriers`` are names that are judged on their own, such as the answers' gradients: a
    gradient copied from ``.grad`` is rejected, but a later gradient derived *from* it by hand
    is not (error carried forward decides whether that step is right).
    """
    sources, barriers = tuple(sources), frozenset(barriers)
    cached = _last.get(barriers)
    if cached is not None and sources[: len(cached[0])] == cached[0]:
        done, flow = cached[0], copy.deepcopy(cached[1])  # the same cells and more: go on from there
    else:
        done, flow = (), Dataflow(barriers)
    for source in sources[len(done) :]:
        flow.run_cell(source)
    _last[barriers] = (sources, copy.deepcopy(flow))
    return flow


# The last analysis, by barriers: a check in a later cell reads the same history and a few cells more.
_last: dict[frozenset, tuple[tuple, Dataflow]] = {}


def problem(names, history, barriers=()) -> str | None:
    """Why the answers ``names`` cannot be accepted, judging by the code the kernel ran; None if nothing.

    ``history`` is the kernel's input history (``kernel_history()``); None means there is none to read.
    """
    if history is None:
        return None
    patched = guard.changed() if guard.in_kernel() else []
    if patched:
        shown = ", ".join(f"`{p}`" for p in patched[:3]) + (f" and {len(patched) - 3} more" if len(patched) > 3 else "")
        return f"the notebook changed {shown}: no longer what torch and the grader put there, so it cannot be graded."
    flow = analyse(history, barriers)
    if flow.patches:
        return f"the notebook changes the checking code or torch ({flow.patches[0]}), so it cannot be graded."
    for name in names:
        why = flow.derived.get(name)
        if why:
            return (
                f"{name} comes from autograd: {why}. Answers must not call backward(), read .grad "
                f"or use torch.autograd; derive the gradient by hand."
            )
    return None


def kernel_history() -> list[str] | None:
    """The raw source of every cell this IPython kernel ran, in order; None outside IPython.

    Raises RuntimeError when the history was cut short, so that it cannot be trusted.
    """
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is always installed with the notebooks
        return None
    shell = get_ipython()
    if shell is None:
        return None
    history = list(shell.history_manager.input_hist_raw)
    if len(history) < shell.execution_count:
        raise RuntimeError(
            "the kernel's input history was cleared, so the answers cannot be checked "
            "for autograd: restart the kernel and run the notebook from the top"
        )
    return history
