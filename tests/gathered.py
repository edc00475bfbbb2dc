"""What ``python -m grader gather`` must have written in a class's --out, checked against the gradebook
(shared by the scheduler tests: test_classgrade_postgres.py's Kubernetes Indexed Job and test_slurm.py)."""

import csv
import json
from pathlib import Path

import pytest

from grader.instructor import course


def check_gathered(out: Path, cells: dict[str, list], ids: list[str]) -> dict:
    """grades.csv, summary.json and the feedback in ``out`` agree with the gradebook's ``cells``; the summary."""
    assert sorted(cells) == sorted(ids)  # every student in the gradebook, once (gradebook_cells checks that)
    with open(out / "grades.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["assignment"] == course.ASSIGNMENT]
    assert sorted(r["student_id"] for r in rows) == sorted(ids)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["gathered"] and summary["students"] == len(ids)
    assert summary["missing"] == [] and summary["changed_since_graded"] == []
    for r in rows:
        total = sum(c.score for c in cells[r["student_id"]])
        assert float(r["score"]) == pytest.approx(total), r["student_id"]
        assert float(r["max_score"]) == pytest.approx(sum(c.max_score for c in cells[r["student_id"]]))
        assert summary["totals"][r["student_id"]] == pytest.approx(total)
    assert "## Shards" in (out / "summary.md").read_text()
    for sid in ids:  # every student's feedback in one place
        assert list((out / "feedback" / sid / course.ASSIGNMENT).glob("*.html")), f"no feedback for {sid}"
        assert (out / "logs" / f"{sid}.log").is_file()
    return summary


def gradebook_cells(pg_url: str, assignment: str) -> dict[str, list]:
    """Every submission of ``assignment`` in the PostgreSQL gradebook: student -> its cells (CellScore),
    one entry per submission row (a student graded twice would show as a duplicate id)."""
    from nbgrader.api import Gradebook

    out: dict[str, list] = {}
    # SQLAlchemy 2.1 defaults to psycopg 3
    with Gradebook(pg_url.replace("postgresql://", "postgresql+psycopg2://")) as gb:
        for sub in gb.assignment_submissions(assignment):
            assert sub.student.id not in out, f"{sub.student.id} is in the gradebook twice"
            out[sub.student.id] = [
                course.CellScore(nb.name, g.name, float(g.score), float(g.max_score), bool(g.needs_manual_grade))
                for nb in sub.notebooks
                for g in nb.grades
            ]
    return out
