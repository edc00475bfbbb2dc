"""grader.model: the lecture's MLP, its forward pass as a graph of ops, and the cases built from it."""

import pytest
import torch

from grader.model import random_case


def test_path_gradient_with_nothing_held_is_autograds_gradient():
    case = random_case(11, batch_size=6, vocab_size=9, n_hidden=12)
    for name in ("logits", "h", "hprebn", "W1", "C"):
        assert torch.equal(case.path_gradient(name), case.grads[name]), name
    assert not case.path_gradient("hprebn", hold={"hpreact"}).any()  # every path goes through hpreact


def test_random_case_scales_the_logits_and_casts_the_network():
    case = random_case(3, batch_size=4, max_logit=50.0)
    assert case.values["logits"].abs().max().item() == pytest.approx(50.0, rel=1e-5)
    case = random_case(3, batch_size=4, dtype=torch.float64)
    assert all(v.dtype == torch.float64 for k, v in case.values.items() if v.is_floating_point())
    assert case.tensors("Yb", "logits")[0] is case.Yb
