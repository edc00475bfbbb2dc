"""pytest, for tests/ and for nbval on source/: use the shared copy of names.txt when there is one.

CI and this workplace keep the data set in ../shared/data/names.txt. An explicit
BACKPROP_NINJA_NAMES wins; without either, the loader looks in data/ and then downloads.

The tests run the notebooks in grading mode (grader.training.grading_mode): Exercise 4 trains for
GRADING_STEPS steps, not 200,000, as under nbgrader. BACKPROP_NINJA_GRADING=0 switches it off.
"""

import os
from pathlib import Path

import pytest

SHARED_NAMES = Path(__file__).resolve().parent.parent / "shared" / "data" / "names.txt"

if not os.environ.get("BACKPROP_NINJA_NAMES") and SHARED_NAMES.is_file():
    os.environ["BACKPROP_NINJA_NAMES"] = str(SHARED_NAMES)

os.environ.setdefault("BACKPROP_NINJA_GRADING", "1")


# ---------------------------------------------------------------------------------------------
# Both cores: `make test` runs pytest-xdist with `--dist loadfile`: each test module and each notebook nbval
# runs goes to one worker, in its order (a module's fixtures are made once; a notebook's cells share one
# kernel). The modules are handed out heaviest first (HEAVY, measured: docs/maintainers.md), so that no long
# one starts last. (`--dist loadgroup` would let two modules share a worker, but pytest-xdist 3.8 cannot
# group under pytest 9: it renames a node id pytest 9 no longer reads.)
HEAVY = [
    "test_pipeline.py",
    "test_gradebook_fidelity.py",
    "test_classgrade.py",
    "test_jupyterhub.py",
    "test_honest_corpus.py",
    "test_slurm.py",
    "test_sandbox.py",
    "test_canary.py",
    "test_browser.py",
    "test_classgrade_postgres.py",
    "test_faults.py",
]


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(HEAVY)}
    items.sort(key=lambda item: rank.get(item.path.name, len(HEAVY)))  # stable: each module keeps its order


# ---------------------------------------------------------------------------------------------
# nbval runs each source notebook once (testpaths); its lax mode lets a cell tagged raises-exception raise.
# A source notebook holds the solutions, so none of its cells may raise, and none may write to stderr
# (nbgrader scores a test cell with any stderr 0): checked here on the outputs nbval collected, in the
# same run (what `nbgrader validate` of a source notebook checks, and more).
SOURCE = Path(__file__).resolve().parent / "source"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    result = yield
    outputs = getattr(item, "test_outputs", None)  # an nbval cell's outputs (nbval.plugin.IPyNbCell)
    if outputs is not None and SOURCE in item.path.parents:
        bad = [
            f"{o.ename}: {o.evalue}" if o.output_type == "error" else f"stderr: {o.text.strip()[:300]}"
            for o in outputs
            if o.output_type == "error" or (o.output_type == "stream" and o.name == "stderr")
        ]
        assert not bad, "a source notebook's cell must not raise or write to stderr:\n" + "\n".join(bad)
    return result
