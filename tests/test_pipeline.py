"""The whole pipeline with the real nbgrader: source -> release -> submissions -> autograde -> feedback.

One throwaway course grades every student of source/demo_class.toml through the README's demo
command (``python -m grader demo --all``, conftest.py's ``plain_catalogue``, graded once per session);
the tests then read its gradebook, notebooks and feedback.
"""

import csv
import re

import nbformat
import pytest

from grader.instructor import course

STUDENTS = course.demo_class()

pytestmark = pytest.mark.slow  # a real nbgrader run of a class


@pytest.fixture(scope="session")
def scores(plain_catalogue):
    root = plain_catalogue.root
    return course.scores(root)


def test_demo_command_grades_everyone_as_expected(plain_catalogue):
    root, proc = plain_catalogue.root, plain_catalogue.proc
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "NOT AS EXPECTED" not in proc.stdout
    for s in STUDENTS:
        assert re.search(rf"^{re.escape(s.id)} ", proc.stdout, re.M), s.id
    assert f"feedback: {root / 'feedback'}" in proc.stdout


def test_release_is_a_fresh_generation(plain_catalogue):
    root = plain_catalogue.root
    assert course.release_differences(root) == []


@pytest.mark.parametrize("s", STUDENTS, ids=[s.id for s in STUDENTS])
def test_each_student_loses_exactly_the_expected_points(s, plain_catalogue, scores):
    root = plain_catalogue.root
    cells = scores[s.id]
    assert len(cells) == sum(len(x) for x in _test_cells(root).values())  # deleted cells come back
    held = course.expected_held(s, cells, course.notebook_names(root))
    assert {c.cell for c in cells if c.needs_manual_grade} == held  # after a cell outside the answer language
    lost = {c.cell for c in cells if c.score < c.max_score}
    assert lost == course.expected_lost(s, cells, course.notebook_names(root))
    assert all(c.score == 0 for c in cells if c.cell in lost)
    if s.loses != "all":
        for cell, hint in s.loses.items():
            notebook = next(c.notebook for c in cells if c.cell == cell)
            assert hint in course.feedback_text(root, s.id, notebook), f"{cell}: {hint!r} not in feedback"
    for cell, text in s.shows.items():  # passing cells whose feedback must say something (e.g. why a line never ran)
        notebook = next(c.notebook for c in cells if c.cell == cell)
        assert text in course.feedback_text(root, s.id, notebook), f"{cell}: {text!r} not in feedback"
    if s.flagged or s.held:  # outside the answer language: the instructor's flag is up, holding or not
        from nbgrader.api import Gradebook

        with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
            sub = gb.find_submission(course.ASSIGNMENT, s.id)
            assert any(nb.flagged for nb in sub.notebooks), s.id


def _test_cells(root):
    return {
        name: [
            c.metadata.nbgrader.grade_id
            for c in nbformat.read(root / "source" / course.ASSIGNMENT / f"{name}.ipynb", 4).cells
            if c.metadata.get("nbgrader", {}).get("grade")
        ]
        for name in course.notebook_names(root)
    }


def autograded(root, student, notebook):
    return nbformat.read(root / "autograded" / student / course.ASSIGNMENT / f"{notebook}.ipynb", as_version=4)


def test_the_solution_prints_nothing_on_stderr(plain_catalogue):
    root = plain_catalogue.root
    for name in course.notebook_names(root):
        nb = autograded(root, "solution", name)
        bad = [
            (c.metadata.get("nbgrader", {}).get("grade_id"), o.get("name", o.output_type))
            for c in nb.cells
            if c.cell_type == "code"
            for o in c.outputs
            if o.output_type == "error" or (o.output_type == "stream" and o.name == "stderr")
        ]
        assert bad == []


def test_blank_submission_gets_zero_and_the_stub_hint(plain_catalogue, scores):
    root = plain_catalogue.root
    assert sum(c.score for c in scores["blank"]) == 0
    text = course.feedback_text(root, "blank", "01_atomic_backprop")
    assert "`dlogprobs` is not defined yet" in text and "still raises NotImplementedError()" in text


def test_an_edited_test_cell_is_restored_with_its_hidden_tests(plain_catalogue):
    root = plain_catalogue.root
    cell = next(
        c
        for c in autograded(root, "edits-a-test-cell", "01_atomic_backprop").cells
        if c.metadata.get("nbgrader", {}).get("grade_id") == "test_dcounts"
    )
    assert "cmp('counts', grader.atomic.answer('dcounts'), counts)" in cell.source
    assert "grader.atomic.verify('counts')" in cell.source


def test_a_deleted_test_cell_is_put_back_and_graded(plain_catalogue, scores):
    root = plain_catalogue.root
    ids = [
        c.metadata.get("nbgrader", {}).get("grade_id")
        for c in autograded(root, "deletes-a-test-cell", "01_atomic_backprop").cells
    ]
    assert "test_dW2" in ids
    assert next(c for c in scores["deletes-a-test-cell"] if c.cell == "test_dW2").max_score == 1


def test_grades_csv_has_nbgraders_columns_and_every_total(plain_catalogue, scores):
    root = plain_catalogue.root
    with open(root / "grades.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == [
        "assignment",
        "duedate",
        "timestamp",
        "student_id",
        "last_name",
        "first_name",
        "email",
        "raw_score",
        "late_submission_penalty",
        "score",
        "max_score",
    ]
    by_student = {r["student_id"]: r for r in rows}
    assert set(by_student) == {s.id for s in STUDENTS}
    for student, cells in scores.items():
        assert float(by_student[student]["score"]) == pytest.approx(sum(c.score for c in cells))
        assert float(by_student[student]["max_score"]) == pytest.approx(sum(c.max_score for c in cells))


FUSED = ("02_fused_cross_entropy", "03_fused_batchnorm")


def test_blank_fused_notebooks_score_zero_through_their_stubs(plain_catalogue, scores):
    root = plain_catalogue.root
    for notebook in FUSED:
        cells = [c for c in scores["blank"] if c.notebook == notebook]
        assert cells and all(c.score == 0 and not c.needs_manual_grade for c in cells)
        assert "NotImplementedError" in course.feedback_text(root, "blank", notebook)


def test_softmax_without_max_passes_the_visible_check_and_fails_the_hidden_one(plain_catalogue):
    root = plain_catalogue.root
    cell = next(
        c
        for c in autograded(root, "ce-softmax-without-max", FUSED[0]).cells
        if c.metadata.get("nbgrader", {}).get("grade_id") == "test_cross_entropy_backward_large_logits"
    )
    printed = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
    assert "| approximate: True  |" in printed and "| ok" in printed  # the visible check, at |logits| up to 10
    (error,) = [o for o in cell.outputs if o.output_type == "error"]
    assert error.ename == "AssertionError" and "NaN" in error.evalue  # the hidden one, at |logits| up to 120


TRAINING = "04_full_training"


def test_training_runs_in_grading_mode_under_autograde(plain_catalogue, scores):
    """nbgrader sets NBGRADER_EXECUTION: the solution trains GRADING_STEPS steps and gets every point of Exercise 4."""
    from grader import training

    root = plain_catalogue.root
    cells = {
        c.metadata.get("nbgrader", {}).get("grade_id") or c.get("id"): c
        for c in autograded(root, "solution", TRAINING).cells
    }
    printed = "".join(o.get("text", "") for o in cells["steps"].outputs if o.output_type == "stream")
    assert f"grading mode (NBGRADER_EXECUTION=autograde): {training.GRADING_STEPS:,} steps" in printed
    trained = "".join(o.get("text", "") for o in cells["train"].outputs if o.output_type == "stream")
    assert f"{training.GRADING_STEPS}/{training.GRADING_STEPS}" in trained
    mine = [c for c in scores["solution"] if c.notebook == TRAINING]
    assert len(mine) == 8 and sum(c.score for c in mine) == sum(c.max_score for c in mine) == 10


def test_blank_training_notebook_scores_zero_through_its_stub(plain_catalogue, scores):
    root = plain_catalogue.root
    cells = [c for c in scores["blank"] if c.notebook == TRAINING]
    assert len(cells) == 8 and all(c.score == 0 and not c.needs_manual_grade for c in cells)
    text = course.feedback_text(root, "blank", TRAINING)
    assert "manual_backward still raises NotImplementedError() (the stub)" in text
    assert "the parameters are still their initial values" in text
