"""grader/autograde/worker.py: a student's grading process (plain nbgrader, forked from a fork server) and the
typed ``Result`` it leaves for the parent; run through ``run.grade_one`` on a tiny course, without the sandbox
(the class tests grade in it)."""

import os
import time

import nbformat
import pytest
from tiny_course import make_tiny_course

from grader.autograde import run, scratch, worker
from grader.autograde.feedback import text
from grader.autograde.options import Options
from grader.autograde.submissions import discover
from grader.autograde.worker import Result


def test_a_result_is_written_whole_and_read_back(tmp_path):
    path = tmp_path / "result.json"
    assert Result.read(path) is None  # the process died before it wrote one
    Result(autograde=True, feedback=False, log="log", notes=["a note"]).write(path)
    assert Result.read(path) == Result(True, False, "log", ["a note"])
    assert not (tmp_path / "result.json.tmp").exists()


def sleeper(seconds: str) -> None:
    """In a forked child: leave a grandchild behind, then hang."""
    import subprocess

    subprocess.Popen(["sleep", seconds])
    print("started", flush=True)
    time.sleep(float(seconds))


def printer(*args: str) -> None:
    import sys

    print(os.getcwd(), os.environ["ONLY"], len(os.environ), *args)
    sys.exit(3)


@pytest.mark.slow
def test_run_child_gives_cwd_env_and_exit_code_and_kills_the_whole_group_at_the_limit(tmp_path):
    code, out = worker.run_child(printer, ("a", "b"), tmp_path, {"ONLY": "this"})
    assert code == 3 and out.split() == [str(tmp_path), "this", "1", "a", "b"]
    start = time.monotonic()
    with pytest.raises(TimeoutError, match="started"):
        worker.run_child(sleeper, ("600",), tmp_path, {"PATH": os.environ["PATH"]}, timeout=5)
    assert time.monotonic() - start < 60
    time.sleep(0.5)
    left = [p for p in os.listdir("/proc") if p.isdigit() and _cmdline(p) == b"sleep\x00600\x00"]
    assert left == []  # the grandchild went with the group


def _cmdline(pid: str) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """alice passes everything; bob passes the visible test and fails the hidden one."""
    root = tmp_path_factory.mktemp("worker")
    c = make_tiny_course(
        root / "tiny", {"alice": "def square(x):\n    return x * x", "bob": "def square(x):\n    return 3 * x"}
    )
    opts = Options(
        assignment="hw1", submissions=c / "submitted", course=c, out=root / "out", sandbox=False, zygote=False
    )
    work = root / "out" / "work"
    work.mkdir(parents=True)
    template = scratch.make_template(opts, work)
    out = {}
    for s in discover(opts, work):
        outcome = run.grade_one(opts, template, work, s)
        sc = scratch.Scratch(work, s.id, "hw1")
        out[s.id] = (outcome, Result.read(sc.result), sc)
    return out


@pytest.mark.slow
def test_the_result_says_what_nbgrader_did(graded):
    for student in ("alice", "bob"):
        outcome, result, _ = graded[student]
        assert outcome.graded and outcome.reason == "", outcome.log[-2000:]
        assert result.autograde and result.feedback and result.notes == []
        assert "[AutogradeApp]" in result.log or "autograd" in result.log.lower()


@pytest.mark.slow
def test_the_instructor_keeps_the_whole_traceback_the_feedback_only_its_last_line(graded):
    _, _, sc = graded["bob"]
    nb = nbformat.read(sc.autograded / "squares.ipynb", 4)
    (cell,) = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "test_square"]
    (error,) = [o for o in cell.outputs if o.output_type == "error"]
    assert error.ename == "AssertionError" and len(error.traceback) > 1  # the autograded notebook: all of it
    assert "most recent call last" in "".join(error.traceback)
    assert "square(-4)" in cell.source  # with its hidden test
    page = text((sc.feedback / "squares.html").read_text())
    assert "AssertionError" in page and "square(-4)" not in page and "most recent call last" not in page
