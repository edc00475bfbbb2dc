"""The class command's canary, and the demo without its data set: nothing is graded where nothing can be.

Before it grades anyone, ``python -m grader autograde`` grades the instructor's own solution notebooks
(source/) by the same path as a student's: the sandbox, the zygote, nbgrader. If they do not get full
marks here (the names data set is not readable inside the sandbox, the kernel cannot import what the
course needs), it grades nobody, says which cell failed and why, and exits 2. ``--no-canary`` skips it.
"""

import copy
import json
from pathlib import Path

import pytest
from classes import autograde, build, class_command, demo
from tiny_course import TINY_ANSWERS, TINY_SOURCE, make_tiny_course

from grader import data
from grader.autograde import canary
from grader.autograde.gradebook import CellScore
from grader.instructor import course


def grades(test):
    """A test that grades a course (slow), in the sandbox."""
    return pytest.mark.slow(pytest.mark.usefixtures("sandbox_required")(test))


# data/names.txt in the checkout wins over BACKPROP_NINJA_NAMES, so "no data set" can only be staged
# where the checkout has none: CI's clean clone (the file is never committed) always can.
NO_LOCAL_COPY = pytest.mark.skipif(
    (data.default_data_dir() / "names.txt").is_file(),
    reason="this checkout has data/names.txt, which the loader finds first: the missing data set cannot be staged",
)


def nobody_graded(c: Path, out: Path, assignment: str) -> None:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{c / 'gradebook.db'}") as gb:
        assert [s.student.id for s in gb.assignment_submissions(assignment)] == []
    assert not (out / "ledger.jsonl").is_file() or (out / "ledger.jsonl").read_text() == ""
    assert not (out / "grades.csv").exists() and not (out / "feedback").exists()


@grades
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


@grades
def test_a_kernel_that_cannot_import_the_course_package_grades_nobody(tmp_path):
    broken = course_source_with_import("backprop_ninja_course_helpers")
    c = make_tiny_course(tmp_path / "tiny", TINY_ANSWERS, source=broken)
    proc = class_command(c, tmp_path / "out")
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "canary: the instructor's solution notebooks" in proc.stderr
    assert "0 of 3 autograded points" in proc.stderr
    assert "squares/cell 2 raised ModuleNotFoundError: No module named 'backprop_ninja_course_helpers'" in proc.stderr
    assert canary.IMPORT in proc.stderr and "names data set" not in proc.stderr  # the cause, read from the error
    assert "--no-canary" in proc.stderr
    nobody_graded(c, tmp_path / "out", "hw1")


@grades
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


@grades
@NO_LOCAL_COPY
def test_a_class_without_its_data_set_grades_nobody(tmp_path):
    """The real course, its data set unreadable: the canary stops at the first cell that loads it."""
    built = build(tmp_path, [s for s in course.demo_class() if s.id == "solution"])
    c, submitted = built.course, built.submitted
    env = course.tool_env()
    env[data.ENV_VAR] = str(tmp_path / "no-such" / "names.txt")
    proc = autograde(c, submitted, tmp_path / "out", env=env)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "canary: the instructor's solution notebooks" in proc.stderr
    assert "raised NamesDataError" in proc.stderr and "no-such/names.txt is not a file" in proc.stderr
    assert canary.DATA_SET in proc.stderr
    nobody_graded(c, tmp_path / "out", course.ASSIGNMENT)


@grades
@NO_LOCAL_COPY
@pytest.mark.parametrize("path", [[], ["--class-command"]], ids=["plain-nbgrader", "class-command"])
def test_make_demo_stops_before_grading_without_its_data_set(tmp_path, path):
    env = course.tool_env()
    env[data.ENV_VAR] = str(tmp_path / "no-such" / "names.txt")
    proc = demo(tmp_path / "demo", *path, env=env, timeout=600)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "error: BACKPROP_NINJA_NAMES=" in proc.stderr and "is not a file" in proc.stderr
    assert "[1/5]" not in proc.stdout and not (tmp_path / "demo").exists()


# ---------------------------------------------------------------------------------------------
# The message: the cell that failed, and the likely cause read from its error (no grading: fast)


def autograded(folder: Path, notebooks: dict[str, list[dict]]) -> Path:
    """Autograded notebooks in ``folder``: name -> cells, each ``{"id": grade id or None, "outputs": [...]}``."""
    import nbformat

    folder.mkdir()
    for name, cells in notebooks.items():
        nb = nbformat.v4.new_notebook()
        for c in cells:
            cell = nbformat.v4.new_code_cell("pass")
            cell.outputs = [nbformat.from_dict(o) for o in c["outputs"]]
            if c["id"]:
                cell.metadata["nbgrader"] = {"grade": True, "grade_id": c["id"], "points": 1, "solution": False}
            nb.cells.append(cell)
        nbformat.write(nb, folder / f"{name}.ipynb")
    return folder


def error(ename: str, evalue: str) -> dict:
    return {"output_type": "error", "ename": ename, "evalue": evalue, "traceback": []}


def short(notebook: str, cell: str, held: bool = False) -> CellScore:
    return CellScore(notebook, cell, 0.0, 1.0, held, None if held else 0.0)


@pytest.mark.parametrize(
    "ename, evalue, cause",
    [
        ("NamesDataError", "BACKPROP_NINJA_NAMES=/x/names.txt is not a file. ...", canary.DATA_SET),
        ("FileNotFoundError", "[Errno 2] No such file or directory: 'data/names.txt'", canary.DATA_SET),
        ("ModuleNotFoundError", "No module named 'torch'", canary.IMPORT),
        ("ImportError", "cannot import name 'cmp' from 'grader'", canary.IMPORT),
        ("AssertionError", "", canary.OTHER),
        ("NameError", "name 'squares' is not defined", canary.OTHER),
    ],
)
def test_the_likely_cause_is_read_from_the_error(tmp_path, ename, evalue, cause):
    folder = autograded(
        tmp_path / "ag", {"p1": [{"id": None, "outputs": []}, {"id": "t", "outputs": [error(ename, evalue)]}]}
    )
    why, found = canary.first_failure(folder, [short("p1", "t")])
    assert why == f"p1/t raised {ename}" + (f": {evalue}" if evalue else "") and found == cause


def test_the_first_error_is_looked_for_in_the_notebooks_that_lost_points_only(tmp_path):
    """p1 (full marks) has an error in a cell graded by hand that no test needs; p2's test cells fail after its
    import cell: the import cell is the cause."""
    folder = autograded(
        tmp_path / "ag",
        {
            "p1": [{"id": "explain", "outputs": [error("NamesDataError", "names.txt is not a file")]}],
            "p2": [
                {"id": None, "outputs": [error("ModuleNotFoundError", "No module named 'helpers'")]},
                {"id": "t", "outputs": [error("NameError", "name 'helpers' is not defined")]},
            ],
        },
    )
    why, cause = canary.first_failure(folder, [short("p2", "t")])
    assert why == "p2/cell 1 raised ModuleNotFoundError: No module named 'helpers'" and cause == canary.IMPORT


def test_a_cell_that_lost_points_without_an_error_says_why(tmp_path):
    stderr = {"output_type": "stream", "name": "stderr", "text": "UserWarning: a deprecated call\n  warn()\n"}
    folder = autograded(tmp_path / "ag", {"p1": [{"id": "t1", "outputs": []}, {"id": "t2", "outputs": [stderr]}]})
    why, cause = canary.first_failure(folder, [short("p1", "t2")])
    assert why == "short of points in p1/t2 (p1/t2 wrote to stderr: UserWarning: a deprecated call)"
    assert cause == canary.STDERR
    why, cause = canary.first_failure(folder, [short("p1", "t1", held=True)])
    assert why == "short of points in p1/t1 (p1/t1 is held for manual grading: its comment says why)"
    assert cause == canary.HELD
    assert canary.first_failure(folder, [short("p1", "t1")]) == ("short of points in p1/t1", canary.OTHER)


def test_the_canarys_line_lists_what_it_leaves_to_a_person():
    from grader.autograde import summary

    hand = [f"p1/written_{i}" for i in range(7)]
    assert canary.by_hand({"by_hand": []}) == "" and canary.by_hand({}) == ""
    assert canary.by_hand({"by_hand": hand[:2]}) == "; graded by hand, not judged: p1/written_0, p1/written_1"
    assert canary.by_hand({"by_hand": hand}).endswith("p1/written_4, ... (7 in all)")
    line = summary._canary_line({"score": 3.0, "max_score": 3.0, "seconds": 2.5, "by_hand": hand[:1]})
    assert line == (
        "canary: the instructor's solutions got 3/3 before anyone was graded (2.5 s); "
        "graded by hand, not judged: p1/written_0"
    )
