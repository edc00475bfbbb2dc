"""``python -m grader autograde`` on a class with broken and hostile submissions (source/demo_class.toml).

One class is graded once (sandboxed, 2 workers) and the tests read its gradebook, CSV, summary and
feedback; a server on 127.0.0.1 waits for the student who tries to reach it. Everyone hands in
notebook 01 only, which keeps the class quick. Needs bubblewrap: in CI (CI=true) a missing bwrap fails.
"""

import csv
import dataclasses
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
from classes import autograde, build, catalogue, command, demo
from tiny_course import TINY_ANSWERS, make_tiny_course

from grader.autograde import feedback
from grader.instructor import course

NOTEBOOK = "01_atomic_backprop"
KEEP = {"solution", "blank", "copies-grad", "edits-a-test-cell", "deletes-a-test-cell"}
STUDENTS = [s for s in catalogue(notebooks=[NOTEBOOK]) if s.sandbox_only or s.id in KEEP]
# every test here grades (slow), in the sandbox
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("sandbox_required")]
# the attacks of the catalogue: sandbox-only students that are held for review (each prints "blocked: ...")
HOSTILE = [s.id for s in course.demo_class(sandbox_only=True) if s.sandbox_only and s.held]
CANARY = "bn-canary-8d1f0c"  # in the course's notebooks/ and .git/ and in the instructor's home
DB_PASSWORD = "canary-password-5e2b"  # in the grading process's DATABASE_URL


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def grader_files() -> dict[Path, str]:
    """The digest of every Python file of the grader package, in its subpackages too."""
    import grader

    files = {p: digest(p) for p in Path(grader.__file__).parent.rglob("*.py")}
    assert Path(grader.__file__).parent / "checks.py" in files  # the file "edits-the-grader" aims at
    return files


def survivors(marker: str) -> list[str]:
    """Every live process (but this one) with ``marker`` in its environment, command line or working
    folder: the grading process, nbgrader's children, a sandbox, a zygote, a kernel forked from it."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue  # a zombie holds no memory and runs nothing; its parent has not reaped it yet
            seen = [(proc / "environ").read_bytes(), (proc / "cmdline").read_bytes()]
            seen.append(os.readlink(proc / "cwd").encode())
        except OSError:  # ended meanwhile (or not ours to read)
            continue
        if any(marker.encode() in text for text in seen):
            command = seen[1].replace(b"\0", b" ").decode(errors="replace")
            found.append(f"{proc.name}: {command[:200]}")
    return found


QUICK = ("--cell-timeout", "20")  # the demo class's notebook 01 takes a few seconds a cell


class Server:
    """A TCP server on 127.0.0.1 that counts the connections it gets."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()


class UnixServer(Server):
    """A Unix socket server outside /tmp (as a local database's) that counts the connections it gets."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True)
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.bind(str(path))
        self.sock.listen(8)
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()


def plant_canaries(root: Path, c: Path) -> list[Path]:
    """The instructor's secrets the hostile students go for (source/demo_class.toml): answer keys in the
    course's notebooks/, hidden tests in its .git/, a file in the instructor's home (root/home)."""
    out = [c / "notebooks" / "answer-key.txt", c / ".git" / "hidden-tests", root / "home" / "secret.txt"]
    for path in out:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{CANARY}\n")
    return out


def aim_at(submitted: Path, port: int) -> None:
    """connects-to-localhost gets the test server's port in its code: the sandbox's environment has no BN_DEMO_PORT."""
    path = submitted / "connects-to-localhost" / course.ASSIGNMENT / f"{NOTEBOOK}.ipynb"
    text = path.read_text()
    assert text.count('\\"BN_DEMO_PORT\\", \\"9\\"') == 1
    path.write_text(text.replace('\\"BN_DEMO_PORT\\", \\"9\\"', f'\\"BN_DEMO_PORT\\", \\"{port}\\"'))


@dataclasses.dataclass
class Graded:
    """The class graded once: its folder, course, submissions, the command's process, what was there before
    (digests, modes, the Unix socket server), the TCP server and the run's summary (read before a later run on
    the same --out rewrites it)."""

    root: Path
    course: Path
    submitted: Path
    proc: subprocess.CompletedProcess
    before: dict
    server: Server
    summary: dict


@pytest.fixture(scope="module")
def graded():
    # outside /tmp (the sandbox has a /tmp of its own): the course, the home and the socket must be hidden
    # by the sandbox's rules, not by that
    root = Path(tempfile.mkdtemp(prefix="bn-classgrade-", dir="/var/tmp"))
    try:
        built = build(root, STUDENTS)
        c, submitted = built.course, built.submitted
        server = Server()
        aim_at(submitted, server.port)
        canaries = plant_canaries(root, c)
        unix = UnixServer(root / "sock" / "db.sock")
        before = {
            "gradebook": digest(c / "gradebook.db"),
            "submissions": {p: digest(p) for p in submitted.rglob("*.ipynb")},
            "grader": grader_files(),
            "modes": {p: p.stat().st_mode for p in [c / "gradebook.db", *c.rglob("source/**/*")]},
            "source": {p: digest(p) for p in c.rglob("source/**/*.ipynb")},
            "canaries": {p: digest(p) for p in canaries},
            "unix": unix,
        }
        env = course.tool_env()
        env["BN_DEMO_PORT"] = str(server.port)
        env["HOME"] = str(root / "home")
        env["DATABASE_URL"] = f"postgresql://grader:{DB_PASSWORD}@127.0.0.1:9/gradebook"
        proc = autograde(c, submitted, root / "out", *QUICK, env=env)
        summary = json.loads((root / "out" / "summary.json").read_text()) if proc.returncode == 0 else {}
        yield Graded(root, c, submitted, proc, before, server, summary)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def scores(graded):
    return course.scores(graded.course)


def test_the_command_grades_the_whole_class(graded):
    proc, summary = graded.proc, graded.summary
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert summary["students"] == len(STUDENTS) and summary["graded_now"] == len(STUDENTS)
    assert "Students that need a look" in proc.stdout


@pytest.mark.parametrize("s", STUDENTS, ids=[s.id for s in STUDENTS])
def test_each_student_gets_the_expected_score_and_reason(s, graded, scores):
    root = graded.root
    cells = scores[s.id]
    held = course.expected_held(s, cells, course.notebook_names(graded.course))
    assert cells and {c.cell for c in cells if c.needs_manual_grade} == held
    lost = {c.cell for c in cells if c.score < c.max_score}
    assert lost == course.expected_lost(s, cells, course.notebook_names(graded.course))
    if s.review:
        review = graded.summary["review"]
        assert any(s.review in why for why in review.get(s.id, [])), review.get(s.id)
    if isinstance(s.loses, dict):
        page = root / "out" / "feedback" / s.id / course.ASSIGNMENT / f"{NOTEBOOK}.html"
        text = page.read_text()
        for hint in s.loses.values():
            assert hint in text or hint.replace("`", "<code>", 1) in text or hint in feedback.text(text)


@pytest.mark.parametrize("student", HOSTILE)
def test_hostile_code_is_blocked_inside_its_sandbox(student, graded, scores):
    import nbformat

    root = graded.root
    nb = nbformat.read(root / "out" / "autograded" / student / course.ASSIGNMENT / f"{NOTEBOOK}.ipynb", 4)
    (cell,) = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "answer_cross_entropy"]
    printed = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
    assert "blocked:" in printed and "ESCAPED" not in printed  # ESCAPED: what each prints when its attack works
    assert "blocked:" in feedback.text(
        (root / "out" / "feedback" / student / course.ASSIGNMENT / f"{NOTEBOOK}.html").read_text()
    )


def test_everything_else_is_intact(graded, scores):
    c, submitted, before, server = graded.course, graded.submitted, graded.before, graded.server
    assert (c / "gradebook.db").is_file() and set(scores) == {s.id for s in STUDENTS}
    assert {p: digest(p) for p in submitted.rglob("*.ipynb")} == before["submissions"]
    assert grader_files() == before["grader"]
    assert server.connections == 0


def test_no_secret_reaches_a_student_and_no_limit_is_passed(graded):
    root, before = graded.root, graded.before
    for path in (root / "out").rglob("*"):
        if path.is_file() and path.suffix in (".html", ".ipynb", ".json", ".csv", ".md", ".jsonl"):
            text = path.read_text(errors="replace")
            assert CANARY not in text and DB_PASSWORD not in text, path
    assert {p: digest(p) for p in before["canaries"]} == before["canaries"]
    assert before["unix"].connections == 0
    assert not (root / "escaped-as-root").exists()
    assert not list((root / "out").rglob("big.bin"))  # what it wrote in its folder is not kept
    nb = json.loads(
        (
            root / "out" / "autograded" / "writes-1-gb-in-its-folder" / course.ASSIGNMENT / f"{NOTEBOOK}.ipynb"
        ).read_text()
    )
    printed = json.dumps(nb)
    assert "File too large" in printed  # RLIMIT_FSIZE (256 MB), not the disk
    printed = json.dumps(
        json.loads(
            (root / "out" / "autograded" / "fills-tmp-and-shm" / course.ASSIGNMENT / f"{NOTEBOOK}.ipynb").read_text()
        )
    )
    assert printed.count("blocked: /tmp after") == 1 and printed.count("blocked: /dev/shm after") == 1
    assert all(int(mb) < 300 for mb in re.findall(r"after (\d+) MB", printed))  # at the 256 MB cap


def test_the_feedback_never_shows_hidden_tests(graded):
    root, c = graded.root, graded.course
    secret = feedback.hidden_lines(c / "source" / course.ASSIGNMENT)
    assert secret  # the source has hidden tests to leak
    pages = list((root / "out" / "feedback").rglob("*.html"))
    graded_ids = {p.parent.parent.name for p in pages}
    assert graded_ids == {s.id for s in STUDENTS if s.id != "invalid-json"}
    for page in pages:
        text = feedback.text(page.read_text())
        assert "BEGIN HIDDEN TESTS" not in text
        assert not [line for line in secret if line in text], page


def test_the_feedback_head_is_the_course_configs(graded):
    """The class command loads the course's nbgrader_config.py: its pages have the same head as plain nbgrader's."""
    root = graded.root
    page = (root / "out" / "feedback" / "copies-grad" / course.ASSIGNMENT / f"{NOTEBOOK}.html").read_text()
    head = page.split('<div class="panel-body">', 1)[0]
    assert head.count('<tr class="bn-') == 26 and "<code>dlogprobs</code>" in head and "short of points" in head
    assert re.search(r'<div class="bn-picture">\s*<img [^>]*src="data:image/png;base64,', head)


def test_grades_csv_has_every_total(graded, scores):
    root = graded.root
    with open(root / "out" / "grades.csv", newline="") as f:
        rows = {r["student_id"]: r for r in csv.DictReader(f)}
    assert set(rows) == {s.id for s in STUDENTS}
    for sid, cells in scores.items():
        assert float(rows[sid]["score"]) == pytest.approx(sum(c.score for c in cells))
        assert float(rows[sid]["max_score"]) == pytest.approx(sum(c.max_score for c in cells))


def test_a_second_run_changes_nothing(graded, scores):
    root, c, submitted = graded.root, graded.course, graded.submitted
    proc = autograde(c, submitted, root / "out", *QUICK)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((root / "out" / "summary.json").read_text())
    assert summary["graded_now"] == 0 and summary["skipped_already_graded"] == len(STUDENTS)
    assert summary["canary"] == {"skipped": "nobody is left to grade"}  # no solutions graded for nobody
    assert "canary: skipped (nobody is left to grade)" in proc.stdout
    again = course.scores(c)
    assert {k: sorted((x.cell, x.score) for x in v) for k, v in again.items()} == {
        k: sorted((x.cell, x.score) for x in v) for k, v in scores.items()
    }


def test_a_killed_run_resumes_without_losing_or_doubling_a_grade(tmp_path):
    """SIGKILL after the first student is merged, then the same command again: the rest are graded, nobody twice.
    The tiny course (one worker, a few seconds a student) keeps the kill inside the run."""
    answers = {**TINY_ANSWERS, "dave": "def square(x):\n    raise NotImplementedError()"}
    totals = {"alice": 3.0, "bob": 1.0, "carol": 3.0, "dave": 0.0}  # tests/tiny_course.py: 2 + 1 points
    c = make_tiny_course(tmp_path / "tiny", answers)
    out = tmp_path / "out"
    cmd = command(c, c / "submitted", out, "--workers", "1", "--no-canary", assignment="hw1")
    proc = subprocess.Popen(
        cmd, env=course.tool_env(), start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    ledger = out / "ledger.jsonl"
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline and proc.poll() is None:
        if ledger.is_file() and ledger.read_text().count("\n") >= 1:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = [json.loads(line)["student"] for line in ledger.read_text().splitlines()]
    assert 1 <= len(done) < len(answers)
    rerun = subprocess.run(cmd, capture_output=True, text=True, env=course.tool_env(), timeout=900)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["graded_now"] == len(answers) - len(done)
    scores = course.scores(c, "hw1")
    assert set(scores) == set(answers)
    for student, cells in scores.items():
        assert len(cells) == len({x.cell for x in cells}) == 2  # one grade per cell: nothing counted twice
        assert sum(x.score for x in cells) == totals[student], student
    entries = [json.loads(line)["student"] for line in ledger.read_text().splitlines()]
    assert sorted(entries) == sorted(answers)  # each merged once


def test_the_wall_clock_limit_kills_one_student_and_grades_the_rest(tmp_path):
    c = make_tiny_course(
        tmp_path / "tiny", {"alice": TINY_ANSWERS["alice"], "stuck": "import time\nwhile True:\n    time.sleep(1)"}
    )
    start = time.monotonic()
    proc = autograde(
        c,
        c / "submitted",
        tmp_path / "out",
        *("--cell-timeout", "600", "--student-timeout", "45"),
        assignment="hw1",
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert time.monotonic() - start < 300
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["totals"] == {"alice": 3.0, "stuck": 0.0}
    assert any("wall-clock limit" in why for why in summary["review"]["stuck"])
    assert any("need manual grading" in why for why in summary["review"]["stuck"])
    # every process of that student had its scratch folder in its environment (JUPYTER_PATH): none is left
    assert survivors(str(tmp_path / "out" / "work" / "students" / "stuck")) == []


def test_the_readme_demo_with_the_class_command_grades_everyone_as_expected(tmp_path):
    """`make demo` (python -m grader demo --class-command): the demo class, with its broken and hostile students."""
    root = tmp_path / "demo"
    proc = demo(root, "--class-command")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "NOT AS EXPECTED" not in proc.stdout
    shown = [s for s in course.demo_class(sandbox_only=True) if s.demo]
    assert shown and all(re.search(rf"^{re.escape(s.id)} ", proc.stdout, re.M) for s in shown)
    assert (root / "autograde" / "summary.md").is_file() and (root / "autograde" / "grades.csv").is_file()


def test_the_canary_gave_the_solutions_full_marks_before_anyone_was_graded(graded):
    assert graded.summary["canary"]["score"] == graded.summary["canary"]["max_score"] > 0
    assert "canary: the instructor's solutions got" in graded.proc.stdout


def test_links_a_kernel_plants_are_never_followed(graded, scores):
    """plants-symlinks: nothing of what it linked to came back, was chmod'ed, or was written through."""
    root, c, before = graded.root, graded.course, graded.before
    assert {p: p.stat().st_mode for p in before["modes"]} == before["modes"]
    assert {p: digest(p) for p in c.rglob("source/**/*.ipynb")} == before["source"]
    for kind, suffix in (("feedback", ".html"), ("autograded", ".ipynb")):
        for s in STUDENTS:
            folder = root / "out" / kind / s.id
            for path in folder.rglob("*") if folder.is_dir() else []:
                assert not path.is_symlink(), path
                assert path.is_dir() or (path.is_file() and path.suffix == suffix), path
    notebook = root / "out" / "autograded" / "plants-symlinks" / course.ASSIGNMENT / f"{NOTEBOOK}.ipynb"
    assert notebook.is_file() and not notebook.is_symlink() and notebook.read_text().startswith("{")
