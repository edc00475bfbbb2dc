"""Exercise 4: the run's limits, the backward checker's hints on real wrong implementations, the model judge.

The right answer comes from the source notebook's solution; the wrong ones are real wrong
implementations, written here or made from the solution by source/demo_class.toml's edits.
"""

import functools
import os

import pytest
import torch
import torch.nn.functional as F
from notebook_code import compile_cell, run_cells

from grader import calibration, integrity, mode, training
from grader.checks import ATOL
from grader.instructor import course
from grader.model import PARAM_NAMES

NOTEBOOK = "04_full_training"
STUDENTS = [s for s in course.demo_class() if any(e["notebook"] == NOTEBOOK for e in s.edits)]


@pytest.fixture(autouse=True)
def no_history(monkeypatch):
    monkeypatch.setattr(integrity, "kernel_history", lambda: None)


@pytest.fixture(scope="module")
def solution():
    return _solution()


def _solution():
    """The source notebook's manual_backward, without running its training loop."""
    import nbformat
    from notebook_code import SOURCE

    nb = nbformat.read(SOURCE / f"{NOTEBOOK}.ipynb", as_version=4)
    ns: dict = {}
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in ("setup-training", "answer_manual_backward"):
            exec(course.SOLUTION_MARKERS.sub("", cell.source), ns)
    return ns["manual_backward"]


# ---------------------------------------------------------------------------------------------
# The run's settings and limits (grading mode itself: test_mode.py)


@pytest.mark.parametrize("env", [{}, {"CI": "true"}, {"BACKPROP_NINJA_GRADING": "0", "CI": "true"}])
def test_the_limits_follow_grading_mode(env):
    assert training.limits(env) == (training.GRADING_LIMITS if mode.grading_mode(env) else training.FULL_LIMITS)
    assert training.grading_mode is mode.grading_mode and training.grading_reason is mode.grading_reason


def test_the_test_suite_runs_in_grading_mode():
    assert training.grading_mode()  # set by the root conftest.py, so that nbval trains GRADING_STEPS only
    assert training.GRADING_STEPS < training.FULL_STEPS // 20


def test_the_full_limits_are_the_lecture_quality():
    assert training.FULL_LIMITS == {"train": 2.09, "val": 2.13}
    assert training.FULL_STEPS == 200_000 and training.DECAY_STEP == 100_000


# ---------------------------------------------------------------------------------------------
# The solution, the hidden networks and how the function is called


def test_the_solution_passes_every_check_closely(solution):
    for case in [training.first_batch()] + [training._case(net) for net in training.HIDDEN]:
        grads, error = training.gradients(solution, case, "here")
        assert not error
        for name in PARAM_NAMES:
            verdict = training._verdict(name, grads, case, "here", None)
            c = verdict.comparison  # db1 is 0 up to float32 noise: no relative error to speak of
            assert verdict.ok and (c.relerr < 1e-6 or (name == "b1" and c.maxdiff < ATOL)), (name, verdict.message)
    for name in PARAM_NAMES:
        training.verify(name, solution)


def test_the_hidden_networks_are_new_and_repeat_characters():
    sizes = {net.batch_size for net in training.HIDDEN}
    assert 32 not in sizes and any(b % 2 for b in sizes) and min(sizes) <= 3
    assert {net.n_hidden for net in training.HIDDEN} - {64, 200} and {net.vocab_size for net in training.HIDDEN} - {27}
    assert {(net.n_embd, net.block_size) for net in training.HIDDEN} - {(10, 3)}
    for net in training.HIDDEN:
        case = training._case(net)
        assert case.Xb.flatten().bincount().max() > 1  # an indexed += loses something on every network
        v = case.values  # one real forward pass: the loss recomputed from its tensors
        assert torch.allclose(F.cross_entropy(v["logits"], case.Yb), v["loss"])
        assert torch.allclose(v["logits"], v["h"] @ v["W2"] + v["b2"], atol=1e-5)


def test_the_first_batch_is_the_notebooks_first_batch():
    ns = run_cells(
        NOTEBOOK,
        edits=[{"notebook": NOTEBOOK, "cell": "steps", "find": "lossi = []", "replace": "lossi = []\nmax_steps = 1"}],
    )
    case = training.first_batch()
    initial = training.initial_parameters()
    assert torch.equal(ns["Xb"], case.Xb) and torch.equal(ns["Yb"], case.Yb)
    for name, p0 in zip(PARAM_NAMES, initial, strict=True):
        assert torch.equal(case.values[name], p0)


def test_the_function_runs_under_no_grad_on_fresh_tensors(solution):
    seen = []

    def spy(*args):
        seen.append((torch.is_grad_enabled(), any(a.requires_grad for a in args), [a._version for a in args]))
        out = solution(*args)
        for a in args:
            if a.is_floating_point():
                a.zero_()  # scribbling on the inputs spoils nothing for the next network or the reference
        return out

    training.verify("W1", spy)
    training.verify("W1", solution)
    assert len(seen) == 1 + len(training.HIDDEN)
    assert all(s[0] is False and s[1] is False and set(s[2]) == {0} for s in seen)


# ---------------------------------------------------------------------------------------------
# Hints, on real wrong implementations


def wrong(solution, name, change):
    def fn(*args):
        grads = dict(zip(PARAM_NAMES, solution(*args), strict=True))
        grads[name] = change(grads[name], args)
        return tuple(grads[k] for k in PARAM_NAMES)

    return fn


def dC_indexed_plus_equals(logits, Yb, h, W2, bnraw, bngain, bnvar_inv, embcat, W1, Xb, C):
    """The lecture's backward pass with the tempting one-liner for dC."""
    n = logits.shape[0]
    dlogits = F.softmax(logits, 1)
    dlogits[torch.arange(n), Yb] -= 1
    dlogits /= n
    dh = dlogits @ W2.T
    dhpreact = (1.0 - h**2) * dh
    dhprebn = (
        bngain * bnvar_inv / n * (n * dhpreact - dhpreact.sum(0) - n / (n - 1) * bnraw * (dhpreact * bnraw).sum(0))
    )
    demb = (dhprebn @ W1.T).view(*Xb.shape, C.shape[1])
    dC = torch.zeros_like(C)
    dC[Xb] += demb
    return (
        dC,
        embcat.T @ dhprebn,
        dhprebn.sum(0),
        h.T @ dlogits,
        dlogits.sum(0),
        (bnraw * dhpreact).sum(0, keepdim=True),
        dhpreact.sum(0, keepdim=True),
    )


@functools.cache
def lecture_with(find: str, replace: str):
    """The source notebook's manual_backward with one line changed (its text kept, as IPython keeps a cell's)."""
    import nbformat
    from notebook_code import SOURCE

    nb = nbformat.read(SOURCE / f"{NOTEBOOK}.ipynb", as_version=4)
    source = course.solutions(nb)["answer_manual_backward"]
    assert find in source
    ns = {"torch": torch, "F": F}
    exec(compile_cell(source.replace(find, replace), "answer_manual_backward"), ns)
    return ns["manual_backward"]


# Wrong lines in the lecture's function itself (a wrapper would hide its locals from grader.ecf4's chain)
SKIPS_BATCHNORM = ("dW1 = embcat.T @ dhprebn", "dW1 = embcat.T @ dhpreact")
TANH_PARENTHESIS = ("dhpreact = (1.0 - h**2) * dh", "dhpreact = 1.0 - h**2 * dh")
SOFTMAX_OVER_THE_BATCH = ("dlogits = F.softmax(logits, 1)", "dlogits = F.softmax(logits, 0)")


def hard_coded_vocab(logits, Yb, h, W2, bnraw, bngain, bnvar_inv, embcat, W1, Xb, C):
    grads = list(_solution()(logits, Yb, h, W2, bnraw, bngain, bnvar_inv, embcat, W1, Xb, C))
    grads[4] = grads[4].view(27)
    return tuple(grads)


def returns_six(*args):
    return _solution()(*args)[:6]


def returns_in_lecture_order_of_backward(*args):
    dC, dW1, db1, dW2, db2, dbngain, dbnbias = _solution()(*args)
    return dC, dW2, db1, dW1, db2, dbngain, dbnbias


def calls_backward(logits, Yb, h, W2, bnraw, bngain, bnvar_inv, embcat, W1, Xb, C):
    logits = logits.detach().requires_grad_()
    F.cross_entropy(logits, Yb).backward()
    return (logits.grad,) * 7


HINTS = [
    # (gradient, the function or how the solution is changed, texts the hint must contain)
    (
        "db2",
        lambda s: wrong(s, "b2", lambda d, a: d / a[0].shape[0]),
        ["db2 is wrong on the first batch", "there is a 1/n too many"],
    ),
    (
        "db1",
        lambda s: wrong(s, "b1", lambda d, a: d.view(-1, 1)),
        [
            "wrong shape: (200, 1), but `b1` has shape (200,)",
            "extra size-1 dimension 1",
            "crashes or silently broadcasts",
        ],
    ),
    (
        "dbnbias",
        # (a (200,) dbnbias is the same numbers: one shape rule, a leading size-1 dimension aside)
        lambda s: wrong(s, "bnbias", lambda d, a: d.view(-1, 1)),
        ["wrong shape: (200, 1), but `bnbias` has shape (1, 200)", "it is transposed"],
    ),
    ("dW2", lambda s: wrong(s, "W2", lambda d, a: d.T.contiguous()), ["it is transposed"]),
    ("dW1", lambda s: wrong(s, "W1", lambda d, a: -d), ["constant factor -1", "the sign is flipped"]),
    (
        "dC",
        lambda s: dC_indexed_plus_equals,
        ["only the rows of characters that occur more than once in Xb are wrong", "dC[Xb] += demb", "index_add_"],
    ),
    (
        "db2",
        lambda s: hard_coded_vocab,
        [
            "raised RuntimeError",
            "on a new network (batch 7",
            "the number 27 (the vocabulary size)",
            "is right on the training network's first batch",
        ],
    ),
    (
        "dbngain",
        lambda s: returns_six,
        ["must return the seven gradients dC, dW1, db1, dW2, db2, dbngain, dbnbias", "a tuple of 6 values"],
    ),
    ("dW2", lambda s: returns_in_lecture_order_of_backward, ["It is the gradient of W1", "in this order"]),
    ("dC", lambda s: calls_backward, ["under torch.no_grad(), on tensors that never saw backward()"]),
    (
        "dW1",
        lambda s: lecture_with(*SKIPS_BATCHNORM),
        [
            "computed with dhpreact where dhprebn belongs: it skips the BatchNorm layer between them (bnmeani,",
            "It is the first wrong one of",
        ],
    ),
    (
        "dbngain",
        lambda s: lecture_with(*TANH_PARENTHESIS),
        ["dhpreact (the tanh step) is wrong", "the term 1 of the local derivative is not multiplied by dh"],
    ),
    (
        "dW2",
        lambda s: lecture_with(*SOFTMAX_OVER_THE_BATCH),
        ["dlogits (the cross-entropy step) is wrong", "the softmax over dim 0 (the 32 examples of the batch)"],
    ),
]


@pytest.mark.parametrize("name, make, texts", HINTS, ids=[f"{h[0]}-{i}" for i, h in enumerate(HINTS)])
def test_hint(name, make, texts, solution):
    fn = make(solution)
    with pytest.raises(AssertionError) as info:
        training.verify(name, fn)
    for text in texts:
        assert text in str(info.value), str(info.value)
    for other in PARAM_NAMES:  # the other gradients pass, unless the mistake is in what they all share
        if f"d{other}" != name and fn not in (
            returns_six,
            calls_backward,
            returns_in_lecture_order_of_backward,
            hard_coded_vocab,
        ):
            training.verify(other, fn)


def test_a_stub_is_named(solution):
    def manual_backward(*args):
        raise NotImplementedError()

    with pytest.raises(AssertionError, match=r"manual_backward still raises NotImplementedError\(\) \(the stub\)"):
        training.verify("C", manual_backward)


def test_code_that_used_autograd_is_named(monkeypatch):
    history = [
        "import torch",
        "def manual_backward(logits, Yb, h, W2, bnraw, bngain, bnvar_inv, embcat, W1, Xb, C):\n"
        "    with torch.enable_grad():\n        x = logits.detach().requires_grad_()\n"
        "    return x.grad",
    ]
    monkeypatch.setattr(integrity, "kernel_history", lambda: history)
    with pytest.raises(AssertionError, match="manual_backward comes from autograd"):
        training.verify("C", _solution())


def test_the_table_before_training_never_raises(solution, capsys):
    training.check_first_batch(solution)
    out = capsys.readouterr().out
    assert out.count("| approximate: True  |") == 7 and out.rstrip().endswith("7 of 7 gradients pass")
    training.check_first_batch(wrong(solution, "b2", lambda d, a: d * 2))
    out = capsys.readouterr().out
    assert "6 of 7 gradients pass" in out and "it is twice the expected gradient" in out
    training.check_first_batch(returns_six)
    assert "must return the seven gradients" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# The trained model


def test_the_judge_fails_an_untrained_network_and_says_why():
    verdict = training.judge_model(training.initial_parameters())
    assert not verdict.ok and "still their initial values" in verdict.message


@pytest.mark.slow  # a 300-step training run
def test_the_judge_recomputes_the_losses_from_the_parameters():
    params = calibration.train(steps=300)
    losses = training.split_losses(params)
    assert 2.4 < losses["train"] < 3.0  # 300 steps: learning, far from done
    verdict = training.judge_model(params)
    assert (
        not verdict.ok
        and f"train loss {losses['train']:.4f} (limit {training.GRADING_LIMITS['train']})" in verdict.message
    )
    # the judge follows the parameters, not anything the notebook printed: change one, the loss moves
    shifted = [p.clone() for p in params]
    shifted[4] += 5 * F.one_hot(torch.tensor(0), 27)  # b2: a strong bias towards '.'
    assert training.split_losses(shifted)["train"] > losses["train"] + 0.5


def test_the_judge_fails_a_diverged_network():
    nan = [p.clone() for p in training.initial_parameters()]
    nan[1][0, 0] = float("nan")
    verdict = training.judge_model(nan)
    assert not verdict.ok and "contain NaN or inf: training diverged" in verdict.message and "W1" in verdict.message
    blown = [p * 40 for p in training.initial_parameters()]
    verdict = training.judge_model(blown)
    assert not verdict.ok and "worse than the untrained network" in verdict.message


def test_the_judge_checks_shapes_and_the_list():
    params = training.initial_parameters()
    params[2] = params[2].view(1, -1)
    assert "b1 has shape (1, 200), but the network's b1 has shape (200,)" in training.judge_model(params).message
    assert "parameters must be the list [C, W1, b1, W2, b2, bngain, bnbias]" in training.judge_model(params[:6]).message


@pytest.mark.slow  # each trains the notebook's 5,000 steps
@pytest.mark.parametrize("s", STUDENTS, ids=[s.id for s in STUDENTS])
def test_each_demo_student_loses_exactly_its_cells(s, monkeypatch):
    """Run the student's notebook in this process (grading mode), then every test cell, as autograde does."""
    import nbformat
    from notebook_code import SOURCE

    monkeypatch.setenv("MPLBACKEND", "Agg")
    try:
        ns = run_cells(NOTEBOOK, s.edits)
    except Exception:  # the training cell of some students crashes: run again, skipping failing cells
        ns = _run_tolerant(s.edits)
    results = {}
    nb = nbformat.read(SOURCE / f"{NOTEBOOK}.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade"):
            try:
                exec(compile(cell.source, cell.metadata.nbgrader.grade_id, "exec"), ns)
                results[cell.metadata.nbgrader.grade_id] = None
            except AssertionError as exc:
                results[cell.metadata.nbgrader.grade_id] = str(exc)
    assert {k for k, v in results.items() if v} == set(s.loses)
    for cell, hint in s.loses.items():
        assert hint in results[cell], results[cell]


def _run_tolerant(edits):
    import nbformat
    from notebook_code import SOURCE

    nb = nbformat.read(SOURCE / f"{NOTEBOOK}.ipynb", as_version=4)
    for edit in edits:
        course.apply_edit(nb, edit, nbformat.read(SOURCE / f"{NOTEBOOK}.ipynb", as_version=4))
    ns: dict = {"__name__": "__main__"}
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type != "code" or meta.get("grade"):
            continue
        try:
            exec(compile_cell(course.SOLUTION_MARKERS.sub("", cell.source), meta.get("grade_id", "cell")), ns)
        except Exception:
            pass  # as autograde goes on after an error
    return ns


# ---------------------------------------------------------------------------------------------
# No stderr


@pytest.mark.slow  # a kernel runs the whole notebook
def test_the_notebook_writes_nothing_on_stderr_in_a_kernel(tmp_path):
    """The solution, run by a real kernel in grading mode: the progress bar and everything else on stdout."""
    import nbformat
    from nbclient import NotebookClient
    from notebook_code import SOURCE

    nb = nbformat.read(SOURCE / f"{NOTEBOOK}.ipynb", as_version=4)
    assert os.environ["BACKPROP_NINJA_GRADING"] == "1"  # the kernel inherits it (root conftest.py)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    streams = [
        (c.id, o.name) for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "stream"
    ]
    assert ("train", "stdout") in streams and not [s for s in streams if s[1] == "stderr"]
    train = "".join(o.text for c in nb.cells if c.id == "train" for o in c.outputs if o.output_type == "stream")
    assert f"{training.GRADING_STEPS}/{training.GRADING_STEPS}" in train and "loss=" in train


def test_a_leading_size_one_dimension_passes_with_the_note_that_the_update_needs_the_shape(solution):
    """One shape rule for every exercise: (1, 200) for b1 (200,) holds the same numbers and passes; the note
    says the in-place update needs b1's own shape (the training loop would crash on it, not the check)."""
    fn = wrong(solution, "b1", lambda d, a: d.view(1, -1))
    training.verify("db1", fn)  # silent: it passes on every network
    verdict = training.judge("b1", fn, training.first_batch(), "on the first batch")
    assert verdict.ok and "in-place update" in verdict.row("db1"), verdict.row("db1")
