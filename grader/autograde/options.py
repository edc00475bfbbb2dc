"""What ``python -m grader autograde`` is asked to do: ``Options``, and the command line built from it.

Every default lives once, in ``Options``; ``add_arguments`` takes the command line's defaults from it and
``from_args`` turns parsed arguments back into ``Options``. ``python -m grader demo`` builds ``Options``
itself and calls the same command (``grader.autograde.cli.command``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from . import shards
from .sandbox import FSIZE, NPROC, TMP_BYTES


class GradingError(RuntimeError):
    """The class cannot be graded (bad arguments, no sandbox, no assignment): the message says why."""


@dataclass
class Options:
    assignment: str
    submissions: Path
    course: Path = Path(".")
    out: Path | None = None  # None: build/autograde/ASSIGNMENT
    workers: int = os.cpu_count() or 1
    sandbox: bool = True
    db_url: str | None = None
    cell_timeout: int = 120
    student_timeout: int = 900
    memory: int = 4 * 2**30
    nproc: int = NPROC  # processes + threads in a student's sandbox (grader/autograde/sandbox.py)
    fsize: int = FSIZE  # the largest file a kernel may write
    tmp_bytes: int = TMP_BYTES  # the size of the sandbox's /tmp and of its /dev/shm, each
    shard: tuple[int, int] = (1, 1)
    progress: bool = True
    force: bool = False
    canary: bool = True  # grade the instructor's solution notebooks first; refuse the class unless full marks
    zygote: bool = True  # kernels forked from a per-student zygote (autograde/zygote.py); False: a new Python each
    preload: list[str] = field(default_factory=list)  # what the zygote imports (set by run(): see zygote.preload())

    def __post_init__(self) -> None:
        self.course, self.submissions = Path(self.course), Path(self.submissions)
        self.out = Path(self.out) if self.out is not None else Path("build/autograde") / self.assignment

    @property
    def source(self) -> Path:
        """The assignment's source notebooks (with the solutions and hidden tests)."""
        return self.course / "source" / self.assignment


DEFAULTS = Options("ASSIGNMENT", Path("."))


def shard(text: str) -> tuple[int, int]:
    """``--shard``: ``I/K``, or ``auto``: I and K from the scheduler's array task this process runs in (a Slurm
    job array or a Kubernetes Indexed Job, ``shards.from_environment``). A ``ShardError`` otherwise (a
    ``ValueError`` whose message argparse shows)."""
    if text == "auto":
        return shards.from_environment()
    m = re.fullmatch(r"(\d+)/(\d+)", text)
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise shards.ShardError(f"--shard takes I/K with 1 <= I <= K, or auto, not {text!r}")
    return int(m.group(1)), int(m.group(2))


def add_arguments(p) -> None:
    """The command's arguments on the ``argparse`` parser ``p``, with ``Options``' defaults."""
    d = DEFAULTS
    p.add_argument("assignment", help="the assignment's name (a folder of source/ in the course)")
    p.add_argument(
        "submissions",
        help="submitted/ (nbgrader's <student>/<assignment>/ layout) or a flat folder "
        "of <student>.ipynb / <student>.zip",
    )
    p.add_argument("--course", default=str(d.course), help="the nbgrader course directory (default: the current one)")
    p.add_argument("--out", help="where grades, feedback and the summary go (default: build/autograde/ASSIGNMENT)")
    p.add_argument("--workers", type=int, default=d.workers, help="students graded at once (default: cores)")
    p.add_argument(
        "--no-sandbox", action="store_true", help="run students' code without bubblewrap (trusted code only)"
    )
    p.add_argument("--db-url", help="the gradebook (default: sqlite:///COURSE/gradebook.db); e.g. postgresql://...")
    p.add_argument(
        "--shard",
        type=shard,
        default=d.shard,
        metavar="I/K|auto",
        help="grade only shard I of K (machines sharing one PostgreSQL gradebook; with K > 1 it writes in "
        "OUT/shards/I-of-K/); auto: I and K from a Slurm array task or a Kubernetes Indexed Job",
    )
    p.add_argument("--cell-timeout", type=int, default=d.cell_timeout, help="seconds per cell (default: %(default)s)")
    p.add_argument(
        "--student-timeout",
        type=int,
        default=d.student_timeout,
        help="wall-clock seconds per student (default: %(default)s)",
    )
    p.add_argument(
        "--memory-gb",
        type=float,
        default=d.memory / 2**30,
        help="address-space limit of a kernel (default: %(default)s)",
    )
    p.add_argument(
        "--max-processes",
        type=int,
        default=d.nproc,
        help="processes and threads in a student's sandbox (default: %(default)s)",
    )
    p.add_argument(
        "--max-file-mb",
        type=float,
        default=d.fsize / 2**20,
        help="largest file a kernel writes (default: %(default)s)",
    )
    p.add_argument(
        "--tmp-mb",
        type=float,
        default=d.tmp_bytes / 2**20,
        help="size of its /tmp, of its /dev/shm, and what it may add to its working folder (default: %(default)s)",
    )
    p.add_argument("--force", action="store_true", help="regrade students the ledger says are done")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--fresh-kernels",
        action="store_true",
        help="start every kernel as a new Python, as plain nbgrader does (slower), instead of forking it "
        "from the student's sandboxed process that has imported torch once (grader/autograde/zygote.py)",
    )
    p.add_argument(
        "--no-canary",
        action="store_true",
        help="do not grade the instructor's solution notebooks first (the canary that refuses to grade a class "
        "where they would not get full marks); for a course whose source/ has no solutions",
    )


def from_args(args) -> Options:
    """``Options`` from the arguments ``add_arguments`` parsed."""
    return Options(
        course=Path(args.course),
        assignment=args.assignment,
        submissions=Path(args.submissions),
        out=Path(args.out) if args.out else None,
        workers=args.workers,
        sandbox=not args.no_sandbox,
        db_url=args.db_url,
        cell_timeout=args.cell_timeout,
        student_timeout=args.student_timeout,
        memory=int(args.memory_gb * 2**30),
        nproc=args.max_processes,
        fsize=int(args.max_file_mb * 2**20),
        tmp_bytes=int(args.tmp_mb * 2**20),
        shard=args.shard,
        progress=not args.no_progress,
        force=args.force,
        zygote=not args.fresh_kernels,
        canary=not args.no_canary,
    )
