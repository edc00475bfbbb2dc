"""One student's kernels, forked from a sandboxed process that has already imported torch.

Plain nbgrader starts a new Python for every notebook, and every one of them pays for ``import torch``
(about 2 s of CPU, a tenth of a student's grading here). During ``python -m grader autograde`` each
student instead gets one *zygote*: a process in that student's sandbox (``grader.autograde.sandbox``: same
bubblewrap rules, same memory limit) that imports ipykernel and the heavy libraries the notebooks
import (``preload``), then waits. Every kernel of that student is ``os.fork()``-ed from it:

- still a new process per notebook, as in plain nbgrader: no variable, cell or output of one notebook
  reaches the next. The zygote runs no torch operation before it forks (torch's thread pools start
  lazily, so forking is safe) and imports nothing of the course but this module (``grader``'s
  ``__init__`` is lazy: no data, no model); each kernel reseeds torch's and numpy's global generators
  from the OS, as a new Python does, and whatever it leaves running is killed once it has ended;
- inside the same sandbox as before; the zygote belongs to one student only and dies with that
  student's grading process (bwrap ``--die-with-parent``); each kernel dies with the zygote.

Jupyter starts a kernel by running its kernelspec's command, watches that process and kills it to stop
the kernel. That command is ``python -m grader.autograde.zygote connect SOCKET -- KERNEL-ARGS``: a small client
(outside the sandbox, it only talks over the Unix socket) that asks the zygote for a kernel with its own
working folder and environment (only ``grader.autograde.sandbox.ENV_ALLOWED`` of it, filtered on both sides), and
exits with that kernel's exit code. When the client is killed, its
socket closes and the zygote kills the kernel. Protocol: one JSON line {"argv", "cwd", "env"} from the
client; the zygote answers ``pid N`` and, when the kernel has ended, ``exit CODE``.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import sys
import time

# Libraries worth importing once per student (when a source notebook imports them). Only third-party
# libraries with no state worth isolating; never the course's own package.
PRELOADABLE = ("torch", "numpy", "matplotlib", "matplotlib.pyplot", "pandas", "scipy")


def preload(source) -> list[str]:
    """The libraries of ``PRELOADABLE`` that the notebooks in ``source`` (an assignment's source folder) import.
    Runs in the class command's process, never in the zygote."""
    import ast
    from pathlib import Path

    import nbformat

    found = set()
    for path in sorted(Path(source).glob("*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type != "code":
                continue
            try:
                tree = ast.parse(cell.source)
            except SyntaxError:  # IPython magics
                continue
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    found.update(a.name for a in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    found.add(node.module)
    # a submodule preloads its package too; keep the list's order
    return [m for m in PRELOADABLE if m in found or any(f.startswith(m + ".") for f in found)]


def _orphans(kernels) -> list[int]:
    """Live processes whose parent is this zygote and that are not kernels: what a kernel left running
    (a background process, a double-forked daemon) after it ended. Found through /proc."""
    me, out = str(os.getpid()), []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in kernels:
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me and fields[0] != "Z":  # fields: state, ppid, ...
            out.append(int(entry))
    return out


def _kernel(request: dict, close: list) -> None:
    """In the forked child: become the kernel the client asked for (never returns)."""
    code = 1
    try:
        for s in close:
            s.close()
        from .sandbox import die_with_parent

        die_with_parent()  # and so with the zygote
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.environ.clear()
        from .sandbox import kernel_env

        os.environ.update(kernel_env(request["env"]))  # the client filtered it already; never trust that
        import tempfile

        tempfile.tempdir = None
        os.chdir(request["cwd"])
        # a new Python seeds torch's and numpy's global generators from the OS; a fork would share the
        # zygote's (Python's own random module reseeds itself after a fork)
        if "torch" in sys.modules:
            sys.modules["torch"].seed()
        if "numpy" in sys.modules:
            sys.modules["numpy"].random.seed()
        sys.argv = ["ipykernel_launcher", *request["argv"]]
        from ipykernel import kernelapp

        kernelapp.launch_new_instance(argv=list(request["argv"]))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _read_line(conn: socket.socket, limit: int = 2**22) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk or len(data) > limit:
            raise ConnectionError("the client sent no request")
        data += chunk
    return data


def serve(path: str, preload: list[str]) -> int:
    """The zygote: import ``preload`` (and ipykernel), then fork one kernel per connection on ``path``."""
    for name in ["ipykernel.kernelapp", *preload]:
        try:
            __import__(name)
        except Exception as exc:  # a module that does not import is simply not preloaded
            print(f"grader.autograde.zygote: not preloaded: {name} ({type(exc).__name__}: {exc})", file=sys.stderr)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path + ".tmp")
    os.rename(path + ".tmp", path)  # the socket appears only when the zygote is ready
    listener.listen(8)
    # whatever a kernel leaves running is re-parented to the zygote, which kills it: nothing of one
    # notebook outlives its kernel, as when each kernel had a sandbox of its own
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(36, 1)  # PR_SET_CHILD_SUBREAPER
    except Exception:  # pragma: no cover - not Linux
        pass
    kernels: dict[socket.socket, int] = {}
    sweep = 0.0
    while True:
        ready, _, _ = select.select([listener, *kernels], [], [], 0.1)
        for s in ready:
            if s is listener:
                conn, _ = listener.accept()
                conn.settimeout(10)
                try:
                    request = json.loads(_read_line(conn))
                except (OSError, ValueError):
                    conn.close()
                    continue
                conn.settimeout(None)
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    _kernel(request, [listener, conn, *kernels])
                kernels[conn] = pid
                conn.sendall(f"pid {pid}\n".encode())
            elif not s.recv(4096):  # the client is gone (killed): so is its kernel
                try:
                    os.kill(kernels[s], signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if time.monotonic() > sweep:
            for pid in _orphans(set(kernels.values())):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            sweep = time.monotonic() + 0.5
        while True:  # reap the kernels (and orphans) that ended; tell the kernels' clients
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            for conn, kpid in list(kernels.items()):
                if kpid == pid:
                    try:
                        conn.sendall(f"exit {os.waitstatus_to_exitcode(status)}\n".encode())
                    except OSError:
                        pass
                    conn.close()
                    del kernels[conn]


def start(kernel_dir, env: dict | None = None, timeout: float | None = None):
    """Start the zygote that ``kernel_dir/zygote.json`` describes (``grader.autograde.sandbox.kernelspec``), in the
    environment ``env`` (default: this process's) plus kernel.json's; return its process once it listens.
    Raises RuntimeError if it exits first, or is not listening after ``timeout`` seconds (then killed)."""
    import subprocess
    from pathlib import Path

    spec = json.loads((Path(kernel_dir) / "zygote.json").read_text())
    kernel_env = json.loads((Path(kernel_dir) / "kernel.json").read_text())["env"]
    proc = subprocess.Popen(spec["argv"], cwd="/", env={**(os.environ if env is None else env), **kernel_env})
    deadline = None if timeout is None else time.monotonic() + timeout
    while not os.path.exists(spec["socket"]):
        if proc.poll() is not None:
            raise RuntimeError(f"the sandboxed kernel server did not start (exit {proc.returncode})")
        if deadline is not None and time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"the sandboxed kernel server did not listen within {timeout:.0f} s")
        time.sleep(0.02)
    return proc


def connect(path: str, argv: list[str], timeout: float = 120, owner: int | None = None) -> int:
    """The kernelspec's command: ask the zygote for a kernel; wait for it to end; exit with its code.
    ``owner``: the sandbox's host uid (when root grades), to which the connection file (``-f``) goes first."""
    deadline = time.monotonic() + timeout
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
            break
        except (FileNotFoundError, ConnectionRefusedError):
            s.close()
            if time.monotonic() > deadline:
                print(f"grader.autograde.zygote: no zygote listening on {path} after {timeout:.0f} s", file=sys.stderr)
                return 1
            time.sleep(0.05)
    from .sandbox import give, kernel_env

    if owner is not None and "-f" in argv[:-1]:
        give(argv[argv.index("-f") + 1], owner)  # the kernel manager wrote it for itself only
    # only the allowed environment enters the sandbox (the kernel manager gave this client the grading process's)
    request = {"argv": argv, "cwd": os.getcwd(), "env": kernel_env(os.environ)}
    s.sendall((json.dumps(request) + "\n").encode())
    code = 1
    buffer = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        buffer += chunk
        for line in buffer.split(b"\n")[:-1]:
            if line.startswith(b"exit "):
                code = int(line.split()[1])
        buffer = buffer.rsplit(b"\n", 1)[-1]
    return code if code >= 0 else 128 - code


def main(argv=None) -> int:
    """``python -m grader.autograde.zygote serve SOCKET [MODULE...]`` or
    ``... connect SOCKET [--owner UID] -- KERNEL-ARGS``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) >= 2 and argv[0] == "serve":
        return serve(argv[1], argv[2:])
    if len(argv) >= 3 and argv[0] == "connect" and argv[2] == "--":
        return connect(argv[1], argv[3:])
    if len(argv) >= 5 and argv[0] == "connect" and argv[2] == "--owner" and argv[4] == "--":
        return connect(argv[1], argv[5:], owner=int(argv[3]))
    print(main.__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
