"""grader/nbgrader_cells.py: a test cell that did not run scores 0 (the put-back of tags and deleted cells is
graded end to end by the catalogue's students deletes-the-first-test-cell and skips-the-tests)."""

import nbformat
from nbformat.v4 import new_code_cell, new_output
from nbgrader.utils import determine_grade

from grader.nbgrader_cells import NOT_RUN, UnrunTestsFail


def _test_cell(ran: bool):
    cell = new_code_cell("assert False", metadata={"nbgrader": {"grade": True, "grade_id": "t", "points": 2}})
    cell.metadata.nbgrader.update(solution=False, locked=True)
    if ran:
        cell.execution_count = 3
    return cell


def test_a_test_cell_that_did_not_run_scores_zero_one_that_ran_is_left_alone():
    step = UnrunTestsFail()
    skipped, _ = step.preprocess_cell(_test_cell(ran=False), {}, 0)
    assert determine_grade(skipped)[0] == 0 and skipped.outputs[0].evalue == NOT_RUN
    ran = _test_cell(ran=True)
    ran.outputs.append(new_output("stream", name="stdout", text="ok\n"))
    kept, _ = step.preprocess_cell(nbformat.from_dict(ran), {}, 0)
    assert determine_grade(kept)[0] == 2 and len(kept.outputs) == 1
