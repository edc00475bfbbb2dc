"""nbgrader configuration of the Backprop Ninja course: this checkout is the course directory."""

import os

c = get_config()  # noqa: F821 (defined by nbgrader when it loads this file)

c.CourseDirectory.course_id = "backprop-ninja"
c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))

# Run every notebook with the Python of the environment that runs nbgrader (it has torch and grader).
c.Execute.kernel_name = "python3"
# Per-cell limit. The longest cell, training in Exercise 4's grading mode, takes a few seconds.
c.Execute.timeout = 120
c.Execute.interrupt_on_timeout = True

# A deleted test cell is put back and graded instead of silently ungraded.
c.OverwriteCells.add_missing_cells = True

# What students see in an answer cell (nbgrader's default, stated here so it cannot drift).
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}

# A cell that prints without end must not flood the gradebook or the feedback.
c.LimitOutput.max_lines = 1000
c.LimitOutput.max_traceback = 100

# The feedback page (grader/feedback_page.py): a head that names each graded cell with its score and its
# verdict, the picture of the backward graph, formulas readable without MathJax, and no hidden test.
# `python -m grader autograde` loads this file too, so both commands write the same page.
from grader.feedback_page import configure  # noqa: E402

configure(c)

# The answer language (grader/answers.py): right after nbgrader has saved the automatic grades, the graded
# cells that run after a cell outside it (an answer that reaches autograd, the grader or the interpreter's
# internals) are held for manual grading, with the reason in the answer cell's comment
# (grader/nbgrader_answers.py). A string, so this file loads without importing the course's package.
from nbgrader.converters import Autograde  # noqa: E402
from nbgrader.preprocessors import SaveAutoGrades  # noqa: E402

_steps = list(Autograde.class_traits()["autograde_preprocessors"].default())
_after = _steps.index(SaveAutoGrades) + 1
_steps = [*_steps[:_after], "grader.nbgrader_answers.HoldForReview", *_steps[_after:]]

# Locked cells run as the instructor wrote them (grader/nbgrader_cells.py): their tags come back with their
# source (a `skip-execution` tag would make the kernel skip a test cell), a deleted test cell is put back,
# and a test cell that did not run scores 0 instead of full marks.
from nbgrader.preprocessors import Execute, OverwriteCells  # noqa: E402

_steps.insert(_steps.index(Execute) + 1, "grader.nbgrader_cells.UnrunTestsFail")
c.Autograde.autograde_preprocessors = _steps

# grades.csv by a real CSV writer (grader/instructor/csvexport.py): an id with a comma, a quote or a newline
# cannot break the file or forge a row, and a formula-looking field is neutralised for spreadsheets.
c.ExportApp.plugin_class = "grader.instructor.csvexport.SafeCsvExport"
c.Autograde.sanitize_preprocessors = [
    "grader.nbgrader_cells.PutBackCells" if step is OverwriteCells else step
    for step in Autograde.class_traits()["sanitize_preprocessors"].default()
]
