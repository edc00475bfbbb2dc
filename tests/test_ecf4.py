"""Exercise 4's error carried forward inside manual_backward (grader/ecf4.py)."""

import nbformat
import pytest
import torch
import torch.nn.functional as F
from notebook_code import SOURCE

from grader import training
from grader.instructor import course

LECTURE = course.solutions(nbformat.read(SOURCE / "04_full_training.ipynb", as_version=4))["answer_manual_backward"]
TANH = ("dhpreact = (1.0 - h**2) * dh", "dhpreact = (1.0 - torch.tanh(h)**2) * dh")


def _fn(source: str):
    ns = {"torch": torch, "F": F}
    exec(source, ns)
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
