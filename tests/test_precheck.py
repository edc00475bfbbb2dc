"""The prechecks of ``python -m grader autograde`` (grader/autograde/precheck.py; no grading: fast)."""

import json

import nbformat

from grader.autograde import precheck
from grader.cells import grade_id
from grader.instructor import course

SOURCE = course.REPO / "source" / course.ASSIGNMENT
RELEASE = course.REPO / "release" / course.ASSIGNMENT
NB = "01_atomic_backprop"


def release_nb(name=NB):
    return nbformat.read(RELEASE / f"{name}.ipynb", as_version=4)


def check(tmp_path, nb_or_text, name=NB):
    path = tmp_path / "in" / f"{name}.ipynb"
    path.parent.mkdir(exist_ok=True)
    if isinstance(nb_or_text, str):
        path.write_text(nb_or_text)
    else:
        nbformat.write(nb_or_text, path)
    return precheck.check("s", {name: path}, SOURCE, tmp_path / "out")


def cell(nb, gid):
    return next(c for c in nb.cells if grade_id(c) == gid)


def test_the_release_notebooks_pass_clean(tmp_path):
    report = precheck.check("s", {p.stem: p for p in RELEASE.glob("*.ipynb")}, SOURCE, tmp_path)
    assert (report.problems, report.repairs, report.flags, report.missing) == ([], [], [], [])
    assert set(report.notebooks) == {p.stem for p in SOURCE.glob("*.ipynb")}


def test_invalid_json_is_a_problem_with_its_reason(tmp_path):
    report = check(tmp_path, '{"cells": [')
    assert report.notebooks == {} and "not valid JSON" in report.problems[0]


def test_a_duplicated_grade_id_is_made_an_ordinary_cell(tmp_path):
    nb = release_nb()
    i = nb.cells.index(cell(nb, "answer_tanh"))
    twin = nbformat.from_dict(json.loads(json.dumps(nb.cells[i])))
    twin.id = "twin"
    nb.cells.insert(i + 1, twin)
    report = check(tmp_path, nb)
    assert any("'answer_tanh' appears twice" in r for r in report.repairs)
    fixed = nbformat.read(report.notebooks[NB], 4)
    assert [grade_id(c) for c in fixed.cells].count("answer_tanh") == 1
    assert len(fixed.cells) == len(nb.cells)  # the copy stays, as an ordinary cell


def test_a_changed_cell_type_is_changed_back(tmp_path):
    nb = release_nb()
    cell(nb, "answer_embedding").cell_type = "markdown"
    report = check(tmp_path, nb)
    assert any("changed from code to markdown" in r for r in report.repairs)
    assert cell(nbformat.read(report.notebooks[NB], 4), "answer_embedding").cell_type == "code"


def test_deleted_cells_and_edited_tests_are_reported(tmp_path):
    nb = release_nb()
    nb.cells = [c for c in nb.cells if grade_id(c) not in ("test_dW2", "answer_tanh")]
    cell(nb, "test_dcounts").source = "pass"
    report = check(tmp_path, nb)
    assert any("test cell 'test_dW2' was deleted" in r for r in report.repairs)
    assert any("answer cell 'answer_tanh' was deleted" in p for p in report.problems)
    assert any("'test_dcounts' was edited" in r for r in report.repairs)


def test_answers_reaching_for_the_harness_are_flagged():
    assert precheck.reaches("dW2 = h.T @ dlogits") == []
    assert "reads .grad" in precheck.reaches("dW2 = W2.grad")
    assert any("grader" in f for f in precheck.reaches("import grader.checks\ngrader.checks.compare = print"))
    assert any("sys" in f for f in precheck.reaches("import sys\nsys.modules['grader'] = None"))
    assert any("builtins" in f for f in precheck.reaches("import builtins\nbuiltins.print = len"))
    assert any("cmp" in f for f in precheck.reaches("cmp = lambda *a: None"))
    assert any("network" in f for f in precheck.reaches("import socket"))
