"""grader/linewise.py: a function that raised, re-run one statement at a time."""

import torch
from notebook_code import compile_cell

from grader import linewise


def _fn(source: str, name: str = "f"):
    ns = {"torch": torch}
    exec(compile_cell(source, name), ns)
    return ns[name]


SOURCE = """def f(a, b):
    x = a.shape(0)
    y = x + 1
    z = a * 2
    w = z.sum()
    return y, z, w
"""


def test_a_crash_spoils_only_what_reads_it():
    run = linewise.run(_fn(SOURCE), [torch.ones(3), torch.zeros(3)])
    assert [(c.line, c.text) for c in run.crashes] == [(2, "x = a.shape(0)")]
    assert run.crashes[0].error == "TypeError: 'torch.Size' object is not callable"
    (y, y_crash), (z, z_crash), (w, w_crash) = run.returned
    assert y is None and y_crash is run.crashes[0]  # y = x + 1 never ran: it reads x
    assert torch.equal(z, torch.full((3,), 2.0)) and z_crash is None and float(w) == 6.0 and w_crash is None


def test_a_substitute_takes_the_place_of_a_crashed_value_when_it_is_next_read():
    run = linewise.run(
        _fn(SOURCE), [torch.ones(3), torch.zeros(3)], substitute=lambda name, ns: 41 if name == "x" else None
    )
    assert run.returned[0] == (42, None) and set(run.substituted) == {"x"}


def test_an_in_place_change_that_raises_spoils_its_tensor():
    source = """def g(a):
    d = a.clone()
    d[5] -= 1
    d /= 2
    e = a + 1
    return d, e
"""
    run = linewise.run(_fn(source, "g"), [torch.ones(3)])
    assert [c.line for c in run.crashes] == [3]
    assert run.returned[0][0] is None and run.returned[0][1] is run.crashes[0] and run.returned[1][1] is None


def test_what_it_cannot_run_alone_is_none():
    early = "def h(a):\n    if a.sum() > 0:\n        return a\n    return -a\n"
    assert linewise.run(_fn(early, "h"), [torch.ones(3)]) is None  # a return inside an if
    ns: dict = {}
    exec("def k(a):\n    return a\n", ns)  # noqa: S102 - no source kept
    assert linewise.run(ns["k"], [torch.ones(3)]) is None
