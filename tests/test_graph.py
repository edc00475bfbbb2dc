"""The picture of the backward graph: verdicts to colours (pure), the fixed layout, and the drawing's cost."""

import io
import time

import pytest
from notebook_code import run_cells, student
from PIL import Image

from grader import atomic, graph, model, training
from grader.atomic import ORDER


@pytest.fixture(autouse=True)
def fresh_records():
    atomic.reset()
    yield
    atomic.reset()


def statuses_of(edits=()):
    """Every gradient's status after checking all 26 in the lecture's order, as the test cells do."""
    ns = run_cells(edits=edits)
    return {name: graph.status(atomic.judge(name, ns[f"d{name}"], ns, ns["__cells__"])) for name in ORDER}


def test_the_graph_is_the_models_forward_pass():
    ops = model.check_case().ops
    assert graph.EDGES == tuple((op.out, op.inputs) for op in ops)
    assert set(graph.OP_LABELS) == {op.out for op in ops}
    assert set(graph.layout()) == set(ORDER) | {"loss"}


def test_layout_is_fixed_and_in_the_lectures_order():
    pos = graph.layout()
    assert pos == graph.layout()
    assert pos["loss"] == (0.0, 0.0) and pos["C"][1] == max(y for _, y in pos.values())  # loss on top, C at the bottom
    assert len(set(pos.values())) == len(pos)  # no two nodes in one place
    for out, inputs in graph.EDGES:  # every op's inputs lie below its output
        assert all(pos[k][1] > pos[out][1] for k in inputs), out
    main = [n for n in ("loss", *ORDER) if pos[n][0] == 0]
    assert main == ["loss", "logprobs", "probs", "counts", "norm_logits", "logits", "h", "hpreact", "bnraw"] + [
        "bndiff",
        "hprebn",
        "embcat",
        "emb",
        "C",
    ]


def test_dcounts_not_accumulated_is_wrong_and_spoils_what_lies_below():
    statuses = statuses_of(student("dcounts-not-accumulated").edits)
    styles = graph.styles(statuses)
    assert styles["counts"].status == graph.WRONG and styles["counts"].first_wrong
    assert styles["counts"].linewidth > 2 * styles["probs"].linewidth  # the thick border
    for name in ("logprobs", "probs", "counts_sum_inv", "counts_sum"):  # above the mistake: right
        assert styles[name].status == graph.RIGHT and styles[name].fill == graph.FILLS[graph.RIGHT]
    for name in ("norm_logits", "logit_maxes", "logits", "h", "W2", "hpreact", "bnvar", "hprebn", "W1", "emb", "C"):
        assert styles[name].status == graph.CARRIED and styles[name].fill == graph.FILLS[graph.CARRIED], name
    assert styles["b1"].status == graph.RIGHT  # db1 is about 0 whatever comes from above ("useless because of BN")
    assert graph.first_wrong(statuses) == ("counts",)
    assert graph.summary(statuses) == "25 of 26 right (20 from a wrong upstream); 1 wrong, first at dcounts"


def test_the_solution_is_all_right_and_nothing_stands_out():
    styles = graph.styles(statuses_of())
    assert {s.status for name, s in styles.items() if name != "loss"} == {graph.RIGHT}
    assert not any(s.first_wrong for s in styles.values())


def test_first_wrong_on_each_path():
    right = dict.fromkeys(ORDER, graph.RIGHT)
    # a second, independent mistake below the first: both wrong, only the first stands out
    assert graph.first_wrong({**right, "counts": graph.WRONG, "bnvar": graph.WRONG}) == ("counts",)
    # two mistakes on different paths from the loss: both first on their own path
    assert graph.first_wrong({**right, "counts_sum": graph.WRONG, "norm_logits": graph.WRONG}) == (
        "counts_sum",
        "norm_logits",
    )
    # not defined yet is no mistake: the path goes on through it
    assert graph.first_wrong({**right, "probs": graph.UNDEFINED, "counts": graph.WRONG}) == ("counts",)


def test_missing_gradients_are_not_defined_yet():
    styles = graph.styles({"logprobs": graph.RIGHT})
    assert styles["logprobs"].status == graph.RIGHT
    assert all(styles[n].status == graph.UNDEFINED for n in ORDER[1:])


def test_exercise_4_colours_the_parameters_only():
    ok, bad = training.Verdict(True, None, "ok"), training.Verdict(False, None, "db2 is wrong")
    statuses = graph.exercise4({**dict.fromkeys(model.PARAM_NAMES, ok), "b2": bad})
    assert statuses["b2"] == graph.WRONG and statuses["W2"] == graph.RIGHT and statuses["C"] == graph.RIGHT
    assert all(statuses[n] == graph.UNJUDGED for n in ORDER if n not in model.PARAM_NAMES)
    assert graph.styles(statuses)["b2"].first_wrong


def _mode(image, box):
    left, top, right, bottom = box
    region = image.crop((left + 5, top + 4, right - 5, bottom - 4))  # inside the border
    return max(region.getcolors(1 << 16))[1]


def _hex(rgb):
    return "#{:02x}{:02x}{:02x}".format(*rgb[:3])


def nearest_fill(rgb):
    """The status whose fill is nearest to a pixel's colour (the PNG has 64 colours)."""
    return min(graph.LEGEND, key=lambda k: sum((a - b) ** 2 for a, b in zip(rgb, _rgb(graph.FILLS[k]), strict=True)))


def _rgb(hex_colour):
    return tuple(int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))


def test_the_picture_shows_each_node_in_its_colour_where_boxes_says():
    statuses = {**dict.fromkeys(ORDER, graph.CARRIED), "logprobs": graph.RIGHT, "counts": graph.WRONG}
    statuses["C"] = graph.UNDEFINED
    image = Image.open(io.BytesIO(graph.png(statuses))).convert("RGB")
    boxes = graph.boxes()
    assert image.size == graph.image_size()
    for name in ORDER:
        assert nearest_fill(_mode(image, boxes[name])) == statuses[name], name


def test_same_verdicts_same_picture_and_fast():
    statuses = statuses_of(student("dcounts-not-accumulated").edits)
    first = graph.png(statuses)
    cpu, wall = time.process_time(), time.perf_counter()
    again = graph.png(statuses)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    assert again == first
    assert first[:8] == b"\x89PNG\r\n\x1a\n" and len(first) < 40_000
    # the budget is 0.3 s a picture; CPU time, since the test machine's cores are shared (wall: {wall:.2f} s)
    assert cpu < 0.3, f"{cpu:.3f} s CPU (wall {wall:.3f} s)"


def test_outside_a_kernel_nothing_is_shown_or_printed(capsys):
    ns = run_cells()
    capsys.readouterr()
    atomic.table(ns)
    out = capsys.readouterr()
    assert out.err == "" and "<IPython" not in out.out and out.out.endswith("26 of 26 gradients pass\n")
    assert graph.show({}) is False
