"""matplotlib for the notebooks, imported without a word on stderr.

The first ``import matplotlib.pyplot`` on a machine builds matplotlib's font cache and, when that
takes more than 5 s (a busy grading server, a fresh CI machine), logs "Matplotlib is building
the font cache; this may take a moment." to stderr; it also logs a warning when its cache
directory is not writable. nbgrader scores a test cell 0 for any stderr output, so the notebooks
import pyplot from here::

    from grader.plots import plt

which silences matplotlib's logger while pyplot loads, and only then.
"""

from __future__ import annotations

import logging


def _quiet_import():
    log = logging.getLogger("matplotlib")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        import matplotlib.pyplot as pyplot  # builds the font cache on first use
    finally:
        log.setLevel(level)
    return pyplot


plt = _quiet_import()
