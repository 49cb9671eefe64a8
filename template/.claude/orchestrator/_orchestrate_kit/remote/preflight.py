"""The preflight on a cluster node: is the worker command there, does it run, is Claude Code logged in.

    python3 -m _orchestrate_kit.remote.preflight      (the job description in $ORCHESTRATE_JOB)

The same checks `start` runs locally before any worker (agent/claude.py `preflight`), run by a
probe job on a node that takes agents, with the node's own PATH, HOME and credentials: what a
worker there would meet. The answer is one structured line in the job's log (`parse` reads it).
"""

from __future__ import annotations

import os
import sys
from typing import Any, Dict, Mapping, Optional

from ..agent.claude import Preflight, PreflightProblem, preflight
from . import protocol

KIND = "preflight"


def record(result: Preflight, node: str) -> Dict[str, Any]:
    return {"kind": KIND, "node": node, "version": result.version, "logged_in": result.logged_in,
            "problems": [{"check": p.check, "message": p.message, "fix": p.fix} for p in result.problems]}


def parse(log_text: str) -> Optional[Dict[str, Any]]:
    """{"node", "preflight": Preflight} from a probe job's log, or None if it printed no answer."""
    for line in reversed(log_text.split("\n")):
        try:
            found = protocol.parse_line(line)
        except protocol.ProtocolError:
            continue
        if found and found.get("kind") == KIND:
            problems = tuple(PreflightProblem(str(p.get("check")), str(p.get("message")), str(p.get("fix")))
                             for p in found.get("problems") or [] if isinstance(p, dict))
            return {"node": found.get("node"), "preflight": Preflight(found.get("version"), found.get("logged_in"),
                                                                       problems)}
    return None


def run(job: Mapping[str, Any]) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    result = preflight(list(job["argv"]), environ=env)
    sys.stdout.write(protocol.update_line(record(result, os.uname().nodename)) + "\n")
    sys.stdout.flush()
    return 0 if result.ok else 1


def main() -> int:
    try:
        job = protocol.decode_job(os.environ.get(protocol.JOB_VARIABLE, ""))
    except protocol.ProtocolError as error:
        print(f"orchestrate-kit preflight: {error}")
        return 2
    return run(job)


if __name__ == "__main__":
    sys.exit(main())
