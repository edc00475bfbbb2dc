"""Exercises 2 and 3: the hidden tests' networks, how the student's function is called, and every hint.

The right answers come from the source notebooks' solutions; the wrong ones are real wrong
implementations, written here (tests may hold solutions, grader/ may not) or made from the solutions
by source/demo_class.toml's edits.
"""

import nbformat
import pytest
import torch
import torch.nn.functional as F
from notebook_code import SOURCE, run_cells

from grader import functions, fused, integrity
from grader.checks import ATOL, relative_error
from grader.fused import EXERCISES, SUITES, Network, check, cmp, expected, verify
from grader.instructor import course

NOTEBOOKS = {"logits": "02_fused_cross_entropy", "hprebn": "03_fused_batchnorm"}
FUNCTIONS = {"logits": "cross_entropy_backward", "hprebn": "batchnorm_backward"}
STUDENTS = [s for s in course.demo_class() if {e["notebook"] for e in s.edits} & set(NOTEBOOKS.values())]


def graded_cells(notebook: str) -> list:
    nb = nbformat.read(SOURCE / f"{notebook}.ipynb", as_version=4)
    return [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")]


def grade(notebook: str, edits=(), monkeypatch=None, base: str = "solution") -> dict[str, str | None]:
    """Run the notebook's code, then each test cell with its hidden part, as autograde does.

    Returns each test cell's failure (exception type and message) or None. The kernel's input history,
    which the integrity check reads, is the cells that ran.
    """
    ns = run_cells(notebook, edits, base=base)
    history = list(ns["__cells__"])
    monkeypatch.setattr(integrity, "kernel_history", lambda: history)
    out = {}
    for cell in graded_cells(notebook):
        history.append(cell.source)
        try:
            exec(compile(cell.source, cell.metadata.nbgrader.grade_id, "exec"), ns)
            out[cell.metadata.nbgrader.grade_id] = None
        except Exception as exc:
            out[cell.metadata.nbgrader.grade_id] = f"{type(exc).__name__}: {exc}"
    return out


@pytest.fixture(scope="module")
def solutions():
    """The source notebooks' functions, by exercise."""
    return {name: run_cells(nb)[FUNCTIONS[name]] for name, nb in NOTEBOOKS.items()}


# ---------------------------------------------------------------------------------------------
# The solutions and the demo class


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_the_solution_passes_every_test_cell(name, monkeypatch):
    assert grade(NOTEBOOKS[name], monkeypatch=monkeypatch) == dict.fromkeys(
        c.metadata.nbgrader.grade_id for c in graded_cells(NOTEBOOKS[name])
    )


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_the_solution_is_close_to_autograd_on_every_hidden_network(name, solutions):
    for suite, networks in SUITES[name].items():
        for net in networks:
            case = fused.check_network() if net is None else net.case()
            verdict = fused.judge(EXERCISES[name], solutions[name], case, suite)
            assert verdict.ok, (suite, net, verdict.message)
            assert verdict.comparison.relerr < 1e-6, (suite, net, verdict.comparison.relerr)


@pytest.mark.parametrize("s", STUDENTS, ids=[s.id for s in STUDENTS])
def test_each_known_mistake_costs_exactly_its_points_with_its_hint(s, monkeypatch):
    notebook = next(e["notebook"] for e in s.edits)
    results = grade(notebook, s.edits, monkeypatch, base=s.base)
    assert {cell for cell, failure in results.items() if failure} == set(s.loses)
    for cell, hint in s.loses.items():
        assert hint in results[cell], results[cell]


def test_the_softmax_without_max_passes_every_visible_check(monkeypatch):
    """The issue's example: right on the check network, NaN only on the hidden large logits."""
    s = next(s for s in STUDENTS if s.id == "ce-softmax-without-max")
    ns = run_cells(NOTEBOOKS["logits"], s.edits)
    monkeypatch.setattr(integrity, "kernel_history", lambda: None)
    fn = ns["cross_entropy_backward"]
    cmp("logits", fn(ns["logits"], ns["Yb"]), ns["logits"])
    check("logits", fn, seed=5, batch_size=5)
    check("logits", fn, seed=6, max_logit=10.0)
    with pytest.raises(AssertionError, match="NaN"):
        verify("logits", fn, "large logits")


# ---------------------------------------------------------------------------------------------
# The hidden tests' networks


def all_networks(name):
    return [net for nets in SUITES[name].values() for net in nets if net is not None]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_hidden_networks_are_new(name):
    nets = all_networks(name)
    sizes = {net.batch_size for net in nets}
    assert 2 in sizes and any(b % 2 for b in sizes) and sizes - {32}
    shapes = SUITES[name]["new shapes"]
    assert all(net.batch_size != 32 for net in shapes)  # a hard-coded 32 fails every one of them
    assert {net.n_hidden for net in shapes} - {64, 200}
    if name == "logits":
        assert {net.vocab_size for net in shapes} - {27}
    assert len({net.seed for net in nets}) == len(nets)
    assert functions.CHECK_BATCH == 32


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_every_case_is_one_real_forward_pass(name):
    for net in all_networks(name):
        case = net.case()
        v = case.values
        assert case.n == net.batch_size and v["logits"].shape == (net.batch_size, net.vocab_size)
        assert v["hprebn"].shape == (net.batch_size, net.n_hidden) and v["logits"].dtype == net.dtype
        # the tensors belong together: BatchNorm and the loss recomputed from them
        mean, var = v["hprebn"].mean(0, keepdim=True), v["hprebn"].var(0, keepdim=True, unbiased=True)
        assert torch.allclose(v["bnraw"], (v["hprebn"] - mean) / torch.sqrt(var + 1e-5), atol=1e-5)
        assert torch.allclose(v["hpreact"], v["bngain"] * v["bnraw"] + v["bnbias"])
        assert torch.allclose(v["logits"], v["h"] @ v["W2"] + v["b2"], atol=1e-4)
        if net.max_logit is None:
            assert torch.allclose(F.cross_entropy(v["logits"], case.Yb), v["loss"])


def test_large_logits_overflow_a_naive_softmax():
    for net in SUITES["logits"]["large logits"]:
        logits = net.case().values["logits"]
        assert logits.abs().max().item() == pytest.approx(net.max_logit, rel=1e-4) and net.max_logit >= 100
        assert (logits > fused.EXP_LIMIT).any()  # exp gives inf there
        assert torch.isinf(logits.exp()).any() and torch.isfinite(F.softmax(logits, 1)).all()


def test_the_reference_is_autograd_of_the_lecture_graph_and_of_f_cross_entropy():
    case = Network(7, batch_size=9, vocab_size=11).case()
    # on ordinary logits, F.cross_entropy's gradient is the chunked graph's (the lecture: "same as F.cross_entropy")
    assert relative_error(expected("logits", case), case.grads["logits"]) < 1e-7
    assert expected("hprebn", case) is case.grads["hprebn"]
    # on logits of about 100 the chunked graph takes log(0); F.cross_entropy does not
    large = SUITES["logits"]["large logits"][0].case()
    assert not torch.isfinite(large.values["loss"]) and torch.isfinite(expected("logits", large)).all()


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_the_terms_are_autograd_paths_that_add_up_to_the_gradient(name):
    case = fused.check_network()
    terms = fused.terms(name, case)
    assert len(terms) >= 2 and all(t.abs().max() > 1e-4 for t in terms.values())
    assert (sum(terms.values()) - case.grads[name]).abs().max() < ATOL


# ---------------------------------------------------------------------------------------------
# How the student's function is called


def test_the_function_runs_under_no_grad_on_fresh_tensors(solutions):
    seen = []

    def spy(logits, Y):
        seen.append((torch.is_grad_enabled(), logits.requires_grad, logits.grad_fn, logits._version, logits._base))
        out = solutions["logits"](logits, Y)
        logits.zero_()  # a function that scribbles on its input...
        return out

    verify("logits", spy, "new shapes")  # ...does not spoil the next networks or the reference
    verify("logits", solutions["logits"], "new shapes")
    assert len(seen) == len(SUITES["logits"]["new shapes"])
    assert all(s == (False, False, None, 0, None) for s in seen)


def test_a_crashing_function_is_a_verdict_not_a_crash():
    def broken(*args):
        raise ValueError("boom")

    for name in NOTEBOOKS:
        with pytest.raises(
            AssertionError, match=rf"{FUNCTIONS[name]}\(.*\) raised ValueError: boom on the check network"
        ):
            verify(name, broken, "the check network")


def test_the_visible_checks_print_the_lecture_row(solutions, capsys):
    case = fused.check_network()
    cmp("logits", solutions["logits"](*case.tensors("logits", "Yb")), None)
    out = capsys.readouterr().out
    assert (
        out.startswith("logits          | exact: ")
        and "| approximate: True  | maxdiff: " in out
        and out.endswith("| ok\n")
    )
    check("hprebn", solutions["hprebn"], seed=5, batch_size=5, n_hidden=16)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "a new network: batch 5, vocab 27, 16 hidden units, seed 5"
    assert out[1].startswith("hprebn          | exact: ") and out[1].endswith("| ok")
    verify("hprebn", solutions["hprebn"], "new shapes")
    assert capsys.readouterr().out == ""
    with pytest.raises(
        AssertionError, match="dlogits is wrong on the check network: it is off by a constant factor -1"
    ):
        cmp("logits", -solutions["logits"](*case.tensors("logits", "Yb")))
    out = capsys.readouterr().out
    assert "| approximate: False | " in out and out.endswith("| FAIL\n")
    with pytest.raises(KeyError, match="the fused exercises check 'logits' and 'hprebn'"):
        cmp("W2", None)


# ---------------------------------------------------------------------------------------------
# The hints, on real wrong implementations

n = batch_size = 32  # the notebooks' globals, which some wrong functions read


def ce_without_one_hot(logits, Y):
    return F.softmax(logits, 1) / logits.shape[0]


def ce_one_hot_after_dividing(logits, Y):
    n = logits.shape[0]
    d = F.softmax(logits, 1) / n
    d[range(n), Y] -= 1
    return d


def ce_softmax_over_the_batch(logits, Y):
    n = logits.shape[0]
    d = F.softmax(logits, 0)  # normalised over the examples: each column sums to 1
    d[range(n), Y] -= 1
    return d / n


def ce_one_hot_at_the_argmax(logits, Y):
    n = logits.shape[0]
    d = F.softmax(logits, 1)
    d[range(n), logits.argmax(1)] -= 1
    return d / n


def ce_one_hot_in_every_row(logits, Y):
    d = F.softmax(logits, 1)
    d[:, Y] -= 1
    return d / logits.shape[0]


def ce_softmax_part_not_divided(logits, Y):
    n = logits.shape[0]
    d = F.softmax(logits, 1)
    d[range(n), Y] -= 1 / n
    return d


def ce_naive_softmax(logits, Y):
    n = logits.shape[0]
    e = logits.exp()
    d = e / e.sum(1, keepdim=True)
    d[range(n), Y] -= 1
    return d / n


def ce_divides_by_global_n(logits, Y):
    d = F.softmax(logits, 1)
    d[range(logits.shape[0]), Y] -= 1
    return d / batch_size


def ce_indexes_with_global_n(logits, Y):
    d = F.softmax(logits, 1)
    d[range(n), Y] -= 1
    return d / n


def ce_hard_coded_vocab(logits, Y):
    d = torch.zeros(logits.shape[0], 27)
    d += F.softmax(logits, 1)
    d[range(logits.shape[0]), Y] -= 1
    return d / logits.shape[0]


def ce_uses_autograd(logits, Y):
    logits = logits.detach().requires_grad_()
    F.cross_entropy(logits, Y).backward()
    return logits.grad


def ce_stub(logits, Y):
    raise NotImplementedError()


def ce_returns_nothing(logits, Y):
    dlogits = F.softmax(logits, 1)  # noqa: F841 (forgot to return it)


def bn_lecture(dhpreact, bnraw, bngain, bnvar_inv, n_=None, bessel=True, mean=True, variance=True):
    n_ = n_ or dhpreact.shape[0]
    out = n_ * dhpreact
    if mean:
        out = out - dhpreact.sum(0)
    if variance:
        out = out - (n_ / (n_ - 1) if bessel else 1.0) * bnraw * (dhpreact * bnraw).sum(0)
    return bngain * bnvar_inv / n_ * out


def bn_biased_variance(dhpreact, bnraw, bngain, bnvar_inv):
    return bn_lecture(dhpreact, bnraw, bngain, bnvar_inv, bessel=False)


def bn_without_mean_term(dhpreact, bnraw, bngain, bnvar_inv):
    return bn_lecture(dhpreact, bnraw, bngain, bnvar_inv, mean=False)


def bn_without_variance_term(dhpreact, bnraw, bngain, bnvar_inv):
    return bn_lecture(dhpreact, bnraw, bngain, bnvar_inv, variance=False)


def bn_global_n(dhpreact, bnraw, bngain, bnvar_inv):
    return bngain * bnvar_inv / n * (n * dhpreact - dhpreact.sum(0) - n / (n - 1) * bnraw * (dhpreact * bnraw).sum(0))


def bn_without_gain(dhpreact, bnraw, bngain, bnvar_inv):
    return bn_lecture(dhpreact, bnraw, torch.ones_like(bngain), bnvar_inv)


def bn_without_one_over_n(dhpreact, bnraw, bngain, bnvar_inv):
    return bn_lecture(dhpreact, bnraw, bngain, bnvar_inv) * dhpreact.shape[0]


def bn_hard_coded_width(dhpreact, bnraw, bngain, bnvar_inv):
    return bn_lecture(dhpreact, bnraw, bngain, bnvar_inv).view(-1, 64)


HINTS = [
    # (exercise, function, suite, texts the hint must contain)
    ("logits", ce_without_one_hot, "the check network", ["the one-hot term", "is missing", "The other term is right"]),
    (
        "logits",
        ce_one_hot_after_dividing,
        "the check network",
        ["the one-hot term", "32 times what it should be, the factor n", "a 1/n is missing"],
    ),
    (
        "logits",
        ce_one_hot_at_the_argmax,
        "the check network",
        ["the -1 of the one-hot part is in the wrong place", "the correct class is Yb[0] = "],
    ),
    (
        "logits",
        ce_one_hot_after_dividing,
        "large logits",
        ["only at the correct classes (i, Yb[i]) of 32 rows", "subtracts 32/n instead of 1/n"],
    ),
    ("logits", ce_without_one_hot, "large logits", ["does not subtract the 1/n: the one-hot subtraction is missing"]),
    (
        "logits",
        ce_one_hot_in_every_row,
        "new shapes",
        ["the -1 of the one-hot part is in the wrong place", "on a new network (batch 7"],
    ),
    (
        "logits",
        ce_softmax_part_not_divided,
        "the check network",
        ["the softmax term", "the factor n", "a 1/n is missing"],
    ),
    (
        "logits",
        ce_naive_softmax,
        "large logits",
        [
            "NaN",
            "exp(x) overflows float32 above x = 88.72",
            "It works on the check network and overflows here",
            "is right on the check network",
        ],
    ),
    (
        "logits",
        ce_divides_by_global_n,
        "new shapes",
        [
            "constant factor n/32 (0.21",
            "where this batch has 7 examples",
            "global n or batch_size",
            "reads the notebook's global `batch_size` (= 32)",
            "is right on the check network",
        ],
    ),
    (
        "logits",
        ce_indexes_with_global_n,
        "new shapes",
        ["raised IndexError", "reads the notebook's global `n` (= 32)", "the batch size is their .shape[0]"],
    ),
    ("logits", ce_hard_coded_vocab, "new shapes", ["raised RuntimeError", "the number 27 (the vocabulary size)"]),
    ("logits", ce_uses_autograd, "new shapes", ["under torch.no_grad(), on tensors that never saw backward()"]),
    ("logits", ce_stub, "the check network", ["still raises NotImplementedError() (the stub)"]),
    ("logits", ce_returns_nothing, "new shapes", ["it is None, not a tensor; it should be a tensor of shape (7, 13)"]),
    (
        "hprebn",
        bn_biased_variance,
        "the check network",
        [
            "the variance term",
            "0.9688 times",
            "(n-1)/n",
            "the biased variance",
            "Bessel's correction",
            "The other terms are right",
        ],
    ),
    ("hprebn", bn_biased_variance, "new shapes", ["on a new network (batch 7", "0.8571 times", "(n-1)/n"]),
    (
        "hprebn",
        bn_without_mean_term,
        "the check network",
        ["the mean term (the path through bnmeani", "is missing", "The other terms are right"],
    ),
    (
        "hprebn",
        bn_without_variance_term,
        "the check network",
        ["the variance term (the path through bnvar", "is missing"],
    ),
    (
        "hprebn",
        bn_global_n,
        "new shapes",
        [
            "the factor (n-1)/31",
            "the factor n/32",
            "where this batch has 7 examples",
            "reads the notebook's global `n` (= 32)",
            "is right on the check network",
        ],
    ),
    (
        "hprebn",
        bn_without_gain,
        "the check network",
        ["each column is off by its own factor, and the factors are 1/bngain: a factor bngain is missing"],
    ),
    ("hprebn", bn_without_one_over_n, "the check network", ["constant factor n (32 times", "a 1/n is missing"]),
    (
        "logits",
        ce_softmax_over_the_batch,
        "the check network",
        ["the softmax over dim 0 (the 32 examples of the batch) where dim 1 (the 27 classes) belongs"],
    ),
    (
        "logits",
        ce_softmax_over_the_batch,
        "new shapes",
        ["the softmax over dim 0 (the 7 examples of the batch) where dim 1 (the 13 classes) belongs"],
    ),
    ("logits", ce_softmax_over_the_batch, "large logits", ["the softmax over dim 0 (the 32 examples of the batch)"]),
    (
        "hprebn",
        bn_hard_coded_width,
        "new shapes",
        ["raised RuntimeError", "the number 64 (the check network's hidden size)"],
    ),
]


@pytest.mark.parametrize("name, fn, suite, texts", HINTS, ids=[f"{h[1].__name__}-{h[2]}" for h in HINTS])
def test_hint(name, fn, suite, texts, monkeypatch):
    monkeypatch.setattr(integrity, "kernel_history", lambda: None)
    with pytest.raises(AssertionError) as info:
        verify(name, fn, suite)
    for text in texts:
        assert text in str(info.value), str(info.value)


def test_reading_the_global_n_is_right_on_the_check_network_only():
    verify("hprebn", bn_global_n, "the check network")
    verify("logits", ce_divides_by_global_n, "the check network")
    verify("logits", ce_divides_by_global_n, "large logits")  # batches of 32, too


def test_code_that_used_autograd_is_named(monkeypatch):
    history = [
        "import torch\nimport torch.nn.functional as F",
        "def cross_entropy_backward(logits, Y):\n    with torch.enable_grad():\n"
        "        logits = logits.detach().requires_grad_()\n        F.cross_entropy(logits, Y).backward()\n"
        "    return logits.grad",
    ]
    monkeypatch.setattr(integrity, "kernel_history", lambda: history)

    def cross_entropy_backward(logits, Y):  # runs under no_grad: the autograd is switched back on inside
        with torch.enable_grad():
            logits = logits.detach().requires_grad_()
            F.cross_entropy(logits, Y).backward()
        return logits.grad

    with pytest.raises(AssertionError, match="cross_entropy_backward comes from autograd: `def cross_entropy_backward"):
        verify("logits", cross_entropy_backward, "new shapes")


def test_another_dimension_is_named_only_when_it_is_the_mistake():
    """The dimension hint comes from autograd's backward with swapped saved tensors: it names no other mistake."""
    from grader import fused, hints_ops

    case = fused.check_network()
    logits, loss = case.values["logits"], fused.cross_entropy(case.Yb)
    for fn in (ce_without_one_hot, ce_one_hot_after_dividing, ce_one_hot_at_the_argmax):
        assert hints_ops.other_dim_hint(loss, logits, fn(logits.clone(), case.Yb), fused.dims(case)) is None
    right = fused.expected("logits", case)
    assert hints_ops.other_dim_hint(loss, logits, right, fused.dims(case)) is None
