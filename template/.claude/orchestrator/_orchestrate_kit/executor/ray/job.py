"""One stream attempt as a Ray job: the description the remote worker reads, and the submit body.

`describe` turns what the orchestrator knows about an attempt (the WorkerSpec's argv and the
variables the orchestrator itself sets, the stream's task snapshot, the git remote and the commit
to start from) into the remote worker's job description; `submission` wraps it for
`JobsClient.submit`: entrypoint `python3 -m _orchestrate_kit.remote.worker`, the runtime package
in `py_modules`, `entrypoint_resources` `{"agent_slot": 1}`, our run/stream/attempt/token in the
metadata. Only the variables the orchestrator sets travel (never the orchestrator's own
environment: it holds the user's credentials, and the jobs API shows a job's environment), and
the remote's URL may carry no password.
"""

from __future__ import annotations

import urllib.parse
from typing import Any, Dict, Mapping, Optional, Sequence

from ...remote import protocol, refs
from .jobs import RayError, job_request

ENTRYPOINT = "python3 -m _orchestrate_kit.remote.worker"
PREFLIGHT_ENTRYPOINT = "python3 -m _orchestrate_kit.remote.preflight"
# What a worker's environment gets from the orchestrator (worker_spec.worker_environment), less
# the database pointers (meaningless on a node) and the token (it travels inside the description).
SENT_VARIABLES = ("STREAM_ID", "STREAM_NAME", "ORCHESTRATOR_ATTEMPT")
PUSH_MARGIN = 30.0  # seconds Ray's stop waits past our grace: the worker reaps its tree, then pushes


def public_remote(url: str) -> str:
    """The remote URL as a job may carry it: refused if it holds a password or token."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme in ("http", "https", "ssh", "git", "ftp", "ftps") and parts.password:
        raise RayError("the project's git remote URL holds a password or token, which a Ray job would show to "
                       "anyone who can list jobs; use a credential helper or an SSH key on the nodes")
    return url


def describe(run: str, stream_id: str, name: str, attempt: int, token: str, remote: str, start: str,
             argv: Sequence[str], env: Mapping[str, str], generation: str, snapshot: Mapping[str, Any],
             grace: float, branch: Optional[str] = None, folder: str = "", start_branch: str = "") -> Dict[str, Any]:
    """The remote worker's job description (see remote/worker.py). `folder`: where in the repository the
    worker runs (the project's folder, in a monorepo), relative to its top. `start_branch`: the branch
    on the remote that holds `start` (the node fetches only that one; '' when none is known)."""
    return {
        "version": protocol.VERSION,
        "run": run, "stream": stream_id, "name": name, "attempt": int(attempt), "token": token,
        "remote": public_remote(remote), "start": start, "start_branch": start_branch,
        "branch": branch or f"stream/{name}",
        # The node's local branch, one per job: a resume after a usage limit runs the same attempt again.
        "work_branch": f"orchestrate/{run}/{name}/{int(attempt)}-{token[:8]}",
        "attempt_ref": refs.attempt_ref(run, name, attempt, token),
        "progress_ref": refs.progress_ref(run, name, attempt, token),
        "argv": list(argv),
        "env": {k: env[k] for k in SENT_VARIABLES if k in env},
        "tracker": {"generation": generation, "snapshot": dict(snapshot)},
        "grace": float(grace),
        "folder": folder.strip("/"),
    }


def submission(description: Mapping[str, Any], py_module: str, stop_grace: float,
               extra_resources: Optional[Mapping[str, float]] = None, node_id: Optional[str] = None,
               number: Optional[int] = None) -> Dict[str, Any]:
    """The `POST /api/jobs/` body. Ray's own stop waits past our grace so the worker can push.
    `number` names the submission (`<run>-<name>-<number>`; default: the attempt)."""
    return job_request(str(description["run"]), str(description["name"]), int(description["attempt"]),
                       str(description["token"]), ENTRYPOINT, {protocol.JOB_VARIABLE: protocol.encode_job(description)},
                       stop_grace=float(stop_grace) + PUSH_MARGIN, py_modules=[py_module],
                       extra_resources=extra_resources, node_id=node_id, number=number)


def preflight_submission(run: str, token: str, argv: Sequence[str], py_module: str, number: int = 1,
                         node_id: Optional[str] = None) -> Dict[str, Any]:
    """A probe job: the worker command's preflight on a node that takes agents (remote/preflight.py).

    Its submission id, `<run>-preflight~<n>`, cannot be a stream's (no stream's name holds `~`)."""
    description = {"version": protocol.VERSION, "kind": "preflight", "run": run, "token": token, "argv": list(argv)}
    body = job_request(run, "preflight", number, token, PREFLIGHT_ENTRYPOINT,
                       {protocol.JOB_VARIABLE: protocol.encode_job(description)}, stop_grace=5,
                       py_modules=[py_module], node_id=node_id)
    body["submission_id"] = f"{run}-preflight~{int(number)}"
    body["metadata"]["orchestrate_stream"] = "~preflight"
    return body
