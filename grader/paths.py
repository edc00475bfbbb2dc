"""Where the course's things are, and the environment variable that says where the data set is.

Importable without torch or nbgrader: the sandbox (``grader.autograde.sandbox``) needs these to bind
the checkout and the data set into a student's sandbox, ``grader.data`` to find the data set.
"""

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent  # grader/
REPO = PACKAGE.parent  # the checkout: source/, release/, notebooks/, nbgrader_config.py
NAMES_ENV_VAR = "BACKPROP_NINJA_NAMES"  # the path of names.txt (read by grader.data)
