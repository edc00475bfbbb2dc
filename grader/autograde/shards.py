"""``--shard auto``: which shard of the class a scheduler's array task grades, and where a shard writes.

A class is split into K shards by a hash of the student id (``submissions.shard_of``); shard I of K is given
by hand (``--shard I/K``, parsed by ``options.shard``) or, with ``--shard auto``, read from the environment
of the task a scheduler started:

- **Slurm job array** (``sbatch --array=1-4``, ``--array=0-3``, ``--array=5-11:2``): ``SLURM_ARRAY_TASK_ID``,
  ``SLURM_ARRAY_TASK_COUNT``, ``SLURM_ARRAY_TASK_MIN`` and ``SLURM_ARRAY_TASK_STEP`` (1 when unset). Slurm
  numbers tasks from the array's first index in steps of the step: task ``MIN + n*STEP`` is shard ``n+1`` of
  ``COUNT``. An array with gaps (``--array=1,3,8``: MAX - MIN is not (COUNT - 1) * STEP) has no such
  numbering and is refused, and so is a one-task array of index > 1 (one shard resubmitted by itself,
  ``--array=3``, which Slurm numbers as an array of one: it would grade the whole class).
- **Kubernetes Indexed Job** (``completionMode: Indexed``): ``JOB_COMPLETION_INDEX`` (0 to completions - 1,
  set by Kubernetes) is shard ``index+1`` of ``BACKPROP_NINJA_SHARDS``, which the manifest sets to the Job's
  ``completions`` (Kubernetes does not put the completions count in a pod's environment).

Tasks of one class share one ``--out`` (a shared filesystem) and one gradebook (``--db-url``, PostgreSQL).
With K > 1 a task writes only below ``OUT/shards/I-of-K/`` (its ledger, logs, feedback, autograded notebooks,
grades.csv and summary, and its ``.lock``: one run per shard folder, ``grader.autograde.run.out_lock``),
and its scratch folder is ``OUT/shards/I-of-K/work/<host>-<pid>-<r>/``, so two shards never write the same
file, and a run of a shard removes the scratch a killed run of it left. ``python -m grader gather`` brings
the shards together (``grader/autograde/gather.py``).
"""

from __future__ import annotations

import argparse
import fcntl
import os
import re
import secrets
import shutil
import socket
import tempfile
import zlib
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path

SHARDS_VARIABLE = "BACKPROP_NINJA_SHARDS"  # the Kubernetes manifest sets it to the Job's completions
SHARDS_FOLDER = "shards"
NAME = re.compile(r"^(\d+)-of-(\d+)$")


class ShardError(argparse.ArgumentTypeError, ValueError):
    """A bad ``--shard`` (argparse shows this message), or ``--shard auto`` found no scheduler array in the
    environment, or one it cannot number."""


def _int(env: Mapping[str, str], name: str) -> int:
    try:
        return int(env[name])
    except KeyError:
        raise ShardError(f"--shard auto: {name} is not set") from None
    except ValueError:
        raise ShardError(f"--shard auto: {name}={env[name]!r} is not a number") from None


def slurm(env: Mapping[str, str]) -> tuple[int, int]:
    """Shard (I, K) of a Slurm array task; I counts from 1 at the array's first index."""
    task, count, first = (_int(env, f"SLURM_ARRAY_TASK_{v}") for v in ("ID", "COUNT", "MIN"))
    step = _int(env, "SLURM_ARRAY_TASK_STEP") if env.get("SLURM_ARRAY_TASK_STEP") else 1
    array = f"(SLURM_ARRAY_TASK_ID={task}, MIN={first}, STEP={step}, COUNT={count})"
    if count < 1 or step < 1:
        raise ShardError(f"--shard auto: not a Slurm array Slurm would make {array}")
    if count == 1 and task > 1:  # sbatch --array=3: one task, so it would be shard 1 of 1, the whole class
        raise ShardError(
            f"--shard auto: an array of one task, index {task}: that looks like one shard submitted again "
            "(sbatch --array=3), which Slurm numbers as an array of its own; to grade shard I of K again give "
            "--shard I/K (grade.sbatch: SHARD=I/K), or requeue the task of the first array (scontrol requeue JOB_I)"
        )
    if env.get("SLURM_ARRAY_TASK_MAX") and _int(env, "SLURM_ARRAY_TASK_MAX") - first != (count - 1) * step:
        raise ShardError(
            f"--shard auto: the Slurm array has gaps ({count} tasks from {first} to "
            f"{env['SLURM_ARRAY_TASK_MAX']} in steps of {step}), so its task ids do not number the shards: "
            "submit a range (sbatch --array=1-4, or --array=0-15:4), or give --shard I/K"
        )
    n, off = divmod(task - first, step)
    if off or not 0 <= n < count:
        raise ShardError(f"--shard auto: task {task} is not in the Slurm array {array}")
    return n + 1, count


def kubernetes(env: Mapping[str, str]) -> tuple[int, int]:
    """Shard (I, K) of a Kubernetes Indexed Job's pod; JOB_COMPLETION_INDEX counts from 0."""
    index = _int(env, "JOB_COMPLETION_INDEX")
    if not env.get(SHARDS_VARIABLE):
        raise ShardError(
            f"--shard auto: JOB_COMPLETION_INDEX={index} (a Kubernetes Indexed Job) but {SHARDS_VARIABLE} is not "
            f"set: Kubernetes does not tell a pod the Job's completions, so the manifest must set {SHARDS_VARIABLE} "
            "to the same number as spec.completions (docs/instructors.md)"
        )
    count = _int(env, SHARDS_VARIABLE)
    if not 0 <= index < count:
        raise ShardError(
            f"--shard auto: JOB_COMPLETION_INDEX={index} is not below {SHARDS_VARIABLE}={count}: "
            "set it to the Job's spec.completions"
        )
    return index + 1, count


def from_environment(env: Mapping[str, str] | None = None) -> tuple[int, int]:
    """Shard (I, K), 1 <= I <= K, of the scheduler task this process runs in; ShardError if none."""
    env = os.environ if env is None else env
    if "SLURM_ARRAY_TASK_ID" in env:
        return slurm(env)
    if "JOB_COMPLETION_INDEX" in env:
        return kubernetes(env)
    where = (
        f"a Slurm job ({env['SLURM_JOB_ID']}) that is not an array (submit it with sbatch --array=1-K)"
        if env.get("SLURM_JOB_ID")
        else "no scheduler array task"
    )
    raise ShardError(
        f"--shard auto: {where}: found neither SLURM_ARRAY_TASK_ID (a Slurm job array) nor "
        f"JOB_COMPLETION_INDEX with {SHARDS_VARIABLE} (a Kubernetes Indexed Job); give --shard I/K instead"
    )


# ---------------------------------------------------------------------------------------------
# Where a shard writes


def name(shard: tuple[int, int]) -> str:
    return f"{shard[0]}-of-{shard[1]}"


def task_out(out: Path, shard: tuple[int, int]) -> Path:
    """The folder a task writes into: ``out`` itself for one shard, else ``out/shards/I-of-K``."""
    return out if shard[1] == 1 else out / SHARDS_FOLDER / name(shard)


def root_of(out: Path) -> Path:
    """The class's ``--out`` of a task folder (``task_out``'s inverse): hidden from the sandbox as a whole."""
    return out.parent.parent if NAME.match(out.name) and out.parent.name == SHARDS_FOLDER else out


_held: list[int] = []  # the locks of this process's scratch folders, held until it ends


def work_dir(out: Path, shard: tuple[int, int]) -> Path:
    """The scratch folder of this run: ``out/work`` for one shard, else one of its own, ``out/work/<host>-<pid>-<r>``.

    Each run of a shard holds an flock on its folder's ``.lock`` while it lives (the kernel drops it when the
    process dies, however it dies; NFS clients emulate it with POSIX locks). A run first removes the folders
    whose lock nobody holds: the scratch of runs killed by the scheduler. Names are random as well as
    ``host-pid``: a replacement pod has the same hostname and often the same pid as the pod it replaces.
    """
    if shard[1] == 1:
        work = out / "work"
        work.mkdir(parents=True, exist_ok=True)
        return work
    base = out / "work"
    base.mkdir(parents=True, exist_ok=True)
    for old in sorted(base.iterdir()):
        if not old.name.startswith("."):
            _remove_if_abandoned(old)
    # made under a dot name, locked, then renamed: no other run ever sees it unlocked
    new = Path(tempfile.mkdtemp(prefix=".new-", dir=base))
    fd = os.open(new / ".lock", os.O_CREAT | os.O_RDWR, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    _held.append(fd)
    work = base / f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
    os.rename(new, work)
    return work


def _remove_if_abandoned(folder: Path) -> None:
    try:
        fd = os.open(folder / ".lock", os.O_RDWR)
    except OSError:  # not a run's folder
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # its run goes on
        os.close(fd)
        return
    try:
        shutil.rmtree(folder, ignore_errors=True)
    finally:
        os.close(fd)


def folders(out: Path) -> list[Path]:
    """The task folders below a class's ``--out`` (and ``out`` itself when a single run wrote there)."""
    found = [p for p in sorted((out / SHARDS_FOLDER).glob("*-of-*")) if NAME.match(p.name) and p.is_dir()]
    if (out / "ledger.jsonl").is_file():
        found.append(out)
    return found


@contextmanager
def student_lock(db_url: str, student: str):
    """Whoever merges a student into a shared gradebook does it alone (the shard folder's lock keeps a second
    run of one shard out; this holds also where that lock does not, e.g. two --out folders of one class).

    A PostgreSQL advisory lock keyed by the student id, held while the student's submission is replaced;
    SQLite needs none (one writer at a time, and one machine).
    """
    if not db_url.startswith("postgresql"):
        yield
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    key = 0x424E0000_00000000 | zlib.crc32(student.encode())  # "BN" + the id's hash: never the assignment lock
    engine = create_engine(db_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
    finally:
        engine.dispose()
