"""`nbgrader validate`, as an instructor or a student runs it: every source notebook passes its tests,
and every release notebook passes none (``--invert``: no test of an unanswered notebook may pass).
"""

import subprocess
import sys

import pytest

from grader.instructor import course

NAMES = course.notebook_names(course.REPO)
pytestmark = pytest.mark.slow  # each runs `nbgrader validate`, a kernel per notebook


def validate(folder: str, name: str, *flags: str) -> subprocess.CompletedProcess:
    path = course.REPO / folder / course.ASSIGNMENT / f"{name}.ipynb"
    return subprocess.run(
        [sys.executable, "-m", "nbgrader", "validate", *flags, str(path)],
        cwd=course.REPO,
        env=course.tool_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.mark.parametrize("name", NAMES)
def test_source_notebook_passes_nbgrader_validate(name):
    proc = validate("source", name)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Success! Your notebook passes all the tests." in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.parametrize("name", NAMES)
def test_release_notebook_passes_no_test_under_validate_invert(name):
    proc = validate("release", name, "--invert")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Success! The notebook does not pass any tests." in proc.stdout, proc.stdout + proc.stderr
