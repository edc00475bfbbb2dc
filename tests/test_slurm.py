"""A real Slurm job array grades a class into one PostgreSQL gradebook; a final dependent job gathers it.

The test starts a single-node Slurm from Debian's packages (``slurmctld``, ``slurmd``, ``munge``, as
.ci/run installs them): a munge key it generates, ``munged`` on a socket of its own, and a minimal
slurm.conf on 127.0.0.1 (free ports, one node ``localhost`` that claims 4 CPUs, no cgroups, no accounting)
in a temp folder; the daemons run as root (slurmd must, to start jobs), so the test needs root. A
PostgreSQL server comes from conftest.py's ``pg_url``.

It submits docs/scheduler/grade.sbatch as ``sbatch --array=1-4`` over a demo class of 12 students (handing
in notebook 01 only) and docs/scheduler/gather.sbatch with ``--dependency=afterany:$JOB``. While the array
runs, the task of the largest shard is requeued (``scontrol requeue``) after it merged its first student
and before its last: Slurm kills it mid-grade and runs it again. At the end the gradebook holds every
student exactly once, with the scores the catalogue states (what the single-machine command gives the same
students in test_classgrade.py and test_pipeline.py); the requeued task's second run grades only what its
first had not merged; the gathered grades.csv, summary and feedback agree with the gradebook.

Slow (a few minutes). With CI set (CI=true) it must run: a missing package or a Slurm that does not start
fails; elsewhere it skips saying why.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from classes import build, catalogue
from gathered import check_gathered, gradebook_cells
from servers import stop

from grader.autograde.submissions import shard_of
from grader.instructor import course

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("sandbox_required")]
REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = "01_atomic_backprop"
IDS = (
    "solution",
    "blank",
    "dcounts-not-accumulated",
    "dbndiff-overwritten",
    "dbnmeani-term-dropped",
    "bessel-n-not-n-minus-1",
    "tanh-of-hpreact",
    "dC-indexed-plus-equals",
    "dhprebn-alias-no-clone",
    "dW2-transposed",
    "dlogprobs-without-1-over-n",
    "copies-grad",
)
TASKS = 4
DAEMONS = ("slurmctld", "slurmd", "munged", "mungekey", "sbatch", "scontrol", "squeue")


def unavailable(message: str):
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the Slurm test: {message}")
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CONF = """\
# written by tests/test_slurm.py: one node, this machine, on 127.0.0.1
ClusterName=bn-test
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire is also how long a requeued job waits before it starts again (default 120 s)
AuthInfo=socket={root}/munge/socket,cred_expire=10
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
KillWait=5
# the records of finished jobs stay an hour: the test reads them at its end
MinJobAge=3600
# the node claims 4 CPUs on a 2-core machine, so that the 4 tasks run at once
SlurmdParameters=config_overrides
NodeName=localhost NodeAddr=127.0.0.1 CPUs=4 RealMemory={memory} State=UNKNOWN
PartitionName=grading Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""


@pytest.fixture
def slurm():
    """A running single-node Slurm cluster: the environment its clients need (SLURM_CONF)."""
    missing = [d for d in DAEMONS if not shutil.which(d)]
    if missing:
        unavailable(f"Slurm is not installed ({', '.join(missing)} missing: apt-get install slurmctld slurmd munge)")
    if os.geteuid() != 0:
        unavailable("slurmd must run as root to start jobs, and this test runs as a user")
    root = Path(tempfile.mkdtemp(prefix="bn-slurm-"))  # short: munge's socket path has ~100 bytes
    root.chmod(0o755)  # munged wants its socket's folders searchable by all; the key itself is 0600
    for sub in ("munge", "state", "spool", "log"):
        (root / sub).mkdir(mode=0o755)
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20 // 2
    conf = root / "slurm.conf"
    conf.write_text(CONF.format(root=root, ctld_port=free_port(), d_port=free_port(), memory=memory))
    env = {**course.tool_env(), "SLURM_CONF": str(conf)}
    env = {k: v for k, v in env.items() if not k.startswith(("SLURM_JOB", "SLURM_ARRAY")) or k == "SLURM_CONF"}
    daemons: list[subprocess.Popen] = []

    def log_tail() -> str:
        return "\n".join(
            f"--- {p.name}\n" + p.read_text(errors="replace")[-3000:] for p in sorted((root / "log").glob("*"))
        )

    try:
        subprocess.run(["mungekey", "--create", "--keyfile", str(root / "munge" / "munge.key")], check=True)
        munged = [
            "munged",
            "--foreground",
            f"--key-file={root / 'munge' / 'munge.key'}",
            f"--socket={root / 'munge' / 'socket'}",
            f"--pid-file={root / 'munge' / 'munged.pid'}",
            f"--log-file={root / 'log' / 'munged.log'}",
            f"--seed-file={root / 'munge' / 'seed'}",
        ]
        daemons.append(subprocess.Popen(munged, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for _ in range(100):
            if (root / "munge" / "socket").exists():
                break
            time.sleep(0.1)
        else:
            unavailable(f"munged did not start:\n{log_tail()}")
        daemons.append(subprocess.Popen(["slurmctld", "-D", "-c", "-f", str(conf)], env=env))
        daemons.append(subprocess.Popen(["slurmd", "-D", "-f", str(conf), "-N", "localhost"], env=env))
        for _ in range(150):
            state = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True)
            if state.stdout.strip() == "idle":
                break
            if any(d.poll() is not None for d in daemons):
                break
            time.sleep(0.2)
        else:
            unavailable(
                f"Slurm did not start (sinfo: {state.stdout.strip()!r} {state.stderr.strip()!r}):\n{log_tail()}"
            )
        if state.stdout.strip() != "idle":
            unavailable(f"a Slurm daemon exited at start:\n{log_tail()}")
        yield {"env": env, "root": root, "log": log_tail}
    finally:
        subprocess.run(["scancel", "--full", "--quiet", "--user=root"], env=env, capture_output=True)
        for d in reversed(daemons):
            stop(d, 30)
        shutil.rmtree(root, ignore_errors=True)


def sbatch(slurm, *args: str, env: dict) -> str:
    proc = subprocess.run(["sbatch", "--parsable", *args], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"sbatch {args}: {proc.stderr}\n{slurm['log']()}"
    return proc.stdout.strip().split(";")[0]


def jobs(slurm, job: str) -> dict[str, dict[str, str]]:
    """``scontrol show job``'s fields of every job (array task) of ``job``, by id (``JOB_TASK`` for a task)."""
    proc = subprocess.run(["scontrol", "-o", "show", "job", job], env=slurm["env"], capture_output=True, text=True)
    found = {}
    for line in proc.stdout.splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        key = f"{fields['ArrayJobId']}_{fields['ArrayTaskId']}" if fields.get("ArrayTaskId") else fields["JobId"]
        found[key] = fields
    return found


def job_state(slurm, job: str) -> dict[str, str]:
    return {key: fields["JobState"] for key, fields in jobs(slurm, job).items()}


def test_a_slurm_array_grades_the_class_once_even_when_a_task_is_requeued(tmp_path, pg_url, slurm):
    students = catalogue(IDS, notebooks=[NOTEBOOK])
    assert len(students) == len(IDS) >= 12
    c = build(tmp_path, students, in_course=True).course
    submitted = c / "submitted"
    common = ["--cell-timeout", "60", "--no-canary"]  # the canary has its own tests (test_canary.py)

    # the array and the gather job, as docs/instructors.md submits them
    out = tmp_path / "autograde"
    env = {
        **slurm["env"],
        "COURSE": str(c),
        "SUBMISSIONS": str(submitted),
        "OUT": str(out),
        "GRADEBOOK_URL": pg_url,
        "PYTHON": sys.executable,
    }
    scripts = REPO / "docs" / "scheduler"
    # 1 CPU a task (the docs ask for 2), so that the node's 4 run the 4 tasks at once
    job = sbatch(
        slurm,
        f"--array=1-{TASKS}",
        "--cpus-per-task=1",
        "--mem=2G",
        f"--chdir={tmp_path}",
        str(scripts / "grade.sbatch"),
        *common,
        env=env,
    )
    gather = sbatch(
        slurm,
        f"--dependency=afterany:{job}",
        "--mem=1G",
        f"--chdir={tmp_path}",
        str(scripts / "gather.sbatch"),
        env=env,
    )

    # requeue the task of the largest shard mid-grade: after its first student is merged, before its last
    sizes = {i: sum(shard_of(sid, TASKS) == i for sid in IDS) for i in range(1, TASKS + 1)}
    target = max(sizes, key=sizes.get)
    assert sizes[target] >= 3
    ledger = out / "shards" / f"{target}-of-{TASKS}" / "ledger.jsonl"
    deadline = time.monotonic() + 1500
    while time.monotonic() < deadline:
        done = len(ledger.read_text().splitlines()) if ledger.is_file() else 0
        if done >= 1:
            break
        time.sleep(0.1)
    before = len(ledger.read_text().splitlines())
    assert 1 <= before < sizes[target], f"the task of shard {target} was not caught mid-grade ({before} merged)"
    requeue = subprocess.run(["scontrol", "requeue", f"{job}_{target}"], env=env, capture_output=True, text=True)
    assert requeue.returncode == 0, requeue.stderr

    while time.monotonic() < deadline and job_state(slurm, gather).get(gather) in ("PENDING", "RUNNING", None):
        time.sleep(2)
    states = job_state(slurm, job)
    logs = "\n".join(f"--- {p.name}\n{p.read_text()[-2500:]}" for p in sorted(tmp_path.glob("bn-*.out")))
    assert states == {f"{job}_{i}": "COMPLETED" for i in range(1, TASKS + 1)}, f"{states}\n{logs}\n{slurm['log']()}"
    assert job_state(slurm, gather)[gather] == "COMPLETED", logs

    # every student exactly once, with the scores the catalogue states (each cell once: none doubled)
    cells = gradebook_cells(pg_url, course.ASSIGNMENT)
    assert sorted(cells) == sorted(IDS)
    notebooks = course.notebook_names(c)
    every_cell = {x.cell for x in cells["solution"]}
    for s in students:
        got = cells[s.id]
        assert len(got) == len({x.cell for x in got}) and {x.cell for x in got} == every_cell, s.id
        assert {x.cell for x in got if x.score < x.max_score} == course.expected_lost(s, got, notebooks), s.id
        assert {x.cell for x in got if x.needs_manual_grade} == course.expected_held(s, got, notebooks), s.id

    # the requeued task ran twice, and its second run graded only the students its first had not merged
    task_log = (tmp_path / f"bn-grade-{job}_{target}.out").read_text()
    shard_summary = json.loads((ledger.parent / "summary.json").read_text())
    assert shard_summary["skipped_already_graded"] >= before, task_log
    assert shard_summary["skipped_already_graded"] + shard_summary["graded_now"] == sizes[target]
    entries = [json.loads(line)["student"] for line in ledger.read_text().splitlines()]
    assert sorted(entries) == sorted(sid for sid in IDS if shard_of(sid, TASKS) == target)  # nobody twice
    assert jobs(slurm, f"{job}_{target}")[f"{job}_{target}"]["Restarts"] == "1", task_log
    # the second run removed the scratch folder of the killed one, and removed its own at its end
    assert not any((out / "shards").glob("*/work/*")), "a run left its scratch folder"

    summary = check_gathered(out, cells, list(IDS))
    assert sorted(summary["shards"]) == [f"{i}-of-{TASKS}" for i in range(1, TASKS + 1)]
    assert summary["sandbox"], "a task under slurmd graded without the sandbox"
