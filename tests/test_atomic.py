"""Exercise 1's checker: error carried forward, hints, tamper resistance (no nbgrader here)."""

import pytest
import torch
from notebook_code import run_cells, student

from grader import atomic
from grader.atomic import ORDER, Reference, cmp, judge, reference, table, verify
from grader.instructor import course

STUDENTS = [
    s
    for s in course.demo_class()
    if s.edits and s.loses != "all" and all(e["notebook"] == "01_atomic_backprop" for e in s.edits)
]


@pytest.fixture(autouse=True)
def fresh_records():
    atomic.reset()
    yield
    atomic.reset()


def judge_all(ns):
    """Judge all 26 gradients in the lecture's order, as the test cells do (``atomic.answer``)."""
    return {name: judge(name, ns.get(f"d{name}", atomic.Missing(f"d{name}")), ns, ns["__cells__"]) for name in ORDER}


@pytest.mark.parametrize("s", STUDENTS, ids=[s.id for s in STUDENTS])
def test_each_known_mistake_costs_exactly_its_points(s):
    verdicts = judge_all(run_cells(edits=s.edits, base=s.base))
    failed = {f"test_d{name}" for name, v in verdicts.items() if not v.ok}
    assert failed == set(s.loses), {k: v.message for k, v in verdicts.items() if not v.ok}
    for cell, hint in {**s.loses, **s.shows}.items():
        assert hint in verdicts[cell.removeprefix("test_d")].message


def test_solution_is_exact_enough():
    for name, v in judge_all(run_cells()).items():
        assert v.ok and v.message == "ok", name
        assert v.comparison.maxdiff < 1e-8


def test_error_carried_forward_names_the_root_mistake():
    verdicts = judge_all(run_cells(edits=student("dcounts-not-accumulated").edits))
    assert not verdicts["counts"].ok
    for name in ("norm_logits", "logits", "W2", "bnvar", "C"):
        v = verdicts[name]
        assert v.ok and not v.comparison.approximate  # the row shows the true comparison
        assert v.message == "ok: this step is right; the difference comes from dcounts"


def test_an_answer_that_matches_autograd_passes_even_with_a_wrong_upstream():
    fused = {  # dlogits derived in one go, as in Exercise 2, after a wrong dcounts
        "notebook": "01_atomic_backprop",
        "cell": "answer_cross_entropy",
        "append": "dlogits = F.softmax(logits, 1)\ndlogits[range(n), Yb] -= 1\ndlogits /= n",
    }
    verdicts = judge_all(run_cells(edits=student("dcounts-not-accumulated").edits + [fused]))
    assert not verdicts["counts"].ok
    assert verdicts["logits"].ok and verdicts["logits"].message == "ok"
    assert verdicts["h"].message == "ok"


def test_the_reference_is_private():
    ns = run_cells()
    for name in ("C", "W1", "logprobs", "probs", "Xb"):
        ns[name].zero_()  # mutate the notebook's forward tensors...
    ns["ds"].Xtr.zero_()
    fresh = Reference()  # ...a new reference does not see it
    assert torch.equal(fresh.values["loss"], reference().values["loss"])
    assert judge("logprobs", torch.zeros(32, 27), ns, ns["__cells__"]).ok is False


def test_copied_grad_is_rejected_but_what_follows_is_judged_on_its_own():
    ns = run_cells(edits=student("copies-grad").edits)
    verdicts = judge_all(ns)
    assert not verdicts["logits"].ok and "reads .grad" in verdicts["logits"].message
    assert verdicts["logits"].comparison.approximate  # the value is right; the way is not
    assert verdicts["h"].ok


def test_answer_built_with_requires_grad_is_rejected_without_history():
    x = reference().grads["W2"].clone().requires_grad_()
    v = judge("W2", x * 1.0, {}, history=None)
    assert not v.ok and "requires grad" in v.message


def test_monkeypatching_is_refused():
    ns = run_cells()
    v = judge("W2", ns["dW2"], ns, ns["__cells__"] + ["import grader\ngrader.atomic.judge = print"])
    assert not v.ok and "changes grader" in v.message


def test_cmp_prints_the_lecture_row_and_raises_with_the_hint(capsys):
    ns = run_cells()
    capsys.readouterr()
    cmp("logprobs", ns["dlogprobs"], ns["logprobs"])
    out = capsys.readouterr().out
    assert out.startswith("logprobs        | exact: ") and "| approximate: True  | maxdiff: " in out
    with pytest.raises(AssertionError, match="dW2 is wrong: wrong shape"):
        cmp("W2", ns["dW2"].T, ns["W2"])
    assert "| approximate: False | maxdiff: n/a" in capsys.readouterr().out


def test_verify_is_silent_on_success_and_raises_on_failure(capsys):
    ns = run_cells()
    capsys.readouterr()
    verify("logprobs", ns["dlogprobs"])
    assert capsys.readouterr().out == ""
    with pytest.raises(AssertionError, match="a 1/n is missing"):
        verify("logprobs", ns["dlogprobs"] * 32)


def test_table_prints_every_row(capsys):
    ns = run_cells(edits=student("dW2-transposed").edits)
    del ns["dC"]
    capsys.readouterr()
    table(ns)
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 27 and out[-1] == "24 of 26 gradients pass"
    assert "FAIL: dW2 is wrong" in out[ORDER.index("W2")]
    assert out[ORDER.index("C")].startswith("C               | dC is not defined yet")


def test_stage_check_prints_its_rows_and_never_raises(capsys):
    ns = run_cells(edits=student("dbnmeani-term-dropped").edits)
    del ns["dbnmeani"]
    capsys.readouterr()
    atomic.check_stage("batchnorm", ns)
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out] == list(atomic.STAGES["batchnorm"])
    assert "dbnmeani is not defined yet" in out[-2] and "dhprebn is wrong" in out[-1]


def test_unknown_name_is_a_clear_error():
    with pytest.raises(KeyError, match="not one of the 26 tensors"):
        judge("loss", torch.tensor(1.0))


def test_undefined_gradient_gets_the_stub_hint(capsys):
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        atomic.expect_names(["dlogprobs"], "Its answer cell")
        shell.run_cell("dlogprobs")
        out = capsys.readouterr().out
        assert "NameError" in out and "still raises NotImplementedError() (the stub)" in out
        shell.run_cell("some_other_name")
        assert "NotImplementedError" not in capsys.readouterr().out
    finally:
        InteractiveShell.clear_instance()
