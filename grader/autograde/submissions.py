"""Finding a class's submissions: nbgrader's ``<student>/<assignment>/`` layout or a flat folder of
``<student>.ipynb`` / ``<student>.zip``; zip archives unpacked safely; each ``Student``'s digest (what the
ledger compares to know whether a submission changed) and key (its id as a safe path); sharding
(``--shard I/K``).

Everything here reads what students handed in, so it trusts none of it:

- an id must follow one rule (``id_problem``: at most ``MAX_ID`` characters, no white space at either end, no
  control or invisible character such as a newline or a right-to-left override); one that breaks it is
  reported and skipped, and the class goes on;
- only regular files are read: a symbolic link, a hard link (another name for a file elsewhere, another
  student's hand-in or the solutions, say), a FIFO or a device named like a notebook is reported, not read;
- a ``timestamp.txt`` that is not a time is reported and ignored;
- a safe key (``safe_key``) always holds ``~``, which a plain id never does: two ids never share a folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import sys
import unicodedata
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from ..cells import grade_id
from .options import GradingError, Options
from .precheck import Report

STUDENT_ID = re.compile(r"^[A-Za-z0-9_@+][A-Za-z0-9_.@+-]*$")
MAX_ID = 100  # characters of a student id (a longer one makes file names too long for the disk)
INVISIBLE = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}  # control, format (bidi overrides, zero-width), unassigned
MAX_UNZIPPED = 200 * 2**20
# Folders of a submissions folder that are never a student's (editors and archivers leave them).
NOT_STUDENTS = {".ipynb_checkpoints", "__MACOSX", ".DS_Store", ".git", "__pycache__"}


def safe_key(name: str) -> str:
    """A path-safe key for a folder name that is not a plain id (``Jane Doe``, ``josé``, ``.dotted``): ASCII
    letters, digits and ``_.@+-``, then ``~`` and 8 hex digits of the name's hash, so that two names never
    share one, nor a safe key a plain id (``~`` is not in one)."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^A-Za-z0-9_.@+-]+", "_", ascii_name).lstrip(".-") or "student"
    return f"{slug[:40]}~{hashlib.sha256(name.encode('utf-8', 'surrogateescape')).hexdigest()[:8]}"


def id_problem(name: str) -> str | None:
    """Why ``name`` cannot be a student id (see the module's text), or None."""
    if not name:
        return "it is empty"
    if len(name) > MAX_ID:
        return f"it is {len(name)} characters long (at most {MAX_ID})"
    if name != name.strip():
        return "it starts or ends with white space"
    hidden = sorted({c for c in name if unicodedata.category(c) in INVISIBLE})
    if hidden:
        return "it holds control or invisible characters (" + ", ".join(f"U+{ord(c):04X}" for c in hidden) + ")"
    return None


def regular(path: Path) -> str | None:
    """Why ``path`` is not read (a link, a hard link, a FIFO, a device...), or None for a regular file."""
    try:
        st = os.lstat(path)
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if stat.S_ISLNK(st.st_mode):
        return "is a symbolic link"
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file (a FIFO, a socket or a device)"
    if st.st_nlink > 1:
        return "is a hard link (another name for a file elsewhere)"
    return None


def _timestamp(path: Path) -> tuple[str | None, str | None]:
    """(the timestamp, None), or (None, why it is ignored)."""
    why = regular(path)
    if why:
        return None, f"timestamp.txt {why}: ignored"
    from nbgrader.utils import parse_utc

    text = path.read_bytes()[:200].decode("utf-8", "replace").strip()
    try:
        parse_utc(text)
    except Exception:  # noqa: BLE001 - nbgrader's parser raises several kinds
        return None, f"timestamp.txt is not a time ({text[:40]!r}): ignored, graded as having no timestamp"
    return text, None


@dataclass
class Student:
    """One student's submission, as found (before the prechecks)."""

    id: str  # the folder's (or file's) name: the id in the real gradebook, the ledger, the summary and the CSV
    files: dict[str, Path] = field(default_factory=dict)  # notebook name -> handed-in file
    problems: list[str] = field(default_factory=list)
    timestamp: str | None = None
    raw: list[Path] = field(default_factory=list)  # every file handed in, usable or not (for the digest)
    digest: str = ""
    report: Report | None = None  # the prechecks' (set when the student is graded)
    key: str = ""  # the id as a path and inside the scratch course: the id itself when plain, else safe_key(id)

    def __post_init__(self) -> None:
        self.key = self.key or (self.id if STUDENT_ID.match(self.id) else safe_key(self.id))


def digest(raw: list[Path], timestamp: str | None) -> str:
    """SHA-256 of every file handed in (names and contents) and the submission's timestamp."""
    h = hashlib.sha256()
    for path in raw:
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    h.update((timestamp or "").encode())
    return h.hexdigest()


def shard_of(student: str, shards: int) -> int:
    """The shard (1 to K) ``student`` belongs to: a stable hash of the id."""
    return zlib.crc32(student.encode()) % shards + 1


def in_shard(student: str, shard: tuple[int, int]) -> bool:
    """Whether ``student`` belongs to shard I of K (``shard`` = (I, K))."""
    return shard_of(student, shard[1]) == shard[0]


def _notebook_for(path: Path, notebooks: dict[str, set[str]]) -> str | None:
    """The assignment notebook whose grade ids a flat ``.ipynb`` shares most (None: cannot tell)."""
    if len(notebooks) == 1:
        return next(iter(notebooks))
    if path.stem in notebooks:
        return path.stem
    try:
        cells = json.loads(path.read_bytes()).get("cells", [])
        ids = {grade_id(c) for c in cells if isinstance(c, dict)} - {None}
    except Exception:
        return None
    best = max(notebooks, key=lambda n: len(notebooks[n] & ids))
    return best if notebooks[best] & ids else None


def unzip(archive: Path, dest: Path) -> list[Path]:
    """The notebooks of ``archive``, written under ``dest`` (never at a path the archive names)."""
    with zipfile.ZipFile(archive) as z:
        members = [
            m
            for m in z.infolist()
            if m.filename.endswith(".ipynb")
            and not m.is_dir()
            and "__MACOSX" not in m.filename
            and ".ipynb_checkpoints" not in m.filename
        ]
        if sum(m.file_size for m in members) > MAX_UNZIPPED:
            raise ValueError(f"the notebooks in it unpack to more than {MAX_UNZIPPED // 2**20} MB")
        dest.mkdir(parents=True, exist_ok=True)
        out = []
        for i, m in enumerate(members):
            target = dest / f"{i}" / Path(m.filename).name  # never a path from the archive itself
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(z.read(m))
            out.append(target)
        return out


def _from_folder(s: Student, folder: Path, assignment: str, notebooks: dict[str, set[str]]) -> None:
    """nbgrader's layout: ``folder`` is ``<student>/<assignment>/``."""
    if not folder.is_dir():
        s.problems.append(f"no folder {assignment}/ in the submission: nothing to grade")
        return
    for f in sorted(folder.glob("*.ipynb")):
        why = regular(f)
        if why:
            s.problems.append(f"{f.name} {why}: not read, not graded")
            continue
        s.raw.append(f)
        if f.stem in notebooks:
            s.files[f.stem] = f
        else:
            s.problems.append(f"{f.name}: not a notebook of the assignment, not graded")
    if os.path.lexists(folder / "timestamp.txt"):
        s.timestamp, why = _timestamp(folder / "timestamp.txt")
        if why:
            s.problems.append(why)


def _from_file(s: Student, entry: Path, unzipped: Path, notebooks: dict[str, set[str]]) -> None:
    """A flat folder's ``<student>.ipynb`` or ``<student>.zip``."""
    s.raw.append(entry)
    candidates = [entry]
    if entry.suffix == ".zip":
        try:
            candidates = unzip(entry, unzipped / entry.stem)
        except (zipfile.BadZipFile, ValueError, OSError) as exc:
            s.problems.append(f"{entry.name}: cannot be unpacked ({exc}): nothing to grade")
            candidates = []
    for f in candidates:
        name = _notebook_for(f, notebooks)
        if name is None:
            s.problems.append(
                f"{f.name}: cannot tell which notebook of the assignment this is; "
                "not graded (name it like the assignment's notebook)"
            )
        elif name in s.files:
            s.problems.append(f"{f.name}: a second copy of {name}, ignored")
        else:
            s.files[name] = f


def discover(opts: Options, work: Path) -> list[Student]:
    """Every student of ``opts.submissions`` in ``opts.shard``: nbgrader's ``<student>/<assignment>/*.ipynb``
    layout, or a flat folder of ``<student>.ipynb`` / ``<student>.zip`` (unpacked into ``work``)."""
    root = opts.submissions
    if not root.is_dir():
        raise GradingError(f"{root}: no such folder of submissions")
    notebooks = {
        p.stem: {grade_id(c) for c in nbformat.read(p, 4).cells} - {None} for p in sorted(opts.source.glob("*.ipynb"))
    }
    students: dict[str, Student] = {}
    nbgrader_layout = any((d / opts.assignment).is_dir() for d in root.iterdir() if d.is_dir())
    for entry in sorted(root.iterdir()):
        if entry.name in NOT_STUDENTS or entry.is_symlink():
            continue
        name = entry.name if nbgrader_layout else entry.stem
        why = id_problem(name)
        if why and (entry.is_dir() or entry.suffix in (".ipynb", ".zip")):
            print(f"skipped {name!r}: not a usable student id: {why}; rename it to grade it", file=sys.stderr)
            continue
        if nbgrader_layout:
            if entry.is_dir() and (not entry.name.startswith(".") or (entry / opts.assignment).is_dir()):
                s = students.setdefault(entry.name, Student(entry.name))
                _from_folder(s, entry / opts.assignment, opts.assignment, notebooks)
        elif entry.suffix in (".ipynb", ".zip"):
            why = regular(entry)
            if why:
                print(f"skipped {entry.name!r}: it {why}: not read", file=sys.stderr)
                continue
            _from_file(students.setdefault(entry.stem, Student(entry.stem)), entry, work / "unzipped", notebooks)
    out = []
    for s in students.values():
        if s.key != s.id:
            s.problems.append(
                f"graded as {s.key}: the folder name {s.id!r} is not a plain student id (letters, digits, _.@+-), "
                f"so its scratch course, feedback/{s.key}/, autograded/{s.key}/ and logs/{s.key}.log use that name; "
                f"the gradebook, grades.csv and the summary use {s.id!r}"
            )
        s.digest = digest(s.raw, s.timestamp)
        out.append(s)
    return [s for s in out if in_shard(s.id, opts.shard)]
