"""The run report: a run's journal read into a `RunReport` (model.py), shown as JSON or as one HTML page (html.py).

This module is the report's I/O: which run (`resolve_run`), its events and the saved table's final
states, the last lines of the logs of the streams that did not complete (read from their end,
bounded), and the page written atomically to `.claude/orchestrator/reports/<run id>.html`
(`write_report`, which the end of every run calls). Standard library only, Python 3.9+.
"""

from __future__ import annotations

import difflib
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Dict, List, Optional

from .. import atomic
from ..journal import is_run_id, journal_path, read_journal, run_ids
from ..lifecycle import load_table
from ..logfiles import tail_lines
from ..settings import EXIT_STUCK, Layout, UserError
from .html import render_html
from .model import UNFINISHED, RunReport, build_report

__all__ = ["RunReport", "build_report", "load_report", "render_html", "render_json", "report_at_end", "resolve_run",
           "write_report"]

LOG_TAIL_LINES = 15
REPORT_FORMAT = 1


def resolve_run(layout: Layout, wanted: Optional[str] = None) -> str:
    """The run id `wanted` names (its id, or a unique start of it), or the latest run; a clear error otherwise."""
    runs = run_ids(layout.journals)
    if not runs:
        raise UserError(f"no run has been recorded in this project yet (no journal in {layout.journals}); "
                        "`orchestrate.py start` records one", EXIT_STUCK)
    if not wanted or wanted == "latest":
        return runs[-1]
    if wanted in runs:
        return wanted
    matches = [r for r in runs if r.startswith(wanted)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise UserError(f"{wanted!r} names {len(matches)} runs ({', '.join(matches[-3:])}, ...); give more of its id")
    close = difflib.get_close_matches(wanted, runs, n=1)
    hint = f"; did you mean {close[0]}?" if close else "; `orchestrate.py history` lists the runs"
    raise UserError(f"no run {wanted!r}{hint}")


def load_report(layout: Layout, run_id: str, warn: Callable[[str], None] = lambda _m: None) -> RunReport:
    """The report of `run_id` from its journal, the saved table (when it is this run's) and the logs."""
    if not is_run_id(run_id):
        raise UserError(f"not a run id: {run_id!r}")
    warnings: List[str] = []

    def note(message: str) -> None:
        warnings.append(message)
        warn(message)

    events = read_journal(journal_path(layout.journals, run_id), note)
    report = build_report(events, run_id, final_states=_table_states(layout, run_id), warnings=())
    tails = {s.stream_id: _log_tail(layout, s.stream_id) for s in report.streams if s.final_state in UNFINISHED}
    for failure in report.failures:
        failure.log_tail = tails.get(failure.stream_id, [])
    report.warnings = warnings
    return report


def _table_states(layout: Layout, run_id: str) -> Dict[str, str]:
    """Final states from the saved table, when the table is this run's (the run row holds its id)."""
    table, _warnings = load_table(layout.run_file)
    if table.run_life.run_id != run_id:
        return {}
    return {sid: life.state.value for sid, life in table.rows.items()}


def _log_tail(layout: Layout, stream_id: str) -> List[str]:
    try:
        return tail_lines(layout.log_for(stream_id), LOG_TAIL_LINES)
    except OSError:
        return []


def render_json(report: RunReport) -> str:
    """The report's data for scripts: the same as the page shows, as one JSON document."""
    data = {"format": REPORT_FORMAT, **asdict(report)}
    return json.dumps(data, indent=1, ensure_ascii=True, allow_nan=False) + "\n"


def write_report(layout: Layout, run_id: str, out: Optional[Path] = None, as_json: bool = False,
                 warn: Callable[[str], None] = lambda _m: None) -> Path:
    """Write the report of `run_id` (HTML, or JSON) to `out` or `reports/<run id>.html`, atomically;
    returns where it went. Raises OSError when it cannot be written."""
    report = load_report(layout, run_id, warn)
    text = render_json(report) if as_json else render_html(report, time.time())
    target = out if out is not None else layout.reports / f"{run_id}{'.json' if as_json else '.html'}"
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(target, text)
    return target


def report_at_end(layout: Layout, run_id: str, warn: Callable[[str], None]) -> Optional[Path]:
    """The report the end of a run writes: its path, or None with one warning when it cannot be
    made. A run's exit code never depends on its report, so nothing here may raise."""
    try:
        return write_report(layout, run_id, warn=warn)
    except (OSError, UserError) as exc:
        warn(f"the run's report could not be written: {exc}")
    except Exception as exc:  # a bug in the report must not turn a finished run into a crash
        warn(f"the run's report could not be made ({exc!r}); `orchestrate.py report {run_id}` tries again")
    return None
