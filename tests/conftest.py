"""Shared fixtures (the data set's location is set by the root conftest.py)."""

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def names_file() -> Path:
    """A verified copy of names.txt (the one the tests point the loader at)."""
    from grader.data import names_path

    return names_path()
