"""The feedback page's head: what each graded cell checks, its score and its verdict, then the picture.

nbgrader's feedback page opens with a list of links called "Test cell", each with a score: a student
who lost one point must click through to learn which gradient. This module gives ``nbgrader
generate_feedback`` a head that reads at a glance, through nbgrader's own means only:

* ``FeedbackHead``, a preprocessor (it runs after ``GetGrades``, which puts each cell's score in its
  metadata), writes ``resources["backprop_ninja"]``: for every graded cell what it checks (the
  gradient, e.g. ``dcounts``, or the first line of its docstring, "Check that ..."), its score,
  and the one-line verdict or hint from its output; and the picture of the backward graph (the last
  output ``grader.graph`` marked), as a PNG to embed. It also rewrites the LaTeX of the markdown cells
  as HTML (``tex_to_html``), so the formulas read where the page cannot load MathJax (it loads nothing).
* the template ``grader/templates/backprop_ninja_feedback`` (nbgrader's ``feedback`` template with
  that head instead of the list of links, and without MathJax);
* ``SafeOutputs``, last: student code writes the outputs (a hook, a patched ``print``, a display call), so a
  locked graded cell shows its score from the gradebook and its hint, not what was printed into it, and
  every other output keeps only what cannot run in a browser (text, PNG, JPEG); the head's picture must be
  base64.

The course's ``nbgrader_config.py`` configures all three (``configure``), so plain ``nbgrader
generate_feedback`` and ``python -m grader autograde`` give the same page. ``ClearHiddenTests`` and
``ShortTracebacks`` stay in the list: hidden tests never reach the feedback.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

from nbconvert.preprocessors import Preprocessor
from nbformat import from_dict
from traitlets import Bool

TEMPLATES = Path(__file__).resolve().parent / "templates"
TEMPLATE = "backprop_ninja_feedback"
METADATA_KEY = "backprop_ninja/graph"  # grader.graph.METADATA_KEY (not imported: that module needs torch)
MAX_VERDICT = 400  # characters of a verdict in the head (the cell below shows it all)


# ---------------------------------------------------------------------------------------------
# Each graded cell, in one line

DOCSTRING = re.compile(r'^\s*(?:"""|\'\'\')\s*(.*?)\s*$', re.M)
GRADIENT = re.compile(r"^Check that (d\w+) is the gradient of the loss")


def what(source: str, grade_id: str) -> tuple[str, bool]:
    """What a test cell checks, and whether that is a gradient's name (shown as code)."""
    first = next((line.strip() for line in source.splitlines() if line.strip()), "")
    m = DOCSTRING.match(first)
    doc = m.group(1).rstrip("\"'").strip() if m else ""
    g = GRADIENT.match(doc)
    if g:
        return g.group(1), True
    return doc or grade_id, not doc


def _text(output) -> str:
    text = output.get("text", "")
    return "".join(text) if isinstance(text, list) else text


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def verdict(cell) -> str:
    """The one-line verdict or hint of a graded cell, from its outputs (an error's first line, else the last line)."""
    outputs = cell.get("outputs", [])
    for o in outputs:
        if o.get("output_type") == "error":
            evalue = (o.get("evalue") or "").strip().splitlines()
            return f"{o.get('ename', 'Error')}: {evalue[0]}" if evalue else o.get("ename", "Error")
    for o in outputs:
        if o.get("output_type") == "stream" and o.get("name") == "stderr":
            return f"it wrote to stderr (a test cell that does scores 0): {_last_line(_text(o))}"
    printed = "".join(_text(o) for o in outputs if o.get("output_type") == "stream")
    rows = [line for line in printed.splitlines() if " | " in line]
    if rows:  # the lecture's row, name | exact | approximate | maxdiff | verdict (a note may follow it)
        return rows[-1].rsplit(" | ", 1)[1].strip()
    return _last_line(printed)


def _short(text: str) -> str:
    return text if len(text) <= MAX_VERDICT else text[: MAX_VERDICT - 1].rstrip() + "…"


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def head_rows(nb) -> list[dict]:
    """One row per graded cell: grade_id, what it checks, score, points, passed, verdict."""
    rows = []
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if not meta.get("grade"):
            continue
        name, is_code = what(cell.source, meta.get("grade_id", ""))
        score, points = _number(meta.get("score")), _number(meta.get("points"))
        # nbgrader's rule: only a test cell (code, not an answer) is scored by the autograder; a written answer or a
        # code answer with points is scored by a person, and its outputs are no verdict
        by_hand = bool(meta.get("solution")) or cell.cell_type != "code"
        line = "graded by hand" if by_hand else verdict(cell)
        passed = points > 0 and score >= points
        if not line:
            line = "passed" if passed else "no output"
        rows.append(
            {
                "grade_id": meta.get("grade_id", ""),
                "what": name,
                "code": is_code,
                "score": score,
                "points": points,
                "passed": passed,
                "verdict": _short(line),
            }
        )
    return rows


def picture(nb) -> tuple[str | None, str]:
    """The last picture of the backward graph in the notebook (base64 PNG, or None) and its alt text."""
    found, alt = None, ""
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            if o.get("output_type") == "display_data" and METADATA_KEY in o.get("metadata", {}):
                data = o.get("data", {}).get("image/png")
                data = ("".join(data) if isinstance(data, list) else data or "").replace("\n", "")
                if BASE64.fullmatch(data):  # it goes into the page's <img src="data:...">: base64 only
                    found, alt = data, str(o["metadata"].get("image/png", {}).get("alt", ""))
    return found, alt


# ---------------------------------------------------------------------------------------------
# What a cell's outputs may show: student code wrote them (a hook, a patched print, a display call)

BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
SAFE_DATA = ("text/plain", "image/png", "image/jpeg")  # text is escaped, an image is an image: nothing runs
SAFE_METADATA = ("width", "height", "alt")
MAX_HINT = 2000  # characters of a locked graded cell's hint


def locked_text(cell) -> str:
    """What a locked graded cell shows in the feedback: its score, from nbgrader's gradebook (GetGrades put it
    in the cell's metadata, student code cannot), then its hint: the error's message, else the lecture's row."""
    meta = cell.metadata.get("nbgrader", {})
    score, points = _number(meta.get("score")), _number(meta.get("points"))
    # no "passed" or "failed": a cell held for manual grading also scores 0 until a person grades it
    lines = [f"score: {score:g} / {points:g} point{'s' if points != 1 else ''}"]
    errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    if errors:
        hint = f"{errors[0].get('ename', 'Error')}: {errors[0].get('evalue', '')}".strip()
    else:
        printed = "".join(_text(o) for o in cell.get("outputs", []) if o.get("output_type") == "stream")
        hint = "\n".join(line for line in printed.splitlines() if " | " in line) or verdict(cell)
    if hint:
        lines.append(hint if len(hint) <= MAX_HINT else hint[: MAX_HINT - 1] + "…")
    return "\n".join(lines) + "\n"


def safe_output(o):
    """``o`` with only what cannot run in a browser (``SAFE_DATA``, an image's size and alt text), or None."""
    kind = o.get("output_type")
    if kind in ("stream", "error"):
        return o
    data = {}
    for mime in SAFE_DATA:
        value = o.get("data", {}).get(mime)
        value = "".join(value) if isinstance(value, list) else value
        if isinstance(value, str) and (mime == "text/plain" or BASE64.fullmatch(value.replace("\n", ""))):
            data[mime] = value
    if not data:
        return None
    meta = {m: {k: v for k, v in o.get("metadata", {}).get(m, {}).items() if k in SAFE_METADATA} for m in data}
    out = {"output_type": kind, "data": data, "metadata": {m: v for m, v in meta.items() if v}}
    if kind == "execute_result":
        out["execution_count"] = o.get("execution_count")
    return from_dict(out)


class SafeOutputs(Preprocessor):
    """Last (after FeedbackHead has read the verdicts): a locked graded cell shows its score and hint
    (``locked_text``), not what the kernel printed into it; every other output keeps only ``safe_output``."""

    enabled = Bool(True)

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code":
            return cell, resources
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade") and meta.get("locked") and not meta.get("solution"):
            cell.outputs = [from_dict({"output_type": "stream", "name": "stdout", "text": locked_text(cell)})]
        else:
            cell.outputs = [safe for o in cell.outputs if (safe := safe_output(o)) is not None]
        return cell, resources


# ---------------------------------------------------------------------------------------------
# Formulas that read without MathJax

SYMBOLS = {
    "mu": "μ",
    "sigma": "σ",
    "epsilon": "ε",
    "gamma": "γ",
    "beta": "β",
    "ell": "ℓ",
    "partial": "∂",
    "sum": "∑",
    "dots": "…",
    "cdot": "·",
    "pm": "±",
    "ne": "≠",
    "|": "‖",
    ",": "\u2009",
    ";": " ",
    "quad": "\u2003",
    "qquad": "\u2003\u2003",
    "tanh": "tanh",
    "log": "log",
    "exp": "exp",
    "left": "",
    "right": "",
    "Big": "",
    "big": "",
}
FRACTIONS = ("frac", "dfrac", "tfrac")
PLAIN_GROUPS = ("text", "mathrm", "operatorname")
TOKEN = re.compile(r"\\([A-Za-z]+|.)|([{}^_])|(\s+)|(.)", re.S)


class _Tex:
    def __init__(self, tex: str):
        self.tokens = [m.groups() for m in TOKEN.finditer(tex)]
        self.i = 0

    def _peek(self):
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def _atom(self) -> str:
        """One argument: a {group}, a command, or one character."""
        tok = self._peek()
        if tok is None:
            return ""
        self.i += 1
        cmd, special, space, char = tok
        if special == "{":
            return self._until("}")
        if cmd is not None:
            return self._command(cmd)
        if space is not None:
            return " "
        return html.escape(char or special)

    def _command(self, cmd: str) -> str:
        while cmd.isalpha() and (tok := self._peek()) is not None and tok[2] is not None:
            self.i += 1  # as in TeX: the spaces after a command's name are not text
        if cmd in FRACTIONS:
            top, bottom = self._atom(), self._atom()
            return f"{_wrap(top)}/{_wrap(bottom)}"
        if cmd == "sqrt":
            return "√" + _wrap(self._atom())
        if cmd == "hat":
            return self._atom() + "\u0302"
        if cmd in PLAIN_GROUPS:
            return self._atom()
        if cmd == "mathbb":
            return {"1": "𝟙", "R": "ℝ"}.get(self._atom(), "")
        return SYMBOLS.get(cmd, "\\" + html.escape(cmd))

    def _until(self, end: str | None) -> str:
        out = []
        while (tok := self._peek()) is not None:
            if end is not None and tok[1] == end:
                self.i += 1
                break
            if tok[1] in ("^", "_"):
                self.i += 1
                tag = "sup" if tok[1] == "^" else "sub"
                out.append(f"<{tag}>{self._atom()}</{tag}>")
            else:
                out.append(self._atom())
        return "".join(out)

    def html(self) -> str:
        return self._until(None)


def _wrap(text: str) -> str:
    """A fraction's part in parentheses unless it is one symbol (or already in parentheses)."""
    plain = re.sub(r"<[^>]+>", "", text)
    if len(plain.strip()) <= 1 or re.fullmatch(r"[\w.]+|\(.*\)", plain.strip()):
        return text
    return f"({text})"


def tex_to_html(tex: str) -> str:
    """The LaTeX of the course's formulas (fractions, powers, indices, Greek letters, ...) as plain HTML."""
    return _Tex(tex.strip()).html()


MATH = re.compile(r"(`+)(?:.|\n)*?\1|\$\$(.+?)\$\$|\$([^$]+?)\$", re.S)  # inline math may span lines


def math_to_html(markdown: str) -> str:
    """Markdown with every ``$...$`` and ``$$...$$`` outside code spans written as HTML, to read unrendered."""

    def replace(m):
        if m.group(1):  # a code span: left as it is
            return m.group(0)
        if m.group(2) is not None:
            return f'\n\n<div class="math display">{tex_to_html(m.group(2))}</div>\n\n'
        return f'<span class="math">{tex_to_html(m.group(3))}</span>'

    parts = re.split(r"(^```.*?^```[ \t]*$)", markdown, flags=re.M | re.S)  # fenced code blocks: untouched
    return "".join(p if p.startswith("```") else MATH.sub(replace, p) for p in parts)


# ---------------------------------------------------------------------------------------------
# nbgrader's side


class FeedbackHead(Preprocessor):
    """After GetGrades: the head's rows and picture into ``resources["backprop_ninja"]``; formulas as HTML."""

    enabled = Bool(True)  # nbconvert registers a preprocessor only when it is enabled

    def preprocess(self, nb, resources):
        for cell in nb.cells:
            if cell.cell_type == "markdown" and "$" in cell.source:
                cell.source = math_to_html(cell.source)
        data, alt = picture(nb)
        resources["backprop_ninja"] = {"cells": head_rows(nb), "picture": data, "alt": alt}
        return nb, resources


def feedback_preprocessors() -> list:
    """``GenerateFeedback.preprocessors``, for plain nbgrader and the class command alike: the tests' visible
    part, the hints and pass/fail, never the hidden tests' source nor a traceback that quotes it; then the head."""
    from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
    from nbgrader.preprocessors import ClearHiddenTests, GetGrades

    from .autograde.feedback import ShortTracebacks

    return [GetGrades, CSSHTMLHeaderPreprocessor, ShortTracebacks, ClearHiddenTests, FeedbackHead, SafeOutputs]


def configure(c) -> None:
    """Make ``nbgrader generate_feedback`` write this course's feedback page (called by nbgrader_config.py).

    The preprocessors are the class command's (``feedback_preprocessors``: nbgrader's
    grades and CSS, tracebacks of hidden tests cut, hidden tests cleared) and FeedbackHead; the template
    is nbgrader's feedback template with the new head. ``python -m grader autograde`` loads this config.
    """
    # the class command's list (grades, CSS, tracebacks cut, hidden tests cleared), which ends with FeedbackHead
    c.GenerateFeedback.preprocessors = feedback_preprocessors()
    c.GenerateFeedback.exporter_class = FeedbackExporter
    # a section of its own (it wins over the HTMLExporter section that nbgrader sets to its 'feedback')
    c.FeedbackExporter.template_name = TEMPLATE
    c.FeedbackExporter.extra_template_basedirs = [str(TEMPLATES), _nbgrader_templates()]
    # nbgrader's folder of templates itself, for `extends 'feedback/index.html.j2'`, and bootstrap's css
    c.FeedbackExporter.extra_template_paths = [_nbgrader_templates(), _bootstrap_css()]


def _nbgrader_templates() -> str:
    import nbgrader

    return str(Path(nbgrader.__file__).resolve().parent / "server_extensions" / "formgrader" / "templates")


def _bootstrap_css() -> str:
    return str(Path(_nbgrader_templates()).parent / "static" / "node_modules" / "bootstrap" / "dist" / "css")


try:
    from nbconvert.exporters import HTMLExporter
except ImportError:  # pragma: no cover
    HTMLExporter = object


class FeedbackExporter(HTMLExporter):
    """nbgrader's feedback exporter with this course's template (used by generate_feedback only).

    A class of its own, so that the template of the formgrader and of any other HTML export is untouched;
    ``configure`` sets its template.
    """
