"""The documented client for Task Copilot data, on either generation (standard library only).

Scripts use `TaskCopilotClient(...).stream_list()`, `.stream_get(stream_id)` and
`.progress_summary()`. The tracker adapters underneath find the database the way
the user's Task Copilot does (the MCP server, generation 1, or the `tc` CLI,
generation 2: see trackers.py) and serve everything from one grouped query per
snapshot, so scripts and the orchestrator never disagree. The names other
modules import from here (Database, Snapshot, StreamRecord, ...) are re-exported.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional

from tracker_snapshot import (  # noqa: F401  (re-exported: the runtime's one import point for these)
    BUSY_TIMEOUT_SECONDS,
    FINISHED_STATUSES,
    TASK_STATUSES,
    WORKER_OPTION_KEYS,
    DatabaseBusy,
    DatabaseError,
    Snapshot,
    StreamRecord,
    percentage,
    whole_percent,
)
from trackers import Database, TrackerLocation, locate_tracker, read_snapshot  # noqa: F401

DatabaseLocation = TrackerLocation  # the name before both generations were read


def locate_database(
    project_root: Path,
    db_path: Optional[os.PathLike] = None,
    environ: Optional[Mapping[str, str]] = None,
) -> TrackerLocation:
    """Generation 1's database, resolved exactly as the Task Copilot MCP server does."""
    return locate_tracker(Path(project_root), str(db_path) if db_path else None, "mcp", environ)


# ---------------------------------------------------------------- documented client API


@dataclass(frozen=True)
class StreamInfo:
    """A stream's identity and what it depends on."""

    stream_id: str
    stream_name: str
    dependencies: List[str]


@dataclass(frozen=True)
class TaskCounts:
    """Task counts by status, and the share finished (completed or cancelled)."""

    total_tasks: int
    completed_tasks: int
    in_progress_tasks: int
    pending_tasks: int
    blocked_tasks: int
    cancelled_tasks: int
    completion_percentage: float


@dataclass(frozen=True)
class StreamProgress(TaskCounts):
    """Task counts of one stream."""

    stream_id: str
    stream_name: str
    dependencies: List[str]
    is_complete: bool


@dataclass(frozen=True)
class ProgressSummary(TaskCounts):
    """Task and stream counts over the whole workspace."""

    total_streams: int
    completed_streams: int


def _task_counts(records: List[StreamRecord]) -> Dict[str, object]:
    """The TaskCounts fields, summed over records."""
    total = sum(r.total for r in records)
    counts: Dict[str, object] = {"total_tasks": total}
    for status in TASK_STATUSES:
        counts[f"{status}_tasks"] = sum(r.count(status) for r in records)
    counts["completion_percentage"] = percentage(sum(r.finished for r in records), total)
    return counts


def stream_progress(record: StreamRecord) -> StreamProgress:
    return StreamProgress(
        stream_id=record.stream_id,
        stream_name=record.stream_name,
        dependencies=list(record.dependencies),
        is_complete=record.is_complete,
        **_task_counts([record]),
    )


def progress_summary_of(snapshot: Snapshot) -> ProgressSummary:
    records = list(snapshot.streams.values())
    return ProgressSummary(
        total_streams=len(records),
        completed_streams=sum(1 for r in records if r.is_complete),
        **_task_counts(records),
    )


class TaskCopilotClient:
    """The client scripts use: `TaskCopilotClient(workspace_id).stream_list()` etc.

    Run in the project. `workspace_id` (generation 1) defaults to $WORKSPACE_ID, .mcp.json, then
    the server's default; `db_path` bypasses the lookup; `tracker` ("mcp" or "tc") picks a
    generation when both are present. Each call reads one fresh snapshot.
    """

    def __init__(self, workspace_id: Optional[str] = None, db_path: Optional[os.PathLike] = None,
                 tracker: Optional[str] = None):
        env: Dict[str, str] = dict(os.environ)
        if workspace_id:
            env["WORKSPACE_ID"] = workspace_id
            tracker = tracker or "mcp"  # a workspace is generation 1's notion
        self.location = locate_tracker(Path.cwd(), str(db_path) if db_path else None, tracker, env)
        self.workspace_id = self.location.workspace_id
        self.db_path = self.location.path

    def snapshot(self) -> Snapshot:
        if not self.location.exists:
            raise DatabaseError(self.location.missing_message())
        return read_snapshot(self.db_path, generation=self.location.generation)

    def stream_list(self) -> List[StreamInfo]:
        return [
            StreamInfo(r.stream_id, r.stream_name, list(r.dependencies))
            for r in self.snapshot().streams.values()
        ]

    def stream_get(self, stream_id: str) -> Optional[StreamProgress]:
        record = self.snapshot().streams.get(stream_id)
        return stream_progress(record) if record else None

    def progress_summary(self) -> ProgressSummary:
        return progress_summary_of(self.snapshot())
