"""The Kubernetes Indexed Job of docs/scheduler/: its pods at once against one PostgreSQL gradebook, then gather.

There is no Kubernetes cluster here. The test reads docs/scheduler/grade-job.yaml and runs each pod's
command as Kubernetes would: with the manifest's environment, the secret's GRADEBOOK_URL, ``$(VAR)``
expanded, and the JOB_COMPLETION_INDEX (0 .. completions-1) an Indexed Job gives each pod; the manifest's
paths (the volume /class, the image's /repo) mapped to the test's. All pods start together (its
parallelism) against a PostgreSQL server from Debian's packages (``postgresql``, the ``pg_url`` fixture of
conftest.py, as an unprivileged user when root) and share one --out. Then gather-job.yaml's command. The
gradebook must hold every student exactly once with the right scores, and the gathered grades.csv, summary
and feedback agree with it. In CI (CI=true) a missing PostgreSQL fails.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from classes import build, catalogue
from gathered import check_gathered, gradebook_cells

from grader.instructor import course

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = "01_atomic_backprop"
IDS = (
    "solution",
    "blank",
    "dW2-transposed",
    "dlogprobs-without-1-over-n",
    "bessel-n-not-n-minus-1",
    "dcounts-not-accumulated",
)


def manifest(name: str) -> dict:
    (job,) = [d for d in yaml.safe_load_all((REPO / "docs" / "scheduler" / name).read_text()) if d]
    assert job["kind"] == "Job"
    return job


def pod(job: dict, paths: dict[str, str], secrets: dict[str, str], index: int | None = None) -> tuple[list, dict]:
    """The command and environment Kubernetes gives the (only) container of ``job``'s pod ``index``."""
    (container,) = job["spec"]["template"]["spec"]["containers"]

    def mapped(text: str) -> str:
        for inside in sorted(paths, key=len, reverse=True):
            text = text.replace(inside, paths[inside])
        return text

    env = {k: v for k, v in course.tool_env().items() if not k.startswith(("SLURM_", "JOB_COMPLETION_INDEX"))}
    for var in container.get("env", []):
        env[var["name"]] = mapped(var["value"]) if "value" in var else secrets[var["name"]]
    if index is not None:  # what the Job controller adds to each pod of an Indexed Job
        env["JOB_COMPLETION_INDEX"] = str(index)
    command = [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], mapped(str(a))) for a in container["command"]]
    return command, env


def test_the_indexed_job_fills_one_postgresql_gradebook_and_gather_brings_it_together(tmp_path, pg_url):
    from grader.autograde import sandbox

    try:
        sandbox.probe()
        extra = []
    except sandbox.SandboxError:
        if os.environ.get("CI"):
            raise
        extra = ["--no-sandbox"]  # this test is about the gradebook; the sandbox has its own tests
    grade, gather = manifest("grade-job.yaml"), manifest("gather-job.yaml")
    spec = grade["spec"]
    assert spec["completionMode"] == "Indexed"
    shards = spec["completions"]
    (container,) = spec["template"]["spec"]["containers"]
    assert {v["name"]: v.get("value") for v in container["env"]}["BACKPROP_NINJA_SHARDS"] == str(shards)

    students = catalogue(IDS, notebooks=[NOTEBOOK])
    c = build(tmp_path, students, in_course=True).course
    out = tmp_path / "autograde"
    paths = {
        "/class/course/submitted": str(c / "submitted"),
        "/class/course/autograde": str(out),
        "/class/course": str(c),
        "/class/data/names.txt": os.environ["BACKPROP_NINJA_NAMES"],
        "/repo/.venv/bin/python": sys.executable,
    }
    secrets = {"GRADEBOOK_URL": pg_url}
    procs = []
    for index in range(shards):  # parallelism == completions: every pod at once
        command, env = pod(grade, paths, secrets, index)
        # one worker a pod (2 cores here); the canary is graded by test_canary.py
        command += ["--workers", "1", "--no-canary", *extra]
        proc = subprocess.Popen(
            command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        procs.append(proc)
    outputs = [p.communicate(timeout=1800)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * shards, "\n".join(o[-2000:] for o in outputs)
    ledgers = [out / "shards" / f"{i}-of-{shards}" / "ledger.jsonl" for i in range(1, shards + 1)]
    graded = [len(p.read_text().splitlines()) for p in ledgers]
    assert sum(graded) == len(students) and sum(1 for g in graded if g) >= 2  # several shards graded someone
    assert not (out / "ledger.jsonl").exists() and not (out / "grades.csv").exists()  # each pod wrote its folder

    cells = gradebook_cells(pg_url, course.ASSIGNMENT)
    for s in students:
        got = cells[s.id]
        assert len(got) == len({x.cell for x in got})
        lost = {x.cell for x in got if x.score < x.max_score}
        assert lost == course.expected_lost(s, got, course.notebook_names(c)), s.id

    command, env = pod(gather, paths, secrets)
    proc = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    summary = check_gathered(out, cells, [s.id for s in students])
    assert sorted(summary["shards"]) == [f"{i}-of-{shards}" for i in range(1, shards + 1)]
