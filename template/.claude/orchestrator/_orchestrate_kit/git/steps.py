"""The git steps (worktrees, merges, gates, pushes, pull requests) by name, JSON in and out, run as child processes.

The orchestrator's loop never waits on git or a network. It starts a step as a short child
process with a deadline of its own and reads its answer when it has exited:

    python3 -m _orchestrate_kit.git.steps < {"step": "push", "args": {...}}     (cwd: the runtime folder)
    -> one JSON object on stdout: the step's result, or {"error": "one line"}

`run_step(name, args)` is the same in-process (for tests and for `start`'s checks). Every
step takes plain JSON arguments (paths as strings) and returns a JSON object; none raises for
a problem of git, gh or the remote. The steps:

    check_remote        {"project", "remote"}                       -> {"problem": text or null}
    gh_problem          {"project", "remote"}                       -> {"problem": text or null}
    push                {"project", "branches", "remote"}           -> {"pushes": [PushResult...]}
    fetch               {"project", "branch", "remote"}             -> FetchResult
    open_pull_request   {"project", "state", "stream_id", "branch", "base", "remote", "title", "body"} -> Opened
    pull_request_state  {"project", "url"}                          -> PullRequestState
    prepare_workspace   {"project", "run": RunInfo.as_dict(), "stream_id"} -> {"branch", "path", "cwd", "notes"}
                        or {"error"}: the stream's worktree made or reused (workspaces.prepare_workspace)
    merge_streams       {"project", "run": RunInfo.as_dict(), "streams": [{"stream_id", "handed_back": [files],
                        "commit"}...]} -> {"results": [MergeResult.as_dict() or {"error"}...]}: finished
                        streams' whole merges, one after another (workspaces.merge_finished each: a
                        handed-back conflict checked, its leftovers committed, its branch merged, a
                        conflict handed back, once merged again)
    gate_stream         {"project", "run", "stream_id", "stat"} -> {"committed", "commit", "stat"} or
                        {"error"}: a finished stream taken to its gate (gates.take_to_gate: its
                        leftovers committed, its commit, with `stat` its diff stat for a review)
    undo_merge          {"project", "run", "before"} -> {} or {"error"}: the integration branch moved
                        back to `before` after a failed merge check (workspaces.undo_merge)
    poll_pull_requests  {"project", "urls", "branch", "remote"}     -> {"states": [PullRequestState...],
                        "fetch": FetchResult or null}: every URL asked about, and once one is
                        merged the integration branch `branch` fetched back (one step per poll)
Standard library only, Python 3.9+.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable, Dict, Mapping

# Each step imports the modules it uses, when it runs: a step is a process of its own, started for
# every worktree and merge, and a merge need not pay for importing the gates, gh and remote code.

Step = Callable[[Mapping[str, Any]], Dict[str, Any]]


def _check_remote(a: Mapping[str, Any]) -> Dict[str, Any]:
    from . import remote

    return {"problem": remote.check_remote(Path(a["project"]), a.get("remote", remote.DEFAULT_REMOTE))}


def _gh_problem(a: Mapping[str, Any]) -> Dict[str, Any]:
    from . import pull_requests, remote

    return {"problem": pull_requests.gh_problem(Path(a["project"]), a.get("remote", remote.DEFAULT_REMOTE))}


def _push(a: Mapping[str, Any]) -> Dict[str, Any]:
    from . import remote

    pushed = remote.push_branches(Path(a["project"]), [str(b) for b in a["branches"]],
                                  a.get("remote", remote.DEFAULT_REMOTE))
    return {"pushes": [p.as_dict() for p in pushed]}


def _fetch(a: Mapping[str, Any]) -> Dict[str, Any]:
    from . import remote

    return remote.fetch_branch(Path(a["project"]), str(a["branch"]), a.get("remote", remote.DEFAULT_REMOTE)).as_dict()


def _open_pull_request(a: Mapping[str, Any]) -> Dict[str, Any]:
    from . import pull_requests, remote

    return pull_requests.open_pull_request(
        Path(a["project"]), Path(a["state"]), str(a["stream_id"]), str(a["branch"]), str(a["base"]),
        a.get("remote", remote.DEFAULT_REMOTE), str(a.get("title", "")), str(a.get("body", ""))).as_dict()


def _pull_request_state(a: Mapping[str, Any]) -> Dict[str, Any]:
    from . import pull_requests

    return pull_requests.pull_request_state(Path(a["project"]), str(a["url"])).as_dict()


def _prepare_workspace(a: Mapping[str, Any]) -> Dict[str, Any]:
    from . import workspaces

    try:
        made = workspaces.prepare_workspace(Path(a["project"]), workspaces.RunInfo.from_dict(a["run"]),
                                            str(a["stream_id"]))
    except workspaces.WorkspaceError as exc:
        return {"error": str(exc)}
    return {"branch": made.branch, "path": str(made.path), "cwd": str(made.cwd), "notes": list(made.notes)}


def _merge_streams(a: Mapping[str, Any]) -> Dict[str, Any]:
    """Each stream merged in turn, as one step: a level of 8 finished streams pays one Python start-up, not 8.
    A stream that cannot be merged answers {"error"} and the next is merged all the same (its merge left
    the integration branch as it was)."""
    from . import workspaces

    project, run = Path(a["project"]), workspaces.RunInfo.from_dict(a["run"])
    results = []
    for stream in a["streams"]:
        try:
            merged = workspaces.merge_finished(project, run, str(stream["stream_id"]),
                                               [str(f) for f in stream.get("handed_back") or ()],
                                               str(stream["commit"]) if stream.get("commit") else None)
            results.append(merged.as_dict())
        except workspaces.WorkspaceError as exc:
            results.append({"error": str(exc)})
    return {"results": results}


def _gate_stream(a: Mapping[str, Any]) -> Dict[str, Any]:
    from . import gates, workspaces

    try:
        return gates.take_to_gate(Path(a["project"]), workspaces.RunInfo.from_dict(a["run"]), str(a["stream_id"]),
                                  bool(a.get("stat")))
    except workspaces.WorkspaceError as exc:
        return {"error": str(exc)}


def _undo_merge(a: Mapping[str, Any]) -> Dict[str, Any]:
    from . import workspaces

    try:
        workspaces.undo_merge(Path(a["project"]), workspaces.RunInfo.from_dict(a["run"]), str(a["before"]))
    except workspaces.WorkspaceError as exc:
        return {"error": str(exc)}
    return {}


def _poll_pull_requests(a: Mapping[str, Any]) -> Dict[str, Any]:
    from . import pull_requests, remote

    project = Path(a["project"])
    states = [pull_requests.pull_request_state(project, str(url)) for url in a["urls"]]
    fetched = None
    if any(s.state == "merged" for s in states):
        fetched = remote.fetch_branch(project, str(a["branch"]), a.get("remote", remote.DEFAULT_REMOTE)).as_dict()
    return {"states": [s.as_dict() for s in states], "fetch": fetched}


STEPS: Dict[str, Step] = {
    "check_remote": _check_remote,
    "gh_problem": _gh_problem,
    "push": _push,
    "fetch": _fetch,
    "open_pull_request": _open_pull_request,
    "pull_request_state": _pull_request_state,
    "poll_pull_requests": _poll_pull_requests,
    "prepare_workspace": _prepare_workspace,
    "merge_streams": _merge_streams,
    "undo_merge": _undo_merge,
    "gate_stream": _gate_stream,
}


def run_step(name: str, args: Mapping[str, Any]) -> Dict[str, Any]:
    """One step's JSON result; {"error": ...} for an unknown step or arguments that do not fit."""
    step = STEPS.get(name)
    if step is None:
        return {"error": f"unknown step {name!r}; the steps: {', '.join(sorted(STEPS))}"}
    try:
        return step(args)
    except (KeyError, TypeError, ValueError) as exc:
        return {"error": f"the {name} step's arguments do not fit: {type(exc).__name__}: {exc}"}


def main(stdin=None, stdout=None) -> int:
    """Read {"step": NAME, "args": {...}} from stdin, print the step's JSON result on one line."""
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    try:
        request = json.loads(stdin.read())
        name, args = str(request["step"]), request.get("args") or {}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        result: Dict[str, Any] = {"error": f"the step request is not {{\"step\": NAME, \"args\": {{...}}}}: {exc}"}
    else:
        result = run_step(name, args) if isinstance(args, dict) else {"error": "args must be a JSON object"}
    stdout.write(json.dumps(result) + "\n")
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main())
