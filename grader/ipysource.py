"""A cell's code as IPython runs it, not as it is written (no torch; pure text and ``ast``).

IPython rewrites a cell before it runs: its input transformers turn ``%magic``, ``!cmd`` and ``x?`` into
``get_ipython()`` calls, and for a ONE-LINE cell the prefilter's automagic runs ``time CODE`` as
``%time CODE`` and ``ls`` as ``%ls``. A static check that parses the raw text sees a SyntaxError ("nothing
runs") where the kernel runs CODE. Every static reader of a student's cells (the answer language, the
autograd dataflow of the hidden tests) reads them through ``transform``/``parse``; ``statements`` also opens
the timing magics (``%time``, ``%timeit``, ``%%time``), whose code the kernel runs as the cell's own.
"""

from __future__ import annotations

import ast
import re

# what a one-line cell's first word must be for IPython's automagic to run it as a magic (`time x = 1`):
# IPython's and ipykernel's line magics and the shell aliases (`ls`, `cat`...)
AUTOMAGIC_WORDS = frozenset(
    """
    alias alias_magic autoawait autocall automagic bookmark capture cd code_wrap colors conda config debug dhist
    dirs doctest_mode edit env gui history killbgscripts load load_ext loadpy logoff logon logstart logstate logstop
    lsmagic macro magic mamba matplotlib micromamba notebook page pastebin pdb pdef pdoc pfile pinfo pinfo2 pip
    popd pprint precision prun psearch psource pushd pwd pycat pylab quickref recall rehashx reload_ext rerun reset
    reset_selective run save sc set_env sx system tb time timeit unalias unload_ext uv who who_ls whos xdel xmode
    clear less more man connect_info qtconsole autosave mkdir rmdir mv rm cp cat ls ll lf lk ldir lx
    """.split()
)

TIMING_MAGICS = {"time", "timeit"}


def transform(source: str) -> str:
    """The cell as IPython's kernel compiles it: magics and ``!`` shell lines become get_ipython() calls, and
    a one-line cell whose first word is a magic or a shell alias runs as that magic (automagic)."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager
    except ImportError:  # pragma: no cover (IPython comes with the kernel)
        return source
    try:
        code = TransformerManager().transform_cell(source)
    except Exception:  # a cell IPython cannot transform does not run either
        return source
    return _automagic(code)


def _automagic(code: str) -> str:
    """IPython's prefilter on a one-line cell (``InteractiveShell.transform_cell``): ``time x = 1`` runs as
    ``%time x = 1`` and ``ls`` as ``%ls``, unless the rest makes it an assignment (``time = 3``)."""
    lines = code.splitlines()
    if len(lines) != 1:
        return code
    m = re.match(r"^\s*([\w*.$]+[\w.$]*)\s*(.*?)\s*$", lines[0])  # IPython's split into function and rest
    if not m or m.group(1) not in AUTOMAGIC_WORDS or m.group(2)[:1] in ("=", ","):
        return code
    return f"get_ipython().run_line_magic({m.group(1)!r}, {m.group(2)!r})\n"


def compile_tree(code: str) -> ast.Module | None:
    """``code``'s syntax tree (top-level ``await`` allowed, as in a kernel), or None if it does not compile."""
    try:
        flags = ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        return compile(code, "<cell>", "exec", flags=flags, dont_inherit=True)
    except (SyntaxError, ValueError):
        return None


def parse(source: str) -> ast.Module | None:
    """The cell's syntax tree as the kernel would run it, or None if it does not compile (then nothing runs)."""
    return compile_tree(transform(source))


def magic_call(node: ast.AST) -> tuple[str, list[str]] | None:
    """(method, string arguments) of ``get_ipython().method('...', ...)``, as IPython writes a magic or ``!``."""
    if not isinstance(node, ast.Call):
        return None
    func = node.func
    if (
        isinstance(func, ast.Attribute)
        and isinstance(func.value, ast.Call)
        and isinstance(func.value.func, ast.Name)
        and func.value.func.id == "get_ipython"
        and not func.value.args
        and not node.keywords
        and all(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in node.args)
    ):
        return func.attr, [a.value for a in node.args]
    return None


def timed_code(method: str, args: list[str]) -> str | None:
    """The code a timing magic runs (``%time CODE``, ``%%timeit`` + body), or None for any other magic."""
    if method not in ("run_line_magic", "run_cell_magic") or not args or args[0] not in TIMING_MAGICS:
        return None
    line, body = args[1], args[2] if len(args) == 3 else ""
    if method == "run_line_magic" and len(args) == 2 and not line.lstrip().startswith("-"):
        return line
    return body if not line.strip() else None


def statements(source: str) -> list[ast.stmt]:
    """The statements the kernel runs for the cell ``source``: as IPython transforms it, with the code of its
    timing magics in place of the magic (``x = %time f(y)`` counts as ``x = f(y)``); [] if it does not compile."""
    tree = compile_tree(transform(source))
    if tree is None:
        return []
    out: list[ast.stmt] = []
    for stmt in tree.body:
        call = stmt.value if isinstance(stmt, (ast.Expr, ast.Assign)) else None
        magic = magic_call(call) if call is not None else None
        code = timed_code(*magic) if magic else None
        if code is None:
            out.append(stmt)
            continue
        inner = statements(code)
        if isinstance(stmt, ast.Assign) and len(inner) == 1 and isinstance(inner[0], ast.Expr):
            out.append(ast.Assign(targets=stmt.targets, value=inner[0].value, lineno=stmt.lineno))
        else:
            out += inner
    return out
