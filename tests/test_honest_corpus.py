"""Issue 23's measuring stick: every honest answer of tests/honest_corpus.py gets full marks, and none is held.

Two paths grade the corpus:

* in process (every variant), after checking that the variant is right by autograd on its own
  (``wrong_by_autograd``: the corpus must hold honest answers only): each notebook's code cells run in one
  IPython shell, as the kernel runs them under ``nbgrader autograde``: the test cells with their hidden
  tests (nbgrader puts them back), the kernel's input history and crash hook in place (the checkers read
  them), magics transformed by IPython itself. A test cell fails when it raises or writes to stderr
  (nbgrader scores either 0). The answer language (``grader.answers.check_notebook``, which decides what
  ``HoldForReview`` holds) must flag nothing. Two shortcuts keep it fast, both sound for grading: the cells
  before the first answer cell are locked and the same in every variant, so they run once per notebook and
  each variant starts from a copy of their namespace; and the locked cells that only show something and are
  not graded (``SHOW_ONLY``: Exercise 1's stage checks and table, the pictures, Exercise 4's evaluation and
  samples) do not run: no test cell reads what they leave (Exercise 1's test cells record every gradient
  again, upstream first, before error carried forward reads it; ``test_trained_model`` judges the
  parameters).
* through plain ``nbgrader autograde`` (a deterministic sample, ``slow``): a fresh course, one student
  per sampled variant handing in only the notebook it changes, one autograde run for them all.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import io
import sys
import warnings
from dataclasses import dataclass, field

import pytest
import torch
import torch.nn.functional as F
from classes import released_course
from honest_corpus import NOTEBOOKS, Variant, corpus, source

from grader import answers, atomic, ipython, rerun, training
from grader.cells import grade_id, nbgrader_meta
from grader.functions import Network
from grader.instructor import course
from grader.model import check_case

CORPUS = corpus()
# the locked cells that are not graded and that no test cell depends on (see the module's text)
SHOW_ONLY = {
    "check-cross-entropy",
    "check-second-linear-layer",
    "check-tanh",
    "check-batchnorm",
    "check-first-linear-layer",
    "check-embedding",
    "summary",
    "picture-cross-entropy",
    "loss-curve",
    "calibrate-batchnorm",
    "split-loss",
    "sample",
}


# ---------------------------------------------------------------------------------------------
# One in-process kernel


@dataclass
class Outcome:
    """What grading a variant found: each failing test cell with its error, and the answer language's flags."""

    failures: dict[str, str] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"{cell}: {error}" for cell, error in self.failures.items()]
        return "\n".join(lines + [f"held: {flag}" for flag in self.flags])


class Kernel:
    """An IPython shell in this process that runs cells as the notebook's kernel does."""

    def __init__(self) -> None:
        from IPython.core.interactiveshell import InteractiveShell
        from traitlets.config import Config

        config = Config()
        config.HistoryManager.enabled = False  # the input history is kept in memory only
        self.shell = InteractiveShell.instance(config=config)
        self.shell.InteractiveTB.set_mode("Plain")  # a failing cell's traceback, without the costly context
        rerun.install()  # the crash hook and the NameError hint, as `import grader` installs them in a kernel
        ipython.install()
        self.own = set(self.shell.user_ns)  # IPython's names (In, Out, get_ipython...)
        self.prefixes: dict[str, tuple] = {}  # by notebook: what its prefix left (see ``start``)
        self.memo: dict[str, object] = {}  # what a check computes once per kernel

    def run(self, text: str) -> str | None:
        """Run one cell; its error (or its stderr: nbgrader scores a test cell with any stderr 0), or None."""
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            result = self.shell.run_cell(text, store_history=True)
        error = result.error_before_exec or result.error_in_exec
        if error is not None:
            return f"{type(error).__name__}: {error}"
        if err.getvalue():
            return f"stderr: {err.getvalue().strip()[:300]}"
        return None

    def restart(self) -> None:
        history = self.shell.history_manager
        history.input_hist_raw[:] = [""]
        history.input_hist_parsed[:] = [""]
        self.shell.execution_count = 1
        for name in set(self.shell.user_ns) - self.own:
            del self.shell.user_ns[name]
        rerun.forget()
        atomic.reset()

    def start(self, notebook: str, prefix: list[str]) -> None:
        """A fresh kernel that has run ``prefix`` (the locked cells before the first answer cell): run them
        the first time, then restore a copy of what they left (namespace, input history, count)."""
        self.restart()
        if notebook not in self.prefixes:
            for text in prefix:
                assert self.run(text) is None, text
            names = {k: v for k, v in self.shell.user_ns.items() if k not in self.own}
            history = self.shell.history_manager
            self.prefixes[notebook] = (
                prefix,
                names,
                list(history.input_hist_raw),
                list(history.input_hist_parsed),
                self.shell.execution_count,
            )
            self.restart()
        saved, names, raw, parsed, count = self.prefixes[notebook]
        assert saved == prefix
        history = self.shell.history_manager
        history.input_hist_raw[:] = raw
        history.input_hist_parsed[:] = parsed
        self.shell.execution_count = count
        self.shell.user_ns.update(fork(names))

    def close(self) -> None:
        from IPython.core.interactiveshell import InteractiveShell

        self.restart()
        InteractiveShell.clear_instance()


def _to_stderr(message, category, filename, lineno, file=None, line=None) -> None:
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def fork(names: dict) -> dict:
    """A copy of a namespace in which the variant's code may change any tensor: tensors, generators and the
    containers that hold them are copied (aliases kept), modules, functions and other objects are shared."""
    memo = {id(v): v for v in names.values() if not isinstance(v, (torch.Tensor, torch.Generator, list, dict))}
    return copy.deepcopy(names, memo)


@functools.cache
def allowances(notebook: str) -> answers.Allowances:
    return answers.allowances(source(notebook))


def graded(nb) -> dict[str, str]:
    """The test cells as autograde runs them: the source's text, hidden tests included, by grade id."""
    return {grade_id(c): c.source for c in nb.cells if nbgrader_meta(c).get("grade")}


def prefix_of(nb) -> list[str]:
    """The code cells before the first answer cell (locked, the same in every variant)."""
    out = []
    for cell in nb.cells:
        if nbgrader_meta(cell).get("solution"):
            return out
        if cell.cell_type == "code":
            out.append(cell.source)
    return out


def grade(kernel: Kernel, variant: Variant) -> Outcome:
    """Grade ``variant`` in process, as autograde would (see the module's text)."""
    source_nb = source(variant.notebook)
    nb = variant.notebook_node()
    flags = answers.check_notebook(nb, source_nb, allowances(variant.notebook))
    outcome = Outcome(flags=[f"{f.label}: {'; '.join(f.reasons)}" for f in flags])
    tests = graded(source_nb)
    prefix = prefix_of(nb)
    assert prefix == prefix_of(source_nb), "a variant changed a locked cell before the answers"
    kernel.start(variant.notebook, prefix)
    code = [c for c in nb.cells if c.cell_type == "code"]
    with warnings.catch_warnings():
        # as in a fresh kernel: a warning shows once per place, on stderr (under pytest it would be recorded)
        warnings.simplefilter("default")
        warnings.showwarning = _to_stderr
        ipython.warnings_on_stdout()  # then what the setup cell's `import grader...` does in a kernel
        for cell in code[len(prefix) :]:
            gid = grade_id(cell)
            if gid in SHOW_ONLY:
                continue
            error = kernel.run(tests.get(gid, cell.source))
            if gid in tests and error is not None:
                outcome.failures[gid] = error
    return outcome


# ---------------------------------------------------------------------------------------------
# Is the variant right? Autograd on the notebook's own forward pass, never the grader's judges: a variant
# that fails here is a mistake of the corpus; one that passes here and fails the grader, of the grader.


def close(answer, truth: torch.Tensor) -> bool:
    """``answer`` is ``truth`` up to float rounding (size-1 dimensions aside, as Exercise 1 allows)."""
    if not isinstance(answer, torch.Tensor) or answer.squeeze().shape != truth.squeeze().shape:
        return False
    a, b = answer.detach().double().reshape(truth.shape), truth.double()
    return ((a - b).norm() / (a.norm() + b.norm() + 1e-30)).item() < 1e-5 or (a - b).abs().max().item() < 1e-7


@torch.enable_grad()
def lecture_gradients(names: dict) -> dict[str, torch.Tensor]:
    """Exercise 1: the lecture's own check, ``loss.backward()`` on its forward cell, every tensor retained
    (on a copy of ``names``, what the locked cells before the first answer cell left)."""
    ns = fork(names)
    for p in ns["parameters"]:
        p.requires_grad_()
    forward = next(c.source for c in source(NOTEBOOKS[0]).cells if grade_id(c) == "forward")
    exec(compile(forward, "forward", "exec"), ns)
    for name in atomic.ORDER:
        ns[name].retain_grad()
    ns["loss"].backward()
    return {name: ns[name].grad for name in atomic.ORDER}


@torch.enable_grad()
def cross_entropy_gradient(logits: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    logits = logits.detach().clone().requires_grad_()
    F.cross_entropy(logits, Y).backward()
    return logits.grad


@torch.enable_grad()
def batchnorm_gradient(case) -> torch.Tensor:
    v = case.values
    x = v["hprebn"].detach().clone().requires_grad_()
    out = v["bngain"] * (x - x.mean(0, keepdim=True)) / torch.sqrt(x.var(0, keepdim=True) + 1e-5) + v["bnbias"]
    out.backward(case.grads["hpreact"])
    return x.grad


@torch.enable_grad()
def training_gradients(case) -> list[torch.Tensor]:
    p = [case.values[k].detach().clone().requires_grad_() for k in ("C", "W1", "b1", "W2", "b2", "bngain", "bnbias")]
    C, W1, b1, W2, b2, bngain, bnbias = p
    hprebn = C[case.Xb].view(case.Xb.shape[0], -1) @ W1 + b1
    bnraw = (hprebn - hprebn.mean(0, keepdim=True)) / torch.sqrt(hprebn.var(0, keepdim=True) + 1e-5)
    F.cross_entropy(torch.tanh(bngain * bnraw + bnbias) @ W2 + b2, case.Yb).backward()
    return [t.grad for t in p]


# networks for the functions of Exercises 2 and 3: odd and tiny batches, other widths, float64, large logits
NETWORKS = {
    NOTEBOOKS[1]: [Network(31, batch_size=7, vocab_size=13), Network(32, batch_size=2, vocab_size=5)]
    + [Network(33, batch_size=9, max_logit=120.0)],
    NOTEBOOKS[2]: [Network(41, batch_size=7, n_hidden=20), Network(42, batch_size=2, dtype=torch.float64)],
}


@functools.cache
def networks(notebook: str) -> list:
    return [check_case()] + [net.case() for net in NETWORKS[notebook]]


def wrong_by_autograd(kernel: Kernel, variant: Variant) -> list[str]:
    """What the variant gets wrong by autograd (empty: it is right), read from the kernel it ran in; its
    functions are called under no_grad, as the grader calls them, the truth is computed with grad on."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the grading run has shown them already
        return _wrong_by_autograd(kernel, variant)


def _wrong_by_autograd(kernel: Kernel, variant: Variant) -> list[str]:
    ns, notebook = kernel.shell.user_ns, variant.notebook
    if notebook == NOTEBOOKS[0]:
        if "lecture" not in kernel.memo:
            kernel.memo["lecture"] = lecture_gradients(kernel.prefixes[notebook][1])
        truth = kernel.memo["lecture"]
        return [f"d{k}" for k, t in truth.items() if not close(ns.get(f"d{k}"), t)]
    with torch.no_grad():
        if notebook == NOTEBOOKS[1]:
            fn = ns["cross_entropy_backward"]
            cases = networks(notebook)
            return [
                f"batch {len(c.Yb)}"
                for c in cases
                if not close(
                    fn(c.values["logits"].clone(), c.Yb.clone()), cross_entropy_gradient(c.values["logits"], c.Yb)
                )
            ]
        if notebook == NOTEBOOKS[2]:
            fn = ns["batchnorm_backward"]
            wrong = []
            for c in networks(notebook):
                args = [c.grads["hpreact"], c.values["bnraw"], c.values["bngain"], c.values["bnvar_inv"]]
                out = fn(*[a.clone() for a in args])
                if not close(out, batchnorm_gradient(c)) or out.dtype != c.values["hprebn"].dtype:
                    wrong.append(f"batch {len(c.Yb)} {c.values['hprebn'].dtype}")
            return wrong
        case = training.first_batch()
        out = ns["manual_backward"](*training.EXERCISE.arguments(case))
        truth = training_gradients(case)
        return [
            f"d{k}"
            for k, o, t in zip(training.PARAM_NAMES, out, truth, strict=True)
            if o.shape != t.shape or not close(o, t)
        ]


@pytest.fixture(scope="module")
def kernel():
    k = Kernel()
    yield k
    k.close()


def test_the_corpus_is_large_and_covers_every_notebook():
    assert len(CORPUS) >= 500
    assert len({v.id for v in CORPUS}) == len(CORPUS)
    for notebook in NOTEBOOKS:
        assert sum(v.notebook == notebook for v in CORPUS) >= 10, notebook


# the issue's own examples: the sample always has the first variant whose rewrite holds each of them
EXAMPLES = (
    "dlogprobs[torch.arange(n), Yb] = -1.0/n",
    "1/torch.cosh(hpreact)**2",
    "\nprint(dC.shap)",
    "    dlogits = F.softmax(logits)\n",
)


def sample() -> list[Variant]:
    """A deterministic sample: the issue's examples, then the first variant of each notebook not yet in, then
    the fewest variants that bring in every rule of the corpus not yet in (greedy: most missing rules per
    cost first, an Exercise 4 variant costing a training run, the corpus's order breaking ties). So every
    rule and every notebook is graded by plain nbgrader at least once; the in-process path grades every
    variant, and this sample shows that path grades as nbgrader does."""
    picked = [next(v for v in CORPUS if any(text in e["replace"] for e in v.edits)) for text in EXAMPLES]
    seen = {v.notebook for v in picked}
    picked += [next(v for v in CORPUS if v.notebook == nb) for nb in NOTEBOOKS if nb not in seen]
    missing = {r for v in CORPUS for r in v.rules} - {r for v in picked for r in v.rules}
    while missing:
        best = max(CORPUS, key=lambda v: len(missing & set(v.rules)) / (4 if v.notebook == NOTEBOOKS[3] else 1))
        picked.append(best)
        missing -= set(best.rules)
    return picked


SAMPLE = sample()


# `make test-fast` grades the sample in process (a few seconds); `make test` every variant
@pytest.mark.parametrize(
    "variant", [pytest.param(v, marks=() if v in SAMPLE else pytest.mark.slow, id=v.id) for v in CORPUS]
)
def test_an_honest_answer_passes_every_check_unflagged(kernel, variant):
    outcome = grade(kernel, variant)
    assert wrong_by_autograd(kernel, variant) == [], "the corpus is wrong: this variant is not an honest answer"
    assert not outcome.failures and not outcome.flags, f"{variant.id} ({', '.join(variant.rules)}):\n{outcome}"


# ---------------------------------------------------------------------------------------------
# A sample through plain nbgrader autograde


def submit(root, variant: Variant) -> None:
    """Write ``variant``'s notebook as its student's submission (the only notebook the student hands in)."""
    import nbformat

    out = root / "submitted" / variant.id / course.ASSIGNMENT
    out.mkdir(parents=True)
    nbformat.write(variant.notebook_node(), out / f"{variant.notebook}.ipynb")


@pytest.mark.slow
def test_a_sample_gets_full_marks_from_plain_nbgrader_autograde(tmp_path):
    from nbgrader.api import Gradebook

    chosen = SAMPLE
    assert {r for v in CORPUS for r in v.rules} == {r for v in chosen for r in v.rules}  # every rule
    assert {v.notebook for v in chosen} == set(NOTEBOOKS)
    root = released_course(tmp_path / "course")
    for variant in chosen:
        submit(root, variant)
    course.nbgrader(root, "autograde", course.ASSIGNMENT)
    results = course.scores(root)
    problems = {}
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        for variant in chosen:
            cells = [c for c in results.get(variant.id, []) if c.notebook == variant.notebook]
            lost = [f"{c.cell} {c.score:g}/{c.max_score:g}" for c in cells if c.score < c.max_score]
            held = [c.cell for c in cells if c.needs_manual_grade]
            flagged = gb.find_submission_notebook(variant.notebook, course.ASSIGNMENT, variant.id).flagged
            if not cells or lost or held or flagged:
                problems[variant.id] = f"lost {lost}, held {held}, flagged {flagged}, {len(cells)} cells"
    assert not problems, "\n".join(f"{k}: {v}" for k, v in problems.items())
