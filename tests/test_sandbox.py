"""grader/autograde/sandbox.py: bubblewrap's rules, the launcher's limits; the probe refuses a weak sandbox;
the limits hold; all of it as root and as a user.

The probe is run against deliberately weakened commands (capabilities added back, no user namespace, the
environment not cleared) and must refuse each. The limits are checked in a sandbox with small ones. The
last test creates an unprivileged user (``bnstudent``) and runs the probe and one hostile student's grading
as that user. Tests that need root skip when not root, with the reason; in CI (CI=true) they must run.
"""

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from classes import build, catalogue

from grader import paths
from grader.autograde import sandbox
from grader.instructor import course

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


def test_the_probe_refuses_a_sandbox_that_can_mount_unmount_and_remount(root_required, monkeypatch):
    monkeypatch.setattr(sandbox, "host_uid", lambda: None)  # root stays root...

    def weakened(cmd):  # ...and no user namespace: the kernel would be root with every capability
        return _without(cmd, "--unshare-user", "--uid", "--gid", "--cap-drop")

    with pytest.raises(sandbox.SandboxError) as err:
        sandbox.probe(wrap=weakened)
    for why in ("kept capabilities", "could mount", "could unmount a hidden folder", "could remount / read-write"):
        assert why in str(err.value)


def test_as_root_the_kernel_is_a_host_uid_of_its_own_and_the_probe_refuses_host_root(root_required, monkeypatch):
    a, b = sandbox.host_uid(), sandbox.host_uid()
    assert a != b and min(a, b) > sandbox.HOST_UID_BASE  # two sandboxes of one process: two users
    sandbox.probe()  # the kernel's files are its own uid's
    monkeypatch.setattr(sandbox, "host_uid", lambda: None)  # the launcher does not drop root
    with pytest.raises(sandbox.SandboxError, match="ran as host root"):
        sandbox.probe()


def test_as_root_folders_closed_to_others_on_the_way_are_staged_even_nested(root_required, tmp_path):
    """A writable folder behind two folders only root may enter, one inside a hidden folder (a shard's work
    folder under the output folder, say): the kernel, a host uid of its own, still writes there, and sees
    nothing else of those folders."""
    outer = Path(tempfile.mkdtemp(prefix="bn-closed-", dir="/var/tmp"))  # 0700
    try:
        hidden = outer / "out"
        inner = hidden / "work"
        (inner / "w").mkdir(parents=True)
        os.chmod(inner, 0o700)
        (inner / "secret").write_text("root's")
        (outer / "run").mkdir()
        uid = sandbox.host_uid()
        sandbox.hand_over([inner / "w", outer / "run"], uid)
        code = (
            "import os, sys; open(sys.argv[1] + '/ok', 'w').write('ok')\n"
            "print(sorted(os.listdir(os.path.dirname(sys.argv[1]))))"
        )
        cmd = sandbox.command(
            [sys.executable, "-c", code, str(inner / "w")],
            sandbox=True,
            memory_bytes=0,
            writable=[inner / "w"],
            hidden=[hidden],
            runtime=outer / "run",
            uid=uid,
        )
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd="/")
        assert proc.returncode == 0, proc.stderr
        assert (inner / "w" / "ok").stat().st_uid == uid
        assert proc.stdout.split() == ["['w']"]  # the closed folder's other files are not there
    finally:
        shutil.rmtree(outer, ignore_errors=True)


def test_the_probe_refuses_a_sandbox_that_sees_the_grading_environment(monkeypatch):
    monkeypatch.setattr(sandbox, "host_uid", lambda: None)  # without the launcher, root would not drop root
    with pytest.raises(sandbox.SandboxError, match="environment"):
        sandbox.probe(wrap=lambda cmd: cmd[cmd.index("bwrap") :])  # bwrap without the launcher's --clearenv


def test_the_kernel_environment_is_the_allow_list_only():
    env = {"PATH": "/usr/bin", "DATABASE_URL": "postgresql://u:pw@h/db", "NBGRADER_EXECUTION": "autograde", "X": "1"}
    assert sandbox.kernel_env(env) == {"PATH": "/usr/bin", "NBGRADER_EXECUTION": "autograde"}
    assert "--clearenv" in sandbox.env_args(env) and "pw" not in " ".join(sandbox.env_args(env))


def pairs(args: list[str], flag: str) -> list[tuple[str, str]]:
    return [(args[i + 1], args[i + 2]) for i, a in enumerate(args) if a == flag]


def test_bwrap_args_hide_bind_and_make_read_only(tmp_path):
    hidden_dir, hidden_file, writable, run = (
        tmp_path / "source",
        tmp_path / "gradebook.db",
        tmp_path / "w",
        tmp_path / "r",
    )
    for d in (hidden_dir, writable, run):
        d.mkdir()
    hidden_file.write_text("")
    args = sandbox.bwrap_args([writable], [hidden_dir, hidden_file, tmp_path / "absent"], run)
    assert args[0] == "bwrap" and ("/", "/") in pairs(args, "--ro-bind") and "--unshare-all" in args
    assert "--die-with-parent" in args
    assert str(hidden_dir) in [args[i + 1] for i, a in enumerate(args) if a == "--tmpfs"]  # emptied...
    remounts = [i for i, a in enumerate(args) if a == "--remount-ro" and args[i + 1] == str(hidden_dir)]
    assert remounts and remounts[0] > max(i for i, a in enumerate(args) if a == "--bind")  # ...read-only, after binds
    assert ("/dev/null", str(hidden_file)) in pairs(args, "--ro-bind")
    assert {(str(run), str(run)), (str(writable), str(writable))} <= set(pairs(args, "--bind"))
    assert str(tmp_path / "absent") not in args


def test_what_the_kernel_needs_under_tmp_includes_the_data_set(monkeypatch):
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        data = Path(tmp) / "names.txt"
        data.write_text("emma\n")
        monkeypatch.setenv(paths.NAMES_ENV_VAR, str(data))
        assert str(data.resolve()) in sandbox._needed_under_tmp()
        monkeypatch.delenv(paths.NAMES_ENV_VAR)
        assert str(data.resolve()) not in sandbox._needed_under_tmp()


@pytest.mark.parametrize("zygote", [None, ["torch"]])
def test_the_kernelspec_runs_the_launcher_and_the_zygote_by_their_modules(tmp_path, zygote):
    folder = sandbox.kernelspec(
        tmp_path / "share",
        sandbox=True,
        memory_bytes=123,
        writable=[tmp_path],
        hidden=[],
        runtime=tmp_path,
        zygote=zygote,
        env={"HOME": "/h"},
    )
    assert folder == tmp_path / "share" / "kernels" / sandbox.KERNEL_NAME
    spec = json.loads((folder / "kernel.json").read_text())
    assert spec["env"]["HOME"] == "/h" and spec["env"]["MPLBACKEND"] == "Agg"
    if zygote is None:
        launched = spec["argv"]
        assert launched[-4:-1] == ["ipykernel_launcher", "-f", "{connection_file}"]
    else:
        assert spec["argv"][1:4] == ["-m", "grader.autograde.zygote", "connect"]
        launched = json.loads((folder / "zygote.json").read_text())["argv"]
        assert launched[-3:] == ["serve", str(tmp_path.resolve() / "zygote"), "torch"]
    assert launched[1:5] == ["-m", "grader.autograde.sandbox", "--memory", "123"] and "bwrap" in launched


def test_the_launcher_sets_the_memory_limit_then_runs_the_command():
    code = "import resource; print(resource.getrlimit(resource.RLIMIT_AS)[0])"
    proc = subprocess.run(
        [sys.executable, "-m", "grader.autograde.sandbox", "--memory", str(2**32), "--", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and proc.stdout.split() == [str(2**32)], proc.stderr


def test_the_probe_passes_where_bwrap_works(sandbox_required):
    sandbox.probe()  # (sandbox_required ran it too): it raises SandboxError with the reason otherwise


def test_the_private_tmp_still_shows_what_the_kernel_needs_from_the_hosts(sandbox_required, monkeypatch):
    """A checkout, venv or data set under /tmp is bound back read-only; the rest of the host's /tmp stays hidden."""
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        data, other = Path(tmp) / "names.txt", Path(tmp) / "other"
        data.write_text("emma\n")
        other.mkdir()
        monkeypatch.setenv(paths.NAMES_ENV_VAR, str(data))
        run = Path(tmp) / "run"
        run.mkdir()
        proc = subprocess.run(
            sandbox.bwrap_args([], [], run) + ["sh", "-c", f"cat {data}; ls {other} || echo hidden"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert proc.stdout.split() == ["emma", "hidden"], proc.stderr
        proc = subprocess.run(
            sandbox.bwrap_args([], [], run) + ["sh", "-c", f"echo x > {data}"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert proc.returncode != 0 and data.read_text() == "emma\n"  # read-only


LIMITS_CODE = r"""
import ctypes, os, sys, time
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
for where in ["/tmp", "/dev/shm", os.getcwd(), sys.argv[1]]:  # 1 MB files, each under RLIMIT_FSIZE
    mb = 0
    try:
        for mb in range(64):
            with open(f"{where}/fill{mb}", "wb") as f:
                f.write(bytes(2**20))
    except OSError as e:
        print("full", where, mb, e.errno)
    for name in os.listdir(where):
        if name.startswith("fill"):
            os.remove(f"{where}/{name}")
try:
    with open(os.path.join(sys.argv[1], "big"), "wb") as f:  # the runtime folder, on the host's disk
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
    """Small limits (32 tasks, 8 MB files, 4 MB /tmp, /dev/shm and working folder, a 16 MB runtime folder):
    each is hit, with its error, and no capability, no unmount, no write to /dev, /root or /run; the working
    folder is a copy and the runtime folder a tmpfs of the grading process's: nothing written there
    reaches the host's folders."""
    import errno

    with tempfile.TemporaryDirectory(prefix="bn-limits-", dir="/var/tmp") as tmp:
        run, seed, work = Path(tmp) / "run", Path(tmp) / "seed", Path(tmp) / "work"
        for folder in (run, seed, work):
            folder.mkdir()
        (seed / "given.txt").write_text("beside the notebooks")
        uid = sandbox.host_uid()
        sandbox.hand_over([run, seed], uid)
        cmd = sandbox.command(
            [sys.executable, "-c", LIMITS_CODE, str(run)],
            sandbox=True,
            memory_bytes=4 * 2**30,
            writable=[],
            hidden=[],
            runtime=run,
            private={seed: work},
            nproc=32,
            fsize=8 * 2**20,
            tmp_bytes=4 * 2**20,
            uid=uid,
        )
        # what worker.grade does before it starts a kernel
        private = "import os, sys; from grader.autograde import sandbox; "
        private += "assert sandbox.private_tmpfs(sys.argv[1], 16 * 2**20); os.execvp(sys.argv[2], sys.argv[2:])"
        cmd = [sys.executable, "-c", private, str(run), *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=work)
        lines = {line.split()[0]: line.split()[1:] for line in proc.stdout.splitlines()}
        assert proc.returncode == 0, proc.stderr
        assert lines["caps"] == ["0"] and lines["umount"] == ["-1"] and "wrote" not in lines, proc.stdout
        full = [line.split() for line in proc.stdout.splitlines() if line.startswith("full")]
        assert [(w, int(e)) for w, _, e in (f[1:] for f in full)] == [
            ("/tmp", errno.ENOSPC),
            ("/dev/shm", errno.ENOSPC),
            (str(work), errno.ENOSPC),
            (str(run), errno.ENOSPC),
        ]
        assert [int(mb) <= cap for (_, _, mb, _), cap in zip(full, (4, 4, 4, 16), strict=True)] == [True] * 4, full
        assert sorted(os.listdir(seed)) == ["given.txt"] and not os.listdir(work)  # the host saw no write
        assert lines["fsize"] == ["8", str(errno.EFBIG)]
        assert not os.listdir(run)  # the 8 MB file was in the runtime folder's tmpfs, gone with it
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
    checkout = paths.REPO
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
        # the user's Python is another prefix: nbconvert's templates (the feedback page's base) are in this one's
        "JUPYTER_PATH": str(Path(sys.prefix) / "share" / "jupyter"),
    }
    return subprocess.run(
        ["runuser", "-u", USER, "--", "env", "-i", *(f"{k}={v}" for k, v in env.items()), *cmd],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
    )


@pytest.mark.slow  # installs the course for an unprivileged user
def test_as_an_unprivileged_user_the_probe_passes_and_a_weak_sandbox_is_refused(root_required, user_python):
    _, python = user_python
    code = (
        "from grader.autograde import sandbox\n"
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
    return build(root, catalogue(ids, notebooks=["01_atomic_backprop"])).course


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
    """Each of ``hostile`` printed "blocked:" but never "ESCAPED", and its cells are held for manual grading (its
    attack is outside the answer language) while the solution gets its points; ``secret`` is nowhere in the output."""
    import nbformat

    summary = json.loads((out / "summary.json").read_text())
    assert summary["totals"]["solution"] > 0, json.dumps(summary["review"])
    for sid in hostile:
        held = [why for why in summary["review"].get(sid, []) if "need manual grading" in why]
        assert held and summary["totals"][sid] == 0, json.dumps(summary["review"])
        nb = nbformat.read(out / "autograded" / sid / course.ASSIGNMENT / "01_atomic_backprop.ipynb", 4)
        printed = json.dumps([c.get("outputs", []) for c in nb.cells])
        assert "blocked:" in printed and "ESCAPED" not in printed, (sid, printed[:3000])
    if secret:
        for path in out.rglob("*"):
            if path.is_file() and path.suffix in (".html", ".ipynb", ".json", ".md", ".log"):
                assert secret not in path.read_text(errors="replace"), path


@pytest.mark.slow  # grades a class
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


@pytest.mark.slow  # grades a class
def test_as_an_unprivileged_user_a_hostile_student_is_graded_and_limited(root_required, user_python):
    """The fork bomb: as a user, RLIMIT_NPROC (in the sandbox's user namespace) stops it, not root's cgroup."""
    root, python = user_python
    build_class(root, ["solution", "forks-500-processes", "escapes-as-root"])
    subprocess.run(["chown", "-R", USER, str(root / "course"), str(root / "submitted")], check=True)
    os.chown(root, pwd.getpwnam(USER).pw_uid, -1)  # for --out
    proc = as_user(*autograde_cmd(python, root), cwd=str(root))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    check_blocked(root / "out", ["forks-500-processes", "escapes-as-root"])
