"""The grading processes of ``python -m grader autograde``: plain nbgrader, without the start-up.

Every student is graded in a process of its own (its own process group, killed whole at the
wall-clock limit), and so are the class's ``nbgrader generate_assignment`` and ``export``. Starting
Python and importing nbgrader costs about 3 s of CPU each time, as much as a tenth of a student's
grading, so these processes are forked from a ``multiprocessing`` fork server that has imported
nbgrader once (``PRELOAD``). A forked child is still a fresh process: it gets its own working folder,
environment, session and log file (``child``), and the student's code never runs in it (only in the
sandboxed kernels it starts).

A student's process (``grade``) runs nbgrader's ``autograde`` and ``generate_feedback``
(``NbGraderAPI``), configured by the scratch course's nbgrader_config.py (``grader.autograde.scratch``;
its preprocessors are ``grader.autograde.feedback``'s), and writes what happened as a ``Result`` (JSON)
to a file the parent reads (``Result.read``); it calls nothing of the parent's.

``python -m grader.autograde.worker COURSE ASSIGNMENT STUDENT MEMORY RESULT [KERNELSPEC-FOLDER]`` runs
``grade`` in this process (for debugging one student by hand).
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .sandbox import RUNTIME_ENV, die_with_parent, private_tmpfs

# imported once by the fork server; a module that fails to import is just not preloaded
PRELOAD = [
    "nbgrader.apps.api",
    "nbgrader.apps.nbgraderapp",
    "nbgrader.api",
    "nbconvert.exporters",
    "grader.autograde.feedback",
    "grader.autograde.worker",
]


@dataclass
class Result:
    """What a student's grading process did: nbgrader's two steps, their log, notes for the instructor."""

    autograde: bool = False
    feedback: bool = False
    log: str = ""
    notes: list[str] = field(default_factory=list)  # outputs cut, cells that hit a limit (feedback.notes)

    def write(self, path: Path) -> None:
        tmp = Path(f"{path}.tmp")
        tmp.write_text(json.dumps(dataclasses.asdict(self)))
        tmp.replace(path)  # whole or not at all, even if the process is killed while writing

    @classmethod
    def read(cls, path: Path) -> Result | None:
        """The result at ``path``; None if the process wrote none (it died first)."""
        try:
            return cls(**json.loads(Path(path).read_text()))
        except FileNotFoundError:
            return None


def grade(course: str, assignment: str, student: str, memory: str, result: str, kernel: str = "") -> None:
    """``NbGraderAPI.autograde`` and ``NbGraderAPI.generate_feedback`` of one student in the scratch course
    COURSE (its nbgrader_config.py); the ``Result`` goes to the file RESULT.

    KERNEL: the kernelspec's folder; when it has a zygote.json, the student's zygote
    (grader/autograde/zygote.py) is started first and stopped at the end. With ``RUNTIME_ENV`` set (the
    sandbox's, "BYTES PATH"), the kernels' runtime folder PATH is first a tmpfs of BYTES, for this process
    and the kernels it starts (``sandbox.private_tmpfs``)."""
    zygote = None
    size, _, folder = os.environ.get(RUNTIME_ENV, "").partition(" ")
    if folder and not private_tmpfs(folder, int(size)):
        print("[WARNING] no mount namespace here: the runtime folder's total size is not capped", file=sys.stderr)
    if kernel and (Path(kernel) / "zygote.json").is_file():
        from .zygote import start

        try:
            zygote = start(kernel)
        except RuntimeError as exc:  # its own error is above, in this log
            Result(log=f"[ERROR] {exc}").write(Path(result))
            return
    try:
        _grade(course, assignment, student, float(memory)).write(Path(result))
    finally:
        if zygote is not None:
            zygote.kill()  # bwrap --die-with-parent takes the sandbox with it; each kernel dies with the zygote
            zygote.wait()


def _grade(course: str, assignment: str, student: str, memory: float) -> Result:
    from nbgrader.apps.api import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config.loader import PyFileConfigLoader

    from .feedback import notes

    config = PyFileConfigLoader("nbgrader_config.py", path=course).load_config()
    coursedir = CourseDirectory(config=config)
    api = NbGraderAPI(coursedir=coursedir, config=config)
    result = Result()
    done = api.autograde(assignment, student, force=True, create=True)
    result.log += done.get("log", "") + done.get("error", "")
    result.autograde = bool(done.get("success"))
    if result.autograde:
        autograded = Path(coursedir.format_path(coursedir.autograded_directory, student, assignment))
        result.notes = notes(autograded, int(config.Execute.timeout), memory)
        done = api.generate_feedback(assignment, student, force=True)
        result.log += done.get("log", "") + done.get("error", "")
        result.feedback = bool(done.get("success"))
    return result


def nbgrader_cli(*args: str) -> None:
    """``nbgrader ARGS``: nbgrader's own command line (its exit status is this process's)."""
    from nbgrader.apps.nbgraderapp import NbGraderApp

    NbGraderApp.launch_instance(argv=list(args))


def child(target, args: tuple, cwd: str, env: dict, log: str) -> None:
    """The body of a forked grading process: a session of its own (the parent kills the whole group),
    ``cwd``, exactly ``env``, stdout and stderr into ``log``; then ``target(*args)``. It dies with the fork
    server, and so with the run or the service that started it, even SIGKILLed: no orphan grades on."""
    os.setsid()
    die_with_parent()
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    # a new Python would put PYTHONPATH first on sys.path; the fork server started before it was set (a course's
    # plugin or preprocessor, named by its module in nbgrader_config.py, lives in the course directory)
    sys.path[:0] = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p not in sys.path]
    tempfile.tempdir = None  # recomputed from this environment's TMPDIR
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    try:
        target(*args)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


# ---------------------------------------------------------------------------------------------
# The parent's side: starting these processes


def tool_env() -> dict[str, str]:
    """The environment for nbgrader: it runs `alembic` from PATH, so put this Python's bin first."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def course_env(course: Path) -> dict[str, str]:
    """The environment of nbgrader's processes: tool_env() and the course directory on PYTHONPATH, as when
    nbgrader runs in the course (a plugin or preprocessor that the course's nbgrader_config.py names by
    its module is importable from the scratch courses too)."""
    env = tool_env()
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(course), env.get("PYTHONPATH", "")] if p)
    return env


def _forkserver():
    """The ``multiprocessing`` context whose fork server has imported nbgrader (``PRELOAD``)."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def run_child(target, args: tuple, cwd: Path, env: dict, timeout: float | None = None) -> tuple[int, str]:
    """``target(*args)`` in a process forked from the fork server, in ``cwd`` with exactly ``env``, in a
    session of its own; return (exit code, its stdout and stderr). At ``timeout`` the whole process group
    (the process and the kernels it started) is killed and TimeoutError(output) raised."""
    fd, log = tempfile.mkstemp(prefix="bn-log-", suffix=".txt")
    os.close(fd)
    try:
        proc = _forkserver().Process(target=child, args=(target, args, str(cwd), env, log))
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
    code, out = run_child(nbgrader_cli, args, folder, env or tool_env(), timeout)
    return subprocess.CompletedProcess(["nbgrader", *args], code, out, "")


def main(argv=None) -> int:
    grade(*(argv or sys.argv[1:])[:6])
    return 0


if __name__ == "__main__":
    sys.exit(main())
