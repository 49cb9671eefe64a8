"""Is the Ray cluster ready for this project: what `start` checks before anything starts, and `cluster`.

With `executor = ray`, before it writes or spawns anything, `start` checks (each refusal says the fix):
- the run uses worktree isolation (a node's work comes back as the stream's branch, merged into
  the run's integration branch exactly like a local worker's);
- `ray_address` answers as a Ray dashboard with the token Ray's own tools would use (jobs.probe:
  reachable, not 401/403, the jobs API version this runtime speaks, some live node advertising
  `agent_slot`);
- the project's git remote (`push_remote`) answers, and its URL carries no password (the nodes
  fetch from and push to it; a job's description is readable by anyone who may list jobs);
- the worker command's preflight, run as a probe job on a node that takes agents
  (remote/preflight.py): the CLI runs there, is logged in, may run as that user.

A probe job no node takes in time (every agent slot busy) is stopped and recorded as a leftover the
run's executor deletes once Ray lets it; the run starts, and says so. `orchestrate.py cluster`
(what `orchestrate-kit doctor` runs) prints the same checks without the probe job. Commands only,
never the loop: these calls block. Standard library only.
"""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional, Tuple

from ...agent.claude import Preflight
from ...git.remote import check_remote
from ...remote import preflight as remote_preflight
from . import job as ray_job
from . import jobs, package
from .jobs import Check, JobInfo, JobsClient, RayError
from .records import LEFTOVER, JobRecord, Records

if TYPE_CHECKING:
    from ...settings import Layout, Settings

PROBE_PENDING_SECONDS = 60.0  # how long the probe job may wait for a node before the run starts without it
PROBE_SECONDS = 180.0  # how long the probe job may take in all


class NotReady(Exception):
    """The cluster cannot take this run's jobs; the message says why and what to do."""


def client(settings: "Settings") -> JobsClient:
    if not settings.ray_address.strip():
        raise NotReady("executor = ray needs ray_address, the Ray head's dashboard URL: "
                       "`orchestrate-kit config ray_address http://HEAD:8265`")
    try:
        return JobsClient.from_environment(settings.ray_address)
    except RayError as error:
        raise NotReady(str(error)) from None


def checks(layout: "Layout", settings: "Settings") -> List[Check]:
    """The cluster and the remote as `doctor` reports them; stops at the first failure that hides the rest."""
    try:
        api = client(settings)
    except NotReady as error:
        return [Check(False, str(error))]
    found = jobs.probe(api)
    if not all(c.ok for c in found):
        return found
    return found + [_remote_check(layout, settings)]


def print_checks(layout: "Layout", settings: "Settings", as_json: bool) -> bool:
    """`preflight` with executor = ray (what `orchestrate-kit doctor` runs): the checks without the probe
    job, as lines or as JSON ({executor, command, problems, cluster}); whether all passed."""
    found = checks(layout, settings)
    failed = [c for c in found if not c.ok]
    if as_json:
        print(json.dumps({"executor": "ray", "command": settings.worker_argv()[0], "version": None, "logged_in": None,
                          "problems": [{"check": "cluster", "message": c.message,
                                        "fix": "see docs/RAY.md (what each node needs, token authentication)"}
                                       for c in failed],
                          "cluster": [{"ok": c.ok, "message": c.message} for c in found]}, indent=2))
    else:
        for check in found:
            print(f"{'ok' if check.ok else 'problem'}: {check.message}")
    return not failed


def _remote_check(layout: "Layout", settings: "Settings") -> Check:
    from .executor import remote_url

    problem = check_remote(layout.root, settings.push_remote)
    if problem:
        return Check(False, f"the nodes fetch from and push to the project's git remote: {problem}")
    try:
        url = remote_url(layout.root, settings.push_remote)
    except (OSError, RayError) as error:
        return Check(False, str(error))
    return Check(True, f"the nodes use the git remote {settings.push_remote} ({url})")


def refuse_unless_ready(layout: "Layout", settings: "Settings", probe: bool, say) -> None:
    """`start`'s checks (see the module's docstring); NotReady with the reason and the fix."""
    if settings.isolation != "worktree":
        raise NotReady("executor = ray needs worktree isolation (a node's work comes back as its stream's branch, "
                       "merged into the run's integration branch); this project has isolation none: use a git "
                       "repository with a commit, or --isolation worktree")
    for check in checks(layout, settings):
        if not check.ok:
            raise NotReady(check.message)
    if not probe:
        return
    if Records(layout.state / "ray").jobs(tidy=False)[0]:
        say("note: this run's jobs are on the cluster already; the worker command's preflight on a node is skipped")
        return
    api = client(settings)
    result, node = node_preflight(api, settings.worker_argv(), layout, settings.ray_pending_timeout * 60)
    if result is None:
        say(f"note: {node}; the worker command's preflight on a node did not run")
        return
    if result.problems:
        raise NotReady(f"the worker command is not ready on the cluster's {node}, so nothing was started:\n  "
                       + "\n  ".join(f"{p.message}\n    fix: {p.fix}" for p in result.problems)
                       + "\n  (--no-preflight skips these checks)")


def node_preflight(api: JobsClient, argv: List[str], layout: Optional["Layout"] = None,
                   pending_limit: float = PROBE_PENDING_SECONDS) -> Tuple[Optional[Preflight], str]:
    """The preflight as a probe job on a node: (its answer, the node), or (None, why it did not run)."""
    try:
        uri = package.ensure_uploaded(api)
        run, token = "pf" + secrets.token_hex(5), secrets.token_hex(8)
        body = ray_job.preflight_submission(run, token, argv, uri)
        sid = api.submit(body).submission_id
        info = _wait(api, sid, min(pending_limit or PROBE_PENDING_SECONDS, PROBE_PENDING_SECONDS))
        if not info.ended:
            api.stop(sid)
            if layout is not None:  # Ray keeps a stopped pending job: the run's executor deletes it later
                Records(layout.state / "ray").save_job(JobRecord(sid, run, "~preflight", "preflight", 1, token,
                                                                 time.time(), "", "", (), LEFTOVER))
            if info.status != "PENDING":
                return None, f"the probe job did not finish within {PROBE_SECONDS:g} s on {_node_text(api, info.node_id)}"
            return None, f"no node took the probe job in time ({jobs.pending_reason(info, api.nodes()) or info.message})"
        answer = remote_preflight.parse(api.logs(sid))
        api.delete(sid)
    except RayError as error:
        raise NotReady(f"the preflight could not run on a node: {error}") from None
    where = _node_text(api, info.node_id)
    if answer is None:
        raise NotReady(f"the preflight job on the cluster's {where} gave no answer ({info.status}: "
                       f"{info.message[:300]}); see `ray job logs {sid}`")
    return answer["preflight"], where


def _wait(api: JobsClient, sid: str, pending_limit: float) -> JobInfo:
    """The probe job once it has ended, or while it still waits for a node after `pending_limit`."""
    began = time.monotonic()
    while True:
        info = api.info(sid)
        if info is None:
            raise RayError(f"Ray lost the probe job {sid}")
        waited = time.monotonic() - began
        if info.ended or (info.status == "PENDING" and waited > pending_limit) or waited > PROBE_SECONDS:
            return info
        time.sleep(0.25)


def _node_text(api: JobsClient, node_id: Optional[str]) -> str:
    try:
        node = next((n for n in api.nodes() if n.node_id == node_id), None)
    except RayError:
        node = None
    return node.describe() if node else f"node {(node_id or '?')[:8]}"

