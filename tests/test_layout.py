"""The package's layout keeps its promises: what imports what, no import cycle, no overlong module.

- the student side (``import grader.atomic``, what every notebook does) imports no nbgrader, and the
  class command (``grader.autograde``, every module of it) imports no torch: the grading processes
  and the sandbox's launcher stay light, and a student's kernel imports only what its notebook does;
- no import cycle among grader's modules (every import counted, also those inside functions);
- no module over ``MAX_LINES`` lines unless its docstring says why (with the words "long because").
"""

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import grader

PACKAGE = Path(grader.__file__).resolve().parent
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
AUTOGRADE = sorted(m for m in MODULES if m == "grader.autograde" or m.startswith("grader.autograde."))


def loaded_after(imports: list[str], prefixes: tuple[str, ...]) -> dict[str, list[str]]:
    """In a fresh Python, import each of ``imports`` in turn; after each, the loaded modules named by ``prefixes``."""
    code = (
        "import importlib, json, sys\n"
        f"out = {{}}\nfor name in {imports!r}:\n"
        "    importlib.import_module(name)\n"
        f"    out[name] = sorted(m for m in sys.modules if m.split('.')[0] in {prefixes!r})\n"
        "print(json.dumps(out))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    return json.loads(proc.stdout.splitlines()[-1])


def test_the_student_side_imports_no_nbgrader():
    found = loaded_after(["grader.atomic", "grader"], ("nbgrader", "nbconvert", "nbclient"))
    assert found == {"grader.atomic": [], "grader": []}


def test_the_class_command_imports_no_torch():
    assert "grader.autograde.cli" in AUTOGRADE and "grader.autograde.worker" in AUTOGRADE
    found = loaded_after(AUTOGRADE, ("torch",))
    first = next((name for name in AUTOGRADE if found[name]), None)
    assert first is None, f"importing {first} imports torch"


def imports_of(name: str) -> set[str]:
    """The grader modules ``name`` imports (at its top or inside a function)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        out.update(t for t in targets if t in MODULES and t != name)
    return out


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = "open"
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == "open":
                return stack[stack.index(m) :] + [m]
            if m not in state and (cycle := visit(m)):
                return cycle
        state[n] = "done"
        stack.pop()
        return None

    for n in sorted(graph):
        if n not in state and (cycle := visit(n)):
            return cycle
    return None


def test_the_import_graph_is_read():
    assert imports_of("grader.autograde.run") >= {"grader.autograde.precheck", "grader.autograde.scratch"}
    assert "grader.integrity" in imports_of("grader.autograde.precheck")  # `from .. import integrity`
    assert "grader.data" in imports_of("grader")  # inside __getattr__
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_among_graders_modules():
    cycle = find_cycle({name: imports_of(name) for name in MODULES})
    assert cycle is None, " -> ".join(cycle)


@pytest.mark.parametrize("name", list(MODULES))
def test_no_module_is_overlong_without_saying_why(name):
    path = MODULES[name]
    lines = len(path.read_text().splitlines())
    if lines > MAX_LINES:
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        assert re.search(r"long because", doc, re.I), f"{path.relative_to(PACKAGE.parent)}: {lines} lines"
