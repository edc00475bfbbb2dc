"""The answer keys in notebooks/: the current sources, solved, with no hidden test, executed and clean.

Their outputs are compared by strict nbval (the second pytest session of ``make test``); here the
committed keys are checked against a fresh generation from source/, cell by cell.
"""

import re

import nbformat
import pytest

from grader.instructor import course, keys

SOURCES = keys.source_notebooks()
NAMES = [p.stem for p in SOURCES]
MARKERS = re.compile(r"### (BEGIN|END) (SOLUTION|HIDDEN TESTS)")


def committed(name):
    return nbformat.read(keys.KEYS / f"{name}.ipynb", as_version=4)


def test_every_source_notebook_has_a_key():
    assert NAMES and sorted(p.stem for p in keys.KEYS.glob("*.ipynb")) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_key_is_a_fresh_generation_of_its_source(name):
    fresh = keys.key_source(nbformat.read(keys.REPO / "source" / course.ASSIGNMENT / f"{name}.ipynb", as_version=4))
    key = committed(name)
    assert [(c.cell_type, c.source) for c in key.cells] == [(c.cell_type, c.source) for c in fresh.cells], (
        f"notebooks/{name}.ipynb is stale: run `python -m grader keys {name}`"
    )


@pytest.mark.parametrize("name", NAMES)
def test_key_has_solutions_and_no_hidden_tests(name):
    key = committed(name)
    text = "\n".join(c.source for c in key.cells)
    assert not MARKERS.search(text)
    assert "raise NotImplementedError" not in text  # every answer is in
    assert ".verify(" not in text  # the hidden parts of the test cells are out
    source = nbformat.read(keys.REPO / "source" / course.ASSIGNMENT / f"{name}.ipynb", as_version=4)
    for cell in source.cells:  # and each solution is there, in the cell it belongs to
        for solution in re.findall(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", cell.source, re.S):
            assert solution.strip() in text


@pytest.mark.parametrize("name", NAMES)
def test_key_is_executed_without_errors_or_stderr(name):
    key = committed(name)
    assert key.metadata == keys.CLEAN_METADATA
    code = [c for c in key.cells if c.cell_type == "code" and c.source.strip()]
    assert all(c.execution_count for c in code), "every code cell ran"
    for c in key.cells:
        assert c.metadata == {}, c.id  # no nbgrader metadata, tags or timings
        streams = [out for out in c.get("outputs", []) if out.output_type == "stream"]
        assert len(streams) == len({out.name for out in streams}), "streams are coalesced"
        for out in c.get("outputs", []):
            assert out.output_type != "error", c.source
            assert not (out.output_type == "stream" and (out.name == "stderr" or "\r" in out.text)), out.text


def test_key_source_drops_markers_and_hidden_tests():
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell("x = 1\n### BEGIN SOLUTION\ny = 2\n### END SOLUTION"),
            nbformat.v4.new_code_cell(
                '"""Check that y is 2."""\nassert y == 2\n### BEGIN HIDDEN TESTS\nassert secret\n### END HIDDEN TESTS'
            ),
        ]
    )
    nb.cells[1].metadata["nbgrader"] = {"grade": True}
    key = keys.key_source(nb)
    assert [c.source for c in key.cells] == ["x = 1\ny = 2", '"""Check that y is 2."""\nassert y == 2']
    assert all(c.metadata == {} for c in key.cells)
