"""grader.plots: matplotlib.pyplot for the notebooks, imported without a word on stderr."""

import subprocess
import sys

import pytest

from grader.instructor import course

SLOW_FONT_CACHE = """
import threading
class Immediate(threading.Timer):  # as if building the font cache took longer than matplotlib's 5 s
    def __init__(self, interval, function, *args, **kwargs):
        super().__init__(0.0, function, *args, **kwargs)
threading.Timer = Immediate
import time
{import_}
time.sleep(0.2)
"""


@pytest.mark.parametrize(
    "import_, quiet", [("from grader.plots import plt", True), ("import matplotlib.pyplot", False)]
)
def test_pyplot_from_grader_never_writes_to_stderr(import_, quiet, tmp_path):
    """A fresh machine builds matplotlib's font cache, and says so on stderr, unless grader.plots imports it."""
    (tmp_path / "not-a-directory").touch()
    for config in (tmp_path / "fresh", tmp_path / "not-a-directory" / "x"):
        proc = subprocess.run(
            [sys.executable, "-c", SLOW_FONT_CACHE.format(import_=import_)],
            capture_output=True,
            text=True,
            env={**course.tool_env(), "MPLCONFIGDIR": str(config)},
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        assert (proc.stderr == "") == quiet, proc.stderr
