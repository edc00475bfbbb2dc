"""Two shards of ``python -m grader autograde`` at once against one PostgreSQL gradebook.

The test starts a PostgreSQL server from Debian's packages (``postgresql``; binaries in
/usr/lib/postgresql/<version>/bin) on 127.0.0.1, as an unprivileged user when it runs as root,
grades a small class in two shard processes started together, and checks that the gradebook holds
every student exactly once with the right scores. In CI (CI=true) a missing PostgreSQL fails.
"""

import dataclasses
import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from grader.instructor import course

NOTEBOOK = "01_atomic_backprop"
IDS = (
    "solution",
    "blank",
    "dW2-transposed",
    "dlogprobs-without-1-over-n",
    "bessel-n-not-n-minus-1",
    "dcounts-not-accumulated",
)

pytestmark = pytest.mark.slow  # a real nbgrader run of a class


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


def test_two_shards_fill_one_postgresql_gradebook(tmp_path, pg_url):
    from grader.autograde import sandbox

    try:
        sandbox.probe()
        extra = []
    except sandbox.SandboxError:
        if os.environ.get("CI"):
            raise
        extra = ["--no-sandbox"]  # this test is about the gradebook; the sandbox has its own tests
    students = [dataclasses.replace(s, notebooks=[NOTEBOOK]) for s in course.demo_class() if s.id in IDS]
    c = course.new_course(tmp_path / "course")
    course.generate_release(c)
    for s in students:
        course.make_submission(c, s)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "grader",
                "autograde",
                course.ASSIGNMENT,
                str(c / "submitted"),
                "--course",
                str(c),
                "--out",
                str(tmp_path / f"out{i}"),
                "--db-url",
                pg_url,
                "--shard",
                f"{i}/2",
                "--workers",
                "1",
                "--no-progress",
                *extra,
            ],
            env=course.tool_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in (1, 2)
    ]
    outputs = [p.communicate(timeout=1800)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-2000:] for o in outputs)
    graded = [len((tmp_path / f"out{i}" / "ledger.jsonl").read_text().splitlines()) for i in (1, 2)]
    assert sum(graded) == len(students) and min(graded) >= 1  # both shards graded someone

    from nbgrader.api import Gradebook

    with Gradebook(
        pg_url.replace("postgresql://", "postgresql+psycopg2://")
    ) as gb:  # SQLAlchemy 2.1 defaults to psycopg 3
        submissions = gb.assignment_submissions(course.ASSIGNMENT)
        ids = [sub.student.id for sub in submissions]
        assert sorted(ids) == sorted(s.id for s in students)  # every student exactly once
        by_id = {sub.student.id: sub for sub in submissions}
        for s in students:
            cells = [
                course.CellScore(nb.name, g.name, float(g.score), float(g.max_score), bool(g.needs_manual_grade))
                for nb in by_id[s.id].notebooks
                for g in nb.grades
            ]
            assert len(cells) == len({x.cell for x in cells})
            lost = {x.cell for x in cells if x.score < x.max_score}
            assert lost == course.expected_lost(s, cells, course.notebook_names(c)), s.id
