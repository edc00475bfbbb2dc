"""grader.checks: the pass rule and every hint, on real wrong answers from the check network."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from notebook_code import run_cells

from grader.atomic import reference
from grader.checks import ATOL, RTOL, Context, batch_factors, compare


@pytest.fixture(scope="module")
def lec():
    """The lecture's network, forward pass and hand-derived gradients (the source notebook's solution)."""
    return run_cells()


@pytest.fixture(scope="module")
def true():
    return reference().grads


def factors(lec):
    return Context(factors=batch_factors(lec["n"]))


def test_correct_answers_pass_with_tiny_error(lec, true):
    for name in ("logprobs", "W2", "hpreact", "bndiff", "W1", "C"):
        c = compare(lec[f"d{name}"], true[name])
        assert c.ok and c.relerr < 1e-7 and c.maxdiff < 1e-8, name


def test_exact_is_reported_but_not_required(lec, true):
    off_by_noise = lec["dhpreact"] + 1e-9 * torch.sign(lec["dhpreact"])
    c = compare(off_by_noise, true["hpreact"])
    assert c.ok and not c.exact


def test_mathematically_zero_gradients_accept_exact_zeros(lec, true):
    # true dlogit_maxes and db1 are float32 noise of ~1e-9: zeros are right, relative error is meaningless
    for name in ("logit_maxes", "b1"):
        assert 0 < true[name].abs().max() < ATOL
        c = compare(torch.zeros_like(true[name]), true[name])
        assert c.ok and c.relerr > RTOL, name


def test_leading_size_one_dimension_passes_with_a_note(lec, true):
    assert lec["dbnmeani"].shape == (64,) and true["bnmeani"].shape == (1, 64)
    c = compare(lec["dbnmeani"], true["bnmeani"], "`bnmeani`")
    assert c.ok and "(64,)" in c.note and "(1, 64)" in c.note
    c = compare(lec["db1"].view(1, 64), true["b1"])  # and the other way round
    assert c.ok and c.note


def test_one_shape_rule_a_leading_one_either_way_and_the_note_says_what_an_update_needs(lec, true):
    c = compare(lec["db1"].view(1, 64), true["b1"], "`b1`")
    assert c.ok and "in-place update" in c.note and "keepdim=True" in c.note
    c = compare(lec["dbnmeani"], true["bnmeani"], "`bnmeani`")
    assert c.ok and "broadcasts back onto the tensor" in c.note
    c = compare(lec["db1"].view(64, 1), true["b1"], "`b1`")  # a trailing one is another shape
    assert not c.ok and "extra size-1 dimension 1" in c.hint


def test_missing_keepdim_fails_although_the_values_are_right(lec, true):
    wrong = (lec["counts"] * lec["dprobs"]).sum(1)  # dcounts_sum_inv without keepdim=True
    assert wrong.shape == (32,) and (wrong - true["counts_sum_inv"]).shape == (32, 32)  # broadcasting trap
    assert torch.allclose(wrong, true["counts_sum_inv"].view(32))
    c = compare(wrong, true["counts_sum_inv"], "`counts_sum_inv`")
    assert not c.ok
    assert "dimension 1 is missing" in c.hint and "keepdim=True" in c.hint


def test_broadcasting_mismatch_names_the_grid():
    c = compare(torch.ones(32, 1), torch.ones(1, 27), "`x`")
    assert not c.ok and "32x27 grid" in c.hint


def test_transposed_matrix(lec, true):
    wrong = lec["dlogits"].T @ lec["h"]  # dW2 the wrong way round
    c = compare(wrong, true["W2"], "`W2`")
    assert not c.ok and "transposed" in c.hint and "(27, 64)" in c.hint


def test_transposed_square_matrix():
    g = torch.Generator().manual_seed(0)
    A, B = torch.randn(5, 4, generator=g), torch.randn(4, 4, generator=g, requires_grad=True)
    dout = torch.randn(5, 4, generator=g)
    (dB,) = torch.autograd.grad(A @ B, B, dout)
    wrong = dout.T @ A  # the same shape, transposed values
    c = compare(wrong, dB, "`B`")
    assert not c.ok and c.hint.startswith("it is transposed")


def test_wrong_number_of_dimensions_with_same_elements(lec, true):
    c = compare(lec["dembcat"], true["emb"], "`emb`")  # forgot to .view the gradient back
    assert not c.ok and ".view(32, 3, 10)" in c.hint


@pytest.mark.parametrize(
    "factor, meaning",
    [("n", "a 1/n is missing"), ("1/n", "a 1/n too many"), ("-1", "sign is flipped"), ("2", "twice")],
)
def test_named_constant_factors(lec, true, factor, meaning):
    n = lec["n"]
    wrong = {
        "n": ("logprobs", lec["dlogprobs"] * n),  # dlogprobs[range(n), Yb] = -1.0
        "1/n": ("logits", lec["dlogits"] / n),  # an extra mean
        "-1": ("W1", -lec["dW1"]),  # sign error
        "2": ("bndiff2", lec["dbndiff2"] * 2),
    }[factor]
    c = compare(wrong[1], true[wrong[0]], context=factors(lec))
    assert not c.ok and f"constant factor {factor} " in c.hint and meaning in c.hint


def test_bessel_correction_factor(lec, true):
    n = lec["n"]
    wrong = (1.0 / n) * torch.ones_like(lec["bndiff2"]) * lec["dbnvar"]  # divides by n, the forward by n-1
    c = compare(wrong, true["bndiff2"], context=factors(lec))
    assert not c.ok and "(n-1)/n" in c.hint and "Bessel" in c.hint
    c = compare(true["bndiff2"] * n / (n - 1), true["bndiff2"], context=factors(lec))
    assert "n/(n-1)" in c.hint


def test_unnamed_constant_factor_still_says_so(lec, true):
    c = compare(lec["dbnvar"] * 1.7, true["bnvar"], context=factors(lec))
    assert not c.ok and "constant factor: 1.7 times" in c.hint


def test_nan_and_inf(lec, true):
    big = lec["logits"] * 100  # a softmax without subtracting the max overflows
    counts = big.exp()
    probs = counts / counts.sum(1, keepdim=True)
    dlogits = probs.clone()
    dlogits[range(32), lec["Yb"]] -= 1
    c = compare(dlogits / 32, true["logits"])
    assert not c.ok and "NaN" in c.hint and "subtract the max" in c.hint


def test_generic_difference_says_how_far(lec, true):
    wrong = (1.0 - lec["hpreact"] ** 2) * lec["dh"]  # tanh' from the wrong tensor
    c = compare(wrong, true["hpreact"], context=factors(lec))
    assert not c.ok and "relative error" in c.hint and "largest difference" in c.hint


@pytest.mark.parametrize(
    "value, text",
    [
        (None, "it is None"),
        (0.5, "the number 0.5"),
        (NotImplemented, "placeholder"),
        (np.zeros((32, 27), dtype=np.float32), "numpy.ndarray, not a torch.Tensor"),
    ],
)
def test_not_a_tensor(true, value, text):
    c = compare(value, true["logprobs"])
    assert not c.ok and text in c.hint and "(32, 27)" in c.hint


def test_integer_tensor(lec, true):
    wrong = torch.zeros_like(lec["Xb"])  # dC = torch.zeros_like(Xb): Xb holds character indices
    c = compare(wrong, true["C"])
    assert not c.ok and "integer" in c.hint and "zeros_like" in c.hint


def test_float64_passes_with_a_note(lec, true):
    c = compare(lec["dW2"].double(), true["W2"])
    assert c.ok and "float64" in c.note


def test_all_zeros(true):
    c = compare(torch.zeros(64, 27), true["W2"])
    assert not c.ok and "all zeros" in c.hint


def test_missing_branch(lec, true):
    ref = reference()
    branches = ref.branches("counts", {"probs": true["probs"], "counts_sum": true["counts_sum"]})
    wrong = lec["counts_sum_inv"] * lec["dprobs"]  # forgot the second use of counts
    c = compare(wrong, true["counts"], "`counts`", Context(branches=branches))
    assert not c.ok and "only the gradient that flows back from `probs`" in c.hint
    assert "also used by `counts_sum`" in c.hint


def test_cross_entropy_reference_matches_functional(lec):
    # the reference graph is the lecture's: its loss is F.cross_entropy's
    assert torch.allclose(reference().values["loss"], F.cross_entropy(lec["logits"], lec["Yb"]))


def test_terms_name_the_one_that_is_off():
    g = torch.Generator().manual_seed(1)
    a, b, c = (torch.randn(8, 5, generator=g) for _ in range(3))
    context = Context(factors=batch_factors(8), terms={"the a term": a, "the b term": b, "the c term": c})
    hint = compare(a + 7 / 8 * b + c, a + b + c, context=context).hint
    assert hint.startswith("it is off in part: the b term is 0.875 times what it should be, the factor (n-1)/n.")
    assert "The other terms are right. The factor (n-1)/n: it divides by n where" in hint
    hint = compare(a + c, a + b + c, context=context).hint
    assert "the b term is missing. The other terms are right." in hint
    # not a combination of the terms: no term hint
    assert "off in part" not in compare(a * b, a + b + c, context=context).hint


def test_fit_finds_the_coefficients_or_refuses():
    from grader.checks import fit

    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g)
    assert fit(2 * a - 3 * b, [a, b]) == pytest.approx([2.0, -3.0])
    assert fit(a * b, [a, b]) is None  # not a combination of them
    assert fit(2 * a, [a, a * (1 + 1e-9)]) is None  # too close to parallel to tell apart
    assert fit(a, [a, torch.full_like(a, float("nan"))]) is None


def test_meanings_override_the_shared_ones(true):
    context = Context(factors={"n": 32.0}, meanings={"n": "the 1/n of this exercise is missing"})
    hint = compare(true["logits"] * 32, true["logits"], context=context).hint
    assert hint.endswith("constant factor n (32 times the expected gradient): the 1/n of this exercise is missing.")


def test_nonfinite_hint_says_what_the_caller_knows(true):
    wrong = true["logits"].clone()
    wrong[0, 0] = float("nan")
    hint = compare(wrong, true["logits"], context=Context(nonfinite="These logits reach 120.")).hint
    assert "1 NaN and 0 inf" in hint and hint.endswith("These logits reach 120.")


def test_row_is_the_lecture_row(true):
    from grader.checks import row

    line = row("logits", compare(true["logits"], true["logits"]), "ok")
    assert line == "logits          | exact: True  | approximate: True  | maxdiff: 0       | ok"
    line = row("W2", compare(None, true["W2"]), "FAIL", note="a note")
    assert (
        line
        == f"W2              | exact: n/a   | approximate: False | maxdiff: n/a     | FAIL\n{'':15s}   note: a note"
    )


# ---------------------------------------------------------------------------------------------
# What every exercise's checker shares: the verdict, its report, the hints written once


def test_a_verdict_prints_its_row_and_raises_with_its_hint(true, capsys):
    from grader.checks import Verdict, report, row

    good = compare(true["W2"], true["W2"])
    report("W2", Verdict(True, good, "ok: this step is right", "a note"))
    assert capsys.readouterr().out == row("W2", good, "ok: this step is right", "a note") + "\n"
    bad = compare(-true["W2"], true["W2"])
    with pytest.raises(AssertionError, match="^dW2 is wrong: it is off by a constant factor: -1 times"):
        report("W2", Verdict(False, bad, f"dW2 is wrong: {bad.hint}"))
    assert capsys.readouterr().out == row("W2", bad, "FAIL") + "\n"  # the hint is the exception's, not the row's


def test_an_answer_still_attached_to_autograd_is_named(true):
    from grader.checks import built_with_autograd

    x = true["W2"].clone().requires_grad_()
    expected = "dW2 was built with autograd switched on (it requires grad): derive it by hand."
    assert built_with_autograd("W2", x) == expected and built_with_autograd("W2", x * 2) == expected
    assert built_with_autograd("W2", x.detach()) is None and built_with_autograd("W2", None) is None


def test_the_repeated_index_hint_names_only_an_indexed_plus_equals(true):
    from grader.checks import repeated_index_hint

    Xb = reference().Xb
    demb = true["emb"]
    lossy = torch.zeros_like(true["C"])
    lossy[Xb] += demb  # each repeated index once
    diagnose = repeated_index_hint(Xb, true["C"].shape[0], lambda rows: f"({len(rows)} rows).")
    wrong_rows = ((lossy - true["C"]).abs() > 1e-6).any(dim=1).sum().item()
    assert diagnose(lossy, true["C"]) == (
        f"only the rows of characters that occur more than once in Xb are wrong ({wrong_rows} rows)."
    )
    everywhere = true["C"] + 1.0  # every row wrong, including characters that occur once (or never)
    assert diagnose(everywhere, true["C"]) is None
    assert diagnose(lossy.T, true["C"].T) is None  # not an embedding table's shape


# ---------------------------------------------------------------------------------------------
# Hints from the op (grader/hints_ops.py), on wrong local steps run on a seeded random upstream


@pytest.fixture(scope="module")
def dh_random():
    return torch.randn(reference().values["h"].shape, generator=torch.Generator().manual_seed(7))


def _tanh_hint(step, dh):
    from grader import hints_ops

    ref = reference()
    h = ref.values["h"]
    return hints_ops.hint(ref, "hpreact", step(h, dh), (1.0 - h**2) * dh, {"h": dh})


def test_a_term_outside_the_product_is_a_misplaced_parenthesis(dh_random):
    hint = _tanh_hint(lambda h, dh: 1.0 - h**2 * dh, dh_random)
    assert hint.startswith("it is 1 + (the local derivative of `h = torch.tanh(hpreact)` - 1) * dh: the term 1")
    hint = _tanh_hint(lambda h, dh: dh * 1.0 - h**2, dh_random)  # another grouping: said with the fitted terms
    assert hint.startswith("it is -1 + 1*D + 1*dh, with D the local derivative") and "wrong grouping" in hint


def test_a_derivative_taken_at_the_op_of_its_output_is_the_op_applied_twice(dh_random):
    hint = _tanh_hint(lambda h, dh: (1.0 - torch.tanh(h) ** 2) * dh, dh_random)
    assert "computed with torch.tanh(h) where h (the op's output) belongs: the op is applied twice" in hint


def test_the_grouping_hint_names_nothing_for_a_right_or_scaled_step(dh_random):
    assert _tanh_hint(lambda h, dh: (1.0 - h**2) * dh, dh_random) is None
    from grader import hints_ops

    ref = reference()
    h = ref.values["h"]
    assert hints_ops.grouping_hint(ref, "hpreact", 2 * (1.0 - h**2) * dh_random, {"h": dh_random}) is None


def test_a_later_gradient_in_place_of_the_upstream_names_the_layer_skipped(true):
    from grader import hints_ops

    ref = reference()
    embcat = ref.values["embcat"]
    hint = hints_ops.skipped_layer_hint(ref, "W1", embcat.T @ true["hpreact"], true)
    assert hint.startswith(
        "it is the backward step of `hprebn = embcat @ W1 + b1` computed with dhpreact where dhprebn belongs: "
        "it skips the BatchNorm layer between them (bnmeani, bndiff, bndiff2, bnvar, bnvar_inv, bnraw, hpreact)"
    )
    hint = hints_ops.skipped_layer_hint(ref, "W1", embcat.T @ true["h"], true)
    assert "it skips the BatchNorm layer and the non-linearity between them" in hint
    assert hints_ops.skipped_layer_hint(ref, "W1", embcat.T @ true["hprebn"], true) is None
