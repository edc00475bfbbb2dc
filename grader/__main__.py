"""Instructor commands: ``python -m grader release | demo | keys | autograde | gather``."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from . import course


def cmd_release(args) -> int:
    """Regenerate release/ from source/ with nbgrader generate_assignment."""
    with tempfile.TemporaryDirectory(prefix="backprop-ninja-release-") as tmp:
        c = course.new_course(Path(tmp) / "course")
        course.generate_release(c)
        changed = course.sync_release(c)
    where = f"release/{course.ASSIGNMENT}"
    print(f"{where}: " + (f"updated {', '.join(changed)}" if changed else "up to date"))
    return 0


def cmd_keys(args) -> int:
    """Write the answer keys in notebooks/: the source notebooks solved, hidden tests out, executed."""
    from . import keys  # nbclient and a kernel: only this command needs them

    try:
        written = keys.write_keys(args.names or None)
    except ValueError as exc:
        raise course.CourseError(str(exc)) from None
    for path in written:
        print(f"wrote {path.relative_to(course.REPO)}")
    return 0


def cmd_demo(args) -> int:
    """Build release/, autograde a demo class with nbgrader, print the scores and where feedback went."""
    from . import data

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
        from . import classgrade

        out = root / "autograde"
        say(f"python -m grader autograde {course.ASSIGNMENT} submitted/ (sandboxed, {os.cpu_count()} workers)")
        start = time.monotonic()
        # the command's own argument parser: every option it has gets its default
        parser = argparse.ArgumentParser()
        classgrade.add_arguments(parser)
        code = classgrade.main(
            parser.parse_args(
                [
                    course.ASSIGNMENT,
                    str(root / "submitted"),
                    "--course",
                    str(root),
                    "--out",
                    str(out),
                    "--cell-timeout",
                    "30",
                    "--student-timeout",
                    "600",
                    "--force",
                    *(["--no-sandbox"] if args.no_sandbox else []),
                ]
            )
        )
        if code:
            return code
        print(f"      {time.monotonic() - start:.0f} s, {(time.monotonic() - start) / len(students):.1f} s per student")
        feedback, grades = out / "feedback", out / "grades.csv"
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
        print(f"{s.id:28s} {total:3.0f}/{maximum:<3.0f} {expected:8.0f}  {shown}{mark}")
    print(f"\nfeedback: {feedback}/<student>/{course.ASSIGNMENT}/<notebook>.html")
    print(f"grades:   {grades}")
    if wrong:
        print(f"{wrong} student(s) did not get the expected score", file=sys.stderr)
    return 1 if wrong else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grader", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("release", help=cmd_release.__doc__).set_defaults(func=cmd_release)
    keys = sub.add_parser("keys", help=cmd_keys.__doc__)
    keys.add_argument("names", nargs="*", help="notebooks to write (default: all), e.g. 01_atomic_backprop")
    keys.set_defaults(func=cmd_keys)
    demo = sub.add_parser("demo", help=cmd_demo.__doc__)
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
    demo.set_defaults(func=cmd_demo)
    from . import classgrade

    grade = sub.add_parser("autograde", help="grade a class: parallel, sandboxed, resumable (see grader/classgrade.py)")
    classgrade.add_arguments(grade)
    grade.set_defaults(func=classgrade.main)
    from .autograde import gather  # the shards' results brought together (grader/autograde/gather.py)

    together = sub.add_parser("gather", help="after the shards of a class: grades.csv, summary and feedback of all")
    gather.add_arguments(together)
    together.set_defaults(func=gather.main)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except course.CourseError as exc:
        print(exc, file=sys.stderr)
        return 2
    except Exception as exc:
        from .data import NamesDataError  # no data set: its message says how to get one

        if not isinstance(exc, NamesDataError):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2


def autograde_main() -> int:
    """``bn-autograde ...`` = ``python -m grader autograde ...``."""
    return main(["autograde", *sys.argv[1:]])


if __name__ == "__main__":
    sys.exit(main())
