"""Shared fixtures (the data set's location is set by the root conftest.py)."""

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

# tests/data holds test inputs, among them notebooks (nbgrader's user-guide course): nbval must not run them
collect_ignore_glob = ["data/*"]


@pytest.fixture(scope="session")
def names_file() -> Path:
    """A verified copy of names.txt (the one the tests point the loader at)."""
    from grader.data import names_path

    return names_path()


@pytest.fixture(scope="session")
def sandbox_required() -> None:
    """A working bubblewrap sandbox (grader.autograde.sandbox.probe): in CI (CI=true) its absence fails,
    elsewhere it skips."""
    from grader.autograde import sandbox

    try:
        sandbox.probe()
    except sandbox.SandboxError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI must provide a working bubblewrap sandbox: {exc}")
        pytest.skip(f"no working sandbox here: {exc}")


def postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    if not found:
        message = "PostgreSQL is not installed (apt-get install postgresql)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return Path(found[-1]).parent


def as_user(cmd):
    """Run ``cmd`` as nobody when we are root (PostgreSQL refuses to run as root)."""
    if os.geteuid() == 0:
        return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *cmd]
    return cmd


@pytest.fixture
def pg_url():
    """A PostgreSQL server from Debian's packages on 127.0.0.1 (as nobody when root) with a database
    ``gradebook``: its URL. In CI (CI=true) a missing PostgreSQL fails."""
    bindir = postgres_bin()
    data = Path(tempfile.mkdtemp(prefix="bn-pg-"))
    os.chmod(data, 0o700)
    if os.geteuid() == 0:
        shutil.chown(data, "nobody", "nogroup")
    subprocess.run(
        as_user([str(bindir / "initdb"), "-D", str(data), "-U", "grader", "--auth=trust"]),
        check=True,
        capture_output=True,
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        as_user([str(bindir / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(port), "-k", str(data)]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            ready = subprocess.run(
                [str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)], capture_output=True
            )
            if ready.returncode == 0:
                break
            time.sleep(0.2)
        else:
            pytest.fail("PostgreSQL did not start")
        subprocess.run(
            [str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "grader", "gradebook"],
            check=True,
            capture_output=True,
        )
        yield f"postgresql://grader@127.0.0.1:{port}/gradebook"
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(data, ignore_errors=True)


@dataclass
class Demo:
    """A course graded by the README's demo command (``root``) and the command's finished process."""

    root: Path
    proc: subprocess.CompletedProcess


@pytest.fixture(scope="session")
def plain_catalogue(tmp_path_factory) -> Demo:
    """Every student of source/demo_class.toml that plain nbgrader may grade (all but the sandbox-only ones),
    graded once per session by plain ``nbgrader autograde`` through ``python -m grader demo --all``:
    test_pipeline.py reads it and never changes it."""
    from classes import demo

    root = tmp_path_factory.mktemp("plain-catalogue") / "demo"
    return Demo(root, demo(root, "--all"))
