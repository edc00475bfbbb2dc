"""notebooks/nbval-sanitize.cfg: what one CPU prints and another prints sanitizes to the same text.

Strict nbval compares the answer keys' outputs as text after the sanitize file's substitutions. A
correct gradient matches autograd bit for bit on one CPU (maxdiff ``0``, ``exact: True``) and to
``6e-09`` on another; a loss moves in its 5th decimal with the vector unit or the thread count. These
tests render the keys' rows with such values, as the grader and the notebooks print them, apply the
sanitize file exactly as nbval does, and assert that the results are equal; and that what must stay
compared (``ok`` vs ``FAIL``, ``approximate: True`` vs ``False``, the hint) still differs.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from pathlib import Path

import nbformat
import pytest
import torch
from nbval.plugin import get_sanitize_patterns

from grader import atomic, checks

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "notebooks" / "nbval-sanitize.cfg"

# maxdiff and exact of a correct gradient on different CPUs and thread counts (measured: 0 to ~1e-8)
CPU_VALUES = [(True, 0.0), (False, 6e-09), (False, 1.3e-08), (False, 4.7e-10), (True, 0.0), (False, 1.9e-09)]


def sanitize(text: str, config: Path = CONFIG) -> str:
    """What nbval does with ``--nbval-sanitize-with``: each (regex, replace) pair in order (IPyNbCell.sanitize)."""
    patterns = OrderedDict(get_sanitize_patterns(config.read_text()))
    for regex, replace in patterns.items():
        text = re.sub(regex, replace, text)
    return text


def cmp_row(name: str, exact: bool, maxdiff: float, status: str = "ok", ok: bool = True) -> str:
    return checks.row(name, checks.Comparison(ok, exact, maxdiff, 1e-9), status)


def assert_all_equal(texts: list[str]) -> None:
    sanitized = {sanitize(t) for t in texts}
    assert len(sanitized) == 1, "\n---\n".join(sorted(sanitized))


def test_the_values_really_render_differently():
    """The rows below differ before sanitizing (in width too): otherwise the other tests prove nothing."""
    rows = [cmp_row("logits", exact, maxdiff) for exact, maxdiff in CPU_VALUES]
    assert len(set(rows)) >= 4
    assert len({len(r) for r in rows}) == 1  # the row pads maxdiff to a fixed width ...
    assert len({r.index("| ok") - r.index("maxdiff:") for r in rows}) == 1
    assert {len(m) for m in re.findall(r"maxdiff: (\S+)", "\n".join(rows))} == {1, 5, 7}  # ... of 1 to 7 characters


@pytest.mark.parametrize("name", ["logprobs", "hpreact", "bnmeani", "C", "W1"])
def test_cmp_rows_of_a_correct_gradient_sanitize_equal_on_every_cpu(name):
    assert_all_equal([cmp_row(name, exact, maxdiff) for exact, maxdiff in CPU_VALUES])


def test_a_cmp_row_with_a_note_sanitizes_equal():
    rows = [
        checks.row("bnmeani", checks.Comparison(True, e, m, 1e-9), "ok", "shape (64,) accepted") for e, m in CPU_VALUES
    ]
    assert_all_equal(rows)


def test_error_carried_forward_rows_sanitize_equal():
    message = "ok: this step is right; the difference comes from dcounts"
    assert_all_equal([cmp_row("counts_sum", e, m, message) for e, m in CPU_VALUES])


def test_a_stage_table_sanitizes_equal():
    """check_stage and table print several rows in one output: every row's padding is masked, not only the first."""
    tables = []
    for shift in range(len(CPU_VALUES)):
        values = CPU_VALUES[shift:] + CPU_VALUES[:shift]
        tables.append(
            "\n".join(cmp_row(n, e, m) for n, (e, m) in zip(atomic.STAGES["batchnorm"], values, strict=False)) + "\n"
        )
    assert_all_equal(tables)


def test_forward_comparisons_sanitize_equal():
    """The lecture's `print(loss_fast.item(), 'diff:', ...)`, `max diff: tensor(...)` and the largest row sum."""
    losses = [3.5571470260620117, 3.557147264480591, 3.5571570260620117]  # float32 neighbours, 5th decimal moved
    diffs = [0.0, -2.384185791015625e-07, 2.384185791015625e-07, -0.0]
    assert_all_equal([f"{loss} diff: {diff}\n" for loss in losses for diff in diffs])
    assert_all_equal([f"max diff: {torch.tensor(v)}\n" for v in (4.7684e-07, 0.0, 2.3842e-07, 9.5367e-07, 1.1921e-06)])
    assert_all_equal([f"largest row sum: {v}\n" for v in (5.587935447692871e-09, 0.0, 1.1175870895385742e-08)])
    assert_all_equal([f"{torch.tensor(v)}" for v in (3.5571470, 3.5571570, 3.557149)])  # `loss` as a cell's result


def test_training_lines_sanitize_equal():
    """Exercise 4: the losses after a run of either length, and the grader's judgement of them."""
    runs = [
        (2.0710818767547607, 2.111868143081665, "the full run: 200,000 steps", 2.09, 2.13),
        (2.3036112785339355, 2.304812431335449, "grading mode (CI=true): 5,000 steps", 2.35, 2.35),
        (2.0710918767547607, 2.111878143081665, "the full run: 200,000 steps", 2.09, 2.13),
    ]
    texts = []
    for train, val, mode, lt, lv in runs:
        texts.append(
            f"{mode}; the trained network must reach train loss <= {lt} and val loss <= {lv}\n"
            f"train {train}\nval {val}\n"
            f"  train {train:.4f}, val {val:.4f}\n"
            f"ok: train loss {train:.4f} (limit {lt}), val loss {val:.4f} (limit {lv})\n"
        )
    assert_all_equal(texts)


# ---------------------------------------------------------------------------------------------
# ... and what must still differ


@pytest.mark.parametrize(("exact", "maxdiff"), CPU_VALUES[:3])
def test_ok_and_fail_still_differ(exact, maxdiff):
    assert sanitize(cmp_row("dlogits", exact, maxdiff, "ok")) != sanitize(cmp_row("dlogits", exact, maxdiff, "FAIL"))


def test_approximate_true_and_false_still_differ():
    right = checks.row("probs", checks.Comparison(True, False, 6e-09, 1e-9), "FAIL")
    wrong = checks.row("probs", checks.Comparison(False, False, 6e-09, 1e-9), "FAIL")
    assert sanitize(right) != sanitize(wrong)


def test_another_hint_still_differs():
    base = cmp_row("bnvar", False, 1.3e-08, "FAIL", ok=False)
    one = base + ": dbnvar is wrong: it is off by a constant factor (n-1)/n"
    other = base + ": dbnvar is wrong: it is all zeros: nothing was written into it."
    assert sanitize(one) != sanitize(other)
    ecf = cmp_row("counts_sum", True, 0.0, "ok: this step is right; the difference comes from dcounts")
    assert sanitize(ecf) != sanitize(cmp_row("counts_sum", True, 0.0, "ok"))


def test_a_trained_model_that_fails_still_differs():
    ok = "ok: train loss 2.0711 (limit 2.09), val loss 2.1119 (limit 2.13)\n"
    assert sanitize(ok) != sanitize("FAIL\n")
    assert sanitize(ok) != sanitize(ok.replace("ok:", "the trained network is not good enough:"))


def test_a_loss_that_is_really_different_still_differs():
    """A loss off in its 2nd decimal (another forward pass) is not float32 rounding."""
    assert sanitize("3.5571470260620117 diff: 0.0\n") != sanitize("3.5971470260620117 diff: 0.0\n")
    assert sanitize(f"{torch.tensor(3.5571)}") != sanitize(f"{torch.tensor(3.5871)}")
    assert sanitize("max diff: tensor(4.7684e-07)\n") != sanitize("max diff: tensor(0.0312)\n")


# ---------------------------------------------------------------------------------------------
# The keys themselves


def _key_texts():
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for index, cell in enumerate(nbformat.read(path, as_version=4).cells):
            for output in cell.get("outputs", []):
                text = output.get("text") or output.get("data", {}).get("text/plain", "")
                if text:
                    yield f"{path.name} cell {index}", text


def test_no_cpu_dependent_number_survives_in_the_keys():
    """After sanitizing, no maxdiff digits, exact flag or float32 noise is left in any answer key's output."""
    left = []
    for where, text in _key_texts():
        clean = sanitize(text)
        for pattern in (r"maxdiff: \d", r"exact: (True|False)", r"\de-\d", r"\d\.\d{5}"):
            if re.search(pattern, clean):
                left.append(f"{where}: {pattern!r} in {clean[:200]!r}")
    assert not left, "\n".join(left)
