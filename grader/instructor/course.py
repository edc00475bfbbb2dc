"""Instructor tools: drive nbgrader on a course directory, make submissions, read the gradebook.

Everything goes through nbgrader's own command line and API, unchanged. A course directory is
this checkout's layout: ``nbgrader_config.py``, ``source/<assignment>/``, ``release/``,
``submitted/<student>/<assignment>/``, ``autograded/``, ``feedback/`` and ``gradebook.db``.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from ..autograde.gradebook import CellScore
from ..autograde.gradebook import scores as gradebook_scores
from ..autograde.worker import tool_env
from ..cells import SOLUTION_MARKERS, grade_id, nbgrader_meta, without_solution_markers  # noqa: F401 (SOLUTION_MARKERS: re-exported)
from ..paths import REPO

ASSIGNMENT = "backprop_ninja"


class CourseError(RuntimeError):
    """An nbgrader step failed; the message carries its output."""


def nbgrader(course: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``nbgrader ARGS`` in ``course``; raise CourseError with its log if it fails."""
    proc = subprocess.run(
        [sys.executable, "-m", "nbgrader", *args], cwd=course, env=tool_env(), capture_output=True, text=True
    )
    if check and proc.returncode != 0:
        raise CourseError(f"nbgrader {' '.join(args)} failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return proc


def notebook_names(course: Path, assignment: str = ASSIGNMENT) -> list[str]:
    return sorted(p.stem for p in (course / "source" / assignment).glob("*.ipynb"))


def new_course(path: Path, repo: Path = REPO) -> Path:
    """A fresh course directory at ``path``: this course's config and source/, nothing else."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    shutil.copy2(repo / "nbgrader_config.py", path / "nbgrader_config.py")
    shutil.copytree(repo / "source", path / "source", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    return path


def generate_release(course: Path, assignment: str = ASSIGNMENT) -> Path:
    """``nbgrader generate_assignment``: solutions and hidden tests out, checksums in."""
    nbgrader(course, "generate_assignment", assignment, "--force")
    return course / "release" / assignment


def release_differences(course: Path, repo: Path = REPO, assignment: str = ASSIGNMENT) -> list[str]:
    """The notebooks of ``repo/release`` that differ from ``course``'s fresh generation (or are missing/extra)."""
    fresh, committed = course / "release" / assignment, repo / "release" / assignment
    names = sorted({p.name for p in fresh.glob("*.ipynb")} | {p.name for p in committed.glob("*.ipynb")})
    return [
        n
        for n in names
        if not (
            (fresh / n).is_file()
            and (committed / n).is_file()
            and (fresh / n).read_bytes() == (committed / n).read_bytes()
        )
    ]


def sync_release(course: Path, repo: Path = REPO, assignment: str = ASSIGNMENT) -> list[str]:
    """Make ``repo/release`` equal ``course``'s generated release; return the notebooks that changed."""
    fresh, committed = course / "release" / assignment, repo / "release" / assignment
    changed = release_differences(course, repo, assignment)
    committed.mkdir(parents=True, exist_ok=True)
    for name in changed:
        if (fresh / name).is_file():
            shutil.copy2(fresh / name, committed / name)
        else:
            (committed / name).unlink()
    return changed


# ---------------------------------------------------------------------------------------------
# Submissions


@dataclass
class DemoStudent:
    """One entry of source/demo_class.toml (see the comments at its top)."""

    id: str
    base: str
    loses: dict[str, str] | str
    edits: list[dict] = field(default_factory=list)
    demo: bool = False
    notebooks: list[str] | None = None  # None: the notebooks the edits touch, or all of them without edits
    sandbox_only: bool = False  # hostile or batch-breaking: graded by `python -m grader autograde` only
    review: str = ""  # a reason `python -m grader autograde` must give for looking at this student
    shows: dict[str, str] = field(default_factory=dict)  # passing test cells, each with a text its feedback shows
    held: list[str] | str = field(default_factory=list)  # cells held for manual grading (score 0), or "all"
    flagged: bool = False  # outside the answer language by reading autograd only: flagged, nothing held

    def submits(self, all_notebooks: list[str]) -> list[str]:
        """The notebooks this student hands in (nbgrader scores a missing one 0 without running it)."""
        if self.notebooks is not None:
            return list(self.notebooks)
        touched = {e["notebook"] for e in self.edits}
        return [n for n in all_notebooks if n in touched] if touched else list(all_notebooks)


def demo_class(path: Path = REPO / "source" / "demo_class.toml", sandbox_only: bool = False) -> list[DemoStudent]:
    """The students of the demo class; with ``sandbox_only`` also those only the sandboxed command may grade."""
    with open(path, "rb") as f:
        data = tomllib.load(f)
    students = [
        DemoStudent(
            s["id"],
            s["base"],
            s["loses"],
            s.get("edit", []),
            s.get("demo", False),
            s.get("notebooks"),
            s.get("sandbox_only", False),
            s.get("review", ""),
            s.get("shows", {}),
            s.get("held", []),
            s.get("flagged", False),
        )
        for s in data["student"]
    ]
    return [s for s in students if sandbox_only or not s.sandbox_only]


def solutions(source_nb) -> dict[str, str]:
    """Each answer cell's text with its solution, markers removed, by grade_id."""
    return {
        grade_id(c): without_solution_markers(c.source) for c in source_nb.cells if nbgrader_meta(c).get("solution")
    }


def solved(release_nb, source_nb):
    """The release notebook with every answer cell filled in from the source notebook's solution."""
    nb = copy.deepcopy(release_nb)
    answers = solutions(source_nb)
    for cell in nb.cells:
        if grade_id(cell) in answers:
            cell.source = answers[grade_id(cell)]
    return nb


def apply_edit(nb, edit: dict, source_nb=None) -> None:
    """Apply one [[student.edit]] to ``nb`` in place; a missing cell or text is an error, not a no-op.

    ``source_nb`` (the source notebook) is needed by ``solutions_of`` edits only.
    """
    if "cell" not in edit:
        return  # a whole-notebook edit (raw), applied by make_submission
    # by grade_id; a cell without nbgrader metadata (an editable cell nbgrader does not track) by its cell id
    index = next(
        (
            i
            for i, c in enumerate(nb.cells)
            if grade_id(c) == edit["cell"] or (grade_id(c) is None and c.get("id") == edit["cell"])
        ),
        None,
    )
    if index is None:
        raise KeyError(f"no cell {edit['cell']!r} in {edit['notebook']}")
    cell = nb.cells[index]
    if edit.get("delete"):
        del nb.cells[index]
    elif "find" in edit:
        if edit["find"] not in cell.source:
            raise ValueError(f"{edit['notebook']}/{edit['cell']} does not contain {edit['find']!r}")
        cell.source = cell.source.replace(edit["find"], edit.get("replace", ""))
    elif edit.get("duplicate"):
        twin = copy.deepcopy(cell)
        if "id" in twin:
            twin.id = f"{twin.id}-copy"[:64]
        nb.cells.insert(index + 1, twin)
    elif "cell_type" in edit:
        cell.cell_type = edit["cell_type"]
        if cell.cell_type == "markdown":
            cell.pop("outputs", None)
            cell.pop("execution_count", None)
    elif "tags" in edit:
        cell.metadata["tags"] = list(edit["tags"])
    elif "prepend" in edit:
        cell.source = edit["prepend"].strip("\n") + "\n" + cell.source
    elif "append" in edit:
        cell.source = cell.source.rstrip("\n") + "\n" + edit["append"].strip("\n")
    elif "solutions_of" in edit:
        answers = solutions(source_nb)
        cell.source = "\n".join(answers[gid].rstrip("\n") for gid in edit["solutions_of"])
    else:
        raise ValueError(
            f"edit of {edit['cell']!r} has no find, append, prepend, solutions_of, duplicate, cell_type or delete"
        )


def make_submission(course: Path, student: DemoStudent, assignment: str = ASSIGNMENT, out: Path | None = None) -> Path:
    """Write ``student``'s notebooks to ``course/submitted/<id>/<assignment>/`` (or ``out``).

    ``@COURSE@`` and ``@SUBMITTED@`` in an edit's text become the course's and the submissions' folders
    (the hostile students of the demo class aim at them).
    """
    out = out or course / "submitted" / student.id / assignment
    places = {"@COURSE@": str(course.resolve()), "@SUBMITTED@": str(out.resolve().parent.parent)}
    out.mkdir(parents=True, exist_ok=True)
    for name in student.submits(notebook_names(course, assignment)):
        nb = nbformat.read(course / "release" / assignment / f"{name}.ipynb", as_version=4)
        source_nb = nbformat.read(course / "source" / assignment / f"{name}.ipynb", as_version=4)
        if student.base == "solution":
            nb = solved(nb, source_nb)
        elif student.base != "release":
            raise ValueError(f"{student.id}: base must be 'solution' or 'release', not {student.base!r}")
        raw = None
        for edit in student.edits:
            if edit["notebook"] == name:
                edit = {k: _place(v, places) for k, v in edit.items()}
                apply_edit(nb, edit, source_nb)
                raw = edit.get("raw", raw)
        if raw is not None:  # the file as the student's editor left it, e.g. not JSON at all
            (out / f"{name}.ipynb").write_text(raw)
        else:
            nbformat.write(nb, out / f"{name}.ipynb")
    return out


def _place(value, places: dict[str, str]):
    if isinstance(value, str):
        for key, path in places.items():
            value = value.replace(key, path)
    return value


def expected_lost(student: DemoStudent, cells: list[CellScore], all_notebooks: list[str]) -> set[str]:
    """The test cells ``student`` must score 0 on: its ``loses``, and every cell of a notebook it did not hand in."""
    submitted = set(student.submits(all_notebooks))
    if student.loses == "all":
        return {c.cell for c in cells}
    return (
        set(student.loses)
        | expected_held(student, cells, all_notebooks)
        | {c.cell for c in cells if c.notebook not in submitted}
    )


def expected_held(student: DemoStudent, cells: list[CellScore], all_notebooks: list[str]) -> set[str]:
    """The test cells held for manual grading (``needs_manual_grade``, 0 until graded): a cell outside the
    answer language came before them (grader/nbgrader_answers.py). ``held = "all"``: every test cell of the
    notebooks handed in."""
    if student.held == "all":
        submitted = set(student.submits(all_notebooks))
        return {c.cell for c in cells if c.notebook in submitted}
    return set(student.held)


# ---------------------------------------------------------------------------------------------
# Results


def scores(course: Path, assignment: str = ASSIGNMENT) -> dict[str, list[CellScore]]:
    """Every autograded student's score per test cell, read from the course's gradebook."""
    return gradebook_scores(f"sqlite:///{course / 'gradebook.db'}", assignment)


def feedback_text(course: Path, student: str, notebook: str, assignment: str = ASSIGNMENT) -> str:
    """The plain text of a student's feedback page (tags removed, entities decoded)."""
    from ..autograde.feedback import text

    return text((course / "feedback" / student / assignment / f"{notebook}.html").read_text(encoding="utf-8"))


def cmd_release(args) -> int:
    """Regenerate release/ from source/ with nbgrader generate_assignment."""
    with tempfile.TemporaryDirectory(prefix="backprop-ninja-release-") as tmp:
        c = new_course(Path(tmp) / "course")
        generate_release(c)
        changed = sync_release(c)
    print(f"release/{ASSIGNMENT}: " + (f"updated {', '.join(changed)}" if changed else "up to date"))
    return 0
