"""The student and instructor paths in a real browser: JupyterLab in headless Chromium, driven by Playwright.

Chromium is Debian's package (``/usr/bin/chromium``, installed by ``.ci/run``), not a browser downloaded
by Playwright. The tests skip, saying why, only where it is not installed, and never in CI (``CI`` set):
there a missing browser is a failure. Screenshots go to build/artifacts/ (the README's pictures come
from there).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from classes import catalogue, released_course

from grader.instructor import course

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = course.REPO / "build" / "artifacts"
NOTEBOOK = "01_atomic_backprop"
pytestmark = pytest.mark.slow  # JupyterLab and a browser

if not Path(CHROMIUM).exists():
    reason = "Debian's chromium is not installed (apt-get install chromium; .ci/run installs it)"
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the browser tests: {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)

from playwright.sync_api import expect, sync_playwright  # noqa: E402  (after the skip: needs the browser)
from servers import free_port, stop, wait_until_answering  # noqa: E402


def lab_settings(folder: Path) -> Path:
    """JupyterLab user settings for a test: no news fetched (no network here), every cell in the DOM."""
    settings = {
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
            "fetchNews": "false",
            "checkForUpdates": False,
        },
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    }
    for name, value in settings.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))
    return folder


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab on 127.0.0.1 with a token, in a fresh course directory (release/ generated, gradebook made)."""
    tmp = tmp_path_factory.mktemp("lab")
    root = released_course(tmp / "course")  # release/ generated, the assignment in the course's gradebook.db
    shutil.copytree(course.REPO / "notebooks", root / "notebooks")  # the answer keys, as a reader opens them
    token = secrets.token_hex(16)
    port = free_port()
    env = course.tool_env()
    env.update(
        JUPYTERLAB_SETTINGS_DIR=str(lab_settings(tmp / "settings")),
        JUPYTERLAB_WORKSPACES_DIR=str(tmp / "workspaces"),
        JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
    )
    args = [
        sys.executable,
        "-m",
        "jupyter",
        "lab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.append("--allow-root")  # CI containers run as root
    log = (tmp / "lab.log").open("w")
    proc = subprocess.Popen(args, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_until_answering(f"{url}/api/status?token={token}", proc, tmp / "lab.log", 90, "JupyterLab")
    yield {"url": url, "token": token, "root": root, "log": tmp / "lab.log"}
    stop(proc)
    log.close()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )  # Playwright gives every context a fresh, empty profile
        yield b
        b.close()


@pytest.fixture
def page(browser, lab):
    context = browser.new_context(
        viewport={"width": 1400, "height": 1000}, extra_http_headers={"Authorization": f"token {lab['token']}"}
    )
    page = context.new_page()
    page.set_default_timeout(60_000)
    yield page
    context.close()


def open_notebook(page, lab, path: str):
    workspace = secrets.token_hex(4)  # a new workspace: only this notebook open, whatever earlier tests opened
    page.goto(f"{lab['url']}/lab/workspaces/{workspace}/tree/{path}?token={lab['token']}")
    page.locator(".jp-Notebook .jp-Cell").first.wait_for()
    expect(page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")).to_have_count(1, timeout=90_000)


def cell(page, text: str):
    """The notebook cell whose source contains ``text``."""
    return page.locator(".jp-Notebook .jp-Cell", has=page.locator(".jp-InputArea", has_text=text))


def test_student_answers_the_first_cell_and_sees_the_checks(page, lab):
    source = nbformat.read(course.REPO / "source" / course.ASSIGNMENT / f"{NOTEBOOK}.ipynb", as_version=4)
    answer = course.solutions(source)["answer_cross_entropy"]
    open_notebook(page, lab, f"release/{course.ASSIGNMENT}/{NOTEBOOK}.ipynb")

    editor = cell(page, "# define dlogprobs").locator(".cm-content")
    editor.click()
    page.keyboard.press("Control+a")
    page.keyboard.insert_text(answer)  # typed as the student pastes it: no auto-indent
    expect(editor).to_contain_text("dlogprobs[range(n), Yb]")

    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator("li[data-command='runmenu:run-all']").click()

    first = cell(page, "grader.atomic.check_stage('cross-entropy')").locator(".jp-OutputArea")
    expect(first).to_contain_text("logprobs", timeout=120_000)
    expect(first).to_contain_text(re.compile(r"logprobs\s+\| exact: \w+\s*\| approximate: True\s+\| maxdiff"))
    expect(first).not_to_contain_text("approximate: False")
    second = cell(page, "grader.atomic.check_stage('second linear layer')").locator(".jp-OutputArea")
    expect(second).to_contain_text("is not defined yet (is its answer cell still the NotImplementedError() stub?)")

    cell(page, "grader.atomic.check_stage('cross-entropy')").screenshot(path=_artifact("student-check.png"))


def test_reader_sees_the_loss_curve_in_the_answer_key_of_exercise_4(page, lab):
    open_notebook(page, lab, "notebooks/04_full_training.ipynb")
    plot = cell(page, "plt.ylabel(f'log10 loss").locator(".jp-OutputArea img")
    expect(plot).to_be_visible()
    assert plot.evaluate("img => img.naturalWidth") > 300  # the stored PNG rendered, not a broken image
    expect(cell(page, "plt.ylabel(f'log10 loss").locator(".jp-OutputArea")).not_to_contain_text("Error")
    plot.screenshot(path=_artifact("loss-curve.png"))


def jupyter_list(*args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "jupyter", *args, "list"], env=course.tool_env(), capture_output=True, text=True
    )
    return re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr)  # without the colours


def test_nbgrader_labextension_and_server_extension_are_enabled():
    assert re.search(r"@jupyter/nbgrader v\S+ enabled OK", jupyter_list("labextension"))
    assert re.search(r"nbgrader\.server_extensions\.formgrader enabled", jupyter_list("server", "extension"))


def test_instructor_sees_the_assignment_and_its_notebooks_in_the_formgrader(page, lab):
    page.goto(f"{lab['url']}/lab?token={lab['token']}")
    page.locator(".lm-MenuBar-itemLabel", has_text="Nbgrader").click()  # the labextension's menu
    page.locator(".lm-Menu-itemLabel", has_text="Formgrader").first.click()
    frame = page.frame_locator("iframe").first
    expect(frame.locator("body")).to_contain_text(course.ASSIGNMENT, timeout=60_000)
    page.screenshot(path=_artifact("formgrader.png"))

    page.goto(f"{lab['url']}/formgrader/gradebook/{course.ASSIGNMENT}?token={lab['token']}")
    for name in course.notebook_names(lab["root"]):
        expect(page.locator("body")).to_contain_text(name)


def test_validate_button_reports_every_failing_test_of_a_release_notebook(page, lab):
    release = nbformat.read(lab["root"] / "release" / course.ASSIGNMENT / f"{NOTEBOOK}.ipynb", as_version=4)
    tests = [c for c in release.cells if c.metadata.get("nbgrader", {}).get("grade") and c.cell_type == "code"]
    open_notebook(page, lab, f"release/{course.ASSIGNMENT}/{NOTEBOOK}.ipynb")
    page.locator(".validate-button").click()
    message = page.locator("#validation-message")
    expect(message).to_have_class(re.compile("validation-failed"), timeout=300_000)
    expect(message.locator("p", has_text="The following cell failed:")).to_have_count(len(tests))
    page.screenshot(path=_artifact("validate.png"))


def _artifact(name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / name


# ---------------------------------------------------------------------------------------------
# The picture of the backward graph (grader.graph), in JupyterLab and in the feedback page

ONE_MISTAKE = "dcounts-not-accumulated"  # source/demo_class.toml: dcounts wrong, everything below it right-from-wrong

# the most frequent colour inside each node's box of the PNG as the browser decoded it (canvas pixels)
BOX_COLOURS_JS = """(img, boxes) => {
  const canvas = document.createElement('canvas');
  canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
  const ctx = canvas.getContext('2d');
  ctx.drawImage(img, 0, 0);
  const out = {};
  for (const [name, [l, t, r, b]] of Object.entries(boxes)) {
    const data = ctx.getImageData(l + 5, t + 4, r - l - 10, b - t - 8).data;
    const counts = {};
    for (let i = 0; i < data.length; i += 4) {
      const key = data[i] + ',' + data[i + 1] + ',' + data[i + 2];
      counts[key] = (counts[key] || 0) + 1;
    }
    out[name] = Object.entries(counts).sort((a, b) => b[1] - a[1])[0][0].split(',').map(Number);
  }
  return out;
}"""


def _nearest_status(rgb):
    from grader import graph

    def dist(hex_colour):
        return sum((a - int(hex_colour[i : i + 2], 16)) ** 2 for a, i in zip(rgb, (1, 3, 5), strict=True))

    return min(graph.LEGEND, key=lambda k: dist(graph.FILLS[k]))


def _one_mistake_notebook(root: Path, name: str) -> Path:
    release = nbformat.read(root / "release" / course.ASSIGNMENT / f"{NOTEBOOK}.ipynb", as_version=4)
    source = nbformat.read(root / "source" / course.ASSIGNMENT / f"{NOTEBOOK}.ipynb", as_version=4)
    nb = course.solved(release, source)
    for edit in next(s for s in course.demo_class() if s.id == ONE_MISTAKE).edits:
        course.apply_edit(nb, edit, source)
    path = root / name
    nbformat.write(nb, path)
    return path


def test_student_with_one_wrong_gradient_sees_where_it_entered_in_the_picture(page, lab):
    from grader import graph

    _one_mistake_notebook(lab["root"], "one-mistake.ipynb")
    open_notebook(page, lab, "one-mistake.ipynb")
    first = cell(page, "ds = grader.load_dataset()").locator(".jp-InputPrompt")
    for attempt in range(3):  # a Run All clicked while the kernel is still settling is sometimes lost: click again
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        page.locator("li[data-command='runmenu:run-all']").click()
        try:
            expect(first).to_contain_text(re.compile(r"\[(\*|\d+)\]"), timeout=30_000)
            break
        except AssertionError:
            if attempt == 2:
                raise

    summary = cell(page, "grader.atomic.table()")
    try:
        expect(summary.locator(".jp-OutputArea")).to_contain_text("25 of 26 gradients pass", timeout=300_000)
    except AssertionError:
        page.screenshot(path=_artifact("student-graph-failed.png"), full_page=True)
        raise
    picture = summary.locator(".jp-OutputArea img")
    expect(picture).to_be_visible()
    assert picture.evaluate("img => [img.naturalWidth, img.naturalHeight]") == list(graph.image_size())
    colours = picture.evaluate(BOX_COLOURS_JS, graph.boxes())
    seen = {name: _nearest_status(rgb) for name, rgb in colours.items() if name != "loss"}
    assert seen["counts"] == graph.WRONG
    for name in ("logprobs", "probs", "counts_sum_inv", "counts_sum", "b1"):
        assert seen[name] == graph.RIGHT, name
    for name in ("norm_logits", "logits", "h", "W2", "hpreact", "bnvar", "hprebn", "W1", "emb", "C"):
        assert seen[name] == graph.CARRIED, name
    # the text table is still there, above the picture, as it was
    expect(summary.locator(".jp-OutputArea")).to_contain_text("FAIL: dcounts is wrong")
    # a stage check draws it too
    expect(cell(page, "grader.atomic.check_stage('embedding')").locator(".jp-OutputArea img")).to_be_visible()
    picture.scroll_into_view_if_needed()
    picture.screenshot(path=_artifact("student-graph.png"))  # as JupyterLab shows it (the rows are text, above)


@pytest.fixture(scope="module")
def feedback(tmp_path_factory):
    """A demo student with one mistake in Exercise 1, graded by plain nbgrader: its feedback page. (Its own
    one-notebook course, a few seconds: the plain catalogue of test_pipeline.py may be on the other worker.)"""
    root = released_course(tmp_path_factory.mktemp("feedback") / "course")
    (s,) = catalogue([ONE_MISTAKE], notebooks=[NOTEBOOK])  # one notebook: a fast autograde
    course.make_submission(root, s)
    course.nbgrader(root, "autograde", course.ASSIGNMENT, "--student", s.id, "--force")
    course.nbgrader(root, "generate_feedback", course.ASSIGNMENT, "--student", s.id, "--force")
    return root, root / "feedback" / s.id / course.ASSIGNMENT / f"{NOTEBOOK}.html"


def test_feedback_page_names_each_graded_cell_with_its_verdict_and_shows_the_picture(feedback):
    from grader.autograde import feedback as class_feedback

    root, path = feedback
    page = path.read_text(encoding="utf-8")
    head = page.split('<div class="panel-body">', 1)[0]
    rows = re.findall(r'<tr class="bn-(full|lost)" id="head-(test_\w+)">(.*?)</tr>', head, re.S)
    assert len(rows) == 26
    for status, grade_id, row in rows:
        gradient = grade_id.removeprefix("test_")
        assert f"<code>{gradient}</code>" in row, grade_id
        if gradient == "dcounts":
            assert status == "lost" and "0.0 / 1.0" in row and "dcounts is wrong" in row
            assert "is also used by `counts_sum`" in html_unescape(row)
        else:
            assert status == "full" and "1.0 / 1.0" in row
    assert "ok: this step is right; the difference comes from dcounts" in head
    assert "short of points: " in head and 'href="#test_dcounts">dcounts</a>' in head
    picture = re.search(r'<div class="bn-picture">\s*<img ([^>]*)>', head).group(1)
    assert re.search(r'src="data:image/png;base64,[A-Za-z0-9+/=]{1000,}"', picture)
    assert "Wrong: dcounts." in picture and "25 of 26 right" in picture  # the alt text: the picture in words
    # no hidden test, no MathJax from the network, and the formulas readable as they are
    for line in class_feedback.hidden_lines(root / "source" / course.ASSIGNMENT):
        assert line not in page
    assert "BEGIN HIDDEN TESTS" not in page and "verify(" not in page
    assert not re.search(r'(src|href)="(https?:)?//', page)  # nothing from the network: no MathJax, no CDN
    assert "$10^{-5}$" not in page
    assert '<span class="math">10<sup>−5</sup></span>' in page or '<span class="math">10<sup>-5</sup></span>' in page


def html_unescape(text: str) -> str:
    import html

    return html.unescape(text)


def test_feedback_page_in_a_browser(browser, feedback):
    _, path = feedback
    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    page = context.new_page()
    try:
        page.goto(path.as_uri())
        head = page.locator("#bn-head")
        expect(head).to_contain_text("1 short of points: dcounts")
        picture = head.locator(".bn-picture img")
        expect(picture).to_be_visible()
        assert picture.evaluate("img => img.naturalWidth") > 300  # the embedded PNG decoded
        page.screenshot(path=_artifact("feedback-head.png"))
    finally:
        context.close()
