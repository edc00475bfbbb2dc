"""``python -m grader autograde``: grade a whole class with nbgrader, in parallel, sandboxed, resumable.

nbgrader grades students one after another, one malformed submission can stop the batch, and its
feedback shows the hidden tests. This command drives nbgrader's own CLI and API, unchanged:

1. **Prechecks** (``grader.precheck``, in this process, each student's just before it is graded): every
   submission is read first; what can be repaired is repaired, the rest is reported per student and
   never stops the others.
2. **Workers**: each student is graded in its own scratch course (a copy of source/, the student's
   checked notebooks, its own SQLite gradebook made by ``nbgrader generate_assignment``) by nbgrader's
   ``autograde`` and ``generate_feedback`` (``NbGraderAPI``), in a process of its own, forked from a
   server that has imported nbgrader once (``grader._gradeworker``), killed as a process group at the
   wall-clock limit; the kernel is sandboxed and memory-limited (``grader.sandbox``), each cell has
   a timeout. N of them run at once (default: the number of cores).
3. **Merge**: the scratch gradebook's grades and comments are copied into the one real gradebook by
   this process only, one student at a time (nbgrader's ``Gradebook`` API; SQLite or PostgreSQL by
   ``--db-url``). A student's old submission is replaced, never added to.
4. **Ledger**: ``ledger.jsonl`` (one JSON line per merged student, fsync'ed) records what is done and
   the digest of what was graded. A re-run skips those students (idempotent); a killed run resumes.
5. **Outputs** in ``--out``: ``grades.csv`` (``nbgrader export``), ``feedback/<student>/<assignment>/``
   (HTML without the hidden tests' source), ``autograded/``, ``summary.md`` and ``summary.json``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from . import precheck, sandbox
from .autograde import shards  # --shard auto, where a shard writes (scheduler arrays: grader/autograde/shards.py)
from .course import tool_env

STUDENT_ID = re.compile(r"^[A-Za-z0-9_@+][A-Za-z0-9_.@+-]*$")
MAX_OUTPUT_CHARS = 20_000  # per output in the autograded notebook and feedback (LimitOutput counts lines)
MAX_UNZIPPED = 200 * 2**20


class GradingError(RuntimeError):
    """The class cannot be graded (bad arguments, no sandbox, no assignment): the message says why."""


@dataclass
class Options:
    course: Path
    assignment: str
    submissions: Path
    out: Path
    workers: int = os.cpu_count() or 1
    sandbox: bool = True
    db_url: str | None = None
    cell_timeout: int = 120
    student_timeout: int = 900
    memory: int = 4 * 2**30
    shard: tuple[int, int] = (1, 1)
    progress: bool = True
    force: bool = False
    canary: bool = True  # grade the instructor's solution notebooks first; refuse the class unless full marks
    zygote: bool = True  # kernels forked from a per-student zygote (grader/zygote.py); False: a new Python each
    preload: list[str] = field(default_factory=list)  # what the zygote imports (set by run(): see preload())


@dataclass
class Student:
    id: str
    files: dict[str, Path] = field(default_factory=dict)  # notebook name -> handed-in file
    problems: list[str] = field(default_factory=list)
    timestamp: str | None = None
    raw: list[Path] = field(default_factory=list)  # every file handed in, usable or not (for the digest)
    digest: str = ""
    report: precheck.Report | None = None


@dataclass
class Outcome:
    student: str
    graded: bool
    reason: str = ""
    seconds: float = 0.0
    log: str = ""
    manual: bool = True  # when not graded: flag the cells for manual grading


# ---------------------------------------------------------------------------------------------
# Finding the submissions


def _notebook_for(path: Path, notebooks: dict[str, set[str]]) -> str | None:
    """The assignment notebook whose grade ids a flat ``.ipynb`` shares most (None: cannot tell)."""
    if len(notebooks) == 1:
        return next(iter(notebooks))
    if path.stem in notebooks:
        return path.stem
    try:
        cells = json.loads(path.read_bytes()).get("cells", [])
        ids = {precheck.grade_id(c) for c in cells if isinstance(c, dict)} - {None}
    except Exception:
        return None
    best = max(notebooks, key=lambda n: len(notebooks[n] & ids))
    return best if notebooks[best] & ids else None


def _unzip(archive: Path, dest: Path) -> list[Path]:
    with zipfile.ZipFile(archive) as z:
        members = [
            m
            for m in z.infolist()
            if m.filename.endswith(".ipynb")
            and not m.is_dir()
            and "__MACOSX" not in m.filename
            and ".ipynb_checkpoints" not in m.filename
        ]
        if sum(m.file_size for m in members) > MAX_UNZIPPED:
            raise ValueError(f"the notebooks in it unpack to more than {MAX_UNZIPPED // 2**20} MB")
        dest.mkdir(parents=True, exist_ok=True)
        out = []
        for i, m in enumerate(members):
            target = dest / f"{i}" / Path(m.filename).name  # never a path from the archive itself
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(z.read(m))
            out.append(target)
        return out


def discover(opts: Options, work: Path) -> list[Student]:
    """Every student of ``opts.submissions``: nbgrader's ``<student>/<assignment>/*.ipynb`` layout,
    or a flat folder of ``<student>.ipynb`` / ``<student>.zip``."""
    root = opts.submissions
    if not root.is_dir():
        raise GradingError(f"{root}: no such folder of submissions")
    source = opts.course / "source" / opts.assignment
    notebooks = {
        p.stem: {precheck.grade_id(c) for c in nbformat.read(p, 4).cells} - {None}
        for p in sorted(source.glob("*.ipynb"))
    }
    students: dict[str, Student] = {}
    nbgrader_layout = any((d / opts.assignment).is_dir() for d in root.iterdir() if d.is_dir())
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if nbgrader_layout:
            if not entry.is_dir():
                continue
            s = students.setdefault(entry.name, Student(entry.name))
            folder = entry / opts.assignment
            if not folder.is_dir():
                s.problems.append(f"no folder {opts.assignment}/ in the submission: nothing to grade")
                continue
            s.raw += sorted(folder.glob("*.ipynb"))
            for f in sorted(folder.glob("*.ipynb")):
                if f.stem in notebooks:
                    s.files[f.stem] = f
                else:
                    s.problems.append(f"{f.name}: not a notebook of the assignment, not graded")
            if (folder / "timestamp.txt").is_file():
                s.timestamp = (folder / "timestamp.txt").read_text().strip()
        elif entry.suffix in (".ipynb", ".zip") and entry.is_file():
            s = students.setdefault(entry.stem, Student(entry.stem))
            s.raw.append(entry)
            candidates = [entry]
            if entry.suffix == ".zip":
                try:
                    candidates = _unzip(entry, work / "unzipped" / entry.stem)
                except (zipfile.BadZipFile, ValueError, OSError) as exc:
                    s.problems.append(f"{entry.name}: cannot be unpacked ({exc}): nothing to grade")
                    candidates = []
            for f in candidates:
                name = _notebook_for(f, notebooks)
                if name is None:
                    s.problems.append(
                        f"{f.name}: cannot tell which notebook of the assignment this is; "
                        "not graded (name it like the assignment's notebook)"
                    )
                elif name in s.files:
                    s.problems.append(f"{f.name}: a second copy of {name}, ignored")
                else:
                    s.files[name] = f
    out = []
    for s in students.values():
        if not STUDENT_ID.match(s.id):
            print(f"skipped {s.id!r}: not a usable student id (letters, digits, _.@+- only)", file=sys.stderr)
            continue
        h = hashlib.sha256()
        for path in s.raw:
            h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
        h.update((s.timestamp or "").encode())
        s.digest = h.hexdigest()
        out.append(s)
    k, n = opts.shard[1], opts.shard[0]
    return [s for s in out if zlib.crc32(s.id.encode()) % k == n - 1]


# ---------------------------------------------------------------------------------------------
# Scratch courses


CONFIG = """\
# Written by python -m grader autograde: the course's configuration, then the grading overrides.
import os
c = get_config()  # noqa: F821
{load}
c.CourseDirectory.root = {root!r}
c.CourseDirectory.db_url = {db!r}
c.Execute.kernel_name = {kernel!r}
c.Execute.timeout = {timeout}
c.Execute.interrupt_on_timeout = True
# the sandbox has no network: Jupyter's channels go over Unix sockets
c.KernelManager.transport = "ipc"
{ip}c.OverwriteCells.add_missing_cells = True
from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
from nbgrader.preprocessors import ClearHiddenTests, GetGrades
# feedback shows the tests' visible part, the hints and pass/fail, never the hidden tests' source
c.GenerateFeedback.preprocessors = [GetGrades, CSSHTMLHeaderPreprocessor, ClearHiddenTests]
"""


def write_config(folder: Path, opts: Options, db: str, run_dir: Path | None = None) -> None:
    course_config = opts.course / "nbgrader_config.py"
    load = f"load_subconfig({str(course_config)!r})  # noqa: F821" if course_config.is_file() else ""
    (folder / "nbgrader_config.py").write_text(
        CONFIG.format(
            load=load,
            root=str(folder),
            db=db,
            kernel=sandbox.KERNEL_NAME,
            timeout=opts.cell_timeout,
            # an absolute socket path: the kernel's working folder is not the grading process's
            ip=f"c.KernelManager.ip = {str(run_dir / 'kernel')!r}\n" if run_dir else "",
        )
    )


def real_db(opts: Options) -> str:
    url = opts.db_url or f"sqlite:///{(opts.course / 'gradebook.db').resolve()}"
    if url.startswith(("postgresql://", "postgres://")):  # SQLAlchemy 2.1 would look for psycopg 3
        url = "postgresql+psycopg2://" + url.split("://", 1)[1]
    return url


@contextmanager
def _db_lock(db_url: str):
    """Shards against one PostgreSQL gradebook take turns at creating the assignment in it."""
    if not db_url.startswith("postgresql"):
        yield
        return
    from sqlalchemy import create_engine, text

    engine = create_engine(db_url)
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(20260505)"))
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(20260505)"))
    engine.dispose()


def _forkserver():
    """The ``multiprocessing`` context whose fork server has imported nbgrader (``_gradeworker.PRELOAD``)."""
    from . import _gradeworker

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(_gradeworker.PRELOAD)
    return ctx


def run_child(target, args: tuple, cwd: Path, env: dict, timeout: float | None = None) -> tuple[int, str]:
    """``target(*args)`` in a process forked from the fork server, in ``cwd`` with exactly ``env``, in a
    session of its own; return (exit code, its stdout and stderr). At ``timeout`` the whole process group
    (the process and the kernels it started) is killed and TimeoutError(output) raised."""
    from . import _gradeworker

    fd, log = tempfile.mkstemp(prefix="bn-log-", suffix=".txt")
    os.close(fd)
    try:
        proc = _forkserver().Process(target=_gradeworker.child, args=(target, args, str(cwd), env, log))
        proc.start()
        proc.join(timeout)
        if proc.exitcode is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # its kernels too (they die with their parent anyway)
            except ProcessLookupError:  # not yet in its own session
                proc.kill()
            proc.join()
            raise TimeoutError(Path(log).read_text(errors="replace"))
        return proc.exitcode, Path(log).read_text(errors="replace")
    finally:
        os.unlink(log)


def run_nbgrader(folder: Path, *args: str, env=None, timeout: float | None = None) -> subprocess.CompletedProcess:
    """``nbgrader ARGS`` in ``folder`` as its own process group; the whole group is killed at ``timeout``."""
    from . import _gradeworker

    code, out = run_child(_gradeworker.nbgrader_cli, args, folder, env or tool_env(), timeout)
    return subprocess.CompletedProcess(["nbgrader", *args], code, out, "")


def make_template(opts: Options, work: Path) -> Path:
    """A scratch course with source/ and a gradebook that knows the assignment; the real gradebook too."""
    template = work / "template"
    if template.exists():
        shutil.rmtree(template)
    template.mkdir(parents=True)
    shutil.copytree(opts.course / "source" / opts.assignment, template / "source" / opts.assignment)
    write_config(template, opts, f"sqlite:///{template / 'gradebook.db'}")

    def generate(db: str | None) -> None:
        args = ["generate_assignment", opts.assignment, "--force"]
        if db:  # into a release folder of its own: the two run at once
            args += [f"--CourseDirectory.db_url={db}", "--CourseDirectory.release_directory=release-db"]
        with _db_lock(db or ""):
            proc = run_nbgrader(template, *args)
        if proc.returncode != 0:
            raise GradingError(
                f"nbgrader generate_assignment {opts.assignment} failed"
                f"{' on ' + db if db else ''}:\n{proc.stdout[-3000:]}"
            )

    # the template's own gradebook and the real one, at the same time (each a process of its own)
    with ThreadPoolExecutor(max_workers=2) as pool:
        for done in [pool.submit(generate, None), pool.submit(generate, real_db(opts))]:
            done.result()
    return template


def preload(opts: Options) -> list[str]:
    """The libraries of ``zygote.PRELOADABLE`` that the assignment's source notebooks import."""
    import ast

    from .zygote import PRELOADABLE

    found = set()
    for path in sorted((opts.course / "source" / opts.assignment).glob("*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type != "code":
                continue
            try:
                tree = ast.parse(cell.source)
            except SyntaxError:  # IPython magics
                continue
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    found.update(a.name for a in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    found.add(node.module)
    # a submodule preloads its package too; keep the list's order
    return [m for m in PRELOADABLE if m in found or any(f.startswith(m + ".") for f in found)]


def _cap_outputs(path: Path) -> bool:
    """Cut every output of an autograded notebook to MAX_OUTPUT_CHARS; True if one was cut."""
    nb = nbformat.read(path, as_version=4)
    cut = False
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            if o.get("output_type") == "stream" and len(o.get("text", "")) > MAX_OUTPUT_CHARS:
                o["text"] = o["text"][:MAX_OUTPUT_CHARS] + f"\n... [output cut at {MAX_OUTPUT_CHARS} characters]\n"
                cut = True
            for mime, value in list(o.get("data", {}).items()):
                if isinstance(value, str) and len(value) > MAX_OUTPUT_CHARS and mime.startswith("text/"):
                    o["data"][mime] = value[:MAX_OUTPUT_CHARS] + "\n... [output cut]"
                    cut = True
    if cut:
        nbformat.write(nb, path)
    return cut


def _limits_hit(path: Path, cell_timeout: int, memory: float) -> list[str]:
    """The cells of an autograded notebook that ran into the time or memory limit."""
    out = []
    for cell in nbformat.read(path, as_version=4).cells:
        gid = precheck.grade_id(cell) or "a cell"
        for o in cell.get("outputs", []):
            if o.get("output_type") != "error":
                continue
            text = f"{o.get('ename', '')}: {o.get('evalue', '')}"
            if "Timeout" in o.get("ename", ""):
                out.append(f"{path.stem}/{gid}: stopped at the {cell_timeout} s per-cell limit")
            elif "MemoryError" in text or "can't allocate memory" in text or "not enough memory" in text:
                out.append(f"{path.stem}/{gid}: ran out of memory (limit {memory / 2**30:g} GB)")
    return list(dict.fromkeys(out))  # KeyboardInterrupt and CellTimeoutError come as a pair


def _short_tracebacks(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code" and "BEGIN HIDDEN TESTS" in cell.source:
            for o in cell.outputs:
                if o.get("output_type") == "error":
                    o["traceback"] = [f"{o.get('ename', 'Error')}: {o.get('evalue', '')}"]
    nbformat.write(nb, path)


def grade_one(opts: Options, template: Path, work: Path, s: Student) -> Outcome:
    """Grade one student in its own scratch course (runs in a worker thread; touches only its folder)."""
    start = time.monotonic()
    s.report = precheck.check(
        s.id, s.files, opts.course / "source" / opts.assignment, work / "checked" / s.id, s.problems
    )
    if not s.report.notebooks:  # nothing nbgrader could open: every notebook scores 0, the reasons say why
        return Outcome(s.id, True, "no notebook could be graded", 0.0, "", manual=False)
    scratch = work / "students" / s.id
    if scratch.exists():
        shutil.rmtree(scratch)
    scratch.mkdir(parents=True)
    shutil.copytree(template / "source", scratch / "source")
    shutil.copy2(template / "gradebook.db", scratch / "gradebook.db")
    run_dir = Path(tempfile.mkdtemp(prefix="bn-", dir="/tmp"))  # short: a Unix socket path has ~100 bytes
    write_config(scratch, opts, f"sqlite:///{scratch / 'gradebook.db'}", run_dir)
    submitted = scratch / "submitted" / s.id / opts.assignment
    submitted.mkdir(parents=True)
    for name, path in s.report.notebooks.items():
        shutil.copy2(path, submitted / f"{name}.ipynb")
    if s.timestamp:
        (submitted / "timestamp.txt").write_text(s.timestamp)
    autograded = scratch / "autograded" / s.id / opts.assignment
    autograded.mkdir(parents=True)
    hidden = [
        opts.course / "source",
        opts.course / "gradebook.db",
        opts.course / "submitted",
        opts.course / "autograded",
        opts.course / "feedback",
        opts.submissions,
        shards.root_of(opts.out),  # --out; a shard's (OUT/shards/I-of-K) hides the whole class's OUT
    ]
    if real_db(opts).startswith("sqlite:///"):
        hidden.append(Path(real_db(opts)[len("sqlite:///") :]))
    keep = [Path(sys.prefix).resolve(), Path(sandbox.__file__).resolve().parent]
    hidden = [h for h in hidden if not any(k == h.resolve() or h.resolve() in k.parents for k in keep)]
    share = scratch / "share"
    for sub in ("home", "ipython", "mpl"):
        (run_dir / sub).mkdir()
    kernel = sandbox.kernelspec(
        share,
        sandbox=opts.sandbox,
        memory_bytes=opts.memory,
        writable=[autograded.parent],
        hidden=hidden,
        runtime=run_dir,
        zygote=opts.preload if opts.zygote else None,
        env={
            "HOME": str(run_dir / "home"),
            "IPYTHONDIR": str(run_dir / "ipython"),
            "MPLCONFIGDIR": str(run_dir / "mpl"),
        },
    )
    env = tool_env()
    # the kernel manager writes the connection file with tempfile: into the runtime folder, then
    env.update(JUPYTER_PATH=str(share), JUPYTER_RUNTIME_DIR=str(run_dir), TMPDIR=str(run_dir))
    from . import _gradeworker

    try:
        code, out = run_child(
            _gradeworker.grade,
            (str(scratch), opts.assignment, s.id, str(opts.memory), str(kernel)),
            scratch,
            env,
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
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    lines = [line for line in out.splitlines() if line.startswith("{") and '"autograde"' in line]
    if not lines:
        return Outcome(
            s.id, False, f"the grading process died (exit {code}): {_last_error(out)}", time.monotonic() - start, out
        )
    result = json.loads(lines[-1])
    log = out.replace(lines[-1], "") + result["log"]
    if not result["autograde"]:
        return Outcome(
            s.id, False, f"nbgrader autograde failed: {_last_error(result['log'])}", time.monotonic() - start, log
        )
    reasons = result["reasons"]
    if not result["feedback"]:
        reasons.append(f"nbgrader generate_feedback failed: {_last_error(result['log'])}")
    return Outcome(s.id, True, "; ".join(reasons), time.monotonic() - start, log)


# ---------------------------------------------------------------------------------------------
# The canary: can this course be graded here at all?

CANARY = "canary-instructor-solutions"  # its scratch id; it never reaches the real gradebook or the ledger


def canary(opts: Options, template: Path, work: Path) -> dict:
    """Grade the instructor's source notebooks (the solutions) by the same path as a student's.

    Before anyone is graded: a course that cannot be graded here (the names data set not readable
    inside the sandbox, a kernel that cannot import the course's package, a broken environment)
    would score every student 0. Returns ``{"score", "max_score", "seconds"}``; raises GradingError
    with the first cell that failed and its error when the solutions do not get full marks.
    """
    from nbgrader.api import Gradebook, MissingEntry

    source = opts.course / "source" / opts.assignment
    solutions = Student(CANARY, files={p.stem: p for p in sorted(source.glob("*.ipynb"))})
    scratch = work / "students" / CANARY
    try:
        outcome = grade_one(opts, template, work, solutions)
        cells: list[tuple[str, str, float, float]] = []
        if outcome.graded and (scratch / "gradebook.db").is_file():
            with Gradebook(f"sqlite:///{scratch / 'gradebook.db'}") as gb:
                try:
                    sub = gb.find_submission(opts.assignment, CANARY)
                    cells = [
                        (nb.name, g.name, float(g.score), float(g.max_score)) for nb in sub.notebooks for g in nb.grades
                    ]
                except MissingEntry:
                    pass
        score, maximum = sum(c[2] for c in cells), sum(c[3] for c in cells)
        short = [f"{nb}/{cell}" for nb, cell, got, most in cells if got < most]
        if not outcome.graded or not cells or short:
            got = f"{score:g} of {maximum:g} points" if cells else "no score"
            why = outcome.reason if not outcome.graded else _first_error(scratch / "instructor", short)
            raise GradingError(
                f"canary: the instructor's solution notebooks ({source}) do not get full marks here ({got}), so "
                f"no student was graded: {why}. Most often the names data set is not readable inside the sandbox "
                f"(set BACKPROP_NINJA_NAMES to a readable copy, or put data/names.txt in the course) or the kernel "
                f"cannot import the course's package. --no-canary skips this check (for a course without solutions)."
            )
        return {"score": score, "max_score": maximum, "seconds": round(outcome.seconds, 1)}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.rmtree(work / "checked" / CANARY, ignore_errors=True)


def _first_error(autograded: Path, short: list[str]) -> str:
    """The first cell of the autograded notebooks with an error (the cause), else the cells short of points."""
    for path in sorted(autograded.glob("*.ipynb")):
        for index, cell in enumerate(nbformat.read(path, as_version=4).cells):
            for o in cell.get("outputs", []):
                if o.get("output_type") == "error":
                    where = precheck.grade_id(cell) or f"cell {index + 1}"
                    first = (o.get("evalue") or "").strip().splitlines()[:1]
                    return f"{path.stem}/{where} raised {o.get('ename', 'an error')}: {' '.join(first)}"[:1000]
    return "short of points in " + ", ".join(short[:5]) + (", ..." if len(short) > 5 else "")


def prepare_feedback(scratch: Path, assignment: str, student: str, cell_timeout: int, memory: float) -> list[str]:
    """Between autograde and generate_feedback (in the grading process): cut huge outputs, note the cells
    that hit a limit, keep the full notebooks for the instructor, shorten the test cells' tracebacks."""
    autograded = scratch / "autograded" / student / assignment
    reasons = []
    for nb in sorted(autograded.glob("*.ipynb")):
        if _cap_outputs(nb):
            reasons.append(f"{nb.stem}: printed more than {MAX_OUTPUT_CHARS} characters in one output (cut)")
        reasons += _limits_hit(nb, cell_timeout, memory)
    # the instructor keeps the full autograded notebooks; feedback is made from a copy whose test
    # cells' tracebacks are cut to their last line (a traceback quotes the hidden test that failed)
    shutil.copytree(autograded, scratch / "instructor")
    for nb in sorted(autograded.glob("*.ipynb")):
        _short_tracebacks(nb)
    return reasons


def _last_error(log: str) -> str:
    lines = [line for line in log.splitlines() if "[ERROR]" in line or "Error" in line]
    return (lines[-1] if lines else (log.strip().splitlines() or ["no output"])[-1])[-300:]


# ---------------------------------------------------------------------------------------------
# The real gradebook, from this process only


def merge(opts: Options, s: Student, outcome: Outcome, work: Path) -> None:
    """Replace ``s``'s submission in the real gradebook with the scratch gradebook's (or a 0 to look at)."""
    import warnings

    from nbgrader.api import Gradebook, MissingEntry

    warnings.filterwarnings("ignore", message=".*not in session.*")  # SQLAlchemy on nbgrader's add_submission
    scratch_db = work / "students" / s.id / "gradebook.db"
    found = None
    if outcome.graded and scratch_db.is_file():
        src = Gradebook(f"sqlite:///{scratch_db}")
        try:
            found = src.find_submission(opts.assignment, s.id)
        except MissingEntry:
            found = None
    try:
        with Gradebook(real_db(opts)) as dst:
            dst.update_or_create_student(s.id)
            try:
                dst.remove_submission(opts.assignment, s.id)
            except MissingEntry:
                pass
        with Gradebook(real_db(opts)) as dst:
            sub = dst.add_submission(opts.assignment, s.id, timestamp=found.timestamp if found else None)
            theirs = {(nb.name, g.name): g for nb in (found.notebooks if found else []) for g in nb.grades}
            comments = {(nb.name, c.name): c for nb in (found.notebooks if found else []) for c in nb.comments}
            flagged = {nb.name: nb.flagged for nb in (found.notebooks if found else [])}
            for nb in sub.notebooks:
                nb.flagged = flagged.get(nb.name, False)
                for g in nb.grades:
                    t = theirs.get((nb.name, g.name))
                    if t is None:  # nbgrader did not grade it: 0 (and an instructor should look)
                        g.auto_score, g.needs_manual_grade = (None, True) if outcome.manual else (0.0, False)
                    else:
                        g.auto_score, g.manual_score = t.auto_score, t.manual_score
                        g.extra_credit, g.needs_manual_grade = t.extra_credit, t.needs_manual_grade
                for c in nb.comments:
                    t = comments.get((nb.name, c.name))
                    if t is not None:
                        c.auto_comment, c.manual_comment = t.auto_comment, t.manual_comment
            dst.db.commit()
    finally:
        if found is not None:
            src.close()


def gradebook_scores(opts: Options, students: list[str]) -> dict[str, list[tuple[str, str, float, float, bool]]]:
    """(notebook, cell, score, max_score, needs_manual_grade) of every graded cell of ``students``."""
    from nbgrader.api import Gradebook, MissingEntry

    out = {}
    with Gradebook(real_db(opts)) as gb:
        for sid in students:
            try:
                sub = gb.find_submission(opts.assignment, sid)
            except MissingEntry:
                continue
            out[sid] = [
                (nb.name, g.name, float(g.score), float(g.max_score), bool(g.needs_manual_grade))
                for nb in sub.notebooks
                for g in nb.grades
            ]
    return out


# ---------------------------------------------------------------------------------------------
# The ledger


class Ledger:
    """Append-only JSON lines, fsync'ed: the students merged into the gradebook, and what was graded."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done: dict[str, dict] = {}
        if path.is_file():
            for line in path.read_text().splitlines():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by a kill: that student was not recorded
                self.done[entry["student"]] = entry
        self._lock = threading.Lock()

    def add(self, entry: dict) -> None:
        with self._lock, open(self.path, "a") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.done[entry["student"]] = entry


# ---------------------------------------------------------------------------------------------
# The run


def hidden_lines(source: Path) -> set[str]:
    """Every non-trivial line of the hidden tests (to make sure none reaches a feedback file)."""
    lines = set()
    for p in source.glob("*.ipynb"):
        for cell in nbformat.read(p, 4).cells:
            inside = False
            for line in cell.source.splitlines():
                if "BEGIN HIDDEN TESTS" in line:
                    inside = True
                elif "END HIDDEN TESTS" in line:
                    inside = False
                elif inside and len(line.strip()) > 12 and not line.strip().startswith("#"):
                    lines.add(line.strip())
    return lines


def collect(opts: Options, work: Path, s: Student, secret: set[str]) -> list[str]:
    """Copy the student's autograded notebooks and feedback into ``--out``; check the feedback."""
    import html as html_mod

    problems = []
    scratch = work / "students" / s.id
    for kind in ("autograded", "feedback"):
        src = scratch / "instructor" if kind == "autograded" else scratch / kind / s.id / opts.assignment
        dst = opts.out / kind / s.id / opts.assignment
        if dst.exists():
            shutil.rmtree(dst)
        if src.is_dir():
            shutil.copytree(src, dst)
    for page in sorted((opts.out / "feedback" / s.id / opts.assignment).glob("*.html")):
        text = html_mod.unescape(re.sub(r"<[^>]+>", "", page.read_text(encoding="utf-8", errors="replace")))
        leaked = [line for line in secret if line in text]
        if leaked:
            page.unlink()
            problems.append(f"{page.stem}: feedback withheld, it showed hidden test text ({leaked[0][:40]!r})")
    return problems


def run(opts: Options) -> dict:
    """Grade the class; return the summary (also written to ``--out``)."""
    opts.course, opts.submissions, opts.out = (p.resolve() for p in (opts.course, opts.submissions, opts.out))
    source = opts.course / "source" / opts.assignment
    if not any(source.glob("*.ipynb")):
        raise GradingError(f"{source}: no source notebooks of assignment {opts.assignment!r}")
    if opts.sandbox:
        try:
            sandbox.probe()
        except sandbox.SandboxError as exc:
            raise GradingError(f"refusing to grade without a sandbox: {exc}") from None
    opts.out = shards.task_out(opts.out, opts.shard)  # with K > 1: OUT/shards/I-of-K/ (grader/autograde/shards.py)
    opts.out.mkdir(parents=True, exist_ok=True)
    work = shards.work_dir(opts.out, opts.shard)  # with K > 1: one per host and process
    ledger = Ledger(opts.out / "ledger.jsonl")
    students = discover(opts, work)
    if not students and (opts.shard[1] == 1 or not discover(dataclasses.replace(opts, shard=(1, 1)), work)):
        raise GradingError(f"{opts.submissions}: no submissions found")  # (a shard of a class may have none)
    template = make_template(opts, work)
    opts.preload = preload(opts)
    checked = None
    if opts.canary:  # before anyone is graded: would the instructor's own solutions get full marks here?
        checked = canary(opts, template, work)
        print(
            f"canary: the instructor's solutions get {checked['score']:g}/{checked['max_score']:g} here "
            f"({checked['seconds']:g} s)",
            file=sys.stderr,
            flush=True,
        )
    in_gradebook = set(gradebook_scores(opts, [s.id for s in students]))
    todo, skipped = [], []
    for s in students:
        entry = ledger.done.get(s.id)
        if (
            not opts.force
            and entry
            and entry.get("graded")
            and entry.get("digest") == s.digest
            and s.id in in_gradebook
        ):
            skipped.append(s)
        else:
            todo.append(s)
    secret = hidden_lines(source)
    outcomes: dict[str, Outcome] = {}
    bar = None
    if opts.progress:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), file=sys.stderr, unit="student", desc="grading", dynamic_ncols=True)
    failures = 0
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=max(1, opts.workers)) as pool:
        futures = {pool.submit(grade_one, opts, template, work, s): s for s in todo}
        for fut in as_completed(futures):
            s = futures[fut]
            try:
                outcome = fut.result()
            except Exception as exc:  # a bug or a full disk while grading one student: record, go on
                outcome = Outcome(s.id, False, f"grading crashed: {type(exc).__name__}: {exc}")
                s.report = s.report or precheck.Report(s.id, problems=list(s.problems))
            extra = collect(opts, work, s, secret) if outcome.graded else []
            with shards.student_lock(real_db(opts), s.id):  # a second run of this shard at once waits its turn
                merge(opts, s, outcome, work)  # one student at a time, from this process only
            (opts.out / "logs").mkdir(exist_ok=True)
            (opts.out / "logs" / f"{s.id}.log").write_text(outcome.log)
            reasons = [r for r in [outcome.reason, *extra] if r]
            failures += not outcome.graded
            ledger.add(
                {
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
            )
            shutil.rmtree(work / "students" / s.id, ignore_errors=True)
            outcomes[s.id] = outcome
            if bar is not None:
                bar.set_postfix_str(f"failures {failures}")
                bar.update(1)
    if bar is not None:
        bar.close()
    seconds = time.monotonic() - start
    proc = run_nbgrader(
        template, "export", "--to", str(opts.out / "grades.csv"), f"--CourseDirectory.db_url={real_db(opts)}"
    )
    if proc.returncode != 0:
        raise GradingError(f"nbgrader export failed:\n{proc.stdout[-3000:]}")
    summary = summarize(opts, students, ledger, len(todo), len(skipped), seconds, checked)
    shutil.rmtree(work / "template", ignore_errors=True)
    if opts.shard[1] > 1:  # this run's own scratch folder
        shutil.rmtree(work, ignore_errors=True)
    return summary


def summarize(
    opts: Options,
    students: list[Student],
    ledger: Ledger,
    graded: int,
    skipped: int,
    seconds: float,
    canary: dict | None = None,
) -> dict:
    scores = gradebook_scores(opts, [s.id for s in students])
    totals = {sid: (sum(c[2] for c in cells), sum(c[3] for c in cells)) for sid, cells in scores.items()}
    per_cell: dict[tuple[str, str], list[float]] = {}
    for cells in scores.values():
        for nb, cell, score, maximum, _ in cells:
            per_cell.setdefault((nb, cell), []).append(score / maximum if maximum else 0.0)
    review = {}
    for s in students:
        e = ledger.done.get(s.id, {})
        why = (
            e.get("reasons", [])
            + e.get("problems", [])
            + e.get("repairs", [])
            + [f"flag: {f}" for f in e.get("flags", [])]
        )
        manual = [c[1] for c in scores.get(s.id, []) if c[4]]
        if manual:
            why.append(
                f"{len(manual)} cell(s) need manual grading" + (f": {', '.join(manual)}" if len(manual) <= 3 else "")
            )
        if why:
            review[s.id] = why
    maximum = max((m for _, m in totals.values()), default=0)
    values = [t for t, _ in totals.values()]
    summary = {
        "assignment": opts.assignment,
        "students": len(students),
        "graded_now": graded,
        "skipped_already_graded": skipped,
        "seconds": round(seconds, 1),
        "workers": opts.workers,
        "sandbox": opts.sandbox,
        "max_score": maximum,
        "totals": {sid: t for sid, (t, _) in sorted(totals.items())},
        "mean": round(statistics.mean(values), 3) if values else None,
        "median": statistics.median(values) if values else None,
        "distribution": {
            str(int(k)): sum(1 for v in values if int(v) == int(k)) for k in sorted({int(v) for v in values})
        },
        "mean_per_cell": {f"{nb}/{cell}": round(statistics.mean(v), 3) for (nb, cell), v in sorted(per_cell.items())},
        "review": review,
        "canary": canary,  # the instructor's solutions graded first: score, max_score, seconds (None: --no-canary)
    }
    (opts.out / "summary.json").write_text(json.dumps(summary, indent=1))
    (opts.out / "summary.md").write_text(summary_text(summary))
    return summary


def summary_text(summary: dict) -> str:
    lines = [
        f"# {summary['assignment']}: {summary['students']} students "
        f"({summary['graded_now']} graded now, {summary['skipped_already_graded']} already graded), "
        f"{summary['seconds']} s with {summary['workers']} workers, sandbox {'on' if summary['sandbox'] else 'OFF'}",
        "",
        f"mean {summary['mean']} / {summary['max_score']}, median {summary['median']}",
        "",
        _canary_line(summary.get("canary")),
        "",
        "## Score distribution",
        "",
    ]
    for score, count in summary["distribution"].items():
        lines.append(f"{score:>4} | {'#' * count} {count}")
    lines += ["", "## Mean per graded cell (lowest first: what the class got wrong most)", ""]
    for cell, mean in sorted(summary["mean_per_cell"].items(), key=lambda kv: kv[1]):
        lines.append(f"{mean:6.2f}  {cell}")
    lines += ["", f"## Students that need a look ({len(summary['review'])})", ""]
    for sid, why in summary["review"].items():
        lines.append(f"- {sid} ({summary['totals'].get(sid, 0):g}): " + "; ".join(why))
    return "\n".join(lines) + "\n"


def _canary_line(canary: dict | None) -> str:
    if canary is None:
        return "canary: skipped (--no-canary): the instructor's solutions were not graded first"
    return (
        f"canary: the instructor's solutions got {canary['score']:g}/{canary['max_score']:g} "
        f"before anyone was graded ({canary['seconds']:g} s)"
    )


def main(args) -> int:
    opts = Options(
        course=Path(args.course),
        assignment=args.assignment,
        submissions=Path(args.submissions),
        out=Path(args.out or f"build/autograde/{args.assignment}"),
        workers=args.workers,
        sandbox=not args.no_sandbox,
        db_url=args.db_url,
        cell_timeout=args.cell_timeout,
        student_timeout=args.student_timeout,
        memory=int(args.memory_gb * 2**30),
        shard=args.shard,
        progress=not args.no_progress,
        force=args.force,
        zygote=not args.fresh_kernels,
        canary=not args.no_canary,
    )
    try:
        summary = run(opts)
    except GradingError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(summary_text(summary))
    print(f"grades:   {opts.out / 'grades.csv'}")
    print(f"feedback: {opts.out / 'feedback'}/<student>/{opts.assignment}/<notebook>.html")
    print(f"summary:  {opts.out / 'summary.md'}")
    return 0


def shard(text: str) -> tuple[int, int]:
    """``I/K``, or ``auto``: the scheduler's array task (grader/autograde/shards.py)."""
    import argparse

    try:
        return shards.parse(text)
    except shards.ShardError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_arguments(p) -> None:
    p.add_argument("assignment", help="the assignment's name (a folder of source/ in the course)")
    p.add_argument(
        "submissions",
        help="submitted/ (nbgrader's <student>/<assignment>/ layout) or a flat folder "
        "of <student>.ipynb / <student>.zip",
    )
    p.add_argument("--course", default=".", help="the nbgrader course directory (default: the current one)")
    p.add_argument("--out", help="where grades, feedback and the summary go (default: build/autograde/ASSIGNMENT)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="students graded at once (default: cores)")
    p.add_argument(
        "--no-sandbox", action="store_true", help="run students' code without bubblewrap (trusted code only)"
    )
    p.add_argument("--db-url", help="the gradebook (default: sqlite:///COURSE/gradebook.db); e.g. postgresql://...")
    p.add_argument(
        "--shard",
        type=shard,
        default=(1, 1),
        metavar="I/K|auto",
        help="grade only shard I of K (machines sharing one PostgreSQL gradebook; with K > 1 it writes in "
        "OUT/shards/I-of-K/); auto: I and K from a Slurm array task or a Kubernetes Indexed Job",
    )
    p.add_argument("--cell-timeout", type=int, default=120, help="seconds per cell (default: %(default)s)")
    p.add_argument(
        "--student-timeout", type=int, default=900, help="wall-clock seconds per student (default: %(default)s)"
    )
    p.add_argument(
        "--memory-gb", type=float, default=4.0, help="address-space limit of a kernel (default: %(default)s)"
    )
    p.add_argument("--force", action="store_true", help="regrade students the ledger says are done")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--fresh-kernels",
        action="store_true",
        help="start every kernel as a new Python, as plain nbgrader does (slower), instead of forking it "
        "from the student's sandboxed process that has imported torch once (grader/zygote.py)",
    )
    p.add_argument(
        "--no-canary",
        action="store_true",
        help="do not grade the instructor's solution notebooks first (the canary that refuses to grade a class "
        "where they would not get full marks); for a course whose source/ has no solutions",
    )
