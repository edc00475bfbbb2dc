"""``nbgrader export``'s grades.csv, written by a real CSV writer: a student id cannot break the file.

nbgrader's ``CsvExportPlugin`` joins the fields with commas as they are: an id (or a name) with a comma, a
quote or a newline breaks the file or forges a row (another student with full marks), and one that starts with
``=`` is a formula to a spreadsheet. ``SafeCsvExport`` writes the same columns and rows with ``csv.writer``
(quoted where needed), and a text field that a spreadsheet would read as a formula (``=``, ``+``, ``-``, ``@``,
a tab or a carriage return first) gets a leading ``'`` (OWASP's advice for CSV injection). Numbers are written
as nbgrader writes them.

The course's ``nbgrader_config.py`` makes it the exporter of plain ``nbgrader export``; the class command and
``python -m grader gather`` name it too (``PLUGIN``).
"""

from __future__ import annotations

import csv

from nbgrader.api import Gradebook, MissingEntry
from nbgrader.plugins import CsvExportPlugin

PLUGIN = "grader.instructor.csvexport.SafeCsvExport"
COLUMNS = [
    "assignment",
    "duedate",
    "timestamp",
    "student_id",
    "last_name",
    "first_name",
    "email",
    "raw_score",
    "late_submission_penalty",
    "score",
    "max_score",
]
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def cell(value) -> str:
    """One field as nbgrader writes it (None as empty), a formula-looking text neutralised."""
    if value is None:
        return ""
    if isinstance(value, str):
        return "'" + value if value.startswith(FORMULA_START) else value
    return str(value)


class SafeCsvExport(CsvExportPlugin):
    """nbgrader's CSV export, with a real CSV writer (see the module's text)."""

    def export(self, gradebook: Gradebook) -> None:
        dest = self.to or "grades.csv"
        students = {str(s) for s in self.student}
        assignments = {str(a) for a in self.assignment}
        self.log.info("Exporting grades to %s", dest)
        with open(dest, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(COLUMNS)
            for assignment in gradebook.assignments:
                if assignments and assignment.name not in assignments:
                    continue
                for student in gradebook.students:
                    if students and student.id not in students:
                        continue
                    row = {
                        "assignment": assignment.name,
                        "duedate": assignment.duedate,
                        "student_id": student.id,
                        "last_name": student.last_name,
                        "first_name": student.first_name,
                        "email": student.email,
                        "max_score": assignment.max_score,
                    }
                    try:
                        submission = gradebook.find_submission(assignment.name, student.id)
                    except MissingEntry:
                        row.update(timestamp="", raw_score=0.0, late_submission_penalty=0.0, score=0.0)
                    else:
                        penalty = submission.late_submission_penalty
                        row.update(
                            timestamp=submission.timestamp,
                            raw_score=submission.score,
                            late_submission_penalty=penalty,
                            score=max(0.0, submission.score - penalty),
                        )
                    writer.writerow([cell(row[k]) for k in COLUMNS])
