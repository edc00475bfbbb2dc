"""A picture of the backward graph: where a wrong gradient entered, and how far it travelled.

The forward pass of Exercise 1 (``grader.model``'s ops) drawn as the lecture's graphs are drawn
(micrograd's ``draw_dot``): every tensor a node, every op a small marker on the edges into its
output, the loss at the top and ``C`` at the bottom, in the lecture's order. Each node is coloured
by its gradient's verdict, and the first wrong gradient on each path from the loss gets a thick
border: that is where the mistake entered; what lies below it in the "right step, wrong upstream"
colour is what it spoiled.

It is long because one picture's rules live together: the node positions, the verdict colours and the
drawing of both Exercise 1's graph and Exercise 4's smaller one. Two halves, kept apart so the first can
be tested without drawing:

* ``status`` / ``styles``: pure functions from verdicts to each node's colour and border;
* ``draw`` / ``png`` / ``show``: matplotlib (no system binary, no graphviz), a fixed layout computed
  from the lecture's order (``layout``), so the same verdicts always give the same picture.

``grader.atomic.check_stage`` and ``table`` show it (``grader.atomic.statuses``), and so does
``grader.training.check_first_batch``
(for the seven parameters: Exercise 4 returns no intermediate gradient to judge). It is shown only
in an IPython kernel (JupyterLab, nbgrader, nbval, the answer keys), never printed as text, so the
text table stays byte for byte what it was; under nbgrader it is drawn too, since the feedback page
is made from the autograded notebook. It takes well under 0.3 s (``tests/test_graph.py`` measures).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from .ipython import in_kernel
from .model import ORDER, PARAM_NAMES

# ---------------------------------------------------------------------------------------------
# The graph: Exercise 1's forward pass, from grader.model's ops (the names only; no tensor needed)

LOSS = "loss"

# What each op does, shown on its marker (keyed by the op's output, as in grader.model.forward_ops)
OP_LABELS = {
    "emb": "C[Xb]",
    "embcat": "view",
    "hprebn": "@ +",
    "bnmeani": "mean",
    "bndiff": "−",
    "bndiff2": "**2",
    "bnvar": "sum/(n−1)",
    "bnvar_inv": "(+ε)**−½",
    "bnraw": "*",
    "hpreact": "* +",
    "h": "tanh",
    "logits": "@ +",
    "logit_maxes": "max",
    "norm_logits": "−",
    "counts": "exp",
    "counts_sum": "sum",
    "counts_sum_inv": "**−1",
    "probs": "*",
    "logprobs": "log",
    "loss": "−mean[Yb]",
}


def _edges() -> tuple[tuple[str, tuple[str, ...]], ...]:
    """(output, inputs) of every op of the forward pass, in the lecture's forward order."""
    import inspect

    from . import model

    # the ops' input names only: the constants (n, Yb, Xb) are never called
    ops = [model.embedding_op(None), *model.forward_ops(32, None)]
    return tuple((op.out, tuple(inspect.signature(op.fn).parameters)) for op in ops)


EDGES = _edges()
CONSUMERS: dict[str, tuple[str, ...]] = {}
for _out, _inputs in EDGES:
    for _name in _inputs:
        CONSUMERS[_name] = CONSUMERS.get(_name, ()) + (_out,)


def order() -> tuple[str, ...]:
    """The lecture's order of Exercise 1's 26 tensors (``grader.model.ORDER``): loss first, then backwards."""
    return ORDER


# ---------------------------------------------------------------------------------------------
# Verdicts -> styles (pure)

RIGHT, CARRIED, WRONG, UNDEFINED, UNJUDGED = "right", "carried", "wrong", "undefined", "unjudged"

# fill colours: distinct in hue and in lightness (they read in grey too)
FILLS = {
    RIGHT: "#74c476",  # green
    CARRIED: "#fdd870",  # amber
    WRONG: "#e8453c",  # red
    UNDEFINED: "#d9d9d9",  # grey
    UNJUDGED: "#ffffff",  # white, dashed border
    LOSS: "#ffffff",
}
LEGEND = {
    RIGHT: "right",
    CARRIED: "right step, wrong upstream",
    WRONG: "wrong",
    UNDEFINED: "not defined yet",
    UNJUDGED: "not checked here",
}


@dataclass(frozen=True)
class NodeStyle:
    status: str  # one of RIGHT, CARRIED, WRONG, UNDEFINED, UNJUDGED, or "loss"
    fill: str
    edgecolor: str = "#333333"
    linewidth: float = 1.0
    linestyle: str = "-"
    first_wrong: bool = False  # the first wrong gradient on some path from the loss: where a mistake entered


def status(verdict) -> str:
    """A verdict of ``grader.atomic.judge`` (or None: not defined yet) as a node's status."""
    if verdict is None:
        return UNDEFINED
    if not verdict.ok:
        return WRONG
    return RIGHT if verdict.comparison.ok else CARRIED


def first_wrong(statuses: dict[str, str]) -> tuple[str, ...]:
    """The wrong tensors that some path from the loss reaches without passing another wrong one.

    That is where a mistake entered the backward pass; the wrong ones below them may only repeat it.
    """
    clean = {LOSS}  # reached from the loss through no wrong gradient
    firsts = []
    for name in order():  # the lecture's order: every tensor after all the tensors it flows into
        reached = any(c in clean for c in CONSUMERS.get(name, ()))
        if statuses.get(name) == WRONG:
            if reached:
                firsts.append(name)
        elif reached:
            clean.add(name)
    return tuple(firsts)


def styles(statuses: dict[str, str]) -> dict[str, NodeStyle]:
    """Each node's style from each tensor's status (a missing tensor: not defined yet); the loss is plain."""
    firsts = set(first_wrong(statuses))
    out = {LOSS: NodeStyle(LOSS, FILLS[LOSS])}
    for name in order():
        s = statuses.get(name, UNDEFINED)
        if name in firsts:
            out[name] = NodeStyle(s, FILLS[s], edgecolor="#000000", linewidth=3.5, first_wrong=True)
        elif s == UNJUDGED:
            out[name] = NodeStyle(s, FILLS[s], edgecolor="#888888", linestyle="--")
        else:
            out[name] = NodeStyle(s, FILLS[s])
    return out


def summary(statuses: dict[str, str]) -> str:
    """The picture's title: how many gradients are wrong and where the first mistakes are."""
    counts = {s: sum(1 for n in order() if statuses.get(n, UNDEFINED) == s) for s in LEGEND}
    judged = len(order()) - counts[UNJUDGED]
    parts = [f"{counts[RIGHT] + counts[CARRIED]} of {judged} right"]
    if counts[CARRIED]:
        parts[0] += f" ({counts[CARRIED]} from a wrong upstream)"
    if counts[WRONG]:
        parts.append(f"{counts[WRONG]} wrong, first at " + ", ".join(f"d{n}" for n in first_wrong(statuses)))
    if counts[UNDEFINED]:
        parts.append(f"{counts[UNDEFINED]} not defined yet")
    return "; ".join(parts)


# ---------------------------------------------------------------------------------------------
# Layout (fixed, from the lecture's order)

ROW = 0.40  # inches from one row to the next
LANE = 1.2  # data units from one lane to the next (a node is 1 unit wide)
BOX_W, BOX_H = 1.04, 0.56  # a node, in data units (x) and rows (y)
DPI = 80


def layout() -> dict[str, tuple[float, float]]:
    """(x, row) of every node: the loss at row 0, the rows in the lecture's order, going back to ``C``.

    The main chain (loss, logprobs, probs, counts, ..., emb, C) runs down the middle lane; an op's
    other inputs (counts_sum, logit_maxes, bnvar_inv, bnmeani, ...) take the lane to its right, in
    rows of their own, and the parameters of an op (W1 and b1, bngain and bnbias, W2 and b2) sit to
    its left, in the row of the main input. No spring layout: the same picture every time.
    """
    inputs = dict(EDGES)
    params = {p for p in PARAM_NAMES if p != "C"}  # C is the end of the chain (the only input of emb)
    rows = {LOSS: 0}
    for name in order():
        if name not in params:
            rows[name] = len(rows)
    pos = {LOSS: (0.0, 0.0)}
    main = LOSS
    while main in inputs:  # the main chain: from each op, its non-parameter input farthest from the loss
        ins = [k for k in inputs[main] if k not in params]
        nxt = max(ins, key=rows.__getitem__)
        for k in ins:
            if k != nxt:
                pos[k] = (LANE, float(rows[k]))
        for i, k in enumerate(k for k in inputs[main] if k in params):
            pos[k] = (-LANE * (i + 1), float(rows[nxt]))
        pos[nxt] = (0.0, float(rows[nxt]))
        main = nxt
    for name in order():  # the side chains (counts_sum from counts_sum_inv, bnvar from bnvar_inv, ...)
        if name not in pos:
            pos[name] = (LANE, float(rows[name]))
    return pos


def _size(pos) -> tuple[float, float, tuple[float, float, float, float]]:
    rows = max(y for _, y in pos.values()) + 1
    x0, x1 = -2 * LANE - 0.6, 4.1 * LANE  # lanes -2 .. 1, and the legend at the right
    y0, y1 = rows + 0.2, -1.6  # (inverted: the loss at the top) room for the title
    width = (x1 - x0) * 0.95
    return width, (y0 - y1) * ROW, (x0, x1, y0, y1)


# ---------------------------------------------------------------------------------------------
# Drawing


def draw(statuses: dict[str, str], title: str = ""):
    """The picture as a matplotlib Figure (not pyplot's: nothing is shown twice, nothing left open).

    Few artists, for speed: one collection for the boxes, one for the edges, one for the arrowheads.
    """
    from matplotlib.collections import LineCollection, PatchCollection
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyBboxPatch, Polygon, Rectangle

    from .plots import plt  # noqa: F401  (pyplot's first import builds the font cache, quietly)

    pos = layout()
    style = styles(statuses)
    width, height, (x0, x1, y0, y1) = _size(pos)
    fig = Figure(figsize=(width, height), dpi=DPI)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_axis_off()

    data = ax.transData  # every artist goes on the figure in data coordinates: no clipping, no autoscaling

    def text(x, y, s, **kw):
        fig.text(x, y, s, va="center", transform=data, **kw)

    def add(collection):
        collection.set_transform(data)
        fig.add_artist(collection)

    half_w, half_h = BOX_W / 2, BOX_H / 2
    lines, heads, markers = [], [], []
    for out, ins in EDGES:
        ox, oy = pos[out]
        mx, my = ox, oy + 0.53  # the op's marker, just below its output
        lines += [[(pos[k][0], pos[k][1] - half_h), (mx, my)] for k in ins]
        lines.append([(mx, my), (ox, oy + half_h + 0.1)])
        heads.append((ox, oy + half_h))
        w = 0.16 + 0.075 * len(OP_LABELS[out])
        markers.append(FancyBboxPatch((mx - w / 2, my - 0.13), w, 0.26, boxstyle="round,pad=0,rounding_size=0.08"))
        text(mx, my, OP_LABELS[out], ha="center", fontsize=7, color="#333333", zorder=5)
    add(LineCollection(lines, colors="#888888", linewidths=0.9, zorder=1))
    add(PatchCollection([Polygon([(x - 0.06, y + 0.11), (x + 0.06, y + 0.11), (x, y)]) for x, y in heads],
                        fc="#888888", lw=0, zorder=2))  # fmt: skip
    add(PatchCollection(markers, fc="#f4f4f4", ec="#999999", lw=0.6, zorder=4))

    patches = []
    for name, (x, y) in pos.items():
        patches.append(
            FancyBboxPatch((x - half_w, y - half_h), BOX_W, BOX_H, boxstyle="round,pad=0,rounding_size=0.12")
        )
        label = name if name == LOSS else f"d{name}"
        text(x, y, label, ha="center", fontsize=8.5, zorder=6, family="DejaVu Sans Mono",
             fontweight="bold" if style[name].status == WRONG else "normal")  # fmt: skip
    s = [style[name] for name in pos]
    add(
        PatchCollection(patches, fc=[t.fill for t in s], ec=[t.edgecolor for t in s], lw=[t.linewidth for t in s],
                        ls=[(0, (4, 2)) if t.linestyle == "--" else "solid" for t in s], zorder=3)
    )  # fmt: skip

    # the legend, drawn by hand at a fixed place
    used = [k for k in LEGEND if any(t.status == k for t in s)] or [RIGHT]
    lx, ly = 1.9 * LANE, 1.0
    text(lx - 0.1, ly - 0.8, "each node: its gradient", fontsize=8, color="#333333")
    keys, legend = used + ["first"], []
    for i, key in enumerate(keys):
        y = ly + i * 0.9
        legend.append(Rectangle((lx, y - 0.25), 0.45, 0.5))
        text(lx + 0.65, y, "first wrong on a path from\nthe loss: start there" if key == "first" else LEGEND[key],
             fontsize=8)  # fmt: skip
    fills = [FILLS[WRONG] if k == "first" else FILLS[k] for k in keys]
    add(
        PatchCollection(legend, fc=fills, ec=["#000000" if k == "first" else "#333333" for k in keys],
                        lw=[3.5 if k == "first" else 1.0 for k in keys],
                        ls=[(0, (4, 2)) if k == UNJUDGED else "solid" for k in keys], zorder=3)
    )  # fmt: skip
    text(x0 + 0.1, -1.0, title or summary(statuses), fontsize=9, ha="left", fontweight="bold")
    return fig


def png(statuses: dict[str, str], title: str = "") -> bytes:
    """The picture as PNG bytes: the same verdicts give the same bytes (no date, no version in it).

    In 64 colours (about 15 kB instead of 60: seven pictures go into every notebook and feedback page).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    fig = draw(statuses, title)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    rgb = Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba()).convert("RGB")
    buf = io.BytesIO()
    rgb.quantize(colors=64, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(buf, format="png")
    return buf.getvalue()


def image_size() -> tuple[int, int]:
    """The PNG's width and height in pixels (fixed: the layout does not depend on the verdicts)."""
    width, height, _ = _size(layout())
    return int(width * DPI), int(height * DPI)


def boxes() -> dict[str, tuple[int, int, int, int]]:
    """Each node's box in the PNG, in pixels from its top-left corner: (left, top, right, bottom)."""
    pos = layout()
    _, _, (x0, x1, y0, y1) = _size(pos)
    W, H = image_size()

    def px(x, y):
        return (x - x0) / (x1 - x0) * W, (y - y1) / (y0 - y1) * H

    out = {}
    for name, (x, y) in pos.items():
        left, top = px(x - BOX_W / 2, y - BOX_H / 2)
        right, bottom = px(x + BOX_W / 2, y + BOX_H / 2)
        out[name] = (round(left), round(top), round(right), round(bottom))
    return out


# ---------------------------------------------------------------------------------------------
# In the notebook

METADATA_KEY = "backprop_ninja/graph"  # marks the picture's output (grader.feedback_page finds it there)


def alt_text(statuses: dict[str, str], title: str = "") -> str:
    """The picture in words (its alt text): the title, and which gradients are wrong."""
    wrong = [f"d{n}" for n in order() if statuses.get(n) == WRONG]
    carried = [f"d{n}" for n in order() if statuses.get(n) == CARRIED]
    text = "The backward graph of the forward pass, each gradient coloured by its verdict. "
    text += f"{title or summary(statuses)}."
    if wrong:
        text += f" Wrong: {', '.join(wrong)}."
    if carried:
        text += f" Right step from a wrong upstream: {', '.join(carried)}."
    return text + " The table says the same in words."


def show(statuses: dict[str, str], title: str = "", exercise: str = "") -> bool:
    """Display the picture in this IPython kernel (an inline PNG); outside a kernel, do nothing.

    Never prints, never warns, never raises: the text table above it is the cell's output, unchanged,
    and a check that draws it still never raises (a picture that cannot be drawn is left out).
    """
    if not in_kernel():
        return False
    import logging
    import warnings

    from IPython.display import Image, display

    log = logging.getLogger("matplotlib")
    level = log.level
    try:
        log.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = png(statuses, title)
    except Exception:  # a picture is a courtesy: it must never cost a student a point
        return False
    finally:
        log.setLevel(level)
    metadata = {"image/png": {"alt": alt_text(statuses, title)}, METADATA_KEY: exercise or "graph"}
    display(Image(data=data, format="png"), metadata=metadata)
    return True


def exercise4(verdicts: dict) -> dict[str, str]:
    """Exercise 4: the seven parameters by their verdicts; the intermediates are not checked there."""
    return {name: (status_of_ok(verdicts[name]) if name in verdicts else UNJUDGED) for name in order()}


def status_of_ok(verdict) -> str:
    """A verdict with only ``ok`` (Exercise 4 compares with autograd alone): right or wrong."""
    return RIGHT if verdict.ok else WRONG


def show_exercise4(verdicts: dict) -> bool:
    """``check_first_batch``: the graph with the seven parameters coloured (manual_backward returns only those)."""
    if not in_kernel():
        return False
    statuses = exercise4(verdicts)
    right = sum(1 for k in verdicts if statuses[k] == RIGHT)
    title = f"manual_backward on the first batch: {right} of {len(verdicts)} parameter gradients right"
    wrong = [f"d{k}" for k in PARAM_NAMES if statuses.get(k) == WRONG]
    if wrong:
        title += "; wrong: " + ", ".join(wrong)
    return show(statuses, title, exercise="exercise4")
