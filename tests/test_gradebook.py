"""grader/autograde/gradebook.py: merging a scratch gradebook into the real one, reading scores back.

Marked slow: making a gradebook runs alembic (seconds each), even though the module makes each only once."""

import shutil
from pathlib import Path

import pytest
from nbgrader.api import Gradebook

from grader.autograde import gradebook
from grader.autograde.gradebook import CellScore
from grader.autograde.options import Options
from grader.autograde.worker import tool_env


def make_gradebook(path: Path, graded: dict[str, dict[str, float]]) -> None:
    """A gradebook of assignment hw1 (notebook nb, test cells t1 worth 2 and t2 worth 1), with ``graded``
    (student -> cell -> auto score) submitted."""
    with Gradebook(f"sqlite:///{path}") as gb:
        gb.update_or_create_assignment("hw1")
        gb.update_or_create_notebook("nb", "hw1")
        gb.update_or_create_grade_cell("t1", "nb", "hw1", max_score=2, cell_type="code")
        gb.update_or_create_grade_cell("t2", "nb", "hw1", max_score=1, cell_type="code")
        for student, cells in graded.items():
            gb.update_or_create_student(student)
            gb.add_submission("hw1", student)
            for cell, score in cells.items():
                grade = gb.find_grade(cell, "nb", "hw1", student)
                grade.auto_score, grade.needs_manual_grade = score, False
            gb.db.commit()


GRADEBOOKS = {"empty": {}, "ann": {"ann": {"t1": 2.0, "t2": 0.0}}, "both": {"ann": {"t1": 1.0}, "bob": {"t2": 1.0}}}


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """Each of GRADEBOOKS made once (a new gradebook runs alembic: seconds), copied by ``book``."""
    folder = tmp_path_factory.mktemp("gradebooks")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PATH", tool_env()["PATH"])  # nbgrader's Gradebook runs `alembic` from PATH
        for name, graded in GRADEBOOKS.items():
            make_gradebook(folder / f"{name}.db", graded)
    return folder


@pytest.fixture
def book(made, tmp_path):
    def copy(name: str, as_name: str | None = None) -> Path:
        path = tmp_path / f"{as_name or name}.db"
        shutil.copy(made / f"{name}.db", path)
        return path

    return copy


def url(path: Path) -> str:
    return f"sqlite:///{path}"


def test_real_db(tmp_path):
    opts = Options(assignment="hw1", submissions=tmp_path, course=tmp_path)
    assert gradebook.real_db(opts) == f"sqlite:///{(tmp_path / 'gradebook.db').resolve()}"
    opts.db_url = "postgresql://grader@127.0.0.1:5432/gb"
    assert gradebook.real_db(opts) == "postgresql+psycopg2://grader@127.0.0.1:5432/gb"
    opts.db_url = "postgres://h/gb"
    assert gradebook.real_db(opts) == "postgresql+psycopg2://h/gb"
    with gradebook.db_lock("sqlite:///x.db"):  # SQLite: nothing to lock
        pass


@pytest.mark.slow
def test_merge_replaces_a_students_submission_and_scores_reads_it(book):
    real, scratch = url(book("empty", "real")), book("ann")
    for _ in range(2):  # a second merge replaces the first: nothing counted twice
        gradebook.merge(real, "hw1", "ann", scratch, manual=True)
    assert gradebook.scores(real, "hw1") == {
        "ann": [CellScore("nb", "t1", 2.0, 2.0, False, 2.0, True), CellScore("nb", "t2", 0.0, 1.0, False, 0.0, True)]
    }


@pytest.mark.slow
@pytest.mark.parametrize("manual", [True, False])
def test_an_ungraded_student_gets_cells_to_look_at_or_zeros(book, manual):
    real = url(book("empty", "real"))
    gradebook.merge(real, "hw1", "ann", book("ann"), manual=True)
    gradebook.merge(real, "hw1", "ann", None, manual=manual)  # regraded, and this time it failed
    cells = gradebook.scores(real, "hw1")["ann"]
    assert [(c.score, c.needs_manual_grade) for c in cells] == [(0.0, manual), (0.0, manual)]


@pytest.mark.slow
def test_a_scratch_gradebook_without_the_student_counts_as_ungraded(book):
    real = url(book("empty", "real"))
    gradebook.merge(real, "hw1", "bob", book("ann"), manual=False)  # it holds ann's submission only
    assert [c.score for c in gradebook.scores(real, "hw1")["bob"]] == [0.0, 0.0]


@pytest.mark.slow
def test_scores_of_some_students_or_of_an_unknown_assignment(book):
    real = url(book("both"))
    assert list(gradebook.scores(real, "hw1", ["bob", "cy", "ann"])) == ["bob", "ann"]  # in the order asked
    assert gradebook.scores(real, "hw2") == {}


@pytest.mark.slow
def test_only_a_test_cell_counts_as_autograded_as_nbgrader_decides(tmp_path, monkeypatch):
    """nbgrader's rule (utils.determine_grade): a code cell with points that is not an answer cell is scored by the
    autograder; an answer cell with points (code or markdown: nbgrader's user guide has both), a markdown cell with
    points and a task are left to a person."""
    monkeypatch.setenv("PATH", tool_env()["PATH"])
    path = tmp_path / "kinds.db"
    with Gradebook(url(path)) as gb:
        gb.update_or_create_assignment("hw1")
        gb.update_or_create_notebook("nb", "hw1")
        for name, kind in [("test", "code"), ("code_answer", "code"), ("written", "markdown"), ("md", "markdown")]:
            gb.update_or_create_grade_cell(name, "nb", "hw1", max_score=1, cell_type=kind)
        for name in ("code_answer", "written", "plain_answer"):  # plain_answer: an answer without points
            gb.update_or_create_solution_cell(name, "nb", "hw1")
        gb.update_or_create_task_cell("task", "nb", "hw1", max_score=4, cell_type="markdown")
        gb.update_or_create_student("ann")
        gb.add_submission("hw1", "ann")
    cells = gradebook.scores(url(path), "hw1")["ann"]
    assert {c.cell: c.autograded for c in cells} == {
        "test": True,
        "code_answer": False,
        "written": False,
        "md": False,
        "task": False,
    }
