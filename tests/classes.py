"""Every class the tests grade, built in one place from the catalogue (source/demo_class.toml).

* ``released_course(path)``: a course at ``path`` with this course's config, source/ and a generated
  release/ (its gradebook knows the assignment): a copy of one generation made once per test session
  (``nbgrader generate_assignment`` takes seconds; a copy takes milliseconds).
* ``catalogue(ids, notebooks=...)``: the catalogue's students, in its order, optionally handing in only
  ``notebooks``; ``build(root, students)``: a released course in ``root/course`` with their submissions in
  ``root/submitted`` (``Class``, named fields).
* ``class_command(...)`` / ``autograde(...)``: ``python -m grader autograde`` as the tests run it;
  ``demo(...)``: the README's ``python -m grader demo``.

The graded classes themselves are session fixtures (conftest.py): each is graded once and tests that change
one work on a copy.
"""

from __future__ import annotations

import atexit
import dataclasses
import functools
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from grader.instructor import course


@functools.cache
def _released() -> Path:
    """The session's one generated course (removed when the session ends)."""
    root = Path(tempfile.mkdtemp(prefix="bn-released-"))
    atexit.register(shutil.rmtree, root, True)
    c = course.new_course(root / "course")
    course.generate_release(c)
    return c


def released_course(path: Path) -> Path:
    """A released course at ``path`` (it must not exist): config, source/, release/, gradebook.db."""
    shutil.copytree(_released(), path, symlinks=True)
    return path


def catalogue(ids=None, notebooks: list[str] | None = None) -> list[course.DemoStudent]:
    """The catalogue's students, the sandbox-only ones too (all, or those in ``ids``), each handing in
    ``notebooks`` when given."""
    students = [s for s in course.demo_class(sandbox_only=True) if ids is None or s.id in ids]
    if ids is not None:
        missing = set(ids) - {s.id for s in students}
        assert not missing, f"not in source/demo_class.toml: {sorted(missing)}"
    if notebooks is not None:
        students = [dataclasses.replace(s, notebooks=list(notebooks)) for s in students]
    return students


@dataclass
class Class:
    """A built class: the course folder and the folder of submissions (``submitted/<id>/<assignment>``)."""

    course: Path
    submitted: Path


def build(root: Path, students, in_course: bool = False) -> Class:
    """A released course in ``root/course`` and ``students``' submissions, in ``root/submitted`` (or, with
    ``in_course``, in the course's own submitted/, where plain ``nbgrader autograde`` reads them)."""
    c = released_course(root / "course")
    submitted = c / "submitted" if in_course else root / "submitted"
    for s in students:
        course.make_submission(c, s, out=submitted / s.id / course.ASSIGNMENT)
    return Class(c, submitted)


def command(c: Path, submitted: Path, out: Path, *extra, assignment: str = course.ASSIGNMENT) -> list[str]:
    """``python -m grader autograde`` on ``submitted`` with 2 workers, no progress bar, and ``extra``."""
    return [
        sys.executable,
        "-m",
        "grader",
        "autograde",
        assignment,
        str(submitted),
        "--course",
        str(c),
        "--out",
        str(out),
        "--workers",
        "2",
        "--no-progress",
        *extra,
    ]


def autograde(c: Path, submitted: Path, out: Path, *extra, env=None, assignment: str = course.ASSIGNMENT, timeout=1800):
    """Run ``command``; return the finished process."""
    return subprocess.run(
        command(c, submitted, out, *extra, assignment=assignment),
        capture_output=True,
        text=True,
        env=env or course.tool_env(),
        timeout=timeout,
    )


def class_command(c: Path, out: Path, *extra, env=None, assignment: str = "hw1", timeout=900):
    """The class command on the course's own submitted/ (the tiny course's ``hw1`` by default)."""
    return autograde(c, c / "submitted", out, *extra, env=env, assignment=assignment, timeout=timeout)


def demo(root: Path, *flags: str, env=None, timeout=1800) -> subprocess.CompletedProcess:
    """``python -m grader demo --check-release --course-dir ROOT FLAGS`` (the README's demo command); the
    finished process."""
    return subprocess.run(
        [sys.executable, "-m", "grader", "demo", "--check-release", "--course-dir", str(root), *flags],
        capture_output=True,
        text=True,
        env=env or course.tool_env(),
        timeout=timeout,
    )
