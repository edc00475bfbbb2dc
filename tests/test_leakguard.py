"""The feedback's leak guard (grader/leakguard.py): hidden-test lines in a page, plain or encoded, are found;
the pages students really see (the release notebooks, the answer keys) pass."""

import base64
import codecs

import pytest

from grader import leakguard
from grader.instructor import course

SOURCE = course.REPO / "source" / course.ASSIGNMENT
RELEASE = course.REPO / "release" / course.ASSIGNMENT
NOTEBOOKS = course.notebook_names(course.REPO)


SECRET = {"grader.atomic.verify('logprobs', dlogprobs)  # the grader's own check: a redefined cmp changes nothing"}
LINE = next(iter(SECRET))


@pytest.mark.parametrize(
    "shown",
    [
        LINE,
        LINE[::-1],
        codecs.encode(LINE, "rot13"),
        "".join(chr((ord(c) - 97 + 3) % 26 + 97) if c.islower() else c for c in LINE),
        " ".join(LINE),
        LINE.upper(),
        base64.b64encode(LINE.encode()).decode(),
        base64.urlsafe_b64encode(LINE.encode()).decode(),
        base64.b64encode(LINE[::-1].encode()).decode(),
        base64.b32encode(LINE.encode()).decode(),
        LINE.encode().hex(),
        LINE.encode().hex(" "),
        str(list(LINE.encode())),
        str([ord(c) for c in LINE]),
        "".join(f"\\x{b:02x}" for b in LINE.encode()),
        base64.b64encode(__import__("zlib").compress(LINE.encode())).decode(),
    ],
    ids=lambda s: s[:20],
)
def test_the_guard_catches_encoded_hidden_lines(shown):
    page = f"Exercise 1\nyour answer: dlogprobs = torch.zeros_like(logprobs)\n{shown}\nscore 1 / 1\n"
    assert leakguard.leaks(page, SECRET) == [LINE]


def test_the_guard_passes_the_feedback_a_class_really_gets():
    from grader.autograde.feedback import hidden_lines

    secret = hidden_lines(SOURCE)
    assert secret
    for name in NOTEBOOKS:
        # everything a student sees: the release notebook and the answer key (solutions, outputs, hints)
        for folder in (RELEASE, course.REPO / "notebooks"):
            path = folder / f"{name}.ipynb"
            if path.is_file():
                assert leakguard.leaks(path.read_text(), secret) == [], path


def test_page_text_drops_style_sheets_and_tags():
    page = "<html><style>.jp-x { color: #fff }</style><p>score &amp; 1</p><script>var a = 1;</script></html>"
    assert leakguard.page_text(page) == "score & 1"
