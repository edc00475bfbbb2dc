"""What the grade-on-submit service (``gradeonsubmit``) puts where a student's ``fetch_feedback`` finds it.

The course's ``feedback/<student>/<assignment>/``, made afresh for one submission with its
``timestamp.txt`` and ``submission_secret.txt`` (nbgrader's ``release_feedback`` names each page by a hash
of the secret): either the class command's feedback pages (hidden tests removed) with a line at the top
saying they were graded automatically, or, for a submission that is not graded now (over the rate
limit, after the deadline), a page per notebook saying why.
"""

from __future__ import annotations

import html
import os
import shutil
from pathlib import Path


def feedback_dir(course: Path, assignment: str, student: str, submission: Path) -> Path:
    """``COURSE/feedback/STUDENT/ASSIGNMENT/``, emptied, with the submission's timestamp and secret."""
    dest = course / "feedback" / student / assignment
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for name in ("timestamp.txt", "submission_secret.txt"):
        if (submission / name).exists():
            shutil.copy(submission / name, dest / name)
    return dest


def _write(path: Path, text: str) -> None:
    path.write_text(text)
    os.chmod(path, 0o644)


def graded(src: Path, dest: Path, timestamp: str, n: int, limit: int, window_hours: float) -> None:
    """The class command's pages of ``src`` into ``dest``, each with the note 'graded n of at most limit'."""
    banner = (
        f'<div id="gradeonsubmit-note" style="border:2px solid #2a7;padding:8px;margin:8px">'
        f"Graded automatically on submission ({html.escape(timestamp)}): graded submission {n} of "
        f"at most {limit} per {window_hours:g} h.</div>"
    )
    for page in src.glob("*.html"):
        text = page.read_text()
        _write(dest / page.name, text.replace("<body>", "<body>" + banner, 1) if "<body>" in text else banner + text)


def not_graded(submission: Path, dest: Path, why: str) -> None:
    """A 'Not graded yet' page saying ``why`` for each notebook of ``submission``, into ``dest``."""
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Not graded yet</title></head><body>"
        f"<h1>Not graded yet</h1><p id='gradeonsubmit-held'>{html.escape(why)}</p></body></html>"
    )
    for nb in sorted(submission.glob("*.ipynb")):
        _write(dest / f"{nb.stem}.html", page)
