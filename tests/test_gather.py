"""``python -m grader gather`` (grader/autograde/gather.py) on shard folders and a gradebook made by hand:
who is missing, who handed in again, whose feedback is the newest. The Slurm and Kubernetes tests gather real
shards (test_slurm.py, test_classgrade_postgres.py); this one runs nbgrader export only."""

import csv
import json
import os
import subprocess
import sys

import pytest
from nbgrader.api import Gradebook

from grader.instructor import course

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:.*not in session")]  # nbgrader export


def ledger_line(student, digest):
    return json.dumps({"student": student, "digest": digest, "graded": True, "reasons": [], "problems": []}) + "\n"


def test_gather_lists_who_is_missing_and_who_handed_in_again_and_takes_the_newest_feedback(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", course.tool_env()["PATH"])  # nbgrader's Gradebook runs alembic from PATH
    c = course.new_course(tmp_path / "course")
    notebook = next((c / "source" / course.ASSIGNMENT).glob("*.ipynb"))
    hand_ins = tmp_path / "hand-ins"
    hand_ins.mkdir()
    for sid in ("ann", "bob", "cy"):  # a flat folder: <student>.ipynb
        (hand_ins / f"{sid}.ipynb").write_bytes(notebook.read_bytes())
    db = f"sqlite:///{tmp_path / 'gradebook.db'}"
    with Gradebook(db) as gb:
        gb.update_or_create_assignment(course.ASSIGNMENT)
        for sid in ("ann", "bob"):  # cy's task never ran
            gb.update_or_create_student(sid)
            gb.add_submission(course.ASSIGNMENT, sid)
    out = tmp_path / "out"
    one, two = out / "shards" / "1-of-2", out / "shards" / "2-of-2"
    for folder, sid in ((one, "ann"), (two, "bob")):
        (folder / "feedback" / sid / course.ASSIGNMENT).mkdir(parents=True)
        (folder / "feedback" / sid / course.ASSIGNMENT / "nb.html").write_text(f"{sid} by {folder.name}")
        (folder / "logs").mkdir()
        (folder / "logs" / f"{sid}.log").write_text("log")
    (one / "ledger.jsonl").write_text(ledger_line("ann", "an older hand-in"))
    (two / "ledger.jsonl").write_text(ledger_line("bob", "?"))
    # bob was graded again by a later run with K = 1 into OUT itself: its feedback there is the newest
    (out / "ledger.jsonl").write_text("")
    (out / "feedback" / "bob" / course.ASSIGNMENT).mkdir(parents=True)
    (out / "feedback" / "bob" / course.ASSIGNMENT / "nb.html").write_text("bob by .")
    os.utime(two / "feedback" / "bob" / course.ASSIGNMENT, (1, 1))

    proc = subprocess.run(
        [sys.executable, "-m", "grader", "gather", course.ASSIGNMENT, str(hand_ins), "--course", str(c)]
        + ["--out", str(out), "--db-url", db],
        env=course.tool_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr  # incomplete
    assert "1 student(s) not in the gradebook" in proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["missing"] == ["cy"]
    assert summary["students"] == 3
    # ann's ledger digest is not her hand-in's, bob's neither: both handed in again since graded
    assert summary["changed_since_graded"] == ["ann", "bob"]
    assert sorted(summary["shards"]) == [".", "1-of-2", "2-of-2"]
    assert (out / "feedback" / "ann" / course.ASSIGNMENT / "nb.html").read_text() == "ann by 1-of-2"
    assert (out / "feedback" / "bob" / course.ASSIGNMENT / "nb.html").read_text() == "bob by ."
    assert (out / "logs" / "ann.log").is_file()
    with open(out / "grades.csv", newline="") as f:
        assert sorted(r["student_id"] for r in csv.DictReader(f)) == ["ann", "bob"]
    assert "## Not in the gradebook (1)" in (out / "summary.md").read_text()

    # without the submissions: the gradebook and the ledgers are the class; nothing is missing
    proc = subprocess.run(
        [sys.executable, "-m", "grader", "gather", course.ASSIGNMENT, "--course", str(c), "--out", str(out)]
        + ["--db-url", db],
        env=course.tool_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads((out / "summary.json").read_text())["students"] == 2
