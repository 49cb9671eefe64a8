"""The node's copy of one stream's tasks, which the `tc` shim and the MCP stand-in read and update.

The remote worker writes the job's snapshot to `tasks.json` in the attempt's folder and names it
and the updates file in the worker's environment (`ORCHESTRATE_NODE_TASKS`,
`ORCHESTRATE_NODE_UPDATES`). An update is checked the way the tracker checks it, applied to the
copy (so a read after it shows it) and appended to the updates file as one JSON line; the remote
worker relays each such line into the job's log for the orchestrator, which alone writes the real
database. Both files are changed under one lock: shims run as separate processes, perhaps at once.
Only tasks of the job's own stream are in the copy, so no other task can be touched from here.

Task shapes are the trackers' own: generation 1 (the MCP server's `task_get`: camelCase, metadata
an object), generation 2 (`tc task get --json`: the row's columns, metadata JSON text).
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional

from .. import atomic

TASKS_VARIABLE = "ORCHESTRATE_NODE_TASKS"
UPDATES_VARIABLE = "ORCHESTRATE_NODE_UPDATES"
STATUSES = ("pending", "in_progress", "blocked", "completed", "cancelled")
# The fields each tracker's update accepts (tool / CLI names) and the stored names they change.
MCP_FIELDS = {"status": "status", "assignedAgent": "assigned_agent", "notes": "notes",
              "blockedReason": "blocked_reason", "metadata": "metadata"}
TC_FIELDS = {"status": "status", "agent": "agent", "description": "description", "priority": "priority",
             "title": "title", "metadata": "metadata"}
# Stream keys belong to the plan: a worker moving its task to another stream is refused.
PLAN_KEYS = ("streamId", "streamName", "dependencies", "streamDependencies")


class TaskError(Exception):
    """An update the tracker would refuse; `code` is tc's exit code for it."""

    def __init__(self, message: str, code: int = 4):
        super().__init__(message)
        self.code = code


def check_update(generation: str, task: Mapping[str, Any], fields: Mapping[str, Any]) -> Dict[str, Any]:
    """The update as the tracker would accept it (metadata as a dict), or TaskError. Shared with the applier."""
    allowed = MCP_FIELDS if generation == "mcp" else TC_FIELDS
    unknown = sorted(set(fields) - set(allowed))
    if unknown:
        raise TaskError(f"unknown field(s) {', '.join(unknown)}")
    clean = dict(fields)
    if "status" in clean and clean["status"] not in STATUSES:
        raise TaskError(f"invalid status '{clean['status']}'. Must be one of: {', '.join(sorted(STATUSES))}")
    if "priority" in clean and clean["priority"] not in (0, 1, 2, 3):
        raise TaskError("priority must be between 0 and 3")
    if "title" in clean and not str(clean["title"]).strip():
        raise TaskError("title cannot be empty")
    for name in ("assignedAgent", "notes", "blockedReason", "agent", "description", "title"):
        if name in clean and not isinstance(clean[name], str):
            raise TaskError(f"{name} must be text")
    if "metadata" in clean:
        metadata = clean["metadata"]
        if isinstance(metadata, str):
            try:
                metadata = json.loads(metadata)
            except ValueError as error:
                raise TaskError(f"invalid metadata JSON: {error}") from None
        if not isinstance(metadata, dict):
            raise TaskError("metadata must be a JSON object")
        touched = [k for k in PLAN_KEYS if k in metadata and metadata[k] != _metadata_of(task).get(k)]
        if touched:
            raise TaskError(f"metadata {', '.join(touched)} belong(s) to the plan and cannot be changed by a worker")
        clean["metadata"] = metadata
    if generation == "mcp" and task.get("archived"):
        raise TaskError(f"Cannot update archived task {task.get('id')}")
    return clean


def _metadata_of(task: Mapping[str, Any]) -> Dict[str, Any]:
    metadata = task.get("metadata")
    if isinstance(metadata, str):
        try:
            metadata = json.loads(metadata)
        except ValueError:
            return {}
    return metadata if isinstance(metadata, dict) else {}


class NodeTasks:
    """The snapshot file and the updates file of one attempt."""

    def __init__(self, tasks_path: Path, updates_path: Path):
        self.tasks_path = Path(tasks_path)
        self.updates_path = Path(updates_path)

    @classmethod
    def from_environment(cls, environ: Optional[Mapping[str, str]] = None) -> "NodeTasks":
        env = os.environ if environ is None else environ
        if not env.get(TASKS_VARIABLE) or not env.get(UPDATES_VARIABLE):
            raise TaskError("this is the orchestrator's stand-in for Task Copilot on a cluster node, started "
                            f"without its task snapshot ({TASKS_VARIABLE} is not set)", 5)
        return cls(Path(env[TASKS_VARIABLE]), Path(env[UPDATES_VARIABLE]))

    @staticmethod
    def write(tasks_path: Path, snapshot: Mapping[str, Any]) -> None:
        atomic.write_text(tasks_path, json.dumps(dict(snapshot)))

    @contextmanager
    def _locked(self) -> Iterator[Dict[str, Any]]:
        with open(self.tasks_path.with_name(self.tasks_path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield json.loads(self.tasks_path.read_text(encoding="utf-8"))

    def read(self) -> Dict[str, Any]:
        with self._locked() as snapshot:
            return snapshot

    @property
    def generation(self) -> str:
        return str(self.read().get("generation"))

    def tasks(self) -> List[Dict[str, Any]]:
        return list(self.read().get("tasks", []))

    def get(self, task_id: str) -> Optional[Dict[str, Any]]:
        return next((t for t in self.tasks() if str(t.get("id")) == str(task_id)), None)

    def update(self, task_id: str, fields: Mapping[str, Any]) -> Dict[str, Any]:
        """Check, apply to the copy, record for the orchestrator; the task as it is now."""
        with self._locked() as snapshot:
            generation = snapshot.get("generation")
            tasks = snapshot.get("tasks", [])
            task = next((t for t in tasks if str(t.get("id")) == str(task_id)), None)
            if task is None:
                shown = f"#{task_id}" if generation == "tc" else str(task_id)
                raise TaskError(f"Task {shown} not found (this node knows only stream "
                                f"{snapshot.get('stream')!r}'s tasks)", 2)
            clean = check_update(str(generation), task, fields)
            _apply(str(generation), task, clean)
            self.write(self.tasks_path, snapshot)
            line = json.dumps({"task": str(task_id), "fields": clean, "at": time.time()}, sort_keys=True) + "\n"
            fd = os.open(str(self.updates_path), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line.encode("utf-8"))
            finally:
                os.close(fd)
            return task


def _apply(generation: str, task: Dict[str, Any], fields: Mapping[str, Any]) -> None:
    """The copy changed as the tracker changes its row (timestamps in the tracker's own form)."""
    if generation == "mcp":
        for name, value in fields.items():
            task[name] = {**_metadata_of(task), **value} if name == "metadata" else value
        task["updatedAt"] = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    else:
        for name, value in fields.items():
            task[name] = json.dumps({**_metadata_of(task), **value}) if name == "metadata" else value
        task["updated_at"] = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
