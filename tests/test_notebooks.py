"""The notebooks as files: clean, well-formed nbgrader notebooks, and a release with no answers in it."""

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from grader.instructor import course

REPO = Path(course.REPO)
SOURCE = REPO / "source" / course.ASSIGNMENT
RELEASE = REPO / "release" / course.ASSIGNMENT
NOTEBOOKS = sorted(p.stem for p in SOURCE.glob("*.ipynb"))
HIDDEN = re.compile(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", re.S)
SOLUTION = re.compile(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", re.S)


def read(folder: Path, name: str):
    return nbformat.read(folder / f"{name}.ipynb", as_version=4)


def meta(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


def is_test(cell) -> bool:
    """A test cell, scored by the autograder (nbgrader's rule): code with points, not an answer. An answer with
    points (a written question, markdown) is graded by hand (docs/instructors.md)."""
    return bool(meta(cell).get("grade")) and not meta(cell).get("solution") and cell.cell_type == "code"


def test_the_assignment_has_notebooks():
    assert "01_atomic_backprop" in NOTEBOOKS
    assert sorted(p.stem for p in RELEASE.glob("*.ipynb")) == NOTEBOOKS


@pytest.mark.parametrize("folder", [SOURCE, RELEASE], ids=["source", "release"])
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_without_outputs_and_with_clean_metadata(folder, name):
    nb = read(folder, name)
    nbformat.validate(nb)
    assert set(nb.metadata) <= {"kernelspec", "language_info"}
    assert nb.metadata.kernelspec.name == "python3"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.id
        assert set(cell.metadata) <= {"nbgrader", "tags", "deletable", "editable"}, cell.id


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_test_cells_follow_the_house_style(name):
    tests = [c for c in read(SOURCE, name).cells if is_test(c)]
    assert tests
    for cell in tests:
        gid = meta(cell)["grade_id"]
        assert gid.startswith("test_"), gid
        assert cell.source.startswith('"""Check that'), gid
        hidden = HIDDEN.search(cell.source)
        assert hidden and hidden.group(1).strip(), f"{gid} has no hidden part"
        visible = HIDDEN.sub("", cell.source).split('"""', 2)[2]
        assert re.search(r"\w+\(", visible), f"{gid} has no visible check"
        assert "raises-exception" in cell.metadata.get("tags", []), gid
        assert meta(cell)["locked"] and meta(cell)["points"] > 0


def test_grade_ids_are_unique_across_the_assignment():
    ids = [meta(c)["grade_id"] for name in NOTEBOOKS for c in read(SOURCE, name).cells if meta(c)]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_answer_cells_run_through_the_stub(name):
    for cell in read(RELEASE, name).cells:
        if meta(cell).get("solution") and cell.cell_type == "code":
            assert "raise NotImplementedError()" in cell.source
            assert "raises-exception" in cell.metadata.get("tags", [])
        elif meta(cell).get("solution"):  # a written answer: nbgrader's text stub
            assert "YOUR ANSWER HERE" in cell.source


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_release_has_no_solution_and_no_hidden_tests(name):
    source, release = read(SOURCE, name), read(RELEASE, name)
    text = "\n".join(c.source for c in release.cells)
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
        assert marker not in text
    released_lines = {line.strip() for c in release.cells if c.cell_type == "code" for line in c.source.splitlines()}
    for cell in source.cells:
        for region in SOLUTION.findall(cell.source) + HIDDEN.findall(cell.source):
            for line in region.splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    assert line not in released_lines, f"{meta(cell).get('grade_id')}: {line}"


def execute(nb, cwd: Path):
    """Run a notebook as JupyterLab's Run All does: stop at an error unless the cell is tagged raises-exception."""
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def streams(nb, name: str):
    return [
        (c.id, o.text)
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.output_type == "stream" and o.name == name
    ]


# The source notebooks run once, under nbval (testpaths): conftest.py fails a cell of theirs that raises or writes
# to stderr. That is also what `nbgrader validate` of a source notebook checks (every test cell passes).


@pytest.mark.slow  # a kernel runs the notebook
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_release_runs_through_every_stub(name, tmp_path):
    """Run as a student first opens it: no stderr, and every test cell fails (what `nbgrader validate --invert`
    checks: no test of an unanswered notebook passes; the browser test runs the Validate button on one)."""
    nb = execute(read(RELEASE, name), tmp_path)
    assert streams(nb, "stderr") == []
    for cell in nb.cells:
        if is_test(cell):  # every test cell ran, and failed
            assert [o.ename for o in cell.outputs if o.output_type == "error"], meta(cell)["grade_id"]
