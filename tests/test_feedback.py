"""grader/autograde/feedback.py: outputs cut, tracebacks of hidden tests cut, leaks withheld, notes. Fast."""

import nbformat
from nbformat.v4 import new_code_cell, new_notebook, new_output

from grader.autograde import feedback
from grader.autograde.feedback import MAX_OUTPUT_CHARS, CapOutputs, ShortTracebacks

TEST = "assert f(1) == 1\n### BEGIN HIDDEN TESTS\nassert f(2) == 4, 'the secret case'\n### END HIDDEN TESTS"


def error(ename="AssertionError", evalue="the secret case"):
    return new_output("error", ename=ename, evalue=evalue, traceback=["Traceback", "assert f(2) == 4", f"{ename}: x"])


def run(pp, nb):
    return pp().preprocess(nb, {})[0]


def test_cap_outputs_cuts_each_long_output_and_says_so():
    long = "x" * (MAX_OUTPUT_CHARS + 5)
    cell = new_code_cell(
        "print()",
        outputs=[
            new_output("stream", name="stdout", text=long),
            new_output("execute_result", data={"text/plain": long, "image/png": "A" * (MAX_OUTPUT_CHARS + 5)}),
            new_output("stream", name="stderr", text="short"),
        ],
    )
    nb = run(CapOutputs, new_notebook(cells=[cell]))
    stream, result, short = nb.cells[0].outputs
    assert stream.text == "x" * MAX_OUTPUT_CHARS + f"\n... [output cut at {MAX_OUTPUT_CHARS} characters]\n"
    assert result.data["text/plain"] == "x" * MAX_OUTPUT_CHARS + "\n... [output cut]"
    assert len(result.data["image/png"]) == MAX_OUTPUT_CHARS + 5  # not text: left alone
    assert short.text == "short" and short.name == "stderr"  # the stream stays (nbgrader scores stderr 0)


def test_short_tracebacks_only_in_cells_with_hidden_tests():
    nb = new_notebook(cells=[new_code_cell(TEST, outputs=[error()]), new_code_cell("f(3)", outputs=[error()])])
    nb = run(ShortTracebacks, nb)
    assert nb.cells[0].outputs[0].traceback == ["AssertionError: the secret case"]
    assert len(nb.cells[1].outputs[0].traceback) == 3


def test_the_scratch_course_runs_the_preprocessors_where_nbgrader_would():
    from nbgrader.preprocessors import ClearHiddenTests, LimitOutput, SaveAutoGrades

    grading = feedback.autograde_preprocessors()
    assert {LimitOutput, SaveAutoGrades} <= set(grading) and grading[-1] is CapOutputs  # after all that grades
    assert feedback.autograde_preprocessors([LimitOutput]) == [LimitOutput, CapOutputs]  # the course's own list
    from grader.feedback_page import feedback_preprocessors

    shown = feedback_preprocessors()
    assert shown.index(ShortTracebacks) < shown.index(ClearHiddenTests)  # it needs the markers to find the cells


def write(path, *cells):
    nbformat.write(new_notebook(cells=list(cells)), path)
    return path


def test_notes_name_cut_outputs_and_cells_that_hit_a_limit(tmp_path):
    cut = new_code_cell("", outputs=[new_output("stream", name="stdout", text="y" * (MAX_OUTPUT_CHARS + 1))])
    run(CapOutputs, new_notebook(cells=[cut]))
    timeout = new_code_cell("", outputs=[error("CellTimeoutError", "x"), error("KeyboardInterrupt", "")])
    timeout.metadata["nbgrader"] = {"grade_id": "test_slow"}
    memory = new_code_cell("", outputs=[error("MemoryError", "")])
    write(tmp_path / "a.ipynb", cut, timeout)
    write(tmp_path / "b.ipynb", memory)
    write(tmp_path / "c.ipynb", new_code_cell("", outputs=[new_output("stream", name="stdout", text="fine")]))
    assert feedback.notes(tmp_path, 30, 2 * 2**30) == [
        f"a: printed more than {MAX_OUTPUT_CHARS} characters in one output (cut)",
        "a/test_slow: stopped at the 30 s per-cell limit",
        "b/a cell: ran out of memory (limit 2 GB)",
    ]


def test_hidden_lines_and_collect_withhold_a_leaking_page(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    write(source / "nb.ipynb", new_code_cell(TEST))
    secret = feedback.hidden_lines(source)
    assert secret == {"assert f(2) == 4, 'the secret case'"}
    autograded, pages = tmp_path / "autograded", tmp_path / "feedback"
    autograded.mkdir()
    pages.mkdir()
    write(autograded / "nb.ipynb", new_code_cell(TEST))
    (pages / "nb.html").write_text("<p>assert f(1) == 1</p>")
    (pages / "leaky.html").write_text("<pre>assert f(2) == 4, &#39;the secret case&#39;</pre>")
    out = tmp_path / "out"
    problems = feedback.collect(autograded, pages, out, "ann", "hw1", secret)
    assert len(problems) == 1 and problems[0].startswith("leaky: feedback withheld")
    assert sorted(p.name for p in (out / "feedback" / "ann" / "hw1").iterdir()) == ["nb.html"]
    assert (out / "autograded" / "ann" / "hw1" / "nb.ipynb").is_file()


def test_collect_withholds_a_page_that_hides_a_hidden_line(tmp_path):
    import base64
    import codecs

    line = "assert f(2) == 4, 'the secret case'"
    autograded, pages = tmp_path / "autograded", tmp_path / "feedback"
    autograded.mkdir()
    pages.mkdir()
    (pages / "nb.html").write_text("<p>assert f(1) == 1</p>")
    (pages / "b64.html").write_text(f"<pre>{base64.b64encode(line.encode()).decode()}</pre>")
    (pages / "rot13.html").write_text(f"<pre>{codecs.encode(line, 'rot13')}</pre>")
    (pages / "reversed.html").write_text(f"<pre>{line[::-1]}</pre>")
    out = tmp_path / "out"
    problems = feedback.collect(autograded, pages, out, "ann", "hw1", {line})
    assert sorted(p.split(":")[0] for p in problems) == ["b64", "reversed", "rot13"]
    assert sorted(p.name for p in (out / "feedback" / "ann" / "hw1").iterdir()) == ["nb.html"]


def test_text_drops_tags_and_decodes_entities():
    assert feedback.text("<p>a &lt; b</p><code>x</code>") == "a < bx"
