"""Grading mode: is this run graded (nbgrader, CI, the test suite) or a student's own full run?

While nbgrader grades (``nbgrader autograde`` and ``nbgrader validate`` set ``NBGRADER_EXECUTION``),
in CI (``CI``) or when ``BACKPROP_NINJA_GRADING`` is set (the test suite sets it), Exercise 4 trains
for ``grader.training.GRADING_STEPS`` steps instead of 200,000, and judges the trained network by
the grading-mode limits. ``BACKPROP_NINJA_PROGRESS=text`` asks for a text progress bar (the answer keys).

This module imports nothing heavy (no torch): the instructor's commands read it too.
"""

from __future__ import annotations

import os

NBGRADER_ENV = "NBGRADER_EXECUTION"  # set by nbgrader autograde ("autograde") and validate ("validate")
GRADING_ENV = "BACKPROP_NINJA_GRADING"
CI_ENV = "CI"
PROGRESS_ENV = "BACKPROP_NINJA_PROGRESS"

_FALSE = {"", "0", "false", "no", "off"}


def _on(value: str | None) -> bool:
    return value is not None and value.strip().lower() not in _FALSE


def grading_reason(environ=None) -> str | None:
    """Why this run is in grading mode (the environment variable that says so), or None.

    ``NBGRADER_EXECUTION`` (set by ``nbgrader autograde`` and ``nbgrader validate``) always means
    grading; otherwise ``BACKPROP_NINJA_GRADING`` decides when it is set (``0``/``false`` switches
    grading mode off), and ``CI`` when it is not.
    """
    env = os.environ if environ is None else environ
    if env.get(NBGRADER_ENV):
        return f"{NBGRADER_ENV}={env[NBGRADER_ENV]}"
    if GRADING_ENV in env:
        return f"{GRADING_ENV}={env[GRADING_ENV]}" if _on(env[GRADING_ENV]) else None
    if _on(env.get(CI_ENV)):
        return f"{CI_ENV}={env[CI_ENV]}"
    return None


def grading_mode(environ=None) -> bool:
    """True while nbgrader grades the notebook, in CI, or when BACKPROP_NINJA_GRADING is set."""
    return grading_reason(environ) is not None
