"""The one real gradebook (SQLite or PostgreSQL), written by the class command's own process only.

``seed`` gives a student's scratch gradebook its submission as the real one has it, ``merge`` updates
the real one from the scratch one as nbgrader's autograde would (nbgrader's ``Gradebook`` API);
``scores`` is the one place that reads scores back (for the summary, the canary, the demo and the
tests), ``late_submissions`` the late ones; ``db_lock`` makes shards against one PostgreSQL gradebook
take turns at creating the assignment in it.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .options import Options

LOCK_KEY = 20260505  # the PostgreSQL advisory lock of this command


@dataclass
class CellScore:
    notebook: str
    cell: str
    score: float  # nbgrader's: the manual score if a person gave one, else the autograder's
    max_score: float
    needs_manual_grade: bool
    auto_score: float | None = None  # the autograder's alone
    autograded: bool = True  # a test cell (the autograder scores it); False: a cell nbgrader leaves to a person


def real_db(opts: Options) -> str:
    """The gradebook's SQLAlchemy URL: ``--db-url``, or COURSE/gradebook.db."""
    url = opts.db_url or f"sqlite:///{(opts.course / 'gradebook.db').resolve()}"
    if url.startswith(("postgresql://", "postgres://")):  # SQLAlchemy 2.1 would look for psycopg 3
        url = "postgresql+psycopg2://" + url.split("://", 1)[1]
    return url


@contextmanager
def db_lock(db_url: str):
    """Shards against one PostgreSQL gradebook take turns at creating the assignment in it."""
    if not db_url.startswith("postgresql"):
        yield
        return
    from sqlalchemy import create_engine, text

    engine = create_engine(db_url)
    with engine.connect() as conn:
        conn.execute(text(f"SELECT pg_advisory_lock({LOCK_KEY})"))
        try:
            yield
        finally:
            conn.execute(text(f"SELECT pg_advisory_unlock({LOCK_KEY})"))
    engine.dispose()


def scores(db_url: str, assignment: str, students: list[str] | None = None) -> dict[str, list[CellScore]]:
    """Every graded cell of each student (of ``students``, default all) that has a submission of ``assignment``."""
    from nbgrader.api import Gradebook

    with Gradebook(db_url) as gb:
        return {
            sub.student.id: [
                CellScore(
                    nb.name,
                    g.name,
                    float(g.score),
                    float(g.max_score),
                    bool(g.needs_manual_grade),
                    None if g.auto_score is None else float(g.auto_score),
                    autograded(g.cell),
                )
                for nb in sub.notebooks
                for g in nb.grades
            ]
            for sub in _submissions(gb, assignment, students)
        }


def autograded(cell) -> bool:
    """Whether nbgrader's autograder scores this graded cell (a ``GradeCell`` or ``TaskCell`` of the gradebook), as
    ``nbgrader.utils.determine_grade`` decides: only a test cell, a code cell with points that is not also an answer
    cell. An answer cell with points (``grade`` and ``solution``: "Manually graded answer", code or markdown), a
    markdown cell with points and a task are left to a person (``needs_manual_grade``)."""
    from nbgrader.api import GradeCell

    if not isinstance(cell, GradeCell) or cell.cell_type != "code":
        return False
    return cell.name not in {s.name for s in cell.notebook.solution_cells}


def _grades(sub) -> dict:
    """A submission's grades and comments by (notebook, cell), and its notebooks by name."""
    notebooks = {nb.name: nb for nb in sub.notebooks} if sub is not None else {}
    grades = {(nb.name, g.name): g for nb in notebooks.values() for g in nb.grades}
    comments = {(nb.name, c.name): c for nb in notebooks.values() for c in nb.comments}
    return {"notebooks": notebooks, "grades": grades, "comments": comments}


def copy_duedate(db_url: str, assignment: str, template_db: Path) -> None:
    """The real assignment's due date (set in the formgrader, by `nbgrader db assignment`, or by the config)
    into the template's gradebook: nbgrader's late penalty in each scratch course then sees it."""
    from nbgrader.api import Gradebook

    with Gradebook(db_url) as real:
        duedate = real.find_assignment(assignment).duedate
    with Gradebook(f"sqlite:///{template_db}") as scratch:
        scratch.update_or_create_assignment(assignment, duedate=duedate)


def seed(db_url: str, assignment: str, student: str, key: str, scratch_db: Path) -> None:
    """Put ``student``'s submission as the real gradebook has it (TA overrides, comments, flags, timestamp) into
    its scratch gradebook (as ``key``), so that nbgrader's autograde there treats it exactly as it would in the
    course: a manual score is kept and its cell marked for review, a manual comment is kept."""
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(db_url) as real:
        try:
            old = real.find_submission(assignment, student)
        except MissingEntry:
            return
        with Gradebook(f"sqlite:///{scratch_db}") as scratch:
            scratch.update_or_create_student(key)
            new = scratch.add_submission(assignment, key, timestamp=old.timestamp)
            theirs, mine = _grades(old), _grades(new)
            for name, nb in mine["notebooks"].items():
                if name in theirs["notebooks"]:
                    nb.flagged = theirs["notebooks"][name].flagged
            for k, g in mine["grades"].items():
                if k in theirs["grades"]:
                    t = theirs["grades"][k]
                    g.auto_score, g.manual_score, g.extra_credit = t.auto_score, t.manual_score, t.extra_credit
                    g.needs_manual_grade = t.needs_manual_grade
            for k, c in mine["comments"].items():
                if k in theirs["comments"]:
                    c.auto_comment, c.manual_comment = (
                        theirs["comments"][k].auto_comment,
                        theirs["comments"][k].manual_comment,
                    )
            scratch.db.commit()


def merge(db_url: str, assignment: str, student: str, graded: Path | None, manual: bool, key: str = "") -> list[str]:
    """Update ``student``'s submission in the gradebook ``db_url`` from the scratch gradebook ``graded`` (where it
    is ``key``, default ``student``), as nbgrader's autograde updates a submission: the autograder's scores,
    comments, timestamp and late penalty replace the old ones; what a person wrote (manual scores, manual
    comments, flags) is kept, a flag the autograde raised (the answer language's) is added, and a manual
    score beside a changed autograder score is marked for review. Without a graded submission (``graded``
    None, or it holds none), its cells are marked for manual grading (``manual``) or score 0. Returns the
    overrides to review."""
    import warnings

    from nbgrader.api import Gradebook, MissingEntry

    warnings.filterwarnings("ignore", message=".*not in session.*")  # SQLAlchemy on nbgrader's add_submission
    review = []
    src = Gradebook(f"sqlite:///{graded}") if graded is not None and graded.is_file() else None
    try:
        found = None
        if src is not None:
            try:
                found = src.find_submission(assignment, key or student)
            except MissingEntry:
                found = None
        theirs = _grades(found)
        with Gradebook(db_url) as dst:
            dst.update_or_create_student(student)
            try:
                sub = dst.find_submission(assignment, student)
            except MissingEntry:
                sub = dst.add_submission(assignment, student)
            if found is not None:
                sub.timestamp = found.timestamp
            mine = _grades(sub)
            for name, nb in mine["notebooks"].items():
                if name in theirs["notebooks"]:
                    nb.late_submission_penalty = theirs["notebooks"][name].late_submission_penalty
                    # the scratch notebook started with this flag (seed); the course's preprocessors may have
                    # raised it since (the answer language flags what it holds), as they would here
                    nb.flagged = nb.flagged or theirs["notebooks"][name].flagged
            for k, g in mine["grades"].items():
                t = theirs["grades"].get(k)
                before = g.auto_score
                if t is None:  # nbgrader did not grade it: 0 (and an instructor should look)
                    g.auto_score = None if manual else 0.0
                    g.needs_manual_grade = manual or g.manual_score is not None
                else:
                    g.auto_score, g.extra_credit = t.auto_score, t.extra_credit
                    g.needs_manual_grade = t.needs_manual_grade or g.manual_score is not None
                if g.manual_score is not None and g.auto_score != before:
                    review.append(
                        f"a manual score on {k[0]}/{k[1]} ({g.manual_score:g}) was kept; the autograder now "
                        f"gives {'nothing' if g.auto_score is None else f'{g.auto_score:g}'} (it gave "
                        f"{'nothing' if before is None else f'{before:g}'}): review it"
                    )
            for k, c in mine["comments"].items():
                if k in theirs["comments"]:
                    c.auto_comment = theirs["comments"][k].auto_comment
            dst.db.commit()
    finally:
        if src is not None:
            src.close()
    return review


def late_submissions(db_url: str, assignment: str, students: list[str]) -> dict[str, dict[str, float]]:
    """Who handed in after the due date, by how many seconds, and the penalty nbgrader's plugin gave."""
    from nbgrader.api import Gradebook

    with Gradebook(db_url) as gb:
        return {
            sub.student.id: {
                "seconds_late": float(sub.total_seconds_late),
                "penalty": float(sum(nb.late_submission_penalty or 0.0 for nb in sub.notebooks)),
            }
            for sub in _submissions(gb, assignment, students)
            if sub.total_seconds_late > 0
        }


def _submissions(gb, assignment: str, students: list[str] | None = None) -> list:
    """The submissions of ``assignment`` in the open gradebook ``gb`` (of ``students``, default all, in their
    order); none when the gradebook does not know the assignment."""
    from nbgrader.api import MissingEntry

    try:
        gb.find_assignment(assignment)
    except MissingEntry:
        return []
    found = {sub.student.id: sub for sub in gb.assignment_submissions(assignment)}
    return list(found.values()) if students is None else [found[s] for s in students if s in found]
