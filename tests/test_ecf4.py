"""Exercise 4's error carried forward inside manual_backward (grader/ecf4.py)."""

import nbformat
import pytest
import torch
import torch.nn.functional as F
from notebook_code import SOURCE, compile_cell

from grader import training
from grader.instructor import course

LECTURE = course.solutions(nbformat.read(SOURCE / "04_full_training.ipynb", as_version=4))["answer_manual_backward"]
TANH = ("dhpreact = (1.0 - h**2) * dh", "dhpreact = (1.0 - torch.tanh(h)**2) * dh")


def _fn(source: str):
    ns = {"torch": torch, "F": F}
    exec(compile_cell(source, "answer_manual_backward"), ns)  # its text kept, as IPython keeps a cell's
    return ns["manual_backward"]


@pytest.mark.parametrize("case", ["first batch", *range(len(training.HIDDEN))])
def test_a_wrong_tanh_step_costs_one_point(case):
    case = training.first_batch() if case == "first batch" else training._case(training.HIDDEN[case])
    fn = _fn(LECTURE.replace(*TANH))
    verdicts = {
        name: training.judge(name, fn, case, "here") for name in ("C", "W1", "b1", "W2", "b2", "bngain", "bnbias")
    }
    assert [n for n, v in verdicts.items() if not v.ok] == ["bngain"]
    assert "dhpreact (the tanh step) is wrong; dbngain, dbnbias, dW1, db1 and dC are right given it" in (
        verdicts["bngain"].message
    )
    assert verdicts["W1"].message.startswith("ok: this step is right given your dhprebn")


def test_other_names_keep_the_plain_judgement():
    renamed = LECTURE.replace(*TANH).replace("dhpreact", "g_pre")
    fn = _fn(renamed)
    case = training.first_batch()
    failed = [
        n for n in ("C", "W1", "b1", "W2", "b2", "bngain", "bnbias") if not training.judge(n, fn, case, "here").ok
    ]
    assert set(failed) == {"C", "W1", "bngain", "bnbias"}  # db1 is zero for any input, and right by value


def test_other_names_name_the_first_wrong_parameter_in_the_chain():
    fn = _fn(LECTURE.replace(*TANH).replace("dhpreact", "g_pre"))
    case = training.first_batch()
    order = "dW2, db2, dbngain, dbnbias, dW1, db1 and dC"
    assert f"It is the first wrong one of {order}" in training.judge("bngain", fn, case, "here").message
    for name in ("bnbias", "W1", "C"):
        message = training.judge(name, fn, case, "here").message
        assert f"The first wrong one of {order} (in the order the backward pass reaches them) is dbngain" in message


def test_the_lecture_solution_is_untouched():
    fn = _fn(LECTURE)
    case = training.first_batch()
    for name in ("C", "W1", "b1", "W2", "b2", "bngain", "bnbias"):
        assert training.judge(name, fn, case, "here").message == "ok"


# ---------------------------------------------------------------------------------------------
# A manual_backward that raises, judged line by line (grader/linewise.py, ecf4.after_crash)

PARAMS = ("C", "W1", "b1", "W2", "b2", "bngain", "bnbias")
CASES = ["first batch", *range(len(training.HIDDEN))]


def _case(case):
    return training.first_batch() if case == "first batch" else training._case(training.HIDDEN[case])


def _judged(source: str, case) -> dict:
    fn = _fn(source)
    return {name: training.judge(name, fn, case, "here") for name in PARAMS}


def _line(source: str, text: str) -> int:
    """The line of ``text`` in the function, its def line being 1."""
    lines = source[source.index("def manual_backward") :].splitlines()
    return next(i for i, line in enumerate(lines, 1) if text in line)


@pytest.mark.parametrize("case", CASES)
def test_a_typo_that_raises_costs_only_its_own_line(case):
    typo = LECTURE.replace("dhpreact.sum(0, keepdim=True)", "dhpreact.sum(0, keep_dim=True)")
    verdicts = _judged(typo, _case(case))
    assert [n for n, v in verdicts.items() if not v.ok] == ["bnbias"]
    line = _line(typo, "keep_dim")
    assert (
        f"line {line} of manual_backward (`dbnbias = dhpreact.sum(0, keep_dim=True)`) raised TypeError: "
        "sum() got an unexpected keyword argument 'keep_dim': that is the line of dbnbias" in verdicts["bnbias"].message
    )
    assert verdicts["W1"].message.startswith("ok: your code for dW1 is right; manual_backward itself raises: line")


@pytest.mark.parametrize("case", CASES)
def test_a_crashed_step_is_carried_forward_and_charged_once(case):
    crash = LECTURE.replace("dhpreact = (1.0 - h**2) * dh", "dhpreact = (1.0 - h**2) * dh.T")
    verdicts = _judged(crash, _case(case))
    assert [n for n, v in verdicts.items() if not v.ok] == ["bngain"]
    message = verdicts["bngain"].message
    assert f"line {_line(crash, 'dh.T')} of manual_backward" in message and "raised RuntimeError" in message
    assert "dhpreact (the tanh step) never got its value" in message
    assert "dbnbias, dW1, db1 and dC are right given it" in message


def test_a_crash_in_a_helper_line_is_charged_once():
    crash = LECTURE.replace("n = logits.shape[0]", "n = logits.shape(0)")  # every step reads n
    verdicts = _judged(crash, training.first_batch())
    assert [n for n, v in verdicts.items() if not v.ok] == ["W2"]
    assert "raised TypeError: 'torch.Size' object is not callable, so dlogits (the cross-entropy step)" in (
        verdicts["W2"].message
    )


def test_a_line_nothing_reads_is_charged_to_the_next_gradient():
    debug = LECTURE.replace("    dC = torch.zeros_like(C)", "    print(dhprebn.shape(0))\n    dC = torch.zeros_like(C)")
    verdicts = _judged(debug, training.first_batch())
    assert [n for n, v in verdicts.items() if not v.ok] == ["C"]
    assert "manual_backward stops there, so the training loop never gets its gradients" in verdicts["C"].message


def test_a_wrong_line_before_the_crash_is_still_found():
    both = LECTURE.replace(*TANH).replace("dhpreact.sum(0, keepdim=True)", "dhpreact.sum(0, keep_dim=True)")
    verdicts = _judged(both, training.first_batch())
    assert [n for n, v in verdicts.items() if not v.ok] == ["bngain", "bnbias"]
    assert "dhpreact (the tanh step) is wrong" in verdicts["bngain"].message
    assert "keep_dim" in verdicts["bngain"].message  # the crash too: manual_backward never returns
    assert verdicts["W1"].message.startswith("ok: this step is right given your dhprebn")


def test_a_function_without_source_keeps_the_plain_failure():
    typo = LECTURE.replace("dhpreact.sum(0, keepdim=True)", "dhpreact.sum(0, keep_dim=True)")
    ns = {"torch": torch, "F": F}
    exec(typo, ns)  # noqa: S102 - no source kept: inspect.getsource cannot find it
    for name in PARAMS:
        verdict = training.judge(name, ns["manual_backward"], training.first_batch(), "here")
        assert not verdict.ok and "raised TypeError: sum() got an unexpected keyword argument" in verdict.message


def test_the_table_and_the_trained_model_name_the_crash(capsys):
    typo = LECTURE.replace("dhpreact.sum(0, keepdim=True)", "dhpreact.sum(0, keep_dim=True)")
    training.check_first_batch(_fn(typo))
    out = capsys.readouterr().out
    assert "manual_backward raises: line" in out and out.rstrip().endswith("6 of 7 gradients pass")
    verdict = training.judge_model(training.initial_parameters())
    assert not verdict.ok and "still their initial values" in verdict.message
    assert "manual_backward raises on the training network's first batch: line" in verdict.message
    training.check_first_batch(_fn(LECTURE))
    assert "raises" not in training.judge_model(training.initial_parameters()).message
