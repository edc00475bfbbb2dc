"""Run a source notebook's code in this process: the setup, the forward pass and the solutions.

The tests take the lecture's answer from source/ rather than keeping a copy of it, and make
mistakes by applying source/demo_class.toml's edits to it.
"""

import itertools
import linecache
from pathlib import Path

import nbformat

from grader import rerun
from grader.cells import without_solution_markers
from grader.instructor import course

SOURCE = Path(course.REPO) / "source" / course.ASSIGNMENT
RELEASE = Path(course.REPO) / "release" / course.ASSIGNMENT


def compile_cell(source: str, name: str):
    """Compile a cell as IPython does: its text kept in ``linecache``, so ``inspect.getsource`` finds a function
    defined in it (the grader reads a crashing ``manual_backward`` line by line from its source)."""
    filename = f"<cell {name} {next(_cell_numbers)}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    return compile(source, filename, "exec")


_cell_numbers = itertools.count(1)


def run_cells(notebook: str = "01_atomic_backprop", edits=(), base: str = "solution") -> dict:
    """Execute every code cell but the test cells and the summary; return the namespace.

    ``base`` is a demo student's: "solution" (source/, the solutions in) or "release" (the stubs).

    ``ns["__cells__"]`` holds the sources that ran, in order, like the kernel's input history. A cell
    that raises stops there, as in the kernel, and its error is recorded as the kernel's hook would
    (``grader.rerun.record_crash``); the next cells still run.
    """
    nb = nbformat.read((SOURCE if base == "solution" else RELEASE) / f"{notebook}.ipynb", as_version=4)
    for edit in edits:
        if edit["notebook"] == notebook:
            course.apply_edit(nb, edit, nbformat.read(SOURCE / f"{notebook}.ipynb", as_version=4))
    ns: dict = {"__name__": "__main__"}
    cells = []
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type != "code" or meta.get("grade") or meta.get("grade_id") == "summary":
            continue
        source = without_solution_markers(cell.source)
        cells.append(source)
        try:
            exec(compile_cell(source, meta.get("grade_id", "cell")), ns)
        except Exception as exc:  # noqa: BLE001 - a student's cell that raises
            rerun.record_crash(len(cells) - 1, exc)
    ns["__cells__"] = cells
    return ns


def student(student_id: str) -> course.DemoStudent:
    return next(s for s in course.demo_class() if s.id == student_id)
