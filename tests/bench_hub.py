"""Benchmark: seconds from a student's ``nbgrader submit`` to released feedback, graded on submit.

As root: ``.venv/bin/python tests/bench_hub.py [--students 20] [--workers 2]``. Makes Unix users (one
instructor, N students), a course owned by the instructor and an exchange, runs the grade-on-submit service
as the instructor (exactly the command the hub's managed service runs), waits for it to be ready (its
canary, once per start, timed), then

1. one student submits Exercise 1 (first answer cell answered): latency to feedback;
2. N students submit within the same minute: p50 and p95 of their latencies.

A latency ends when the feedback page that ``nbgrader fetch_feedback`` looks for (the exchange's
``feedback/<hash of the submission's secret and notebook>.html``) exists and is a graded page. Prints the
figures and the load average while measuring. Removes the users and folders at the end.
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import signal
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_jupyterhub as th  # noqa: E402  (the test's helpers: users, the reachable venv, the course)
from nbgrader.utils import notebook_hash  # noqa: E402

from grader.instructor import course  # noqa: E402


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--students", type=int, default=20)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = p.parse_args()
    users = th.Users()
    root = Path(f"/tmp/bnbench-{users.tag}")
    root.mkdir(mode=0o755)
    service = None
    loads: list[float] = []
    stop = threading.Event()

    def sample():
        while not stop.wait(5):
            loads.append(os.getloadavg()[0])

    try:
        instructor = users.add("i")
        students = [users.add(f"s{i:02d}x") for i in range(args.students + 1)]
        th.USER_PY["python"] = th.user_python(root)
        exchange = root / "exchange"
        exchange.mkdir()
        os.chmod(exchange, 0o777)
        config = root / "config"
        config.mkdir(mode=0o755)
        (config / "nbgrader_config.py").write_text(
            "c = get_config()  # noqa: F821\n"
            f"c.CourseDirectory.course_id = 'backprop-ninja'\nc.Exchange.root = {str(exchange)!r}\n"
        )
        c = th.make_course(root / "course", instructor, config)
        for s in students:
            th.nbgrader_as(s, "fetch_assignment", course.ASSIGNMENT, config=config)
            th.answer_first_cell(Path(pwd.getpwnam(s).pw_dir) / course.ASSIGNMENT / f"{th.NOTEBOOK}.ipynb")
        py = th.USER_PY["python"]
        cmd = [py, "-m", "grader.instructor.gradeonsubmit", "--course", str(c), "--exchange", str(exchange)]
        cmd += ["--course-id", "backprop-ninja", "--interval", "2", "--", "--workers", str(args.workers)]
        service = th.start_service(instructor, c, cmd)
        threading.Thread(target=sample, daemon=True).start()
        started, service_log = time.time(), c / "gradeonsubmit" / "gradeonsubmit.log"
        while not (service_log.exists() and "watching" in service_log.read_text()):  # after its one canary
            assert service.poll() is None and time.time() - started < 900, "the service did not start"
            time.sleep(1)
        print(f"service ready {time.time() - started:.1f} s after start (its canary of the instructor's solutions)")

        def submit_and_wait(who: list[str], timeout: float) -> dict[str, float]:
            submitted = {}

            def one(s):
                th.submit(s, config)
                submitted[s] = time.time()

            threads = [threading.Thread(target=one, args=(s,)) for s in who]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            done: dict[str, float] = {}
            cache = {
                s: Path(pwd.getpwnam(s).pw_dir) / ".local/share/jupyter/nbgrader_cache/backprop-ninja" for s in who
            }
            end = time.time() + timeout
            while len(done) < len(who) and time.time() < end:
                for s in who:
                    if s in done:
                        continue
                    sub = sorted(cache[s].glob(f"*+{course.ASSIGNMENT}+*"))[-1]
                    secret = (sub / "submission_secret.txt").read_text()
                    page = (
                        exchange
                        / "backprop-ninja"
                        / "feedback"
                        / f"{notebook_hash(secret=secret, notebook_id=th.NOTEBOOK)}.html"
                    )
                    if page.exists() and "Graded automatically" in page.read_text():
                        done[s] = page.stat().st_mtime - submitted[s]
                time.sleep(1)
            return done

        start_load = os.getloadavg()
        one = submit_and_wait(students[:1], 900)
        print(f"one student: {one[students[0]]:.1f} s from submit to feedback")
        many = submit_and_wait(students[1:], 1800)
        lat = list(many.values())
        print(
            f"{len(students) - 1} students in the same minute: graded {len(lat)}, p50 {pct(lat, 0.5):.1f} s, "
            f"p95 {pct(lat, 0.95):.1f} s, max {max(lat):.1f} s"
        )
        print(
            f"load average: at start {start_load[0]:.1f}, while measuring mean {statistics.mean(loads):.1f} "
            f"max {max(loads):.1f} ({os.cpu_count()} cores); class command workers {args.workers}"
        )
    finally:
        stop.set()
        if service is not None and service.poll() is None:
            os.killpg(service.pid, signal.SIGTERM)
            service.wait(60)
        users.remove()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
