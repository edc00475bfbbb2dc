"""The class command's run: every student of the class graded, N at once, merged one at a time.

``run`` takes the output folder (``_started``: one run per folder, a full or unwritable one ends with one
message), finds the submissions, skips the students the ledger says are done, grades the instructor's
solutions first (``canary``; not when nobody is left to grade), grades the rest in a pool of threads
(``grade_one``: prechecks, a scratch course, a grading process of its own), and, in this thread only, one
student at a time, collects its feedback, merges its grades into the real gradebook and records it in the
ledger; then exports grades.csv and writes the summary. ``Session`` is what a run sets up once and its
per-student steps; ``session`` keeps one open, for the grade-on-submit service
(``grader.instructor.gradeonsubmit``).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..instructor.csvexport import PLUGIN
from . import feedback, gradebook, precheck, sandbox, shards, zygote
from .canary import by_hand, canary
from .ledger import Ledger
from .options import GradingError, Options
from .scratch import Scratch, make_template, write_config
from .submissions import Student, discover
from .summary import summarize
from .worker import Result, grade, run_child, run_nbgrader


@dataclass
class Outcome:
    student: str
    graded: bool
    reason: str = ""
    seconds: float = 0.0
    log: str = ""
    manual: bool = True  # when not graded: flag the cells for manual grading


def _last_error(log: str) -> str:
    lines = [line for line in log.splitlines() if "[ERROR]" in line or "Error" in line]
    return (lines[-1] if lines else (log.strip().splitlines() or ["no output"])[-1])[-300:]


def grade_one(opts: Options, template: Path, work: Path, s: Student) -> Outcome:
    """Grade one student in its own scratch course (runs in a worker thread; touches only its folder)."""
    start = time.monotonic()
    sc = Scratch(work, s.key, opts.assignment)
    s.report = precheck.check(s.id, s.files, opts.source, sc.checked, s.problems)
    if not s.report.notebooks:  # nothing nbgrader could open: every notebook scores 0, the reasons say why
        return Outcome(s.id, True, "no notebook could be graded", 0.0, "", manual=False)
    sc.create(template, s.report.notebooks, s.timestamp)
    # the submission as the real gradebook has it (TA overrides, comments, flags): autograde treats it as in the course
    gradebook.seed(gradebook.real_db(opts), opts.assignment, s.id, s.key, sc.gradebook)
    with sc.runtime() as run_dir:
        write_config(sc.root, opts, f"sqlite:///{sc.gradebook}", run_dir)
        kernel = sc.kernelspec(opts, run_dir)
        try:
            code, out = run_child(
                grade,
                (str(sc.root), opts.assignment, s.key, str(opts.memory), str(sc.result), str(kernel)),
                sc.root,
                sc.env(opts.course, run_dir, opts.sandbox),
                opts.student_timeout,
            )
        except TimeoutError as exc:  # the process group is gone: nbgrader and, with it, the sandboxed kernel
            return Outcome(
                s.id,
                False,
                f"stopped after {opts.student_timeout} s (the per-student wall-clock limit)",
                time.monotonic() - start,
                str(exc),
            )
    result = Result.read(sc.result)
    if result is None:
        return Outcome(
            s.id, False, f"the grading process died (exit {code}): {_last_error(out)}", time.monotonic() - start, out
        )
    log = out + result.log
    if not result.autograde:
        return Outcome(
            s.id, False, f"nbgrader autograde failed: {_last_error(result.log)}", time.monotonic() - start, log
        )
    # what the kernel wrote beside its notebooks stayed in its sandbox's tmpfs; the host copy it started from goes
    shutil.rmtree(sc.kernel, ignore_errors=True)
    reasons = list(result.notes)
    if not result.feedback:
        reasons.append(f"nbgrader generate_feedback failed: {_last_error(result.log)}")
    return Outcome(s.id, True, "; ".join(reasons), time.monotonic() - start, log)


def _check(opts: Options) -> None:
    """Refuse what cannot be graded: no source notebooks, no working sandbox (unless --no-sandbox)."""
    if not any(opts.source.glob("*.ipynb")):
        raise GradingError(f"{opts.source}: no source notebooks of assignment {opts.assignment!r}")
    if opts.sandbox:
        try:
            sandbox.probe()
        except sandbox.SandboxError as exc:
            raise GradingError(f"refusing to grade without a sandbox: {exc}") from None


def run(opts: Options) -> dict:
    """Grade the class; return the summary (also written to ``--out``)."""
    with _started(opts):
        return _grade_class(opts)


@contextmanager
def _started(opts: Options):
    """A run's start-up, the class command's and the grade-on-submit service's alike: resolve the paths,
    refuse what cannot be graded (``_check``), make ``--out`` (the shard's own with K > 1), check it takes
    ``ROOM`` bytes and lock it (``out_lock``). An OSError while the block runs (a full disk, a read-only or
    vanished ``--out``) ends in one message."""
    opts.course, opts.submissions, opts.out = (p.resolve() for p in (opts.course, opts.submissions, opts.out))
    _check(opts)
    opts.out = shards.task_out(opts.out, opts.shard)  # with K > 1: OUT/shards/I-of-K/ (grader/autograde/shards.py)
    try:
        opts.out.mkdir(parents=True, exist_ok=True)
        _check_writable(opts.out)
        with out_lock(opts):
            try:
                yield
            except GradingError:
                _check_writable(opts.out)  # nbgrader's own message for a full disk misleads ("upgrade the db")
                raise
    except OSError as exc:  # a full disk, a read-only or vanished --out: one message; a re-run repairs it
        raise GradingError(
            f"cannot write the results in {opts.out}: {exc.strerror or exc} ({exc.filename or 'a file there'}). "
            f"Nothing graded so far is lost: the gradebook and ledger.jsonl hold every student merged, and a re-run "
            f"with the same --out grades the rest once there is room (or the folder is writable)."
        ) from None


ROOM = 8 * 2**20  # what --out must take before grading starts (the scratch template, a few feedback pages)


def _check_writable(out: Path) -> None:
    """Raise OSError (ENOSPC, EROFS, EACCES...) unless ``out`` takes ROOM bytes now."""
    fd, name = tempfile.mkstemp(prefix=".room-", dir=out)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(b"\0" * ROOM)
            f.flush()
            os.fsync(f.fileno())
    finally:
        os.unlink(name)


@contextmanager
def out_lock(opts: Options):
    """One run per output folder: a second one says who holds it and stops.

    With K > 1 the folder is the shard's own (``OUT/shards/I-of-K/``, ``shards.task_out``), so the lock is
    per shard: shards run at once, a second run of one shard (a task retried while the first goes on) stops.
    """
    import fcntl
    import socket

    path = opts.out / ".lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "r+") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = f.read().strip() or "another run"
            raise GradingError(
                f"{opts.out} is being graded by {holder}: wait for it to finish, or give this run another --out"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        f.flush()
        yield


class Session:
    """What a run sets up once, before any student, and the one-at-a-time record of each graded student.

    Set up: the work folder, the ledger, the scratch template (two ``generate_assignment``, the gradebook's
    alembic), the zygote's preload list, the real gradebook's URL, the hidden tests' lines. ``grade`` grades
    one student (in any thread), ``record`` collects its feedback, merges it into the real gradebook and
    adds it to the ledger (in one thread only). ``_grade_class`` runs one class through a session; the
    grade-on-submit service (``grader.instructor.gradeonsubmit``) keeps one open while it runs, so that
    each new submission pays only its own grading."""

    def __init__(self, opts: Options, work: Path) -> None:
        self.opts = opts
        self.work = work  # shards.work_dir(...): with K > 1, this run's own
        self.ledger = Ledger(opts.out / "ledger.jsonl")
        self.template = make_template(opts, self.work)
        opts.preload = zygote.preload(opts.source)
        self.db = gradebook.real_db(opts)
        self.secret = feedback.hidden_lines(opts.source)

    def canary(self) -> dict:
        """The instructor's solutions graded first (``canary``); GradingError unless they get full marks."""
        checked = canary(self.opts, self.work, self.grade)
        print(
            f"canary: the instructor's solutions get {checked['score']:g}/{checked['max_score']:g} here "
            f"({checked['seconds']:g} s){by_hand(checked)}",
            file=sys.stderr,
            flush=True,
        )
        return checked

    def grade(self, s: Student) -> Outcome:
        return grade_one(self.opts, self.template, self.work, s)

    @staticmethod
    def outcome(s: Student, fut: Future) -> Outcome:
        """The outcome of ``fut`` (``grade(s)`` run in a pool); a crash is an outcome too."""
        try:
            return fut.result()
        except Exception as exc:  # a bug or a full disk while grading one student: record, go on
            s.report = s.report or precheck.Report(s.id, problems=list(s.problems))
            return Outcome(s.id, False, f"grading crashed: {type(exc).__name__}: {exc}")

    def is_done(self, s: Student, in_gradebook: set[str]) -> bool:
        """Whether the ledger has merged this very submission (and the gradebook still has it)."""
        return not self.opts.force and self.ledger.is_done(s.id, s.digest) and s.id in in_gradebook

    def record(self, s: Student, outcome: Outcome) -> dict:
        """Collect ``s``'s feedback, merge its grades, add it to the ledger; the ledger's entry."""
        opts = self.opts
        sc = Scratch(self.work, s.key, opts.assignment)
        extra = []
        if outcome.graded:
            extra = feedback.collect(sc.autograded, sc.feedback, opts.out, s.key, opts.assignment, self.secret)
        # one student at a time, from this process only
        graded = sc.gradebook if outcome.graded else None
        with shards.student_lock(self.db, s.id):  # whoever else merges this student waits its turn
            extra += gradebook.merge(self.db, opts.assignment, s.id, graded, outcome.manual, key=s.key)
        (opts.out / "logs").mkdir(exist_ok=True)
        (opts.out / "logs" / f"{s.key}.log").write_text(outcome.log)
        reasons = [r for r in [outcome.reason, *extra] if r]
        entry = {
            "student": s.id,
            "digest": s.digest,
            "graded": outcome.graded,
            "reasons": reasons,
            "problems": s.report.problems,
            "repairs": s.report.repairs,
            "flags": s.report.flags,
            "missing": s.report.missing,
            "seconds": round(outcome.seconds, 1),
        }
        self.ledger.add(entry)
        shutil.rmtree(sc.root, ignore_errors=True)
        return entry

    def close(self) -> None:
        shutil.rmtree(self.work / "template", ignore_errors=True)
        if self.opts.shard[1] > 1:  # this run's own scratch folder
            shutil.rmtree(self.work, ignore_errors=True)


@contextmanager
def session(opts: Options):
    """A ``Session`` kept open, its output folder locked (``_started``), while the block runs."""
    with _started(opts):
        open_session = Session(opts, shards.work_dir(opts.out, opts.shard))
        try:
            yield open_session
        finally:
            open_session.close()


def _grade_class(opts: Options) -> dict:
    work = shards.work_dir(opts.out, opts.shard)  # with K > 1: one per run, removed when its run is gone
    students = discover(opts, work)
    if not students and (opts.shard[1] == 1 or not discover(dataclasses.replace(opts, shard=(1, 1)), work)):
        raise GradingError(f"{opts.submissions}: no submissions found")  # (a shard of a class may have none)
    session = Session(opts, work)
    try:
        in_gradebook = set(gradebook.scores(session.db, opts.assignment, [s.id for s in students]))
        todo, skipped = [], []
        for s in students:
            (skipped if session.is_done(s, in_gradebook) else todo).append(s)
        checked = None
        if opts.canary and todo:  # before anyone is graded; with nobody left to grade there is nothing to guard
            checked = session.canary()
        elif opts.canary:
            checked = {"skipped": "nobody is left to grade"}
        return _grade(session, students, todo, skipped, checked)
    finally:
        session.close()


def _grade(session: Session, students: list[Student], todo: list[Student], skipped: list[Student], checked) -> dict:
    """Grade ``todo`` in a pool of ``--workers`` threads, recording each in this thread; export; summarize."""
    opts = session.opts
    bar = None
    if opts.progress:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), file=sys.stderr, unit="student", desc="grading", dynamic_ncols=True)
    failures = 0
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=max(1, opts.workers)) as pool:
        futures = {pool.submit(session.grade, s): s for s in todo}
        for fut in as_completed(futures):
            s = futures[fut]
            outcome = session.outcome(s, fut)
            session.record(s, outcome)
            failures += not outcome.graded
            if bar is not None:
                bar.set_postfix_str(f"failures {failures}")
                bar.update(1)
    if bar is not None:
        bar.close()
    seconds = time.monotonic() - start
    export(session)
    return summarize(opts, students, session.ledger, len(todo), len(skipped), seconds, checked)


def export(session: Session) -> None:
    """``grades.csv`` in ``--out``: ``nbgrader export`` of the real gradebook."""
    out = session.opts.out / "grades.csv"
    proc = run_nbgrader(
        session.template, "export", "--to", str(out), f"--CourseDirectory.db_url={session.db}", f"--exporter={PLUGIN}"
    )
    if proc.returncode != 0:
        raise GradingError(f"nbgrader export failed:\n{proc.stdout[-3000:]}")
