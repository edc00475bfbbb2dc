"""Notebook niceties that depend on the IPython kernel: a hint for answers that are not there yet, a progress bar,
warnings shown on stdout.

``progress`` and ``warnings_on_stdout`` keep stderr empty: nbgrader scores a test cell 0 for any stderr output.
"""

from __future__ import annotations

import os
import sys
import warnings

from .mode import PROGRESS_ENV, grading_mode

_EXPECTED: dict[str, str] = {}  # name -> where the student defines it


def expect_names(names, where: str) -> None:
    """Register names that an answer cell defines, for the NameError hint (see ``install``)."""
    for name in names:
        _EXPECTED[name] = where
    install()


def stub_hint(name: str) -> str | None:
    where = _EXPECTED.get(name)
    if where is None:
        return None
    return (
        f"Hint: `{name}` is not defined yet. {where} still raises NotImplementedError() (the stub), "
        f"or stopped before it assigned `{name}`: replace the stub with your code and run that cell "
        f"before this check."
    )


def _handler(shell, etype, value, tb, tb_offset=None):
    hint = stub_hint(getattr(value, "name", None) or "")
    if hint and hint not in getattr(value, "__notes__", ()):
        value.add_note(hint)
    shell.showtraceback((etype, value, tb), tb_offset=tb_offset, running_compiled_code=True)
    return None


def install() -> None:
    """In this IPython kernel: the stub hint under every NameError for a registered name, and warnings on
    stdout (``warnings_on_stdout``)."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return
    shell = get_ipython()
    if shell is not None and NameError not in shell.custom_exceptions:
        shell.set_custom_exc((NameError,), _handler)
    warnings_on_stdout()


def in_kernel() -> bool:
    """True inside an IPython kernel (JupyterLab, nbgrader, nbval), not in a terminal or a plain script."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


def _show_on_stdout(message, category, filename, lineno, file=None, line=None) -> None:
    sys.stdout.write(warnings.formatwarning(message, category, filename, lineno, line))


def warnings_on_stdout() -> None:
    """In a kernel, show Python's warnings on stdout. A warning is no mistake (`F.softmax(logits)` without
    `dim` warns, and is right), but on stderr it would zero the test cell that runs the student's code
    (nbgrader scores any stderr 0); the student still reads it under the cell. In any IPython shell."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return
    if get_ipython() is not None:
        warnings.showwarning = _show_on_stdout


def progress(steps):
    """tqdm over ``steps``, never on stderr (tqdm's default: nbgrader scores a test cell 0 for any stderr).

    In a notebook, JupyterLab's progress widget; in grading mode, outside a kernel, or when
    ``BACKPROP_NINJA_PROGRESS=text`` (the answer keys: a stored widget shows nothing), a text bar on
    stdout that refreshes every few seconds. Set the running loss with ``bar.set_postfix(loss=...)``.
    """
    from tqdm import std

    if in_kernel() and not grading_mode() and os.environ.get(PROGRESS_ENV) != "text":
        try:
            from tqdm import notebook

            class Widget(notebook.tqdm):
                monitor_interval = 0  # no monitor thread: nothing that could warn on stderr

            return Widget(steps, mininterval=0.5)
        except ImportError:  # no ipywidgets: fall back to text
            pass

    class Text(std.tqdm):
        monitor_interval = 0

        def set_postfix(self, ordered_dict=None, refresh=False, **kwargs):
            super().set_postfix(ordered_dict, refresh=False, **kwargs)  # shown at the next refresh, not a new line

    return Text(steps, file=sys.stdout, mininterval=2.0, ascii=True, ncols=100)
