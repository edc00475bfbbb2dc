"""Issue 23's measuring stick: every honest answer of tests/honest_corpus.py gets full marks, and none is held.

Two paths grade the corpus:

* in process (every variant): each notebook's code cells run in one IPython shell, as the kernel runs
  them under ``nbgrader autograde``: the test cells with their hidden tests (nbgrader puts them back),
  the kernel's input history and crash hook in place (the checkers read them), magics transformed by
  IPython itself. A test cell fails when it raises or writes to stderr (nbgrader scores either 0).
  The answer language (``grader.answers.check_notebook``, which decides what ``HoldForReview`` holds)
  must flag nothing. Two shortcuts keep it fast, both sound for grading: the cells before the first
  answer cell are locked and the same in every variant, so they run once per notebook and each variant
  starts from a copy of their namespace; and the locked cells that only show something and are not
  graded (``SHOW_ONLY``: Exercise 1's stage checks and table, the pictures, Exercise 4's evaluation
  and samples) do not run: no test cell reads what they leave (Exercise 1's test cells record every
  gradient again, upstream first, before error carried forward reads it; ``test_trained_model``
  judges the parameters).
* through plain ``nbgrader autograde`` (a deterministic sample, ``slow``): a fresh course, one student
  per sampled variant handing in only the notebook it changes, one autograde run for them all.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import io
import random
from dataclasses import dataclass, field

import pytest
import torch
from honest_corpus import NOTEBOOKS, Variant, corpus, source

from grader import answers, atomic, ipython, rerun
from grader.cells import grade_id, nbgrader_meta
from grader.instructor import course

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
SAMPLE_SIZE = {NOTEBOOKS[0]: 40, NOTEBOOKS[1]: 10, NOTEBOOKS[2]: 8, NOTEBOOKS[3]: 4}  # 62: Exercise 4 trains


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
        self.prefixes: dict[str, tuple] = {}

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
    for cell in code[len(prefix) :]:
        gid = grade_id(cell)
        if gid in SHOW_ONLY:
            continue
        error = kernel.run(tests.get(gid, cell.source))
        if gid in tests and error is not None:
            outcome.failures[gid] = error
    return outcome


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


@pytest.mark.parametrize("variant", CORPUS, ids=[v.id for v in CORPUS])
def test_an_honest_answer_passes_every_check_unflagged(kernel, variant):
    outcome = grade(kernel, variant)
    assert not outcome.failures and not outcome.flags, f"{variant.id} ({', '.join(variant.rules)}):\n{outcome}"


# ---------------------------------------------------------------------------------------------
# A sample through plain nbgrader autograde


def sample() -> list[Variant]:
    """A deterministic sample, per notebook, that takes each rule in first (then at random, seeded)."""
    rng = random.Random(23)
    chosen = []
    for notebook, size in SAMPLE_SIZE.items():
        pool = [v for v in CORPUS if v.notebook == notebook]
        picked: list[Variant] = []
        for rule in sorted({r for v in pool for r in v.rules}):
            if len(picked) < size and not any(rule in v.rules for v in picked):
                picked.append(rng.choice([v for v in pool if rule in v.rules and v not in picked]))
        rest = [v for v in pool if v not in picked]
        picked += rng.sample(rest, size - len(picked))
        chosen += picked
    return chosen


def submit(root, variant: Variant) -> None:
    """Write ``variant``'s notebook as its student's submission (the only notebook the student hands in)."""
    import nbformat

    out = root / "submitted" / variant.id / course.ASSIGNMENT
    out.mkdir(parents=True)
    nbformat.write(variant.notebook_node(), out / f"{variant.notebook}.ipynb")


@pytest.mark.slow
def test_a_sample_gets_full_marks_from_plain_nbgrader_autograde(tmp_path):
    from nbgrader.api import Gradebook

    chosen = sample()
    assert len(chosen) >= 60
    root = course.new_course(tmp_path / "course")
    course.generate_release(root)
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
