"""Grades into the LMS: fill the gradebook CSV that Canvas or Moodle exports, for it to import back.

An nbgrader export plugin, so that ``nbgrader export`` uses it as it is::

    nbgrader export --exporter=grader.instructor.lms.LmsExportPlugin \\
        --LmsExportPlugin.roster=canvas-gradebook.csv --LmsExportPlugin.lms=canvas \\
        --LmsExportPlugin.column="Backprop Ninja (4321)" --to canvas-upload.csv

Every row and column of the roster is kept exactly as the LMS wrote it (Canvas's "Points Possible" row
too); only the assignment's column is filled: each student's nbgrader score (after the late penalty, as
``nbgrader export`` computes it), found by the student's id or login. A roster student without a
submission is left empty or given 0 (``missing``); a graded student the roster does not have is reported
and left out (the LMS could not import it).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from nbgrader.api import Gradebook, MissingEntry
from nbgrader.plugins.export import ExportPlugin
from traitlets import Enum, Unicode

# Where each LMS keeps the student's id and login in its gradebook export.
LAYOUTS = {
    "canvas": {"id": ("SIS User ID", "ID"), "login": ("SIS Login ID",), "first_data_row": "Points Possible"},
    "moodle": {"id": ("ID number",), "login": ("Username", "Email address"), "first_data_row": None},
}
FIXED = {  # the roster columns that are never an assignment
    "canvas": {"Student", "ID", "SIS User ID", "SIS Login ID", "Section", "Integration ID"},
    "moodle": {"First name", "Last name", "ID number", "Institution", "Department", "Email address", "Username"},
}


class LmsError(ValueError):
    """The roster cannot be filled as asked: the message says why."""


class LmsExportPlugin(ExportPlugin):
    """Fill the assignment's column of a Canvas or Moodle gradebook CSV with nbgrader's scores."""

    roster = Unicode("", help="the gradebook CSV exported from the LMS").tag(config=True)
    lms = Enum(list(LAYOUTS), default_value="canvas", help="which LMS wrote the roster").tag(config=True)
    column = Unicode(
        "", help="the assignment's column in the roster (default: the one whose title contains the assignment's name)"
    ).tag(config=True)
    match = Enum(["id", "login"], default_value="login", help="match nbgrader's student id to the LMS's").tag(
        config=True
    )
    missing = Enum(["empty", "zero"], default_value="empty", help="a roster student with no submission").tag(
        config=True
    )

    def export(self, gradebook: Gradebook) -> None:
        if not self.roster:
            raise LmsError("--LmsExportPlugin.roster: the gradebook CSV exported from the LMS is required")
        assignments = [str(a) for a in self.assignment] or [a.name for a in gradebook.assignments]
        if len(assignments) != 1:
            raise LmsError(f"one assignment per LMS column: pass --assignment (the gradebook has {assignments})")
        scores = nbgrader_scores(gradebook, assignments[0])
        text = Path(self.roster).read_text(encoding="utf-8-sig")
        filled, unknown, column = fill(text, scores, self.lms, self.column or assignments[0], self.match, self.missing)
        dest = Path(self.to or f"{Path(self.roster).stem}-{assignments[0]}.csv")
        dest.write_text(filled, encoding="utf-8")
        self.log.info("Filled %r of %s for %d students into %s", column, self.roster, len(scores) - len(unknown), dest)
        for student in unknown:
            self.log.warning(
                "%s has a score in nbgrader but is not in the roster %s: not exported", student, self.roster
            )


def nbgrader_scores(gradebook: Gradebook, assignment: str) -> dict[str, float | None]:
    """Each student's score as ``nbgrader export`` gives it (after the late penalty); None: no submission."""
    out: dict[str, float | None] = {}
    for student in gradebook.students:
        try:
            sub = gradebook.find_submission(assignment, student.id)
        except MissingEntry:
            out[student.id] = None
            continue
        out[student.id] = max(0.0, sub.score - sub.late_submission_penalty)
    return out


def _pick(header: list[str], names: tuple[str, ...], what: str) -> int:
    for name in names:
        if name in header:
            return header.index(name)
    raise LmsError(f"the roster has no {what} column ({' or '.join(names)}); its columns: {header}")


def fill(
    text: str, scores: dict[str, float | None], lms: str, column: str, match: str, missing: str
) -> tuple[str, list[str], str]:
    """The roster ``text`` with ``column`` filled from ``scores``; the students it lacks; the column's title."""
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        raise LmsError("the roster is empty")
    header, layout = rows[0], LAYOUTS[lms]
    key = _pick(header, layout[match], f"student {match}")
    titles = [i for i, title in enumerate(header) if title == column] or [
        i for i, title in enumerate(header) if column.lower() in title.lower() and title not in FIXED[lms]
    ]
    if len(titles) != 1:
        found = [header[i] for i in titles] or "none"
        raise LmsError(f"the roster's assignment column for {column!r} is ambiguous or missing (matching: {found})")
    at = titles[0]
    seen = set()
    for row in rows[1:]:
        if len(row) <= max(at, key) or not row[key].strip():
            continue  # Canvas's "Points Possible" row, a blank line
        student = row[key].strip()
        if student not in scores and match == "login" and "@" in student:
            student = student.split("@", 1)[0]  # Moodle's email address as the login
        seen.add(student)
        score = scores.get(student)
        row[at] = f"{score:g}" if score is not None else ("0" if missing == "zero" else "")
    unknown = sorted(s for s, score in scores.items() if score is not None and s not in seen)
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue(), unknown, header[at]
