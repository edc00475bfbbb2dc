"""Scratch courses: where each student is graded, apart from the real course and from the other students.

The run's work folder (``--out``/work) holds a *template* (the assignment's source/ and a gradebook that
knows it, made once by ``nbgrader generate_assignment``) and one scratch course per student being
graded, ``Scratch``: a copy of the template, the student's checked notebooks in submitted/, its own
SQLite gradebook, the kernel's private working folder kernel/, its sandboxed kernelspec in share/, and
a short runtime folder under /tmp for the kernels' sockets. A student's scratch course is named by its
key (``submissions.Student.key``: its id, or a safe name for an odd one). Each scratch course's
nbgrader_config.py loads the course's, then the grading overrides (``CONFIG``): the sandboxed kernel,
the timeouts, and the preprocessors of ``grader.autograde.feedback``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from . import sandbox, shards
from .gradebook import copy_duedate, db_lock, real_db
from .options import GradingError, Options
from .worker import course_env, run_nbgrader

CONFIG = """\
# Written by python -m grader autograde: the course's configuration, then the grading overrides.
import os
c = get_config()  # noqa: F821
{load}
c.CourseDirectory.root = {root!r}
c.CourseDirectory.db_url = {db!r}
c.Execute.kernel_name = {kernel!r}
c.Execute.timeout = {timeout}
c.Execute.interrupt_on_timeout = True
# the sandbox has no network: Jupyter's channels go over Unix sockets
c.KernelManager.transport = "ipc"
{ip}c.OverwriteCells.add_missing_cells = True
from grader.autograde.feedback import autograde_preprocessors
from grader.feedback_page import feedback_preprocessors
# outputs cut to a size; feedback shows the tests' visible part, the hints and pass/fail, never the hidden tests
c.Autograde.autograde_preprocessors = autograde_preprocessors(c.Autograde.get("autograde_preprocessors"))
c.GenerateFeedback.preprocessors = feedback_preprocessors()
"""


def write_config(folder: Path, opts: Options, db: str, run_dir: Path | None = None) -> None:
    """``folder/nbgrader_config.py`` for a scratch course (or the template) with gradebook ``db``."""
    course_config = opts.course / "nbgrader_config.py"
    load = f"load_subconfig({str(course_config)!r})  # noqa: F821" if course_config.is_file() else ""
    (folder / "nbgrader_config.py").write_text(
        CONFIG.format(
            load=load,
            root=str(folder),
            db=db,
            kernel=sandbox.KERNEL_NAME,
            timeout=opts.cell_timeout,
            # an absolute socket path: the kernel's working folder is not the grading process's
            ip=f"c.KernelManager.ip = {str(kernel_runtime(run_dir) / 'kernel')!r}\n" if run_dir else "",
        )
    )


def kernel_runtime(run_dir: Path) -> Path:
    """The kernels' part of the runtime folder ``run_dir``, the one they may write: their sockets, HOME,
    IPYTHONDIR, MPLCONFIGDIR (a tmpfs while grading: ``sandbox.private_tmpfs``). The grading process writes
    the connection files beside it, in ``run_dir``, which the kernels see read-only."""
    return run_dir / "k"


def make_template(opts: Options, work: Path) -> Path:
    """A scratch course with source/ and a gradebook that knows the assignment; the real gradebook too."""
    template = work / "template"
    if template.exists():
        shutil.rmtree(template)
    template.mkdir(parents=True)
    shutil.copytree(opts.source, template / "source" / opts.assignment)
    # what the course's config may name beside the assignments: source/header.ipynb, a footer, shared files
    for path in (opts.course / "source").iterdir():
        if path.is_file() and not path.is_symlink():
            shutil.copy2(path, template / "source" / path.name)
    write_config(template, opts, f"sqlite:///{template / 'gradebook.db'}")

    def generate(db: str | None) -> None:
        args = ["generate_assignment", opts.assignment, "--force"]
        if db:  # into a release folder of its own: the two run at once
            args += [f"--CourseDirectory.db_url={db}", "--CourseDirectory.release_directory=release-db"]
        with db_lock(db or ""):
            proc = run_nbgrader(template, *args, env=course_env(opts.course))
        if proc.returncode != 0:
            raise GradingError(
                f"nbgrader generate_assignment {opts.assignment} failed"
                f"{' on ' + db if db else ''}:\n{proc.stdout[-3000:]}"
            )

    # the template's own gradebook and the real one, at the same time (each a process of its own)
    with ThreadPoolExecutor(max_workers=2) as pool:
        for done in [pool.submit(generate, None), pool.submit(generate, real_db(opts))]:
            done.result()
    copy_duedate(real_db(opts), opts.assignment, template / "gradebook.db")
    return template


@dataclass(frozen=True)
class Scratch:
    """The paths of one student's scratch course, ``WORK/students/<student>``, and what goes in them."""

    work: Path
    student: str
    assignment: str

    @property
    def root(self) -> Path:
        return self.work / "students" / self.student

    @property
    def checked(self) -> Path:
        """The student's notebooks after the prechecks (repaired), before they are copied in."""
        return self.work / "checked" / self.student

    @property
    def submitted(self) -> Path:
        return self.root / "submitted" / self.student / self.assignment

    @property
    def autograded(self) -> Path:
        return self.root / "autograded" / self.student / self.assignment

    @property
    def feedback(self) -> Path:
        return self.root / "feedback" / self.student / self.assignment

    @property
    def kernel(self) -> Path:
        """What the kernel's working folder starts with (a copy of it, inside the sandbox, at ``autograded``'s
        path: ``kernelspec``)."""
        return self.root / "kernel"

    @property
    def gradebook(self) -> Path:
        return self.root / "gradebook.db"

    @property
    def share(self) -> Path:
        """The kernelspec's folder (on JUPYTER_PATH)."""
        return self.root / "share"

    @property
    def result(self) -> Path:
        """The grading process's ``worker.Result`` (outside anything the sandbox may write)."""
        return self.root / "result.json"

    def create(self, template: Path, notebooks: dict[str, Path], timestamp: str | None) -> None:
        """A fresh scratch course from ``template`` with ``notebooks`` (name -> checked file) handed in."""
        self.remove()
        self.root.mkdir(parents=True)
        shutil.copytree(template / "source", self.root / "source")
        shutil.copy2(template / "gradebook.db", self.gradebook)
        self.submitted.mkdir(parents=True)
        for name, path in notebooks.items():
            shutil.copy2(path, self.submitted / f"{name}.ipynb")
        if timestamp:
            (self.submitted / "timestamp.txt").write_text(timestamp)
        self.autograded.mkdir(parents=True)
        # the kernel starts with what nbgrader puts beside the notebooks: the source's other files (data, images)
        ignore = shutil.ignore_patterns("*.ipynb", ".ipynb_checkpoints", "__pycache__", "*.pyc")
        shutil.copytree(self.root / "source" / self.assignment, self.kernel, ignore=ignore, symlinks=True)

    def remove(self) -> None:
        if self.root.exists():
            shutil.rmtree(self.root)

    @contextmanager
    def runtime(self):
        """A runtime folder for the kernels' connection files and (``kernel_runtime``) their sockets, HOME,
        IPYTHONDIR and MPLCONFIGDIR, removed afterwards: under /tmp, short (a Unix socket path has ~100 bytes)."""
        run_dir = Path(tempfile.mkdtemp(prefix="bn-", dir="/tmp"))
        try:
            if os.geteuid() == 0:  # the kernels' own host uid (sandbox.host_uid) goes through to kernel_runtime
                os.chmod(run_dir, 0o711)
            for sub in ("home", "ipython", "mpl"):
                (kernel_runtime(run_dir) / sub).mkdir(parents=True)
            yield run_dir
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)

    def kernelspec(self, opts: Options, run_dir: Path) -> Path:
        """This student's sandboxed kernelspec (``sandbox.kernelspec``) in ``share``: the instructor's folders
        hidden; writable only ``kernel_runtime(run_dir)`` and the kernel's working folder, seen at the
        autograded folder's path (nbgrader's working folder) but a tmpfs of the sandbox's own, filled from
        ``kernel``: whatever the kernel writes there (a symlink to the gradebook, a notebook replaced by a link,
        a huge file) never leaves the sandbox; nbgrader writes the autograded notebooks into the real folder,
        which the kernel cannot see."""
        # the whole course (its .git, notebooks/ with the answer keys, source/, gradebook, submissions); the
        # sandbox binds this Python, the grader and the data set back read-only if they are inside; a shard's
        # folder (OUT/shards/I-of-K) hides the whole class's OUT
        hidden = [opts.course, opts.submissions, shards.root_of(opts.out)]
        if real_db(opts).startswith("sqlite:///"):
            hidden.append(Path(real_db(opts)[len("sqlite:///") :]))
        return sandbox.kernelspec(
            self.share,
            sandbox=opts.sandbox,
            memory_bytes=opts.memory,
            writable=[],
            hidden=hidden,
            runtime=kernel_runtime(run_dir),
            readable=(run_dir,),
            private={self.kernel: self.autograded},
            zygote=opts.preload if opts.zygote else None,
            env={
                "HOME": str(kernel_runtime(run_dir) / "home"),
                "IPYTHONDIR": str(kernel_runtime(run_dir) / "ipython"),
                "MPLCONFIGDIR": str(kernel_runtime(run_dir) / "mpl"),
                "JUPYTER_RUNTIME_DIR": str(kernel_runtime(run_dir)),
            },
            limits={"nproc": opts.nproc, "fsize": opts.fsize, "tmp_bytes": opts.tmp_bytes},
            uid=sandbox.host_uid() if opts.sandbox else None,
        )

    def env(self, course: Path, run_dir: Path, sandboxed: bool = True) -> dict[str, str]:
        """The grading process's environment: nbgrader's in ``course`` (``worker.course_env``), the kernelspec
        on JUPYTER_PATH; the kernel manager writes the connection file with tempfile, so into the runtime
        folder; when ``sandboxed``, the kernels' part of it becomes a size-capped tmpfs (``sandbox.RUNTIME_ENV``)."""
        return {
            **course_env(course),
            "JUPYTER_PATH": str(self.share),
            "JUPYTER_RUNTIME_DIR": str(run_dir),
            "TMPDIR": str(run_dir),
            **({sandbox.RUNTIME_ENV: f"{sandbox.RUNTIME_BYTES} {kernel_runtime(run_dir)}"} if sandboxed else {}),
        }
