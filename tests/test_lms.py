"""The LMS export plugin (grader/instructor/lms.py) on real Canvas and Moodle gradebook layouts.

The gradebook is built with nbgrader's API (no kernel): bitdiddle on time, hacker late (nbgrader's
penalty is subtracted, as `nbgrader export` does), carol graded but missing from the roster, and nora
on the roster without a submission. tests/data/ holds the two LMS exports as they come.
"""

import csv
import io
import subprocess
import sys
from pathlib import Path

import pytest

from grader.instructor import course, lms

DATA = Path(__file__).parent / "data"


@pytest.fixture
def gradebook(tmp_path, monkeypatch):
    from nbgrader.api import Gradebook

    monkeypatch.setenv("PATH", course.tool_env()["PATH"])  # a new gradebook runs `alembic` from PATH

    url = f"sqlite:///{tmp_path / 'gradebook.db'}"
    with Gradebook(url) as gb:
        gb.add_assignment("backprop_ninja")
        gb.add_notebook("01", "backprop_ninja")
        gb.add_grade_cell("test_a", "01", "backprop_ninja", max_score=30, cell_type="code")
        gb.add_grade_cell("test_b", "01", "backprop_ninja", max_score=15, cell_type="code")
        for student, (a, b, penalty) in {"bitdiddle": (30, 10, 0), "hacker": (30, 15, 5), "carol": (12, 0, 0)}.items():
            gb.add_student(student)
            gb.add_submission("backprop_ninja", student)
            gb.find_grade("test_a", "01", "backprop_ninja", student).auto_score = a
            gb.find_grade("test_b", "01", "backprop_ninja", student).auto_score = b
            gb.find_submission_notebook("01", "backprop_ninja", student).late_submission_penalty = penalty
        gb.add_student("nora")
        gb.db.commit()
    return tmp_path, url


def rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


@pytest.mark.slow  # a new gradebook runs alembic
def test_canvas_column_is_filled_by_login_and_every_other_cell_kept(gradebook):
    from nbgrader.api import Gradebook

    with Gradebook(gradebook[1]) as gb:
        scores = lms.nbgrader_scores(gb, "backprop_ninja")
    roster = (DATA / "canvas_gradebook.csv").read_text(encoding="utf-8-sig")
    text, unknown, column = lms.fill(roster, scores, "canvas", "Backprop Ninja", "login", "empty")
    assert column == "Backprop Ninja (4321)" and unknown == ["carol"]
    before, after = rows(roster), rows(text)
    at = before[0].index(column)
    assert len(before) == len(after) and all(len(b) == len(a) for b, a in zip(before, after, strict=True))
    for b, a in zip(before, after, strict=True):  # only the assignment's column changed
        assert b[:at] + b[at + 1 :] == a[:at] + a[at + 1 :]
    filled = {r[3]: r[at] for r in after[2:]}
    assert filled == {"bitdiddle": "40", "hacker": "40", "nora": "", "": ""}  # hacker: 45 - 5 late
    assert after[1][at] == "45.00"  # Points Possible untouched


@pytest.mark.slow  # a new gradebook runs alembic
def test_moodle_by_id_number_or_email_and_zero_for_no_submission(gradebook):
    roster = (DATA / "moodle_grades.csv").read_text()
    scores = {"2026001": 40.0, "2026002": 12.5, "2026003": None}
    text, unknown, column = lms.fill(roster, scores, "moodle", "Backprop Ninja", "id", "zero")
    assert column == "Assignment: Backprop Ninja (Real)" and unknown == []
    at = rows(text)[0].index(column)
    assert [r[at] for r in rows(text)[1:]] == ["40", "12.5", "0"]
    by_login = {"bitdiddle": 40.0, "hacker": 12.5, "nora": None, "ghost": 3.0}
    text, unknown, _ = lms.fill(roster, by_login, "moodle", "Backprop Ninja", "login", "empty")
    assert [r[at] for r in rows(text)[1:]] == ["40", "12.5", ""] and unknown == ["ghost"]


def test_an_ambiguous_or_missing_column_is_refused_with_the_columns_named():
    roster = (DATA / "canvas_gradebook.csv").read_text(encoding="utf-8-sig")
    with pytest.raises(lms.LmsError, match="ambiguous or missing"):
        lms.fill(roster, {}, "canvas", "Quiz 7", "login", "empty")
    with pytest.raises(lms.LmsError, match="no student id column"):
        lms.fill("Name,Backprop Ninja\nx,1\n", {}, "canvas", "Backprop Ninja", "id", "empty")


@pytest.mark.slow  # a new gradebook runs alembic
def test_nbgrader_export_runs_the_plugin(gradebook):
    """`nbgrader export --exporter=...` as the instructor types it, in a course folder."""
    root, url = gradebook
    (root / "nbgrader_config.py").write_text('c = get_config()\nc.CourseDirectory.course_id = "lms"\n')
    out = root / "upload.csv"
    cmd = [sys.executable, "-m", "nbgrader", "export", "--exporter=grader.instructor.lms.LmsExportPlugin",
           f"--LmsExportPlugin.roster={DATA / 'canvas_gradebook.csv'}", "--LmsExportPlugin.column=Backprop Ninja",
           f"--db={url}", f"--to={out}"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, env=course.tool_env(), timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "carol has a score in nbgrader but is not in the roster" in proc.stderr
    at = rows(out.read_text())[0].index("Backprop Ninja (4321)")
    assert [r[at] for r in rows(out.read_text())[2:5]] == ["40", "40", ""]
