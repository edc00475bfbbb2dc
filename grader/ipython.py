"""Notebook niceties that need the IPython kernel: a hint for answers that are not there yet."""

from __future__ import annotations

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
    """Show the stub hint under every NameError for a registered name, in this IPython kernel."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return
    shell = get_ipython()
    if shell is not None and NameError not in shell.custom_exceptions:
        shell.set_custom_exc((NameError,), _handler)
