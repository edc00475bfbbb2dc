"""pytest, for tests/ and for nbval on source/: use the shared copy of names.txt when there is one.

CI and this workplace keep the data set in ../shared/data/names.txt. An explicit
BACKPROP_NINJA_NAMES wins; without either, the loader looks in data/ and then downloads.

The tests run the notebooks in grading mode (grader.training.grading_mode): Exercise 4 trains for
GRADING_STEPS steps, not 200,000, as under nbgrader. BACKPROP_NINJA_GRADING=0 switches it off.
"""

import os
from pathlib import Path

SHARED_NAMES = Path(__file__).resolve().parent.parent / "shared" / "data" / "names.txt"

if not os.environ.get("BACKPROP_NINJA_NAMES") and SHARED_NAMES.is_file():
    os.environ["BACKPROP_NINJA_NAMES"] = str(SHARED_NAMES)

os.environ.setdefault("BACKPROP_NINJA_GRADING", "1")
