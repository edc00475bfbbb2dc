"""The class command's canary, and the demo without its data set: nothing is graded where nothing can be.

Before it grades anyone, ``python -m grader autograde`` grades the instructor's own solution notebooks
(source/) by the same path as a student's: the sandbox, the zygote, nbgrader. If they do not get full
marks here (the names data set is not readable inside the sandbox, the kernel cannot import what the
course needs), it grades nobody, says which cell failed and why, and exits 2. ``--no-canary`` skips it.
"""

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_classgrade import autograde, build
from tiny_course import TINY_ANSWERS, TINY_SOURCE, make_tiny_course

from grader import data
from grader.instructor import course

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("sandbox_required")]

# data/names.txt in the checkout wins over BACKPROP_NINJA_NAMES, so "no data set" can only be staged
# where the checkout has none: CI's clean clone (the file is never committed) always can.
NO_LOCAL_COPY = pytest.mark.skipif(
    (data.default_data_dir() / "names.txt").is_file(),
    reason="this checkout has data/names.txt, which the loader finds first: the missing data set cannot be staged",
)


def class_command(c: Path, out: Path, *extra, env=None):
    return autograde(c, c / "submitted", out, *extra, env=env, assignment="hw1", timeout=900)


def nobody_graded(c: Path, out: Path, assignment: str) -> None:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{c / 'gradebook.db'}") as gb:
        assert [s.student.id for s in gb.assignment_submissions(assignment)] == []
    assert not (out / "ledger.jsonl").is_file() or (out / "ledger.jsonl").read_text() == ""
    assert not (out / "grades.csv").exists() and not (out / "feedback").exists()


def test_a_course_whose_solutions_get_full_marks_is_graded_and_the_canary_reported(tmp_path):
    c = make_tiny_course(tmp_path / "tiny", TINY_ANSWERS)
    proc = class_command(c, tmp_path / "out")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["canary"]["score"] == summary["canary"]["max_score"] == 3.0
    assert summary["canary"]["seconds"] > 0
    assert summary["totals"]["alice"] == 3.0
    assert "canary: the instructor's solutions got 3/3 before anyone was graded" in proc.stdout
    assert "canary-instructor-solutions" not in (tmp_path / "out" / "grades.csv").read_text()


def test_a_kernel_that_cannot_import_the_course_package_grades_nobody(tmp_path):
    broken = course_source_with_import("backprop_ninja_course_helpers")
    c = make_tiny_course(tmp_path / "tiny", TINY_ANSWERS, source=broken)
    proc = class_command(c, tmp_path / "out")
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "canary: the instructor's solution notebooks" in proc.stderr
    assert "0 of 3 autograded points" in proc.stderr
    assert "squares/cell 2 raised ModuleNotFoundError: No module named 'backprop_ninja_course_helpers'" in proc.stderr
    assert "--no-canary" in proc.stderr
    nobody_graded(c, tmp_path / "out", "hw1")


def test_no_canary_grades_the_class_anyway(tmp_path):
    c = make_tiny_course(tmp_path / "tiny", TINY_ANSWERS, source=course_source_with_import("json"))
    proc = class_command(c, tmp_path / "out", "--no-canary")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["canary"] is None and summary["totals"]["alice"] == 3.0
    assert "canary: skipped (--no-canary)" in proc.stdout


def course_source_with_import(module: str) -> dict:
    """The tiny course's source notebook as a course with a package: its first code cell imports ``module``,
    and each test cell uses it (as this course's cells import grader and call grader.atomic.cmp)."""
    nb = copy.deepcopy(TINY_SOURCE)
    for cell in nb["cells"]:
        if cell["metadata"].get("nbgrader", {}).get("grade"):
            cell["source"] = f"assert {module} is not None\n" + cell["source"]
    first = {"cell_type": "code", "execution_count": None, "outputs": [], "id": "i1", "metadata": {}}
    nb["cells"].insert(1, {**first, "source": f"import {module}"})
    return nb


@NO_LOCAL_COPY
def test_a_class_without_its_data_set_grades_nobody(tmp_path):
    """The real course, its data set unreadable: the canary stops at the first cell that loads it."""
    students = [s for s in course.demo_class() if s.id == "solution"]
    c, submitted = build(tmp_path, students)
    env = course.tool_env()
    env[data.ENV_VAR] = str(tmp_path / "no-such" / "names.txt")
    proc = autograde(c, submitted, tmp_path / "out", env=env)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "canary: the instructor's solution notebooks" in proc.stderr
    assert "raised NamesDataError" in proc.stderr and "no-such/names.txt is not a file" in proc.stderr
    nobody_graded(c, tmp_path / "out", course.ASSIGNMENT)


@NO_LOCAL_COPY
@pytest.mark.parametrize("path", [[], ["--class-command"]], ids=["plain-nbgrader", "class-command"])
def test_make_demo_stops_before_grading_without_its_data_set(tmp_path, path):
    env = course.tool_env()
    env[data.ENV_VAR] = str(tmp_path / "no-such" / "names.txt")
    cmd = [sys.executable, "-m", "grader", "demo", "--check-release", "--course-dir", str(tmp_path / "demo"), *path]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "error: BACKPROP_NINJA_NAMES=" in proc.stderr and "is not a file" in proc.stderr
    assert "[1/5]" not in proc.stdout and not (tmp_path / "demo").exists()
