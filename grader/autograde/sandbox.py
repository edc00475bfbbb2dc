"""The kernel that runs a student's notebook during ``python -m grader autograde``: sandboxed and limited.

A student's notebook is untrusted code. Each student's kernels run under bubblewrap (``bwrap``, Debian
package ``bubblewrap``): the student's zygote and the kernels forked from it (``grader.autograde.zygote``), or with
``--fresh-kernels`` each kernel in a sandbox of its own:

- no privileges, whoever grades: a user namespace (``--unshare-user``) in which the kernel is uid/gid
  65534 with no capability (``--cap-drop ALL``: CapEff is 0), so it can neither mount, unmount (the
  folders that hide things) nor remount; mounts made outside are locked to it anyway. bwrap maps that id
  to the user who runs it; when root grades, the launcher first becomes a host uid of its own
  (``host_uid``: no account, no file on the host, no group), so the kernel owns nothing on the host and
  RLIMIT_NPROC caps its processes (Linux exempts uid 0 from it). That uid could not enter a folder only
  root may (Python may live in /root): before it drops root, the launcher mounts, in a mount namespace
  of its own, a tmpfs over each such folder and binds back what the sandbox binds (``stage``); it hands
  the kernel's folders and its connection files to that uid (``hand_over``, ``--give``). A pids cgroup
  (cgroup v1) caps the processes too, when there is one;
- the whole system read-only (``--ro-bind / /``), with a private ``/dev`` (itself read-only), ``/proc``,
  and size-capped ``/tmp`` and ``/dev/shm`` (``--size`` before ``--tmpfs``): a full one fails with ENOSPC;
- every namespace unshared, the network included: the kernel sees only its own loopback, so it can
  reach no server, not even one on the host's 127.0.0.1. Jupyter's ZeroMQ channels therefore use the
  ``ipc`` transport (Unix sockets in a runtime folder bound into the sandbox), not TCP;
- hidden (an empty read-only folder, or /dev/null for a file, mounted over each): what the class command
  lists (the whole course directory: its .git, notebooks/ with the answer keys, source/, the gradebook,
  the submissions, the grading folder with the other students' copies) and, always, the checkout this
  package is in, the instructor's home ($HOME, the invoking user's, /root), /run and /var/run (where
  servers put their Unix sockets) and every other listening Unix socket on the host (/proc/net/unix);
  bound back read-only inside them: this Python, this package, the data set (``_needed_under_tmp``);
- writable only the kernel's private working folder (``private``: a size-capped tmpfs at nbgrader's
  autograded folder's path, filled with a copy of the files beside the notebooks) and the runtime folder
  with the kernel's sockets;
- a cleared environment (``--clearenv``; also what the zygote's kernels get): only ``ENV_ALLOWED``;
- the sandbox dies with the grading process that started it (``--die-with-parent``).

Limits, set by the launcher ``python -m grader.autograde.sandbox``: outside bwrap, RLIMIT_AS (address space), so a
10 GB allocation fails with a MemoryError in that student's cell, a kernel that dies with its parent, so
killing a student's grading process group takes the kernel with it, and, as root, a pids cgroup of its
own (``--pids``: cgroup v1 /sys/fs/cgroup/pids) and the drop to ``host_uid``; inside bwrap (where
RLIMIT_NPROC counts the sandbox's own uid only), RLIMIT_NPROC (processes and threads: the zygote, each
kernel, torch's and ZeroMQ's threads; default ``NPROC``) and RLIMIT_FSIZE (largest file it may write;
default ``FSIZE``: Python then gets EFBIG); /tmp, /dev/shm and the working folder are tmpfs of a capped
size (``TMP_BYTES``, the working folder that much more than its files): a full one gives ENOSPC. So is
the kernels' runtime folder (``RUNTIME_BYTES``), which the grading process must reach too: it mounts that
tmpfs in a mount namespace of its own before it starts them (``private_tmpfs``, ``worker.grade``).
``--no-sandbox`` keeps RLIMIT_AS and RLIMIT_FSIZE and drops bwrap (and the rest).

This module is long because the rules, the launcher that applies them and the probe that checks them on
this machine must change together; each is small.
"""

from __future__ import annotations

import itertools
import json
import os
import resource
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

from ..paths import NAMES_ENV_VAR, REPO

KERNEL_NAME = "backprop-ninja-sandbox"
SANDBOX_UID = 65534  # the kernel's uid and gid in its user namespace
HOST_UID_BASE = 1_900_000_000  # when root grades: the sandboxes' host uids are above it (``host_uid``)
_SANDBOXES = itertools.count()
PIDS_CGROUP = Path("/sys/fs/cgroup/pids/backprop-ninja")  # root only: one pids cgroup per sandbox in it
TMP_BYTES = 256 * 2**20  # default size of the sandbox's /tmp and of its /dev/shm (each)
NPROC = 256  # default RLIMIT_NPROC in the sandbox: processes + threads of all its kernels
FSIZE = 256 * 2**20  # default RLIMIT_FSIZE: the largest file a kernel may write
RUNTIME_BYTES = 64 * 2**20  # the kernels' runtime folder's tmpfs (``private_tmpfs``): sockets, HOME, IPython's
RUNTIME_ENV = "BN_KERNEL_TMPFS"  # "BYTES PATH": a grading process (``worker.grade``) makes it (not the kernel)
# The kernel's whole environment (the rest of the grading process's, a DATABASE_URL with its password
# for one, never reaches it): where to find programs (PATH) and its own folders (HOME, TMPDIR, IPython's,
# matplotlib's, Jupyter's runtime folder), the locale, no .pyc files in read-only folders, matplotlib's
# backend, the data set and the grading mode the notebooks read (BACKPROP_NINJA_*, NBGRADER_EXECUTION), the
# thread counts an instructor may set for torch and NumPy, and debugpy's switch Jupyter sets.
ENV_ALLOWED = (
    "PATH", "HOME", "TMPDIR", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE",
    "PYTHONDONTWRITEBYTECODE", "MPLBACKEND", "MPLCONFIGDIR", "IPYTHONDIR",
    "JUPYTER_RUNTIME_DIR", "JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR",
    "BACKPROP_NINJA_NAMES", "BACKPROP_NINJA_GRADING", "BACKPROP_NINJA_PROGRESS", "NBGRADER_EXECUTION",
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "PYDEVD_DISABLE_FILE_VALIDATION",
)  # fmt: skip


class SandboxError(RuntimeError):
    """No working sandbox: the message says why."""


def kernel_env(env) -> dict[str, str]:
    """The part of ``env`` a kernel may see (``ENV_ALLOWED``)."""
    return {k: env[k] for k in ENV_ALLOWED if k in env}


# hidden from every kernel: servers' sockets, and what root owns and keeps secret (the kernel of a root
# grader is host uid 0, owner of those files)
SYSTEM_PRIVATE = (
    "/run", "/var/run", "/etc/shadow", "/etc/gshadow", "/etc/shadow-", "/etc/gshadow-", "/etc/ssh",
    "/etc/ssl/private", "/var/lib", "/var/log", "/var/backups", "/var/spool", "/var/mail",
)  # fmt: skip


def host_uid() -> int | None:
    """The host uid and gid of a sandbox started from this process: None unless root grades (bwrap then
    maps the kernel to the grader's own user); as root, one of its own for each sandbox (this process's
    pid and a counter: two students graded at once never share one), that no account on this host has."""
    if os.geteuid() != 0:
        return None
    import grp
    import pwd

    uid = HOST_UID_BASE + (os.getpid() % 10**5) * 1000 + next(_SANDBOXES) % 1000
    while True:
        try:
            pwd.getpwuid(uid)
        except KeyError:
            try:
                grp.getgrgid(uid)
            except KeyError:
                return uid
        uid += 10**8


def hand_over(paths, uid: int | None) -> None:
    """Give ``paths`` and everything in them (links not followed) to ``uid``: the folders the sandbox may
    write, made by the grading process, which the kernel could not write as another user. None: nothing."""
    if uid is None:
        return
    for top in paths:
        top = str(top)
        if not os.path.lexists(top):
            continue
        os.chown(top, uid, uid, follow_symlinks=False)
        if os.path.isdir(top) and not os.path.islink(top):
            for d, dirs, files in os.walk(top):
                for name in dirs + files:
                    os.chown(os.path.join(d, name), uid, uid, follow_symlinks=False)


def give(path: str, uid: int) -> None:
    """Give the file ``path`` to ``uid`` if it is a regular file of ours (not a link): a kernel's connection
    file, which the kernel manager wrote for its own user only."""
    st = os.lstat(path)
    if stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid():
        os.chown(path, uid, uid, follow_symlinks=False)


def private_paths() -> list[Path]:
    """What no kernel sees, whatever the course: the checkout this package is in (its .git, notebooks/,
    source/), the instructor's home, /run and /var/run, and every listening Unix socket outside /tmp."""
    import pwd

    checkout = REPO
    homes = {os.environ.get("HOME") or "/root", "/root"}
    for who in (os.getuid(), os.environ.get("SUDO_USER")):
        try:
            homes.add(pwd.getpwuid(who).pw_dir if isinstance(who, int) else pwd.getpwnam(who).pw_dir)
        except (KeyError, TypeError):
            pass
    out = [Path(h) for h in homes] + [Path(p) for p in SYSTEM_PRIVATE]
    if (checkout / "pyproject.toml").is_file():
        out.append(checkout)
    try:
        with open("/proc/net/unix") as f:
            sockets = [line.split(None, 7)[7].strip() for line in f.readlines()[1:] if len(line.split()) > 7]
    except OSError:
        sockets = []
    for name in sockets:
        path = Path(name)
        try:
            if name.startswith("/") and stat.S_ISSOCK(path.lstat().st_mode):
                out.append(path)
        except OSError:
            pass
    root, tmp = Path("/"), Path("/tmp").resolve()
    return [p for p in out if p.exists() and p.resolve() != root and tmp not in p.resolve().parents]


def _needed_under_tmp(hidden=()) -> list[str]:
    """What the kernel needs to read that lives under the host's /tmp (a checkout or a venv there) or under
    a hidden folder (a course checkout that holds the venv): the Python installation and its site-packages,
    the grader package, the data set named by ``grader.paths.NAMES_ENV_VAR`` (or the checkout's data/ folder)."""
    tmp = Path("/tmp").resolve()
    under = [tmp, *(Path(h).resolve() for h in hidden)]
    out: list[Path] = []
    for path in sorted(_needed(), key=lambda p: len(p.parts)):
        if any(u in path.parents for u in under) and not any(o == path or o in path.parents for o in out):
            out.append(path)
    return [str(p) for p in out]


def _needed() -> list[Path]:
    """What every kernel reads: the Python installation and its site-packages, the grader package, the data."""
    package = Path(__file__).resolve().parent.parent  # grader/
    needed = [
        sys.prefix,
        sys.base_prefix,
        sys.exec_prefix,
        package,
        REPO / "data",
        os.environ.get(NAMES_ENV_VAR) or "",
        *(p for p in sys.path if Path(p).name in ("site-packages", "dist-packages")),  # a .pth's too
    ]
    return [Path(p).resolve() for p in needed if p and Path(p).exists()]


def bwrap_args(
    writable: list,
    hidden: list[Path],
    runtime: Path,
    private: dict[Path, Path] | None = None,
    *,
    tmp_bytes: int = TMP_BYTES,
    env: dict | None = None,
    readable: tuple = (),
) -> list[str]:
    """bwrap's arguments (without the command) for the rules of the module docstring. ``writable``: folders,
    or (source, destination) pairs (the source's content, writable, at the destination). ``env``: the
    environment to give the sandbox (filtered by ``kernel_env``); None: the launcher's ``--clearenv`` does it.
    ``readable``: host folders bound read-only before the writable ones (which may be inside them).

    ``private`` maps a host folder to the path where the kernel sees a copy of it instead of what is there
    (the kernel's working folder: nbgrader's autograded folder, which the grading process writes after
    the kernel, is never the folder the kernel writes into): a tmpfs of ``tmp_bytes`` more than the
    folder holds, which the launcher inside fills (``--seed``) from the host folder, bound read-only at
    its own path. What the kernel writes there stays in the sandbox, within that size."""
    size = ["--size", str(tmp_bytes)]
    args = ["bwrap", *env_args(env)] if env is not None else ["bwrap"]
    args += [
        "--unshare-all",
        "--unshare-user",
        "--uid",
        str(SANDBOX_UID),
        "--gid",
        str(SANDBOX_UID),
        "--cap-drop",
        "ALL",
        "--die-with-parent",
        "--ro-bind",
        "/",
        "/",
        "--dev",
        "/dev",
        *size,
        "--tmpfs",
        "/dev/shm",
        "--remount-ro",
        "/dev",
        "--proc",
        "/proc",
        *size,
        "--perms",
        "1777",
        "--tmpfs",
        "/tmp",
    ]
    hidden = [*hidden, *private_paths()]
    readonly = []
    for path in sorted({Path(p).resolve() for p in hidden}, key=lambda p: len(p.parts)):
        if any(Path(r) in path.parents for r in readonly):  # inside a hidden folder already
            continue
        if path.is_dir():
            args += ["--tmpfs", str(path)]
            readonly.append(str(path))
        elif path.exists():
            args += ["--ro-bind", "/dev/null", str(path)]
    # the private /tmp and the hidden folders must not hide Python, the grader or the data
    for path in _needed_under_tmp(hidden):
        args += ["--ro-bind", path, path]
    for path in readable:
        args += ["--ro-bind", str(Path(path).resolve()), str(Path(path).resolve())]
    for path in [runtime, *writable]:
        src, dest = path if isinstance(path, tuple) else (path, path)
        args += ["--bind", str(Path(src).resolve()), str(Path(dest).resolve())]
    for host, seen_as in (private or {}).items():  # a tmpfs the launcher inside fills from host (``--seed``)
        room = tmp_bytes + _size(Path(host))
        args += ["--size", str(room), "--tmpfs", str(Path(seen_as).resolve())]
        args += ["--ro-bind", str(Path(host).resolve()), str(Path(host).resolve())]
    for path in readonly:  # after the binds inside them: the empty folders become read-only too
        args += ["--remount-ro", path]
    return args


def _size(folder: Path) -> int:
    """The bytes of the regular files in ``folder`` (links not followed)."""
    total = 0
    for d, _, files in os.walk(folder):
        for name in files:
            st = os.lstat(os.path.join(d, name))
            total += st.st_size if stat.S_ISREG(st.st_mode) else 0
    return total


def env_args(env) -> list[str]:
    """bwrap's arguments that give the sandbox exactly ``kernel_env(env)``."""
    out = ["--clearenv"]
    for k, v in kernel_env(env).items():
        out += ["--setenv", k, v]
    return out


def command(
    inner: list[str],
    *,
    sandbox: bool,
    memory_bytes: int,
    writable: list,
    hidden: list[Path],
    runtime: Path,
    private: dict[Path, Path] | None = None,
    python: str = sys.executable,
    nproc: int = NPROC,
    fsize: int = FSIZE,
    tmp_bytes: int = TMP_BYTES,
    uid: int | None = None,
    give: tuple[str, ...] = (),
    readable: tuple = (),
) -> list[str]:
    """The limited (and, with ``sandbox``, sandboxed) command that runs ``inner``: the launcher
    ``python -m grader.autograde.sandbox`` (limits, the user, the environment) around bwrap around the launcher again
    (the limits that must be set inside the user namespace) around ``inner``. ``uid``: the host uid the
    launcher becomes before bwrap (``host_uid``; root only); ``give``: files it hands to that uid first."""
    launcher = [python, "-m", "grader.autograde.sandbox"]
    if not sandbox:
        return [*launcher, "--memory", str(memory_bytes), "--fsize", str(fsize), "--", *inner]
    seeds = [a for host, dest in (private or {}).items() for a in ("--seed", str(Path(host).resolve()), str(dest))]
    inside = [*launcher, "--nproc", str(nproc), "--fsize", str(fsize), *seeds, "--", *inner]
    wrapped = bwrap_args(writable, hidden, runtime, private, tmp_bytes=tmp_bytes, readable=readable) + inside
    user = ["--host-uid", str(uid), *(a for path in give for a in ("--give", path))] if uid is not None else []
    return [*launcher, "--memory", str(memory_bytes), "--pids", str(nproc), *user, "--clearenv", "--", *wrapped]


def kernelspec(
    dest: Path,
    *,
    sandbox: bool,
    memory_bytes: int,
    writable: list,
    hidden: list[Path],
    runtime: Path,
    private: dict[Path, Path] | None = None,
    python: str = sys.executable,
    zygote: list[str] | None = None,
    env: dict[str, str] | None = None,
    limits: dict[str, int] | None = None,
    uid: int | None = None,
    readable: tuple = (),
) -> Path:
    """Write ``dest/kernels/<KERNEL_NAME>/kernel.json`` (put ``dest`` on JUPYTER_PATH); return its folder.
    ``env``: more environment for the kernel (over the defaults below). ``limits``: ``nproc``, ``fsize``,
    ``tmp_bytes`` of ``command`` (default: NPROC, FSIZE, TMP_BYTES). ``uid``: the sandbox's host uid
    (``host_uid``), to which the runtime folder and the writable folders are handed over (``hand_over``).
    ``readable``: folders the kernel reads (the connection files'), read-only (``bwrap_args``).

    With ``zygote`` (a list of modules to preload, maybe empty) the sandboxed, limited process is
    ``grader.autograde.zygote``'s server, described in ``zygote.json`` beside kernel.json for the grading
    process to start, and the kernelspec's command is its client (see grader/autograde/zygote.py)."""
    # parent_handle=0: in its own PID namespace the kernel sees PID 1 as its parent and would think it
    # was orphaned; bwrap --die-with-parent and the launcher do that job
    kernel_args = ["-f", "{connection_file}", "--IPKernelApp.parent_handle=0"]
    folder = dest / "kernels" / KERNEL_NAME
    folder.mkdir(parents=True, exist_ok=True)
    env = {"PYTHONDONTWRITEBYTECODE": "1", "MPLBACKEND": "Agg", "TMPDIR": "/tmp", **(env or {})}
    hand_over([runtime, *(w[0] if isinstance(w, tuple) else w for w in writable), *(private or {})], uid)
    if zygote is None:
        inner = [python, "-m", "ipykernel_launcher", *kernel_args]
    else:
        socket_path = str(Path(runtime).resolve() / "zygote")
        inner = [python, "-m", "grader.autograde.zygote", "serve", socket_path, *zygote]
    limited = command(
        inner,
        sandbox=sandbox,
        memory_bytes=memory_bytes,
        writable=writable,
        hidden=hidden,
        runtime=runtime,
        private=private,
        python=python,
        uid=uid,
        give=("{connection_file}",) if zygote is None else (),
        readable=readable,
        **(limits or {}),
    )
    if zygote is None:
        argv = limited
    else:
        owner = ["--owner", str(uid)] if uid is not None else []
        argv = [python, "-m", "grader.autograde.zygote", "connect", socket_path, *owner, "--", *kernel_args]
        (folder / "zygote.json").write_text(json.dumps({"argv": limited, "socket": socket_path}, indent=1))
    spec = {
        "argv": argv,
        "display_name": "Python 3 (sandboxed grading)",
        "language": "python",
        "interrupt_mode": "message",  # a signal cannot cross bwrap's PID namespace; a message can
        "env": env,
    }
    (folder / "kernel.json").write_text(json.dumps(spec, indent=1))
    return folder


# What the probe's sandboxed Python prints: each line a thing it could do that it must not
PROBE_CODE = r"""
import ctypes, os, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
w, hidden, paths = sys.argv[1], sys.argv[2], sys.argv[3:]
open(os.path.join(w, "ok"), "w").write("ok")
caps = [line.split()[1] for line in open("/proc/self/status") if line.startswith("CapEff:")]
if not caps or int(caps[0], 16) != 0:
    print("caps", caps[0] if caps else "unknown")
if "BN_PROBE_SECRET" in os.environ:
    print("env")
if os.path.isdir(hidden) and os.listdir(hidden):
    print("hidden")
for path in paths:  # the host checks whether they appeared
    try:
        open(path, "w").write("escaped")
    except OSError:
        pass
try:
    socket.create_connection(("127.0.0.1", 9), timeout=2)
    print("net")
except OSError:
    pass
if libc.mount(b"none", w.encode(), b"tmpfs", 0, None) == 0:
    print("mount")
if libc.umount2(b"/root", 2) == 0:  # MNT_DETACH; /root is always hidden
    print("umount")
if libc.mount(None, b"/", None, 32 | 4096, None) == 0:  # MS_REMOUNT | MS_BIND: / read-write
    print("remount")
"""


def probe(timeout: float = 30, wrap=None) -> None:
    """Check that bwrap can start a sandbox here, as the kernels get it (``command``), in which the kernel
    has no capability (CapEff 0), is not host root (what it writes is not root's), cannot mount, unmount a
    hidden folder, remount / read-write, write outside its scratch folder, read a hidden folder, nor reach the
    network. ``wrap``: a function of the command, to test the probe on a weakened one.

    Raises SandboxError with the reason when it cannot.
    """
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise SandboxError(
            "bubblewrap is not installed (no `bwrap` on PATH): install Debian's package "
            "`bubblewrap` (apt-get install bubblewrap), or pass --no-sandbox to grade "
            "without one (students' code then runs with your permissions)"
        )
    with tempfile.TemporaryDirectory(prefix="bn-probe-") as tmp:
        tmp = Path(tmp)
        (tmp / "w").mkdir()
        (tmp / "run").mkdir()
        (tmp / "hidden").mkdir()
        (tmp / "hidden" / "secret").write_text("secret")
        outside = [tmp / "outside", Path(sys.prefix) / f".bn-probe-{os.getpid()}"]
        inner = [sys.executable, "-c", PROBE_CODE, str(tmp / "w"), str(tmp / "hidden"), *map(str, outside)]
        uid = host_uid()
        hand_over([tmp / "w", tmp / "run"], uid)
        cmd = command(
            inner,
            sandbox=True,
            memory_bytes=0,
            writable=[tmp / "w"],
            hidden=[tmp / "hidden"],
            runtime=tmp / "run",
            uid=uid,
        )
        cmd = wrap(cmd) if wrap else cmd
        try:
            env = dict(os.environ, BN_PROBE_SECRET="secret")  # what the grading process has, never the kernel
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd="/", env=env)
        except subprocess.TimeoutExpired:
            raise SandboxError(f"bwrap did not start a sandbox within {timeout:.0f} s") from None
        if proc.returncode != 0:
            raise SandboxError(
                f"bwrap cannot create a sandbox here (exit {proc.returncode}): "
                f"{proc.stderr.strip() or proc.stdout.strip()}. Unprivileged user namespaces "
                "may be disabled (sysctl kernel.unprivileged_userns_clone=1, "
                "user.max_user_namespaces), or run with --no-sandbox"
            )
        seen = proc.stdout.split()
        for path in outside:
            if path.exists():
                path.unlink()
                seen.append("outside-writable")
        if not (tmp / "w" / "ok").is_file():
            raise SandboxError("bwrap started, but the sandbox could not write its scratch folder")
        if (tmp / "w" / "ok").lstat().st_uid == 0:  # what the kernel writes is its host uid's
            seen.append("hostroot")
        problems = [
            why
            for bad, why in [
                ("caps", f"kept capabilities (CapEff {_after(proc.stdout, 'caps')}, not 0)"),
                ("hostroot", "ran as host root (uid 0 outside its user namespace)"),
                ("mount", "could mount a file system"),
                ("umount", "could unmount a hidden folder"),
                ("remount", "could remount / read-write"),
                ("outside-writable", "could write outside its scratch folder"),
                ("hidden", "could read a hidden folder"),
                ("env", "saw the grading process's environment"),
                ("net", "could reach 127.0.0.1"),
            ]
            if bad in seen
        ]
        if problems:
            raise SandboxError("bwrap started, but the sandbox " + "; ".join(problems))


def _after(text: str, word: str) -> str:
    lines = [line for line in text.splitlines() if line.startswith(word + " ")]
    return lines[0][len(word) + 1 :].strip("[]'") if lines else "?"


def die_with_parent() -> None:
    """Have Linux SIGKILL this process when its parent dies (PR_SET_PDEATHSIG)."""
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # pragma: no cover - not Linux: the wall-clock limit still kills the group
        pass


def pids_cgroup(limit: int) -> bool:
    """Move this process into a new pids cgroup allowing ``limit`` tasks (False: no cgroup v1 pids
    hierarchy we may write); remove the empty ones earlier sandboxes left."""
    try:
        PIDS_CGROUP.mkdir(exist_ok=True)
        for old in PIDS_CGROUP.glob("bn-*"):
            try:
                if not (old / "cgroup.procs").read_text().strip():
                    old.rmdir()
            except OSError:
                pass
        mine = PIDS_CGROUP / f"bn-{os.getpid()}"
        mine.mkdir()
        (mine / "pids.max").write_text(str(limit))
        (mine / "cgroup.procs").write_text(str(os.getpid()))
        return True
    except OSError:
        return False


_BIND_FLAGS = ("--bind", "--ro-bind", "--bind-try", "--ro-bind-try", "--dev-bind")


def _enters(folder: str, uid: int) -> bool:
    """Whether ``uid`` (no supplementary group, gid ``uid``) may enter ``folder``."""
    st = os.stat(folder)
    bit = 0o100 if st.st_uid == uid else 0o010 if st.st_gid == uid else 0o001
    return bool(st.st_mode & bit)


def _any_closed(paths: list[Path], uid: int) -> bool:
    """Whether a folder on the way to one of ``paths`` is one ``uid`` cannot enter."""
    return any(not _enters(str(folder), uid) for path in paths for folder in path.parents)


def _mount(source, target: str, fstype, flags: int, data=None) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    enc = [x.encode() if isinstance(x, str) else x for x in (source, target, fstype, data)]
    if libc.mount(enc[0], enc[1], enc[2], flags, enc[3]) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source} on {target}: {os.strerror(err)}")


def stage(bwrap: list[str], uid: int) -> None:
    """Before root becomes ``uid``: make what the sandbox binds and hides (``bwrap``'s sources and
    destinations) and what every kernel reads (``_needed``) reachable to ``uid``. In a mount namespace of
    this process's own, each folder on the way to one of them that ``uid`` cannot enter becomes an empty
    tmpfs, and the paths wanted inside it are bound back, shallowest first (a folder closed again inside
    one of those is handled in turn); the rest of such a folder stays out of reach. Nothing to do when
    nothing is closed."""
    import ctypes

    wanted = list(_needed())
    for i, arg in enumerate(bwrap[:-2]):
        if arg in _BIND_FLAGS:
            wanted += [Path(os.path.realpath(p)) for p in bwrap[i + 1 : i + 3] if p not in ("/", "/dev/null")]
        elif arg == "--tmpfs" and bwrap[i + 1] != "/":  # a hidden folder: bwrap mounts on it
            wanted.append(Path(os.path.realpath(bwrap[i + 1])))
    wanted = sorted({p for p in wanted if os.path.lexists(p)}, key=lambda p: (len(p.parts), str(p)))
    if not _any_closed(wanted, uid):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x20000) != 0:  # CLONE_NEWNS
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
    ms_bind, ms_rec, ms_private = 4096, 16384, 1 << 18
    _mount(None, "/", None, ms_rec | ms_private)
    fds = {path: os.open(path, os.O_PATH | os.O_CLOEXEC) for path in wanted}  # before a tmpfs hides them
    try:
        for path, fd in fds.items():
            for folder in reversed(path.parents):  # from / down, in the view staged so far
                if not folder.is_dir():
                    folder.mkdir(mode=0o755)  # inside a tmpfs of ours
                elif not _enters(str(folder), uid):
                    _mount("tmpfs", str(folder), "tmpfs", 0, "mode=0755")
            real = os.fstat(fd)
            try:
                here = os.stat(path)
            except FileNotFoundError:
                here = None
            if here is not None and (here.st_dev, here.st_ino) == (real.st_dev, real.st_ino):
                continue  # reachable as it is
            if here is None and stat.S_ISDIR(real.st_mode):
                path.mkdir(mode=0o755)
            elif here is None:
                path.touch()
            _mount(f"/proc/self/fd/{fd}", str(path), None, ms_bind | ms_rec)
    finally:
        for fd in fds.values():
            os.close(fd)


def private_tmpfs(folder, size: int) -> bool:
    """Mount a tmpfs of ``size`` bytes over ``folder``, with a copy of what is in it (owners and modes kept),
    in a mount namespace of this process's own: what it and its children (the zygote, the kernels, their
    sandboxes) see there is that tmpfs, which ends with the last of them; the host's folder stays as it was.

    For the runtime folder, which a kernel must be able to write (Jupyter's sockets are there) and which
    the grading process must reach: a full one gives the kernel ENOSPC instead of filling the host's disk.
    Not root: in a user namespace that maps only this user, to itself (nothing else changes: files keep
    their owners, access is checked as before). False, and nothing changed, where that is not allowed."""
    import ctypes

    folder = os.path.realpath(folder)
    libc = ctypes.CDLL(None, use_errno=True)
    uid, gid, root = os.getuid(), os.getgid(), os.geteuid() == 0
    st = os.stat(folder)
    src = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    old = f"/proc/self/fd/{src}"
    try:
        if libc.unshare(0x20000 if root else 0x20000 | 0x10000000) != 0:  # CLONE_NEWNS (| CLONE_NEWUSER)
            return False
        mounted = False
        try:
            if not root:
                for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
                    with open(f"/proc/self/{name}", "w") as f:
                        f.write(text)
            _mount(None, "/", None, 16384 | (1 << 18))  # MS_REC | MS_PRIVATE: nothing propagates to the host
            _mount("tmpfs", folder, "tmpfs", 2 | 4, f"size={size},mode={stat.S_IMODE(st.st_mode):o}")  # nosuid,nodev
            mounted = True
            shutil.copytree(old, folder, symlinks=True, dirs_exist_ok=True)
            os.chown(folder, st.st_uid, st.st_gid)
            for d, dirs, files in os.walk(old):
                for name in dirs + files:
                    was = os.lstat(os.path.join(d, name))
                    now = os.path.join(folder, os.path.relpath(os.path.join(d, name), old))
                    os.chown(now, was.st_uid, was.st_gid, follow_symlinks=False)
            return True
        except OSError:
            if mounted:
                libc.umount2(folder.encode(), 2)  # MNT_DETACH: the host's folder again
            return False
    finally:
        os.close(src)


def become(uid: int) -> None:
    """Drop root for good: uid and gid ``uid``, no supplementary group."""
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)


def main(argv=None) -> int:
    """``python -m grader.autograde.sandbox [--memory BYTES] [--nproc N] [--fsize BYTES] [--pids N]
    [--host-uid UID [--give FILE]...] [--seed FROM TO]... [--clearenv] -- COMMAND...``: set the limits
    (--pids: as root, a pids cgroup); copy each folder FROM into TO; with --clearenv, keep only
    ``kernel_env`` (and give bwrap ``env_args``); as root with --host-uid, give each FILE to UID, ``stage`` what
    bwrap binds, and become UID; then exec COMMAND."""
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--")
    options, command = argv[:split], argv[split + 1 :]

    def value(name: str) -> int:
        return int(options[options.index(name) + 1]) if name in options else 0

    for name, limit in [("--memory", resource.RLIMIT_AS), ("--nproc", resource.RLIMIT_NPROC)]:
        if value(name) > 0:
            resource.setrlimit(limit, (value(name), value(name)))
    if value("--fsize") > 0:
        resource.setrlimit(resource.RLIMIT_FSIZE, (value("--fsize"), value("--fsize")))
    for i, option in enumerate(options[:-2]):
        if option == "--seed":  # inside the sandbox: the working folder's tmpfs gets its files
            shutil.copytree(options[i + 1], options[i + 2], symlinks=True, dirs_exist_ok=True)
    env = dict(os.environ)
    if "--clearenv" in options:
        env = kernel_env(os.environ)
        if Path(command[0]).name == "bwrap":
            command = [command[0], *env_args(env), *command[1:]]
    if value("--pids") > 0 and os.geteuid() == 0:
        pids_cgroup(value("--pids"))
    uid = value("--host-uid")
    if uid > 0 and os.geteuid() == 0:
        for i, option in enumerate(options[:-1]):
            if option == "--give":
                give(options[i + 1], uid)
        if Path(command[0]).name == "bwrap":
            stage(command, uid)
        become(uid)
    die_with_parent()  # after become: a change of user clears it
    os.execvpe(command[0], command, env)
    return 127  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
