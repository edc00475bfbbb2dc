"""grader/autograde/sandbox.py: bubblewrap's rules for a student's kernels, the launcher's limits, the probe."""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from grader import paths
from grader.autograde import sandbox


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
    assert args[:5] == ["bwrap", "--ro-bind", "/", "/", "--dev"] and "--unshare-all" in args
    assert "--die-with-parent" in args
    assert args[args.index("--tmpfs", args.index("--unshare-all")) + 1] == str(hidden_dir)  # emptied...
    assert args[-2:] == ["--remount-ro", str(hidden_dir)]  # ...and read-only, after every bind
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
        monkeypatch.setenv("BACKPROP_NINJA_NAMES", str(data))
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
