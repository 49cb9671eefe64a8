"""`history [--json] [-n N]`: this project's past runs from their journals, newest first.

Each run's start, length, streams, outcome and cost come from the first and the last line of its
journal (the run's start and its end), so a long history reads fast; only a run that never
recorded its end (its orchestrator was killed, or it is running now) is read in full for its cost.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional

from ..journal import first_and_last, journal_path, read_journal, run_ids
from ..names import printable
from ..settings import EXIT_OK, Layout
from ..status import format_duration, live_orchestrator


@dataclass
class PastRun:
    run_id: str
    started_at: Optional[float]
    duration_s: Optional[float]
    streams: Optional[int]
    outcome: str
    exit_code: Optional[int]
    cost_usd: Optional[float]
    report: str = ""


def past_run(folder: Path, run_id: str, running: bool) -> PastRun:
    """One run as `history` shows it, read from its journal's two ends (all of it if its end is missing)."""
    path = journal_path(folder, run_id)
    first, last = first_and_last(path)
    started = float(first["t"]) if first else None
    plan = first.get("plan") if first and first.get("kind") == "run_started" else None
    streams = len(plan.get("streams") or {}) if isinstance(plan, dict) else None
    if last is not None and last.get("kind") == "run_finished":
        cost = last.get("cost_usd")
        code = last.get("exit_code")
        return PastRun(run_id, started, float(last["t"]) - started if started else None, streams,
                       str(last.get("outcome") or "finished"), code if isinstance(code, int) else None,
                       float(cost) if isinstance(cost, (int, float)) else None, str(last.get("report") or ""))
    cost = sum(float(e["cost_usd"]) for e in read_journal(path, kinds={"attempt_ended"})
               if isinstance(e.get("cost_usd"), (int, float)))
    ended = float(last["t"]) if last else None
    outcome = "running" if running else "interrupted (its orchestrator stopped before the run ended)"
    return PastRun(run_id, started, ended - started if ended and started else None, streams, outcome, None, cost)


def cmd_history(args: argparse.Namespace, layout: Layout) -> int:
    runs = run_ids(layout.journals)
    shown = list(reversed(runs))[:args.limit] if args.limit else list(reversed(runs))
    live = live_orchestrator(layout) is not None
    found = [past_run(layout.journals, run_id, running=live and run_id == runs[-1]) for run_id in shown]
    if args.json:
        print(json.dumps({"runs": [asdict(r) for r in found], "total": len(runs)}, indent=2))
        return EXIT_OK
    if not found:
        print(f"no runs recorded yet (journals are kept in {layout.journals}); `orchestrate.py start` records one")
        return EXIT_OK
    print(render_history(found))
    if len(runs) > len(found):
        print(f"({len(found)} of {len(runs)} runs; -n 0 shows all)")
    return EXIT_OK


def render_history(runs: List[PastRun]) -> str:
    rows: List[Dict[str, str]] = []
    for run in runs:
        rows.append({"RUN": run.run_id,
                     "STARTED": time.strftime("%Y-%m-%d %H:%M", time.localtime(run.started_at)) if run.started_at else "?",
                     "TOOK": format_duration(run.duration_s) if run.duration_s is not None else "?",
                     "STREAMS": "?" if run.streams is None else str(run.streams),
                     "COST": "?" if run.cost_usd is None else f"{run.cost_usd:.2f}",
                     "OUTCOME": printable(run.outcome, 80) + ("" if run.exit_code is None else f" (exit {run.exit_code})")})
    widths = {key: max(len(key), *(len(r[key]) for r in rows)) for key in rows[0]}
    lines = ["  ".join(key.ljust(widths[key]) for key in widths).rstrip()]
    lines += ["  ".join(row[key].rjust(widths[key]) if key in ("STREAMS", "COST") else row[key].ljust(widths[key])
                        for key in widths).rstrip() for row in rows]
    return "\n".join(lines)
