"""What nbgrader's metadata and markers say about a notebook cell: its grade id, its hidden tests, its solution.

One home for these rules, read by the class command (``grader.autograde``: prechecks, feedback) and by
the instructor tools (``grader.instructor``: demo submissions, answer keys). No torch, no nbgrader.

Hidden tests follow nbgrader's own rule (``ClearHiddenTests``): a line containing ``BEGIN HIDDEN TESTS``
opens the region, a line containing ``END HIDDEN TESTS`` closes it; both marker lines belong to it.
"""

from __future__ import annotations

import re

BEGIN_HIDDEN_TESTS = "BEGIN HIDDEN TESTS"
END_HIDDEN_TESTS = "END HIDDEN TESTS"
SOLUTION_MARKERS = re.compile(r"^[ \t]*### (BEGIN|END) SOLUTION[ \t]*\n?", re.M)


def nbgrader_meta(cell) -> dict:
    """The cell's nbgrader metadata ({} for an ordinary cell or a damaged one)."""
    return cell.get("metadata", {}).get("nbgrader") or {}


def grade_id(cell) -> str | None:
    return nbgrader_meta(cell).get("grade_id")


def has_hidden_tests(source: str) -> bool:
    return any(BEGIN_HIDDEN_TESTS in line for line in source.split("\n"))


def _split_hidden(source: str) -> tuple[list[str], list[str]]:
    """(the lines a student sees, the lines of the hidden tests), marker lines in neither."""
    visible, hidden, inside = [], [], False
    for line in source.split("\n"):
        if BEGIN_HIDDEN_TESTS in line:
            inside = True
        elif END_HIDDEN_TESTS in line:
            inside = False
        else:
            (hidden if inside else visible).append(line)
    return visible, hidden


def without_hidden_tests(source: str) -> str:
    """The cell's text as released: the hidden tests and their markers removed."""
    return "\n".join(_split_hidden(source)[0])


def hidden_test_lines(source: str) -> list[str]:
    """The lines of the cell's hidden tests (without the markers)."""
    return _split_hidden(source)[1]


def without_solution_markers(source: str) -> str:
    return SOLUTION_MARKERS.sub("", source)
