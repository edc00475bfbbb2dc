"""The canary: before anyone is graded, can this course be graded here at all?

The instructor's source notebooks (the solutions) are graded first, by the same path as a student's
(prechecks, a scratch course, the sandbox, the zygote, nbgrader). A course that cannot be graded here
(the names data set not readable inside the sandbox, a kernel that cannot import the course's package,
a broken environment) would score every student 0; if the solutions do not get full marks, no student
is graded and the message names the first cell that failed and its error. ``--no-canary`` skips it.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable

import nbformat

from ..cells import grade_id
from .gradebook import scores
from .options import GradingError, Options
from .scratch import Scratch
from .submissions import Student

CANARY = "canary-instructor-solutions"  # its scratch id; it never reaches the real gradebook or the ledger


def canary(opts: Options, work, grade: Callable) -> dict:
    """Grade the solutions with ``grade(student) -> Outcome`` (``run.grade_one`` on this run's template).

    Returns ``{"score", "max_score", "seconds"}``; raises GradingError with the first cell that failed and
    its error when the solutions do not get full marks."""
    solutions = Student(CANARY, files={p.stem: p for p in sorted(opts.source.glob("*.ipynb"))})
    sc = Scratch(work, solutions.key, opts.assignment)
    try:
        outcome = grade(solutions)
        cells = []
        if outcome.graded and sc.gradebook.is_file():
            found = scores(f"sqlite:///{sc.gradebook}", opts.assignment, [solutions.key]).get(solutions.key, [])
            # the autograder's cells (code); a manually graded answer (markdown) waits for a person
            cells = [c for c in found if c.autograded]
        score, maximum = sum(c.auto_score or 0.0 for c in cells), sum(c.max_score for c in cells)
        short = [f"{c.notebook}/{c.cell}" for c in cells if (c.auto_score or 0.0) < c.max_score]
        if not outcome.graded or not cells or short:
            got = f"{score:g} of {maximum:g} autograded points" if cells else "no score"
            why = outcome.reason if not outcome.graded else _first_error(sc.autograded, short)
            raise GradingError(
                f"canary: the instructor's solution notebooks ({opts.source}) do not get full marks here ({got}), "
                f"so no student was graded: {why}. Most often the names data set is not readable inside the sandbox "
                f"(set BACKPROP_NINJA_NAMES to a readable copy, or put data/names.txt in the course) or the kernel "
                f"cannot import the course's package. --no-canary skips this check (for a course without solutions)."
            )
        return {"score": score, "max_score": maximum, "seconds": round(outcome.seconds, 1)}
    finally:
        sc.remove()
        shutil.rmtree(sc.checked, ignore_errors=True)


def _first_error(autograded, short: list[str]) -> str:
    """The first cell of the autograded notebooks with an error (the cause), else the cells short of points."""
    for path in sorted(autograded.glob("*.ipynb")):
        for index, cell in enumerate(nbformat.read(path, as_version=4).cells):
            for o in cell.get("outputs", []):
                if o.get("output_type") == "error":
                    where = grade_id(cell) or f"cell {index + 1}"
                    first = (o.get("evalue") or "").strip().splitlines()[:1]
                    return f"{path.stem}/{where} raised {o.get('ename', 'an error')}: {' '.join(first)}"[:1000]
    return "short of points in " + ", ".join(short[:5]) + (", ..." if len(short) > 5 else "")
