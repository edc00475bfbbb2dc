"""grader.integrity: which names come from autograd, followed through the cells that ran."""

import pytest

from grader.integrity import analyse


def derived(*cells, barriers=()):
    return analyse(cells, barriers).derived


@pytest.mark.parametrize(
    "code, why",
    [
        ("dW2 = W2.grad", "reads .grad"),
        ("dW2 = W2.grad.clone()", "reads .grad"),
        ("dW2 = getattr(W2, 'grad')", "getattr(..., 'grad')"),
        ("dW2 = getattr(W2, 'gr' + 'ad')", "computed attribute name"),
        ("dW2 = torch.autograd.grad(loss, W2)[0]", "uses torch.autograd"),
        ("from torch.autograd import grad\ndW2 = grad(loss, W2)[0]", "imports torch.autograd"),
        ("import torch.func\ndW2 = torch.func.vjp(f, W2)[1](g)[0]", "uses torch.func"),
        ("import torch.autograd as ag\ndW2 = ag.functional.vjp(f, W2, g)[1]", "imports torch.autograd"),
        ("dW2 = torch.func.grad(f)(W2)", "uses torch.func"),
        ("W = W2.clone().requires_grad_()\n(h @ W).sum().backward()\ndW2 = W.grad", "reads .grad"),
        ("W = W2.clone().requires_grad_()\ndW2 = W * 1", "switches on requires_grad"),
        ("W = torch.tensor(W2, requires_grad=True)\ndW2 = W * 1", "switches on requires_grad"),
        ("dW2 = eval('W2.g' + 'rad')", "runs code through eval()"),
        ("dW2 = W2._grad", "reads ._grad"),
    ],
)
def test_autograd_uses_are_found(code, why):
    found = derived(code)
    assert "dW2" in found and why in found["dW2"]


def test_values_flow_across_cells_and_through_helpers():
    found = derived("g = logits_.grad", "tmp = g * 1.0", "dlogits = tmp")
    assert "uses tmp" in found["dlogits"]


def test_in_place_updates_and_loops_carry_the_taint():
    found = derived("dC = torch.zeros_like(C)", "for k in range(3):\n    dC[k] += C_.grad[k]")
    assert "dC" in found
    found = derived("dC = torch.zeros_like(C)", "dC.index_add_(0, Xb.view(-1), E.grad.view(-1, 10))")
    assert "dC" in found


def test_with_enable_grad_marks_everything_inside():
    found = derived("with torch.enable_grad():\n    dh = dlogits @ W2.T")
    assert "dh" in found and "switches autograd on" in found["dh"]


def test_a_clean_reassignment_clears_a_name():
    assert derived("dW2 = W2.grad", "dW2 = h.T @ dlogits") == {}
    assert "dW2" in derived("dW2 = h.T @ dlogits", "dW2 += W2.grad")  # += keeps the old value


def test_hand_derived_code_is_clean():
    lecture = """
dlogprobs = torch.zeros_like(logprobs)
dlogprobs[range(n), Yb] = -1.0/n
dprobs = (1.0 / probs) * dlogprobs
dh = dlogits @ W2.T
dC = torch.zeros_like(C)
for k in range(Xb.shape[0]):
  for j in range(Xb.shape[1]):
    ix = Xb[k,j]
    dC[ix] += demb[k,j]
grad = dC  # a variable called grad is fine
"""
    assert derived(lecture) == {}


def test_barriers_stop_the_spread_between_answers():
    cells = ("dlogits = L.grad", "dh = dlogits @ W2.T")
    assert set(derived(*cells)) == {"dlogits", "dh"}
    assert set(derived(*cells, barriers=["dlogits", "dh"])) == {"dlogits"}


def test_broken_cells_are_skipped():
    assert derived("%timeit x = 1", "def (:", "dW2 = W2.grad").keys() == {"dW2"}


@pytest.mark.parametrize(
    "cell",
    [
        "time dW2 = W2.grad",  # a one-line cell: IPython's automagic runs it as %time
        "%time dW2 = W2.grad",
        "dW2 = %time W2.grad",
        "%%timeit -n1\nx = 1",  # options: not opened, and nothing flows
        "%%time\ndW2 = W2.grad",
    ],
)
def test_the_code_a_timing_magic_runs_is_followed_like_the_cells_own(cell):
    assert derived(cell).keys() == ({"dW2"} if "grad" in cell else set())


@pytest.mark.parametrize(
    "code",
    [
        "import grader\ngrader.atomic.verify = lambda *a: None",
        "import torch\ntorch.Tensor.__sub__ = None",
        "import torch.nn.functional as F\nF.cross_entropy = print",
        "from grader.atomic import _submitted",
        "from grader import atomic\ndel atomic.ORDER",
        "import torch\nx, torch.tanh = 1, torch.exp",
        "import torch\ntorch.nn.functional.__dict__['tanh'] = torch.exp",
    ],
)
def test_monkeypatching_is_found(code):
    assert analyse([code]).patches


def test_importing_torch_func_does_not_mark_torch_itself():
    assert derived("import torch.func", "dW2 = torch.zeros(3)") == {}


@pytest.mark.parametrize(
    "code",
    [
        "import torch\nx = torch.zeros(3)\nx[0] = 1\ncmp = print",
        # writing into a tensor indexed by torch expressions writes into the tensor, not into torch
        "import torch\nd = torch.zeros(4, 3)\nd[torch.arange(4), torch.tensor([0, 1, 2, 0])] = -1.0 / 4",
        "import torch\nd = torch.zeros(4)\nd[torch.arange(2)] += torch.ones(2)\nd[torch.tensor(1):] *= 2",
    ],
)
def test_ordinary_code_is_not_monkeypatching(code):
    assert analyse([code]).patches == []
