"""Benchmark (not collected by pytest): plain serial ``nbgrader autograde`` vs ``python -m grader autograde``.

    .venv/bin/python tests/bench_autograde.py [--students 16] [--workers 2] [--no-sandbox] [--fresh-kernels]

The same class (the first N students of source/demo_class.toml that plain nbgrader can grade, each
handing in every notebook of the assignment) is graded in one run by ``nbgrader autograde`` (students
one after another) and by the class command with N workers (sandboxed unless told not to), and with
``--fresh-kernels`` a third time by the class command without its zygotes (every kernel a new Python).
Prints seconds per submission of all notebooks and the speed-ups; checks all give the same scores.
"""

import argparse
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from grader.instructor import course  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--students", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-sandbox", action="store_true")
    ap.add_argument(
        "--fresh-kernels",
        action="store_true",
        help="also time the class command with --fresh-kernels (a new Python per kernel, no zygote)",
    )
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bn-bench-"))
    try:
        c = course.new_course(root / "plain")
        course.generate_release(c)
        notebooks = course.notebook_names(c)
        students = [dataclasses.replace(s, notebooks=notebooks) for s in course.demo_class()][: args.students]
        for s in students:
            course.make_submission(c, s)
        mine = root / "mine"
        shutil.copytree(c, mine)
        fresh = root / "fresh"
        if args.fresh_kernels:
            shutil.copytree(c, fresh)
        t0 = time.monotonic()
        course.nbgrader(c, "autograde", course.ASSIGNMENT)
        serial = time.monotonic() - t0
        runs = [("", mine)] + ([("--fresh-kernels", fresh)] if args.fresh_kernels else [])
        seconds = {}
        for flag, folder in runs:
            cmd = [
                sys.executable,
                "-m",
                "grader",
                "autograde",
                course.ASSIGNMENT,
                str(folder / "submitted"),
                "--course",
                str(folder),
                "--out",
                str(root / f"out{flag}"),
                "--workers",
                str(args.workers),
                "--no-progress",
                *([flag] if flag else []),
                *(["--no-sandbox"] if args.no_sandbox else []),
            ]
            t0 = time.monotonic()
            proc = subprocess.run(cmd, capture_output=True, text=True, env=course.tool_env())
            seconds[flag] = time.monotonic() - t0
            if proc.returncode != 0:
                print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
                return 1

        def graded(folder):
            return {k: sorted((x.cell, x.score) for x in v) for k, v in course.scores(folder).items()}

        same = all(graded(folder) == graded(c) for _, folder in runs)
        n = len(students)
        how = f"{args.workers} workers, {'no sandbox' if args.no_sandbox else 'sandboxed'}"
        print(f"{n} submissions of {len(notebooks)} notebooks ({', '.join(notebooks)}), {os.cpu_count()} cores")
        print(f"plain nbgrader autograde (serial):            {serial:7.1f} s  {serial / n:5.1f} s per submission")
        for flag, _ in runs:
            label = f"python -m grader autograde ({how}{', ' + flag if flag else ''}):"
            print(
                f"{label:<46}{seconds[flag]:7.1f} s  {seconds[flag] / n:5.1f} s per submission  "
                f"speed-up {serial / seconds[flag]:.2f}x"
            )
        print("(the class command's times include prechecks, feedback pages, export and summary)")
        print(f"same scores: {same}")
        return 0 if same else 1
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
