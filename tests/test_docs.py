"""The documentation says what the repository does: README.md and docs/*.md against the Makefile and .ci/run.

- every `make X` the docs show (in code blocks and inline code) is a target of the Makefile;
- a code block's comment ``# what `make X` runs`` claims that the command lines under it, up to a blank or
  comment line, are X's recipe, line for line (the Makefile's variables expanded: ``$(BIN)`` is ``.venv/bin``);
  the docs make that claim for ``make test``, ``make test-fast`` and ``make lint``;
- the README's first code block is the two commands, ``make demo`` and ``make test``;
- ``.ci/run`` runs ``make test``, and the Debian packages it installs are named in docs/maintainers.md;
- every relative link (and image) in README.md and docs/*.md points at a file that exists, and an anchor
  (``page.md#section``) at a heading of that page.

Plain text parsing only: no grader import, no subprocess, well under a second.
"""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MAKEFILE = REPO / "Makefile"
CI_RUN = REPO / ".ci" / "run"
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
PAGE_IDS = [str(p.relative_to(REPO)) for p in PAGES]

FENCE = re.compile(r"^(```|~~~)[^\n]*\n(.*?)^\1[ \t]*$", re.S | re.M)
INLINE_CODE = re.compile(r"(`+)(.+?)\1", re.S)
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)
CLAIM = re.compile(r"#\s*what\s+`?make\s+([\w.-]+)`?\s+runs\b")
MAKE = re.compile(r"(?:^|[\s;&|(])make((?:[ \t]+[^\s#;&|()]+)*)")


# --- the Makefile and .ci/run ---------------------------------------------------------------------------------


def logical_lines(text: str) -> list[str]:
    """The lines of a Makefile or shell script with backslash continuations joined."""
    return re.sub(r"\\\n\s*", " ", text).splitlines()


def makefile() -> tuple[dict[str, str], dict[str, list[str]]]:
    """The Makefile's simple variables and its targets' recipes (commands, variables not yet expanded)."""
    variables: dict[str, str] = {}
    recipes: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in logical_lines(MAKEFILE.read_text(encoding="utf-8")):
        if line.startswith("\t"):
            if current is not None and line.strip() and not line.strip().startswith("#"):
                current.append(line.strip().lstrip("@-").strip())
            continue
        current = None
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        assignment = re.match(r"^(?:export\s+)?([A-Za-z_][\w]*)\s*(?::=|\?=|=)\s*(.*)$", line)
        if assignment:
            variables.setdefault(assignment.group(1), assignment.group(2).strip())
            continue
        rule = re.match(r"^([^:#=\t][^:#=]*):(?!=)", line)
        if rule:
            current = []
            for target in rule.group(1).split():
                target = expand(target, variables)
                if not re.fullmatch(r"\.[A-Z_]+", target):  # not .PHONY and the like
                    recipes[target] = current
    return variables, recipes


def expand(text: str, variables: dict[str, str]) -> str:
    """``$(NAME)`` replaced by the Makefile's value of NAME, recursively (functions such as ``$(if ...)`` stay)."""
    for _ in range(10):
        new = re.sub(
            r"\$\((\w+)\)",
            lambda m: variables.get(m.group(1), m.group(0)),
            text,
        )
        if new == text:
            break
        text = new
    return " ".join(text.split())


def targets() -> set[str]:
    return set(makefile()[1])


def recipe(target: str) -> list[str]:
    variables, recipes = makefile()
    return [expand(line, variables) for line in recipes[target]]


def ci_commands() -> list[str]:
    """The command lines of .ci/run (comments and blank lines out)."""
    return [
        line.strip()
        for line in logical_lines(CI_RUN.read_text(encoding="utf-8"))
        if line.strip() and not line.strip().startswith("#")
    ]


# --- the Markdown pages ---------------------------------------------------------------------------------------


def code_blocks(text: str) -> list[str]:
    return [m.group(2) for m in FENCE.finditer(text)]


def prose(text: str) -> str:
    """The page without its fenced code blocks and inline code (where a link is only text)."""
    return INLINE_CODE.sub(" ", FENCE.sub("", text))


def strip_comment(line: str) -> str:
    """A shell line without its trailing ``# comment``."""
    return re.sub(r"(^|\s)#.*$", "", line).strip()


def shown_commands(text: str) -> list[str]:
    """Every command the page shows: the lines of its code blocks (continuations joined) and its inline code."""
    commands = [strip_comment(line) for block in code_blocks(text) for line in logical_lines(block)]
    commands += [m.group(2).strip() for m in INLINE_CODE.finditer(FENCE.sub("", text))]
    return [c for c in commands if c]


def make_targets_shown(text: str) -> list[str]:
    """The targets of every ``make ...`` the page shows (``make keys NAMES=X`` -> keys)."""
    found = []
    for command in shown_commands(text):
        for m in MAKE.finditer(command):
            found += [word for word in m.group(1).split() if "=" not in word and not word.startswith("-")]
    return found


def claims(text: str) -> list[tuple[str, list[str]]]:
    """``(target, command lines)`` for each ``# what `make X` runs`` comment in a code block."""
    found = []
    for block in code_blocks(text):
        lines = logical_lines(block)
        for i, line in enumerate(lines):
            m = CLAIM.search(line)
            if not m or not line.lstrip().startswith("#"):
                continue
            commands = []
            for following in lines[i + 1 :]:
                if not following.strip() or following.lstrip().startswith("#"):
                    break
                commands.append(" ".join(strip_comment(following).split()))
            found.append((m.group(1), commands))
    return found


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: links to their text, lower case, punctuation out, spaces to hyphens."""
    heading = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", heading).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors of a page's headings (a repeated heading gets -1, -2, ... as on GitHub)."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", FENCE.sub("", page.read_text(encoding="utf-8")), re.M):
        base = slug(m.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def relative_links(text: str) -> list[str]:
    text = prose(text)
    links = [m.group(1) for m in LINK.finditer(text)] + [m.group(1) for m in REFERENCE.finditer(text)]
    return [link for link in links if not re.match(r"^[a-z][a-z0-9+.-]*:", link, re.I)]


# --- the tests ------------------------------------------------------------------------------------------------


def test_the_makefile_parses():
    assert {"demo", "test"} <= targets(), "the Makefile has lost the README's two commands"
    assert any("pytest" in line for line in recipe("test"))


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_every_make_target_shown_is_a_makefile_target(page):
    missing = sorted(set(make_targets_shown(page.read_text(encoding="utf-8"))) - targets())
    assert not missing, f"{page.name} shows `make {' / '.join(missing)}`, which the Makefile does not define"


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_what_make_runs_is_the_makefile_recipe(page):
    for target, commands in claims(page.read_text(encoding="utf-8")):
        assert target in targets(), f"{page.name} says what `make {target}` runs: the Makefile has no {target}"
        assert commands == recipe(target), (
            f"{page.name} says `make {target}` runs {commands}; the Makefile runs {recipe(target)}"
        )


@pytest.mark.parametrize("target", ["test", "test-fast", "lint"])
def test_the_docs_show_what_the_test_commands_run(target):
    claimed = [page.name for page in PAGES if target in dict(claims(page.read_text(encoding="utf-8")))]
    assert claimed, f"no page shows what `make {target}` runs (a code block with # what `make {target}` runs)"


def test_every_pytest_line_said_to_be_make_test_is_in_its_recipe():
    """A pytest command in a code block that says it is (part of) what make test runs must be one of its lines."""
    for page in PAGES:
        for block in code_blocks(page.read_text(encoding="utf-8")):
            for line in logical_lines(block):
                command = " ".join(strip_comment(line).split())
                if "pytest" in command and re.search(r"#.*\bmake test\b(?!-)", line):
                    assert command in recipe("test"), f"{page.name}: {command!r} is not a line of make test"


def test_the_readme_opens_with_the_two_commands():
    first = code_blocks((REPO / "README.md").read_text(encoding="utf-8"))[0]
    commands = [strip_comment(line) for line in logical_lines(first) if strip_comment(line)]
    assert commands == ["make demo", "make test"]


def test_ci_runs_make_test():
    assert "make test" in ci_commands(), ".ci/run must run the README's test command, `make test`"
    assert ci_commands()[-1] == "make test"
    ran = [word for command in ci_commands() for m in MAKE.finditer(command) for word in m.group(1).split()]
    assert set(ran) <= targets(), f".ci/run runs make {sorted(set(ran) - targets())}: not Makefile targets"
    for page in PAGES:
        for command in shown_commands(page.read_text(encoding="utf-8")):
            if re.search(r"(^|\s)(bash\s+)?\.ci/run\b", command):
                assert CI_RUN.is_file(), f"{page.name} shows {command!r}: there is no .ci/run"


def test_the_debian_packages_of_ci_are_documented():
    packages = re.findall(r"need\+=\(([^)]+)\)", CI_RUN.read_text(encoding="utf-8"))
    assert packages, ".ci/run installs no Debian package any more: update this test and docs/maintainers.md"
    text = (REPO / "docs" / "maintainers.md").read_text(encoding="utf-8")
    missing = [p for p in packages if not re.search(rf"`{re.escape(p)}`", text)]
    assert not missing, f"docs/maintainers.md does not name the Debian packages .ci/run installs: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_every_relative_link_points_at_a_file(page):
    broken = []
    for link in relative_links(page.read_text(encoding="utf-8")):
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        if not target.exists():
            broken.append(f"{link} (no such file)")
        elif anchor and target.suffix == ".md" and anchor not in anchors(target):
            broken.append(f"{link} (no heading #{anchor} in {target.name})")
    assert not broken, f"{page.name} has broken links: {broken}"
