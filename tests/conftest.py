"""Shared fixtures (the data set's location is set by the root conftest.py)."""

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def names_file() -> Path:
    """A verified copy of names.txt (the one the tests point the loader at)."""
    from grader.data import names_path

    return names_path()


@pytest.fixture(scope="session")
def sandbox_required() -> None:
    """A working bubblewrap sandbox (grader.autograde.sandbox.probe): in CI (CI=true) its absence fails,
    elsewhere it skips."""
    from grader.autograde import sandbox

    try:
        sandbox.probe()
    except sandbox.SandboxError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI must provide a working bubblewrap sandbox: {exc}")
        pytest.skip(f"no working sandbox here: {exc}")
