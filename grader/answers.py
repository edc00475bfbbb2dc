"""The answer language: what a cell the student can edit may not do, checked statically, outside the kernel.

An answer is graded on its values. Whatever ordinary Python and ordinary torch it is written in (any public
math function or tensor method, indexing with any expression, helper functions, lambdas, loops, prints,
asserts, ``cmp`` calls, comments, a typo that simply raises) is none of this module's business. What it
flags is what could change a grade other than through the answer's values (a DENY-list, each entry with its
reason), because the test cells run in the same kernel:

- **write into** torch, the grader, builtins or the checking code: assigning or deleting an attribute of
  anything (``torch.tanh = ...``; the lecture's ``p.data += ...`` aside), rebinding the names the tests use
  (``cmp``, ``grader``, ``torch``, ``F``), torch's global settings (``torch.set_default_dtype``...),
  registering hooks (``.register_*``);
- **reach autograd or the reference**: ``.backward``, ``.grad``, ``requires_grad``, ``torch.autograd``,
  ``torch.func``..., the ``grader`` package (but the chains the notebook's own visible code uses, such as
  ``grader.training.progress``), the kernel's history (``In``, ``_ih``, ``_i3``);
- **import, exec, introspect**: any import but torch, torch.nn, torch.nn.functional and math; ``exec``,
  ``eval``, ``compile``, ``getattr`` and its kin, ``vars``, ``globals``; dunder and private names and
  attributes; frame, code and traceback attributes (``gi_frame``, ``f_back``, ``tb_frame``); format strings
  that read such attributes; classes (they define dunders);
- **touch files, processes or the network**: ``open``, ``torch.load``/``save``, ``torch.hub``, ``torch.utils``,
  a standard-library module reached as an attribute (``torch.os``), shell lines (``!``) and every IPython magic
  but ``%time``, ``%timeit``, ``%matplotlib``, ``%who``/``%whos`` and ``?`` help.

A cell is parsed as the kernel would run it: IPython's input transformations first (``%magic``, ``!cmd``,
``x?``), and for a one-line cell IPython's automagic (``time CODE`` runs as ``%time CODE``); the code a timing
magic runs is checked like the cell's own. A cell that does not compile runs nothing, so it is not flagged.
Each reason names its line. This is the static half of the defence; the runtime half is ``grader.guard``: a
kernel that changed what the checks rely on is refused by every hidden test, however the change was spelled.

It is pure ``ast`` (no torch, nothing of the submission is run): ``precheck.check`` (the class command)
and the nbgrader preprocessor ``grader.nbgrader_answers.HoldForReview`` (plain ``nbgrader autograde``)
call it.

This module is long because the deny-lists, the reasons they give and the one checker that applies them
belong together: one reviewed account of what an answer may not do. The feedback's leak guard, the other
static reader of student bytes, is ``grader.leakguard``.

It imports nothing of the package (``grader.cells`` only), so the class command, the nbgrader step and
the instructor tools all import it without torch and without a cycle.
"""

from __future__ import annotations

import ast
import re
import string
import sys
from dataclasses import dataclass, field

from . import ipysource
from .cells import nbgrader_meta

# ---------------------------------------------------------------------------------------------
# The deny-lists: each entry says what it could do to a grade

# attribute names no answer may touch, with the reason
DENIED_ATTRS = {
    # autograd: the gradient must be derived by hand
    "backward": "calls autograd (`.backward`)",
    "grad": "reads or writes an autograd gradient (`.grad`)",
    "requires_grad": "turns on autograd (`.requires_grad`)",
    "requires_grad_": "turns on autograd (`.requires_grad_`)",
    "retain_grad": "asks autograd for a gradient (`.retain_grad`)",
    "retains_grad": "asks autograd about a gradient (`.retains_grad`)",
    "grad_fn": "walks autograd's graph (`.grad_fn`)",
    "autograd": "uses torch.autograd (`.autograd`)",
    "func": "uses torch.func, functional autograd (`.func`)",
    "functorch": "uses functorch, functional autograd (`.functorch`)",
    "vjp": "uses a vector-Jacobian product (`.vjp`)",
    "jvp": "uses a Jacobian-vector product (`.jvp`)",
    "jacobian": "uses autograd's Jacobian (`.jacobian`)",
    "hessian": "uses autograd's Hessian (`.hessian`)",
    "jacrev": "uses autograd's Jacobian (`.jacrev`)",
    "jacfwd": "uses autograd's Jacobian (`.jacfwd`)",
    "enable_grad": "turns autograd back on (`torch.enable_grad`)",
    "set_grad_enabled": "turns autograd on or off (`torch.set_grad_enabled`)",
    # torch's global state, which the checking code shares
    "set_default_dtype": "changes torch's global settings (`torch.set_default_dtype`)",
    "set_default_tensor_type": "changes torch's global settings (`torch.set_default_tensor_type`)",
    "set_default_device": "changes torch's global settings (`torch.set_default_device`)",
    "set_flush_denormal": "changes torch's global settings (`torch.set_flush_denormal`)",
    "set_float32_matmul_precision": "changes torch's global settings (`torch.set_float32_matmul_precision`)",
    "use_deterministic_algorithms": "changes torch's global settings (`torch.use_deterministic_algorithms`)",
    "set_anomaly_enabled": "changes torch's global settings (`set_anomaly_enabled`)",
    "backends": "changes torch's global settings (`torch.backends`)",
    "overrides": "reaches torch.overrides, which reroutes every torch call (`.overrides`)",
    "library": "reaches torch.library, which redefines torch's operators (`.library`)",
    "ops": "reaches torch.ops, torch's operator registry (`.ops`)",
    "classes": "reaches torch.classes, torch's class registry (`.classes`)",
    # code, files, processes, the network
    "settrace": "installs a trace hook (`settrace`)",
    "setprofile": "installs a profile hook (`setprofile`)",
    "modules": "reaches sys.modules (`.modules`)",
    "load": "loads files (`.load`)",
    "save": "writes files (`.save`)",
    "from_file": "reads files (`.from_file`)",
    "compile": "compiles code (`.compile`)",
    "jit": "compiles code (`torch.jit`)",
    "hub": "downloads and runs code (`torch.hub`)",
    "utils": "reaches torch.utils (C++ extensions, hooks, files: `.utils`)",
    "package": "loads packaged code (`torch.package`)",
    "fx": "traces and rewrites code (`torch.fx`)",
    "export": "traces and rewrites code (`torch.export`)",
    "serialization": "reads and writes files (`torch.serialization`)",
    "distributed": "talks to other processes (`torch.distributed`)",
    "multiprocessing": "starts processes (`torch.multiprocessing`)",
    "profiler": "writes files (`torch.profiler`)",
    # the attribute machinery, spelled without dunders
    "attrgetter": "reads attributes by name (`attrgetter`)",
    "methodcaller": "calls methods by name (`methodcaller`)",
}
# Reading autograd changes no grade but that of the values computed from it: the hidden tests follow those
# values through the kernel's history (grader/integrity.py) and fail exactly the gradients derived from them.
# A cell whose only reasons are these is flagged for the instructor, and holds nothing.
AUTOGRAD_ATTRS = frozenset(
    """
    backward grad requires_grad requires_grad_ retain_grad retains_grad grad_fn autograd func functorch vjp jvp
    jacobian hessian jacrev jacfwd
    """.split()
)
AUTOGRAD_MODULES = ("torch.autograd", "torch.func", "functorch")
# frames, code objects, generators and tracebacks lead to every namespace of the process
INTROSPECTION_PREFIXES = ("f_", "gi_", "cr_", "ag_", "tb_", "co_", "func_", "im_")
# registering anything (hooks on tensors, modules, the import system) acts on code that runs later
HOOK_PREFIX = "register_"
# a standard-library module reached as an attribute (`torch.os`, `np.sys`): files, processes, introspection.
# These names are computation (or a tensor method of the same name, like `.select`, `.trace`, `.copy`).
COMPUTATION_MODULES = frozenset(
    """
    math cmath random numbers statistics fractions decimal string array bisect heapq colorsys copy select trace
    signal time enum keyword itertools functools graphlib
    """.split()
)
STDLIB_ATTRS = frozenset(sys.stdlib_module_names) - COMPUTATION_MODULES - {"__future__"}

# names no answer may use, with the reason (every other builtin is ordinary Python)
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
}

# the kernel's history variables: _i, _ii, _iii, _i3, _ih, _oh, _dh, _3, __, ___
HISTORY = re.compile(r"^_(i{1,3}|i\d+|ih|oh|dh|\d+|_+)$")
DUNDER_TEXT = re.compile(r"__\w+__")

# names the test cells rely on: never rebound by an answer (imports of the same module are fine)
PROTECTED = {"cmp": None, "grader": None, "torch": "torch", "F": "torch.nn.functional", "math": "math"}
ALLOWED_IMPORTS = {"torch", "torch.nn", "torch.nn.functional", "math"}
DENIED_KEYWORDS = {"requires_grad", "retain_graph", "create_graph", "grad_outputs"}

# statements and expressions that can change a grade whatever they compute, each with its reason
CONSTRUCTS = {
    ast.ClassDef: "defines a class (a class can redefine what operators and comparisons do)",
    ast.AsyncFunctionDef: "defines a coroutine (`async def`: it runs outside the cell's order)",
    ast.AsyncFor: "uses `async for`",
    ast.AsyncWith: "uses `async with`",
    ast.Await: "uses `await` (it runs code outside the cell's order)",
}

# IPython magics an answer may use: the code they time is checked like the cell's own; the rest only read
HARMLESS_MAGICS = {"matplotlib", "who", "whos", "who_ls", "pinfo", "pinfo2"}


@dataclass(frozen=True)
class Allowances:
    """What one notebook's own visible code adds to the language (computed by ``allowances``)."""

    chains: frozenset[str] = frozenset()  # full ``grader.x.y`` chains the visible code uses
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


def denied_attr(attr: str) -> str | None:
    """Why no answer may use the attribute ``attr`` (its name alone says it), or None."""
    if attr.startswith("__"):
        return f"uses the dunder attribute `.{attr}`"
    if attr.startswith("_"):
        return f"uses the private attribute `.{attr}`"
    if attr in DENIED_ATTRS:
        return DENIED_ATTRS[attr]
    if attr.startswith(INTROSPECTION_PREFIXES):
        return f"reads the interpreter's frames or code (`.{attr}`)"
    if attr.startswith(HOOK_PREFIX):
        return f"registers a hook (`.{attr}`): code that would run inside the checks"
    if attr in STDLIB_ATTRS:
        return f"reaches the standard library's `{attr}` module through an attribute (`.{attr}`)"
    return None


def _format_fields(text: str) -> list[str]:
    """The attribute names a format string reads (``'{0.shape}'`` reads ``shape``); [] if it is no format."""
    try:
        fields = [f for _, f, spec, _ in string.Formatter().parse(text) for f in (f, spec) if f]
    except ValueError:
        return []
    return [a for f in fields for a in re.findall(r"\.(\w+)", f)]


class _Checker(ast.NodeVisitor):
    def __init__(self, allow: Allowances, magics: bool = False, lines: list[str] | None = None) -> None:
        self.allow = allow
        self.magics = magics  # the cell had magics or `!` lines: IPython turned them into get_ipython() calls
        self.lines = lines or []  # the cell's text, to quote the line a reason is about
        self.reasons: list[str] = []
        self.holds = False  # a reason that could change the checking code, not only the values it computes
        self.seen: set[str] = set()
        self.bound: set[str] = set()
        self.templates: set[str] = set()  # names bound to a string literal (a format template), in code order
        self.ok_names: set[int] = set()  # ids of Name nodes already judged (cmp calls, grader chains)

    def flag(self, why: str, node: ast.AST | None = None, holds: bool = True) -> None:
        """Record ``why``, once, with the first line it is about: "line 3 (`x = getattr(...)`): reads ...".

        ``holds``: it could change the checking code (False: it only reads autograd, see AUTOGRAD_ATTRS)."""
        self.holds |= holds
        if why in self.seen:
            return
        self.seen.add(why)
        lineno = getattr(node, "lineno", None)
        if lineno and 0 < lineno <= len(self.lines):
            text = self.lines[lineno - 1].strip()
            text = text if len(text) <= 60 else text[:57] + "..."
            why = f"line {lineno} (`{text}`): {why}"
        self.reasons.append(why)

    def generic_visit(self, node: ast.AST) -> None:
        for cls, why in CONSTRUCTS.items():
            if isinstance(node, cls):
                self.flag(why, node)
                break
        super().generic_visit(node)

    # -- names ------------------------------------------------------------------------------
    def visit_Name(self, node: ast.Name) -> None:
        name = node.id
        if id(node) in self.ok_names:
            return
        if name.startswith("__"):
            self.flag(f"uses the dunder name `{name}`", node)
        elif HISTORY.match(name):
            self.flag(f"reads the kernel's history (`{name}`: the test cells' source and outputs)", node)
        elif isinstance(node.ctx, (ast.Store, ast.Del)):
            self._binds(name, node=node)
        elif name in DENIED_NAMES:
            self.flag(DENIED_NAMES[name], node)
        elif name == "cmp":
            self.flag("uses the visible check `cmp` other than by calling it", node)

    def _binds(self, name: str, module: str | None = None, node: ast.AST | None = None) -> None:
        if name.startswith("__"):
            self.flag(f"binds the dunder name `{name}`", node)
        elif name in DENIED_NAMES:
            self.flag(f"rebinds `{name}`: {DENIED_NAMES[name]}", node)
        elif name in self.allow.protected and (module is None or PROTECTED.get(name) != module):
            self.flag(f"rebinds `{name}`, which the tests use", node)
        self.bound.add(name)

    def visit_arg(self, node: ast.arg) -> None:
        if node.arg.startswith("__"):
            self.flag(f"binds the dunder name `{node.arg}`", node)
        self.bound.add(node.arg)
        self.generic_visit(node)

    # -- attributes -------------------------------------------------------------------------
    def visit_Attribute(self, node: ast.Attribute) -> None:
        attr = node.attr
        chain = _chain(node)
        root = chain.split(".", 1)[0] if chain else None
        if root == "grader" and chain in self.allow.chains and isinstance(node.ctx, ast.Load):
            return  # a chain the notebook's own visible code uses, e.g. grader.training.progress
        if root == "grader" and isinstance(node.ctx, ast.Load):
            self.flag(f"uses the grader package (`{chain}`: the notebook's own code does not)", node)
            return
        if isinstance(node.ctx, (ast.Store, ast.Del)):
            if attr == "data" and isinstance(node.value, ast.Name) and node.value.id not in self.allow.protected:
                pass  # the lecture's `p.data += -lr * grad`
            else:
                what = "deletes" if isinstance(node.ctx, ast.Del) else "assigns"
                self.flag(f"{what} an attribute (`{chain or '...' + '.' + attr}`): patches an object or module", node)
        constant = isinstance(node.value, ast.Constant) or (
            isinstance(node.value, ast.Name) and node.value.id in self.templates  # `msg = "..."`, then msg.format
        )
        if attr in ("format", "format_map") and not constant:
            self.flag(f"formats with a format string made at run time (`.{attr}` can read attributes)", node)
        why = denied_attr(attr)
        if why:
            self.flag(why, node, holds=attr not in AUTOGRAD_ATTRS or not isinstance(node.ctx, ast.Load))
        self.visit(node.value)

    # -- calls ------------------------------------------------------------------------------
    def visit_Call(self, node: ast.Call) -> None:
        magic = ipysource.magic_call(node) if self.magics else None
        if magic is not None:
            self._magic(*magic, node=node)
            return
        if isinstance(node.func, ast.Name) and node.func.id == "cmp":
            self.ok_names.add(id(node.func))
        if isinstance(node.func, ast.Name) and node.func.id == "type" and "type" not in self.bound:
            if len(node.args) != 1 or node.keywords:
                self.flag("calls `type` with more than one argument (makes a class)", node)
        for kw in node.keywords:
            if kw.arg in DENIED_KEYWORDS:
                self.flag(f"passes `{kw.arg}=`, which turns on autograd", node, holds=False)
            elif kw.arg is None:
                self.flag("passes keyword arguments from a dict (`**`): their names are not checked", node)
        self.generic_visit(node)

    def _magic(self, method: str, args: list[str], node: ast.AST) -> None:
        timed = ipysource.timed_code(method, args)
        if timed is not None:
            self._inner(timed, node)
            return
        if method == "run_line_magic" and len(args) == 2 and args[0] in HARMLESS_MAGICS:
            if args[0] == "matplotlib" and re.fullmatch(r"\s*\w*\s*", args[1]):
                return  # %matplotlib inline
            if args[0].startswith("pinfo"):  # `x?`: help on an expression, checked like the expression
                self._inner(args[1], node)
                return
            if args[0] != "matplotlib" and not args[1].strip():
                return  # %who, %whos: the names the notebook defined
        if method in ("run_line_magic", "run_cell_magic") and args:
            self.flag(
                f"uses the IPython magic `%{args[0]}` (an answer may use %time, %timeit, %matplotlib, %who and ?)",
                node,
            )
        elif method in ("system", "getoutput"):
            self.flag("runs a shell command (`!`)", node)
        else:
            self.flag(f"talks to the kernel (`get_ipython().{method}`)", node)

    def _inner(self, code: str, node: ast.AST) -> None:
        """The code a magic runs, checked like the cell's own."""
        inner = judge_source(code, self.allow)
        for why in inner.reasons:
            self.flag(why, node, holds=inner.holds)

    # -- statements -------------------------------------------------------------------------
    def visit_Assign(self, node: ast.Assign) -> None:
        # a name bound to a string literal is a template whose fields visit_Constant checks; rebound otherwise
        for target in node.targets:
            if isinstance(target, ast.Name):
                literal = isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
                (self.templates.add if literal else self.templates.discard)(target.id)
        self.generic_visit(node)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._binds(node.name, node=node)
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for a in node.names:
            if a.name not in ALLOWED_IMPORTS:
                local = a.name.startswith(AUTOGRAD_MODULES)  # `import torch.autograd`: autograd, nothing else
                self.flag(
                    f"imports {a.name} (answers import only torch, torch.nn.functional and math)", node, not local
                )
            elif a.asname:
                self._binds(a.asname, a.name, node)
            else:
                self._binds(a.name.split(".")[0], a.name.split(".")[0], node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        if node.level or module not in ALLOWED_IMPORTS:
            where = "." * node.level + module
            local = not node.level and module.startswith(AUTOGRAD_MODULES)
            self.flag(f"imports from {where} (answers import only torch, torch.nn.functional, math)", node, not local)
            return
        for a in node.names:
            why = "imports everything (`import *`)" if a.name == "*" else denied_attr(a.name)
            if why:
                self.flag(f"imports {a.name} from {module}: {why}", node, a.name not in AUTOGRAD_ATTRS)
            else:
                self._binds(a.asname or a.name, f"{module}.{a.name}", node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if not isinstance(node.value, str):
            return
        if DUNDER_TEXT.search(node.value):
            self.flag(f"a string names a dunder ({DUNDER_TEXT.search(node.value).group()!r})", node)
            return
        for attr in _format_fields(node.value):
            why = denied_attr(attr)
            if why:
                self.flag(f"a format string reads an attribute (`{{0.{attr}}}`): {why}", node)


@dataclass(frozen=True)
class Judgement:
    reasons: list[str]  # why the cell is outside the answer language, each with its line; [] if inside
    holds: bool  # some reason could change the checking code (else it only reads autograd)


def judge_source(source: str, allow: Allowances = DEFAULT) -> Judgement:
    """``source`` (one cell) against the answer language, as the kernel would run it."""
    code = ipysource.transform(source)
    tree = ipysource.compile_tree(code)
    if tree is None:
        return Judgement([], False)  # it does not compile: nothing of it runs
    lines = source.splitlines()
    lines = lines if len(lines) == len(code.splitlines()) else code.splitlines()
    checker = _Checker(allow, magics="get_ipython" in code and "get_ipython" not in source, lines=lines)
    checker.visit(tree)
    return Judgement(checker.reasons, checker.holds and bool(checker.reasons))


def check_source(source: str, allow: Allowances = DEFAULT) -> list[str]:
    """Why ``source`` (one cell) is outside the answer language; empty if it is inside (or runs nothing)."""
    return judge_source(source, allow).reasons


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
    """What the source notebook's own visible code adds: its ``grader.*`` chains, the names its locked cells
    import (never rebound), and its locked cells' text (instructor code)."""
    chains, protected, trusted = set(), set(PROTECTED), set()
    for cell in source_nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        text = visible(_source(cell))
        meta = nbgrader_meta(cell)
        if meta.get("locked") and not meta.get("solution"):
            trusted.add(_source(cell).strip())
            trusted.add(text.strip())
        tree = ipysource.parse(text)
        if tree is None:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and denied_attr(node.attr) is None:
                chain = _chain(node)
                if chain and chain.startswith("grader.") and "._" not in chain:
                    chains.add(chain)
            elif isinstance(node, (ast.Import, ast.ImportFrom)) and meta.get("locked"):
                protected.update((a.asname or a.name).split(".")[0] for a in node.names if a.name != "*")
    return Allowances(frozenset(chains), frozenset(protected), frozenset(trusted - {""}))


@dataclass
class CellFlag:
    index: int  # the cell's position in the notebook
    label: str  # its grade id, or "cell <id>" (a cell of the source without nbgrader metadata), or "added cell"
    reasons: list[str] = field(default_factory=list)
    grade_id: str | None = None
    holds: bool = True  # it could change the checking code: the graded cells after it are held


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
        judged = judge_source(text, allow)
        if judged.reasons:
            flags.append(CellFlag(index, label, judged.reasons, gid, judged.holds))
    return flags
