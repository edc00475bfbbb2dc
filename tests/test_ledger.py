"""grader/autograde/ledger.py: what a run has merged, one fsync'ed JSON line per student, read back on a re-run."""

import json
import threading

from grader.autograde.ledger import Ledger


def test_entries_survive_a_new_ledger_on_the_same_file(tmp_path):
    path = tmp_path / "ledger.jsonl"
    ledger = Ledger(path)
    assert ledger.done == {}
    ledger.add({"student": "ann", "digest": "d1", "graded": True})
    ledger.add({"student": "bob", "digest": "d2", "graded": False})
    again = Ledger(path)
    assert set(again.done) == {"ann", "bob"}
    assert again.is_done("ann", "d1")
    assert not again.is_done("ann", "other digest")  # resubmitted: graded again
    assert not again.is_done("bob", "d2")  # not graded: tried again
    assert not again.is_done("cy", "")


def test_the_last_entry_of_a_student_wins(tmp_path):
    ledger = Ledger(tmp_path / "ledger.jsonl")
    ledger.add({"student": "ann", "digest": "old", "graded": True})
    ledger.add({"student": "ann", "digest": "new", "graded": True})
    assert Ledger(tmp_path / "ledger.jsonl").done["ann"]["digest"] == "new"


def test_a_line_cut_short_by_a_kill_is_not_a_record(tmp_path):
    path = tmp_path / "ledger.jsonl"
    path.write_text(json.dumps({"student": "ann", "digest": "d", "graded": True}) + '\n{"student": "bob", "dig')
    assert set(Ledger(path).done) == {"ann"}


def test_threads_adding_at_once_write_whole_lines(tmp_path):
    ledger = Ledger(tmp_path / "ledger.jsonl")
    threads = [
        threading.Thread(target=ledger.add, args=({"student": f"s{i}", "graded": True, "pad": "x" * 5000},))
        for i in range(20)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = (tmp_path / "ledger.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["student"] for line in lines) == sorted(f"s{i}" for i in range(20))
