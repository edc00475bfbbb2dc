"""The student's own code for one gradient, found in the cells the kernel ran and re-run privately.

It is long because finding a gradient's statements (through cells, loops and in-place calls) and re-running
them bounded and apart from the student's namespace are one job that only makes sense whole.

``code_for("dbnvar_inv", history)`` collects, with ``ast``, the statements that assign or change
``dbnvar_inv`` (``=``, ``+=``, ``dX[...] = ``, ``dX.index_add_(...)``, a loop that does one of
these), in execution order across every cell, together with the statements that compute the helper
names those read (a backward slice). ``Code.run`` executes that slice in a fresh namespace: the
forward tensors are the grader's private copies, the gradients it reads are the ones given, the
other names it reads (``torch``, ``F``, ``n``...) are copies of the student's. Nothing is written to
the student's namespace; output and warnings are swallowed (a stderr line would zero a test cell);
a run is bounded in time.

An IPython ``post_run_cell`` hook (``install``) remembers, for each cell that raised, the line and
the error, so that a check can say why a line never ran. No gradient formula lives here: the
result of a re-run is judged against autograd by ``grader.owncode``.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import io
import signal
import threading
import types
import warnings
from dataclasses import dataclass, field
from functools import lru_cache

import torch

from . import integrity, ipysource

TIME_LIMIT = 2.0  # seconds for one re-run of one gradient's code


@dataclass(frozen=True)
class Crash:
    """Where a cell stopped: ``line`` of the cell (0: it did not compile), and the error."""

    line: int
    error: str  # "RuntimeError: The size of tensor a ..."
    limit: bool = False  # stopped by a time or memory limit, not by an error in the code


_crashes: dict[int, Crash] = {}  # by the cell's index in the input history (IPython's execution count)


def describe_error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = text if len(text) <= 160 else text[:157] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _is_limit(exc: BaseException) -> bool:
    return isinstance(exc, (KeyboardInterrupt, MemoryError)) or "can't allocate memory" in str(exc)


def record_crash(index: int, exc: BaseException, line: int | None = None) -> None:
    """Remember that the cell ``index`` of the history raised ``exc`` (at ``line``, else from the traceback)."""
    if line is None:
        line = 0
        if isinstance(exc, SyntaxError):
            line = 0
        else:
            tb = exc.__traceback__
            while tb is not None and tb.tb_frame.f_code.co_name != "<module>":
                tb = tb.tb_next
            if tb is not None:
                line = tb.tb_lineno
    _crashes[index] = Crash(line, describe_error(exc), _is_limit(exc))


def crash(index: int) -> Crash | None:
    return _crashes.get(index)


def forget() -> None:
    _crashes.clear()


def _post_run_cell(result) -> None:
    count = getattr(result, "execution_count", None)
    if count is None:
        return
    if result.error_before_exec is not None:
        _crashes[count] = Crash(0, describe_error(result.error_before_exec))
    elif result.error_in_exec is not None:
        record_crash(count, result.error_in_exec)
    else:
        _crashes.pop(count, None)


def install() -> None:
    """Record the errors of the cells this IPython kernel runs (idempotent; nothing outside IPython)."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return
    shell = get_ipython()
    if shell is None:
        return
    callbacks = shell.events.callbacks.get("post_run_cell", [])
    if not any(
        getattr(cb, "__name__", "") == _post_run_cell.__name__ and cb.__module__ == __name__ for cb in callbacks
    ):
        shell.events.register("post_run_cell", _post_run_cell)


# ---------------------------------------------------------------------------------------------
# Statements


@dataclass(frozen=True)
class Statement:
    cell: int  # index in the history
    lineno: int
    end_lineno: int
    text: str
    writes: frozenset[str]  # names it assigns or changes in place
    rebinds: frozenset[str]  # names it binds afresh (plain `x = ...`, imports, def)
    reads: frozenset[str]  # names it reads (from outside the statement)
    forbidden: bool  # uses autograd, exec, private attributes...
    code: types.CodeType = field(compare=False, repr=False)


def _base(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Subscript, ast.Attribute, ast.Starred)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _targets(targets) -> tuple[set[str], set[str]]:
    """(written, rebound) names of assignment targets."""
    written, rebound = set(), set()
    for t in targets:
        if isinstance(t, (ast.Tuple, ast.List)):
            w, r = _targets(t.elts)
            written |= w
            rebound |= r
        elif isinstance(t, ast.Name):
            written.add(t.id)
            rebound.add(t.id)
        else:
            name = _base(t)
            if name:
                written.add(name)
    return written, rebound


def _scoped(node: ast.AST) -> set[str]:
    """Names bound inside comprehensions, lambdas and nested functions (local to them)."""
    out = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.comprehension):
            out |= {n.id for n in ast.walk(sub.target) if isinstance(n, ast.Name)}
        elif isinstance(sub, (ast.Lambda, ast.FunctionDef, ast.AsyncFunctionDef)):
            a = sub.args
            out |= {x.arg for x in a.posonlyargs + a.args + a.kwonlyargs}
            out |= {x.arg for x in (a.vararg, a.kwarg) if x is not None}
    return out


def _loads(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _stores(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Store, ast.Del))}


def _free(node: ast.AST) -> set[str]:
    """The names ``node`` reads before it binds them, visiting in the order the code runs."""
    seen: set[str] = set()
    free: set[str] = set()

    def visit(n: ast.AST) -> None:
        if isinstance(n, ast.Name):
            if n.id not in seen:
                seen.add(n.id)
                if isinstance(n.ctx, ast.Load):
                    free.add(n.id)
            return
        if isinstance(n, ast.Assign):
            order = [n.value, *n.targets]
        elif isinstance(n, ast.AugAssign):
            order = [ast.Name(id=n.target.id, ctx=ast.Load()) if isinstance(n.target, ast.Name) else n.target, n.value]
        elif isinstance(n, (ast.For, ast.AsyncFor)):
            order = [n.iter, n.target, *n.body, *n.orelse]
        else:
            order = list(ast.iter_child_nodes(n))
        for child in order:
            visit(child)

    visit(node)
    return free


def _analyse(stmt: ast.stmt) -> tuple[set[str], set[str], set[str]] | None:
    """(writes, rebinds, reads) of a top-level statement, or None if it writes nothing."""
    if isinstance(stmt, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
        if isinstance(stmt, ast.AnnAssign) and stmt.value is None:
            return None
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
        written, rebound = _targets(targets)
        if isinstance(stmt, ast.AugAssign):
            rebound = set()
        reads = (_loads(stmt) - _scoped(stmt)) | (written if isinstance(stmt, ast.AugAssign) else set())
        return written, rebound, reads
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
        func = stmt.value.func  # an in-place method: dC.index_add_(...), dX.copy_(...)
        if isinstance(func, ast.Attribute) and func.attr.endswith("_") and not func.attr.startswith("_"):
            name = _base(func.value)
            if name:
                return {name}, set(), _loads(stmt) - _scoped(stmt)
        return None
    if isinstance(stmt, (ast.Import, ast.ImportFrom)):
        names = {(a.asname or a.name).split(".")[0] for a in stmt.names if a.name != "*"}
        return names, names, set()
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        inner = _loads(stmt) - _stores(stmt) - _scoped(stmt)
        return {stmt.name}, {stmt.name}, inner
    if isinstance(stmt, (ast.For, ast.AsyncFor, ast.While, ast.If, ast.With, ast.AsyncWith, ast.Try)):
        written = set()
        for sub in ast.walk(stmt):
            if isinstance(sub, ast.stmt) and sub is not stmt:
                inner = _analyse(sub)
                if inner:
                    written |= inner[0]
        if isinstance(stmt, (ast.For, ast.AsyncFor)):
            written |= _targets([stmt.target])[0]
        if not written:
            return None
        # names read from outside: those whose first use, in the order the code runs, is a read
        return written, set(), _free(stmt) - _scoped(stmt)
    return None


@lru_cache(maxsize=512)
def _parse_cell(source: str) -> tuple[tuple[int, int, str, frozenset, frozenset, frozenset, bool, types.CodeType], ...]:
    # as IPython runs it (a `%matplotlib inline` line does not hide the rest of the cell); line magics keep
    # their line, so a crash's line number still points at the statement
    source = ipysource.transform(source)
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return ()
    out = []
    for stmt in tree.body:
        info = _analyse(stmt)
        if info is None:
            continue
        writes, rebinds, reads = info
        try:
            code = compile(ast.Module(body=[stmt], type_ignores=[]), "<your code>", "exec")
        except (SyntaxError, ValueError):
            continue
        text = ast.get_source_segment(source, stmt) or ast.unparse(stmt)
        out.append(
            (
                stmt.lineno,
                stmt.end_lineno or stmt.lineno,
                text,
                frozenset(writes),
                frozenset(rebinds),
                frozenset(reads),
                integrity.forbidden(stmt) is not None,
                code,
            )
        )
    return tuple(out)


def statements(history) -> list[Statement]:
    """Every statement of ``history`` (cell sources, in execution order) that writes a name."""
    out = []
    for index, source in enumerate(history or ()):
        if not isinstance(source, str) or not source.strip():
            continue
        for lineno, end, text, writes, rebinds, reads, bad, code in _parse_cell(source):
            out.append(Statement(index, lineno, end, text, writes, rebinds, reads, bad, code))
    return out


# ---------------------------------------------------------------------------------------------
# One gradient's code


@dataclass
class Code:
    """The statements that compute ``target``, and what they read from outside."""

    target: str
    statements: list[Statement]
    gradients: frozenset[str]  # the gradient names it reads (d + tensor), target aside
    outside: frozenset[str]  # other names it reads: the forward tensors, torch, F, n, ...

    def ran(self) -> tuple[bool, Statement | None, Crash | None]:
        """Did every statement run to its end? If not, the first one that did not, and its cell's crash."""
        for st in self.statements:
            c = _crashes.get(st.cell)
            if c is not None and not c.line:
                return False, st, c
            if c is not None and st.end_lineno >= c.line:
                return False, st, c
        return True, None, None

    def source(self) -> str:
        return "\n".join(st.text for st in self.statements)

    def run(
        self, gradients: dict[str, torch.Tensor], forward: dict[str, object], namespace: dict
    ) -> tuple[object, str | None]:
        """Execute privately; return (the value of ``target`` or None, the error if it raised)."""
        ns: dict = {"__builtins__": builtins, "__name__": "__rerun__"}
        for name in self.outside:
            if name in forward:
                value = forward[name]
            elif name in namespace:
                value = namespace[name]
            elif hasattr(builtins, name):
                continue
            else:
                return None, f"NameError: name {name!r} is not defined"
            ns[name] = value.clone() if isinstance(value, torch.Tensor) else value
        for name, value in gradients.items():
            ns[name] = value.clone()
        out, err = io.StringIO(), io.StringIO()
        try:
            with (
                _time_limit(TIME_LIMIT),
                warnings.catch_warnings(),
                contextlib.redirect_stdout(out),
                contextlib.redirect_stderr(err),
            ):
                warnings.simplefilter("ignore")
                for st in self.statements:
                    exec(st.code, ns)  # noqa: S102 - the student's own code, in the student's own kernel
        except _TimeUp:
            return None, f"it took more than {TIME_LIMIT:g} s"
        except Exception as exc:  # noqa: BLE001 - any error of the student's code
            return None, describe_error(exc)
        return ns.get(self.target), None


def gradient_name(name: str, tensors) -> bool:
    return name.startswith("d") and name[1:] in tensors


def _tainted(stmts, tensors) -> set[str]:
    """The helper names computed from gradients (directly or through other helpers)."""
    tainted: set[str] = set()
    changed = True
    while changed:
        changed = False
        for st in stmts:
            if any(gradient_name(r, tensors) or r in tainted for r in st.reads):
                new = {w for w in st.writes if not gradient_name(w, tensors)} - tainted
                if new:
                    tainted |= new
                    changed = True
    return tainted


_analysed_last: dict = {}


def _analysed(history: tuple, tensors: frozenset) -> tuple[list[Statement], set[str]]:
    """``statements`` and ``_tainted`` of ``history``, kept for the next check (it reads the same cells)."""
    key = (history, tensors)
    if _analysed_last.get("key") != key:
        stmts = statements(history)
        _analysed_last.update(key=key, value=(stmts, _tainted(stmts, tensors)))
    return _analysed_last["value"]


def code_for(target: str, history, tensors, available=()) -> Code | None:
    """The backward slice of ``history`` that computes ``target`` (e.g. "dbnvar_inv"), or None.

    ``tensors`` are the names of the forward pass: ``d`` + one of them is a gradient, which the
    slice reads as an input, and the tensors themselves are given privately. ``available`` are
    the names of the student's namespace: one not computed from any gradient (``torch``, ``F``,
    ``n``) is taken from there rather than recomputed. None when no statement assigns
    ``target``, when the slice uses autograd, or when nothing ever creates ``target``.
    """
    stmts, tainted = _analysed(tuple(history), frozenset(tensors))
    available = set(available)
    need = {target}
    chosen: list[Statement] = []
    grads: set[str] = set()
    for st in reversed(stmts):
        hit = st.writes & need
        if not hit:
            continue
        if st.forbidden:
            return None
        chosen.append(st)
        need -= {n for n in hit if n in st.rebinds and n not in st.reads}
        for name in st.reads:
            if name == target:
                need.add(name)
            elif gradient_name(name, tensors):
                grads.add(name)
            elif name in tensors or (name in available and name not in tainted):
                continue
            else:
                need.add(name)
    if not chosen or target in need:
        return None  # nothing assigns it, or it is only ever changed in place
    chosen.reverse()
    outside: set[str] = set()
    bound: set[str] = set()
    for st in chosen:
        outside |= st.reads - bound
        bound |= st.rebinds
    outside = {n for n in outside if n != target and not gradient_name(n, tensors)}
    return Code(target, chosen, frozenset(grads), frozenset(outside))


# ---------------------------------------------------------------------------------------------
# A time limit that works in the kernel's main thread (and is a no-op elsewhere)


class _TimeUp(Exception):
    pass


@contextlib.contextmanager
def _time_limit(seconds: float):
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def handler(signum, frame):
        raise _TimeUp

    old = signal.signal(signal.SIGALRM, handler)
    previous = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        if previous[0]:
            signal.setitimer(signal.ITIMER_REAL, *previous)
