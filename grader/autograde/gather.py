"""``python -m grader gather``: the class's results, once every shard's task has ended.

The shards of a class (``--shard I/K`` or ``--shard auto``: a Slurm array, a Kubernetes Indexed Job) grade
into one gradebook and write their own folders, ``OUT/shards/I-of-K/`` (``grader/autograde/shards.py``).
This command, run as the final job (Slurm: ``sbatch --dependency=afterany:$ARRAY_JOB``), writes in ``OUT``:

- ``grades.csv``: ``nbgrader export`` of the gradebook, every shard's students (the gradebook is the truth);
- ``summary.md`` / ``summary.json``: the class's summary (scores from the gradebook, each student's reasons
  from its shard's ledger), with a line per shard and the students that are not in the gradebook;
- ``feedback/``, ``autograded/``, ``logs/``: every student's files in one place, copied from the shard folder
  that graded the student last.

Given the submissions folder too, it checks the class is complete: a student handed in but not in the
gradebook (its task failed, or has not run) or whose submission changed since it was graded is listed, and
the command exits 1 (the files are written all the same). It grades nothing and may be run again.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from ..instructor.csvexport import PLUGIN
from . import shards
from .cli import reported
from .gradebook import real_db
from .ledger import Ledger
from .options import GradingError, Options
from .scratch import write_config
from .submissions import Student, discover
from .summary import summarize
from .summary import summary_text as run_summary_text
from .worker import run_nbgrader


def gradebook_students(db_url: str, assignment: str) -> list[str] | None:
    """The ids with a submission of ``assignment`` in the gradebook (None: no such assignment there)."""
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(db_url) as gb:
        try:
            return sorted(s.student.id for s in gb.assignment_submissions(assignment))
        except MissingEntry:
            return None


def _newest(paths: list[Path]) -> Path | None:
    found = [p for p in paths if p.exists()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def _replace_tree(src: Path, dst: Path) -> None:
    """``dst`` becomes a copy of ``src`` (copied beside it first, then swapped in)."""
    if src.resolve() == dst.resolve():
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}-", dir=dst.parent))
    shutil.copytree(src, tmp / "copy")
    if dst.exists():
        shutil.rmtree(dst)
    os.replace(tmp / "copy", dst)
    tmp.rmdir()


def gather(course: Path, assignment: str, out: Path, db_url: str | None, submissions: Path | None = None) -> dict:
    """Write the class's grades.csv, summary and files in ``out``; return the summary (see the module)."""
    out, course = out.resolve(), course.resolve()
    folders = shards.folders(out)
    opts = Options(course=course, assignment=assignment, submissions=submissions or out, out=out, db_url=db_url)
    db = real_db(opts)
    in_gradebook = gradebook_students(db, assignment)
    if in_gradebook is None and not folders:
        raise GradingError(
            f"{out}: no shard has run (no {shards.SHARDS_FOLDER}/I-of-K/), and {assignment!r} is "
            f"not in the gradebook {db}"
        )
    in_gradebook = in_gradebook or []

    # every shard's ledger, the latest written last: a student graded in two (K changed) keeps the latest
    ledger = Ledger(out / ".gather-no-ledger")
    per_shard, summaries = {}, {}
    for folder in sorted(
        folders, key=lambda f: (f / "ledger.jsonl").stat().st_mtime if (f / "ledger.jsonl").is_file() else 0
    ):
        own = Ledger(folder / "ledger.jsonl")
        ledger.done.update(own.done)
        key = "." if folder == out else folder.name
        per_shard[key] = own.done
        if (folder / "summary.json").is_file():
            summaries[key] = json.loads((folder / "summary.json").read_text())

    handed_in, changed = None, []
    if submissions is not None:
        with tempfile.TemporaryDirectory(prefix="bn-gather-") as tmp:  # zips are unpacked to read their digest
            found = discover(Options(assignment, submissions.resolve(), course, out), Path(tmp))
        handed_in = {s.id: s.digest for s in found}
        changed = sorted(
            sid for sid, digest in handed_in.items() if sid in ledger.done and ledger.done[sid].get("digest") != digest
        )
    everyone = sorted(set(in_gradebook) | set(ledger.done) | set(handed_in or ()))
    missing = sorted(set(everyone) - set(in_gradebook))

    # each student's feedback, autograded notebooks and log in one place, by its key (an odd id's safe name)
    for key in (Student(sid).key for sid in everyone):
        for kind in ("feedback", "autograded"):
            src = _newest([f / kind / key / assignment for f in folders])
            if src is not None:
                _replace_tree(src, out / kind / key / assignment)
        log = _newest([f / "logs" / f"{key}.log" for f in folders])
        if log is not None and log.resolve() != (out / "logs" / f"{key}.log").resolve():
            (out / "logs").mkdir(exist_ok=True)
            shutil.copy2(log, out / "logs" / f"{key}.log")

    # grades.csv over every shard: nbgrader export of the gradebook, in a scratch course of its own
    with tempfile.TemporaryDirectory(prefix="bn-gather-") as tmp:
        write_config(Path(tmp), opts, db)
        partial = out / ".grades.csv.tmp"
        proc = run_nbgrader(
            Path(tmp), "export", "--to", str(partial), f"--CourseDirectory.db_url={db}", f"--exporter={PLUGIN}"
        )
        if proc.returncode != 0:
            raise GradingError(f"nbgrader export failed:\n{proc.stdout[-3000:]}")
        os.replace(partial, out / "grades.csv")

    values = list(summaries.values())
    opts.workers = max((s.get("workers", 0) for s in values), default=0)
    opts.sandbox = all(s.get("sandbox", False) for s in values) if values else False
    canaries = [s["canary"] for s in values if s.get("canary")]  # a shard with nobody to grade skipped its own
    canary = next((c for c in canaries if "score" in c), canaries[0] if canaries else None)
    summary = summarize(
        opts,
        [Student(sid) for sid in everyone],
        ledger,
        sum(s.get("graded_now", 0) for s in values),
        sum(s.get("skipped_already_graded", 0) for s in values),
        max((s.get("seconds", 0) for s in values), default=0),
        canary,
    )
    summary["gathered"] = True
    summary["shards"] = {
        key: {
            "students": len(done),
            "graded_now": summaries.get(key, {}).get("graded_now"),
            "seconds": summaries.get(key, {}).get("seconds"),
            "finished": key in summaries,
        }
        for key, done in per_shard.items()
    }
    summary["missing"] = missing
    summary["changed_since_graded"] = changed
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    (out / "summary.md").write_text(summary_text(summary))
    return summary


def summary_text(summary: dict) -> str:
    text = run_summary_text(summary)
    lines = ["", f"## Shards ({len(summary['shards'])}; seconds is the longest task's)", ""]
    for key, s in summary["shards"].items():
        state = f"{s['graded_now']} graded by its last run, {s['seconds']} s" if s["finished"] else "did not finish"
        lines.append(f"- {key}: {s['students']} students in its ledger; {state}")
    lines += ["", f"## Not in the gradebook ({len(summary['missing'])})", ""]
    lines += [f"- {sid}" for sid in summary["missing"]] or ["none: every student is graded"]
    if summary["changed_since_graded"]:
        lines += ["", f"## Handed in again since graded ({len(summary['changed_since_graded'])}): rerun the shards", ""]
        lines += [f"- {sid}" for sid in summary["changed_since_graded"]]
    return text + "\n".join(lines) + "\n"


def main(args) -> int:
    out = Options(args.assignment, Path("."), out=args.out).out  # autograde's default --out
    submissions = Path(args.submissions) if args.submissions else None
    summary = reported(
        lambda: gather(Path(args.course), args.assignment, out, args.db_url, submissions),
        summary_text,
        out,
        args.assignment,
    )
    if summary is None:
        return 2
    incomplete = summary["missing"] or summary["changed_since_graded"]
    if incomplete:
        print(
            f"incomplete: {len(summary['missing'])} student(s) not in the gradebook, "
            f"{len(summary['changed_since_graded'])} handed in again since graded",
            file=sys.stderr,
        )
    return 1 if incomplete else 0


def add_arguments(p) -> None:
    p.add_argument("assignment", help="the assignment's name (as given to autograde)")
    p.add_argument(
        "submissions",
        nargs="?",
        help="the submissions folder the shards graded: given, the class is checked complete (exit 1 if not)",
    )
    p.add_argument("--course", default=".", help="the nbgrader course directory (default: the current one)")
    p.add_argument("--out", help="the shards' common --out (default: build/autograde/ASSIGNMENT)")
    p.add_argument("--db-url", help="the shards' gradebook (default: sqlite:///COURSE/gradebook.db)")
