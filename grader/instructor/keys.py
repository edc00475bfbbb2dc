"""Answer keys: the source notebooks solved and executed, for notebooks/.

An answer key is what a reader of the lecture wants next to the exercises: the solutions in place,
the nbgrader markers and hidden tests out, and the outputs (the `cmp` tables, the `dlogits` picture,
the loss curve, the sampled names). ``python -m grader keys`` writes them; the tests check that the
committed keys are the current sources, and strict nbval (``make test``) re-executes them and compares
their outputs.

This module reads the instructor's source notebooks; it holds no solution itself.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat

from ..cells import without_hidden_tests, without_solution_markers
from .course import ASSIGNMENT, REPO, CourseError

KEYS = REPO / "notebooks"
# what every committed notebook keeps of the notebook metadata: the kernel and the language, no versions
CLEAN_METADATA = {
    "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
    "language_info": {"name": "python"},
}


def key_source(source_nb) -> nbformat.NotebookNode:
    """The unexecuted key of a source notebook: solutions kept, markers and hidden tests removed."""
    nb = nbformat.v4.new_notebook(metadata=dict(CLEAN_METADATA))
    for cell in source_nb.cells:
        text = without_hidden_tests(without_solution_markers(cell.source)).rstrip()
        if cell.cell_type == "code":
            new = nbformat.v4.new_code_cell(text)
        elif cell.cell_type == "markdown":
            new = nbformat.v4.new_markdown_cell(text)
        else:
            new = nbformat.v4.new_raw_cell(text)
        new.id = cell.id  # stable ids: a regenerated key differs from the committed one only where the source did
        nb.cells.append(new)
    return nb


def key_environment() -> dict[str, str]:
    """Keys show the student's full run (no grading mode, even when written from a CI shell or a test), with
    a text progress bar: a stored widget shows nothing to a reader."""
    from ..training import GRADING_ENV, PROGRESS_ENV

    env = {k: v for k, v in os.environ.items() if k not in ("CI", "NBGRADER_EXECUTION", GRADING_ENV)}
    env[PROGRESS_ENV] = "text"
    return env


def execute(nb, cwd: Path, timeout: int = 900) -> nbformat.NotebookNode:
    """Run ``nb`` in a fresh python3 kernel of this environment (``key_environment``) and return it with its
    outputs."""
    from nbclient import NotebookClient  # a kernel: only this command needs it
    from nbconvert.preprocessors import CoalesceStreamsPreprocessor

    NotebookClient(
        nb, timeout=timeout, kernel_name="python3", record_timing=False, resources={"metadata": {"path": str(cwd)}}
    ).execute(env=key_environment())  # the kernel's environment (jupyter_client's start_kernel(env=...))
    nb.metadata = nbformat.from_dict(dict(CLEAN_METADATA))  # nbclient adds the Python version: keep keys portable
    # one stream per cell, as a reader sees it: flushes merged, a progress bar's \r updates reduced to the last
    CoalesceStreamsPreprocessor().preprocess(nb, {})
    return nb


def source_notebooks(names: list[str] | None = None, repo: Path = REPO) -> list[Path]:
    paths = sorted((repo / "source" / ASSIGNMENT).glob("*.ipynb"))
    if names:
        unknown = set(names) - {p.stem for p in paths}
        if unknown:
            raise ValueError(f"no source notebook named {', '.join(sorted(unknown))}")
        paths = [p for p in paths if p.stem in names]
    return paths


def write_keys(names: list[str] | None = None, out: Path = KEYS, say=print) -> list[Path]:
    """Write notebooks/<name>.ipynb, solved and executed, for the named (default: all) source notebooks."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in source_notebooks(names):
        say(f"executing the answer key of {path.stem} ...")
        nb = execute(key_source(nbformat.read(path, as_version=4)), cwd=out)
        target = out / path.name
        nbformat.write(nb, target)
        written.append(target)
    return written


def cmd_keys(args) -> int:
    """Write the answer keys in notebooks/: the source notebooks solved, hidden tests out, executed."""
    try:
        written = write_keys(args.names or None)
    except ValueError as exc:
        raise CourseError(str(exc)) from None
    for path in written:
        print(f"wrote {path.relative_to(REPO)}")
    return 0
