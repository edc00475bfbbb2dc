"""A tiny independent nbgrader course (one notebook, two test cells, one with hidden tests), for the tests of
the class command that need a real nbgrader run but not this course's notebooks (fast to grade)."""

import json
from pathlib import Path

from grader.instructor import course

TINY_SOURCE = {
    "cells": [
        {"cell_type": "markdown", "metadata": {}, "source": "Write `square(x)`."},
        {
            "cell_type": "code",
            "execution_count": None,
            "outputs": [],
            "id": "a1",
            "metadata": {
                "nbgrader": {
                    "grade": False,
                    "grade_id": "square",
                    "locked": False,
                    "schema_version": 3,
                    "solution": True,
                    "task": False,
                }
            },
            "source": "def square(x):\n    ### BEGIN SOLUTION\n    return x * x\n    ### END SOLUTION",
        },
        {
            "cell_type": "code",
            "execution_count": None,
            "outputs": [],
            "id": "t1",
            "metadata": {
                "nbgrader": {
                    "grade": True,
                    "grade_id": "test_square",
                    "locked": True,
                    "points": 2,
                    "schema_version": 3,
                    "solution": False,
                    "task": False,
                }
            },
            "source": "assert square(3) == 9\n### BEGIN HIDDEN TESTS\nassert square(-4) == 16\n### END HIDDEN TESTS",
        },
        {
            "cell_type": "code",
            "execution_count": None,
            "outputs": [],
            "id": "t2",
            "metadata": {
                "nbgrader": {
                    "grade": True,
                    "grade_id": "test_square_zero",
                    "locked": True,
                    "points": 1,
                    "schema_version": 3,
                    "solution": False,
                    "task": False,
                }
            },
            "source": "assert square(0) == 0",
        },
    ],
    "metadata": {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    },
    "nbformat": 4,
    "nbformat_minor": 5,
}
TINY_ANSWERS = {
    "alice": "def square(x):\n    return x ** 2",
    "bob": "def square(x):\n    return 3 * x",
    "carol": "def square(x):\n    return abs(x) * 3 if x > 0 else x * x",
}


def make_tiny_course(
    root: Path, answers: dict[str, str], source: dict = TINY_SOURCE, config: str = "", files: dict | None = None
) -> Path:
    """A one-notebook course (hw1/squares), released, with a submission per student; ``config``: more lines
    of its nbgrader_config.py, ``files``: more files of the course (path -> bytes), both before the release."""
    (root / "source" / "hw1").mkdir(parents=True)
    (root / "source" / "hw1" / "squares.ipynb").write_text(json.dumps(source))
    (root / "nbgrader_config.py").write_text('c = get_config()\nc.CourseDirectory.course_id = "tiny"\n' + config)
    for path, data in (files or {}).items():
        (root / path).write_bytes(data)
    course.nbgrader(root, "generate_assignment", "hw1", "--force")
    release = json.loads((root / "release" / "hw1" / "squares.ipynb").read_text())
    for student, answer in answers.items():
        nb = json.loads(json.dumps(release))
        (answer_cell,) = [c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") == "square"]
        answer_cell["source"] = answer
        (root / "submitted" / student / "hw1").mkdir(parents=True)
        (root / "submitted" / student / "hw1" / "squares.ipynb").write_text(json.dumps(nb))
    return root
