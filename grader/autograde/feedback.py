"""What a student's feedback may show, and what the instructor is told about a graded notebook.

nbgrader's feedback shows the hidden tests' source (nbgrader #917, by design) and every output in
full. The scratch course's nbgrader_config (``grader.autograde.scratch``) therefore adds two
preprocessors to nbgrader's own:

- ``CapOutputs`` (last of ``Autograde``'s): every output cut to ``MAX_OUTPUT_CHARS`` characters
  (``LimitOutput`` counts lines, and one line can be 100 MB); the autograded notebook the instructor
  keeps is cut too;
- ``ShortTracebacks`` (``GenerateFeedback``'s, before ``ClearHiddenTests``): a failing test cell's
  traceback quotes the hidden test that failed, so the feedback keeps only its last line; the autograded
  notebook keeps the whole traceback.

After grading, ``collect`` copies both into ``--out`` (regular files only, never following a link) and
withholds any feedback page that shows a line of a hidden test (``hidden_lines``), as it is or hidden
(``grader.leakguard.leaks``: reversed, shifted, spread out, encoded); ``notes``
tells the instructor which cells were cut or ran into a limit.
"""

from __future__ import annotations

import html
import os
import re
import shutil
from pathlib import Path

import nbformat
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Integer

from .. import leakguard
from ..cells import grade_id, has_hidden_tests, hidden_test_lines

MAX_OUTPUT_CHARS = 20_000  # per output in the autograded notebook and feedback (LimitOutput counts lines)
MAX_COPIED = 50 * 2**20  # the largest notebook or feedback page copied into --out


def _stream_note(n: int) -> str:
    return f"\n... [output cut at {n} characters]\n"


DATA_NOTE = "\n... [output cut]"


class CapOutputs(NbGraderPreprocessor):
    """Cut every stream and text output to ``max_chars`` characters, with a note that it was cut."""

    max_chars = Integer(MAX_OUTPUT_CHARS, help="characters kept of one output").tag(config=True)

    def preprocess_cell(self, cell, resources, index):
        n = self.max_chars
        for o in cell.get("outputs", []):
            if o.get("output_type") == "stream" and len(o.get("text", "")) > n:
                o["text"] = o["text"][:n] + _stream_note(n)
            for mime, value in list(o.get("data", {}).items()):
                if isinstance(value, str) and len(value) > n and mime.startswith("text/"):
                    o["data"][mime] = value[:n] + DATA_NOTE
        return cell, resources


class ShortTracebacks(NbGraderPreprocessor):
    """In a test cell with hidden tests, cut every error's traceback to its last line (``Name: message``)."""

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "code" and has_hidden_tests(cell.source):
            for o in cell.outputs:
                if o.get("output_type") == "error":
                    o["traceback"] = [f"{o.get('ename', 'Error')}: {o.get('evalue', '')}"]
        return cell, resources


def autograde_preprocessors(configured: list | None = None) -> list:
    """The course's ``Autograde.autograde_preprocessors`` (``configured``; default: nbgrader's), then
    ``CapOutputs`` (after everything that grades)."""
    from nbgrader.converters import Autograde

    return [*(configured or Autograde.class_traits()["autograde_preprocessors"].default()), CapOutputs]


def _was_cut(nb, n: int = MAX_OUTPUT_CHARS) -> bool:
    """Whether ``CapOutputs`` cut an output of ``nb``."""
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            texts = [o.get("text", "")] if o.get("output_type") == "stream" else []
            texts += [v for m, v in o.get("data", {}).items() if isinstance(v, str) and m.startswith("text/")]
            for t in texts:
                for note in (_stream_note(n), DATA_NOTE):
                    if len(t) == n + len(note) and t.endswith(note):
                        return True
    return False


def _limits_hit(path: Path, nb, cell_timeout: int, memory: float) -> list[str]:
    """The cells of an autograded notebook that ran into the time or memory limit."""
    out = []
    for cell in nb.cells:
        gid = grade_id(cell) or "a cell"
        for o in cell.get("outputs", []):
            if o.get("output_type") != "error":
                continue
            text = f"{o.get('ename', '')}: {o.get('evalue', '')}"
            if "Timeout" in o.get("ename", ""):
                out.append(f"{path.stem}/{gid}: stopped at the {cell_timeout} s per-cell limit")
            elif "MemoryError" in text or "can't allocate memory" in text or "not enough memory" in text:
                out.append(f"{path.stem}/{gid}: ran out of memory (limit {memory / 2**30:g} GB)")
    return list(dict.fromkeys(out))  # KeyboardInterrupt and CellTimeoutError come as a pair


def notes(autograded: Path, cell_timeout: int, memory: float) -> list[str]:
    """For the instructor: each notebook of ``autograded`` whose output was cut, each cell that hit a limit."""
    out = []
    for path in sorted(autograded.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        if _was_cut(nb):
            out.append(f"{path.stem}: printed more than {MAX_OUTPUT_CHARS} characters in one output (cut)")
        out += _limits_hit(path, nb, cell_timeout, memory)
    return out


def text(page: str) -> str:
    """The plain text of an HTML page (tags removed, entities decoded)."""
    return html.unescape(re.sub(r"<[^>]+>", "", page))


def hidden_lines(source: Path) -> set[str]:
    """Every non-trivial line of the hidden tests of ``source``'s notebooks (none may reach a feedback page)."""
    lines = set()
    for p in source.glob("*.ipynb"):
        for cell in nbformat.read(p, 4).cells:
            for line in hidden_test_lines(cell.source):
                if len(line.strip()) > 12 and not line.strip().startswith("#"):
                    lines.add(line.strip())
    return lines


def copy_regular_files(src: Path, dst: Path, suffix: str, cap: int = MAX_COPIED) -> list[str]:
    """Copy the regular ``*suffix`` files of ``src`` (not its subfolders) into ``dst``; return what was refused.

    Nothing is followed: a symlink, a FIFO or a device is refused, each file is opened with O_NOFOLLOW
    and copied from that descriptor, and a file over ``cap`` bytes is refused."""
    refused = []
    dst.mkdir(parents=True, exist_ok=True)
    with os.scandir(src) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            if not entry.name.endswith(suffix):
                continue
            if not entry.is_file(follow_symlinks=False):
                refused.append(f"{entry.name}: not a regular file, not copied")
                continue
            fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            with os.fdopen(fd, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size > cap:
                    refused.append(f"{entry.name}: {size / 2**20:.0f} MB, over the {cap // 2**20} MB limit, not copied")
                    continue
                (dst / entry.name).write_bytes(f.read())
    return refused


def collect(autograded: Path, feedback: Path, out: Path, student: str, assignment: str, secret: set[str]) -> list[str]:
    """Copy a student's ``autograded`` notebooks and ``feedback`` pages (nothing else, nothing followed:
    ``copy_regular_files``) into ``out/<kind>/<student>/<assignment>/``; withhold every page that shows a line
    of ``secret`` (``hidden_lines``) and say so."""
    problems = []
    for kind, src, suffix in (("autograded", autograded, ".ipynb"), ("feedback", feedback, ".html")):
        dst = out / kind / student / assignment
        if dst.exists():
            shutil.rmtree(dst)
        if src.is_dir() and not src.is_symlink():
            problems += [f"{kind}/{why}" for why in copy_regular_files(src, dst, suffix)]
    for page in sorted((out / "feedback" / student / assignment).glob("*.html")):
        raw = page.read_text(encoding="utf-8", errors="replace")
        # the exact lines anywhere in the page's text, and (leakguard.leaks) what a page can hide them as:
        # reversed, shifted, spread out, encoded
        leaked = [line for line in secret if line in text(raw)] or leakguard.leaks(leakguard.page_text(raw), secret)
        if leaked:
            page.unlink()
            problems.append(f"{page.stem}: feedback withheld, it showed hidden test text ({leaked[0][:40]!r})")
    return problems
