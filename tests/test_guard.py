"""grader.guard: the runtime half of the defence. A kernel that changed what the checks rely on (torch, the
grader's own functions and classes, the builtins) is refused by every hidden test, however the change was
spelled; the kernel's own swaps (input, get_ipython) and the grader's caches are not changes."""

import copy
from pathlib import Path

import nbformat
import pytest
import torch
from nbclient import NotebookClient

import grader.atomic
import grader.checks
from grader import guard
from grader.cells import without_solution_markers
from grader.instructor import course


@pytest.fixture
def fresh(monkeypatch):
    """A snapshot taken now (the test session may have patched and restored things before)."""
    monkeypatch.setattr(guard, "_records", {})
    monkeypatch.setattr(guard, "_bases", {})
    guard.snapshot()
    assert guard.changed() == []


def test_a_replaced_function_method_or_builtin_is_named(fresh, monkeypatch):
    monkeypatch.setattr(torch, "tanh", torch.exp)
    monkeypatch.setattr(grader.checks, "compare", print)
    monkeypatch.setattr(grader.atomic.Reference, "branches", print)
    monkeypatch.setattr("builtins.abs", lambda x: x)
    assert guard.changed() == [
        "builtins.abs",
        "grader.atomic.Reference.branches",
        "grader.checks.compare",
        "torch.tanh",
    ]


def test_a_method_put_over_a_base_class_s_and_a_deleted_name_are_named(fresh, monkeypatch):
    monkeypatch.setattr(torch.Tensor, "__sub__", torch.Tensor.__add__, raising=False)
    monkeypatch.delattr(torch, "cosh")
    assert guard.changed() == ["torch.Tensor.__sub__", "torch.cosh"]
    assert guard.changed() == ["torch.Tensor.__sub__", "torch.cosh"]  # still, at every later check


def test_what_the_grader_and_the_kernel_change_as_they_work_is_no_change(fresh, monkeypatch):
    monkeypatch.setattr(grader.atomic, "_reference", None)  # a cache
    monkeypatch.setattr("builtins.input", lambda *a: "")  # ipykernel forwards stdin around each cell
    monkeypatch.setattr(torch, "new_attribute_nobody_reads", 1, raising=False)
    assert guard.changed() == []


@pytest.mark.slow  # a kernel runs a notebook
def test_in_a_kernel_every_hidden_test_refuses_a_patched_torch_and_the_answers_still_pass(tmp_path):
    name = "02_fused_cross_entropy"
    src = nbformat.read(Path(course.REPO) / "source" / course.ASSIGNMENT / f"{name}.ipynb", as_version=4)

    def run(extra):
        nb = copy.deepcopy(src)
        for c in nb.cells:
            c.source = without_solution_markers(c.source) if c.cell_type == "code" else c.source
        if extra:
            answer = max(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("solution"))
            nb.cells.insert(answer + 1, nbformat.v4.new_code_cell(extra))
        client = NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=True)
        client.execute(cwd=str(tmp_path))
        graded = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")]
        return [[o.get("evalue", "") for o in c.outputs if o.output_type == "error"] for c in graded]

    assert all(errors == [] for errors in run(None))  # the solution in a kernel: nothing is a change
    # a route the static rules flag too; here it must be refused at run time, whatever the rules say
    patched = run("setattr(torch.Tensor, '__sub__', torch.Tensor.__add__)")
    assert patched and all(any("changed `torch.Tensor.__sub__`" in e for e in errors) for errors in patched), patched
