"""Grade on submit: a long-running instructor service that grades each submission as it arrives.

``python -m grader.instructor.gradeonsubmit --course DIR --exchange ROOT [...] [-- CLASS COMMAND OPTIONS]``

Run by JupyterHub as a managed service under the instructor's Unix account (docs/jupyterhub.md), or by
hand. It opens one session of the class command (``grader.autograde.run.session``: the output folder
locked, the scratch template and its gradebook made once, the canary of the instructor's solutions run
once, at start) and keeps it open. Every ``--interval`` seconds it looks at nbgrader's exchange
(``ROOT/COURSE_ID/inbound``); when a student has handed in something new it

1. collects it with ``nbgrader collect --update`` (into the course's ``submitted/``) and copies it to a
   staging folder of its own (``STATE/staging/N/``),
2. hands it at once to the session's pool of ``--workers`` graders (the class command's own grading:
   prechecks, scratch course, sandbox, zygote, nbgrader), while other students are still being graded,
3. as each student is done, merges it into the real gradebook and the ledger (the class command's own
   merge, this thread only), copies its feedback (hidden tests removed) into the course's ``feedback/``
   with the submission's ``timestamp.txt`` and ``submission_secret.txt`` and runs
   ``nbgrader release_feedback``, so the student's ``fetch_feedback`` (the Assignments tab) finds it.

The class command's options (``--workers``, timeouts, ``--no-canary``...) come after ``--``, parsed by
``grader.autograde.options``, their one home, as ``python -m grader autograde`` parses them.

Rate limit: at most ``--limit`` graded submissions per student per ``--window-hours`` (default 3 per 24 h),
so the feedback is no oracle for the hidden tests. A submission over the limit is kept (the exchange and
``submitted/`` have it), graded when the window allows or by the instructor, and its released feedback is
a page saying so. After ``--deadline`` nothing is graded automatically and the page says that instead.

State: ``STATE/state.json``, one record per submission keyed by ``student+timestamp`` (the exchange's own
name for it), written atomically (temporary file, fsync, rename) before and after every step. A
submission that was being graded when the service was killed is graded again at start, unless the
class command's ledger already has it merged (then it is only released): none lost, none counted twice.
Every action is logged to stderr and ``STATE/gradeonsubmit.log``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import fcntl
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path

from ..autograde import gradebook, options, run
from ..autograde.submissions import Student, discover
from ..autograde.worker import run_nbgrader
from . import onsubmit_pages as pages

log = logging.getLogger("gradeonsubmit")


def parse_ts(text: str) -> dt.datetime:
    """nbgrader's submission timestamp (UTC) as an aware datetime."""
    text = text.strip()
    for fmt in ("%Y-%m-%d %H:%M:%S.%f %Z", "%Y-%m-%d %H:%M:%S %Z", "%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S"):
        try:
            return dt.datetime.strptime(text, fmt).replace(tzinfo=dt.UTC)
        except ValueError:
            pass
    return dt.datetime.fromisoformat(text).astimezone(dt.UTC)


def parse_deadline(text: str) -> dt.datetime:
    d = dt.datetime.fromisoformat(text)
    return d.replace(tzinfo=dt.UTC) if d.tzinfo is None else d.astimezone(dt.UTC)


def write_json_atomic(path: Path, data) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Service:
    def __init__(self, args, opts: options.Options, session: run.Session):
        self.course = opts.course
        self.assignment = opts.assignment
        self.exchange = Path(args.exchange).resolve()
        self.course_id = args.course_id
        self.state_dir = opts.submissions.parent  # STATE: STATE/staging/N are the submissions graded
        self.interval = args.interval
        self.limit = args.limit
        self.window = args.window_hours * 3600
        self.deadline = parse_deadline(args.deadline) if args.deadline else None
        self.opts, self.session = opts, session
        self.out = opts.out
        self.pool = ThreadPoolExecutor(max_workers=max(1, opts.workers))
        self.running: dict[Future, tuple[str, Student]] = {}
        self.state_path = self.state_dir / "state.json"
        fresh = {"submissions": {}, "staged": 0}
        self.state = json.loads(self.state_path.read_text()) if self.state_path.exists() else fresh

    def save(self) -> None:
        write_json_atomic(self.state_path, self.state)

    @property
    def subs(self) -> dict:
        return self.state["submissions"]

    def nbgrader(self, *args: str) -> subprocess.CompletedProcess:
        """``nbgrader ARGS`` in the course, forked from the session's fork server (nbgrader imported once)."""
        where = [f"--CourseDirectory.root={self.course}", f"--CourseDirectory.course_id={self.course_id}"]
        log.info("run: nbgrader %s", " ".join(args))
        proc = run_nbgrader(self.course, *args, *where, f"--Exchange.root={self.exchange}", timeout=600)
        if proc.returncode:
            log.error("nbgrader %s failed (%d):\n%s", args[0], proc.returncode, proc.stdout[-3000:])
        return proc

    def inbound(self) -> dict[str, dict]:
        """The exchange's submissions of this assignment: key student+timestamp -> record."""
        found = {}
        folder = self.exchange / self.course_id / "inbound"
        for entry in sorted(folder.glob(f"*+{self.assignment}+*")) if folder.is_dir() else []:
            parts = entry.name.rsplit("+", 3) if entry.name.count("+") >= 3 else entry.name.rsplit("+", 2)
            if len(parts) < 3 or parts[1] != self.assignment:
                continue
            student, stamp = parts[0], parts[2]
            try:
                parse_ts(stamp)
            except ValueError:
                log.warning("skip %s: unreadable timestamp", entry.name)
                continue
            found[f"{student}+{stamp}"] = {"student": student, "timestamp": stamp, "folder": entry.name}
        return found

    def submitted_key(self, student: str) -> str | None:
        ts = self.course / "submitted" / student / self.assignment / "timestamp.txt"
        return f"{student}+{ts.read_text().strip()}" if ts.exists() else None

    # -- the loop ------------------------------------------------------------------------------------
    def poll(self) -> bool:
        """One look at the exchange: new submissions collected, and handed to the graders; True if any."""
        now = time.time()
        new = {k: v for k, v in self.inbound().items() if k not in self.subs}
        for key, rec in new.items():
            self.subs[key] = {**rec, "status": "new", "seen": now}
            log.info("new submission %s (%s)", key, rec["folder"])
        if new:
            self.save()
            self.nbgrader("collect", self.assignment, "--update")
        busy = {s["student"] for s in self.subs.values() if s["status"] == "grading"}  # one at a time each
        pending = [k for k, s in self.subs.items() if s["status"] in ("new", "held") and s["student"] not in busy]
        to_grade, notes = [], []
        for student in sorted({self.subs[k]["student"] for k in pending}):
            key = self.submitted_key(student)
            mine = [k for k in pending if self.subs[k]["student"] == student]
            if key not in self.subs or self.subs[key]["status"] not in ("new", "held"):
                if any(self.subs[k]["status"] == "new" for k in mine):  # not collected yet: next time
                    self.nbgrader("collect", self.assignment, "--update", f"--student={student}")
                continue
            latest = self.subs[key]
            for k in mine:  # what nbgrader collect replaced: kept in the exchange, not graded
                if k != key and parse_ts(self.subs[k]["timestamp"]) < parse_ts(latest["timestamp"]):
                    self.subs[k].update(status="superseded", by=key, at=now)
                    log.info("%s superseded by %s (only the latest submission is graded)", k, key)
            if self.deadline and parse_ts(latest["timestamp"]) > self.deadline:
                if latest["status"] != "late":
                    latest.update(status="late", at=now)
                    notes.append(key)
                    log.info("%s came after the deadline %s: not graded automatically", key, self.deadline)
                continue
            counted = self.graded_times(student, now)
            if len(counted) < self.limit:
                to_grade.append(key)
            elif latest["status"] != "held" or latest.get("until") != counted[0] + self.window:
                latest.update(status="held", until=counted[0] + self.window, at=now)
                notes.append(key)
                why = (
                    f"{len(counted)} graded in the last {self.window / 3600:g} h; waits until {_hhmm(latest['until'])}"
                )
                log.info("%s held: %s", key, why)
        for key in to_grade:
            self.stage(key)
        self.save()
        if notes:
            for key in notes:
                self.write_note(key)
            self.nbgrader("release_feedback", self.assignment)
        for key in to_grade:
            self.start(key)
        return bool(new or notes or to_grade)

    def stage(self, key: str) -> None:
        """A copy of the collected submission, graded from there (collect may replace ``submitted/``)."""
        s = self.subs[key]
        self.state["staged"] += 1
        staging = self.state_dir / "staging" / str(self.state["staged"])
        folder = Path(s["student"]) / self.assignment
        if staging.exists():
            shutil.rmtree(staging)
        shutil.copytree(self.course / "submitted" / folder, staging / folder)
        s.update(status="grading", staging=str(staging), at=time.time())

    def start(self, key: str) -> None:
        """Hand ``key`` (staged) to the graders; only release it when the ledger has it merged already."""
        try:
            staging = Path(self.subs[key]["staging"])
            (student,) = discover(dataclasses.replace(self.opts, submissions=staging), self.session.work)
        except Exception as exc:  # an unreadable or vanished staging copy: this one fails, the others go on
            self.subs[key].update(status="failed", at=time.time(), reasons=[f"{type(exc).__name__}: {exc}"])
            log.exception("%s: cannot be graded", key)
            self.save()
            return
        merged = set(gradebook.scores(self.session.db, self.assignment, [student.id]))
        if self.session.is_done(student, merged):
            log.info("%s: already merged by the class command (before a restart): released, not graded again", key)
            self.finish(key, student, None)
            return
        log.info("%s: grading (%d graders busy)", key, len(self.running) + 1)
        self.running[self.pool.submit(self.session.grade, student)] = (key, student)

    def collect_done(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for graders; merge and release those done. True when some were."""
        if not self.running:
            time.sleep(timeout)
            return False
        done, _ = wait(list(self.running), timeout=timeout, return_when=FIRST_COMPLETED)
        released = []
        for fut in done:
            key, student = self.running.pop(fut)
            outcome = self.session.outcome(student, fut)
            self.finish(key, student, self.session.record(student, outcome), release=False)
            released.append(key)
        if released:
            self.release(released)
        if done and not self.running:  # the burst is over: the class command's grades.csv, up to date
            run.export(self.session)
        return bool(done)

    def finish(self, key: str, student: Student, entry: dict | None, release: bool = True) -> None:
        """After the merge (``entry``, or the ledger's from before a restart): publish the feedback."""
        s = self.subs[key]
        entry = entry or self.session.ledger.done.get(student.id, {})
        src = self.out / "feedback" / student.key / self.assignment
        if not entry.get("graded") or not any(src.glob("*.html")):
            s.update(status="failed", at=time.time(), reasons=entry.get("reasons", []))
            log.error("%s: not graded by the class command: %s", key, entry.get("reasons"))
            self.save()
            return
        s.update(status="graded", graded_at=time.time())
        log.info("%s: graded in %.1f s", key, entry.get("seconds", 0.0))
        self.publish(key, src, Path(s["staging"]) / s["student"] / self.assignment)
        self.save()
        if release:
            self.release([key])

    def release(self, keys: list[str]) -> None:
        """``nbgrader release_feedback``; also, at start, for those whose release a kill cut short."""
        keys = [k for k in keys if self.subs[k]["status"] == "graded"]
        if not keys:
            return
        students = sorted({self.subs[k]["student"] for k in keys})
        self.nbgrader(
            "release_feedback", self.assignment, *(["--student=" + students[0]] if len(students) == 1 else [])
        )
        for key in keys:
            self.subs[key]["released_at"] = time.time()
            log.info("%s: feedback released (%.1f s after it was seen)", key, time.time() - self.subs[key]["seen"])
        self.save()

    def graded_times(self, student: str, now: float) -> list[float]:
        """When ``student``'s submissions graded within the window were graded, oldest first."""
        mine = [s.get("graded_at", 0) for s in self.subs.values() if s["student"] == student]
        return sorted(t for t in mine if now - t < self.window)

    def publish(self, key: str, src: Path, submission: Path) -> None:
        s = self.subs[key]
        dest = pages.feedback_dir(self.course, self.assignment, s["student"], submission)
        n = len(self.graded_times(s["student"], time.time()))
        pages.graded(src, dest, s["timestamp"], n, self.limit, self.window / 3600)

    def write_note(self, key: str) -> None:
        s = self.subs[key]
        submission = self.course / "submitted" / s["student"] / self.assignment
        if s["status"] == "late":
            why = (
                f"This submission ({s['timestamp']}) came after the deadline ({self.deadline:%Y-%m-%d %H:%M} UTC): "
                "it is kept, and graded by the instructor, not automatically."
            )
        else:
            why = (
                f"Submissions are graded at most {self.limit} times per {self.window / 3600:g} h. "
                f"This submission ({s['timestamp']}) is kept and waits until {_hhmm(s['until'])} UTC "
                "(or until the instructor grades it)."
            )
        pages.not_graded(submission, pages.feedback_dir(self.course, self.assignment, s["student"], submission), why)
        s["note"] = why
        log.info("%s: note released: %s", key, why)
        self.save()

    def run(self, once: bool = False) -> None:
        log.info(
            "watching %s for %s (limit %d per %g h, deadline %s, %d graders, state %s)",
            self.exchange / self.course_id / "inbound",
            self.assignment,
            self.limit,
            self.window / 3600,
            self.deadline or "none",
            self.opts.workers,
            self.state_path,
        )
        for key, s in self.subs.items():  # graded when the service was killed: again (or released, if merged)
            if s["status"] == "grading":
                log.info("%s: was being graded when the service stopped", key)
                self.start(key)
        self.release([k for k, s in self.subs.items() if s["status"] == "graded" and not s.get("released_at")])
        while True:
            try:
                self.poll()
                self.collect_done(self.interval)
            except Exception:  # a bad submission or a full disk must not stop the service: log, go on
                log.exception("poll failed")
                time.sleep(self.interval)
            if once and not self.running:
                return


def _hhmm(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%d %H:%M")


def parse(argv=None) -> tuple[argparse.Namespace, options.Options]:
    """The service's own arguments; those after ``--`` are the class command's (``grader.autograde.options``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    ours, theirs = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    p = argparse.ArgumentParser(prog="python -m grader.instructor.gradeonsubmit", description=__doc__.split("\n")[0])
    p.add_argument("--course", required=True, help="the nbgrader course directory (the instructor's)")
    p.add_argument("--assignment", default="backprop_ninja")
    p.add_argument("--exchange", default="/srv/nbgrader/exchange", help="nbgrader's Exchange.root")
    p.add_argument("--course-id", default="backprop-ninja", help="nbgrader's CourseDirectory.course_id")
    p.add_argument("--state", help="state, logs and the class command's --out (default: COURSE/gradeonsubmit)")
    p.add_argument("--interval", type=float, default=2.0, help="seconds between looks at the exchange")
    p.add_argument("--limit", type=int, default=3, help="graded submissions per student per window")
    p.add_argument("--window-hours", type=float, default=24.0)
    p.add_argument("--deadline", help="ISO date-time (UTC unless it says); later submissions are not graded")
    p.add_argument("--once", action="store_true", help="one look, grade what it found, then exit")
    args = p.parse_args(ours)
    state = Path(args.state or Path(args.course) / "gradeonsubmit").resolve()
    cmd = argparse.ArgumentParser(prog="CLASS COMMAND OPTIONS (after --)", add_help=False)
    options.add_arguments(cmd)
    staging = state / "staging"
    fixed = [args.assignment, str(staging), "--course", args.course, "--out", str(state / "autograde")]
    return args, options.from_args(cmd.parse_args([*fixed, *theirs, "--no-progress"]))


def main(argv=None) -> int:
    args, opts = parse(argv)
    state = opts.submissions.parent
    state.mkdir(parents=True, exist_ok=True)
    opts.submissions.mkdir(exist_ok=True)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        handlers=[logging.StreamHandler(), logging.FileHandler(state / "gradeonsubmit.log")],
    )
    lock = open(state / ".lock", "w")
    try:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise SystemExit(f"{state}: another gradeonsubmit service runs on this state") from None
    try:
        with run.session(opts) as session:
            if opts.canary:  # once per start, before any student: not once per submission
                session.canary()
            Service(args, opts, session).run(once=args.once)
    except options.GradingError as exc:
        log.error("cannot grade: %s", exc)
        time.sleep(args.interval * 30)  # the hub restarts a service that died: not in a tight loop
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
