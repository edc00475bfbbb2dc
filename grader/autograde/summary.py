"""``summary.json`` and ``summary.md``: the class's scores, per cell, and the students that need a look."""

from __future__ import annotations

import json
import statistics

from .canary import by_hand
from .gradebook import late_submissions, real_db, scores
from .ledger import Ledger
from .options import Options


def summarize(
    opts: Options,
    students: list,
    ledger: Ledger,
    graded: int,
    skipped: int,
    seconds: float,
    canary: dict | None = None,
) -> dict:
    """The run's summary from the gradebook, the ledger and the canary's result (None: --no-canary); also
    written to ``opts.out``."""
    db, ids = real_db(opts), [s.id for s in students]
    found = scores(db, opts.assignment, ids)
    totals = {sid: (sum(c.score for c in cells), sum(c.max_score for c in cells)) for sid, cells in found.items()}
    per_cell: dict[tuple[str, str], list[float]] = {}
    for cells in found.values():
        for c in cells:
            per_cell.setdefault((c.notebook, c.cell), []).append(c.score / c.max_score if c.max_score else 0.0)
    review = {}
    for s in students:
        e = ledger.done.get(s.id, {})
        why = (
            e.get("reasons", [])
            + e.get("problems", [])
            + e.get("repairs", [])
            + [f"flag: {f}" for f in e.get("flags", [])]
        )
        manual = [c.cell for c in found.get(s.id, []) if c.needs_manual_grade]
        if manual:
            why.append(
                f"{len(manual)} cell(s) need manual grading" + (f": {', '.join(manual)}" if len(manual) <= 3 else "")
            )
        if why:
            review[s.id] = why
    maximum = max((m for _, m in totals.values()), default=0)
    values = [t for t, _ in totals.values()]
    summary = {
        "assignment": opts.assignment,
        "students": len(students),
        "graded_now": graded,
        "skipped_already_graded": skipped,
        "seconds": round(seconds, 1),
        "workers": opts.workers,
        "sandbox": opts.sandbox,
        "max_score": maximum,
        "totals": {sid: t for sid, (t, _) in sorted(totals.items())},
        "mean": round(statistics.mean(values), 3) if values else None,
        "median": statistics.median(values) if values else None,
        "distribution": {
            str(int(k)): sum(1 for v in values if int(v) == int(k)) for k in sorted({int(v) for v in values})
        },
        "mean_per_cell": {f"{nb}/{cell}": round(statistics.mean(v), 3) for (nb, cell), v in sorted(per_cell.items())},
        "review": review,
        "late": late_submissions(db, opts.assignment, ids),
        # the solutions graded first: score, max_score, seconds, by_hand (None: --no-canary; {"skipped": why})
        "canary": canary,
    }
    (opts.out / "summary.json").write_text(json.dumps(summary, indent=1))
    (opts.out / "summary.md").write_text(summary_text(summary))
    return summary


def summary_text(summary: dict) -> str:
    """``summary.md``: the summary for a reader."""
    lines = [
        f"# {summary['assignment']}: {summary['students']} students "
        f"({summary['graded_now']} graded now, {summary['skipped_already_graded']} already graded), "
        f"{summary['seconds']} s with {summary['workers']} workers, sandbox {'on' if summary['sandbox'] else 'OFF'}",
        "",
        f"mean {summary['mean']} / {summary['max_score']}, median {summary['median']}",
        "",
        _canary_line(summary.get("canary")),
        "",
        "## Score distribution",
        "",
    ]
    for score, count in summary["distribution"].items():
        lines.append(f"{score:>4} | {'#' * count} {count}")
    lines += ["", "## Mean per graded cell (lowest first: what the class got wrong most)", ""]
    for cell, mean in sorted(summary["mean_per_cell"].items(), key=lambda kv: kv[1]):
        lines.append(f"{mean:6.2f}  {cell}")
    if summary.get("late"):
        lines += ["", f"## Late submissions ({len(summary['late'])})", ""]
        for sid, late in summary["late"].items():
            hours = late["seconds_late"] / 3600
            lines.append(f"- {sid}: {hours:.1f} h late, penalty {late['penalty']:g}")
    lines += ["", f"## Students that need a look ({len(summary['review'])})", ""]
    for sid, why in summary["review"].items():
        lines.append(f"- {sid} ({summary['totals'].get(sid, 0):g}): " + "; ".join(why))
    return "\n".join(lines) + "\n"


def _canary_line(canary: dict | None) -> str:
    if canary is None:
        return "canary: skipped (--no-canary): the instructor's solutions were not graded first"
    if "skipped" in canary:
        return f"canary: skipped ({canary['skipped']}): the instructor's solutions were not graded"
    return (
        f"canary: the instructor's solutions got {canary['score']:g}/{canary['max_score']:g} "
        f"before anyone was graded ({canary['seconds']:g} s){by_hand(canary)}"
    )
