"""``python -m grader demo``: build release/, grade a demo class (source/demo_class.toml), print the scores."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from . import course


def add_arguments(demo) -> None:
    demo.add_argument(
        "--course-dir", default="build/demo", help="where to build the demo course (default: %(default)s)"
    )
    demo.add_argument("--all", action="store_true", help="grade every student of source/demo_class.toml")
    demo.add_argument(
        "--check-release", action="store_true", help="do not write release/: fail if it differs from a fresh generation"
    )
    demo.add_argument(
        "--class-command",
        action="store_true",
        help="grade with `python -m grader autograde` (sandboxed, parallel; adds the broken and "
        "hostile demo students) instead of plain nbgrader",
    )
    demo.add_argument("--no-sandbox", action="store_true", help="with --class-command: no bubblewrap sandbox")


def _class_command(root: Path, no_sandbox: bool) -> int:
    """Grade ``root/submitted`` with ``python -m grader autograde`` (its options' defaults, but the demo's)."""
    from ..autograde import cli
    from ..autograde.options import Options

    opts = Options(
        assignment=course.ASSIGNMENT,
        submissions=root / "submitted",
        course=root,
        out=root / "autograde",
        cell_timeout=30,
        student_timeout=600,
        force=True,
        sandbox=not no_sandbox,
    )
    return cli.command(opts)


def cmd_demo(args) -> int:
    """Build release/, autograde a demo class with nbgrader, print the scores and where feedback went."""
    from .. import data

    # Before anything is graded, on both paths: without the data set every notebook fails at its first
    # cell and every student would score 0. The loader's NamesDataError (how to get the file) ends the
    # command with exit 2 (main). The sandbox has no network either, so a download happens here or not at all.
    data.names_path()
    # the hostile students do real damage outside a sandbox: only the sandboxed command grades them
    sandboxed = args.class_command and not args.no_sandbox
    students = [s for s in course.demo_class(sandbox_only=sandboxed) if s.demo or args.all]
    root = Path(args.course_dir).resolve()
    step = 0

    def say(text: str) -> None:
        nonlocal step
        step += 1
        print(f"[{step}/5] {text}", flush=True)

    say(f"course directory {root}: generate_assignment (release/ from source/)")
    c = course.new_course(root)
    course.generate_release(c)
    if args.check_release:
        stale = course.release_differences(c)
        if stale:
            print(
                f"release/{course.ASSIGNMENT} is stale ({', '.join(stale)}): run `python -m grader release`",
                file=sys.stderr,
            )
            return 1
        print(f"      release/{course.ASSIGNMENT}: equal to a fresh generation")
    else:
        changed = course.sync_release(c)
        print(f"      release/{course.ASSIGNMENT}: " + (f"updated {', '.join(changed)}" if changed else "up to date"))
    say(f"{len(students)} submissions from source/demo_class.toml in {root / 'submitted'}")
    for s in students:
        course.make_submission(c, s)
    feedback, grades = root / "feedback", root / "grades.csv"
    if args.class_command:
        say(f"python -m grader autograde {course.ASSIGNMENT} submitted/ (sandboxed, {os.cpu_count()} workers)")
        start = time.monotonic()
        code = _class_command(root, args.no_sandbox)
        if code:
            return code
        print(f"      {time.monotonic() - start:.0f} s, {(time.monotonic() - start) / len(students):.1f} s per student")
        feedback, grades = root / "autograde" / "feedback", root / "autograde" / "grades.csv"
        say("feedback (hidden tests removed), grades.csv and summary.md written by the command")
        say("scores from the gradebook")
    else:
        say(f"nbgrader autograde {course.ASSIGNMENT} (students one after another)")
        start = time.monotonic()
        course.nbgrader(c, "autograde", course.ASSIGNMENT)
        print(f"      {time.monotonic() - start:.0f} s, {(time.monotonic() - start) / len(students):.1f} s per student")
        say("nbgrader generate_feedback")
        course.nbgrader(c, "generate_feedback", course.ASSIGNMENT)
        say("nbgrader export")
        course.nbgrader(c, "export", "--to", str(grades))
    return _report(c, students, feedback, grades)


def _report(c: Path, students: list[course.DemoStudent], feedback: Path, grades: Path) -> int:
    """Print each demo student's score against the expected one; 1 if one differs."""
    results = course.scores(c)
    notebooks = course.notebook_names(c)
    wrong = 0
    print(f"\n{'student':28s} {'score':>7s} {'expected':>8s}  lost points in")
    for s in students:
        cells = results.get(s.id, [])
        total = sum(x.score for x in cells)
        maximum = sum(x.max_score for x in cells)
        handed_in = s.submits(notebooks)
        graded = [x for x in cells if x.notebook in handed_in]  # a notebook not handed in scores 0 anyway
        lost = [x.cell for x in graded if x.score < x.max_score]
        lost_expected = course.expected_lost(s, cells, notebooks)
        expected = sum(x.max_score for x in cells if x.cell not in lost_expected)
        mark = "" if abs(total - expected) < 1e-9 else "   <-- NOT AS EXPECTED"
        wrong += bool(mark)
        shown = "all" if lost and len(lost) == len(graded) else ", ".join(lost) or "-"
        if len(handed_in) < len(notebooks):
            shown += f" (hands in {', '.join(handed_in)} only)"
        held = [x.cell for x in graded if x.needs_manual_grade]
        if held:  # after a cell outside the answer language (grader/nbgrader_answers.py)
            shown += f" (held for manual grading: {len(held)} cells)"
        print(f"{s.id:28s} {total:3.0f}/{maximum:<3.0f} {expected:8.0f}  {shown}{mark}")
    print(f"\nfeedback: {feedback}/<student>/{course.ASSIGNMENT}/<notebook>.html")
    print(f"grades:   {grades}")
    if wrong:
        print(f"{wrong} student(s) did not get the expected score", file=sys.stderr)
    return 1 if wrong else 0
