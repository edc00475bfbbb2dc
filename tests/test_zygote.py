"""grader/autograde/zygote.py: every kernel of a student forked from one sandboxed process that has imported torch.

The kernels must behave like the fresh kernels plain nbgrader starts (a new process per notebook, no state
carried over, torch usable, unseeded draws that differ from kernel to kernel as between new Pythons), die
when Jupyter kills them, and the whole sandbox must die with the grading process. Each test starts the
zygote with ``zygote.start``, as the class command's grading process does.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import pytest
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

from grader.autograde import sandbox, zygote


@pytest.fixture(params=["sandbox", "no-sandbox"])
def kernel(request, tmp_path):
    """A zygote preloading torch (sandboxed or not), started by ``zygote.start`` as the grading process does."""
    if request.param == "sandbox":
        request.getfixturevalue("sandbox_required")
    work = tmp_path / "work"
    work.mkdir()
    run = Path(tempfile.mkdtemp(prefix="bn-", dir="/tmp"))
    share = tmp_path / "share"
    folder = sandbox.kernelspec(
        share,
        sandbox=request.param == "sandbox",
        memory_bytes=4 * 2**30,
        writable=[work],
        hidden=[],
        runtime=run,
        zygote=["torch"],
    )
    server = zygote.start(folder, dict(os.environ, JUPYTER_PATH=str(share), JUPYTER_RUNTIME_DIR=str(run)), timeout=60)
    old = {k: os.environ.get(k) for k in ("JUPYTER_PATH", "JUPYTER_RUNTIME_DIR")}
    os.environ.update(JUPYTER_PATH=str(share), JUPYTER_RUNTIME_DIR=str(run))
    try:
        yield {"work": work, "run": run, "server": server}
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.kill()
        server.wait()
        shutil.rmtree(run, ignore_errors=True)


def kernel_manager(kernel):
    """A kernel manager as nbgrader's in the class command: ipc sockets and connection file in the runtime folder
    (the one folder the sandbox shares with the grading process besides the student's)."""
    fd, path = tempfile.mkstemp(prefix="kernel-", suffix=".json", dir=kernel["run"])
    os.close(fd)
    return KernelManager(
        kernel_name=sandbox.KERNEL_NAME, transport="ipc", ip=str(kernel["run"] / "kernel"), connection_file=path
    )


def started(kernel):
    """The manager of a kernel of the zygote, started and ready (its client has answered, then stopped)."""
    km = kernel_manager(kernel)
    km.start_kernel(cwd=str(kernel["work"]))
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    kc.stop_channels()
    return km


def execute(kernel, *sources):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    km = kernel_manager(kernel)
    NotebookClient(
        nb, km=km, timeout=60, allow_errors=True, resources={"metadata": {"path": str(kernel["work"])}}
    ).execute()
    return [
        "".join(o.get("text", "") or o.get("data", {}).get("text/plain", "") for o in c.outputs)
        + "".join(f"{o['ename']}: {o['evalue']}" for o in c.outputs if o.output_type == "error")
        for c in nb.cells
    ]


@pytest.mark.slow  # a zygote that imports torch, a kernel or two
def test_each_notebook_gets_a_new_process_with_nothing_carried_over(kernel):
    first = execute(
        kernel,
        "import os, sys, torch\nleft_behind = 42\nprint(os.getpid(), 'torch' in sys.modules)",
        "print(torch.ones(2, 3).sum().item())",
    )
    second = execute(kernel, "import os\nprint(os.getpid())", "print(left_behind)")
    pid1, preloaded = first[0].split()
    assert preloaded == "True" and first[1].strip() == "6.0"
    assert second[0].split()[0] != pid1
    assert "NameError" in second[1]  # the first notebook's variable is not in the second kernel


@pytest.mark.slow  # a zygote that imports torch, a kernel or two
def test_unseeded_draws_differ_between_kernels_as_between_new_pythons(kernel):
    code = "import random, torch, numpy\nprint(torch.randn(3).tolist(), numpy.random.rand(), random.random())"
    fresh = [
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        for _ in range(2)
    ]
    assert fresh[0] != fresh[1]
    # forked kernels must not share the zygote's generator states (they would draw the same numbers)
    forked = [execute(kernel, code)[0] for _ in range(2)]
    assert all(x.strip() for x in forked) and forked[0] != forked[1]
    a, b = (x.split("]")[1].split() for x in forked)
    assert a[0] != b[0] and a[1] != b[1]  # numpy and random each


@pytest.mark.slow  # a zygote that imports torch, a kernel or two
def test_nothing_a_notebook_leaves_running_outlives_its_kernel(kernel):
    beat = kernel["work"] / "beat"
    # a double-forked daemon in its own session, writing a heartbeat: what a student could leave behind to
    # meddle with the next notebook's kernel
    execute(
        kernel,
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        while True:\n"
        f"            open({str(beat)!r}, 'a').write('.')\n"
        "            time.sleep(0.1)\n"
        "    os._exit(0)\n"
        "time.sleep(0.5)",
    )
    time.sleep(2)  # the zygote sweeps every 0.5 s
    assert beat.is_file()
    size = beat.stat().st_size
    time.sleep(1.5)
    assert beat.stat().st_size == size  # it was killed


@pytest.mark.slow  # a zygote that imports torch, a kernel or two
def test_the_kernels_workdir_and_environment_are_the_clients(kernel):
    out = execute(kernel, "import os\nprint(os.getcwd())\nprint(os.environ.get('JUPYTER_RUNTIME_DIR'))")[0].split()
    assert out == [str(kernel["work"]), str(kernel["run"])]


@pytest.mark.slow  # a zygote that imports torch, a kernel
def test_the_kernel_never_sees_the_rest_of_the_grading_environment(kernel, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:canary-password@127.0.0.1/db")  # the client gets it
    out = execute(kernel, "import os\nprint(os.environ.get('DATABASE_URL'), sorted(os.environ))")[0]
    assert out.split()[0] == "None" and "canary-password" not in out


@pytest.mark.slow  # a zygote that imports torch, a kernel or two
def test_killing_the_client_kills_its_kernel(kernel):
    km = started(kernel)
    info = km.get_connection_info()
    km.shutdown_kernel(now=True)  # what Jupyter does to a kernel that does not stop: SIGKILL to the client
    # the kernel is gone too: nothing answers on its channels any more
    probe = KernelManager(kernel_name=sandbox.KERNEL_NAME)
    probe.load_connection_info(info)
    c = probe.client()
    c.start_channels()
    try:
        with pytest.raises(RuntimeError, match="didn.t respond|died"):
            c.wait_for_ready(timeout=5)
    finally:
        c.stop_channels()


def host_pid(kernel, km) -> int:
    """The PID on this machine of the kernel ``km`` started (not of its client): the kernel says its PID in its
    own PID namespace, /proc/*/status (NSpid) maps it to the host's, the runtime folder in its environment
    tells it from other sandboxes' processes."""
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        printed = []
        kc.execute_interactive(
            "import os; print(os.getpid())",
            timeout=30,
            output_hook=lambda m: printed.append(m["content"].get("text", "")),
        )
    finally:
        kc.stop_channels()
    inner = int("".join(printed).split()[0])
    marker = f"JUPYTER_RUNTIME_DIR={kernel['run']}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        try:
            status = (proc / "status").read_text()
            environ = (proc / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        nspid = next((line.split()[1:] for line in status.splitlines() if line.startswith("NSpid:")), [])
        if nspid and int(nspid[-1]) == inner and marker in environ:
            found.append(int(proc.name))
    assert len(found) == 1, found
    return found[0]


def running(pid: int) -> bool:
    """``pid`` exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow  # a zygote that imports torch, a kernel or two
def test_the_whole_sandbox_dies_with_the_grading_process(kernel):
    km = started(kernel)
    pid = host_pid(kernel, km)
    assert running(pid)
    kernel["server"].kill()  # the grading process's stop: the zygote's launcher goes...
    kernel["server"].wait()
    deadline = time.monotonic() + 20
    while (running(pid) or km.is_alive()) and time.monotonic() < deadline:  # ...and so does every kernel
        time.sleep(0.1)
    assert not running(pid), "the kernel outlived its zygote"
    assert not km.is_alive()  # and its client exited
    km.cleanup_resources()


def test_preload_reads_the_notebooks_imports(tmp_path):
    src = tmp_path / "source" / "a"
    src.mkdir(parents=True)
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell(
                "import torch.nn.functional as F\nfrom matplotlib import pyplot\n%matplotlib inline"
            ),
            nbformat.v4.new_code_cell("import numpy as np\nimport grader\nfrom . import x"),
        ]
    )
    nbformat.write(nb, src / "n.ipynb")
    assert zygote.preload(src) == ["numpy"]  # the cell with a magic is not Python: not read
    nb.cells[0].source = "import torch.nn.functional as F\nfrom matplotlib import pyplot"
    nbformat.write(nb, src / "n.ipynb")
    assert zygote.preload(src) == ["torch", "numpy", "matplotlib"]
    assert set(zygote.PRELOADABLE).isdisjoint({"grader"})


def test_the_client_says_so_when_no_zygote_listens(tmp_path):
    start = time.monotonic()
    assert zygote.connect(str(tmp_path / "nothing"), ["-f", "x.json"], timeout=1) == 1
    assert time.monotonic() - start < 10
