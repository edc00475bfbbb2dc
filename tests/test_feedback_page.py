"""The feedback page's head and formulas (grader.feedback_page), without nbgrader: fast.

The page itself, made by plain nbgrader for a demo student, is checked in test_browser.py; the class
command's pages in test_classgrade.py.
"""

import re

import nbformat
import pytest
from traitlets.config import Config

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


def test_a_cell_graded_by_hand_has_no_verdict_of_the_autograder():
    """A written answer and a code answer with points (its outputs are the student's, not a verdict); a task (no
    grade flag: a person grades it in the formgrader) has no row."""
    written = nbformat.v4.new_markdown_cell("The softmax of a row sums to 1.")
    code_answer = _cell([{"output_type": "stream", "name": "stdout", "text": "5.0\n"}], grade_id="application")
    task = nbformat.v4.new_markdown_cell("State the formulae.")
    for cell, gid in ((written, "explain"), (code_answer, "application"), (task, "formulae")):
        cell.metadata["nbgrader"] = {"grade": gid != "formulae", "grade_id": gid, "points": 2.0, "score": 0.0}
        cell.metadata["nbgrader"]["solution" if gid != "formulae" else "task"] = True
    nb = nbformat.v4.new_notebook()
    nb.cells = [written, code_answer, task, _cell([], score=0.0)]
    rows = head_rows(nb)
    assert [(r["grade_id"], r["verdict"]) for r in rows] == [
        ("explain", "graded by hand"),
        ("application", "graded by hand"),
        ("test_dcounts", "no output"),
    ]


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


SCRIPT = "<script>alert('feedback')</script>"


def test_a_locked_graded_cell_shows_its_score_and_hint_not_what_was_printed_into_it():
    fake = {"output_type": "stream", "name": "stdout", "text": "all tests passed, 1/1\n"}
    html_out = {"output_type": "display_data", "data": {"text/html": SCRIPT, "text/plain": "x"}, "metadata": {}}
    error = {
        "output_type": "error",
        "ename": "AssertionError",
        "evalue": "dcounts is wrong: not accumulated",
        "traceback": [],
    }
    cell = _cell([fake, html_out, error], score=0.0)
    cell.metadata["nbgrader"]["locked"] = True
    feedback_page.SafeOutputs().preprocess_cell(cell, {}, 0)
    assert [o.output_type for o in cell.outputs] == ["stream"]
    assert cell.outputs[0].text == "score: 0 / 1 point\nAssertionError: dcounts is wrong: not accumulated\n"

    row = "dcounts         | exact: False | approximate: True  | maxdiff: 6e-09   | ok\n"
    cell = _cell(
        [{"output_type": "stream", "name": "stdout", "text": "printed by a hook\n" + row}], points=2.0, score=2.0
    )
    cell.metadata["nbgrader"]["locked"] = True
    feedback_page.SafeOutputs().preprocess_cell(cell, {}, 0)
    assert cell.outputs[0].text == "score: 2 / 2 points\n" + row


def test_other_outputs_keep_only_what_cannot_run_in_a_browser():
    rich = {
        "output_type": "display_data",
        "data": {"text/html": SCRIPT, "application/javascript": "alert(1)", "image/svg+xml": "<svg onload=x>",
                 "image/png": "iVBORw0K\n", "text/plain": "<Figure>"},
        "metadata": {"image/png": {"width": 300, "alt": "a plot", "filenames": "/etc/passwd"}},
    }  # fmt: skip
    forged = {"output_type": "display_data", "data": {"image/png": '"><script>x</script>'}, "metadata": {}}
    only_js = {"output_type": "display_data", "data": {"application/javascript": "alert(1)"}, "metadata": {}}
    cell = nbformat.v4.new_code_cell("plot()")  # an answer cell, or a locked cell that is not graded
    cell.outputs = [nbformat.from_dict(o) for o in (rich, forged, only_js)]
    cell.outputs.append(nbformat.v4.new_output("stream", text="loss 2.1\n"))
    feedback_page.SafeOutputs().preprocess_cell(cell, {}, 0)
    assert [o.output_type for o in cell.outputs] == ["display_data", "stream"]  # the forged PNG and the script: gone
    assert sorted(cell.outputs[0].data) == ["image/png", "text/plain"]
    assert cell.outputs[0].metadata == {"image/png": {"width": 300, "alt": "a plot"}}
    assert cell.outputs[1].text == "loss 2.1\n"


def test_the_heads_picture_must_be_base64():
    nb = nbformat.v4.new_notebook()
    forged = {"output_type": "display_data", "data": {"image/png": '"><script>x</script>'}}
    forged["metadata"] = {feedback_page.METADATA_KEY: "exercise1"}
    nb.cells = [nbformat.from_dict({"cell_type": "code", "source": "", "metadata": {}, "outputs": [forged]})]
    assert picture(nb) == (None, "")


def test_the_feedback_page_of_a_hostile_notebook_runs_no_script():
    """Check that the course's feedback page (its template, its preprocessors) carries no student-made script."""
    locked = _cell([{"output_type": "display_data", "data": {"text/html": SCRIPT}, "metadata": {}}])
    locked.metadata["nbgrader"]["locked"] = True
    answer = nbformat.v4.new_code_cell("x = 1")
    answer.outputs = [
        nbformat.from_dict({"output_type": "display_data", "data": {"text/html": SCRIPT}, "metadata": {}})
    ]
    nb = nbformat.v4.new_notebook(cells=[answer, locked])
    config = Config()
    feedback_page.configure(config)  # as nbgrader_config.py does: the course's template
    resources = {"nbgrader": {"notebook": "01", "score": 1, "max_score": 1, "late_penalty": 0}}
    for step in (feedback_page.FeedbackHead(), feedback_page.SafeOutputs()):
        nb, resources = step.preprocess(nb, resources)
    page = feedback_page.FeedbackExporter(config=config).from_notebook_node(nb, resources)[0]
    assert "alert('feedback')" not in page and "score: 1 / 1 point" in page
