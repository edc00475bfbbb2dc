"""``--shard auto`` (grader/autograde/shards.py): the shard from a Slurm array task's or a Kubernetes Indexed
Job's environment, each with its own index base, and where a shard writes. Pure functions: no scheduler."""

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from grader.autograde import options, shards
from grader.autograde.submissions import in_shard, shard_of


def slurm_env(task, first, last, step=None, count=None):
    ids = list(range(first, last + 1, step or 1))
    env = {
        "SLURM_JOB_ID": "77",
        "SLURM_ARRAY_JOB_ID": "70",
        "SLURM_ARRAY_TASK_ID": str(task),
        "SLURM_ARRAY_TASK_COUNT": str(count or len(ids)),
        "SLURM_ARRAY_TASK_MIN": str(first),
        "SLURM_ARRAY_TASK_MAX": str(last),
    }
    if step is not None:
        env["SLURM_ARRAY_TASK_STEP"] = str(step)
    return env


@pytest.mark.parametrize(
    "array, tasks",
    [
        ((0, 3, 1), [0, 1, 2, 3]),  # --array=0-3: Slurm counts from the array's first index, here 0
        ((1, 4, 1), [1, 2, 3, 4]),  # --array=1-4
        ((5, 11, 2), [5, 7, 9, 11]),  # --array=5-11:2
        ((0, 15, 4), [0, 4, 8, 12]),  # --array=0-15:4 (MAX is the last task, 12, as Slurm sets it)
    ],
    ids=["0-3", "1-4", "5-11:2", "0-15:4"],
)
def test_a_slurm_array_numbers_its_shards_from_one(array, tasks):
    first, last, step = array
    last = tasks[-1]
    got = [shards.from_environment(slurm_env(t, first, last, step)) for t in tasks]
    assert got == [(i, len(tasks)) for i in range(1, len(tasks) + 1)]


def test_slurm_without_a_step_variable_steps_by_one():
    env = slurm_env(3, 1, 4)
    assert "SLURM_ARRAY_TASK_STEP" not in env
    assert shards.from_environment(env) == (3, 4)


def test_a_slurm_array_with_gaps_is_refused():
    # --array=1,3,8: Slurm sets COUNT=3, MIN=1, MAX=8, STEP=1 (as seen on slurm 22.05)
    with pytest.raises(shards.ShardError, match="has gaps"):
        shards.from_environment(slurm_env(8, 1, 8, 1, count=3))


def test_one_shard_resubmitted_as_an_array_of_its_own_is_refused():
    # sbatch --array=3 to redo shard 3 of 4: Slurm says COUNT=1, MIN=MAX=3 (it would be the whole class)
    with pytest.raises(shards.ShardError, match="submitted again"):
        shards.from_environment(slurm_env(3, 3, 3))
    assert shards.from_environment(slurm_env(1, 1, 1)) == (1, 1)  # --array=1 (or 0): one shard, on purpose
    assert shards.from_environment(slurm_env(0, 0, 0)) == (1, 1)


def test_a_slurm_task_outside_its_array_is_refused():
    with pytest.raises(shards.ShardError, match="not in the Slurm array"):
        shards.from_environment(slurm_env(6, 5, 11, 2))


def test_a_kubernetes_indexed_job_counts_from_zero():
    got = [shards.from_environment({"JOB_COMPLETION_INDEX": str(i), "BACKPROP_NINJA_SHARDS": "3"}) for i in range(3)]
    assert got == [(1, 3), (2, 3), (3, 3)]


def test_kubernetes_needs_the_count_the_manifest_sets():
    with pytest.raises(shards.ShardError, match="BACKPROP_NINJA_SHARDS is not set"):
        shards.from_environment({"JOB_COMPLETION_INDEX": "0"})
    with pytest.raises(shards.ShardError, match="not below"):
        shards.from_environment({"JOB_COMPLETION_INDEX": "3", "BACKPROP_NINJA_SHARDS": "3"})


def test_no_scheduler_is_a_clear_error():
    with pytest.raises(shards.ShardError, match="neither SLURM_ARRAY_TASK_ID .* nor JOB_COMPLETION_INDEX"):
        shards.from_environment({"HOME": "/root"})
    with pytest.raises(shards.ShardError, match="not an array"):
        shards.from_environment({"SLURM_JOB_ID": "12"})


def test_the_command_line_takes_auto(monkeypatch):
    parser = argparse.ArgumentParser()
    options.add_arguments(parser)
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "1")
    monkeypatch.setenv("BACKPROP_NINJA_SHARDS", "4")
    for name in [v for v in os.environ if v.startswith("SLURM_")]:
        monkeypatch.delenv(name)
    assert parser.parse_args(["a", "s", "--shard", "auto"]).shard == (2, 4)
    assert parser.parse_args(["a", "s", "--shard", "3/4"]).shard == (3, 4)
    assert parser.parse_args(["a", "s"]).shard == (1, 1)
    monkeypatch.delenv("JOB_COMPLETION_INDEX")
    with pytest.raises(SystemExit):
        parser.parse_args(["a", "s", "--shard", "auto"])
    with pytest.raises(SystemExit):
        parser.parse_args(["a", "s", "--shard", "5/4"])


def test_every_student_is_in_exactly_one_shard_the_one_discover_keeps():
    ids = [f"student{i}" for i in range(40)]
    for k in (1, 2, 4, 7):
        owners = {sid: [i for i in range(1, k + 1) if in_shard(sid, (i, k))] for sid in ids}
        assert all(owners[sid] == [shard_of(sid, k)] for sid in ids)


def test_each_shard_writes_in_its_own_folder(tmp_path):
    out = tmp_path / "out"
    assert shards.task_out(out, (1, 1)) == out  # one machine: the layout of before
    one, two = shards.task_out(out, (1, 4)), shards.task_out(out, (2, 4))
    assert one == out / "shards" / "1-of-4" and one != two
    assert shards.root_of(one) == out and shards.root_of(out) == out
    assert shards.work_dir(out, (1, 1)) == out / "work"
    work = shards.work_dir(one, (1, 4))
    assert work.parent == one / "work" and work.is_dir()  # a second run of shard 1 at once gets its own
    for path in (one, two):
        path.mkdir(parents=True, exist_ok=True)
        (path / "ledger.jsonl").write_text("")
    (tmp_path / "out" / "shards" / "notes").mkdir()
    assert shards.folders(out) == [one, two]
    assert Path(out / "shards" / "notes") not in shards.folders(out)


def test_a_run_removes_the_scratch_of_killed_runs_of_its_shard_never_a_live_ones(tmp_path):
    code = (
        "import sys, time; from pathlib import Path; from grader.autograde import shards\n"
        "print(shards.work_dir(Path(sys.argv[1]), (2, 3)), flush=True); time.sleep(float(sys.argv[2]))\n"
    )
    live = subprocess.Popen([sys.executable, "-c", code, str(tmp_path), "60"], stdout=subprocess.PIPE, text=True)
    live_dir = Path(live.stdout.readline().strip())  # it has its folder (and the lock) before the other starts
    dead = subprocess.run([sys.executable, "-c", code, str(tmp_path), "0"], capture_output=True, text=True, check=True)
    dead_dir = Path(dead.stdout.strip())
    try:
        assert live_dir.is_dir() and dead_dir.is_dir() and live_dir != dead_dir
        (tmp_path / "work" / "not-a-run").mkdir()
        mine = shards.work_dir(tmp_path, (2, 3))
        assert live_dir.is_dir()  # its run holds the lock
        assert not dead_dir.exists()  # the process died: nobody holds its lock
        assert (tmp_path / "work" / "not-a-run").is_dir() and mine.is_dir()
    finally:
        live.kill()
        live.wait()


@pytest.mark.parametrize("name", ["grade.sbatch", "gather.sbatch", "grade-job.yaml"])
def test_the_instructors_page_shows_the_scheduler_files_as_they_are(name):
    repo = Path(__file__).resolve().parent.parent
    page = (repo / "docs" / "instructors.md").read_text(encoding="utf-8")
    assert (repo / "docs" / "scheduler" / name).read_text(encoding="utf-8") in page, f"docs/scheduler/{name}"
