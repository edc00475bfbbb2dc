"""Grade on submit: a long-running instructor service that grades each submission as it arrives.

``python -m grader.instructor.gradeonsubmit --course DIR --assignment backprop_ninja --exchange ROOT``

Run by JupyterHub as a managed service under the instructor's Unix account (docs/jupyterhub.md), or by
hand. Every few seconds it looks at nbgrader's exchange (``ROOT/COURSE_ID/inbound``); when a student has
handed in something new it

1. collects it with ``nbgrader collect --update`` (into the course's ``submitted/``),
2. grades it with the class command, ``python -m grader autograde`` (sandboxed, parallel, resumable: its
   ledger in ``STATE/autograde`` skips a student already merged, so a restart never grades twice),
   called through its command line only,
3. copies the feedback it wrote (hidden tests removed) into the course's ``feedback/`` with the
   submission's ``timestamp.txt`` and ``submission_secret.txt`` and runs ``nbgrader release_feedback``, so
   the student's ``fetch_feedback`` (the Assignments tab) finds it.

Rate limit: at most ``--limit`` graded submissions per student per ``--window`` (default 3 per 24 h), so
the feedback is no oracle for the hidden tests. A submission over the limit is kept (the exchange and
``submitted/`` have it), graded when the window allows or by the instructor, and its released feedback is
a page saying so. After ``--deadline`` nothing is graded automatically and the page says that instead.

State: ``STATE/state.json``, one record per submission keyed by ``student+timestamp`` (the exchange's own
name for it), written atomically (temporary file, fsync, rename) before and after every step; a
round in progress is finished first after a restart. Every action is logged to stderr and
``STATE/gradeonsubmit.log``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import fcntl
import html
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger("gradeonsubmit")

TS_FORMAT = "%Y-%m-%d %H:%M:%S.%f %Z"  # nbgrader's timestamp, e.g. 2026-12-01 10:25:25.123456 UTC


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


def _env() -> dict[str, str]:
    """nbgrader runs ``alembic`` from PATH: this Python's bin first."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def _die_with_parent() -> None:
    """In a child: be killed when the service dies (a SIGKILL'ed service leaves no grader behind)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Service:
    def __init__(self, args):
        self.course = Path(args.course).resolve()
        self.assignment = args.assignment
        self.exchange = Path(args.exchange).resolve()
        self.course_id = args.course_id
        self.state_dir = Path(args.state or self.course / "gradeonsubmit").resolve()
        self.interval = args.interval
        self.limit = args.limit
        self.window = args.window_hours * 3600
        self.deadline = parse_deadline(args.deadline) if args.deadline else None
        self.autograde_args = list(args.autograde_arg or [])
        self.workers = args.workers
        self.canary_done = not args.canary
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.state_path = self.state_dir / "state.json"
        self.out = self.state_dir / "autograde"
        self.state = self._load()

    # -- state ---------------------------------------------------------------------------------------
    def _load(self) -> dict:
        if self.state_path.exists():
            return json.loads(self.state_path.read_text())
        return {"submissions": {}, "rounds": 0, "current": None}

    def save(self) -> None:
        write_json_atomic(self.state_path, self.state)

    @property
    def subs(self) -> dict:
        return self.state["submissions"]

    # -- nbgrader ------------------------------------------------------------------------------------
    def nbgrader(self, *args: str) -> subprocess.CompletedProcess:
        cmd = [
            sys.executable,
            "-m",
            "nbgrader",
            *args,
            f"--CourseDirectory.root={self.course}",
            f"--CourseDirectory.course_id={self.course_id}",
            f"--Exchange.root={self.exchange}",
        ]
        log.info("run: nbgrader %s", " ".join(args))
        proc = subprocess.run(
            cmd, cwd=self.course, env=_env(), capture_output=True, text=True, preexec_fn=_die_with_parent, check=False
        )
        if proc.returncode:
            tail = proc.stdout[-2000:] + proc.stderr[-2000:]
            log.error("nbgrader %s failed (%d):\n%s", args[0], proc.returncode, tail)
        return proc

    def inbound(self) -> dict[str, dict]:
        """The exchange's submissions of this assignment: key student+timestamp -> record."""
        found = {}
        folder = self.exchange / self.course_id / "inbound"
        for entry in sorted(folder.glob(f"*+{self.assignment}+*")) if folder.is_dir() else []:
            parts = entry.name.rsplit("+", 3) if entry.name.count("+") >= 3 else entry.name.rsplit("+", 2)
            if len(parts) < 3 or parts[1] != self.assignment:
                continue
            student, _, stamp = parts[0], parts[1], parts[2]
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
        """One look at the exchange; True when something was done."""
        if self.state.get("current"):
            self.finish_round()
            return True
        now = time.time()
        new = {k: v for k, v in self.inbound().items() if k not in self.subs}
        for key, rec in new.items():
            self.subs[key] = {**rec, "status": "new", "seen": now}
            log.info("new submission %s (%s)", key, rec["folder"])
        if new:
            self.save()
            self.nbgrader("collect", self.assignment, "--update")
        pending = [k for k, s in self.subs.items() if s["status"] in ("new", "held")]
        if not pending:
            return bool(new)
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
            counted = sorted(
                s["graded_at"]
                for s in self.subs.values()
                if s["student"] == student and s.get("graded_at") and now - s["graded_at"] < self.window
            )
            if len(counted) < self.limit:
                to_grade.append(key)
            elif latest["status"] != "held" or latest.get("until") != counted[0] + self.window:
                latest.update(status="held", until=counted[0] + self.window, at=now)
                notes.append(key)
                log.info(
                    "%s held: %d graded in the last %g h; waits until %s",
                    key,
                    len(counted),
                    self.window / 3600,
                    _hhmm(latest["until"]),
                )
        self.save()
        if notes:
            for key in notes:
                self.write_note(key)
            self.nbgrader("release_feedback", self.assignment)
        if to_grade:
            self.start_round(to_grade)
            self.finish_round()
        return bool(new or notes or to_grade)

    def start_round(self, keys: list[str]) -> None:
        n = self.state["rounds"] + 1
        staging = self.state_dir / "rounds" / str(n) / "submitted"
        if staging.exists():
            shutil.rmtree(staging)
        for key in keys:
            s = self.subs[key]
            folder = Path(s["student"]) / self.assignment
            shutil.copytree(self.course / "submitted" / folder, staging / folder)
            s.update(status="grading", round=n)
        self.state["rounds"] = n
        self.state["current"] = {"round": n, "keys": keys, "started": time.time()}
        self.save()
        log.info("round %d: grading %s", n, ", ".join(keys))

    def finish_round(self) -> None:
        cur = self.state["current"]
        n, keys = cur["round"], cur["keys"]
        staging = self.state_dir / "rounds" / str(n) / "submitted"
        cmd = [
            sys.executable,
            "-m",
            "grader",
            "autograde",
            self.assignment,
            str(staging),
            "--course",
            str(self.course),
            "--out",
            str(self.out),
            "--no-progress",
            *(["--workers", str(self.workers)] if self.workers else []),
            *(["--no-canary"] if self.canary_done else []),
            *self.autograde_args,
        ]
        log.info("round %d: %s", n, " ".join(cmd))
        start = time.monotonic()
        proc = subprocess.run(
            cmd, cwd=self.course, env=_env(), capture_output=True, text=True, preexec_fn=_die_with_parent, check=False
        )
        (self.state_dir / "rounds" / str(n) / "autograde.log").write_text(proc.stdout + proc.stderr)
        if proc.returncode:
            log.error("round %d: the class command failed (%d): %s", n, proc.returncode, proc.stderr[-1500:])
            if "is being graded by" in proc.stderr:
                return  # a grader from before a restart still holds --out: try again at the next poll
            cur["failures"] = cur.get("failures", 0) + 1
            if cur["failures"] < 3:
                self.save()
                return
            for key in keys:
                self.subs[key].update(status="failed", at=time.time())
            self.state["current"] = None
            self.save()
            return
        self.canary_done = True
        log.info("round %d: graded in %.1f s", n, time.monotonic() - start)
        ledger = self._ledger()
        released = []
        for key in keys:
            s = self.subs[key]
            entry = ledger.get(s["student"], {})
            src = self.out / "feedback" / s["student"] / self.assignment
            if not entry.get("graded") or not any(src.glob("*.html")):
                s.update(status="failed", at=time.time(), reasons=entry.get("reasons", []))
                log.error("%s: not graded by the class command: %s", key, entry.get("reasons"))
                continue
            s.update(status="graded", graded_at=time.time())
            self.publish(key, src, staging / s["student"] / self.assignment)
            released.append(key)
        self.state["current"] = None
        self.save()
        if released:
            self.nbgrader("release_feedback", self.assignment)
            for key in released:
                self.subs[key]["released_at"] = time.time()
                log.info("%s: feedback released (%.1f s after it was seen)", key, time.time() - self.subs[key]["seen"])
            self.save()

    def _ledger(self) -> dict:
        entries = {}
        path = self.out / "ledger.jsonl"
        for line in path.read_text().splitlines() if path.exists() else []:
            try:
                e = json.loads(line)
            except ValueError:
                continue
            entries[e.get("student")] = e
        return entries

    def graded_count(self, student: str, now: float) -> int:
        return sum(
            1
            for s in self.subs.values()
            if s["student"] == student and s.get("graded_at") and now - s["graded_at"] < self.window
        )

    def _feedback_dir(self, student: str, submission: Path) -> Path:
        dest = self.course / "feedback" / student / self.assignment
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        for name in ("timestamp.txt", "submission_secret.txt"):
            if (submission / name).exists():
                shutil.copy(submission / name, dest / name)
        return dest

    def publish(self, key: str, src: Path, submission: Path) -> None:
        s = self.subs[key]
        dest = self._feedback_dir(s["student"], submission)
        n = self.graded_count(s["student"], time.time())
        banner = (
            f'<div id="gradeonsubmit-note" style="border:2px solid #2a7;padding:8px;margin:8px">'
            f"Graded automatically on submission ({html.escape(s['timestamp'])}): graded submission {n} of "
            f"at most {self.limit} per {self.window / 3600:g} h.</div>"
        )
        for page in src.glob("*.html"):
            text = page.read_text()
            text = text.replace("<body>", "<body>" + banner, 1) if "<body>" in text else banner + text
            (dest / page.name).write_text(text)
            os.chmod(dest / page.name, 0o644)

    def write_note(self, key: str) -> None:
        s = self.subs[key]
        submission = self.course / "submitted" / s["student"] / self.assignment
        dest = self._feedback_dir(s["student"], submission)
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
        page = (
            "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Not graded yet</title></head><body>"
            f"<h1>Not graded yet</h1><p id='gradeonsubmit-held'>{html.escape(why)}</p></body></html>"
        )
        for nb in sorted(submission.glob("*.ipynb")):
            (dest / f"{nb.stem}.html").write_text(page)
            os.chmod(dest / f"{nb.stem}.html", 0o644)
        s["note"] = why
        log.info("%s: note released: %s", key, why)
        self.save()

    def run(self, once: bool = False) -> None:
        lock = open(self.state_dir / ".lock", "w")
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SystemExit(f"{self.state_dir}: another gradeonsubmit service runs on this state") from None
        log.info(
            "watching %s for %s (limit %d per %g h, deadline %s, state %s)",
            self.exchange / self.course_id / "inbound",
            self.assignment,
            self.limit,
            self.window / 3600,
            self.deadline or "none",
            self.state_path,
        )
        while True:
            try:
                busy = self.poll()
            except Exception:  # a bad submission or a full disk must not stop the service: log, go on
                log.exception("poll failed")
                busy = False
            if once and not self.state.get("current"):
                return
            if not busy:
                time.sleep(self.interval)


def _hhmm(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%d %H:%M")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m grader.instructor.gradeonsubmit", description=__doc__.split("\n")[0])
    p.add_argument("--course", required=True, help="the nbgrader course directory (the instructor's)")
    p.add_argument("--assignment", default="backprop_ninja")
    p.add_argument("--exchange", default="/srv/nbgrader/exchange", help="nbgrader's Exchange.root")
    p.add_argument("--course-id", default="backprop-ninja", help="nbgrader's CourseDirectory.course_id")
    p.add_argument("--state", help="state, logs and the class command's --out (default: COURSE/gradeonsubmit)")
    p.add_argument("--interval", type=float, default=5.0, help="seconds between looks at the exchange")
    p.add_argument("--limit", type=int, default=3, help="graded submissions per student per window")
    p.add_argument("--window-hours", type=float, default=24.0)
    p.add_argument("--deadline", help="ISO date-time (UTC unless it says); later submissions are not graded")
    p.add_argument("--workers", type=int, help="the class command's --workers (default: its own)")
    p.add_argument("--no-canary", dest="canary", action="store_false", help="never run the class command's canary")
    p.add_argument("--autograde-arg", action="append", help="one more argument for the class command (repeatable)")
    p.add_argument("--once", action="store_true", help="one look (and one round), then exit")
    args = p.parse_args(argv)
    svc_dir = Path(args.state or Path(args.course) / "gradeonsubmit")
    svc_dir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        handlers=[logging.StreamHandler(), logging.FileHandler(svc_dir / "gradeonsubmit.log")],
    )
    Service(args).run(once=args.once)
    return 0


if __name__ == "__main__":
    sys.exit(main())
