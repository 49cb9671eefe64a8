"""Task Copilot's MCP server (generation 1) on a cluster node: the tools a worker uses.

A stdio MCP server (newline-delimited JSON-RPC 2.0, as Claude Code speaks to its servers) named
`task-copilot`, so the worker's tools keep their names (`mcp__task-copilot__task_update`):
`task_get`, `task_list` and `task_update` with the real server's input schemas and answers, read
from the attempt's task copy; an update goes to the orchestrator through the job's log (tasks.py).
Every other Task Copilot tool answers that it is not available on a cluster node. The remote
worker names this server in the worker's `--mcp-config`.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Dict, IO, List, Optional

from .tasks import STATUSES, NodeTasks, TaskError

PROTOCOL_VERSION = "2024-11-05"
SERVER_INFO = {"name": "task-copilot", "version": "1.0.0"}

TOOLS: List[Dict[str, Any]] = [
    {"name": "task_update", "description": "Update task", "inputSchema": {
        "type": "object", "required": ["id"], "properties": {
            "id": {"type": "string", "description": "Task ID"},
            "status": {"type": "string", "enum": list(STATUSES), "description": "New status"},
            "assignedAgent": {"type": "string", "description": "New assigned agent"},
            "notes": {"type": "string", "description": "Task notes"},
            "blockedReason": {"type": "string", "description": "Reason if blocked"},
            "metadata": {"type": "object", "description": "Metadata updates (merged)"}}}},
    {"name": "task_get", "description": "Get task details", "inputSchema": {
        "type": "object", "required": ["id"], "properties": {
            "id": {"type": "string", "description": "Task ID"},
            "includeSubtasks": {"type": "boolean", "description": "Include subtasks (default false)"},
            "includeWorkProducts": {"type": "boolean", "description": "Include work products (default false)"}}}},
    {"name": "task_list", "description": "List tasks with filters", "inputSchema": {
        "type": "object", "properties": {
            "prdId": {"type": "string", "description": "Filter by PRD ID"},
            "parentId": {"type": "string", "description": "Filter by parent task ID (null for top-level)"},
            "status": {"type": "string", "enum": list(STATUSES), "description": "Filter by status"},
            "assignedAgent": {"type": "string", "description": "Filter by assigned agent"}}}},
]


def _text(value: Any) -> Dict[str, Any]:
    return {"content": [{"type": "text", "text": value if isinstance(value, str) else json.dumps(value)}]}


def call_tool(store: NodeTasks, name: str, arguments: Dict[str, Any]) -> Dict[str, Any]:
    if name == "task_get":
        task = store.get(str(arguments.get("id")))
        if task is None:
            return _text("Task not found")
        shown = {k: v for k, v in task.items() if v is not None and k != "archived"}
        if arguments.get("includeSubtasks"):
            shown["subtasks"] = [{"id": t["id"], "title": t["title"], "status": t["status"]}
                                 for t in store.tasks() if t.get("parentId") == task["id"]]
        return _text(shown)
    if name == "task_list":
        tasks = store.tasks()
        rows = [{"id": t["id"], "title": t["title"], "status": t["status"], "assignedAgent": t.get("assignedAgent"),
                 "subtaskCount": sum(1 for s in tasks if s.get("parentId") == t["id"]),
                 "completedSubtasks": sum(1 for s in tasks if s.get("parentId") == t["id"]
                                          and s.get("status") == "completed"),
                 "hasWorkProducts": False}
                for t in tasks
                if all(arguments.get(k) in (None, t.get(k)) for k in ("prdId", "parentId", "status", "assignedAgent"))]
        return _text([{k: v for k, v in r.items() if v is not None} for r in rows])
    if name == "task_update":
        fields = {k: v for k, v in arguments.items() if k != "id"}
        try:
            task = store.update(str(arguments.get("id")), fields)
        except TaskError as error:
            if error.code == 2:
                return _text("Task not found")
            return {"content": [{"type": "text", "text": str(error)}], "isError": True}
        return _text({"id": task["id"], "status": task["status"], "updatedAt": task["updatedAt"]})
    return {"content": [{"type": "text", "text": f"{name} is not available on a cluster node: the orchestrator's "
                                                 "stand-in for Task Copilot answers task_get, task_list and "
                                                 "task_update"}], "isError": True}


def handle(store: Optional[NodeTasks], message: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """One JSON-RPC message in, the answer out (None for a notification)."""
    method, ident = message.get("method"), message.get("id")
    if ident is None:
        return None  # notifications (initialized, cancelled) need no answer
    if method == "initialize":
        result: Any = {"protocolVersion": (message.get("params") or {}).get("protocolVersion") or PROTOCOL_VERSION,
                       "capabilities": {"tools": {}}, "serverInfo": SERVER_INFO}
    elif method == "ping":
        result = {}
    elif method == "tools/list":
        result = {"tools": TOOLS}
    elif method == "tools/call":
        params = message.get("params") or {}
        if store is None:
            result = {"content": [{"type": "text", "text": "no task snapshot on this node"}], "isError": True}
        else:
            result = call_tool(store, str(params.get("name")), dict(params.get("arguments") or {}))
    else:
        return {"jsonrpc": "2.0", "id": ident, "error": {"code": -32601, "message": f"Method not found: {method}"}}
    return {"jsonrpc": "2.0", "id": ident, "result": result}


def serve(stdin: IO[str], stdout: IO[str]) -> None:
    try:
        store: Optional[NodeTasks] = NodeTasks.from_environment()
    except TaskError as error:
        print(f"task-copilot (node stand-in): {error}", file=sys.stderr)
        store = None
    for line in stdin:
        if not line.strip():
            continue
        try:
            message = json.loads(line)
        except ValueError:
            answer: Optional[Dict[str, Any]] = {"jsonrpc": "2.0", "id": None,
                                                "error": {"code": -32700, "message": "Parse error"}}
        else:
            answer = handle(store, message) if isinstance(message, dict) else None
        if answer is not None:
            stdout.write(json.dumps(answer) + "\n")
            stdout.flush()


if __name__ == "__main__":
    serve(sys.stdin, sys.stdout)
