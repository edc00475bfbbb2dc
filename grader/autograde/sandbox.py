"""The kernel that runs a student's notebook during ``python -m grader autograde``: sandboxed and limited.

A student's notebook is untrusted code. Each student's kernels run under bubblewrap (``bwrap``, Debian
package ``bubblewrap``): the student's zygote and the kernels forked from it (``grader.autograde.zygote``), or with
``--fresh-kernels`` each kernel in a sandbox of its own:

- the whole system read-only (``--ro-bind / /``), with a private ``/tmp``, ``/dev`` and ``/proc``;
- every namespace unshared, the network included: the kernel sees only its own loopback, so it can
  reach no server, not even one on the host's 127.0.0.1. Jupyter's ZeroMQ channels therefore use the
  ``ipc`` transport (Unix sockets in a runtime folder bound into the sandbox), not TCP;
- the instructor's folders hidden (the course's source/ with the solutions and hidden tests, the
  gradebook, the submissions, the grading folder with the other students' copies): an empty
  read-only folder is mounted over each;
- writable only the student's own scratch copy (the folder nbgrader runs the notebook in) and the
  runtime folder with the kernel's sockets;
- the sandbox dies with the grading process that started it (``--die-with-parent``).

Limits: the launcher sets RLIMIT_AS (address space) before it starts bwrap, so a 10 GB allocation fails
with a MemoryError in that student's cell, and asks the kernel to die with its parent, so killing a
student's grading process group takes the kernel with it. ``--no-sandbox`` keeps these limits and
drops bwrap.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ..paths import NAMES_ENV_VAR, REPO

KERNEL_NAME = "backprop-ninja-sandbox"


class SandboxError(RuntimeError):
    """No working sandbox: the message says why."""


def _needed_under_tmp() -> list[str]:
    """What the kernel needs to read that lives under the host's /tmp (a checkout or a venv there): the
    Python installation, this package's checkout, the data set named by ``grader.paths.NAMES_ENV_VAR``."""
    tmp = Path("/tmp").resolve()
    needed = [
        sys.prefix,
        sys.base_prefix,
        sys.exec_prefix,
        REPO,
        os.environ.get(NAMES_ENV_VAR) or "",
    ]
    out: list[Path] = []
    for path in sorted((Path(p).resolve() for p in needed if p and Path(p).exists()), key=lambda p: len(p.parts)):
        if tmp in path.parents and not any(o == path or o in path.parents for o in out):
            out.append(path)
    return [str(p) for p in out]


def bwrap_args(
    writable: list[Path], hidden: list[Path], runtime: Path, private: dict[Path, Path] | None = None
) -> list[str]:
    """bwrap's arguments (without the command) for the rules of the module docstring.

    ``private`` maps a host folder to the path where the kernel sees it instead of what is there (the
    kernel's working folder: nbgrader's autograded folder, which the grading process writes after the
    kernel, is never the folder the kernel writes into)."""
    args = [
        "bwrap",
        "--ro-bind",
        "/",
        "/",
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        "--tmpfs",
        "/tmp",
        "--unshare-all",
        "--die-with-parent",
    ]
    for path in _needed_under_tmp():  # the private /tmp must not hide Python, the grader or the data
        args += ["--ro-bind", path, path]
    readonly = []
    for path in hidden:
        path = Path(path).resolve()
        if path.is_dir():
            args += ["--tmpfs", str(path)]
            readonly.append(str(path))
        elif path.exists():
            args += ["--ro-bind", "/dev/null", str(path)]
    for path in [runtime, *writable]:
        path = Path(path).resolve()
        args += ["--bind", str(path), str(path)]
    for host, seen_as in (private or {}).items():
        args += ["--bind", str(Path(host).resolve()), str(Path(seen_as).resolve())]
    for path in readonly:  # after the binds inside them: the empty folders become read-only too
        args += ["--remount-ro", path]
    return args


def kernelspec(
    dest: Path,
    *,
    sandbox: bool,
    memory_bytes: int,
    writable: list[Path],
    hidden: list[Path],
    runtime: Path,
    private: dict[Path, Path] | None = None,
    python: str = sys.executable,
    zygote: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> Path:
    """Write ``dest/kernels/<KERNEL_NAME>/kernel.json`` (put ``dest`` on JUPYTER_PATH); return its folder.
    ``env``: more environment for the kernel (over the defaults below).

    With ``zygote`` (a list of modules to preload, maybe empty) the sandboxed, limited process is
    ``grader.autograde.zygote``'s server, described in ``zygote.json`` beside kernel.json for the grading
    process to start, and the kernelspec's command is its client (see grader/autograde/zygote.py)."""
    # parent_handle=0: in its own PID namespace the kernel sees PID 1 as its parent and would think it
    # was orphaned; bwrap --die-with-parent and the launcher do that job
    kernel_args = ["-f", "{connection_file}", "--IPKernelApp.parent_handle=0"]
    folder = dest / "kernels" / KERNEL_NAME
    folder.mkdir(parents=True, exist_ok=True)
    env = {"PYTHONDONTWRITEBYTECODE": "1", "MPLBACKEND": "Agg", "TMPDIR": "/tmp", **(env or {})}
    if zygote is None:
        inner = [python, "-m", "ipykernel_launcher", *kernel_args]
    else:
        socket_path = str(Path(runtime).resolve() / "zygote")
        inner = [python, "-m", "grader.autograde.zygote", "serve", socket_path, *zygote]
    wrapped = bwrap_args(writable, hidden, runtime, private) + inner if sandbox else inner
    limited = [python, "-m", "grader.autograde.sandbox", "--memory", str(memory_bytes), "--", *wrapped]
    if zygote is None:
        argv = limited
    else:
        argv = [python, "-m", "grader.autograde.zygote", "connect", socket_path, "--", *kernel_args]
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


def probe(timeout: float = 30) -> None:
    """Check that bwrap can start a sandbox here that cannot write outside it nor reach the network.

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
        (tmp / "hidden").mkdir()
        (tmp / "hidden" / "secret").write_text("secret")
        (tmp / "run").mkdir()
        outside = [tmp / "outside", Path(sys.prefix) / f".bn-probe-{os.getpid()}"]
        code = (
            "import os, socket\n"
            f"paths = {[str(p) for p in outside]!r}\n"
            f"open({str(tmp / 'w' / 'ok')!r}, 'w').write('ok')\n"
            f"print('hidden' if os.listdir({str(tmp / 'hidden')!r}) else 'no-hidden')\n"
            "for path in paths:\n"
            "    try:\n"
            "        open(path, 'w').write('escaped')\n"
            "    except OSError:\n"
            "        pass\n"
            "try:\n"
            "    socket.create_connection(('127.0.0.1', 9), timeout=2)\n"
            "    print('net')\n"
            "except OSError:\n"
            "    print('no-net')\n"
        )
        cmd = bwrap_args([tmp / "w"], [tmp / "hidden"], tmp / "run") + [sys.executable, "-c", code]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise SandboxError(f"bwrap did not start a sandbox within {timeout:.0f} s") from None
        if proc.returncode != 0:
            raise SandboxError(
                f"bwrap cannot create a sandbox here (exit {proc.returncode}): "
                f"{proc.stderr.strip() or proc.stdout.strip()}. Unprivileged user namespaces "
                "may be disabled (sysctl kernel.unprivileged_userns_clone=1), or run "
                "with --no-sandbox"
            )
        seen = proc.stdout.split()
        for path in outside:
            if path.exists():
                path.unlink()
                seen.append("outside-writable")
        if not (tmp / "w" / "ok").is_file():
            raise SandboxError("bwrap started, but the sandbox could not write its scratch folder")
        for bad, why in [
            ("outside-writable", "could write outside its scratch folder"),
            ("hidden", "could read a hidden folder"),
            ("net", "could reach 127.0.0.1"),
        ]:
            if bad in seen:
                raise SandboxError(f"bwrap started, but the sandbox {why}")


def die_with_parent() -> None:
    """Have Linux SIGKILL this process when its parent dies (PR_SET_PDEATHSIG)."""
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # pragma: no cover - not Linux: the wall-clock limit still kills the group
        pass


def main(argv=None) -> int:
    """``python -m grader.autograde.sandbox --memory BYTES -- COMMAND...``: set the limits, then exec COMMAND."""
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--")
    options, command = argv[:split], argv[split + 1 :]
    memory = int(options[options.index("--memory") + 1]) if "--memory" in options else 0
    if memory > 0:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    die_with_parent()
    os.execvp(command[0], command)
    return 127  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
