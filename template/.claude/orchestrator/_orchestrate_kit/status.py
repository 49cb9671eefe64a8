"""One consistent picture of a project's run: `status`, `status --json` and the dashboard print it.

`collect_status` reads the database once, the saved lifecycle table and what
the executor's records say runs (`executor.read_workers`), and builds the board
with the same functions the supervisor uses, so what users see is what the loop
decides. With a spend cap it sums the journals of the cap's window and the
running workers' costs (spend.py), as the loop does. Standard library only.
"""

from __future__ import annotations

import gc
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Iterable, Iterator, List, Mapping, Optional

from .executor import Handle, read_workers
from .executor.processes import PidRecord, process_start_time, read_pid_file, runs_script, write_pid_file
from .lifecycle import GATED, PARKED, Policy, RunInfo, RunLife, RunState, StreamState, Table, describe_run, load_table, run_json
from .names import printable
from .settings import EXIT_STUCK, Layout, Settings, UserError, load_settings, setting_warnings
from .graph import Board, StreamView, build_board
from .trackers import (
    CHOICES as TRACKER_CHOICES,
    DatabaseBusy,
    DatabaseError,
    DatabaseLocation,
    Snapshot,
    locate_tracker,
    read_snapshot,
    whole_percent,
)
from .trackers.progress import progress_summary_of

if TYPE_CHECKING:
    from .spend import Standing  # the spend cap's reading is imported only with a cap

NO_PLACE = {"branch": None, "worktree": None}
METADATA_EXAMPLE = '{"streamId": "Stream-A", "streamName": "Foundation", "dependencies": []}'
ORCHESTRATOR_SCRIPT = "orchestrate.py"


def open_database(layout: Layout, db_override: Optional[str], tracker: Optional[str] = None) -> DatabaseLocation:
    """Locate the database (--tracker, else the `tracker` setting) and fail with where we looked."""
    if tracker is None:
        try:
            tracker = load_settings(layout.config_files()).tracker
        except UserError:
            tracker = "auto"  # a broken config is reported by `start`; reading status must not depend on it
    if tracker not in TRACKER_CHOICES:
        raise UserError(f"tracker must be one of {', '.join(TRACKER_CHOICES)}, not {tracker!r} "
                        f"(see {layout.config}, or pass --tracker)")
    location = locate_tracker(layout.root, db_override, tracker, os.environ)
    if not location.exists:
        raise UserError(location.missing_message())
    return location


def take_snapshot(location: DatabaseLocation) -> Snapshot:
    try:
        return read_snapshot(location.path, generation=location.generation)
    except DatabaseBusy as exc:
        raise UserError(f"{exc}; try again in a moment", EXIT_STUCK) from None
    except DatabaseError as exc:
        raise UserError(str(exc)) from None


def live_orchestrator(layout: Layout) -> Optional[PidRecord]:
    """The running orchestrator, if its pid file names a live process that runs this script."""
    record = read_pid_file(layout.orchestrator_pid)
    alive = record and record.is_alive() and runs_script(record.pid, ORCHESTRATOR_SCRIPT)
    return record if alive else None


def write_orchestrator_record(layout: Layout) -> None:
    """Record this process as the project's orchestrator (checked by pid, start time and script)."""
    pid = os.getpid()
    write_pid_file(layout.orchestrator_pid, PidRecord(pid, process_start_time(pid) or "", "", 0, time.time()))


def policy_of(settings: Settings, run: Optional[RunInfo] = None) -> Policy:
    """What transitions need; `run` (the table's) says whether this run merges worktrees."""
    return Policy(max_restarts=settings.max_restarts, restart_delay=settings.restart_delay,
                  merge=run is not None and run.isolation == "worktree", hand_back=settings.conflicts == "agent")


def option_problems(snapshot: Snapshot, settings: Settings) -> Dict[str, str]:
    """Streams whose task metadata sets worker limits that are not valid: they are invalid, with why."""
    if not any(record.worker_options for record in snapshot.streams.values()):
        return {}  # the usual case: the dashboard need not load Claude's argument building at all
    from .agent.claude import WorkerOptionError, is_claude, parse_worker_options

    try:
        claude = is_claude(settings.worker_argv())
    except UserError:
        return {}
    problems = {}
    for sid, record in snapshot.streams.items():
        if claude and record.worker_options:
            try:
                parse_worker_options(record.worker_options)
            except WorkerOptionError as exc:
                problems[sid] = str(exc)
    return problems


def board_for(snapshot: Snapshot, table: Table, workers: Mapping[str, Handle], settings: Settings,
              now: float) -> Board:
    return build_board(snapshot.streams, table.rows, workers, now, policy_of(settings, table.run),
                       option_problems(snapshot, settings), snapshot.unreadable())


@dataclass
class StatusReport:
    """Database, graph, lifecycle and workers at one moment."""

    location: DatabaseLocation
    snapshot: Snapshot
    board: Board
    orchestrator: Optional[PidRecord]
    table: Table
    layout: Layout
    notes: List[str] = field(default_factory=list)  # e.g. a damaged saved state that was ignored
    activity: Dict[str, dict] = field(default_factory=dict)  # running workers' agent activity

    places: Dict[str, dict] = field(default_factory=dict)  # stream -> its branch and worktree (worktrees)
    spend: Optional[Standing] = None  # with a spend cap: spending in its window against it

    def live_activity(self, stream_id: str) -> dict:
        """What the running worker of a stream said so far (nothing once it has ended: the saved
        activity lags the table by up to a couple of seconds)."""
        if not self.activity:
            return {}  # no run, nothing reported: `status` at rest asks this of every stream
        view = self.board.views.get(stream_id)
        return self.activity.get(stream_id, {}) if view is not None and view.where else {}

    def cost_of(self, stream_id: str) -> Optional[float]:
        """What a stream's attempts cost so far (USD), when its workers report it."""
        live = self.live_activity(stream_id).get("cost_usd")  # its ended attempts' and the running one's
        spent = self.table.get(stream_id).spent_usd
        if isinstance(live, (int, float)):
            return max(float(live), spent) or None
        return spent or None

    def usage_of(self, stream_id: str, key: str) -> Optional[int]:
        """A stream's agent `turns` or `tokens` so far: its ended attempts' (saved in its row) and
        the running one's; None when no agent worker of ours has reported any."""
        live = self.live_activity(stream_id).get(key)
        live = live if isinstance(live, int) and not isinstance(live, bool) else None
        saved = getattr(self.table.get(stream_id), key)
        return None if live is None and not saved else saved + (live or 0)

    def to_json(self) -> dict:
        summary = progress_summary_of(self.snapshot)
        return {
            "workspace": self.location.workspace_id,
            "database": str(self.location.path),
            "tracker": self.location.generation,
            "database_found_by": self.location.how,
            "database_notes": list(self.location.notes),
            "orchestrator": {"running": self.orchestrator is not None,
                             "pid": self.orchestrator.pid if self.orchestrator else None},
            "project": self.location.project_name,
            "run": {**run_json(self.table), "cost_usd": round(sum(self.cost_of(s) or 0.0 for s in self.board.views), 6),
                    "turns": sum(self.usage_of(s, "turns") or 0 for s in self.board.views),
                    "tokens": sum(self.usage_of(s, "tokens") or 0 for s in self.board.views),
                    "spend": self.spend.as_json() if self.spend is not None else None},
            "summary": asdict(summary),
            "streams": [dict(view_json(v, self), **self.places.get(v.stream_id, NO_PLACE))
                        for v in self.board.views.values()],
            "problems": self.board.problems.messages(),
            "warnings": self.snapshot.warnings() + self.notes,
        }


def view_json(view: StreamView, report: "StatusReport") -> dict:
    activity = report.live_activity(view.stream_id)
    life = report.table.get(view.stream_id)
    return {
        "stream_id": view.stream_id,
        "stream_name": view.stream_name,
        "state": view.state.value,
        "description": view.describe(),
        "dependencies": list(view.dependencies),
        "waiting_on": list(view.waiting_on),
        "reason": view.reason,
        "level": view.level,
        "tasks": {"total": view.total, "finished": view.finished, **view.counts},
        "percent": view.percent,
        "where": view.where or None,  # the executor's words: "pid 4242", a node
        "worker": view.worker,  # the executor's own facts about the live worker
        "pid": view.worker.get("pid"),  # the local executor's (kept for scripts that read it)
        "attempts": view.attempts,
        "started_at": view.started_at,
        "retry_at": view.retry_at,
        "resume_at": view.retry_at if view.state is StreamState.RATE_LIMITED else None,
        "cost_usd": report.cost_of(view.stream_id),
        "turns": report.usage_of(view.stream_id, "turns"),
        "tokens": report.usage_of(view.stream_id, "tokens"),
        "last_activity": activity.get("last_activity"),
        "last_message": activity.get("last_message") or None,
        "session_id": activity.get("session_id") or life.session_id or None,
        "commit": life.commit or None,  # the merge gate's: under review, approved, in its pull request
        "diff_stat": life.diff_stat or None,
        "pull_request": life.pull_request or None,
    }


def as_it_ended(table: Table) -> Table:
    """The table to show: a run that ended as it ended, except that work reopened since is plainly
    waiting or ready (the next run's first attempt, not a retry of this one)."""
    if table.run_life.ended_at is None:
        return table
    rows = {sid: replace(life, ran=False) if life.state is StreamState.COMPLETE else life
            for sid, life in table.rows.items()}
    return Table(rows, table.run, table.run_life)


@contextmanager
def one_read() -> Iterator[None]:
    """For a command that reads the tracker once, prints and ends (`status`, a dashboard frame): no
    cyclic garbage collection meanwhile. At 10,000 streams it ran a dozen times for nothing (the
    snapshot and the board are kept to the end): a tenth of the time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def collect_status(layout: Layout, db_override: Optional[str] = None, tracker: Optional[str] = None) -> StatusReport:
    """Read the database once and the supervisor's files, and derive every stream's state."""
    location = open_database(layout, db_override, tracker)
    snapshot = take_snapshot(location)
    settings = load_settings(layout.config_files())
    table, notes = load_table(layout.run_file)
    notes = setting_warnings(layout.config_files()) + notes  # a misspelt setting changes nothing: say so
    if table.run.max_restarts is not None:  # the budget the run counts with (--max-restarts)
        settings = replace(settings, max_restarts=table.run.max_restarts)
    board = board_for(snapshot, as_it_ended(table), read_workers(layout), settings, time.time())
    orchestrator = live_orchestrator(layout)
    activity = {}
    if orchestrator:  # agents' activity exists only while a run does; its reader brings the event parser
        from .agent.output import load_activity

        activity = load_activity(layout.activity_file)
    report = StatusReport(location, snapshot, board, orchestrator, table, layout, notes, activity)
    if settings.spend_cap_usd > 0:
        report.spend = spend_standing(report, settings)
        if orchestrator and table.run_life.state is RunState.CAPPED:
            report.board = capped_board(board, report.spend)
    return report


def spend_standing(report: StatusReport, settings: Settings) -> Standing:
    """What every run spent in the cap's window (their journals) and what running workers cost so far."""
    from .agent.claude import MIN_BUDGET_USD  # only with a cap: the dashboard need not load it otherwise
    from .spend import standing_of

    live = sum(max((report.cost_of(sid) or 0.0) - report.table.get(sid).spent_usd, 0.0) for sid in report.activity)
    return standing_of(report.layout.journals, time.time(), settings.spend_cap_usd, settings.spend_cap_period,
                       live, MIN_BUDGET_USD)


def capped_board(board: Board, spend: Standing) -> Board:
    """Ready streams say why they do not start: the spend cap, and when it lifts."""
    from .spend import gauge_text
    when = f", resumes ~{time.strftime('%H:%M', time.localtime(spend.lifts_at))}" if spend.lifts_at else ""
    text = f"ready: spend cap reached ({gauge_text(spend.spent_usd, spend.cap_usd, spend.period)}){when}"
    views = {sid: replace(view, description=text) if view.state is StreamState.READY else view
             for sid, view in board.views.items()}
    return replace(board, views=views)


def last_log_line(path: Path) -> str:
    """The last non-empty line of a log (read from the end: logs can be large)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(handle.tell() - 4096, 0))
            lines = [ln for ln in handle.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""


def format_duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def level_order(views: Iterable[StreamView]) -> List[StreamView]:
    """By dependency level, then id; streams that cannot run (no level) last."""
    return sorted(views, key=lambda v: (v.level is None, v.level or 0, v.stream_id))


def render_status(report: StatusReport) -> str:
    """The plain-text status table."""
    board = report.board
    location = report.location
    lines = [f"{where_line(location)}   Database: {location.path}",
             f"Tracker: {location.generation}, database {printable(location.how)}"]
    lines += [f"note: {printable(n)}" for n in location.notes]
    orch = report.orchestrator
    run = report.table.run_life
    unusual = run.state in (RunState.PAUSED, RunState.PROBING, RunState.CAPPED, RunState.STOPPING)  # else: nothing
    shown = f"; {describe_run(run)}" if orch and unusual else ""
    lines.append(f"Orchestrator: running (pid {orch.pid}){shown}" if orch else "Orchestrator: not running")
    if not orch:
        lines += run_lines(run)
    if report.spend is not None:
        lines.append(f"Spend cap: {report.spend.gauge()}" + (" (reached: no new worker starts)"
                                                              if report.spend.reached else ""))
    lines.append("")
    rows = [("LEVEL", "STREAM", "STATE", "TASKS", "WORKER", "ATTEMPTS", "COST", "NAME")]
    for view in level_order(board.views.values()):
        cost = report.cost_of(view.stream_id)
        rows.append((
            "-" if view.level is None else str(view.level),
            printable(view.stream_id, 40),
            printable(view.describe(), 60),
            f"{view.finished}/{view.total} ({whole_percent(view.finished, view.total)}%)",
            view.where or "-",
            str(view.attempts),
            f"${cost:.2f}" if cost else "-",
            printable(view.stream_name, 40) if view.stream_name != view.stream_id else "",
        ))
    widths = [max(map(len, column)) for column in zip(*rows)]
    line = "  ".join(f"{{:<{width}}}" for width in widths).format  # one format for every row (10,000 of them)
    lines += [line(*row).rstrip() for row in rows]
    lines.append("")
    for view in board.in_state(*PARKED, *GATED):  # the table cuts descriptions short: the next step in full
        lines.append(f"{printable(view.stream_id)}: {printable(view.describe())}")
    lines.append(overall_line(report))
    lines += [f"error: {printable(problem)}" for problem in board.problems.messages()]  # in full, as `plan` says them
    lines += [f"warning: {printable(w)}" for w in report.snapshot.warnings() + report.notes]
    return "\n".join(lines)


def where_line(location: DatabaseLocation) -> str:
    """Which project's streams these are: the workspace, or with the MCP server's default workspace
    (a hash of the folder) the project's name, with the hash beside it."""
    if location.project_name != location.workspace_id:
        return (f"Project: {printable(location.project_name)} (Task Copilot workspace "
                f"{printable(location.workspace_id)}, the server's default for this folder)")
    return f"Workspace: {printable(location.workspace_id)}"


def run_lines(run: RunLife) -> List[str]:
    """How the last run ended (why nothing runs now), and what the next `start` does."""
    if not run.started_at:
        return []
    began = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run.started_at))
    if run.ended_at is None:
        return [f"Last run: started {began}, cut short (its orchestrator is gone); "
                "the next `start` continues it with its restart counts"]
    took = format_duration(run.ended_at - run.started_at)
    code = f", exit {run.exit_code}" if run.exit_code is not None else ""
    return [f"Last run: started {began}, ended after {took}{code}: {printable(run.outcome or 'ended')}; "
            "the next `start` begins a new run (fresh restart budgets)"]


def overall_line(report: StatusReport) -> str:
    summary = progress_summary_of(report.snapshot)
    counts: Dict[StreamState, int] = {}
    for view in report.board.views.values():  # counted by state, named once each (an enum's .value is a call)
        counts[view.state] = counts.get(view.state, 0) + 1
    states = ", ".join(f"{n} {state}" for state, n in sorted((s.value, n) for s, n in counts.items()))
    done = summary.completed_tasks + summary.cancelled_tasks
    return (f"Overall: {done}/{summary.total_tasks} tasks ({whole_percent(done, summary.total_tasks)}%), "
            f"{summary.completed_streams}/{summary.total_streams} streams complete" + (f"; {states}" if states else ""))
