"""Two nbgrader steps that make the locked cells run as the instructor wrote them, whatever a student did.

nbgrader's ``OverwriteCells`` puts a locked cell's source back, but not its tags, and its put-back of a
deleted test cell fails (``KeyError``) when the cell before it in the source is a locked cell that is not
graded (the first test cell of a notebook, after the setup cell). And a test cell that does not run has no
output, hence no error, hence full marks. So:

- ``PutBackCells`` (in place of ``OverwriteCells``, before anything runs): nbgrader's put-back, then every
  locked cell of the source gets the source's tags again (a ``skip-execution`` tag set from JupyterLab's tag
  editor would make the kernel skip it), and a deleted graded cell is put back after the nearest cell before
  it that the notebook still has, as the docs promise (nbgrader's own placement when it works).
- ``UnrunTestsFail`` (right after ``Execute``): a test cell that did not run gets an error output saying so,
  so it scores 0, as a failed test does; nothing a student can set makes a test pass by not running.

The class command runs the same steps (it loads the course's ``nbgrader_config.py``).
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
from nbformat.v4 import new_output
from nbgrader import utils
from nbgrader.coursedir import CourseDirectory
from nbgrader.preprocessors import NbGraderPreprocessor, OverwriteCells

from .cells import nbgrader_meta

NOT_RUN = "This test cell did not run (a cell tag or an earlier stop skipped it), so it scores 0."


def source_notebook(config, assignment: str, notebook: str):
    """The assignment's source notebook ``notebook`` (the instructor's), or None if there is none."""
    coursedir = CourseDirectory(config=config)
    path = Path(coursedir.format_path(coursedir.source_directory, ".", assignment)) / f"{notebook}.ipynb"
    if not path.is_file():
        return None
    return nbformat.read(os.fspath(path), as_version=4)


class PutBackCells(OverwriteCells):
    """nbgrader's ``OverwriteCells``, with the locked cells' tags restored and every deleted graded cell put
    back (see the module's text)."""

    def preprocess(self, nb, resources):
        nb, resources = super().preprocess(nb, resources)
        info = resources["nbgrader"]
        source = source_notebook(self.config, info["assignment"], info["notebook"])
        if source is None:
            return nb, resources
        tags = {
            nbgrader_meta(c)["grade_id"]: list(c.metadata.get("tags", []))
            for c in source.cells
            if nbgrader_meta(c).get("locked") and nbgrader_meta(c).get("grade_id")
        }
        for cell in nb.cells:
            gid = nbgrader_meta(cell).get("grade_id")
            if gid in tags and cell.metadata.get("tags", []) != tags[gid]:
                self.log.warning("Restoring the tags of locked cell %s: %s", gid, tags[gid])
                if tags[gid]:
                    cell.metadata["tags"] = tags[gid]
                else:
                    cell.metadata.pop("tags", None)
        return nb, resources

    def add_missing_grade_cells(self, nb, resources):
        """Each graded cell of the source that the notebook lacks, put back after the nearest cell before it
        (in the source) that the notebook has; at the top when there is none."""
        source_nb = self.gradebook.find_notebook(self.notebook_id, self.assignment_id)
        source_cells = source_nb.source_cells
        order = [c.name for c in source_cells]
        solutions = {c.name for c in source_nb.solution_cells}
        present = {nbgrader_meta(c).get("grade_id") for c in nb.cells} - {None}
        for grade_cell in source_nb.grade_cells:
            if grade_cell.name in present:
                continue
            self.log.warning("Missing grade cell %s encountered, adding to notebook", grade_cell.name)
            at = order.index(grade_cell.name)
            cell = self.missing_cell_transform(
                source_cells[at], grade_cell.max_score, is_solution=grade_cell.name in solutions
            )
            before = [name for name in order[:at] if name in present]
            index = 0
            if before:
                index = 1 + next(i for i, c in enumerate(nb.cells) if nbgrader_meta(c).get("grade_id") == before[-1])
            nb.cells.insert(index, cell)
            present.add(grade_cell.name)
        return nb, resources


class UnrunTestsFail(NbGraderPreprocessor):
    """A test cell that did not run gets an error output: it scores 0 (see the module's text)."""

    def preprocess_cell(self, cell, resources, index):
        if utils.is_grade(cell) and not utils.is_solution(cell) and cell.cell_type == "code":
            if cell.get("execution_count") is None and not any(o.output_type == "error" for o in cell.outputs):
                cell.outputs.append(new_output("error", ename="NotRun", evalue=NOT_RUN, traceback=[NOT_RUN]))
        return cell, resources
