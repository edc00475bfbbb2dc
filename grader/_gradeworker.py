"""One student's grading process for ``python -m grader autograde``: nbgrader's API in one process.

``python -m grader._gradeworker COURSE ASSIGNMENT STUDENT MEMORY`` loads COURSE/nbgrader_config.py (the
scratch course's), then runs ``NbGraderAPI.autograde``, ``grader.classgrade.prepare_feedback`` and
``NbGraderAPI.generate_feedback``: one Python start-up for both nbgrader steps instead of two commands.
Prints one JSON line: {"autograde": bool, "feedback": bool, "log": str, "reasons": [str]}.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(argv=None) -> int:
    course, assignment, student, memory = (argv or sys.argv[1:])[:4]
    from nbgrader.apps.api import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config.loader import PyFileConfigLoader

    from grader import classgrade

    config = PyFileConfigLoader("nbgrader_config.py", path=course).load_config()
    coursedir = CourseDirectory(config=config)
    api = NbGraderAPI(coursedir=coursedir, config=config)
    result = {"autograde": False, "feedback": False, "log": "", "reasons": []}
    done = api.autograde(assignment, student, force=True, create=True)
    result["log"] += done.get("log", "") + done.get("error", "")
    result["autograde"] = bool(done.get("success"))
    if result["autograde"]:
        result["reasons"] = classgrade.prepare_feedback(Path(course), assignment, student,
                                                        int(config.Execute.timeout), float(memory))
        done = api.generate_feedback(assignment, student, force=True)
        result["log"] += done.get("log", "") + done.get("error", "")
        result["feedback"] = bool(done.get("success"))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
