"""`tc` on a cluster node: the subcommands a worker uses, answered from the attempt's task copy.

    tc task list [--status S] [--agent A] [--stream N] [--prd N] [--json]
    tc task get ID [--json]
    tc task update ID [--status S] [--agent A] [--description D] [--priority N] [--title T]
                      [--metadata JSON] [--json]

The output, messages and exit codes are tc's (2 not found, 4 invalid, 5 no database). The update
goes to the orchestrator through the job's log (see tasks.py); anything else tc can do is refused
with a line saying so. The remote worker puts this first on the worker's PATH as `tc`.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Dict, List, Optional

from .tasks import NodeTasks, TaskError

NOT_HERE = 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tc", description="Task Copilot on a cluster node (the orchestrator's "
                                                             "stand-in: task list, get and update)")
    commands = parser.add_subparsers(dest="group")
    task = commands.add_parser("task").add_subparsers(dest="command")
    listing = task.add_parser("list")
    listing.add_argument("--status")
    listing.add_argument("--agent")
    listing.add_argument("--stream", type=int)
    listing.add_argument("--prd", type=int)
    listing.add_argument("--json", action="store_true")
    get = task.add_parser("get")
    get.add_argument("task_id", type=int)
    get.add_argument("--json", action="store_true")
    update = task.add_parser("update")
    update.add_argument("task_id", type=int)
    for name in ("--status", "--agent", "--description", "--title", "--metadata"):
        update.add_argument(name)
    update.add_argument("--priority", type=int)
    update.add_argument("--json", action="store_true")
    return parser


def _print_json(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False))


def _fail(message: str, code: int, as_json: bool) -> int:
    if as_json:
        print(json.dumps({"error": message, "code": code}, ensure_ascii=False), file=sys.stderr)
    else:
        print(f"Error: {message}", file=sys.stderr)
    return code


def main(argv: Optional[List[str]] = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    if words[:1] != ["task"] or len(words) < 2 or words[1] not in ("list", "get", "update"):
        if words and words[0] in ("-h", "--help"):
            _parser().print_help()
            return 0
        print(f"Error: `{' '.join(['tc'] + words)}` is not available on a cluster node: the orchestrator's "
              "stand-in answers tc task list, get and update only", file=sys.stderr)
        return NOT_HERE
    args = _parser().parse_args(words)
    as_json = bool(getattr(args, "json", False))
    try:
        store = NodeTasks.from_environment()
        if args.command == "list":
            if args.status is not None and args.status not in ("pending", "in_progress", "blocked", "completed",
                                                               "cancelled"):
                return _fail(f"invalid status '{args.status}'", 4, as_json)
            rows = [t for t in store.tasks()
                    if (args.status is None or t.get("status") == args.status)
                    and (args.agent is None or t.get("agent") == args.agent)
                    and (args.stream is None or t.get("stream_id") == args.stream)
                    and (args.prd is None or t.get("prd_id") == args.prd)]
            rows.sort(key=lambda t: (t.get("priority", 2), int(t.get("id", 0))))
            if as_json:
                _print_json(rows)
            else:
                for t in rows:
                    print(f"{t.get('id')}\t{t.get('title')}\t{t.get('status')}\t{t.get('agent') or ''}\t"
                          f"{t.get('priority')}\t{t.get('stream_id')}")
            return 0
        if args.command == "get":
            task = store.get(str(args.task_id))
            if task is None:
                return _fail(f"Task #{args.task_id} not found", 2, as_json)
            if as_json:
                _print_json(task)
            else:
                for key, value in task.items():
                    print(f"{key}: {value}")
            return 0
        fields: Dict[str, Any] = {k: v for k, v in (("status", args.status), ("agent", args.agent),
                                                     ("description", args.description), ("title", args.title),
                                                     ("metadata", args.metadata), ("priority", args.priority))
                                  if v is not None}
        if not fields:
            task = store.get(str(args.task_id))
            if task is None:
                return _fail(f"Task #{args.task_id} not found", 2, as_json)
            _print_json(task) if as_json else print("Nothing to update.")
            return 0
        task = store.update(str(args.task_id), fields)
        if as_json:
            _print_json(task)
        else:
            print(f"Updated task #{task['id']}: {task['title']} [{task['status']}]")
        return 0
    except TaskError as error:
        return _fail(str(error), error.code, as_json)


if __name__ == "__main__":
    sys.exit(main())
