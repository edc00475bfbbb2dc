"""The feedback page's head and formulas (grader.feedback_page), without nbgrader: fast.

The page itself, made by plain nbgrader for a demo student, is checked in test_browser.py; the class
command's pages in test_classgrade.py.
"""

import re

import nbformat
import pytest

from grader import feedback_page
from grader.feedback_page import head_rows, math_to_html, picture, tex_to_html, verdict, what
from grader.instructor import course

SOURCE = course.REPO / "source" / course.ASSIGNMENT


def test_what_a_test_cell_checks():
    assert what('"""Check that dcounts is the gradient of the loss with respect to counts."""\ncmp(...)', "x") == (
        "dcounts",
        True,
    )
    doc = '"""Check that cross_entropy_backward stays finite and right when the logits are large."""\nx'
    assert what(doc, "test_x") == (
        "Check that cross_entropy_backward stays finite and right when the logits are large.",
        False,
    )
    assert what("assert x == 1", "test_x") == ("test_x", True)


DCOUNTS_DOC = '"""Check that dcounts is the gradient of the loss."""'


def _cell(outputs, grade_id="test_dcounts", score=1.0, points=1.0, source=DCOUNTS_DOC):
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["nbgrader"] = {"grade": True, "solution": False, "grade_id": grade_id, "points": points}
    cell.metadata["nbgrader"]["score"] = score
    cell.outputs = [nbformat.from_dict(o) for o in outputs]
    return cell


def test_verdict_is_the_rows_status_or_the_errors_first_line():
    row = "norm_logits     | exact: False | approximate: False | maxdiff: 0.0043  | ok: this step is right; x\n"
    note = "                  note: shape (64,) for `bnmeani` of shape (1, 64): accepted\n"
    assert verdict(_cell([{"output_type": "stream", "name": "stdout", "text": row + note}])) == (
        "ok: this step is right; x"
    )
    error = {
        "output_type": "error",
        "ename": "AssertionError",
        "evalue": "dcounts is wrong: it holds only ...\nmore",
        "traceback": [],
    }
    assert verdict(_cell([{"output_type": "stream", "name": "stdout", "text": row}, error])) == (
        "AssertionError: dcounts is wrong: it holds only ..."
    )
    stderr = {"output_type": "stream", "name": "stderr", "text": "UserWarning: oops\n"}
    assert verdict(_cell([stderr])).startswith("it wrote to stderr")
    assert verdict(_cell([{"output_type": "stream", "name": "stdout", "text": "ok: train loss 2.30\n"}])) == (
        "ok: train loss 2.30"
    )


def test_head_rows_and_picture():
    nb = nbformat.v4.new_notebook()
    png = {"output_type": "display_data", "data": {"image/png": "iVBORw0K\n", "text/plain": "<Image>"}}
    png["metadata"] = {feedback_page.METADATA_KEY: "exercise1", "image/png": {"alt": "the graph"}}
    nb.cells = [
        _cell([], score=0.0),
        _cell([{"output_type": "stream", "name": "stdout", "text": "x | ok\n"}], grade_id="test_dh"),
        nbformat.from_dict({"cell_type": "code", "source": "table()", "metadata": {}, "outputs": [png]}),
    ]
    nb.cells[1].source = '"""Check that dh is the gradient of the loss with respect to h."""'
    rows = head_rows(nb)
    assert [(r["what"], r["passed"], r["verdict"]) for r in rows] == [
        ("dcounts", False, "no output"),
        ("dh", True, "ok"),
    ]
    assert picture(nb) == ("iVBORw0K", "the graph")


FORMULAS = [
    (r"-1/n", "-1/n"),
    (r"10^{-9}", "10<sup>-9</sup>"),
    (r"1 - \tanh(x)^2", "1 - tanh(x)<sup>2</sup>"),
    (r"\frac{n}{n-1}", "n/(n-1)"),
    (r"\hat{x}_j", "x\u0302<sub>j</sub>"),
    (r"1/\sqrt{\sigma^2+\epsilon}", "1/√(σ<sup>2</sup>+ε)"),
    (r"\partial L / \partial x_i", "∂L / ∂x<sub>i</sub>"),
    (r"p_i/n > 0", "p<sub>i</sub>/n &gt; 0"),
    (r"\|a-b\| / (\|a\|+\|b\|)", "‖a-b‖ / (‖a‖+‖b‖)"),
    (r"-\mathbb{1}[i = y]", "-𝟙[i = y]"),
]


@pytest.mark.parametrize("tex, expected", FORMULAS)
def test_tex_to_html(tex, expected):
    assert tex_to_html(tex) == expected


@pytest.mark.parametrize("name", course.notebook_names(course.REPO))
def test_every_formula_of_the_notebooks_reads_without_mathjax(name):
    nb = nbformat.read(SOURCE / f"{name}.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        out = math_to_html(cell.source)
        text = re.sub(r"`[^`]*`", "", out)  # code spans keep their text
        assert "$" not in text, cell.source
        assert not re.search(r"\\[A-Za-z]", text), re.findall(r"\\[A-Za-z]+", text)  # every command translated


def test_code_spans_and_blocks_keep_their_dollars():
    assert math_to_html("cost `$x$` and $x^2$") == 'cost `$x$` and <span class="math">x<sup>2</sup></span>'
    assert math_to_html("```\n$a$\n```") == "```\n$a$\n```"
