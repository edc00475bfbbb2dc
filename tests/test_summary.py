"""grader/autograde/summary.py: the class's totals, per-cell means and the students to look at."""

import json

from grader.autograde import summary
from grader.autograde.gradebook import CellScore
from grader.autograde.ledger import Ledger
from grader.autograde.options import Options
from grader.autograde.submissions import Student


def test_summarize_reads_the_gradebook_and_the_ledger(tmp_path, monkeypatch):
    found = {
        "ann": [CellScore("nb", "t1", 2.0, 2.0, False), CellScore("nb", "t2", 1.0, 1.0, False)],
        "bob": [CellScore("nb", "t1", 0.0, 2.0, False), CellScore("nb", "t2", 0.0, 1.0, True)],
    }
    asked = []

    def scores(db, assignment, students):
        asked.append((db, assignment, students))
        return {s: found[s] for s in students if s in found}

    monkeypatch.setattr(summary, "scores", scores)
    monkeypatch.setattr(summary, "late_submissions", lambda db, assignment, students: {})
    opts = Options(assignment="hw1", submissions=tmp_path, course=tmp_path, out=tmp_path, workers=3)
    ledger = Ledger(tmp_path / "ledger.jsonl")
    ledger.add({"student": "bob", "graded": True, "reasons": ["stopped"], "problems": [], "repairs": ["fixed"]})
    ledger.add({"student": "cy", "graded": False, "reasons": [], "problems": ["not valid JSON"], "flags": ["uses os"]})
    result = summary.summarize(opts, [Student("ann"), Student("bob"), Student("cy")], ledger, 2, 1, 12.34)
    assert asked == [(f"sqlite:///{(tmp_path / 'gradebook.db').resolve()}", "hw1", ["ann", "bob", "cy"])]
    assert result["totals"] == {"ann": 3.0, "bob": 0.0} and result["max_score"] == 3.0
    assert result["mean"] == 1.5 and result["median"] == 1.5 and result["distribution"] == {"0": 1, "3": 1}
    assert result["mean_per_cell"] == {"nb/t1": 0.5, "nb/t2": 0.5}
    assert result["review"] == {
        "bob": ["stopped", "fixed", "1 cell(s) need manual grading: t2"],
        "cy": ["not valid JSON", "flag: uses os"],
    }
    assert (result["students"], result["graded_now"], result["skipped_already_graded"]) == (3, 2, 1)
    assert result["seconds"] == 12.3 and result["workers"] == 3
    assert json.loads((tmp_path / "summary.json").read_text()) == result
    assert (tmp_path / "summary.md").read_text() == summary.summary_text(result)


def test_summary_text():
    text = summary.summary_text(
        {
            "assignment": "hw1",
            "students": 2,
            "graded_now": 2,
            "skipped_already_graded": 0,
            "seconds": 3.0,
            "workers": 2,
            "sandbox": False,
            "max_score": 3,
            "totals": {"ann": 3.0, "bob": 0.0},
            "mean": 1.5,
            "median": 1.5,
            "distribution": {"0": 1, "3": 1},
            "mean_per_cell": {"nb/t1": 0.5, "nb/t2": 0.25},
            "review": {"bob": ["stopped"]},
        }
    )
    assert text.startswith("# hw1: 2 students (2 graded now, 0 already graded), 3.0 s with 2 workers, sandbox OFF\n")
    assert "   0 | # 1\n   3 | # 1\n" in text
    assert text.index("0.25  nb/t2") < text.index("0.50  nb/t1")  # lowest first
    assert "## Students that need a look (1)\n\n- bob (0): stopped\n" in text
