"""Check a submission before nbgrader sees it: repair what can be repaired, report the rest.

nbgrader handles some damage itself and chokes on other damage: a duplicated grade id makes
``autograde`` stop with a misleading "old metadata format" error and grade no later student
(nbgrader issue #1083). This module looks at every notebook of one student against the source
notebooks and returns a ``Report``:

- ``problems``: what cannot be repaired and costs points (invalid JSON, a missing notebook), each
  with a clear reason; such a notebook is left out, and nbgrader scores it 0 without running it;
- ``repairs``: what was repaired before grading (duplicated grade ids: the first cell keeps the id,
  later copies become ordinary cells; a grade or answer cell whose type was changed gets its type
  back; nbgrader metadata unknown to the assignment is dropped) or is repaired by nbgrader itself
  (a deleted test cell is put back by ``OverwriteCells.add_missing_cells``, an edited one restored);
- ``flags``: answer cells that reach for the grader, autograd, ``sys.modules``, builtins, the file
  system, the network or the test harness. Monkeypatching cannot be prevented inside a kernel; it
  can be detected and shown to the instructor, who decides.
"""

from __future__ import annotations

import ast
import functools
import json
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from .. import answers, integrity
from ..cells import grade_id, has_hidden_tests, nbgrader_meta, without_hidden_tests

# names an answer has no business touching: the grading harness and the interpreter's internals
REACHING = {
    "grader": "imports or uses the grader package",
    "nbgrader": "uses nbgrader",
    "sys": "uses sys (sys.modules can replace the checking code)",
    "builtins": "uses builtins",
    "__builtins__": "uses __builtins__",
    "importlib": "uses importlib",
    "os": "uses os (files, processes, the environment)",
    "subprocess": "starts processes",
    "shutil": "copies or deletes files",
    "socket": "opens network connections",
    "ctypes": "uses ctypes",
    "gc": "walks the garbage collector's objects",
    "inspect": "inspects the caller's frames",
    "open": "opens files",
    "globals": "rewrites globals()",
    "cmp": "redefines or wraps the visible check cmp",
    "get_ipython": "talks to the kernel (input history, hooks)",
}


@dataclass
class Report:
    student: str
    notebooks: dict[str, Path] = field(default_factory=dict)  # notebook name -> checked (repaired) file
    problems: list[str] = field(default_factory=list)
    repairs: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # notebooks not handed in (nbgrader scores them 0)


def reaches(source: str) -> list[str]:
    """What an answer cell reaches for, described (empty if nothing): autograd, the grader, internals."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    found = []
    why = integrity.forbidden(tree)
    if why:
        found.append(why.split("` ", 1)[-1] if "` " in why else why)
    for node in ast.walk(tree):
        name = None
        if isinstance(node, ast.Name):
            if node.id == "cmp" and isinstance(node.ctx, ast.Store):
                name = "cmp"
            elif node.id in REACHING and node.id != "cmp":
                name = node.id
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [a.name for a in node.names] + (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            )
            name = next((m.split(".")[0] for m in modules if m.split(".")[0] in REACHING), None)
        elif isinstance(node, (ast.FunctionDef, ast.Lambda)) and getattr(node, "name", None) == "cmp":
            name = "cmp"
        if name and REACHING[name] not in found:
            found.append(REACHING[name])
    return found


def check_notebook(path: Path, source_nb, name: str, report: Report, out: Path, language: bool = True) -> None:
    """Check (and repair into ``out``) one handed-in notebook; record everything in ``report``."""
    try:
        raw = path.read_bytes()
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        report.problems.append(f"{name}: not valid JSON ({exc}); the notebook cannot be opened, so it scores 0")
        return
    try:
        nb = nbformat.reads(json.dumps(data), as_version=4)
    except Exception as exc:  # nbformat raises several types for a JSON file that is not a notebook
        report.problems.append(f"{name}: not a Jupyter notebook ({type(exc).__name__}: {exc}); it scores 0")
        return
    if not isinstance(nb.get("cells"), list):
        report.problems.append(f"{name}: not a Jupyter notebook (no cells); it scores 0")
        return
    source_cells = {grade_id(c): c for c in source_nb.cells if grade_id(c)}
    seen: set[str] = set()
    for cell in nb.cells:
        gid = grade_id(cell)
        if not gid:
            continue
        if gid not in source_cells:
            del cell.metadata["nbgrader"]
            report.repairs.append(f"{name}: cell metadata names {gid!r}, which the assignment does not have: dropped")
            continue
        if gid in seen:
            del cell.metadata["nbgrader"]
            report.repairs.append(
                f"{name}: grade id {gid!r} appears twice: the copy became an ordinary cell "
                f"(nbgrader would stop the whole class on it)"
            )
            continue
        seen.add(gid)
        want = source_cells[gid].cell_type
        if cell.cell_type != want:
            report.repairs.append(f"{name}: cell {gid!r} was changed from {want} to {cell.cell_type}: changed back")
            cell.cell_type = want
            if want == "code":
                cell.outputs, cell.execution_count = [], None
            else:
                cell.pop("outputs", None)
                cell.pop("execution_count", None)
        meta = nbgrader_meta(cell)
        if meta.get("solution") and cell.cell_type == "code":
            for why in reaches(cell.source):
                report.flags.append(f"{name}/{gid}: {why}")
    for gid, cell in source_cells.items():
        if gid in seen:
            continue
        meta = nbgrader_meta(cell)
        if meta.get("grade") and not meta.get("solution"):
            report.repairs.append(f"{name}: test cell {gid!r} was deleted: nbgrader puts it back and grades it")
        elif meta.get("solution"):
            report.problems.append(f"{name}: answer cell {gid!r} was deleted: its tests see no answer")
    # a non-grade cell between the answers that does something suspicious is reported as well
    # (only what the source's cell of the same id does not do already: setup cells import grader themselves)
    by_id = {c.get("id"): c for c in source_nb.cells if c.get("id")}
    for cell in nb.cells:
        if cell.cell_type == "code" and not grade_id(cell):
            base = by_id.get(cell.get("id"))
            known = set(reaches(base.source)) if base is not None else set()
            label = f"cell {cell.get('id')}" if base is not None else "added cell"
            for why in reaches(cell.source):
                if why not in known:
                    report.flags.append(f"{name}/{label}: {why}")
    for f in answers.check_notebook(nb, source_nb) if language else []:  # HoldForReview holds what follows
        report.flags.append(f"{name}/{f.label}: outside the answer language: {'; '.join(f.reasons)}")
    for cell in nb.cells:  # an edited locked cell is restored by nbgrader; say so
        gid = grade_id(cell)
        if gid and nbgrader_meta(cell).get("locked") and cell.source.strip() != source_cells[gid].source.strip():
            if nbgrader_meta(cell).get("grade") and has_hidden_tests(source_cells[gid].source):
                # a released test cell never shows its hidden part; compare what the student saw
                if cell.source.strip() == without_hidden_tests(source_cells[gid].source).strip():
                    continue
            report.repairs.append(f"{name}: locked cell {gid!r} was edited: nbgrader restores it")
    out.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out / f"{name}.ipynb")
    report.notebooks[name] = out / f"{name}.ipynb"


def check(student: str, handed_in: dict[str, Path], source: Path, out: Path, problems=()) -> Report:
    """Check every notebook of ``source`` (the assignment's source folder) that ``student`` handed in."""
    report = Report(student, problems=list(problems))
    config = source.parent.parent / "nbgrader_config.py"  # the answer language: only where the course holds for it
    language = config.is_file() and "grader.nbgrader_answers.HoldForReview" in config.read_text(errors="replace")
    for src in sorted(source.glob("*.ipynb")):
        name = src.stem
        if name not in handed_in:
            report.missing.append(name)
            continue
        check_notebook(handed_in[name], _source(src, src.stat().st_mtime_ns), name, report, out, language)
    return report


@functools.lru_cache(maxsize=64)
def _source(path: Path, mtime_ns: int):
    """A source notebook, read once per class rather than once per student (only read, never changed)."""
    return nbformat.read(path, as_version=4)
