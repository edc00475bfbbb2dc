"""Benchmark (not collected by pytest): plain serial ``nbgrader autograde`` vs ``python -m grader autograde``.

    .venv/bin/python tests/bench_autograde.py [--students 16] [--workers 2] [--no-sandbox]

The same class (the first N students of source/demo_class.toml that plain nbgrader can grade, each
handing in every notebook of the assignment) is graded twice in one run: by ``nbgrader autograde``
(students one after another) and by the class command with N workers (sandboxed unless told not to).
Prints seconds per submission of all notebooks and the speed-up; checks both give the same scores.
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

from grader import course  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--students", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-sandbox", action="store_true")
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
        t0 = time.monotonic()
        course.nbgrader(c, "autograde", course.ASSIGNMENT)
        serial = time.monotonic() - t0
        t0 = time.monotonic()
        cmd = [sys.executable, "-m", "grader", "autograde", course.ASSIGNMENT, str(mine / "submitted"),
               "--course", str(mine), "--out", str(root / "out"), "--workers", str(args.workers), "--no-progress"]
        if args.no_sandbox:
            cmd.append("--no-sandbox")
        proc = subprocess.run(cmd, capture_output=True, text=True, env=course.tool_env())
        parallel = time.monotonic() - t0
        if proc.returncode != 0:
            print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
            return 1
        same = {k: sorted((x.cell, x.score) for x in v) for k, v in course.scores(c).items()} == \
            {k: sorted((x.cell, x.score) for x in v) for k, v in course.scores(mine).items()}
        n = len(students)
        print(f"{n} submissions of {len(notebooks)} notebooks ({', '.join(notebooks)}), {os.cpu_count()} cores")
        print(f"plain nbgrader autograde (serial):      {serial:7.1f} s  {serial / n:5.1f} s per submission")
        print(f"python -m grader autograde ({args.workers} workers{', no sandbox' if args.no_sandbox else ', sandboxed'}): "
              f"{parallel:7.1f} s  {parallel / n:5.1f} s per submission "
              "(including prechecks, feedback, export and summary)")
        print(f"speed-up: {serial / parallel:.2f}x; same scores: {same}")
        return 0 if same else 1
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
