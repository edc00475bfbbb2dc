"""grader.functions: what Exercises 2-4 share: calling the student's function, and the hints about it."""

import pytest
import torch

from grader import functions, integrity
from grader.checks import Comparison, compare
from grader.functions import CHECK_BATCH, Exercise, Network, call, describe_sizes, factors, judge_answer, raised

EX = Exercise("hprebn", "batchnorm_backward", ("dhpreact", "bnraw", "bngain", "bnvar_inv"))
n = batch_size = 32  # the notebooks' globals, which some functions read


@pytest.fixture(scope="module")
def case():
    return Network(5, batch_size=5, n_hidden=16).case()


def test_the_arguments_are_fresh_copies_of_the_case(case):
    args = EX.arguments(case)
    assert EX.call == "batchnorm_backward(dhpreact, bnraw, bngain, bnvar_inv)"
    assert torch.equal(args[0], case.grads["hpreact"]) and torch.equal(args[1], case.values["bnraw"])
    for arg, mine in zip(args, (case.grads["hpreact"], case.values["bnraw"]), strict=False):
        assert arg.untyped_storage().data_ptr() != mine.untyped_storage().data_ptr()
    assert Exercise("x", "f", ("Yb",)).arguments(case)[0] is not case.Yb


def test_a_network_is_described_by_what_makes_it_new():
    assert Network(7, batch_size=3).describe() == "batch 3, vocab 27, 64 hidden units, seed 7"
    net = Network(8, max_logit=100.0, dtype=torch.float64)
    assert net.describe() == "batch 32, vocab 27, 64 hidden units, seed 8, |logits| up to 100, float64"
    assert net.case().values["logits"].dtype == torch.float64


def test_call_runs_the_function_under_no_grad(case):
    seen = []

    def fn(*args):
        seen.append((torch.is_grad_enabled(), [a.requires_grad for a in args]))
        return "anything"

    assert call(EX, fn, case, "here", home=lambda: case) == ("anything", None)
    assert seen == [(False, [False] * 4)]


def test_an_exception_is_a_hint_that_names_the_notebook_sizes_off_the_home_network(case):
    def batchnorm_backward(dhpreact, bnraw, bngain, bnvar_inv):
        return dhpreact.view(n, 64)

    result, error = call(EX, batchnorm_backward, case, "on a new network", home=lambda: case)
    assert result is None and error.startswith("batchnorm_backward(dhpreact, bnraw, bngain, bnvar_inv) raised Runtime")
    assert error.endswith("on a new network.")  # on its home network, the sizes are right: no note
    _, error = call(EX, batchnorm_backward, case, "on a new network", home=lambda: None)
    assert error.endswith(
        " Note: batchnorm_backward reads the notebook's global `n` (= 32). Note: batchnorm_backward has the "
        "number 64 (the check network's hidden size) in it. A function must work on any network and batch: "
        "take everything from its arguments (the batch size is their .shape[0])."
    )
    assert describe_sizes(lambda x: x) == ""


def test_the_raised_hints():
    assert raised(EX, NotImplementedError(), "here").startswith(
        "batchnorm_backward still raises NotImplementedError() (the stub): replace the stub"
    )
    message = raised(EX, RuntimeError("element 0 of tensors does not require grad"), "on the check network")
    assert "on the check network. The grader calls it as a training step would: under torch.no_grad()" in message
    assert (
        raised(EX, ValueError(), "here")
        == "batchnorm_backward(dhpreact, bnraw, bngain, bnvar_inv) raised ValueError here."
    )


def test_the_global_n_factors_appear_only_off_the_check_networks_batch_size(case):
    named, meanings = factors(case)
    assert named["n/32"] == 5 / CHECK_BATCH and "where this batch has 5 examples" in meanings["n/32"]
    assert "Bessel's correction" in meanings["(n-1)/n"]
    named, _ = factors(Network(5).case())
    assert "n/32" not in named and named["n"] == 32.0


def test_judge_answer(case):
    want = case.grads["hprebn"]
    ok = judge_answer("hprebn", want, compare(want, want), "here", None, lambda: pytest.fail("not asked"))
    assert ok.ok and ok.message == "ok"
    wrong = judge_answer("hprebn", -want, compare(-want, want), "here", "a problem", lambda: " More.")
    assert not wrong.ok and wrong.message.startswith("dhprebn is wrong here: it is off by a constant factor: -1 times")
    assert wrong.message.endswith(" More. Also: a problem")
    attached = want.clone().requires_grad_()
    verdict = judge_answer("hprebn", attached, compare(attached, want), "here", "another problem", str)
    assert not verdict.ok and verdict.message.startswith("dhprebn was built with autograd switched on")
    failed = functions.failed_call("it raised.", "a problem")
    assert not failed.ok and failed.message == "it raised. Also: a problem" and failed.comparison == Comparison(False)


def test_code_problem_reads_the_kernels_history(monkeypatch):
    monkeypatch.setattr(integrity, "kernel_history", lambda: ["def f(x):\n    return x.grad"])
    assert functions.code_problem(["f"]).startswith("f comes from autograd: `def f(x):")
    monkeypatch.setattr(integrity, "kernel_history", lambda: None)
    assert functions.code_problem(["f"]) is None
