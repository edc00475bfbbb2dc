"""What the checks rely on, as it was before any student code ran: a check refuses a kernel that changed it.

The answer language (``grader.answers``) flags, without running anything, code that could patch torch or
the grader. This is the runtime half, for what a static rule could miss: when the grader's first checking
module is imported (by the notebook's locked setup cell, before any answer cell runs), ``snapshot`` records
which object every name of torch, ``torch.nn.functional``, ``torch.Tensor``, ``torch.linalg``,
``torch.special``, ``math``, the builtins and the grader's own modules (their functions and classes, and the
classes' methods) stands for. ``changed()`` names every entry that now stands for another object or is gone:
``torch.tanh = torch.exp``, ``torch.Tensor.__sub__ = ...``, ``grader.checks.compare = ...``, however the
assignment was spelled. The hidden tests then fail, saying what was changed (``grader.integrity.problem``).

The records live in this module, which only a name the answer language denies can reach (``grader``,
dunders, private names): a kernel that reached them could rewrite the checks too, and its notebook is held
for that. Data the grader changes as it works (its caches) is not watched, only functions, classes and
modules, which it never rebinds; nor the builtins the kernel itself swaps in and out around each cell.
"""

from __future__ import annotations

import builtins
import inspect
import math
import sys

_MISSING = object()
# the builtins the kernel itself sets around each cell: IPython's BuiltinTrap (exit, quit, get_ipython) and
# ipykernel's stdin forwarding (input, raw_input, getpass)
KERNEL_BUILTINS = {"exit", "quit", "get_ipython", "display", "input", "raw_input", "getpass"}
_records: dict[str, tuple[object, dict[str, object]]] = {}  # a watched namespace's label -> (owner, name -> object)
_bases: dict[str, list[str]] = {}  # a watched class's label -> the labels of its watched bases, in MRO order


def _watched(value) -> bool:
    return inspect.isfunction(value) or inspect.isclass(value) or inspect.isbuiltin(value) or inspect.ismodule(value)


def _kept(owner, name: str, value) -> bool:
    if owner is builtins:
        return callable(value) and name not in KERNEL_BUILTINS and (not name.startswith("_") or name == "__import__")
    if inspect.isclass(owner):  # methods, properties and the slots of C types: anything that binds or is called
        return callable(value) or hasattr(value, "__get__")
    return _watched(value)


def _label(cls) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _namespaces():
    """(label, owner) of every namespace the checks rely on, as loaded now; a class after its bases."""
    import torch
    import torch.nn.functional as F

    classes = [torch.Tensor]
    yield from (("torch", torch), ("torch.nn.functional", F), ("torch.linalg", torch.linalg))
    yield from (("torch.special", torch.special), ("math", math), ("builtins", builtins))
    for name, module in list(sys.modules.items()):
        if (name == "grader" or name.startswith("grader.")) and module is not None:
            yield name, module
            classes += [v for v in list(vars(module).values()) if inspect.isclass(v) and v.__module__ == name]
    for cls in classes:
        mro = [c for c in cls.__mro__ if c is not object]
        _bases.setdefault(_label(cls), [_label(c) for c in mro[1:]])
        for c in reversed(mro):
            yield _label(c), c


def snapshot() -> None:
    """Record every name not recorded yet: a grader module imported later, or the rest of a module that was
    still loading (an entry recorded once is never updated, so a replaced one stays found)."""
    for label, owner in _namespaces():
        first = label not in _records
        _, recorded = _records.setdefault(label, (owner, {}))
        bases = [_records[b][1] for b in _bases.get(label, ()) if b in _records]
        for k, v in list(vars(owner).items()):
            if k in recorded or not _kept(owner, k, v):
                continue
            if not first and any(k in b for b in bases):
                continue  # a name put over a base's after the class was recorded: `changed` reports it
            recorded[k] = v


def changed() -> list[str]:
    """``torch.tanh``, ``torch.Tensor.__sub__``, ``grader.checks.compare``...: every recorded name that now
    stands for another object or is gone, and every name a class now defines over one of its base's."""
    out = []
    for label, (owner, recorded) in _records.items():
        namespace = vars(owner)
        out += [f"{label}.{k}" for k, v in recorded.items() if namespace.get(k, _MISSING) is not v]
        for base in _bases.get(label, ()):
            shadowed = [k for k in namespace if k not in recorded and k in _records[base][1]]
            out += [f"{label}.{k}" for k in shadowed]
    snapshot()
    return sorted(set(out))


def in_kernel() -> bool:
    """An IPython kernel is running this (the notebook); outside one (the test suite) nothing is watched."""
    ipython = sys.modules.get("IPython")
    return ipython is not None and ipython.get_ipython() is not None
