"""The answer language: what a cell the student can edit may contain, checked statically, outside the kernel.

The prechecks that look for *names* (``grader.autograde.precheck.REACHING``) miss obfuscations that use none:
``f.__globals__['grader']``, ``getattr(torch, 'auto' + 'grad')``, ``vars(torch)['autograd']``,
``torch.Tensor.__sub__ = ...``. This module does not look for what is forbidden; it accepts only what
answers to these exercises need (an ALLOW-LIST) and gives a reason for everything else:

- statements: assignments (plain, augmented, annotated, tuple and subscript targets such as
  ``dC[ix] += ...``; names, never attributes, except ``p.data`` of the lecture's update), ``for``,
  ``while``, ``if``, ``def``/``return``, ``lambda``, ``with torch.no_grad():``, ``assert``, ``raise``
  (the stub's ``raise NotImplementedError()``), ``pass``/``break``/``continue``, ``del`` of names and
  items, docstrings and comments, ``import torch`` / ``torch.nn.functional as F`` / ``math``;
- expressions: constants, arithmetic and comparisons, indexing and slicing, comprehensions, f-strings,
  calls of allow-listed builtins (``range``, ``len``, ``print``, ``zip``...), of the notebook's ``cmp``
  and of attributes from ALLOWED_ATTRS (tensor methods, ``torch.*`` and ``F.*`` functions: no dunders,
  nothing private, nothing of autograd);
- ``grader.<...>`` only as a chain the notebook's own visible code uses (``grader.training.progress``
  in Exercise 4's training loop); the names the tests rely on (``cmp``, ``grader``, ``torch``, ``F``)
  are never rebound.

It is pure ``ast`` (no torch, nothing of the submission is run): ``precheck.check`` (the class command)
and the nbgrader preprocessor ``grader.nbgrader_answers.HoldForReview`` (plain ``nbgrader autograde``)
call it. A cell is parsed as the kernel would run it (IPython's input transformations first, top-level
``await`` allowed); a cell that does not parse runs nothing, so it is not flagged.

``leaks`` is the feedback guard: hidden-test lines in a page, also reversed, Caesar/rot13-shifted,
whitespace-spread, or in base64 / base32 / hex / decimal-byte / escape-sequence runs.

This module is long because the allow-lists, the checker and the leak guard's decoders belong together:
one reviewed list of what an answer may do, and the one place that knows how a page can hide a line.
It imports nothing of the package (``grader.cells`` only), so the class command, the nbgrader step and
the instructor tools all import it without torch and without a cycle.
"""

from __future__ import annotations

import ast
import base64
import binascii
import builtins
import codecs
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from .cells import nbgrader_meta

# ---------------------------------------------------------------------------------------------
# The allow-lists

# tensor methods and properties, torch.* / F.* / math.* functions, and the few Python methods answers use
ALLOWED_ATTRS = frozenset(
    """
    T mT H t transpose permute view view_as reshape reshape_as flatten unflatten squeeze unsqueeze expand
    expand_as repeat repeat_interleave contiguous clone detach data shape size numel nelement dim ndim ndimension
    dtype device float double half long int bool to type_as cpu item tolist
    sum mean std var max min amax amin argmax argmin values indices prod cumsum cumprod logsumexp norm
    exp log log2 log10 log1p expm1 sqrt rsqrt pow square abs neg negative reciprocal sign tanh sigmoid relu
    softmax log_softmax clamp clip clamp_ clip_ where masked_fill masked_fill_ floor ceil round
    add sub mul div true_divide matmul mm bmm mv dot outer inner einsum tensordot
    add_ sub_ mul_ div_ zero_ fill_ copy_ clamp_ index_add_ index_add index_copy_ index_copy index_fill_
    index_select index_put_ index_put scatter scatter_ scatter_add scatter_add_ scatter_reduce gather take
    put_ nonzero bincount unique sort argsort topk kthvalue
    eq ne lt le gt ge equal allclose isclose all any isnan isinf isfinite count_nonzero
    diag diagonal diag_embed tril triu trace fliplr flipud flip roll
    new_zeros new_ones new_full new_empty new_tensor zeros_like ones_like full_like empty_like rand_like
    randn_like
    zeros ones full empty eye arange linspace tensor as_tensor stack cat concat hstack vstack split chunk
    unbind narrow select broadcast_to meshgrid cross cdist
    no_grad inference_mode manual_seed Generator randn rand randint randperm multinomial normal
    float16 float32 float64 int8 int16 int32 int64 uint8 long_ set_printoptions
    nn functional one_hot cross_entropy nll_loss mse_loss softmax log_softmax pad normalize linear
    pi e inf nan isqrt factorial
    append extend insert pop items keys values get join split strip format upper lower replace startswith
    endswith count index
    plot show xlabel ylabel title legend figure hist imshow grid xlim ylim subplot colorbar axhline axvline
    set_postfix
    exp_ log_ pow_ neg_ sqrt_ tanh_ abs_ t_ transpose_ squeeze_ unsqueeze_ swapaxes swapdims movedim type numpy
    testing assert_close Tensor
    """.split()
)

# attributes no answer may touch, whatever the allow-list says (also keeps them out of a notebook's allowances)
DENIED_ATTRS = {
    "backward": "calls autograd (`.backward`)",
    "grad": "reads or writes an autograd gradient (`.grad`)",
    "requires_grad": "turns on autograd (`.requires_grad`)",
    "requires_grad_": "turns on autograd (`.requires_grad_`)",
    "retain_grad": "asks autograd for a gradient (`.retain_grad`)",
    "register_hook": "hooks into autograd (`.register_hook`)",
    "grad_fn": "walks autograd's graph (`.grad_fn`)",
    "autograd": "uses torch.autograd (`.autograd`)",
    "func": "uses torch.func, functional autograd (`.func`)",
    "enable_grad": "turns autograd back on (`torch.enable_grad`)",
    "set_grad_enabled": "turns autograd on or off (`torch.set_grad_enabled`)",
    "settrace": "installs a trace hook (`settrace`)",
    "setprofile": "installs a profile hook (`setprofile`)",
    "modules": "reaches sys.modules (`.modules`)",
    "os": "reaches the os module (`.os`)",
    "sys": "reaches the sys module (`.sys`)",
    "load": "loads files (`.load`)",
    "save": "writes files (`.save`)",
    "compile": "compiles code (`.compile`)",
    "ops": "reaches torch.ops (`.ops`)",
    "library": "reaches torch.library (`.library`)",
    "overrides": "reaches torch.overrides (`.overrides`)",
}

# builtins an answer may call; every other builtin is flagged (DENIED_NAMES with a reason of its own)
ALLOWED_BUILTINS = frozenset(
    """
    range len print zip enumerate min max abs float int bool str list tuple dict set frozenset sum round
    sorted reversed all any isinstance map filter divmod pow slice iter next repr format complex chr ord
    hex bin oct hash id callable issubclass
    True False None Ellipsis NotImplemented
    NotImplementedError ValueError TypeError AssertionError RuntimeError IndexError KeyError ZeroDivisionError
    ArithmeticError StopIteration Exception
    """.split()
)

DENIED_NAMES = {
    "getattr": "reads attributes by name (`getattr`)",
    "setattr": "writes attributes by name (`setattr`)",
    "delattr": "deletes attributes by name (`delattr`)",
    "hasattr": "probes attributes by name (`hasattr`)",
    "vars": "reads a namespace as a dict (`vars`)",
    "globals": "reads or rewrites the notebook's globals (`globals`)",
    "locals": "reads a namespace as a dict (`locals`)",
    "dir": "lists a namespace (`dir`)",
    "exec": "runs code from a string (`exec`)",
    "eval": "runs code from a string (`eval`)",
    "compile": "compiles code from a string (`compile`)",
    "__import__": "imports by name (`__import__`)",
    "open": "opens files (`open`)",
    "breakpoint": "starts a debugger (`breakpoint`)",
    "input": "reads input (`input`)",
    "help": "starts the help system (`help`)",
    "memoryview": "reads raw memory (`memoryview`)",
    "object": "uses `object` (classes, attribute machinery)",
    "super": "uses `super`",
    "classmethod": "defines class machinery (`classmethod`)",
    "staticmethod": "defines class machinery (`staticmethod`)",
    "property": "defines class machinery (`property`)",
    "exit": "exits the kernel (`exit`)",
    "quit": "exits the kernel (`quit`)",
    "get_ipython": "talks to the kernel (`get_ipython`: input history, hooks, magics)",
    "In": "reads the kernel's input history (`In`: the test cells' source)",
    "Out": "reads the kernel's output history (`Out`)",
    "sys": "uses sys (sys.modules, trace hooks)",
    "os": "uses os (files, processes, the environment)",
    "builtins": "uses builtins",
    "importlib": "uses importlib",
    "nbgrader": "uses nbgrader",
    "grader": "uses the grader package",
    "display": "uses IPython's display machinery",
}

# the kernel's history variables: _i, _ii, _iii, _i3, _ih, _oh, _dh, _3, __, ___
HISTORY = re.compile(r"^_(i{1,3}|i\d+|ih|oh|dh|\d+|_+)$")
DUNDER_TEXT = re.compile(r"__\w+__")
FORMAT_FIELD = re.compile(r"\{\s*\w*\s*[.\[]")  # "{0.attr}" / "{x[key]}": str.format reads attributes and items

# names the test cells rely on: never rebound by an answer (imports of the same module are fine)
PROTECTED = {"cmp": None, "grader": None, "torch": "torch", "F": "torch.nn.functional", "math": "math"}
ALLOWED_IMPORTS = {"torch", "torch.nn", "torch.nn.functional", "math"}
DENIED_KEYWORDS = {"requires_grad", "retain_graph", "create_graph", "grad_outputs"}

# statements and expressions no answer needs, each with its reason
CONSTRUCTS = {
    ast.ClassDef: "defines a class",
    ast.AsyncFunctionDef: "defines a coroutine (`async def`)",
    ast.AsyncFor: "uses `async for`",
    ast.AsyncWith: "uses `async with`",
    ast.Await: "uses `await`",
    ast.Yield: "defines a generator (`yield`)",
    ast.YieldFrom: "defines a generator (`yield from`)",
    ast.Global: "rebinds globals from inside a function (`global`)",
    ast.Nonlocal: "rebinds an outer function's names (`nonlocal`)",
    ast.Try: "catches exceptions (`try`: an answer has none to catch; it could swallow the grader's)",
    ast.Match: "uses `match`",
}
if hasattr(ast, "TryStar"):
    CONSTRUCTS[ast.TryStar] = "catches exception groups (`try`/`except*`)"

ALLOWED_NODES = (
    ast.Module,
    ast.Expr,
    ast.Assign,
    ast.AugAssign,
    ast.AnnAssign,
    ast.For,
    ast.While,
    ast.If,
    ast.FunctionDef,
    ast.Lambda,
    ast.Return,
    ast.Pass,
    ast.Break,
    ast.Continue,
    ast.With,
    ast.withitem,
    ast.Raise,
    ast.ExceptHandler,  # only inside a `try`, which is flagged itself
    ast.Assert,
    ast.Delete,
    ast.Import,
    ast.ImportFrom,
    ast.alias,
    ast.BoolOp,
    ast.BinOp,
    ast.UnaryOp,
    ast.IfExp,
    ast.Dict,
    ast.Set,
    ast.List,
    ast.Tuple,
    ast.ListComp,
    ast.SetComp,
    ast.DictComp,
    ast.GeneratorExp,
    ast.comprehension,
    ast.Compare,
    ast.Call,
    ast.keyword,
    ast.FormattedValue,
    ast.JoinedStr,
    ast.Constant,
    ast.Attribute,
    ast.Subscript,
    ast.Slice,
    ast.Starred,
    ast.Name,
    ast.NamedExpr,
    ast.arguments,
    ast.arg,
    ast.expr_context,
    ast.boolop,
    ast.operator,
    ast.unaryop,
    ast.cmpop,
)


@dataclass(frozen=True)
class Allowances:
    """What one notebook's own visible code adds to the language (computed by ``allowances``)."""

    chains: frozenset[str] = frozenset()  # full ``grader.x.y`` chains the visible code uses
    attrs: frozenset[str] = frozenset()  # attribute names the visible code uses (never DENIED_ATTRS)
    protected: frozenset[str] = frozenset(PROTECTED)  # names no answer may rebind
    trusted: frozenset[str] = frozenset()  # the (stripped) text of the locked cells: instructor code


DEFAULT = Allowances()


def _chain(node: ast.AST) -> str | None:
    """``a.b.c`` for an attribute chain on a name, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id, *reversed(parts)])
    return None


def _is_no_grad(node: ast.AST) -> bool:
    """``torch.no_grad()`` or ``torch.no_grad`` (a decorator may take either form)."""
    if isinstance(node, ast.Call) and not node.args and not node.keywords:
        node = node.func
    return _chain(node) in ("torch.no_grad", "torch.inference_mode")


# IPython magics an answer may use (the code they time is checked like the cell's own)
TIMING_MAGICS = {"time", "timeit"}


def _magic(node: ast.Call) -> tuple[str, list[str]] | None:
    """(method, string arguments) of ``get_ipython().method('...', ...)``, as IPython writes a magic or ``!``."""
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


class _Checker(ast.NodeVisitor):
    def __init__(self, allow: Allowances, magics: bool = False) -> None:
        self.allow = allow
        self.magics = magics  # the cell had magics or `!` lines: IPython turned them into get_ipython() calls
        self.reasons: list[str] = []
        self.bound: set[str] = set()
        self.ok_names: set[int] = set()  # ids of Name nodes already judged (cmp calls, grader chains)

    def flag(self, why: str) -> None:
        if why not in self.reasons:
            self.reasons.append(why)

    def generic_visit(self, node: ast.AST) -> None:
        for cls, why in CONSTRUCTS.items():
            if isinstance(node, cls):
                self.flag(why)
                break
        else:
            if not isinstance(node, ALLOWED_NODES):
                self.flag(f"uses {type(node).__name__}, which no answer needs")
        super().generic_visit(node)

    # -- names ------------------------------------------------------------------------------
    def visit_Name(self, node: ast.Name) -> None:
        name = node.id
        if id(node) in self.ok_names:
            return
        if name.startswith("__"):
            self.flag(f"uses the dunder name `{name}`")
        elif HISTORY.match(name):
            self.flag(f"reads the kernel's history (`{name}`: the test cells' source and outputs)")
        elif isinstance(node.ctx, (ast.Store, ast.Del)):
            self._binds(name)
        elif name in DENIED_NAMES:
            self.flag(DENIED_NAMES[name])
        elif name == "cmp":
            self.flag("uses the visible check `cmp` other than by calling it")
        elif name in _BUILTIN_NAMES and name not in ALLOWED_BUILTINS and name not in self.bound:
            self.flag(f"uses the builtin `{name}`, which no answer needs")

    def _binds(self, name: str, module: str | None = None) -> None:
        if name.startswith("__"):
            self.flag(f"binds the dunder name `{name}`")
        elif name in DENIED_NAMES:
            self.flag(f"rebinds `{name}`: {DENIED_NAMES[name]}")
        elif name in self.allow.protected and (module is None or PROTECTED.get(name) != module):
            self.flag(f"rebinds `{name}`, which the tests use")
        self.bound.add(name)

    def visit_arg(self, node: ast.arg) -> None:
        if node.arg.startswith("__"):
            self.flag(f"binds the dunder name `{node.arg}`")
        self.bound.add(node.arg)
        self.generic_visit(node)

    # -- attributes -------------------------------------------------------------------------
    def visit_Attribute(self, node: ast.Attribute) -> None:
        attr = node.attr
        chain = _chain(node)
        root = chain.split(".", 1)[0] if chain else None
        if root == "grader" and chain in self.allow.chains and isinstance(node.ctx, ast.Load):
            return  # a chain the notebook's own visible code uses, e.g. grader.training.progress
        if isinstance(node.ctx, (ast.Store, ast.Del)):
            if attr == "data" and isinstance(node.value, ast.Name) and node.value.id not in self.allow.protected:
                pass  # the lecture's `p.data += -lr * grad`
            else:
                what = "deletes" if isinstance(node.ctx, ast.Del) else "assigns"
                self.flag(f"{what} an attribute (`{chain or '...' + '.' + attr}`): patches an object or module")
        if attr in ("format", "format_map") and not isinstance(node.value, ast.Constant):
            self.flag(f"formats with a format string made at run time (`.{attr}` can read attributes)")
        if attr.startswith("__"):
            self.flag(f"uses the dunder attribute `.{attr}`")
        elif attr.startswith("_"):
            self.flag(f"uses the private attribute `.{attr}`")
        elif attr in DENIED_ATTRS:
            self.flag(DENIED_ATTRS[attr])
        elif attr not in ALLOWED_ATTRS and attr not in self.allow.attrs:
            self.flag(f"uses the attribute `.{attr}`, which is not in the answer language")
        self.visit(node.value)

    # -- calls ------------------------------------------------------------------------------
    def visit_Call(self, node: ast.Call) -> None:
        magic = _magic(node) if self.magics else None
        if magic is not None:
            self._magic(*magic)
            return
        if isinstance(node.func, ast.Name) and node.func.id == "cmp":
            self.ok_names.add(id(node.func))
        if isinstance(node.func, ast.Name) and node.func.id == "type" and "type" not in self.bound:
            if len(node.args) != 1 or node.keywords:
                self.flag("calls `type` with more than one argument (makes a class)")
            self.ok_names.add(id(node.func))
        for kw in node.keywords:
            if kw.arg in DENIED_KEYWORDS:
                self.flag(f"passes `{kw.arg}=`, which no answer needs")
            elif kw.arg is None:
                self.flag("passes keyword arguments from a dict (`**`): their names are not checked")
        self.generic_visit(node)

    def _magic(self, method: str, args: list[str]) -> None:
        if method == "run_line_magic" and len(args) == 2 and args[0] == "matplotlib" and re.fullmatch(r"\w*", args[1]):
            return  # %matplotlib inline
        if method in ("run_line_magic", "run_cell_magic") and args and args[0] in TIMING_MAGICS:
            line, body = args[1], args[2] if len(args) == 3 else ""
            if method == "run_line_magic" and len(args) == 2 and not line.lstrip().startswith("-"):
                body, line = line, ""
            if not line.strip():
                for why in check_source(body, self.allow):
                    self.flag(why)
                return
        if method in ("run_line_magic", "run_cell_magic") and args:
            self.flag(f"uses the IPython magic `%{args[0]}` (only %matplotlib, %time and %timeit are answers)")
        elif method in ("system", "getoutput"):
            self.flag("runs a shell command (`!`)")
        else:
            self.flag(f"talks to the kernel (`get_ipython().{method}`)")

    # -- statements -------------------------------------------------------------------------
    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._binds(node.name)
        for deco in node.decorator_list:
            if not _is_no_grad(deco):
                self.flag("uses a decorator other than @torch.no_grad()")
        self.generic_visit(node)

    def visit_With(self, node: ast.With) -> None:
        for item in node.items:
            if not _is_no_grad(item.context_expr) or item.optional_vars is not None:
                self.flag("uses `with` other than `with torch.no_grad():`")
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for a in node.names:
            if a.name not in ALLOWED_IMPORTS:
                self.flag(f"imports {a.name} (answers import only torch, torch.nn.functional and math)")
            elif a.asname:
                self._binds(a.asname, a.name)
            else:
                self._binds(a.name.split(".")[0], a.name.split(".")[0])

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        if node.level or module not in ALLOWED_IMPORTS:
            self.flag(f"imports from {'.' * node.level}{module} (answers import only torch, torch.nn.functional, math)")
            return
        for a in node.names:
            if a.name == "*":
                self.flag(f"imports everything from {module} (`import *`)")
            elif a.name.startswith("_") or a.name in DENIED_ATTRS or a.name not in ALLOWED_ATTRS:
                self.flag(f"imports {a.name} from {module}, which is not in the answer language")
            else:
                self._binds(a.asname or a.name, f"{module}.{a.name}")

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str) and DUNDER_TEXT.search(node.value):
            self.flag(f"a string names a dunder ({DUNDER_TEXT.search(node.value).group()!r})")
        elif isinstance(node.value, str) and FORMAT_FIELD.search(node.value):
            self.flag("a format string reads attributes or items (`'{0.attr}'.format(...)`)")


_BUILTIN_NAMES = frozenset(dir(builtins)) | {"__builtins__", "get_ipython", "display", "exit", "quit", "In", "Out"}


def _transform(source: str) -> str:
    """The cell as IPython's kernel compiles it: magics and ``!`` shell lines become get_ipython() calls."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager
    except ImportError:  # pragma: no cover (IPython comes with the kernel)
        return source
    try:
        return TransformerManager().transform_cell(source)
    except Exception:  # a cell IPython cannot transform does not run either
        return source


def parse(source: str) -> ast.Module | None:
    """The cell's syntax tree as the kernel would run it, or None if it does not compile (then nothing runs)."""
    return _parse(_transform(source))


def _parse(code: str) -> ast.Module | None:
    try:
        flags = ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        return compile(code, "<cell>", "exec", flags=flags, dont_inherit=True)
    except (SyntaxError, ValueError):
        return None


def check_source(source: str, allow: Allowances = DEFAULT) -> list[str]:
    """Why ``source`` (one cell) is outside the answer language; empty if it is inside (or runs nothing)."""
    code = _transform(source)
    tree = _parse(code)
    if tree is None:
        return []
    checker = _Checker(allow, magics="get_ipython" in code and "get_ipython" not in source)
    checker.visit(tree)
    return checker.reasons


# ---------------------------------------------------------------------------------------------
# Notebooks


HIDDEN = re.compile(r"^[ \t]*### BEGIN HIDDEN TESTS.*?^[ \t]*### END HIDDEN TESTS[ \t]*$\n?", re.M | re.S)
SOLUTION = re.compile(r"^[ \t]*### BEGIN SOLUTION.*?^[ \t]*### END SOLUTION[ \t]*$\n?", re.M | re.S)


def _source(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def visible(source: str) -> str:
    """What the student sees of an instructor cell: hidden tests and solutions taken out."""
    return SOLUTION.sub("", HIDDEN.sub("", source))


def allowances(source_nb) -> Allowances:
    """What the source notebook's own visible code adds: its ``grader.*`` chains and attribute names, the
    names its locked cells import (never rebound), and its locked cells' text (instructor code)."""
    chains, attrs, protected, trusted = set(), set(), set(PROTECTED), set()
    for cell in source_nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        text = visible(_source(cell))
        meta = nbgrader_meta(cell)
        if meta.get("locked") and not meta.get("solution"):
            trusted.add(_source(cell).strip())
            trusted.add(text.strip())
        tree = parse(text)
        if tree is None:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and not node.attr.startswith("_") and node.attr not in DENIED_ATTRS:
                attrs.add(node.attr)
                chain = _chain(node)
                if chain and chain.startswith("grader.") and "._" not in chain:
                    chains.add(chain)
            elif isinstance(node, (ast.Import, ast.ImportFrom)) and meta.get("locked"):
                protected.update((a.asname or a.name).split(".")[0] for a in node.names if a.name != "*")
    return Allowances(frozenset(chains), frozenset(attrs), frozenset(protected), frozenset(trusted - {""}))


@dataclass
class CellFlag:
    index: int  # the cell's position in the notebook
    label: str  # its grade id, or "cell <id>" (a cell of the source without nbgrader metadata), or "added cell"
    reasons: list[str] = field(default_factory=list)
    grade_id: str | None = None


def editable(nb, source_nb) -> list[tuple[int, str, str | None]]:
    """(index, label, grade id) of every code cell of ``nb`` the student could edit or add: everything but
    the locked nbgrader cells of the source (nbgrader puts their text back) and exact copies of them."""
    locked = {
        nbgrader_meta(c).get("grade_id")
        for c in source_nb.get("cells", [])
        if nbgrader_meta(c).get("locked") and not nbgrader_meta(c).get("solution")
    } - {None}
    source_ids = {
        c.get("id") for c in source_nb.get("cells", []) if c.get("id") and not nbgrader_meta(c).get("grade_id")
    }
    out = []
    for index, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        gid = nbgrader_meta(cell).get("grade_id")
        if gid in locked and not nbgrader_meta(cell).get("solution"):
            continue
        if gid:
            label = gid
        elif cell.get("id") in source_ids:
            label = f"cell {cell.get('id')}"
        else:
            label = f"added cell {index + 1}"
        out.append((index, label, gid))
    return out


def check_notebook(nb, source_nb, allow: Allowances | None = None) -> list[CellFlag]:
    """Every cell of ``nb`` (a submission) the student could edit or add that is outside the answer
    language, in notebook order, each with its reasons. ``source_nb``: the assignment's source notebook."""
    allow = allow or allowances(source_nb)
    flags = []
    for index, label, gid in editable(nb, source_nb):
        text = _source(nb["cells"][index])
        if text.strip() in allow.trusted:
            continue  # a copy of a locked cell: the instructor's own code
        reasons = check_source(text, allow)
        if reasons:
            flags.append(CellFlag(index, label, reasons, gid))
    return flags


# ---------------------------------------------------------------------------------------------
# The feedback guard: hidden-test text in a page, plain or encoded

_ROT = [
    str.maketrans(
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "abcdefghijklmnopqrstuvwxyz"[k:]
        + "abcdefghijklmnopqrstuvwxyz"[:k]
        + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[k:]
        + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[:k],
    )
    for k in range(26)
]
_B64 = re.compile(r"[A-Za-z0-9+/_-]{16,}={0,2}")
_B32 = re.compile(r"[A-Z2-7]{16,}={0,6}")
_HEX = re.compile(r"(?:[0-9a-fA-F]{2}[\s:,]?){8,}")
_DEC = re.compile(r"(?:\b\d{1,3}\b[\s,;]+){8,}\d{1,3}\b")
_ESC = re.compile(r"(?:\\(?:x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|[0-7]{3})){8,}")
_SPACES = re.compile(r"\s+")
MIN_LINE = 16  # shorter hidden lines (`import grader.atomic`) are only looked for as they are


def _decoded_runs(text: str) -> list[str]:
    """The text of every base64 / base32 / hex / decimal-byte / escape-sequence run of ``text`` (and
    zlib-inflated base64), as far as it decodes to text."""
    blobs: list[bytes] = []
    for m in _B64.finditer(text):
        run = m.group().rstrip("=")
        for alt in (run, run.replace("-", "+").replace("_", "/")):
            try:
                blobs.append(base64.b64decode(alt + "=" * (-len(alt) % 4), validate=False))
            except (binascii.Error, ValueError):
                pass
    for m in _B32.finditer(text):
        try:
            blobs.append(base64.b32decode(m.group().rstrip("=") + "=" * (-len(m.group().rstrip("=")) % 8)))
        except (binascii.Error, ValueError):
            pass
    for m in _HEX.finditer(text):
        digits = re.sub(r"[\s:,]", "", m.group())
        for start in (0, 1):
            try:
                blobs.append(bytes.fromhex(digits[start : start + (len(digits) - start) // 2 * 2]))
            except ValueError:
                pass
    for m in _DEC.finditer(text):
        numbers = [int(x) for x in re.findall(r"\d+", m.group())]
        if all(n < 256 for n in numbers):
            blobs.append(bytes(numbers))
        else:
            blobs.append("".join(chr(n) for n in numbers if n < 0x110000).encode("utf-8", "replace"))
    for m in _ESC.finditer(text):
        try:
            blobs.append(codecs.decode(m.group(), "unicode_escape").encode("utf-8", "replace"))
        except (UnicodeDecodeError, ValueError):
            pass
    out = []
    for blob in blobs:
        try:
            blob = zlib.decompress(blob)
        except zlib.error:
            pass
        try:
            decoded = blob.decode("utf-8")
        except UnicodeDecodeError:
            continue  # not text (a run of letters that only looks like base64, an image, a font)
        if decoded.isprintable() or _SPACES.sub("", decoded).isprintable():
            out.append(decoded)
    return out


def page_text(html: str) -> str:
    """The text of a feedback page as a reader sees it: no style sheets or scripts, no tags, entities decoded."""
    import html as html_mod

    html = re.sub(r"<(style|script)\b.*?</\1\s*>", "", html, flags=re.S | re.I)
    return html_mod.unescape(re.sub(r"<[^>]+>", "", html))


def leaks(text: str, secret: Iterable[str]) -> list[str]:
    """The hidden-test lines of ``secret`` that ``text`` (a feedback page's text) shows: as they are, or
    reversed, Caesar-shifted (rot13 and the other 24), with whitespace spread between the characters, in
    another case, or encoded in base64 / base32 / hex / decimal bytes / escape sequences (also reversed)."""
    secret = [s for s in dict.fromkeys(s.strip() for s in secret) if s]
    found = [s for s in secret if s in text]
    rest = [s for s in secret if s not in found and len(s) >= MIN_LINE]
    if not rest:
        return found
    decoded = _decoded_runs(text) + _decoded_runs(text[::-1])
    views = "\0".join([text, *decoded])
    # one string to search: every view forwards and backwards, without whitespace, in lower case
    haystack = _SPACES.sub("", views + "\0" + views[::-1]).lower()
    # a secret shifted by k shows as the secret shifted by k: shift the (few, short) secrets, not the page
    for s in rest:
        squeezed = _SPACES.sub("", s).lower()
        if any(squeezed.translate(_ROT[k]) in haystack for k in range(26)):
            found.append(s)
    return found
