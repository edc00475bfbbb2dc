"""grader.mode: when a run is in grading mode, and that deciding it needs no torch."""

import subprocess
import sys

import pytest

from grader import mode


@pytest.mark.parametrize(
    "env, reason",
    [
        ({}, None),
        ({"NBGRADER_EXECUTION": "autograde"}, "NBGRADER_EXECUTION=autograde"),
        ({"NBGRADER_EXECUTION": "validate"}, "NBGRADER_EXECUTION=validate"),
        ({"CI": "true"}, "CI=true"),
        ({"CI": "false"}, None),
        ({"CI": " Off "}, None),
        ({"BACKPROP_NINJA_GRADING": "1"}, "BACKPROP_NINJA_GRADING=1"),
        ({"BACKPROP_NINJA_GRADING": "0", "CI": "true"}, None),  # the explicit switch wins over CI
        ({"BACKPROP_NINJA_GRADING": "", "CI": "true"}, None),
        ({"BACKPROP_NINJA_GRADING": "0", "NBGRADER_EXECUTION": "autograde"}, "NBGRADER_EXECUTION=autograde"),
        ({"NBGRADER_EXECUTION": "", "CI": "1"}, "CI=1"),
    ],
)
def test_grading_mode_detection(env, reason):
    assert mode.grading_reason(env) == reason
    assert mode.grading_mode(env) == (reason is not None)


def test_it_reads_the_process_environment_by_default(monkeypatch):
    for name in (mode.NBGRADER_ENV, mode.GRADING_ENV, mode.CI_ENV):
        monkeypatch.delenv(name, raising=False)
    assert mode.grading_reason() is None
    monkeypatch.setenv(mode.GRADING_ENV, "yes")
    assert mode.grading_reason() == "BACKPROP_NINJA_GRADING=yes" and mode.grading_mode()


def test_the_variable_names():
    assert (mode.NBGRADER_ENV, mode.GRADING_ENV, mode.CI_ENV, mode.PROGRESS_ENV) == (
        "NBGRADER_EXECUTION",
        "BACKPROP_NINJA_GRADING",
        "CI",
        "BACKPROP_NINJA_PROGRESS",
    )


def test_nbgrader_sets_the_variable_grading_mode_reads():
    """nbgrader 0.9.6 sets NBGRADER_EXECUTION around autograde's and validate's execution."""
    import inspect

    from nbgrader import validator
    from nbgrader.converters import autograde

    assert f"{mode.NBGRADER_ENV}='autograde'" in inspect.getsource(autograde)
    assert f"{mode.NBGRADER_ENV}='validate'" in inspect.getsource(validator)


def test_it_imports_without_torch():
    """The instructor's commands read grading mode without paying for torch."""
    code = "import sys, grader.mode; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
