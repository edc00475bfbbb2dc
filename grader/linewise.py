"""A function that raised, re-run one statement at a time: which line raised, and what the others still compute.

When the student's ``manual_backward`` raises, Python throws away everything it computed: the
caller gets the exception and no gradient. To judge line by line, as Exercise 1 does, the grader
takes the function's source (``inspect.getsource``: IPython keeps every cell's text for it), binds
its parameters to the grader's own tensors, and executes the body's top-level statements one after
the other in a private namespace:

* a statement that raises is recorded (its line, counted from the ``def`` line as line 1, and the
  error) and the run goes on with the next one;
* the names that statement assigns or changes are **tainted** by that crash: their values are
  missing or half-computed. A statement that reads a tainted name is not run, and what it assigns
  is tainted by the same crash. So dependence follows the code's own dataflow, and a gradient that
  never reads the crashed line is computed as in a run without it;
* a caller may give a tainted name a value (``substitute``) just before the first statement that
  reads it without also writing it, the moment its own code is over: that is error carried forward,
  with the value the grader knows is right for it;
* the ``return`` at the end is evaluated one element of its tuple at a time, so one missing gradient
  does not take the others with it.

Output and warnings are swallowed (a stderr line would zero a test cell) and the whole run is
bounded in time. Nothing here knows a gradient: it only runs the student's code.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import inspect
import io
import textwrap
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .rerun import _analyse, _loads, _scoped, _time_limit, _TimeUp, describe_error

TIME_LIMIT = 2.0  # seconds for the whole re-run


@dataclass(frozen=True)
class LineCrash:
    """A statement of the function that raised when the grader ran it alone."""

    line: int  # in the function's source, its `def` line being line 1
    text: str  # the statement's first line, as written
    error: str  # "TypeError: sum() got an unexpected keyword argument 'keep_dim'"
    exc: BaseException = field(compare=False, repr=False)

    def describe(self, function: str) -> str:
        return f"line {self.line} of {function} (`{self.text}`) raised {self.error}"


@dataclass
class Run:
    """What the statement-by-statement run left: the names, which of them a crash spoiled, and the return."""

    namespace: dict
    crashes: list[LineCrash]  # the statements that raised on their own, in the order they ran
    tainted: dict[str, LineCrash]  # a name whose value a crash spoiled, and that crash
    substituted: dict[str, LineCrash]  # a name the caller gave a value in place of its crashed code
    returned: list[tuple[object, LineCrash | None]]  # each returned value, or the crash it depends on
    owner: dict[str, int] = field(default_factory=dict)  # a name and the line of the last statement that wrote it


def source_of(fn) -> ast.FunctionDef | None:
    """The function's definition, parsed from its source (None when Python cannot find the source)."""
    try:
        text = textwrap.dedent(inspect.getsource(fn))
        tree = ast.parse(text)
    except (OSError, TypeError, SyntaxError, IndentationError):
        return None
    node = tree.body[0] if tree.body else None
    if not isinstance(node, ast.FunctionDef) or node.name != getattr(fn, "__name__", None):
        return None
    return node


def _runnable(node: ast.FunctionDef) -> bool:
    """A body this module can run one statement at a time: one ``return``, the last statement, and no yield."""
    body = node.body
    if not body or not isinstance(body[-1], ast.Return):
        return False
    for stmt in body:
        for sub in ast.walk(stmt):
            if isinstance(sub, (ast.Yield, ast.YieldFrom, ast.Await, ast.Global, ast.Nonlocal)):
                return False
            if isinstance(sub, ast.Return) and sub is not body[-1]:
                return False  # a return inside an if or a loop: the order of the statements is not the run's
    return True


def _body(node: ast.FunctionDef) -> list[ast.stmt]:
    body = node.body[:-1]
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # the docstring
    return body


def _reads_writes(stmt: ast.stmt) -> tuple[set[str], set[str]]:
    analysed = _analyse(stmt)
    if analysed is None:
        return _loads(stmt) - _scoped(stmt), set()
    writes, _, reads = analysed
    return reads, writes


def _namespace(fn, args) -> dict | None:
    """The function's globals (a copy), its closure, and its parameters bound to ``args``."""
    try:
        bound = inspect.signature(fn).bind(*args)
    except TypeError:
        return None
    bound.apply_defaults()
    ns = dict(getattr(fn, "__globals__", {}))
    ns.setdefault("__builtins__", builtins)
    code = fn.__code__
    for name, cell in zip(code.co_freevars, fn.__closure__ or (), strict=False):
        with contextlib.suppress(ValueError):  # an empty cell
            ns[name] = cell.cell_contents
    ns.update(bound.arguments)
    return ns


def _first_line(source_lines: list[str], stmt: ast.stmt) -> str:
    return source_lines[stmt.lineno - 1].strip()


def run(fn, args, substitute: Callable[[str, dict], torch.Tensor | None] | None = None) -> Run | None:
    """Run ``fn``'s body on ``args`` one statement at a time, under no_grad (None: it cannot be run that way)."""
    node = source_of(fn)
    if node is None or not _runnable(node):
        return None
    ns = _namespace(fn, args)
    if ns is None:
        return None
    lines = textwrap.dedent(inspect.getsource(fn)).splitlines()
    crashes: list[LineCrash] = []
    tainted: dict[str, LineCrash] = {}
    substituted: dict[str, LineCrash] = {}
    owner: dict[str, int] = {}

    def execute(code) -> BaseException | None:
        try:
            exec(code, ns)  # noqa: S102 - the student's own code, in the student's own kernel
        except _TimeUp:
            raise
        except Exception as exc:  # noqa: BLE001 - any error of the student's code is a finding
            return exc
        return None

    out, err = io.StringIO(), io.StringIO()
    try:
        with (
            torch.no_grad(),
            _time_limit(TIME_LIMIT),
            warnings.catch_warnings(),
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
        ):
            warnings.simplefilter("ignore")
            for stmt in _body(node):
                reads, writes = _reads_writes(stmt)
                for name in sorted(reads & tainted.keys() - writes):  # its own code is over: carry forward
                    value = substitute(name, ns) if substitute else None
                    if value is not None:
                        ns[name] = value
                        substituted[name] = tainted.pop(name)
                spoiled = next((tainted[r] for r in sorted(reads) if r in tainted), None)
                if spoiled is None:
                    code = compile(ast.Module([stmt], type_ignores=[]), f"<{fn.__name__}>", "exec")
                    exc = execute(code)
                    if exc is not None:
                        spoiled = LineCrash(stmt.lineno, _first_line(lines, stmt), describe_error(exc), exc)
                        crashes.append(spoiled)
                for name in writes:
                    owner[name] = stmt.lineno
                    if spoiled is not None:
                        tainted[name] = spoiled
                    else:
                        tainted.pop(name, None)
            returned = _returned(node.body[-1], ns, tainted, lines, crashes)
    except _TimeUp:
        return None
    return Run(ns, crashes, tainted, substituted, returned, owner)


def _returned(stmt: ast.Return, ns: dict, tainted: dict, lines, crashes) -> list[tuple[object, LineCrash | None]]:
    """The values the ``return`` gives, one element of its tuple at a time, each with the crash it depends on."""
    value = stmt.value
    elements = value.elts if isinstance(value, ast.Tuple) else [value]
    out: list[tuple[object, LineCrash | None]] = []
    for element in elements:
        if element is None:
            out.append((None, None))
            continue
        spoiled = next((tainted[r] for r in sorted(_loads(element) - _scoped(element)) if r in tainted), None)
        if spoiled is not None:
            out.append((None, spoiled))
            continue
        try:
            out.append((eval(compile(ast.Expression(element), "<return>", "eval"), ns), None))  # noqa: S307
        except Exception as exc:  # noqa: BLE001 - the return line itself raised
            crash = LineCrash(stmt.lineno, _first_line(lines, stmt), describe_error(exc), exc)
            crashes.append(crash)
            out.append((None, crash))
    if len(out) == 1 and not isinstance(value, ast.Tuple):  # `return grads`: split what it returned
        single, crash = out[0]
        if isinstance(single, (tuple, list)):
            return [(v, None) for v in single]
        return [(None, crash)] if crash is not None else [(single, None)]
    return out
