"""The canary: before anyone is graded, can this course be graded here at all?

The instructor's source notebooks (the solutions) are graded first, by the same path as a student's
(prechecks, a scratch course, the sandbox, the zygote, nbgrader). A course that cannot be graded here
(the names data set not readable inside the sandbox, a kernel that cannot import the course's package,
a broken environment) would score every student 0; if the solutions do not get full marks, no student
is graded and the message names the first cell that failed, its error, and the likely cause read from that
error. ``--no-canary`` skips it.

It judges only what an autograder can score: the test cells (``gradebook.autograded``, nbgrader's own rule).
A cell nbgrader leaves to a person (a written answer, a code answer with points, a task) gets no points from
any autograder, so it never counts against the canary; it is listed as graded by hand.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable

import nbformat

from ..cells import grade_id
from .gradebook import CellScore, scores
from .options import GradingError, Options
from .scratch import Scratch
from .submissions import Student

CANARY = "canary-instructor-solutions"  # its scratch id; it never reaches the real gradebook or the ledger

DATA_SET = (
    "The names data set is not readable inside the sandbox: set BACKPROP_NINJA_NAMES to a readable copy, "
    "or put data/names.txt in the course."
)
IMPORT = (
    "The kernel cannot import what the notebooks import: the Python the command runs in (its kernel's) must "
    "have it installed."
)
STDERR = "nbgrader scores a test cell that writes to stderr (a warning) 0: silence what writes there."
HELD = "The course's nbgrader preprocessors (nbgrader_config.py) hold the solutions' cells for a person."
OTHER = "The solutions fail that cell on this machine: fix the solution or the test, or give the cell what it needs."


def canary(opts: Options, work, grade: Callable) -> dict:
    """Grade the solutions with ``grade(student) -> Outcome`` (``run.grade_one`` on this run's template).

    Returns ``{"score", "max_score", "seconds", "by_hand"}`` (``by_hand``: the cells left to a person, not
    judged); raises GradingError with the first cell that failed, its error and its likely cause when the
    solutions do not get full marks on the autograded cells."""
    solutions = Student(CANARY, files={p.stem: p for p in sorted(opts.source.glob("*.ipynb"))})
    sc = Scratch(work, solutions.key, opts.assignment)
    try:
        outcome = grade(solutions)
        found: list[CellScore] = []
        if outcome.graded and sc.gradebook.is_file():
            found = scores(f"sqlite:///{sc.gradebook}", opts.assignment, [solutions.key]).get(solutions.key, [])
        cells = [c for c in found if c.autograded]  # what an autograder can score
        by_hand = [f"{c.notebook}/{c.cell}" for c in found if not c.autograded]
        score, maximum = sum(c.auto_score or 0.0 for c in cells), sum(c.max_score for c in cells)
        short = [c for c in cells if (c.auto_score or 0.0) < c.max_score]
        if not outcome.graded or not found or short:
            got = f"{score:g} of {maximum:g} autograded points" if found else "no score"
            if by_hand:
                got += f"; graded by hand, not judged: {names(by_hand)}"
            if not outcome.graded:
                why, cause = outcome.reason, likely_cause(outcome.reason)
            elif short:
                why, cause = first_failure(sc.autograded, short)
            else:
                why, cause = "nbgrader stored no graded cell for them", OTHER
            raise GradingError(
                f"canary: the instructor's solution notebooks ({opts.source}) do not get full marks here ({got}), "
                f"so no student was graded: {why}. {cause} --no-canary skips this check (for a course without "
                f"solutions)."
            )
        return {"score": score, "max_score": maximum, "seconds": round(outcome.seconds, 1), "by_hand": by_hand}
    finally:
        sc.remove()
        shutil.rmtree(sc.checked, ignore_errors=True)


def by_hand(checked: dict) -> str:
    """The canary's line's tail: the cells it did not judge, left to a person ("" when none)."""
    cells = checked.get("by_hand") or []
    return f"; graded by hand, not judged: {names(cells)}" if cells else ""


def names(cells: list[str], most: int = 5) -> str:
    return ", ".join(cells[:most]) + (f", ... ({len(cells)} in all)" if len(cells) > most else "")


def likely_cause(error: str) -> str:
    """What most likely made a cell fail, read from its error (``Name: message``, or a worker's reason)."""
    if "NamesDataError" in error or "names.txt" in error or "BACKPROP_NINJA_NAMES" in error:
        return DATA_SET
    if "ModuleNotFoundError" in error or "ImportError" in error:
        return IMPORT
    return OTHER


def first_failure(autograded, short: list[CellScore]) -> tuple[str, str]:
    """The first cell with an error in the notebooks that lost points (the cause: an import cell, say, before the
    test cells it breaks) and its likely cause; else why the first cell short of points lost them."""
    notebooks = {c.notebook for c in short}
    read = {p.stem: nbformat.read(p, as_version=4) for p in sorted(autograded.glob("*.ipynb")) if p.stem in notebooks}
    for name, nb in read.items():
        for index, cell in enumerate(nb.cells):
            for o in cell.get("outputs", []):
                if o.get("output_type") == "error":
                    where = grade_id(cell) or f"cell {index + 1}"
                    first = " ".join((o.get("evalue") or "").strip().splitlines()[:1])
                    error = o.get("ename", "an error") + (f": {first}" if first else "")
                    return f"{name}/{where} raised {error}"[:1000], likely_cause(error)
    lost = "short of points in " + names([f"{c.notebook}/{c.cell}" for c in short])
    for c in short:
        if c.needs_manual_grade:
            return f"{lost} ({c.notebook}/{c.cell} is held for manual grading: its comment says why)"[:1000], HELD
        cell = next((x for x in read.get(c.notebook, nbformat.v4.new_notebook()).cells if grade_id(x) == c.cell), None)
        stderr = [
            o for o in (cell or {}).get("outputs", []) if o.get("output_type") == "stream" and o.get("name") == "stderr"
        ]
        if stderr:
            first = "".join(stderr[0].get("text", "")).strip().splitlines()[:1]
            return f"{lost} ({c.notebook}/{c.cell} wrote to stderr: {' '.join(first)})"[:1000], STDERR
    return lost, OTHER
