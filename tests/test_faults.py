"""Faults of the class command: a second run on the same --out, odd student folder names, a full disk.

Each must end with one clear message or be graded, and never cost a grade: the tiny course of
tests/tiny_course.py (three cells, no torch) keeps these quick.
"""

import csv
import fcntl
import json
import os
import shutil
import subprocess
from pathlib import Path

import classes
import pytest
from tiny_course import TINY_ANSWERS, make_tiny_course

from grader.autograde.submissions import safe_key

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("sandbox_required")]


def class_command(c: Path, out: Path, *extra):
    return classes.class_command(c, out, "--no-canary", *extra)


def test_a_second_run_on_the_same_out_says_who_holds_it_and_stops(tmp_path):
    c = make_tiny_course(tmp_path / "tiny", TINY_ANSWERS)
    out = tmp_path / "out"
    out.mkdir()
    with open(out / ".lock", "w") as held:  # what a first run, half way, holds
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        held.write("pid 4242 on grading-server, started 2026-12-01 09:00:00\n")
        held.flush()
        proc = class_command(c, out)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "is being graded by pid 4242 on grading-server" in proc.stderr
    assert not (out / "work").exists()  # the first run's scratch folders were not touched
    proc = class_command(c, out)  # once the first is done
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


def test_every_student_folder_is_graded_whatever_its_name(tmp_path):
    c = make_tiny_course(tmp_path / "tiny", TINY_ANSWERS)
    for odd, like in (("Jane Doe", "alice"), ("josé", "bob"), (".dotted", "alice"), ("a'b;c", "carol")):
        shutil.copytree(c / "submitted" / like, c / "submitted" / odd)
    (c / "submitted" / ".ipynb_checkpoints").mkdir()  # not a student
    proc = class_command(c, tmp_path / "out")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    expected = {"alice": 3.0, "bob": 1.0, "carol": 3.0, "Jane Doe": 3.0, "josé": 1.0, ".dotted": 3.0, "a'b;c": 3.0}
    assert summary["totals"] == expected
    with open(tmp_path / "out" / "grades.csv", newline="") as f:
        assert {r["student_id"]: float(r["score"]) for r in csv.DictReader(f)} == expected
    for odd in ("Jane Doe", "josé", ".dotted", "a'b;c"):
        key = safe_key(odd)
        assert any(f"graded as {key}" in why for why in summary["review"][odd]), summary["review"][odd]
        assert (tmp_path / "out" / "feedback" / key / "hw1" / "squares.html").is_file()
    assert safe_key("Jane Doe") != safe_key("Jane_Doe")


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs as the output folder needs root")
def test_a_full_disk_ends_with_one_message_and_a_rerun_repairs_it(tmp_path):
    c = make_tiny_course(tmp_path / "tiny", TINY_ANSWERS)
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(out)], check=True)
    try:
        proc = class_command(c, out)
        assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
        assert "cannot write the results in" in proc.stderr and "No space left on device" in proc.stderr
        assert "Traceback" not in proc.stderr
        subprocess.run(["mount", "-o", "remount,size=64m", str(out)], check=True)
        proc = class_command(c, out)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        summary = json.loads((out / "summary.json").read_text())
        assert summary["totals"] == {"alice": 3.0, "bob": 1.0, "carol": 3.0}
    finally:
        subprocess.run(["umount", "-l", str(out)], check=False)
