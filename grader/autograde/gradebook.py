"""The one real gradebook (SQLite or PostgreSQL), written by the class command's own process only.

``merge`` replaces one student's submission with what its scratch gradebook holds (nbgrader's
``Gradebook`` API); ``scores`` is the one place that reads scores back (for the summary, the demo and
the tests); ``db_lock`` makes shards against one PostgreSQL gradebook take turns at creating the
assignment in it.
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
    score: float
    max_score: float
    needs_manual_grade: bool


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
    from nbgrader.api import Gradebook, MissingEntry

    out: dict[str, list[CellScore]] = {}
    with Gradebook(db_url) as gb:
        try:
            gb.find_assignment(assignment)
        except MissingEntry:
            return out
        for sub in gb.assignment_submissions(assignment):
            out[sub.student.id] = [
                CellScore(nb.name, g.name, float(g.score), float(g.max_score), bool(g.needs_manual_grade))
                for nb in sub.notebooks
                for g in nb.grades
            ]
    return out if students is None else {sid: out[sid] for sid in students if sid in out}


def merge(db_url: str, assignment: str, student: str, graded: Path | None, manual: bool) -> None:
    """Replace ``student``'s submission in the gradebook ``db_url`` with the one in the scratch gradebook
    ``graded``; without one (None, or it holds no submission), a submission whose cells are ungraded
    (``manual``: flagged for manual grading) or score 0."""
    import warnings

    from nbgrader.api import Gradebook, MissingEntry

    warnings.filterwarnings("ignore", message=".*not in session.*")  # SQLAlchemy on nbgrader's add_submission
    found = None
    if graded is not None and graded.is_file():
        src = Gradebook(f"sqlite:///{graded}")
        try:
            found = src.find_submission(assignment, student)
        except MissingEntry:
            src.close()
    try:
        with Gradebook(db_url) as dst:
            dst.update_or_create_student(student)
            try:
                dst.remove_submission(assignment, student)
            except MissingEntry:
                pass
        with Gradebook(db_url) as dst:
            sub = dst.add_submission(assignment, student, timestamp=found.timestamp if found else None)
            theirs = {(nb.name, g.name): g for nb in (found.notebooks if found else []) for g in nb.grades}
            comments = {(nb.name, c.name): c for nb in (found.notebooks if found else []) for c in nb.comments}
            flagged = {nb.name: nb.flagged for nb in (found.notebooks if found else [])}
            for nb in sub.notebooks:
                nb.flagged = flagged.get(nb.name, False)
                for g in nb.grades:
                    t = theirs.get((nb.name, g.name))
                    if t is None:  # nbgrader did not grade it: 0 (and an instructor should look)
                        g.auto_score, g.needs_manual_grade = (None, True) if manual else (0.0, False)
                    else:
                        g.auto_score, g.manual_score = t.auto_score, t.manual_score
                        g.extra_credit, g.needs_manual_grade = t.extra_credit, t.needs_manual_grade
                for c in nb.comments:
                    t = comments.get((nb.name, c.name))
                    if t is not None:
                        c.auto_comment, c.manual_comment = t.auto_comment, t.manual_comment
            dst.db.commit()
    finally:
        if found is not None:
            src.close()
