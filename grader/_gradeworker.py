"""The grading processes of ``python -m grader autograde``: nbgrader's API and CLI, without the start-up.

Every student is graded in a process of its own (its own process group, killed whole at the
wall-clock limit), and so are the class's ``nbgrader generate_assignment`` and ``export``. Starting
Python and importing nbgrader costs about 3 s of CPU each time, as much as a tenth of a student's
grading, so these processes are forked from a ``multiprocessing`` fork server that has imported
nbgrader once (``PRELOAD``). A forked child is still a fresh process: it gets its own working folder,
environment, session and log file (``child``), and the student's code never runs in it (only in the
sandboxed kernels it starts).

``python -m grader._gradeworker COURSE ASSIGNMENT STUDENT MEMORY [KERNELSPEC-FOLDER]`` runs ``grade`` in
this process (for debugging one student by hand).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

# imported once by the fork server; a module that fails to import is just not preloaded
PRELOAD = ["nbgrader.apps.api", "nbgrader.apps.nbgraderapp", "nbgrader.api", "nbconvert.exporters", "grader.classgrade"]


def grade(course: str, assignment: str, student: str, memory: str, kernel: str = "") -> None:
    """``NbGraderAPI.autograde``, ``grader.classgrade.prepare_feedback`` and ``NbGraderAPI.generate_feedback``
    of one student in the scratch course COURSE (its nbgrader_config.py). Prints one JSON line:
    {"autograde": bool, "feedback": bool, "log": str, "reasons": [str]}.

    KERNEL: the kernelspec's folder; when it has a zygote.json, the student's zygote (grader/zygote.py)
    is started first and stopped at the end."""
    zygote = None
    if kernel and (Path(kernel) / "zygote.json").is_file():
        from grader.zygote import start

        try:
            zygote = start(kernel)
        except RuntimeError as exc:  # its own error is above, in this log
            print(json.dumps({"autograde": False, "feedback": False, "reasons": [], "log": f"[ERROR] {exc}"}))
            return
    try:
        _grade(course, assignment, student, memory)
    finally:
        if zygote is not None:
            zygote.kill()  # bwrap --die-with-parent takes the sandbox with it; each kernel dies with the zygote
            zygote.wait()


def _grade(course: str, assignment: str, student: str, memory: str) -> None:
    from nbgrader.apps.api import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config.loader import PyFileConfigLoader

    from grader import classgrade

    config = PyFileConfigLoader("nbgrader_config.py", path=course).load_config()
    coursedir = CourseDirectory(config=config)
    api = NbGraderAPI(coursedir=coursedir, config=config)
    result = {"autograde": False, "feedback": False, "log": "", "reasons": []}
    done = api.autograde(assignment, student, force=True, create=True)
    result["log"] += done.get("log", "") + done.get("error", "")
    result["autograde"] = bool(done.get("success"))
    if result["autograde"]:
        result["reasons"] = classgrade.prepare_feedback(
            Path(course), assignment, student, int(config.Execute.timeout), float(memory)
        )
        done = api.generate_feedback(assignment, student, force=True)
        result["log"] += done.get("log", "") + done.get("error", "")
        result["feedback"] = bool(done.get("success"))
    print(json.dumps(result), flush=True)


def nbgrader_cli(*args: str) -> None:
    """``nbgrader ARGS``: nbgrader's own command line (its exit status is this process's)."""
    from nbgrader.apps.nbgraderapp import NbGraderApp

    NbGraderApp.launch_instance(argv=list(args))


def child(target, args: tuple, cwd: str, env: dict, log: str) -> None:
    """The body of a forked grading process: a session of its own (the parent kills the whole group),
    ``cwd``, exactly ``env``, stdout and stderr into ``log``; then ``target(*args)``."""
    os.setsid()
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
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


def main(argv=None) -> int:
    grade(*(argv or sys.argv[1:])[:5])
    return 0


if __name__ == "__main__":
    sys.exit(main())
