"""Each gradient judged by its own code (grader/owncode.py, grader/rerun.py): no correct form may fail.

The property: correct code, written in many forms (the lecture's lines, F.one_hot, einsum, index_add_,
a one-hot matmul, in-place +=, expand, fused formulas, split across cells or pasted whole into one),
passes every one of the 26 checks, on the check network and on networks of other seeds and shapes.
"""

import re

import nbformat
import pytest
import torch
from notebook_code import SOURCE, run_cells, student

from grader import atomic, owncode, rerun
from grader.instructor import course
from grader.model import random_case

LECTURE = course.solutions(nbformat.read(SOURCE / "01_atomic_backprop.ipynb", as_version=4))
ANSWERS = [g for g in LECTURE]  # the six answer cells, in order

# (find, replace) on the lecture's answer: another correct way to write a line or two
FORMS = {
    "one-hot dlogprobs": [
        (
            "dlogprobs = torch.zeros_like(logprobs)\ndlogprobs[range(n), Yb] = -1.0/n",
            "dlogprobs = -F.one_hot(Yb, num_classes=logprobs.shape[1]).float() / n",
        ),
    ],
    "divisions and expand": [
        ("dprobs = (1.0 / probs) * dlogprobs", "dprobs = dlogprobs / probs"),
        ("dcounts += torch.ones_like(counts) * dcounts_sum", "dcounts += dcounts_sum.expand_as(counts)"),
        ("dhprebn += 1.0/n * (torch.ones_like(hprebn) * dbnmeani)", "dhprebn += dbnmeani.expand(n, -1) / n"),
    ],
    "in-place accumulation": [
        ("dcounts = counts_sum_inv * dprobs", "dcounts = torch.zeros_like(counts)\ndcounts += counts_sum_inv * dprobs"),
        ("dhprebn = dbndiff.clone()", "dhprebn = torch.zeros_like(hprebn)\ndhprebn += dbndiff"),
    ],
    "einsum": [
        ("dh = dlogits @ W2.T", "dh = torch.einsum('bj,ij->bi', dlogits, W2)"),
        ("dW2 = h.T @ dlogits", "dW2 = torch.einsum('bi,bj->ij', h, dlogits)"),
        ("dW1 = embcat.T @ dhprebn", "dW1 = torch.einsum('bi,bj->ij', embcat, dhprebn)"),
        (
            "dcounts_sum_inv = (counts * dprobs).sum(1, keepdim=True)",
            "dcounts_sum_inv = torch.einsum('ij,ij->i', counts, dprobs).unsqueeze(1)",
        ),
    ],
    "scatter for the max": [
        (
            "dlogits += F.one_hot(logits.max(1).indices, num_classes=logits.shape[1]) * dlogit_maxes",
            "dlogits += torch.zeros_like(logits).scatter_(1, logits.argmax(1, keepdim=True), 1.0) * dlogit_maxes",
        ),
    ],
    "tanh recomputed": [
        ("dhpreact = (1.0 - h**2) * dh", "dhpreact = (1 - torch.tanh(hpreact) ** 2) * dh"),
    ],
    "index_add_": [
        (
            "for k in range(Xb.shape[0]):\n  for j in range(Xb.shape[1]):\n    ix = Xb[k,j]\n    dC[ix] += demb[k,j]",
            "dC.index_add_(0, Xb.view(-1), demb.view(-1, C.shape[1]))",
        ),
    ],
    "one-hot matmul": [
        (
            "dC = torch.zeros_like(C)\nfor k in range(Xb.shape[0]):\n  for j in range(Xb.shape[1]):\n    ix = Xb[k,j]\n"
            "    dC[ix] += demb[k,j]",
            "dC = F.one_hot(Xb.view(-1), num_classes=C.shape[0]).float().T @ demb.view(-1, C.shape[1])",
        ),
    ],
    "index_put_ accumulate, helper names": [
        (
            "dC = torch.zeros_like(C)\nfor k in range(Xb.shape[0]):\n  for j in range(Xb.shape[1]):\n    ix = Xb[k,j]\n"
            "    dC[ix] += demb[k,j]",
            "rows = demb.view(-1, C.shape[1])\n"
            "dC = torch.zeros_like(C).index_put_((Xb.view(-1),), rows, accumulate=True)",
        ),
        (
            "dbnvar = (-0.5*(bnvar + 1e-5)**-1.5) * dbnvar_inv",
            "local = -0.5 * (bnvar + 1e-5) ** -1.5\ndbnvar = local * dbnvar_inv",
        ),
    ],
    "fused cross-entropy and batchnorm": [
        (
            "dlogits = dnorm_logits.clone()\n",
            "dlogits = F.softmax(logits, 1)\ndlogits[range(n), Yb] -= 1\ndlogits /= n\n",
        ),
        ("dlogits += F.one_hot(logits.max(1).indices, num_classes=logits.shape[1]) * dlogit_maxes", ""),
        (
            "dhprebn = dbndiff.clone()\n",
            "dhprebn = bngain*bnvar_inv/n * (n*dhpreact - dhpreact.sum(0) - n/(n-1)*bnraw*(dhpreact*bnraw).sum(0))\n",
        ),
        ("dhprebn += 1.0/n * (torch.ones_like(hprebn) * dbnmeani)", ""),
    ],
    "dlogits with the max path inlined": [
        (
            "dlogits += F.one_hot(logits.max(1).indices, num_classes=logits.shape[1]) * dlogit_maxes",
            "dlogits += F.one_hot(logits.max(1).indices, num_classes=logits.shape[1])"
            " * (-dnorm_logits).sum(1, keepdim=True)",
        ),
    ],
    "zeros where the gradient is zero for every input": [
        ("dlogit_maxes = (-dnorm_logits).sum(1, keepdim=True)", "dlogit_maxes = torch.zeros_like(logit_maxes)"),
        ("db1 = dhprebn.sum(0)", "db1 = torch.zeros_like(b1)"),
    ],
}


def _cells(form: str | None) -> list[str]:
    cells = [LECTURE[g] for g in ANSWERS]
    for find, replace in FORMS.get(form, []):
        hits = [i for i, c in enumerate(cells) if find in c]
        assert hits, (form, find)
        cells[hits[0]] = cells[hits[0]].replace(find, replace)
    return cells


LAYOUTS = {
    "the lecture's cells": lambda cells: cells,
    "whole in the first cell, the others the stub": lambda cells: (
        ["\n".join(cells)] + ["# YOUR CODE HERE\nraise NotImplementedError()"] * 5
    ),
    "whole in the last cell, the others emptied": lambda cells: ["# define\n"] * 5 + ["\n".join(cells)],
    "one statement per cell": lambda cells: [s for c in cells for s in re.split(r"\n(?=\S)", c) if s.strip()],
}


def _judge_program(cells: list[str], case) -> dict:
    """Run ``cells`` on ``case``'s forward tensors, then judge every gradient as the test cells do."""
    ns = {"__name__": "__main__", "torch": torch, "F": torch.nn.functional, "n": case.n, "Xb": case.Xb, "Yb": case.Yb}
    ns.update({k: v.clone() for k, v in case.values.items()})
    setup = "import torch\nimport torch.nn.functional as F\n"
    history = [setup]
    for source in cells:
        history.append(source)
        try:
            exec(compile(source, "answer", "exec"), ns)
        except Exception as exc:  # noqa: BLE001 - the stubs
            rerun.record_crash(len(history) - 1, exc)
    return {
        name: atomic.judge(name, ns.get(f"d{name}", atomic.Missing(f"d{name}")), ns, history) for name in atomic.ORDER
    }


@pytest.fixture(params=["check network", "seed 1, 20 x 16", "seed 7, 48 x 24"])
def case(request, monkeypatch):
    if request.param == "check network":
        c = atomic.reference()
        case = type("C", (), {"n": c.n, "Xb": c.Xb, "Yb": c.Yb, "values": c.values})
    else:
        seed = int(request.param.split()[1].rstrip(","))
        batch, hidden = (int(x) for x in request.param.split(", ")[1].split(" x "))
        case = random_case(seed, batch_size=batch, n_hidden=hidden, n_embd=5)
        monkeypatch.setattr(atomic, "_reference", atomic.Reference(case))
    atomic.reset()
    yield case
    atomic.reset()


@pytest.mark.parametrize("form", [None, *FORMS])
def test_every_correct_form_passes_every_check(form, case):
    verdicts = _judge_program(_cells(form), case)
    assert {k: v.message for k, v in verdicts.items() if not v.ok} == {}


def test_the_lecture_s_code_is_judged_as_a_local_step_not_by_value_alone(case):
    cells = _cells(None)
    ns = {"n": case.n, "torch": torch, "F": torch.nn.functional}
    for name in atomic.ORDER:
        code = owncode.code_of(name, ["import torch\nimport torch.nn.functional as F\n", *cells], ns)
        assert code is not None and (code.gradients or name == "logprobs"), name
        if name != "logprobs":
            step = owncode.local_step(name, code, ns)
            assert step is not None and step.ok, (name, step)


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_every_layout_of_the_answer_passes(layout, case):
    verdicts = _judge_program(LAYOUTS[layout](_cells(None)), case)
    assert {k: v.message for k, v in verdicts.items() if not v.ok} == {}


def test_a_crash_costs_only_the_wrong_gradient_and_says_why():
    atomic.reset()
    ns = run_cells(edits=student("dbnraw-transposed-crashes").edits)
    assert "dbnvar_inv" not in ns
    verdicts = {n: atomic.judge(n, ns.get(f"d{n}", atomic.Missing(f"d{n}")), ns, ns["__cells__"]) for n in atomic.ORDER}
    assert [n for n, v in verdicts.items() if not v.ok] == ["bnraw"]
    assert verdicts["dbnvar_inv".removeprefix("d")].message.startswith(
        "ok: your code for dbnvar_inv is right; in your notebook it never ran because line 5 of the batchnorm cell "
        "raised RuntimeError: The size of tensor a (64) must match"
    )
    assert "line 2 of the first linear layer cell raised NameError" in verdicts["W1"].message


def test_the_rerun_does_not_touch_the_students_namespace():
    atomic.reset()
    ns = run_cells(edits=student("dbnraw-transposed-crashes").edits)
    before = {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in ns.items() if not k.startswith("__")}
    for name in atomic.ORDER:
        atomic.judge(name, ns.get(f"d{name}", atomic.Missing(f"d{name}")), ns, ns["__cells__"])
    after = {k: v for k, v in ns.items() if not k.startswith("__")}
    assert before.keys() == after.keys()
    for k, v in before.items():
        if isinstance(v, torch.Tensor):
            assert torch.equal(v, after[k]), k


def test_a_formula_right_only_because_the_gradient_is_zero_fails():
    atomic.reset()
    dropped = {
        "notebook": "01_atomic_backprop",
        "cell": "answer_cross_entropy",
        "find": "dlogits += F.one_hot(logits.max(1).indices, num_classes=logits.shape[1]) * dlogit_maxes",
        "replace": "",
    }
    ns = run_cells(edits=[dropped])
    v = atomic.judge("logits", ns["dlogits"], ns, ns["__cells__"])
    assert v.comparison.ok and not v.ok
    assert "although its value matches here" in v.message and "flows back from `norm_logits`" in v.message


def test_code_that_cannot_be_isolated_falls_back_to_the_value():
    atomic.reset()
    ns = run_cells()
    # dh computed through a helper function defined outside the cells the checker reads: judged by value
    v = atomic.judge("h", ns["dh"], ns, history=None)
    assert v.ok and v.message == "ok"
