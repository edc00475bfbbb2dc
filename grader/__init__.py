"""Backprop Ninja: the checking code for the course notebooks.

Everything here is readable by students, so it holds no solution: every reference gradient
comes from torch.autograd on the grader's private copy of the network.
"""

# Lazy (PEP 562): `python -m grader.sandbox`, the kernel launcher of every graded notebook, and the
# instructor commands import this package without torch; `grader.load_dataset()` imports it on first use.
__all__ = ["Dataset", "NamesDataError", "load_dataset", "load_words"]


def __getattr__(name):
    if name in __all__:
        from . import data

        return getattr(data, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
