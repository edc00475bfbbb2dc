"""grader/autograde/scratch.py: one student's scratch course, its paths, its kernelspec, its nbgrader_config."""

import json
import os
import sys
from pathlib import Path

from grader import paths
from grader.autograde import sandbox, scratch
from grader.autograde.feedback import CapOutputs, ShortTracebacks
from grader.autograde.options import Options
from grader.autograde.scratch import Scratch


def test_the_paths_of_a_students_scratch_course(tmp_path):
    sc = Scratch(tmp_path, "ann", "hw1")
    root = tmp_path / "students" / "ann"
    assert sc.root == root and sc.checked == tmp_path / "checked" / "ann"
    assert (sc.submitted, sc.autograded, sc.feedback) == tuple(
        root / k / "ann" / "hw1" for k in ("submitted", "autograded", "feedback")
    )
    assert (sc.gradebook, sc.share, sc.result) == (root / "gradebook.db", root / "share", root / "result.json")


def test_create_copies_the_template_and_hands_in_the_notebooks(tmp_path):
    template = tmp_path / "template"
    (template / "source" / "hw1").mkdir(parents=True)
    (template / "source" / "hw1" / "nb.ipynb").write_text("{}")
    (template / "gradebook.db").write_text("db")
    checked = tmp_path / "checked.ipynb"
    checked.write_text('{"cells": []}')
    sc = Scratch(tmp_path / "work", "ann", "hw1")
    sc.root.mkdir(parents=True)
    (sc.root / "stale").write_text("from an earlier run")
    sc.create(template, {"nb": checked}, "2026-05-05 10:00:00")
    assert not (sc.root / "stale").exists()
    assert (sc.root / "source" / "hw1" / "nb.ipynb").is_file() and sc.gradebook.read_text() == "db"
    assert (sc.submitted / "nb.ipynb").read_text() == '{"cells": []}'
    assert (sc.submitted / "timestamp.txt").read_text() == "2026-05-05 10:00:00"
    assert sc.autograded.is_dir()
    sc.remove()
    assert not sc.root.exists()


def test_the_runtime_folder_is_short_and_removed_afterwards(tmp_path):
    with Scratch(tmp_path, "ann", "hw1").runtime() as run_dir:
        kernels = scratch.kernel_runtime(run_dir)
        assert str(run_dir).startswith("/tmp/bn-") and len(str(kernels / "kernel")) < 40
        assert [p.name for p in run_dir.iterdir()] == ["k"]  # the connection files go beside it
        assert {p.name for p in kernels.iterdir()} == {"home", "ipython", "mpl"}
    assert not run_dir.exists()


def test_the_kernelspec_hides_the_instructors_folders_but_never_python_or_the_grader(tmp_path):
    course = tmp_path / "course"
    (course / "source").mkdir(parents=True)
    (course / "submitted").mkdir()
    opts = Options(assignment="hw1", submissions=course / "submitted", course=course, out=tmp_path / "out")
    opts.out.mkdir()
    sc = Scratch(tmp_path / "out" / "work", "ann", "hw1")
    sc.autograded.mkdir(parents=True)
    sc.kernel.mkdir()
    with sc.runtime() as run_dir:
        folder = sc.kernelspec(opts, run_dir)
        launched = json.loads((folder / "zygote.json").read_text())["argv"]
        env = sc.env(opts.course, run_dir)
    tmpfs = {launched[i + 1] for i, a in enumerate(launched) if a == "--tmpfs"}
    assert {str(course), str(opts.out)} <= tmpfs  # the whole course: source/, submitted/, notebooks/, .git
    assert str(paths.PACKAGE) not in tmpfs
    binds = {(launched[i + 1], launched[i + 2]) for i, a in enumerate(launched) if a == "--bind"}
    # writable: the kernels' runtime folder (nothing else of the host's; its connection files' folder read-only),
    # and a tmpfs at the autograded path that the launcher inside fills from the kernel's folder (read-only)
    kernels = str(run_dir / "k")
    assert binds == {(kernels, kernels)}
    ro = [i for i, a in enumerate(launched) if a == "--ro-bind" and launched[i + 1 : i + 3] == [str(run_dir)] * 2]
    assert ro and ro[0] < launched.index(kernels)  # read-only first, then the part inside it
    assert env[sandbox.RUNTIME_ENV] == f"{sandbox.RUNTIME_BYTES} {kernels}"
    assert str(sc.autograded.resolve()) in tmpfs
    kernel = str(sc.kernel.resolve())
    assert (kernel, kernel) in {(launched[i + 1], launched[i + 2]) for i, a in enumerate(launched) if a == "--ro-bind"}
    seeds = [(launched[i + 1], launched[i + 2]) for i, a in enumerate(launched) if a == "--seed"]
    assert seeds == [(kernel, str(sc.autograded))]
    assert env["JUPYTER_PATH"] == str(sc.share) and env["TMPDIR"] == str(run_dir)
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(course)  # the course's plugins import
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)  # nbgrader finds alembic


def test_the_nbgrader_config_loads_the_courses_then_the_grading_overrides(tmp_path):
    from traitlets.config.loader import PyFileConfigLoader

    course = tmp_path / "course"
    course.mkdir()
    (course / "nbgrader_config.py").write_text('c = get_config()\nc.CourseDirectory.course_id = "tiny"\n')
    opts = Options(assignment="hw1", submissions=course, course=course, cell_timeout=17)
    folder = tmp_path / "scratch"
    folder.mkdir()
    scratch.write_config(folder, opts, "sqlite:///x.db", Path("/tmp/bn-x"))
    c = PyFileConfigLoader("nbgrader_config.py", path=str(folder)).load_config()
    assert c.CourseDirectory.course_id == "tiny" and c.CourseDirectory.root == str(folder)
    assert c.Execute.timeout == 17 and c.KernelManager.ip == "/tmp/bn-x/k/kernel"  # in the kernels' writable part
    assert c.Autograde.autograde_preprocessors[-1] is CapOutputs
    assert ShortTracebacks in c.GenerateFeedback.preprocessors
