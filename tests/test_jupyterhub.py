"""The course on a real JupyterHub: students fetch, submit and get feedback, graded as they submit.

Nothing is mocked. As root the test creates Unix users (one instructor, two students) with passwords
(chpasswd; the hub logs them in with PAM), a course directory owned by the instructor, nbgrader's
exchange, and starts JupyterHub on 127.0.0.1 with docs/jupyterhub/jupyterhub_config.py: its
configurable-http-proxy (npm), LocalProcessSpawner, and the grade-on-submit service
(grader/instructor/gradeonsubmit.py) run by the hub under the instructor's account.

Student A's steps are clicks and keystrokes in headless Chromium (Playwright): the hub's PAM login, the
Assignments tab of nbgrader's labextension (Fetch, the notebook opened from Downloaded assignments, Exercise 1's
first answer typed into its cell, Ctrl+S, Submit, Fetch Feedback, "(view feedback)", the page opened in
JupyterLab), with the screenshots in build/artifacts/ (copied to docs/screenshots/ by hand, as the browser
tests' are: docs/maintainers.md). Student B's steps, and A's later submissions (the second and third graded, the
fourth held by the default limit of 3 per 24 h), are nbgrader's own commands (fetch_assignment, submit,
fetch_feedback) run as the student's Unix user (``runuser -u``): the exchange code behind those buttons. The
service run by hand is killed mid-grade and restarted, then holds a submission while its window is open, grades
it once restarted with a window that has passed, and, restarted with a deadline, keeps a late one ungraded.

Skips (saying why) only when not root or without configurable-http-proxy / bubblewrap; with CI set
those are failures.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from servers import free_port, wait_until_answering

from grader.instructor import course

pytestmark = pytest.mark.slow

VENV_BIN = Path(sys.executable).parent  # the hub itself (run as root) runs from this environment
USER_PY = {"python": sys.executable}  # what the users' processes run: set by user_python()
CHP = shutil.which("configurable-http-proxy")
NOTEBOOK = "01_atomic_backprop"
SCREENSHOTS = course.REPO / "build" / "artifacts"  # never into docs/: a test run leaves the tree clean


def _need(ok: bool, reason: str) -> None:
    if not ok:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the JupyterHub tests: {reason}", pytrace=False)
        pytest.skip(reason, allow_module_level=True)


_need(os.geteuid() == 0, "not root: the test creates Unix users and the hub spawns servers as them")
_need(CHP is not None, "configurable-http-proxy is not installed (npm install -g configurable-http-proxy)")
_need(shutil.which("bwrap") is not None, "bubblewrap is not installed (the class command's sandbox)")


def start_service(instructor: str, course_dir: Path, cmd: list[str]) -> subprocess.Popen:
    """``cmd`` (the grade-on-submit service) run by hand as the instructor in ``course_dir``, in its own session."""
    return subprocess.Popen(
        ["runuser", "-u", instructor, "--", "env", f"PATH={Path(USER_PY['python']).parent}:/usr/bin:/bin", *cmd],
        cwd=course_dir,
        env={**os.environ, "HOME": pwd.getpwnam(instructor).pw_dir},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def user_python(root: Path) -> str:
    """A Python every Unix user can run, with this environment's packages.

    When this venv's interpreter lives where other users cannot reach it (pyenv under /root, mode 0700),
    a venv is made from the system's Python of the same minor version that sees this venv's
    site-packages (a .pth file), with its console scripts rewritten to that venv's python."""
    probe = subprocess.run(
        ["runuser", "-u", "nobody", "--", sys.executable, "-c", "import nbgrader"], capture_output=True
    )
    if probe.returncode == 0:
        return sys.executable
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    # the same interpreter (another patch release breaks compiled and regex-heavy packages: soupsieve),
    # copied without its site-packages, its library path made relative (patchelf, a Debian package)
    patchelf = shutil.which("patchelf")
    _need(patchelf is not None, "patchelf is not installed (apt-get install patchelf; .ci/run installs it)")
    base, copy = Path(sys.base_prefix), root / "python"
    (copy / "bin").mkdir(parents=True)
    (copy / "lib").mkdir()
    shutil.copy2(Path(sys.executable).resolve(), copy / "bin" / version)
    for lib in (base / "lib").glob("libpython*"):
        shutil.copy2(lib, copy / "lib" / lib.name, follow_symlinks=False)
    top = str(base / "lib" / version)
    skip = {"site-packages", "test", "__pycache__", "idlelib", "tkinter", "ensurepip"}
    shutil.copytree(top, copy / "lib" / version, symlinks=True, ignore=lambda d, names: skip & set(names))
    subprocess.run([patchelf, "--set-rpath", "$ORIGIN/../lib", str(copy / "bin" / version)], check=True)
    system = str(copy / "bin" / version)
    venv = root / "venv"
    subprocess.run([system, "-m", "venv", "--without-pip", str(venv)], check=True)
    here = next(p for p in sys.path if p.endswith("site-packages") and p.startswith(sys.prefix))
    pth = venv / "lib" / version / "site-packages" / "zz-backprop-ninja-venv.pth"
    pth.write_text(f"import site; site.addsitedir({here!r})\n")
    python = venv / "bin" / "python"
    for script in VENV_BIN.iterdir():
        if script.is_file() and not script.is_symlink() and not (venv / "bin" / script.name).exists():
            first = script.read_bytes()[:200].split(b"\n", 1)[0]
            if first.startswith(b"#!") and b"python" in first:
                body = script.read_text().split("\n", 1)[1]
                (venv / "bin" / script.name).write_text(f"#!{python}\n{body}")
                os.chmod(venv / "bin" / script.name, 0o755)
    for shared in ("share", "etc"):  # nbconvert's templates, the Jupyter extensions' enablement and assets
        (venv / shared).symlink_to(Path(sys.prefix) / shared)
    subprocess.run(["chmod", "-R", "a+rX", str(venv), str(copy)], check=True)
    return str(python)


class Users:
    """Unix users made for one test module, removed (with their processes) at the end."""

    def __init__(self):
        self.tag = secrets.token_hex(3)
        self.names: list[str] = []
        self.passwords: dict[str, str] = {}

    def add(self, role: str) -> str:
        name = f"bn{role}{self.tag}"
        subprocess.run(["useradd", "-m", "-s", "/bin/bash", name], check=True)
        password = secrets.token_urlsafe(12)
        subprocess.run(["chpasswd"], input=f"{name}:{password}\n", text=True, check=True)
        os.chmod(pwd.getpwnam(name).pw_dir, 0o700)
        self.names.append(name)
        self.passwords[name] = password
        return name

    def remove(self) -> None:
        for name in self.names:
            pids = subprocess.run(["ps", "-u", name, "-o", "pid="], capture_output=True, text=True).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            subprocess.run(["userdel", "-r", "-f", name], capture_output=True)


def as_user(user: str, *cmd: str, config: Path, cwd: Path | None = None, check: bool = True, timeout: int = 900):
    """``runuser -u USER -- CMD`` with a clean environment: the venv first on PATH, the role's Jupyter config."""
    home = pwd.getpwnam(user).pw_dir
    env = [
        f"HOME={home}",
        f"USER={user}",
        f"PATH={Path(USER_PY['python']).parent}:/usr/local/bin:/usr/bin:/bin",
        f"JUPYTER_CONFIG_PATH={config}",
        f"BACKPROP_NINJA_NAMES={os.environ.get('BACKPROP_NINJA_NAMES', '')}",
    ]
    proc = subprocess.run(
        ["runuser", "-u", user, "--", "env", "-i", *env, *cmd],
        cwd=cwd or home,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode:
        raise AssertionError(f"{user}: {' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def nbgrader_as(user: str, *args: str, config: Path, **kw):
    return as_user(user, USER_PY["python"], "-m", "nbgrader", *args, config=config, **kw)


PERMISSIONS = """
# The instructor is not root: nbgrader's autograded files writable by their owner (nbgrader reads the
# digits as octal; its default, 444, stops the class command from rewriting an autograded notebook).
c.BaseConverter.permissions = 644
"""


def make_course(root: Path, instructor: str, config: Path) -> Path:
    """A course directory owned by the instructor (0700), the assignment generated and released by them."""
    c = course.new_course(root)
    with open(c / "nbgrader_config.py", "a") as f:  # docs/jupyterhub.md: a non-root instructor grades
        f.write(PERMISSIONS)
    subprocess.run(["chown", "-R", f"{instructor}:{instructor}", str(c)], check=True)
    os.chmod(c, 0o700)
    nbgrader_as(instructor, "generate_assignment", course.ASSIGNMENT, config=config, cwd=c)
    nbgrader_as(instructor, "release_assignment", course.ASSIGNMENT, config=config, cwd=c)
    return c


def first_answer() -> str:
    """Exercise 1's first answer cell (dlogprobs ... dlogits) answered correctly."""
    source = nbformat.read(course.REPO / "source" / course.ASSIGNMENT / f"{NOTEBOOK}.ipynb", as_version=4)
    return course.solutions(source)["answer_cross_entropy"]


def answer_first_cell(path: Path) -> None:
    """The first answer written into a fetched notebook file (tests/bench_hub.py's students; A types it)."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "answer_cross_entropy":
            cell.source = first_answer()
    nbformat.write(nb, path)


def feedback_pages(user: str, config: Path) -> dict[str, str]:
    """fetch_feedback as the student; the newest fetched feedback page of each notebook."""
    nbgrader_as(user, "fetch_feedback", course.ASSIGNMENT, config=config, check=False)
    folder = Path(pwd.getpwnam(user).pw_dir) / course.ASSIGNMENT / "feedback"
    pages = {}
    for stamp in sorted(folder.iterdir()) if folder.is_dir() else []:
        for page in stamp.glob("*.html"):
            pages[page.stem] = page.read_text()
    return pages


def wait_for_feedback(user: str, config: Path, timeout: float, want=lambda pages: True) -> tuple[dict, float]:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        pages = feedback_pages(user, config)
        if NOTEBOOK in pages and want(pages):
            return pages, time.monotonic() - start
        time.sleep(3)
    raise AssertionError(f"{user}: no feedback after {timeout:.0f} s")


def text_of(page: str) -> str:
    import html

    return html.unescape(re.sub(r"<[^>]+>", " ", page))


def submit(user: str, config: Path) -> None:
    nbgrader_as(user, "submit", course.ASSIGNMENT, config=config, cwd=Path(pwd.getpwnam(user).pw_dir))


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    users = Users()
    root = Path(f"/tmp/bnhub-{users.tag}")
    root.mkdir(mode=0o755)
    proc = None
    try:
        instructor, a, b = users.add("i"), users.add("a"), users.add("b")
        USER_PY["python"] = user_python(root)
        port = free_port()
        env = {
            **os.environ,
            "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
            "BN_INSTRUCTOR": instructor,
            "BN_STUDENTS": f"{a},{b}",
            "BN_COURSE": str(root / "course"),
            "BN_EXCHANGE": str(root / "exchange"),
            "BN_HUB_STATE": str(root / "hub"),
            "BN_HUB_PORT": str(port),
            "BN_HUB_API_PORT": str(free_port()),
            "BN_PROXY_API_PORT": str(free_port()),
            "BN_PROXY_COMMAND": CHP,
            "BN_GRADE_ARGS": "--interval 2",
            "BN_AUTOGRADE_ARGS": "--workers 2 --cell-timeout 120",
            "BN_PYTHON": USER_PY["python"],
        }
        # the course exists before the hub starts its service there (made and released by the instructor)
        (root / "exchange").mkdir()
        os.chmod(root / "exchange", 0o777)
        pre = root / "pre-config"
        pre.mkdir(mode=0o755)
        (pre / "nbgrader_config.py").write_text(
            "c = get_config()  # noqa: F821\n"
            f"c.CourseDirectory.course_id = 'backprop-ninja'\nc.Exchange.root = {str(root / 'exchange')!r}\n"
        )
        make_course(root / "course", instructor, pre)
        log = open(root / "jupyterhub.log", "w")
        proc = subprocess.Popen(
            [str(VENV_BIN / "jupyterhub"), "-f", str(course.REPO / "docs/jupyterhub/jupyterhub_config.py")],
            cwd=root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}"
        wait_until_answering(f"{url}/hub/api/", proc, root / "jupyterhub.log", 180, "JupyterHub")
        configs = {r: root / "hub" / "jupyter-config" / r for r in ("instructor", "student")}
        yield {
            "url": url,
            "root": root,
            "course": root / "course",
            "exchange": root / "exchange",
            "instructor": instructor,
            "a": a,
            "b": b,
            "users": users,
            "config": configs,
            "state": root / "course" / "gradeonsubmit",
            "proc": proc,
        }
    finally:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        users.remove()
        if not os.environ.get("BN_KEEP"):
            shutil.rmtree(root, ignore_errors=True)


def statuses(state: Path, student: str) -> list[str]:
    """The service's state (read as root): the status of each of the student's submissions, oldest first,
    ``released`` for a graded one whose feedback was released."""
    try:
        subs = json.loads((state / "state.json").read_text())["submissions"].values()
    except (OSError, ValueError, KeyError):
        return []
    mine = sorted((s for s in subs if s["student"] == student), key=lambda s: s["timestamp"])
    return ["released" if s["status"] == "graded" and s.get("released_at") else s["status"] for s in mine]


def released_to(state: Path, student: str) -> bool:
    """One of the student's submissions graded and its feedback released."""
    return "released" in statuses(state, student)


def wait_for_status(state: Path, student: str, want: list[str], timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while statuses(state, student) != want:
        got = statuses(state, student)
        assert time.monotonic() < deadline, f"{student}: {got}, not {want}\n{log.read_text()[-3000:]}"
        time.sleep(2)


def student_a_in_the_browser(hub, before_feedback) -> dict:
    """Student A in headless Chromium, every step a click or keystroke in JupyterLab.

    Log in (the hub's PAM login page); Nbgrader > Assignment List; Fetch (Released assignments); open the
    notebook from Downloaded assignments; type Exercise 1's first answer into its cell; save (Ctrl+S);
    Submit; ``before_feedback()`` (B's steps), then wait (reading the service's state as root, no action)
    until A's feedback is released; Fetch Feedback; (view feedback); open the page in JupyterLab."""
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    _need(Path(chromium).exists(), "Debian's chromium is not installed")
    from playwright.sync_api import expect, sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    a = hub["a"]
    home = Path(pwd.getpwnam(a).pw_dir)
    seen: dict = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(240_000)
            page.goto(f"{hub['url']}/hub/login")
            page.fill("#username_input", a)
            page.fill("#password_input", hub["users"].passwords[a])
            page.click("#login_submit")
            page.wait_for_url(re.compile(rf"/user/{a}/lab"), timeout=300_000)
            news = page.get_by_role("button", name="No", exact=True)  # JupyterLab's "notified about news?"

            def assignments_tab() -> None:
                page.locator(".lm-MenuBar-itemLabel", has_text="Nbgrader").click(timeout=300_000)
                seen.setdefault("formgrader_items", page.locator(".lm-Menu-itemLabel", has_text="Formgrader").count())
                page.locator(".lm-Menu-itemLabel", has_text="Assignment List").first.click()
                expect(page.locator("body")).to_contain_text("Submitted assignments", timeout=120_000)

            assignments_tab()
            released = page.locator("#released_assignments_list .list_item", has_text=course.ASSIGNMENT)
            released.get_by_role("button", name="Fetch", exact=True).click()
            fetched = page.locator("#fetched_assignments_list > .list_item", has_text=course.ASSIGNMENT)
            fetched.locator("a.assignment-notebooks-link").click()
            fetched.locator(".assignment-notebooks a", has_text=NOTEBOOK).click()  # docmanager:open

            answer = first_answer()
            cell = page.locator(".jp-Notebook .jp-CodeCell", has_text="define dlogprobs, dprobs")
            cell.locator(".cm-content").click()
            page.keyboard.press("Control+a")  # the cell's text, as released (YOUR CODE HERE, raise ...)
            page.keyboard.insert_text(answer)  # typed as text input: no auto-indent or auto-closed brackets
            page.keyboard.press("Escape")
            notebook = home / course.ASSIGNMENT / f"{NOTEBOOK}.ipynb"
            dirty = page.locator(".lm-TabBar-tab.jp-mod-dirty", has_text=NOTEBOOK)
            deadline = time.monotonic() + 120
            while True:  # saved once more if the kernel's start marked it changed (its language_info) after
                page.keyboard.press("Control+s")
                page.wait_for_timeout(3000)
                if "dlogprobs[range(n), Yb] = -1.0/n" in notebook.read_text() and not dirty.count():
                    break
                assert time.monotonic() < deadline, "the notebook was not saved from the browser"
            seen["saved_cell"] = next(
                c.source for c in nbformat.read(notebook, as_version=4).cells if "define dlogprobs" in c.source
            )

            page.locator(".lm-TabBar-tab", has_text="Assignments").click()
            fetched.get_by_role("button", name="Submit", exact=True).click()
            submitted = page.locator("#submitted_assignments_list > .list_item", has_text=course.ASSIGNMENT)
            expect(submitted.get_by_role("button", name="Fetch Feedback", exact=True)).to_be_visible()
            seen["submitted_at"] = time.monotonic()

            before_feedback()
            deadline = time.monotonic() + 1200
            while not released_to(hub["state"], a):
                assert time.monotonic() < deadline, f"{a}: no feedback after 1200 s"
                page.wait_for_timeout(3000)
            submitted.get_by_role("button", name="Fetch Feedback", exact=True).click()
            view = submitted.locator("a", has_text="(view feedback)")
            expect(view).to_be_visible()
            seen["seconds"] = time.monotonic() - seen["submitted_at"]
            if news.count():
                news.click()
            page.wait_for_timeout(2000)
            page.screenshot(path=str(SCREENSHOTS / "jupyterhub-assignments.png"))
            view.click()  # filebrowser:go-to-path, the fetched feedback folder
            page.locator(".jp-DirListing-item", has_text=f"{NOTEBOOK}.html").dblclick()
            frame = page.frame_locator(".jp-HTMLViewer iframe, .jp-RenderedHTMLCommon iframe, iframe").first
            expect(frame.locator("body")).to_contain_text("Graded automatically on submission")
            seen["feedback_text"] = frame.locator("body").inner_text()
            if news.count():
                news.click()
            page.wait_for_timeout(1000)
            page.screenshot(path=str(SCREENSHOTS / "jupyterhub-feedback.png"))
        finally:
            browser.close()
    return seen


@pytest.fixture(scope="module")
def graded(hub):
    """A in the browser (fetch, answer Exercise 1's first cell, save, submit, fetch feedback); B submits the
    blank notebook with nbgrader's commands as B's Unix user."""
    cfg = hub["config"]["student"]

    def b_submits() -> None:
        nbgrader_as(hub["b"], "fetch_assignment", course.ASSIGNMENT, config=cfg)
        submit(hub["b"], cfg)

    seen = student_a_in_the_browser(hub, b_submits)
    folder = Path(pwd.getpwnam(hub["a"]).pw_dir) / course.ASSIGNMENT / "feedback"
    pages_a = {page.stem: page.read_text() for stamp in sorted(folder.iterdir()) for page in stamp.glob("*.html")}
    pages_b, _ = wait_for_feedback(hub["b"], cfg, 600, lambda p: "Not graded yet" not in p[NOTEBOOK])
    return {"a": pages_a, "b": pages_b, "seen": seen}


def score(page: str) -> tuple[float, float]:
    m = re.search(r"Score:\s*([\d.]+)\s*/\s*([\d.]+)", text_of(page))
    assert m, text_of(page)[:2000]
    return float(m.group(1)), float(m.group(2))


def assert_no_hidden_test_source(text: str) -> None:
    hidden = course.REPO / "source" / course.ASSIGNMENT / f"{NOTEBOOK}.ipynb"
    for cell in nbformat.read(hidden, as_version=4).cells:
        m = re.search(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", cell.source, re.S)
        for line in m.group(1).splitlines() if m else []:
            if len(line.strip()) > 20:
                assert line.strip() not in text, f"hidden test source in the feedback: {line}"


def test_a_gets_points_and_hints_without_instructor_action(hub, graded):
    page = graded["a"][NOTEBOOK]
    got, out_of = score(page)
    assert 0 < got < out_of, (got, out_of)
    assert "Graded automatically on submission" in page
    assert_no_hidden_test_source(text_of(page))
    log = (hub["state"] / "gradeonsubmit.log").read_text()
    assert "feedback released" in log and hub["a"] in log


def test_b_blank_notebook_gets_zero_and_the_stub_hint(hub, graded):
    page = graded["b"][NOTEBOOK]
    assert score(page)[0] == 0
    assert "NotImplementedError" in text_of(page)


def test_b_cannot_read_a_submission_or_feedback_nor_write_the_course(hub, graded):
    a, b, cfg = hub["a"], hub["b"], hub["config"]["student"]
    inbound = hub["exchange"] / "backprop-ninja" / "inbound"
    a_sub = next(inbound.glob(f"{a}+*"))
    targets = [
        hub["course"] / "submitted" / a / course.ASSIGNMENT / f"{NOTEBOOK}.ipynb",
        hub["course"] / "feedback" / a / course.ASSIGNMENT / f"{NOTEBOOK}.html",
        hub["course"] / "gradebook.db",
        Path(pwd.getpwnam(a).pw_dir) / course.ASSIGNMENT / f"{NOTEBOOK}.ipynb",
        next((Path(pwd.getpwnam(a).pw_dir) / course.ASSIGNMENT / "feedback").glob(f"*/{NOTEBOOK}.html")),
    ]
    for path in targets:
        assert path.exists(), path
        proc = as_user(b, "cat", str(path), config=cfg, check=False)
        assert proc.returncode != 0 and "Permission denied" in proc.stderr, path
    for folder in (inbound, hub["exchange"] / "backprop-ninja" / "feedback"):  # B cannot list who handed in what
        proc = as_user(b, "ls", str(folder), config=cfg, check=False)
        assert proc.returncode != 0 and "Permission denied" in proc.stderr, folder
    proc = as_user(b, "ls", f"{inbound}/{a}+*", config=cfg, check=False)  # nor find A's by its name's start
    assert proc.returncode != 0
    for path in (hub["course"] / "gradebook.db", hub["course"] / "b-was-here", hub["course"] / "submitted" / b):
        proc = as_user(b, "touch", str(path), config=cfg, check=False)
        assert proc.returncode != 0, path
    assert a_sub.exists()


def test_fourth_submission_within_the_window_is_held_and_the_feedback_says_why(hub, graded):
    """The default limit, 3 graded submissions per student per 24 h: A's second and third are graded, the
    fourth is kept and not graded, and A's feedback for it says why and until when."""
    cfg, a, state = hub["config"]["student"], hub["a"], hub["state"]
    log = state / "gradeonsubmit.log"
    for n in (2, 3):
        submit(a, cfg)
        wait_for_status(state, a, ["released"] * n, 600, log)
    submit(a, cfg)
    pages, _ = wait_for_feedback(a, cfg, 300, lambda p: any("Not graded yet" in x for x in p.values()))
    held = text_of(pages[NOTEBOOK])
    assert re.search(r"graded at most 3 times per 24 h", held, re.I), held
    assert re.search(r"waits until \d{4}-\d\d-\d\d \d\d:\d\d UTC", held), held
    assert statuses(state, a) == ["released", "released", "released", "held"]


def test_browser_a_typed_the_answer_and_saw_the_feedback_in_jupyterlab(hub, graded):
    seen = graded["seen"]
    assert seen["formgrader_items"] == 0  # a student's Nbgrader menu has no Formgrader
    assert seen["saved_cell"].strip() == first_answer().strip()  # what was typed is what was saved
    got, out_of = score(seen["feedback_text"])  # the page opened in JupyterLab shows the points
    assert 0 < got < out_of, (got, out_of)
    assert score(seen["feedback_text"]) == score(graded["a"][NOTEBOOK])
    assert "dlogprobs" in seen["feedback_text"] and "ok" in seen["feedback_text"]
    assert re.search(
        r"dh`? is not defined yet\. Its answer cell still raises NotImplementedError", seen["feedback_text"]
    )
    assert_no_hidden_test_source(seen["feedback_text"])


def test_service_killed_mid_grade_grades_every_submission_exactly_once(hub):
    """The service run by hand (as the instructor) on a course of its own, SIGKILLed while grading, restarted."""
    instructor = hub["instructor"]
    root = hub["root"] / "kill"
    root.mkdir()
    exchange = root / "exchange"
    exchange.mkdir()
    os.chmod(exchange, 0o777)
    config = root / "config"
    config.mkdir()
    (config / "nbgrader_config.py").write_text(
        "c = get_config()  # noqa: F821\n"
        f"c.CourseDirectory.course_id = 'backprop-ninja'\nc.Exchange.root = {str(exchange)!r}\n"
    )
    os.chmod(root, 0o755)
    os.chmod(config, 0o755)
    c = make_course(root / "course", instructor, config)
    for user in (hub["a"], hub["b"]):
        home = Path(pwd.getpwnam(user).pw_dir)
        shutil.rmtree(home / course.ASSIGNMENT, ignore_errors=True)
        nbgrader_as(user, "fetch_assignment", course.ASSIGNMENT, config=config)
        submit(user, config)
    state = root / "state"
    state.mkdir()
    subprocess.run(["chown", f"{instructor}:{instructor}", str(state)], check=True)
    cmd = [
        USER_PY["python"],
        "-m",
        "grader.instructor.gradeonsubmit",
        "--course",
        str(c),
        "--exchange",
        str(exchange),
        "--course-id",
        "backprop-ninja",
        "--state",
        str(state),
        "--interval",
        "2",
        "--limit",  # one graded submission per student per hour: A's next one is held, whatever the machine's speed
        "1",
        "--window-hours",
        "1",
        "--",  # the class command's options
        "--workers",
        "1",  # one at a time: the kill lands while one student is merged and the other is not
        "--no-canary",
    ]

    first = start_service(instructor, c, cmd)
    ledger = state / "autograde" / "ledger.jsonl"
    deadline = time.monotonic() + 900
    while not (ledger.exists() and ledger.read_text().strip()):  # one student merged, the other grading
        assert time.monotonic() < deadline and first.poll() is None, (state / "gradeonsubmit.log").read_text()
        time.sleep(0.5)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    time.sleep(2)
    killed_state = json.loads((state / "state.json").read_text())
    grading = [k for k, s in killed_state["submissions"].items() if s["status"] == "grading"]
    assert grading, "the kill should land while a submission is being graded"
    second = start_service(instructor, c, cmd)
    try:
        deadline = time.monotonic() + 900
        while True:
            st = json.loads((state / "state.json").read_text())
            if all(s["status"] == "graded" and s.get("released_at") for s in st["submissions"].values()):
                break
            assert time.monotonic() < deadline and second.poll() is None, (state / "gradeonsubmit.log").read_text()
            time.sleep(2)
    finally:
        os.killpg(second.pid, signal.SIGTERM)
        second.wait(60)
    entries = [json.loads(line) for line in ledger.read_text().splitlines() if line.strip()]
    graded = [e["student"] for e in entries if e.get("graded")]
    assert sorted(graded) == sorted([hub["a"], hub["b"]]), entries  # each merged once, none twice
    assert len(st["submissions"]) == 2
    assert "was being graded when the service stopped" in (state / "gradeonsubmit.log").read_text()
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{c / 'gradebook.db'}") as gb:
        subs = gb.assignment_submissions(course.ASSIGNMENT)
        assert sorted(s.student.id for s in subs) == sorted([hub["a"], hub["b"]])

    # The window: A's next submission is held (A is told until when), then graded once the window reopens.
    # The reopening is the service restarted with a window that has passed (0.36 s), not a wait on the clock:
    # a 54-second window raced the machine's speed (on a loaded CI machine it had passed before A resubmitted).
    a, log = hub["a"], state / "gradeonsubmit.log"
    with running(start_service(instructor, c, cmd)):
        submit(a, config)
        wait_for_status(state, a, ["released", "held"], 300, log)
        pages, _ = wait_for_feedback(a, config, 120, lambda p: "Not graded yet" in p[NOTEBOOK])
        assert re.search(r"graded at most 1 times per 1 h.*waits until", text_of(pages[NOTEBOOK]), re.S)
        time.sleep(4)  # two more polls: a held submission stays held while its window is open
        assert statuses(state, a) == ["released", "held"]
    at = cmd.index("--window-hours") + 1
    reopened = time.time()
    with running(start_service(instructor, c, [*cmd[:at], "0.0001", *cmd[at + 1 :]])):
        wait_for_status(state, a, ["released", "released"], 600, log)
        pages, _ = wait_for_feedback(a, config, 120, lambda p: "Not graded yet" not in p[NOTEBOOK])
        assert score(pages[NOTEBOOK])[1] > 0
    subs = json.loads((state / "state.json").read_text())["submissions"].values()
    held = max((s for s in subs if s["student"] == a), key=lambda s: s["timestamp"])
    assert held["graded_at"] >= reopened  # not before the window let it

    # The deadline: restarted with one that has passed, A's next submission is kept, not graded, and A is told.
    at = cmd.index("--")
    late_cmd = [*cmd[:at], "--deadline", dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), *cmd[at:]]
    with running(start_service(instructor, c, late_cmd)):
        submit(a, config)
        wait_for_status(state, a, ["released", "released", "late"], 300, log)
        pages, _ = wait_for_feedback(a, config, 120, lambda p: "after the deadline" in text_of(p[NOTEBOOK]))
        assert "graded by the instructor, not automatically" in text_of(pages[NOTEBOOK])
    entries = [json.loads(line) for line in ledger.read_text().splitlines() if line.strip()]
    assert sorted(e["student"] for e in entries if e.get("graded")) == sorted([a, a, hub["b"]])  # the held one once


@contextlib.contextmanager
def running(service: subprocess.Popen):
    """The service until the block ends, then stopped (SIGTERM to its session)."""
    try:
        yield service
    finally:
        os.killpg(service.pid, signal.SIGTERM)
        service.wait(60)
