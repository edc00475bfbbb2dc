"""``ledger.jsonl``: what a run of the class command has merged into the gradebook, one student a line.

Append-only JSON lines, each fsync'ed before the next student: a re-run skips the students it records
with the same digest (and still in the gradebook), a killed run resumes where it stopped.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path


class Ledger:
    """Append-only JSON lines, fsync'ed: the students merged into the gradebook, and what was graded."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done: dict[str, dict] = {}
        if path.is_file():
            for line in path.read_text().splitlines():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by a kill: that student was not recorded
                self.done[entry["student"]] = entry
        self._lock = threading.Lock()

    def add(self, entry: dict) -> None:
        with self._lock, open(self.path, "a") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.done[entry["student"]] = entry

    def is_done(self, student: str, digest: str) -> bool:
        """Whether ``student`` was graded from a submission with this ``digest``."""
        entry = self.done.get(student)
        return bool(entry and entry.get("graded") and entry.get("digest") == digest)
