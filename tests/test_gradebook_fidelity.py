"""The class command leaves the gradebook as plain `nbgrader autograde` would: a golden comparison.

One class (on time, late and without a timestamp; a TA override and a manual comment; a resubmission;
a ``--force``) is graded twice, by plain nbgrader in one copy of the course and by
``python -m grader autograde`` in another, and the two gradebooks are compared field by field after
each step. nbgrader's own user-guide course (its header notebook, an image beside the notebooks, answers
graded by hand, written and in code) gets the same gradebook and CSV both ways, the canary judging its test
cells only; so does this course with a written question added (a markdown answer graded by hand). So does
this course's demo class (every demo student plain nbgrader may grade: the hostile ones run only in the
sandbox; one late, one without a timestamp), before and after a TA's override and a resubmission.
"""

import csv
import dataclasses
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from classes import released_course
from tiny_course import TINY_ANSWERS, TINY_SOURCE, make_tiny_course

from grader.autograde import feedback
from grader.instructor import course

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("sandbox_required")]

DUE = "2026-01-10 12:00:00"
STAMPS = {"alice": "2026-01-10 11:00:00", "bob": "2026-01-11 15:30:00"}  # carol has no timestamp.txt
LATE_CONFIG = 'c.LateSubmissionPlugin.penalty_method = "zero"\n'
HEADER_CONFIG = 'c.IncludeHeaderFooter.header = "source/header.ipynb"\n'
PNG = b"\x89PNG\r\n\x1a\n"  # an image beside the notebooks (what a PNG starts with)
USER_GUIDE = Path(__file__).parent / "data" / "nbgrader_user_guide"  # nbgrader's (BSD-3-Clause: README.md there)


def gradebook(root: Path, assignment: str = "hw1") -> dict:
    """Every field nbgrader keeps of every submission, by student."""
    from nbgrader.api import Gradebook

    out = {}
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        for sub in gb.assignment_submissions(assignment):
            out[sub.student.id] = {
                "timestamp": str(sub.timestamp),
                "notebooks": {
                    nb.name: {
                        "flagged": nb.flagged,
                        "late_submission_penalty": nb.late_submission_penalty,
                        "grades": {
                            g.name: (g.auto_score, g.manual_score, g.extra_credit, g.needs_manual_grade)
                            for g in nb.grades
                        },
                        "comments": {c.name: (c.auto_comment, c.manual_comment) for c in nb.comments},
                    }
                    for nb in sub.notebooks
                },
            }
    return out


def export(root: Path, assignment: str = "hw1") -> list[dict]:
    course.nbgrader(root, "export", "--to", str(root / "export.csv"))
    return rows(root / "export.csv", assignment)


def rows(path: Path, assignment: str) -> list[dict]:
    """The rows of ``assignment`` in a grades CSV (nbgrader export's columns), by student."""
    with open(path, newline="") as f:
        found = [r for r in csv.DictReader(f) if r["assignment"] == assignment]
    return sorted(({k: v for k, v in r.items()} for r in found), key=lambda r: r["student_id"])


def class_command(c: Path, out: Path, *extra, assignment: str = "hw1"):
    cmd = [sys.executable, "-m", "grader", "autograde", assignment, str(c / "submitted"), "--course", str(c)]
    cmd += ["--out", str(out), "--workers", "2", "--no-progress", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=course.tool_env(), timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc


def override(root: Path, student: str) -> None:
    """What a TA does in the formgrader: a manual score on a test cell, a comment on the answer, a flag."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        gb.find_grade("test_square", "squares", "hw1", student).manual_score = 1.5
        gb.find_comment("square", "squares", "hw1", student).manual_comment = "see me about x**2"
        gb.find_submission_notebook("squares", "hw1", student).flagged = True
        gb.db.commit()


def resubmit(root: Path, student: str, answer: str, stamp: str) -> None:
    path = root / "submitted" / student / "hw1" / "squares.ipynb"
    nb = json.loads(path.read_text())
    (cell,) = [c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") == "square"]
    cell["source"] = answer
    path.write_text(json.dumps(nb))
    (path.parent / "timestamp.txt").write_text(stamp)


@pytest.fixture(scope="module")
def two_courses(tmp_path_factory):
    root = tmp_path_factory.mktemp("fidelity")
    return (root, *late_courses(root, LATE_CONFIG))


def late_courses(root: Path, config: str, files: dict | None = None) -> tuple[Path, Path]:
    """The tiny class with ``STAMPS`` and the due date ``DUE``, twice: for plain nbgrader and for the class command.
    Its notebook has a third test cell (1 point) that reads the image beside it: the kernel's working folder holds
    the files beside the notebook, as nbgrader's does."""
    from nbgrader.api import Gradebook

    nb = json.loads(json.dumps(TINY_SOURCE))
    reads_the_image = json.loads(json.dumps(nb["cells"][-1]))
    reads_the_image.update(id="t3", source='assert open("jupyter.png", "rb").read(4) == b"\\x89PNG"')
    reads_the_image["metadata"]["nbgrader"].update(grade_id="test_image", points=1)
    nb["cells"].append(reads_the_image)
    files = {**(files or {}), "source/hw1/jupyter.png": PNG}
    plain = make_tiny_course(root / "plain", TINY_ANSWERS, source=nb, config=config, files=files)
    for student, stamp in STAMPS.items():
        (plain / "submitted" / student / "hw1" / "timestamp.txt").write_text(stamp)
    with Gradebook(f"sqlite:///{plain / 'gradebook.db'}") as gb:
        gb.update_or_create_assignment("hw1", duedate=DUE)
    mine = root / "mine"
    shutil.copytree(plain, mine)
    return plain, mine


def test_late_on_time_and_no_timestamp_grade_the_same(two_courses):
    root, plain, mine = two_courses
    course.nbgrader(plain, "autograde", "hw1")
    class_command(mine, root / "out")
    assert gradebook(mine) == gradebook(plain)
    late = gradebook(mine)["bob"]["notebooks"]["squares"]["late_submission_penalty"]
    assert late == 2.0  # bob's 2 points (test_square_zero, test_image), zeroed by penalty_method = zero
    squares = {s: gradebook(plain)[s]["notebooks"]["squares"]["grades"] for s in TINY_ANSWERS}
    assert squares["alice"]["test_square"][0] == 2 and squares["bob"]["test_square"][0] == 0  # its hidden test ran
    assert squares["alice"]["test_image"][0] == 1.0
    assert export(mine) == export(plain)
    page = (root / "out" / "feedback" / "carol" / "hw1" / "squares.html").read_text()
    assert "square(-4)" not in page and "square(3) == 9" in feedback.text(page)  # the hidden test is not shown
    summary = json.loads((root / "out" / "summary.json").read_text())
    assert set(summary["late"]) == {"bob"} and summary["late"]["bob"]["seconds_late"] == pytest.approx(27 * 3600 + 1800)


def test_an_override_survives_a_resubmission_as_in_nbgrader(two_courses):
    root, plain, mine = two_courses
    for c in (plain, mine):
        override(c, "alice")
        resubmit(c, "alice", "def square(x):\n    return x + x", "2026-01-10 11:30:00")
    course.nbgrader(plain, "autograde", "hw1", "--force")
    proc = class_command(mine, root / "out")
    got, want = gradebook(mine), gradebook(plain)
    assert got == want
    assert got["alice"]["notebooks"]["squares"]["grades"]["test_square"][1] == 1.5  # the TA's score is kept
    assert got["alice"]["notebooks"]["squares"]["grades"]["test_square"][3] is True  # and marked for review
    assert got["alice"]["notebooks"]["squares"]["comments"]["square"][1] == "see me about x**2"
    assert got["alice"]["notebooks"]["squares"]["flagged"] is True
    assert export(mine) == export(plain)
    review = json.loads((root / "out" / "summary.json").read_text())["review"]["alice"]
    assert any("a manual score on squares/test_square (1.5) was kept" in why for why in review), review
    assert "1 graded now" in proc.stdout  # only alice changed


def test_force_regrades_everyone_and_keeps_what_people_wrote(two_courses):
    root, plain, mine = two_courses
    course.nbgrader(plain, "autograde", "hw1", "--force")
    class_command(mine, root / "out", "--force")
    assert gradebook(mine) == gradebook(plain)
    assert export(mine) == export(plain)


def user_guide_course(root: Path) -> Path:
    """nbgrader's user-guide course as its documentation grades it: ps1 (problem1: test cells, an answer cell and
    a code cell graded by hand (Parts C, D) and a task; problem2: two written answers) released with the header
    ``source/header.ipynb``, an image beside the notebooks, and the hand-ins of bitdiddle and hacker (timestamps
    of 2015). The notebooks are copied from nbgrader's repository into tests/data/nbgrader_user_guide."""
    shutil.copytree(USER_GUIDE / "source", root / "source")
    (root / "source" / "ps1" / "jupyter.png").write_bytes(PNG)
    (root / "nbgrader_config.py").write_text(
        'c = get_config()\nc.CourseDirectory.course_id = "course101"\n' + HEADER_CONFIG
    )
    course.nbgrader(root, "generate_assignment", "ps1", "--force")
    shutil.copytree(USER_GUIDE / "submitted", root / "submitted")
    for student in ("bitdiddle", "hacker"):
        (root / "submitted" / student / "ps1" / "jupyter.png").write_bytes(PNG)
    return root


def test_nbgraders_user_guide_course_grades_the_same_and_its_hand_graded_cells_do_not_stop_the_canary(tmp_path):
    """Its answers graded by hand (a written answer, a code answer, a task) get no points from any autograder: the
    canary judges the test cells only (3 of 3 points), lists the others, and the class is graded as by nbgrader."""
    plain = user_guide_course(tmp_path / "plain")
    mine = tmp_path / "mine"
    shutil.copytree(plain, mine)
    course.nbgrader(plain, "autograde", "ps1")
    proc = class_command(mine, tmp_path / "out", assignment="ps1")
    by_hand = "problem1/sum_of_squares_equation, problem1/sum_of_squares_application, problem1/cell-938593c4a215c6cc"
    assert "canary: the instructor's solutions get 3/3 here" in proc.stderr
    assert f"graded by hand, not judged: {by_hand}, problem2/part-a, problem2/part-b" in proc.stderr
    got = assert_same_as_plain(mine, plain, "ps1", out=tmp_path / "out")
    assert {s: sum(g[0] or 0 for nb in got[s]["notebooks"].values() for g in nb["grades"].values()) for s in got} == {
        "bitdiddle": 1.5,
        "hacker": 3.0,
    }  # as nbgrader's documentation shows (its grades.csv)
    assert got["hacker"]["notebooks"]["problem1"]["grades"]["sum_of_squares_application"] == (None, None, None, True)


EX2 = "02_fused_cross_entropy"
WRITTEN = "explain_row_sums"


def written_question_course(root: Path) -> Path:
    """This course cut to Exercise 2, with a written question its instructor added at the end: the question, then a
    markdown answer cell graded by hand (1 point) holding the model answer. Two hand-ins: the solution, which
    answers it in words, and ce-without-1-over-n (3 test cells lost), which leaves it as released (nbgrader scores
    an untouched answer cell 0 by itself)."""
    import nbformat

    c = course.new_course(root)
    for path in (c / "source" / course.ASSIGNMENT).glob("*.ipynb"):
        if path.stem != EX2:
            path.unlink()
    path = c / "source" / course.ASSIGNMENT / f"{EX2}.ipynb"
    nb = nbformat.read(path, as_version=4)
    ask = nbformat.v4.new_markdown_cell(
        "## A written question (1 point)\n\nWhy does each row of `dlogits` sum to zero?"
    )
    answer = nbformat.v4.new_markdown_cell("The softmax of a row sums to 1, and the correct class's 1 is subtracted.")
    answer.metadata["nbgrader"] = {
        "grade": True, "grade_id": WRITTEN, "locked": False, "points": 1, "schema_version": 3, "solution": True,
        "task": False,
    }  # fmt: skip
    nb.cells.append(ask)
    nb.cells.append(answer)
    nbformat.write(nb, path)
    course.generate_release(c)
    released = next(
        x for x in nbformat.read(c / "release" / course.ASSIGNMENT / path.name, 4).cells if x.get("id") == answer.id
    )
    assert released.source == "YOUR ANSWER HERE"
    answers = {
        "solution": "They are probabilities minus a one-hot row: 1 - 1 = 0.",
        "ce-without-1-over-n": released.source,
    }
    for s in course.demo_class():
        if s.id in answers:
            folder = course.make_submission(c, dataclasses.replace(s, notebooks=[EX2]))
            handed_in = nbformat.read(folder / path.name, as_version=4)
            next(x for x in handed_in.cells if x.get("id") == answer.id).source = answers[s.id]
            nbformat.write(handed_in, folder / path.name)
    return c


def test_this_course_with_a_written_question_grades_the_same_and_the_canary_leaves_it_to_a_person(tmp_path):
    plain = written_question_course(tmp_path / "plain")
    mine = tmp_path / "mine"
    shutil.copytree(plain, mine)
    course.nbgrader(plain, "autograde", course.ASSIGNMENT)
    proc = class_command(mine, tmp_path / "out", assignment=course.ASSIGNMENT)
    assert "canary: the instructor's solutions get 5/5 here" in proc.stderr
    assert f"graded by hand, not judged: {EX2}/{WRITTEN}\n" in proc.stderr
    got = assert_same_as_plain(mine, plain, out=tmp_path / "out")
    assert got["solution"]["notebooks"][EX2]["grades"][WRITTEN] == (None, None, None, True)  # for the formgrader
    assert got["ce-without-1-over-n"]["notebooks"][EX2]["grades"][WRITTEN] == (0.0, None, None, False)
    page = (tmp_path / "out" / "feedback" / "solution" / course.ASSIGNMENT / f"{EX2}.html").read_text()
    row = re.search(rf'id="head-{WRITTEN}">(.*?)</tr>', page, re.S)
    assert row and "graded by hand" in row.group(1), "its row in the feedback head"


# a custom penalty plugin, importable from the course directory as nbgrader's documentation shows: a quarter of
# the score per started day late (bob: 27.5 hours late, 2 days: half of his 2 points)
PLUGIN = b"""import math

from nbgrader.plugins import LateSubmissionPlugin


class QuarterPerDay(LateSubmissionPlugin):
    def late_submission_penalty(self, student_id, score, total_seconds_late):
        return min(score, score * 0.25 * math.ceil(total_seconds_late / 86400))
"""


@pytest.mark.parametrize(
    "config, bobs_penalty",
    [
        ('c.AssignLatePenalties.plugin_class = "quarterpenalty.QuarterPerDay"\n', 1.0),
        ('c.LateSubmissionPlugin.penalty_method = "none"\n', None),  # nbgrader stores no penalty
    ],
    ids=["custom-plugin", "none"],
)
def test_a_custom_penalty_plugin_and_none_penalise_as_in_nbgrader(tmp_path, config, bobs_penalty):
    plain, mine = late_courses(tmp_path, config, files={"quarterpenalty.py": PLUGIN})
    course.nbgrader(plain, "autograde", "hw1")
    class_command(mine, tmp_path / "out")
    assert gradebook(mine) == gradebook(plain)
    assert gradebook(mine)["bob"]["notebooks"]["squares"]["late_submission_penalty"] == bobs_penalty
    assert export(mine) == export(plain)


# ---------------------------------------------------------------------------------------------
# The demo class: every demo student plain nbgrader may grade (the hostile ones only ever run in the
# sandbox), one of them late, one without a timestamp; then a TA's override and a resubmission.

DEMO = [s for s in course.demo_class() if s.demo]
DEMO_DUE = "2026-03-01 12:00:00"
LATE, UNSTAMPED, TA, GONE = "dcounts-not-accumulated", "blank", "bessel-n-not-n-minus-1", "full-lr-10"
NB1 = "01_atomic_backprop"


@pytest.fixture(scope="module")
def demo_courses(tmp_path_factory):
    """The demo class in one course twice: graded by plain nbgrader (``plain``) and by the class command (``mine``)."""
    from nbgrader.api import Gradebook

    root = tmp_path_factory.mktemp("demo-fidelity")
    plain = released_course(root / "plain")
    with open(plain / "nbgrader_config.py", "a") as f:
        f.write(LATE_CONFIG)
    for s in DEMO:
        folder = course.make_submission(plain, s)
        if s.id != UNSTAMPED:
            (folder / "timestamp.txt").write_text("2026-03-02 08:30:00" if s.id == LATE else "2026-03-01 11:00:00")
    with Gradebook(f"sqlite:///{plain / 'gradebook.db'}") as gb:
        gb.update_or_create_assignment(course.ASSIGNMENT, duedate=DEMO_DUE)
    mine = root / "mine"
    shutil.copytree(plain, mine)
    course.nbgrader(plain, "autograde", course.ASSIGNMENT)
    class_command(mine, root / "out", "--no-canary", assignment=course.ASSIGNMENT)
    return root, plain, mine


def assert_same_as_plain(mine: Path, plain: Path, assignment: str = course.ASSIGNMENT, out: Path | None = None) -> dict:
    """The class command's gradebook equals plain nbgrader's, student by student (a failure names who
    differs), and so do the exports (and the class command's grades.csv in ``out``); returns the class command's."""
    got, want = gradebook(mine, assignment), gradebook(plain, assignment)
    assert sorted(got) == sorted(want)
    for student in sorted(want):
        assert got[student] == want[student], student
    exported = export(plain, assignment)
    assert export(mine, assignment) == exported
    if out is not None:
        assert rows(out / "grades.csv", assignment) == exported
    return got


def test_the_demo_class_gets_the_gradebook_plain_nbgrader_gives(demo_courses):
    _, plain, mine = demo_courses
    got = assert_same_as_plain(mine, plain)
    assert sorted(got) == sorted(s.id for s in DEMO)
    late = got[LATE]["notebooks"]
    assert sum(nb["late_submission_penalty"] or 0 for nb in late.values()) > 0  # penalty_method = zero
    assert all(nb["late_submission_penalty"] in (0, None) for nb in got[UNSTAMPED]["notebooks"].values())


def test_the_demo_class_keeps_a_ta_override_across_a_resubmission_as_nbgrader(demo_courses):
    """A TA's score, comment and flag on one student; that student hands in again (the solution, later) and
    another one's folder is removed from submitted/: plain ``nbgrader autograde`` regrades the newer
    submission only and keeps the removed student's grades; so does the class command."""
    from nbgrader.api import Gradebook

    root, plain, mine = demo_courses
    solution = next(s for s in DEMO if s.id == "solution")
    for c in (plain, mine):
        with Gradebook(f"sqlite:///{c / 'gradebook.db'}") as gb:
            gb.find_grade("test_dlogprobs", NB1, course.ASSIGNMENT, TA).manual_score = 0.5
            gb.find_comment("answer_cross_entropy", NB1, course.ASSIGNMENT, TA).manual_comment = "see me"
            gb.find_submission_notebook(NB1, course.ASSIGNMENT, TA).flagged = True
            gb.db.commit()
        folder = course.make_submission(c, solution, out=c / "submitted" / TA / course.ASSIGNMENT)
        (folder / "timestamp.txt").write_text("2026-03-01 11:45:00")
        shutil.rmtree(c / "submitted" / GONE)
    course.nbgrader(plain, "autograde", course.ASSIGNMENT)  # a newer timestamp: regraded without --force
    proc = class_command(mine, root / "out", "--no-canary", assignment=course.ASSIGNMENT)
    assert "1 graded now" in proc.stdout  # only the resubmission
    got = assert_same_as_plain(mine, plain)
    assert GONE in got
    ta = got[TA]["notebooks"][NB1]
    assert ta["grades"]["test_dlogprobs"][1] == 0.5 and ta["comments"]["answer_cross_entropy"][1] == "see me"
    assert ta["flagged"] is True and got[TA]["timestamp"].startswith("2026-03-01 11:45:00")


FORCED = (TA, LATE, UNSTAMPED)  # what --force is about: a TA's override, a late penalty, no timestamp


def test_the_demo_class_regraded_with_force_keeps_what_people_wrote_as_nbgrader(demo_courses):
    """After the override and the resubmission: ``--force`` regrades everyone handed in, both ways, to the same
    gradebook. Handed in are the students it is about (``FORCED``); the others' folders are removed from
    submitted/ first, both ways, so their grades stay as they were (as the removed student's did above)."""
    root, plain, mine = demo_courses
    for c in (plain, mine):
        for folder in (c / "submitted").iterdir():
            if folder.name not in FORCED:
                shutil.rmtree(folder)
    course.nbgrader(plain, "autograde", course.ASSIGNMENT, "--force")
    proc = class_command(mine, root / "out", "--no-canary", "--force", assignment=course.ASSIGNMENT)
    assert f"{len(FORCED)} graded now" in proc.stdout  # everyone handed in, graded or not before
    got = assert_same_as_plain(mine, plain)
    assert sorted(got) == sorted(s.id for s in DEMO)  # the removed ones keep their grades
    assert got[TA]["notebooks"][NB1]["comments"]["answer_cross_entropy"][1] == "see me"
    assert sum(nb["late_submission_penalty"] or 0 for nb in got[LATE]["notebooks"].values()) > 0
