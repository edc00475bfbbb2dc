"""``python -m grader autograde`` on a class with broken and hostile submissions (source/demo_class.toml).

One class is graded once (sandboxed, 2 workers) and the tests read its gradebook, CSV, summary and
feedback; a server on 127.0.0.1 waits for the student who tries to reach it. Everyone hands in
notebook 01 only, which keeps the class quick. Needs bubblewrap: in CI (CI=true) a missing bwrap fails.
"""

import csv
import dataclasses
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from grader import classgrade, course

NOTEBOOK = "01_atomic_backprop"
KEEP = {"solution", "blank", "copies-grad", "edits-a-test-cell", "deletes-a-test-cell"}
STUDENTS = [
    dataclasses.replace(s, notebooks=[NOTEBOOK])
    for s in course.demo_class(sandbox_only=True)
    if s.sandbox_only or s.id in KEEP
]
pytestmark = pytest.mark.usefixtures("sandbox_required")  # every test here grades in the sandbox
HOSTILE = [
    "deletes-the-gradebook",
    "rewrites-another-submission",
    "connects-to-localhost",
    "edits-the-grader",
    "escapes-as-root",
    "prints-the-environment",
    "reads-the-answer-keys",
    "connects-to-a-unix-socket",
    "fills-tmp-and-shm",
    "writes-1-gb-in-its-folder",
    "forks-500-processes",
]
CANARY = "bn-canary-8d1f0c"  # in the course's notebooks/ and .git/ and in the instructor's home
DB_PASSWORD = "canary-password-5e2b"  # in the grading process's DATABASE_URL


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build(root: Path, students) -> tuple[Path, Path]:
    c = course.new_course(root / "course")
    course.generate_release(c)
    submitted = root / "submitted"
    for s in students:
        course.make_submission(c, s, out=submitted / s.id / course.ASSIGNMENT)
    return c, submitted


def autograde(c: Path, submitted: Path, out: Path, *extra, env=None, **kw):
    cmd = [
        sys.executable,
        "-m",
        "grader",
        "autograde",
        course.ASSIGNMENT,
        str(submitted),
        "--course",
        str(c),
        "--out",
        str(out),
        "--workers",
        "2",
        "--cell-timeout",
        "20",
        "--no-progress",
        *extra,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, env=env or course.tool_env(), timeout=1800, **kw)


class Server:
    """A TCP server on 127.0.0.1 that counts the connections it gets."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()


class UnixServer(Server):
    """A Unix socket server outside /tmp (as a local database's) that counts the connections it gets."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True)
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.bind(str(path))
        self.sock.listen(8)
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()


def plant_canaries(root: Path, c: Path) -> list[Path]:
    """The instructor's secrets the hostile students go for (source/demo_class.toml): answer keys in the
    course's notebooks/, hidden tests in its .git/, a file in the instructor's home (root/home)."""
    out = [c / "notebooks" / "answer-key.txt", c / ".git" / "hidden-tests", root / "home" / "secret.txt"]
    for path in out:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{CANARY}\n")
    return out


def aim_at(submitted: Path, port: int) -> None:
    """connects-to-localhost gets the test server's port in its code: the sandbox's environment has no BN_DEMO_PORT."""
    path = submitted / "connects-to-localhost" / course.ASSIGNMENT / f"{NOTEBOOK}.ipynb"
    text = path.read_text()
    assert text.count('\\"BN_DEMO_PORT\\", \\"9\\"') == 1
    path.write_text(text.replace('\\"BN_DEMO_PORT\\", \\"9\\"', f'\\"BN_DEMO_PORT\\", \\"{port}\\"'))


@pytest.fixture(scope="module")
def graded():
    # outside /tmp (the sandbox has a /tmp of its own): the course, the home and the socket must be hidden
    # by the sandbox's rules, not by that
    root = Path(tempfile.mkdtemp(prefix="bn-classgrade-", dir="/var/tmp"))
    try:
        c, submitted = build(root, STUDENTS)
        server = Server()
        aim_at(submitted, server.port)
        canaries = plant_canaries(root, c)
        unix = UnixServer(root / "sock" / "db.sock")
        before = {
            "gradebook": digest(c / "gradebook.db"),
            "submissions": {p: digest(p) for p in submitted.rglob("*.ipynb")},
            "grader": {p: digest(p) for p in Path(classgrade.__file__).parent.glob("*.py")},
            "canaries": {p: digest(p) for p in canaries},
            "unix": unix,
        }
        env = course.tool_env()
        env["BN_DEMO_PORT"] = str(server.port)
        env["HOME"] = str(root / "home")
        env["DATABASE_URL"] = f"postgresql://grader:{DB_PASSWORD}@127.0.0.1:9/gradebook"
        proc = autograde(c, submitted, root / "out", env=env)
        yield root, c, submitted, proc, before, server
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def scores(graded):
    return course.scores(graded[1])


def test_the_command_grades_the_whole_class(graded):
    root, c, submitted, proc, _, _ = graded
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((root / "out" / "summary.json").read_text())
    assert summary["students"] == len(STUDENTS) and summary["graded_now"] == len(STUDENTS)
    assert "Students that need a look" in proc.stdout


@pytest.mark.parametrize("s", STUDENTS, ids=[s.id for s in STUDENTS])
def test_each_student_gets_the_expected_score_and_reason(s, graded, scores):
    root = graded[0]
    cells = scores[s.id]
    assert cells and not [c.cell for c in cells if c.needs_manual_grade]
    lost = {c.cell for c in cells if c.score < c.max_score}
    assert lost == course.expected_lost(s, cells, course.notebook_names(graded[1]))
    if s.review:
        review = json.loads((root / "out" / "summary.json").read_text())["review"]
        assert any(s.review in why for why in review.get(s.id, [])), review.get(s.id)
    if isinstance(s.loses, dict):
        page = root / "out" / "feedback" / s.id / course.ASSIGNMENT / f"{NOTEBOOK}.html"
        text = page.read_text()
        for hint in s.loses.values():
            assert hint in text or hint.replace("`", "<code>", 1) in text or hint in _plain(text)


def _plain(page: str) -> str:
    import html
    import re

    return html.unescape(re.sub(r"<[^>]+>", "", page))


@pytest.mark.parametrize("student", HOSTILE)
def test_hostile_code_is_blocked_inside_its_sandbox(student, graded, scores):
    import nbformat

    root = graded[0]
    nb = nbformat.read(root / "out" / "autograded" / student / course.ASSIGNMENT / f"{NOTEBOOK}.ipynb", 4)
    (cell,) = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "answer_cross_entropy"]
    printed = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
    assert "blocked:" in printed and "ESCAPED" not in printed  # ESCAPED: what each prints when its attack works
    assert "blocked:" in _plain(
        (root / "out" / "feedback" / student / course.ASSIGNMENT / f"{NOTEBOOK}.html").read_text()
    )


def test_everything_else_is_intact(graded, scores):
    root, c, submitted, _, before, server = graded
    assert (c / "gradebook.db").is_file() and set(scores) == {s.id for s in STUDENTS}
    assert {p: digest(p) for p in submitted.rglob("*.ipynb")} == before["submissions"]
    assert {p: digest(p) for p in Path(classgrade.__file__).parent.glob("*.py")} == before["grader"]
    assert server.connections == 0


def test_no_secret_reaches_a_student_and_no_limit_is_passed(graded):
    root, c, _, _, before, _ = graded
    for path in (root / "out").rglob("*"):
        if path.is_file() and path.suffix in (".html", ".ipynb", ".json", ".csv", ".md", ".jsonl"):
            text = path.read_text(errors="replace")
            assert CANARY not in text and DB_PASSWORD not in text, path
    assert {p: digest(p) for p in before["canaries"]} == before["canaries"]
    assert before["unix"].connections == 0
    assert not (root / "escaped-as-root").exists()
    assert not list((root / "out").rglob("big.bin"))  # what it wrote in its folder is not kept
    nb = json.loads(
        (
            root / "out" / "autograded" / "writes-1-gb-in-its-folder" / course.ASSIGNMENT / f"{NOTEBOOK}.ipynb"
        ).read_text()
    )
    printed = json.dumps(nb)
    assert "File too large" in printed  # RLIMIT_FSIZE (256 MB), not the disk
    printed = json.dumps(
        json.loads(
            (root / "out" / "autograded" / "fills-tmp-and-shm" / course.ASSIGNMENT / f"{NOTEBOOK}.ipynb").read_text()
        )
    )
    assert printed.count("blocked: /tmp after") == 1 and printed.count("blocked: /dev/shm after") == 1
    assert all(int(mb) < 300 for mb in re.findall(r"after (\d+) MB", printed))  # at the 256 MB cap


def test_the_feedback_never_shows_hidden_tests(graded):
    root, c = graded[0], graded[1]
    secret = classgrade.hidden_lines(c / "source" / course.ASSIGNMENT)
    assert secret  # the source has hidden tests to leak
    pages = list((root / "out" / "feedback").rglob("*.html"))
    graded_ids = {p.parent.parent.name for p in pages}
    assert graded_ids == {s.id for s in STUDENTS if s.id != "invalid-json"}
    for page in pages:
        text = _plain(page.read_text())
        assert "BEGIN HIDDEN TESTS" not in text
        assert not [line for line in secret if line in text], page


def test_grades_csv_has_every_total(graded, scores):
    root = graded[0]
    with open(root / "out" / "grades.csv", newline="") as f:
        rows = {r["student_id"]: r for r in csv.DictReader(f)}
    assert set(rows) == {s.id for s in STUDENTS}
    for sid, cells in scores.items():
        assert float(rows[sid]["score"]) == pytest.approx(sum(c.score for c in cells))
        assert float(rows[sid]["max_score"]) == pytest.approx(sum(c.max_score for c in cells))


def test_a_second_run_changes_nothing(graded, scores):
    root, c, submitted = graded[0], graded[1], graded[2]
    proc = autograde(c, submitted, root / "out")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((root / "out" / "summary.json").read_text())
    assert summary["graded_now"] == 0 and summary["skipped_already_graded"] == len(STUDENTS)
    again = course.scores(c)
    assert {k: sorted((x.cell, x.score) for x in v) for k, v in again.items()} == {
        k: sorted((x.cell, x.score) for x in v) for k, v in scores.items()
    }


def test_a_killed_run_resumes_without_losing_or_doubling_a_grade(tmp_path):
    few = [
        dataclasses.replace(s, notebooks=[NOTEBOOK])
        for s in course.demo_class()
        if s.id in ("solution", "blank", "dW2-transposed", "dlogprobs-without-1-over-n")
    ]
    c, submitted = build(tmp_path, few)
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "grader",
        "autograde",
        course.ASSIGNMENT,
        str(submitted),
        "--course",
        str(c),
        "--out",
        str(out),
        "--workers",
        "2",
        "--no-progress",
    ]
    proc = subprocess.Popen(
        cmd, env=course.tool_env(), start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    ledger = out / "ledger.jsonl"
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline and proc.poll() is None:
        if ledger.is_file() and ledger.read_text().count("\n") >= 1:
            break
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = [json.loads(line)["student"] for line in ledger.read_text().splitlines()]
    assert 1 <= len(done) < len(few)
    rerun = subprocess.run(cmd, capture_output=True, text=True, env=course.tool_env(), timeout=1800)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["graded_now"] == len(few) - len(done)
    scores = course.scores(c)
    assert set(scores) == {s.id for s in few}
    for s in few:
        cells = scores[s.id]
        assert len(cells) == len({x.cell for x in cells})  # one grade per cell: nothing counted twice
        lost = {x.cell for x in cells if x.score < x.max_score}
        assert lost == course.expected_lost(s, cells, course.notebook_names(c))


TINY_SOURCE = {
    "cells": [
        {"cell_type": "markdown", "metadata": {}, "source": "Write `square(x)`."},
        {
            "cell_type": "code",
            "execution_count": None,
            "outputs": [],
            "id": "a1",
            "metadata": {
                "nbgrader": {
                    "grade": False,
                    "grade_id": "square",
                    "locked": False,
                    "schema_version": 3,
                    "solution": True,
                    "task": False,
                }
            },
            "source": "def square(x):\n    ### BEGIN SOLUTION\n    return x * x\n    ### END SOLUTION",
        },
        {
            "cell_type": "code",
            "execution_count": None,
            "outputs": [],
            "id": "t1",
            "metadata": {
                "nbgrader": {
                    "grade": True,
                    "grade_id": "test_square",
                    "locked": True,
                    "points": 2,
                    "schema_version": 3,
                    "solution": False,
                    "task": False,
                }
            },
            "source": "assert square(3) == 9\n### BEGIN HIDDEN TESTS\nassert square(-4) == 16\n### END HIDDEN TESTS",
        },
        {
            "cell_type": "code",
            "execution_count": None,
            "outputs": [],
            "id": "t2",
            "metadata": {
                "nbgrader": {
                    "grade": True,
                    "grade_id": "test_square_zero",
                    "locked": True,
                    "points": 1,
                    "schema_version": 3,
                    "solution": False,
                    "task": False,
                }
            },
            "source": "assert square(0) == 0",
        },
    ],
    "metadata": {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    },
    "nbformat": 4,
    "nbformat_minor": 5,
}
TINY_ANSWERS = {
    "alice": "def square(x):\n    return x ** 2",
    "bob": "def square(x):\n    return 3 * x",
    "carol": "def square(x):\n    return abs(x) * 3 if x > 0 else x * x",
}


def test_an_independent_course_gets_the_same_scores_as_plain_nbgrader(tmp_path):
    from nbgrader.api import Gradebook

    mine = make_tiny_course(tmp_path / "tiny", TINY_ANSWERS)
    plain = tmp_path / "plain"
    shutil.copytree(mine, plain)
    course.nbgrader(plain, "autograde", "hw1")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "grader",
            "autograde",
            "hw1",
            str(mine / "submitted"),
            "--course",
            str(mine),
            "--out",
            str(tmp_path / "out"),
            "--workers",
            "2",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        env=course.tool_env(),
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]

    def totals(root):
        with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
            return {
                s.student.id: {(nb.name, g.name): g.score for nb in s.notebooks for g in nb.grades}
                for s in gb.assignment_submissions("hw1")
            }

    expected = totals(plain)
    assert set(expected) == set(TINY_ANSWERS)
    assert expected["alice"][("squares", "test_square")] == 2 and expected["bob"][("squares", "test_square")] == 0
    assert totals(mine) == expected
    feedback = (tmp_path / "out" / "feedback" / "carol" / "hw1" / "squares.html").read_text()
    assert "square(-4)" not in feedback and "square(3) == 9" in _plain(feedback)


def make_tiny_course(root: Path, answers: dict[str, str], source: dict = TINY_SOURCE) -> Path:
    (root / "source" / "hw1").mkdir(parents=True)
    (root / "source" / "hw1" / "squares.ipynb").write_text(json.dumps(source))
    (root / "nbgrader_config.py").write_text('c = get_config()\nc.CourseDirectory.course_id = "tiny"\n')
    course.nbgrader(root, "generate_assignment", "hw1", "--force")
    release = json.loads((root / "release" / "hw1" / "squares.ipynb").read_text())
    for student, answer in answers.items():
        nb = json.loads(json.dumps(release))
        (answer_cell,) = [c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") == "square"]
        answer_cell["source"] = answer
        (root / "submitted" / student / "hw1").mkdir(parents=True)
        (root / "submitted" / student / "hw1" / "squares.ipynb").write_text(json.dumps(nb))
    return root


def test_the_wall_clock_limit_kills_one_student_and_grades_the_rest(tmp_path):
    c = make_tiny_course(
        tmp_path / "tiny", {"alice": TINY_ANSWERS["alice"], "stuck": "import time\nwhile True:\n    time.sleep(1)"}
    )
    start = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "grader",
            "autograde",
            "hw1",
            str(c / "submitted"),
            "--course",
            str(c),
            "--out",
            str(tmp_path / "out"),
            "--workers",
            "2",
            "--no-progress",
            "--cell-timeout",
            "600",
            "--student-timeout",
            "45",
        ],
        capture_output=True,
        text=True,
        env=course.tool_env(),
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert time.monotonic() - start < 300
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["totals"] == {"alice": 3.0, "stuck": 0.0}
    assert any("wall-clock limit" in why for why in summary["review"]["stuck"])
    assert any("need manual grading" in why for why in summary["review"]["stuck"])
    leftover = subprocess.run(
        ["pgrep", "-f", str(tmp_path / "out" / "work" / "students" / "stuck")], capture_output=True, text=True
    )
    assert leftover.stdout.strip() == ""  # the nbgrader process and its kernel are gone


def test_the_readme_demo_with_the_class_command_grades_everyone_as_expected(tmp_path):
    """`make demo` (python -m grader demo --class-command): the demo class, with its broken and hostile students."""
    root = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "grader", "demo", "--class-command", "--check-release", "--course-dir", str(root)],
        capture_output=True,
        text=True,
        env=course.tool_env(),
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "NOT AS EXPECTED" not in proc.stdout
    demo = [s for s in course.demo_class(sandbox_only=True) if s.demo]
    assert demo and all(re.search(rf"^{re.escape(s.id)} ", proc.stdout, re.M) for s in demo)
    assert (root / "autograde" / "summary.md").is_file() and (root / "autograde" / "grades.csv").is_file()


def test_the_canary_gave_the_solutions_full_marks_before_anyone_was_graded(graded):
    summary = json.loads((graded[0] / "out" / "summary.json").read_text())
    assert summary["canary"]["score"] == summary["canary"]["max_score"] > 0
    assert "canary: the instructor's solutions got" in graded[3].stdout
