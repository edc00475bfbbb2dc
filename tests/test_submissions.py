"""Finding a class's submissions (grader/autograde/submissions.py): layouts, zips, digests, shards. Fast."""

import os
import re
import zipfile

import nbformat
import pytest

from grader.autograde.options import Options
from grader.autograde.submissions import STUDENT_ID, digest, discover, in_shard, safe_key, unzip
from grader.instructor import course

RELEASE = course.REPO / "release" / course.ASSIGNMENT
NB = "01_atomic_backprop"


def release_nb(name=NB):
    return nbformat.read(RELEASE / f"{name}.ipynb", as_version=4)


def nbgrader_layout(root, students):
    for sid, names in students.items():
        folder = root / sid / course.ASSIGNMENT
        folder.mkdir(parents=True)
        for name in names:
            nbformat.write(release_nb(name), folder / f"{name}.ipynb")
    return root


def options(submissions, tmp_path, **kw):
    return Options(course=course.REPO, assignment=course.ASSIGNMENT, submissions=submissions, out=tmp_path / "o", **kw)


def test_a_flat_folder_of_notebooks_and_zips(tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    nbformat.write(release_nb(), flat / "ann.ipynb")  # matched to 01 by its grade ids
    with zipfile.ZipFile(flat / "bob.zip", "w") as z:
        for name in (NB, "02_fused_cross_entropy"):
            z.writestr(f"bob/{name}.ipynb", nbformat.writes(release_nb(name)))
    (flat / "cy.zip").write_bytes(b"not a zip")
    (flat / "dee.ipynb").write_text("{oops")
    opts = Options(course=course.REPO, assignment=course.ASSIGNMENT, submissions=flat, out=tmp_path / "o")
    students = {s.id: s for s in discover(opts, tmp_path / "work")}
    assert set(students) == {"ann", "bob", "cy", "dee"}
    assert set(students["ann"].files) == {NB}
    assert set(students["bob"].files) == {NB, "02_fused_cross_entropy"}
    assert students["cy"].files == {} and "cannot be unpacked" in students["cy"].problems[0]
    assert students["dee"].files == {} and "cannot tell which notebook" in students["dee"].problems[0]
    assert len({s.digest for s in students.values()}) == 4


def test_shards_split_the_class_without_overlap(tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(12):
        nbformat.write(release_nb(), flat / f"student{i}.ipynb")
    ids = []
    for k in (1, 2, 3):
        opts = Options(
            course=course.REPO, assignment=course.ASSIGNMENT, submissions=flat, out=tmp_path / "o", shard=(k, 3)
        )
        ids += [s.id for s in discover(opts, tmp_path / "work")]
    assert sorted(ids) == sorted(f"student{i}" for i in range(12))


def test_nbgraders_layout_with_a_timestamp_a_stray_file_and_a_missing_folder(tmp_path):
    root = nbgrader_layout(tmp_path / "submitted", {"ann": [NB], "bob": [NB, "02_fused_cross_entropy"]})
    (root / "ann" / course.ASSIGNMENT / "timestamp.txt").write_text("2026-05-05 10:00:00\n")
    (root / "ann" / course.ASSIGNMENT / "notes.ipynb").write_text("{}")
    (root / "cy" / "another_assignment").mkdir(parents=True)
    students = {s.id: s for s in discover(options(root, tmp_path), tmp_path / "work")}
    assert set(students) == {"ann", "bob", "cy"}
    assert set(students["ann"].files) == {NB} and students["ann"].timestamp == "2026-05-05 10:00:00"
    assert any("notes.ipynb: not a notebook of the assignment" in p for p in students["ann"].problems)
    assert set(students["bob"].files) == {NB, "02_fused_cross_entropy"} and students["bob"].problems == []
    assert students["cy"].files == {} and "no folder backprop_ninja/" in students["cy"].problems[0]


def test_an_odd_folder_name_is_graded_under_a_safe_key(tmp_path):
    root = nbgrader_layout(tmp_path / "submitted", {"ok": [NB], "Jane Doe": [NB], ".dotted": [NB]})
    (root / ".ipynb_checkpoints").mkdir()  # never a student
    (root / "link").symlink_to(root / "ok")  # nor a link
    students = {s.id: s for s in discover(options(root, tmp_path), tmp_path / "work")}
    assert set(students) == {"ok", "Jane Doe", ".dotted"}
    assert students["ok"].key == "ok" and students["ok"].problems == []
    for odd in ("Jane Doe", ".dotted"):
        key = students[odd].key
        assert key == safe_key(odd) and re.fullmatch(r"[A-Za-z0-9_.@+-]+~[0-9a-f]{8}", key) and key != odd
        assert not STUDENT_ID.match(key)  # a safe key is never a plain id: no plain id can take its folder
        assert f"graded as {key}" in students[odd].problems[0]
    assert safe_key("Jane Doe") != safe_key("Jane_Doe") and safe_key("josé").startswith("jose~")


def test_two_ids_never_share_a_key_even_when_one_is_the_others_safe_key(tmp_path):
    twin = safe_key("Jane Doe")
    root = nbgrader_layout(tmp_path / "submitted", {"Jane Doe": [NB], twin.replace("~", "-"): [NB]})
    students = discover(options(root, tmp_path), tmp_path / "work")
    assert len({s.key for s in students}) == 2


@pytest.mark.parametrize(
    "bad, why",
    [
        ("x" * 252, "252 characters long"),
        ("ann\n", "white space"),
        (" ann", "white space"),
        ("ann\u202egpj.exe", "U+202E"),
        ("a\u200bnn", "U+200B"),
        ("an\x07n", "U+0007"),
    ],
)
def test_an_id_that_breaks_the_rule_is_reported_and_skipped_and_the_class_goes_on(tmp_path, capsys, bad, why):
    root = nbgrader_layout(tmp_path / "submitted", {"ok": [NB], bad: [NB]})
    students = discover(options(root, tmp_path), tmp_path / "work")
    assert [s.id for s in students] == ["ok"]
    err = capsys.readouterr().err
    assert "not a usable student id" in err and why in err


def test_only_regular_files_are_read_links_fifos_and_garbage_timestamps_are_reported(tmp_path):
    root = nbgrader_layout(tmp_path / "submitted", {"ann": [], "bob": [NB]})
    folder = root / "ann" / course.ASSIGNMENT
    secret = tmp_path / "solutions.ipynb"
    nbformat.write(release_nb(NB), secret)
    (folder / f"{NB}.ipynb").symlink_to(secret)
    os.link(secret, folder / "02_fused_cross_entropy.ipynb")
    os.mkfifo(folder / "03_fused_batchnorm.ipynb")  # reading it would block the class
    (root / "bob" / course.ASSIGNMENT / "timestamp.txt").write_text("next tuesday, probably")
    students = {s.id: s for s in discover(options(root, tmp_path), tmp_path / "work")}
    ann, bob = students["ann"], students["bob"]
    assert ann.files == {} and ann.raw == []
    problems = " | ".join(ann.problems)
    assert "symbolic link" in problems and "hard link" in problems and "not a regular file" in problems
    assert set(bob.files) == {NB} and bob.timestamp is None
    assert any("timestamp.txt is not a time" in p for p in bob.problems)


def test_the_digest_changes_with_any_file_or_the_timestamp(tmp_path):
    a, b = tmp_path / "a.ipynb", tmp_path / "b.ipynb"
    a.write_text("1")
    b.write_text("2")
    base = digest([a, b], None)
    assert digest([a, b], None) == base
    assert digest([a, b], "2026-05-05") != base
    assert digest([a], None) != base
    b.write_text("3")
    assert digest([a, b], None) != base


def test_unzip_never_writes_where_the_archive_says(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("../../escaped.ipynb", "{}")
        z.writestr("__MACOSX/x.ipynb", "{}")
        z.writestr("readme.txt", "hi")
    out = unzip(archive, tmp_path / "dest")
    assert [p.name for p in out] == ["escaped.ipynb"] and (tmp_path / "dest") in out[0].parents
    assert not (tmp_path.parent / "escaped.ipynb").exists()


def test_in_shard_puts_every_student_in_exactly_one_shard():
    for sid in ("ann", "bob", "x@y.z", "student-17"):
        assert sum(in_shard(sid, (i, 4)) for i in range(1, 5)) == 1
        assert in_shard(sid, (1, 1))
