"""grader/instructor/csvexport.py: grades.csv by a real CSV writer. Ids with a comma, a quote, a newline or a
leading `=` cannot break the file, forge a row or run as a spreadsheet formula."""

import csv
import subprocess
import sys

import pytest
from nbgrader.api import Gradebook

from grader.instructor import course

NASTY = ["plain", "doe, jane", 'say "hi"', "two\nlines", '=HYPERLINK("x")', "+1", "-2", "@sum", "normal-id"]


@pytest.mark.slow  # nbgrader export in a subprocess
def test_nasty_ids_come_back_as_they_are_one_row_each(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", course.tool_env()["PATH"])  # the gradebook runs alembic
    root = tmp_path / "course"
    root.mkdir()
    (root / "nbgrader_config.py").write_text((course.REPO / "nbgrader_config.py").read_text())
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        gb.add_assignment("hw1")
        for sid in NASTY:
            gb.add_student(sid, first_name="=cmd|' /C calc'!A0" if sid == "plain" else None)
    subprocess.run(
        [sys.executable, "-m", "nbgrader", "export", "--to", "grades.csv"],
        cwd=root,
        check=True,
        capture_output=True,
        env=course.tool_env(),
        timeout=300,
    )
    with open(root / "grades.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    got = [r["student_id"] for r in rows]
    # each id once, in the gradebook's order; a formula-looking id gets a leading quote, nothing else changes
    assert sorted(got) == sorted("'" + s if s[0] in "=+-@" else s for s in NASTY)
    assert next(r for r in rows if r["student_id"] == "plain")["first_name"].startswith("'=")
    assert all(r["assignment"] == "hw1" and r["score"] == "0.0" for r in rows)
