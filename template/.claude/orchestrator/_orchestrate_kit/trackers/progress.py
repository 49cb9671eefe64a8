"""What the documented client returns: streams, their task counts and the workspace's summary.

`task_copilot_client.py` (the public file beside this package) hands these out;
status and the dashboard sum the same way. Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List

from .snapshot import FINISHED_STATUSES, TASK_STATUSES, Snapshot, StreamRecord, percentage


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


def _task_counts(records: List[StreamRecord]) -> Dict[str, Any]:
    """The TaskCounts fields, summed over records (in one pass: 10,000 streams on a dashboard)."""
    sums: Dict[str, int] = {}
    for record in records:
        for status, n in record.counts.items():
            sums[status] = sums.get(status, 0) + n
    total = sum(sums.values())
    counts: Dict[str, Any] = {"total_tasks": total}
    for status in TASK_STATUSES:
        counts[f"{status}_tasks"] = sums.get(status, 0)
    finished = sum(sums.get(status, 0) for status in FINISHED_STATUSES)
    counts["completion_percentage"] = percentage(finished, total)
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
