"""The documented client for Task Copilot data, on either generation (standard library only).

Scripts use `TaskCopilotClient(...).stream_list()`, `.stream_get(stream_id)` and
`.progress_summary()`. The tracker adapters underneath find the database the way
the user's Task Copilot does (the MCP server, generation 1, or the `tc` CLI,
generation 2: see `_orchestrate_kit/trackers/`) and serve everything from one grouped query per
snapshot, so scripts and the orchestrator never disagree. The code behind it lives in
the private package `_orchestrate_kit/` beside this file; the names older scripts
import from here (Database, Snapshot, StreamRecord, ...) still work.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Dict, List, Mapping, Optional

sys.path.insert(0, str(Path(__file__).absolute().parent))

# The names scripts and older code import from here are kept (re-exported from the private package).
from _orchestrate_kit.trackers import (  # noqa: E402,F401
    BUSY_TIMEOUT_SECONDS,
    FINISHED_STATUSES,
    TASK_STATUSES,
    WORKER_OPTION_KEYS,
    Database,
    DatabaseBusy,
    DatabaseError,
    DatabaseLocation,
    Snapshot,
    StreamRecord,
    TrackerLocation,
    locate_tracker,
    percentage,
    read_snapshot,
    whole_percent,
)
from _orchestrate_kit.trackers.progress import (  # noqa: E402,F401
    ProgressSummary,
    StreamInfo,
    StreamProgress,
    TaskCounts,
    progress_summary_of,
    stream_progress,
)


def locate_database(
    project_root: Path,
    db_path: Optional[os.PathLike] = None,
    environ: Optional[Mapping[str, str]] = None,
) -> TrackerLocation:
    """Generation 1's database, resolved exactly as the Task Copilot MCP server does."""
    return locate_tracker(Path(project_root), str(db_path) if db_path else None, "mcp", environ)


# ---------------------------------------------------------------- documented client API


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
