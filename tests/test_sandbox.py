"""grader/sandbox.py: the probe refuses a weak sandbox; the limits hold; all of it as root and as a user.

The probe is run against deliberately weakened commands (capabilities added back, no user namespace, the
environment not cleared) and must refuse each. The limits are checked in a sandbox with small ones. The
last test creates an unprivileged user (``bnstudent``) and runs the probe and one hostile student's grading
as that user. Tests that need root skip when not root, with the reason; in CI (CI=true) they must run.
"""

import dataclasses
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from grader import course, sandbox

pytestmark = pytest.mark.usefixtures("sandbox_required")
USER = "bnstudent"


@pytest.fixture
def root_required():
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("CI runs these tests as root (they start a sandbox as root, or create a user)")
        pytest.skip("needs root: only root can start a sandbox that keeps host capabilities, or create a user")


def _without(cmd: list[str], *names: str) -> list[str]:
    """``cmd`` without the bwrap options ``names`` (and their value when they take one)."""
    out, skip = [], False
    for arg in cmd:
        if skip:
            skip = False
        elif arg in names:
            skip = arg in ("--uid", "--gid", "--cap-drop")
        else:
            out.append(arg)
    return out


def test_the_probe_refuses_a_sandbox_that_keeps_capabilities():
    def weakened(cmd):
        at = cmd.index("--cap-drop") + 2
        return cmd[:at] + ["--cap-add", "ALL"] + cmd[at:]

    with pytest.raises(sandbox.SandboxError, match=r"kept capabilities \(CapEff 0*1f+"):
        sandbox.probe(wrap=weakened)


def test_the_probe_refuses_a_sandbox_that_can_mount_unmount_and_remount(root_required):
    def weakened(cmd):  # no user namespace: as root, the kernel would be root with every capability
        return _without(cmd, "--unshare-user", "--uid", "--gid", "--cap-drop")

    with pytest.raises(sandbox.SandboxError) as err:
        sandbox.probe(wrap=weakened)
    for why in ("kept capabilities", "could mount", "could unmount a hidden folder", "could remount / read-write"):
        assert why in str(err.value)


def test_the_probe_refuses_a_sandbox_that_sees_the_grading_environment():
    with pytest.raises(sandbox.SandboxError, match="environment"):
        sandbox.probe(wrap=lambda cmd: cmd[cmd.index("bwrap") :])  # bwrap without the launcher's --clearenv


def test_the_kernel_environment_is_the_allow_list_only():
    env = {"PATH": "/usr/bin", "DATABASE_URL": "postgresql://u:pw@h/db", "NBGRADER_EXECUTION": "autograde", "X": "1"}
    assert sandbox.kernel_env(env) == {"PATH": "/usr/bin", "NBGRADER_EXECUTION": "autograde"}
    assert "--clearenv" in sandbox.env_args(env) and "pw" not in " ".join(sandbox.env_args(env))


LIMITS_CODE = r"""
import ctypes, os, time
libc = ctypes.CDLL(None, use_errno=True)
caps = [line.split()[1] for line in open("/proc/self/status") if line.startswith("CapEff")]
print("caps", int(caps[0], 16))
print("umount", libc.umount2(b"/root", 2))
for path in ["/dev/x", "/root/x", "/run/x"]:
    try:
        open(path, "w")
        print("wrote", path)
    except OSError:
        pass
for where in ["/tmp", "/dev/shm"]:
    mb = 0
    try:
        with open(where + "/fill", "wb") as f:
            for mb in range(64):
                f.write(bytes(2**20))
                f.flush()
    except OSError as e:
        print("full", where, mb, e.errno)
    os.remove(where + "/fill")
try:
    with open(os.path.join(os.getcwd(), "big"), "wb") as f:
        for mb in range(64):
            f.write(bytes(2**20))
            f.flush()
except OSError as e:
    print("fsize", mb, e.errno)
pids = []
try:
    for _ in range(200):
        pid = os.fork()
        if pid == 0:
            time.sleep(20)
            os._exit(0)
        pids.append(pid)
except OSError as e:
    print("nproc", len(pids), e.errno)
for pid in pids:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
"""


def test_the_limits_hold_in_the_sandbox():
    """Small limits (32 tasks, 8 MB files, 4 MB /tmp and /dev/shm): each is hit, with its error, and no
    capability, no unmount, no write to /dev, /root or /run."""
    import errno

    with tempfile.TemporaryDirectory(prefix="bn-limits-", dir="/tmp") as tmp:
        run = Path(tmp) / "run"
        work = Path(tmp) / "work"
        run.mkdir()
        work.mkdir()
        os.chmod(tmp, 0o755)
        cmd = sandbox.command(
            [sys.executable, "-c", LIMITS_CODE],
            sandbox=True,
            memory_bytes=4 * 2**30,
            writable=[work],
            hidden=[],
            runtime=run,
            nproc=32,
            fsize=8 * 2**20,
            tmp_bytes=4 * 2**20,
        )
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=work)
        lines = {line.split()[0]: line.split()[1:] for line in proc.stdout.splitlines()}
        assert proc.returncode == 0, proc.stderr
        assert lines["caps"] == ["0"] and lines["umount"] == ["-1"] and "wrote" not in lines, proc.stdout
        full = [line.split() for line in proc.stdout.splitlines() if line.startswith("full")]
        assert [(w, int(e)) for _, w, _, e in full] == [("/tmp", errno.ENOSPC), ("/dev/shm", errno.ENOSPC)]
        assert all(int(mb) <= 4 for _, _, mb, _ in full)
        assert lines["fsize"] == ["8", str(errno.EFBIG)]
        assert (work / "big").stat().st_size == 8 * 2**20
        started, err = map(int, lines["nproc"])
        assert started < 32 and err == errno.EAGAIN


# ---------------------------------------------------------------------------------------------
# The same, as an unprivileged user


@pytest.fixture(scope="module")
def user_python():
    """A user ``bnstudent`` and a Python it can run: this one lives under /root here, which only root can
    enter, so a venv of the system's Python 3.11 that reads this venv's site-packages (a .pth file)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create the user")
    if sys.version_info[:2] != (3, 11) or not Path("/usr/bin/python3.11").is_file():
        pytest.skip("needs /usr/bin/python3.11 (the same Python version as this venv's packages)")
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "-m", USER], check=True)
    root = Path(tempfile.mkdtemp(prefix="bn-user-", dir="/var/tmp"))
    os.chmod(root, 0o755)
    venv = root / "venv"
    subprocess.run(["/usr/bin/python3.11", "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next(p for p in sys.path if p.endswith("site-packages") and p.startswith(sys.prefix))
    checkout = Path(course.__file__).resolve().parent.parent
    (venv / "lib" / "python3.11" / "site-packages" / "bn.pth").write_text(f"{site}\n{checkout}\n")
    (venv / "bin" / "alembic").write_text(f"#!{venv}/bin/python\nfrom alembic.config import main\nmain()\n")
    os.chmod(venv / "bin" / "alembic", 0o755)
    try:
        yield root, venv / "bin" / "python"
    finally:
        shutil.rmtree(root, ignore_errors=True)


def as_user(*cmd, cwd="/", timeout=900):
    env = {
        "PATH": f"{Path(cmd[0]).parent}:/usr/bin:/bin",
        "HOME": pwd.getpwnam(USER).pw_dir,
        "LANG": "C.UTF-8",
        "BACKPROP_NINJA_NAMES": os.environ.get("BACKPROP_NINJA_NAMES", ""),
    }
    return subprocess.run(
        ["runuser", "-u", USER, "--", "env", "-i", *(f"{k}={v}" for k, v in env.items()), *cmd],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
    )


def test_as_an_unprivileged_user_the_probe_passes_and_a_weak_sandbox_is_refused(root_required, user_python):
    _, python = user_python
    code = (
        "from grader import sandbox\n"
        "sandbox.probe()\n"
        "at = lambda c: c.index('--cap-drop') + 2\n"
        "try:\n"
        "    sandbox.probe(wrap=lambda c: c[: at(c)] + ['--cap-add', 'ALL'] + c[at(c) :])\n"
        "except sandbox.SandboxError as e:\n"
        "    print('refused:', e)\n"
    )
    proc = as_user(str(python), "-c", code, timeout=120)
    assert proc.returncode == 0 and "refused: bwrap started, but the sandbox kept capabilities" in proc.stdout, (
        proc.stdout + proc.stderr
    )


def build_class(root: Path, ids: list[str]) -> Path:
    """A course in ``root/course`` with the demo class's students ``ids`` (notebook 01 only) in ``root/submitted``."""
    students = [
        dataclasses.replace(s, notebooks=["01_atomic_backprop"])
        for s in course.demo_class(sandbox_only=True)
        if s.id in ids
    ]
    c = course.new_course(root / "course")
    course.generate_release(c)
    for s in students:
        course.make_submission(c, s, out=root / "submitted" / s.id / course.ASSIGNMENT)
    return c


def autograde_cmd(python, root: Path, *extra: str) -> list[str]:
    return [
        str(python),
        "-m",
        "grader",
        "autograde",
        course.ASSIGNMENT,
        str(root / "submitted"),
        "--course",
        str(root / "course"),
        "--out",
        str(root / "out"),
        "--workers",
        "2",
        "--cell-timeout",
        "60",
        "--no-progress",
        "--no-canary",
        *extra,
    ]


def check_blocked(out: Path, hostile: list[str], secret: str = "") -> None:
    """Each of ``hostile`` got the solution's score and printed "blocked:" but never "ESCAPED"; ``secret``
    is nowhere in the output."""
    import json

    import nbformat

    summary = json.loads((out / "summary.json").read_text())
    for sid in hostile:
        assert summary["totals"][sid] == summary["totals"]["solution"] > 0, json.dumps(summary["review"])
        nb = nbformat.read(out / "autograded" / sid / course.ASSIGNMENT / "01_atomic_backprop.ipynb", 4)
        printed = json.dumps([c.get("outputs", []) for c in nb.cells])
        assert "blocked:" in printed and "ESCAPED" not in printed, (sid, printed[:3000])
    if secret:
        for path in out.rglob("*"):
            if path.is_file() and path.suffix in (".html", ".ipynb", ".json", ".md", ".log"):
                assert secret not in path.read_text(errors="replace"), path


def test_with_fresh_kernels_hostile_students_are_blocked(tmp_path):
    """The sandbox without the zygote (``--fresh-kernels``: each kernel started by Jupyter through the launcher)."""
    hostile = ["escapes-as-root", "prints-the-environment", "fills-tmp-and-shm", "forks-500-processes"]
    root = Path(tempfile.mkdtemp(prefix="bn-fresh-", dir="/var/tmp"))
    try:
        build_class(root, ["solution", *hostile])
        env = dict(course.tool_env(), DATABASE_URL="postgresql://u:canary-password-fresh@127.0.0.1:9/db")
        proc = subprocess.run(
            autograde_cmd(sys.executable, root, "--fresh-kernels"),
            capture_output=True,
            text=True,
            env=env,
            timeout=1800,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        check_blocked(root / "out", hostile, "canary-password-fresh")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_as_an_unprivileged_user_a_hostile_student_is_graded_and_limited(root_required, user_python):
    """The fork bomb: as a user, RLIMIT_NPROC (in the sandbox's user namespace) stops it, not root's cgroup."""
    root, python = user_python
    build_class(root, ["solution", "forks-500-processes", "escapes-as-root"])
    subprocess.run(["chown", "-R", USER, str(root / "course"), str(root / "submitted")], check=True)
    os.chown(root, pwd.getpwnam(USER).pw_uid, -1)  # for --out
    proc = as_user(*autograde_cmd(python, root), cwd=str(root))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    check_blocked(root / "out", ["forks-500-processes", "escapes-as-root"])
