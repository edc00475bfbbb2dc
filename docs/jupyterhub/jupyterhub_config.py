"""JupyterHub configuration of the Backprop Ninja course (docs/jupyterhub.md explains every step).

Run as root: ``jupyterhub -f docs/jupyterhub/jupyterhub_config.py``. Users log in with their Unix
password (PAM) and get JupyterLab under their own account (LocalProcessSpawner). Everything
course-specific comes from environment variables, with these defaults:

  BN_INSTRUCTOR     instructor            the instructor's Unix account (owns the course directory)
  BN_STUDENTS       (empty)               comma-separated Unix accounts allowed to log in as students
  BN_COURSE         /home/BN_INSTRUCTOR/backprop-ninja   the nbgrader course directory
  BN_EXCHANGE       /srv/nbgrader/exchange               nbgrader's Exchange.root (mode 0777)
  BN_COURSE_ID      backprop-ninja
  BN_HUB_STATE      /srv/jupyterhub       the hub's database, cookie secret, per-role Jupyter config
  BN_HUB_IP / BN_HUB_PORT   127.0.0.1 / 8000 (put TLS in front, or set c.JupyterHub.ssl_*)
  BN_GRADE_LIMIT    3      graded submissions per student per window
  BN_GRADE_WINDOW_HOURS   24
  BN_DEADLINE       (none) ISO date-time after which nothing is graded automatically
  BN_PYTHON         the Python of this environment (it has jupyterhub, nbgrader, torch and grader)
  BN_GRADE_ARGS     more arguments for the service, space-separated (e.g. "--interval 2")
  BN_AUTOGRADE_ARGS the class command's options for it (grader/autograde/options.py), e.g. "--workers 2"
"""

import json
import os
import shlex
import sys
from pathlib import Path

c = get_config()  # noqa: F821 (defined by JupyterHub when it loads this file)

INSTRUCTOR = os.environ.get("BN_INSTRUCTOR", "instructor")
STUDENTS = {s.strip() for s in os.environ.get("BN_STUDENTS", "").split(",") if s.strip()}
COURSE = os.environ.get("BN_COURSE", f"/home/{INSTRUCTOR}/backprop-ninja")
EXCHANGE = os.environ.get("BN_EXCHANGE", "/srv/nbgrader/exchange")
COURSE_ID = os.environ.get("BN_COURSE_ID", "backprop-ninja")
STATE = Path(os.environ.get("BN_HUB_STATE", "/srv/jupyterhub"))
PYTHON = os.environ.get("BN_PYTHON", sys.executable)
BIN = str(Path(PYTHON).parent)

# -- the hub -----------------------------------------------------------------------------------------
c.JupyterHub.ip = os.environ.get("BN_HUB_IP", "127.0.0.1")
c.JupyterHub.port = int(os.environ.get("BN_HUB_PORT", "8000"))
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = int(os.environ.get("BN_HUB_API_PORT", "8081"))
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{os.environ.get('BN_PROXY_API_PORT', '8001')}"
if os.environ.get("BN_PROXY_COMMAND"):  # configurable-http-proxy (npm) when it is not on PATH
    c.ConfigurableHTTPProxy.command = [os.environ["BN_PROXY_COMMAND"]]
STATE.mkdir(parents=True, exist_ok=True)
c.JupyterHub.db_url = f"sqlite:///{STATE / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(STATE / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(STATE / "jupyterhub.pid")

# PAM: the users' Unix passwords; only the instructor and the listed students may log in.
c.JupyterHub.authenticator_class = "pam"
c.Authenticator.allowed_users = STUDENTS | {INSTRUCTOR}
c.Authenticator.admin_users = {INSTRUCTOR}

# -- the users' servers ------------------------------------------------------------------------------
c.JupyterHub.spawner_class = "localprocess"
c.Spawner.cmd = [PYTHON, "-m", "jupyterhub.singleuser"]
c.Spawner.default_url = "/lab"
c.Spawner.start_timeout = 300  # a loaded machine starts JupyterLab slowly
c.Spawner.http_timeout = 300
c.Spawner.environment = {
    "PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin",
    **{k: os.environ[k] for k in ("BACKPROP_NINJA_NAMES",) if k in os.environ},
}


def role_config(role: str) -> Path:
    """A Jupyter config folder per role, put first on JUPYTER_CONFIG_PATH of that role's servers.

    Both: nbgrader's exchange and course id. Instructor: the course directory (formgrader). Students:
    formgrader and Create Assignment off, server side (jupyter_server_config.json) and in JupyterLab
    (labconfig/page_config.json); Assignments (assignment_list), Courses and Validate stay on.
    """
    folder = STATE / "jupyter-config" / role
    (folder / "labconfig").mkdir(parents=True, exist_ok=True)
    lines = [
        "c = get_config()  # noqa: F821",
        f"c.CourseDirectory.course_id = {COURSE_ID!r}",
        f"c.Exchange.root = {EXCHANGE!r}",
    ]
    extensions = {
        "nbgrader.server_extensions.assignment_list": True,
        "nbgrader.server_extensions.course_list": True,
        "nbgrader.server_extensions.validate_assignment": True,
        "nbgrader.server_extensions.formgrader": role == "instructor",
    }
    disabled = {}
    if role == "instructor":
        lines.append(f"c.CourseDirectory.root = {COURSE!r}")
    else:
        disabled = {"@jupyter/nbgrader:formgrader": True, "@jupyter/nbgrader:create-assignment": True}
    (folder / "nbgrader_config.py").write_text("\n".join(lines) + "\n")
    (folder / "jupyter_server_config.json").write_text(
        json.dumps({"ServerApp": {"jpserver_extensions": extensions}}, indent=1)
    )
    (folder / "labconfig" / "page_config.json").write_text(json.dumps({"disabledExtensions": disabled}, indent=1))
    os.chmod(STATE, 0o755)
    for path in [folder.parent, folder, folder / "labconfig"]:
        os.chmod(path, 0o755)
    return folder


ROLE_CONFIG = {role: role_config(role) for role in ("instructor", "student")}


def pre_spawn_hook(spawner):
    role = "instructor" if spawner.user.name == INSTRUCTOR else "student"
    spawner.environment["JUPYTER_CONFIG_PATH"] = str(ROLE_CONFIG[role])


c.Spawner.pre_spawn_hook = pre_spawn_hook

# -- the exchange ------------------------------------------------------------------------------------
# nbgrader's default exchange: one folder everybody may write into (as nbgrader's docs say); nbgrader
# itself makes inbound/ 0733 (students drop in, cannot list), outbound/ 0755 and feedback/ 0711 (a
# student's feedback is found only by the hash of that submission's secret).
Path(EXCHANGE).mkdir(parents=True, exist_ok=True)
os.chmod(EXCHANGE, 0o777)

# -- grade on submit ---------------------------------------------------------------------------------
# A managed service: the hub starts it as the instructor (the hub runs as root), restarts it if it dies,
# and stops it with the hub. It needs no hub API access (no url, no role scopes).
c.JupyterHub.services = [
    {
        "name": "gradeonsubmit",
        "user": INSTRUCTOR,
        "cwd": COURSE,
        "command": [
            PYTHON,
            "-m",
            "grader.instructor.gradeonsubmit",
            "--course",
            COURSE,
            "--assignment",
            "backprop_ninja",
            "--exchange",
            EXCHANGE,
            "--course-id",
            COURSE_ID,
            "--limit",
            os.environ.get("BN_GRADE_LIMIT", "3"),
            "--window-hours",
            os.environ.get("BN_GRADE_WINDOW_HOURS", "24"),
            *(["--deadline", os.environ["BN_DEADLINE"]] if os.environ.get("BN_DEADLINE") else []),
            *shlex.split(os.environ.get("BN_GRADE_ARGS", "")),
            "--",  # the class command's options: python -m grader autograde's own
            *shlex.split(os.environ.get("BN_AUTOGRADE_ARGS", "")),
        ],
        "environment": {
            "PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin",
            **{k: os.environ[k] for k in ("BACKPROP_NINJA_NAMES",) if k in os.environ},
        },
    }
]
