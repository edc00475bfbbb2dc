"""An nbgrader autograde step: hold for review what a cell outside the answer language could have changed.

``HoldForReview`` runs right after nbgrader's ``SaveAutoGrades`` (the course's ``nbgrader_config.py``
puts it there, so plain ``nbgrader autograde`` and ``python -m grader autograde`` both run it). It checks
the executed notebook with ``grader.answers.check_notebook`` against the assignment's source notebook;
when a cell the student could edit or add is outside the answer language in a way that could change the
checking code, every graded cell that runs after the first such cell (patching torch or the grader changes
everything later) is held:

- its grade gets ``auto_score = None`` and ``needs_manual_grade = True`` (the formgrader lists it as
  needing a manual grade; nbgrader counts it 0 until an instructor grades it), instead of the credit;
- the reasons, the held cells and what the autograder would have given them go into the comment of the
  flagged answer cell (for an added cell, of the answer cell before it): the formgrader shows it in that
  cell's comment box, the feedback under the cell;
- the submitted notebook is ``flagged`` (the formgrader's flag).

Cells before the first such cell keep their automatic grade. A cell that only reads autograd (``.grad``,
``.backward()``, ``torch.autograd``) holds nothing: the hidden tests follow its values through the kernel's
history and fail exactly the gradients computed from them; the notebook is flagged and the comment says why.
A notebook inside the language is not touched at all.
"""

from __future__ import annotations

from nbgrader.api import Gradebook, MissingEntry
from nbgrader.preprocessors import NbGraderPreprocessor

from . import answers
from .cells import nbgrader_meta
from .nbgrader_cells import source_notebook

HELD = "Held for manual grading"
FLAGGED = "Flagged for review"


def held_cells(nb, flags: list[answers.CellFlag]) -> list[str]:
    """The grade ids of the graded cells that run after the first flagged cell that could change the checking
    code (a cell that only reads autograd holds nothing: the hidden tests fail the gradients derived from it)."""
    holding = [f.index for f in flags if f.holds]
    if not holding:
        return []
    first = min(holding)
    return [
        nbgrader_meta(c)["grade_id"]
        for i, c in enumerate(nb.cells)
        if i > first and nbgrader_meta(c).get("grade") and nbgrader_meta(c).get("grade_id")
    ]


def comment_cells(nb, flags: list[answers.CellFlag]) -> dict[str, list[answers.CellFlag]]:
    """The answer cell whose comment tells of each flagged cell: its own, else the answer cell before it
    (else the first answer cell of the notebook)."""
    solutions = [(i, nbgrader_meta(c)["grade_id"]) for i, c in enumerate(nb.cells) if nbgrader_meta(c).get("solution")]
    out: dict[str, list[answers.CellFlag]] = {}
    for f in flags:
        if f.grade_id and any(gid == f.grade_id for _, gid in solutions):
            target = f.grade_id
        else:
            before = [gid for i, gid in solutions if i < f.index]
            target = before[-1] if before else (solutions[0][1] if solutions else None)
        if target:
            out.setdefault(target, []).append(f)
    return out


class HoldForReview(NbGraderPreprocessor):
    """Hold the grades a cell outside the answer language could have influenced (see the module's text)."""

    def preprocess(self, nb, resources):
        info = resources["nbgrader"]
        notebook, assignment, student = info["notebook"], info["assignment"], info["student"]
        source_nb = source_notebook(self.config, assignment, notebook)
        if source_nb is None:
            # the locked cells of the graded notebook are the instructor's (OverwriteCells put them back)
            self.log.warning("HoldForReview: no source notebook %s/%s; checked against itself", assignment, notebook)
            source_nb = nb
        flags = answers.check_notebook(nb, source_nb)
        if not flags:
            return nb, resources
        held = held_cells(nb, flags)
        with Gradebook(info["db_url"]) as gb:
            would = []
            for gid in held:
                grade = gb.find_grade(gid, notebook, assignment, student)
                would.append(f"{gid} {grade.auto_score if grade.auto_score is not None else '-'}/{grade.max_score:g}")
                grade.auto_score = None
                grade.needs_manual_grade = True
            for target, cell_flags in comment_cells(nb, flags).items():
                try:
                    comment = gb.find_comment(target, notebook, assignment, student)
                except MissingEntry:
                    continue
                lines = [
                    (f"{HELD}: " if f.holds else f"{FLAGGED}: ")
                    + f"{f.label} is outside the answer language: "
                    + "; ".join(f.reasons)
                    + ("." if f.holds else ". The gradients computed from it fail their hidden tests; nothing is held.")
                    for f in cell_flags
                ]
                if held:
                    lines.append(
                        f"{len(held)} graded cell(s) after it were not auto-credited "
                        f"(the autograder gave {', '.join(would)}); an instructor grades them."
                    )
                comment.auto_comment = "\n".join(lines)
            gb.find_submission_notebook(notebook, assignment, student).flagged = True
            gb.db.commit()
        for f in flags:
            self.log.warning("%s/%s: %s: %s", student, notebook, f.label, "; ".join(f.reasons))
        self.log.warning("%s/%s: held for manual grading: %s", student, notebook, ", ".join(held) or "nothing")
        return nb, resources
