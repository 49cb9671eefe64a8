"""A draft pull request per stream with the GitHub CLI (`gh`): opened once, its state read cheaply.

With `merge_gate = pr` a finished stream is not merged here. Its branch and the integration
branch are pushed to `push_remote` (git/remote.py, never forced), a draft pull request from
the stream branch into the integration branch is opened, and the stream counts as merged
once that pull request is merged on GitHub; then the integration branch is fetched back
(`remote.fetch_branch`) and the stream's dependents start from it. A pull request closed
without merging parks the stream like a rejected review.

    gh_problem(...)          for `start`'s refusal: gh missing, or not logged in, with the fix
    open_pull_request(...)   push both branches, then find or open the draft pull request
    pull_request_state(...)  open, merged (with its merge commit) or closed: one `gh pr view`

A stream's pull request is remembered in `state/pull_requests/<stream>.json` (atomic), and
before opening one `gh pr list --head BRANCH --base BASE --state all` is asked, so an
orchestrator killed at any point and started again never opens a second pull request for
the same stream branch. Every call has a deadline and returns a result or a reason, never
raises, and takes plain arguments, so it can run as a short child process. Output shapes
are those of gh 2.x: `pr create` prints the new pull request's URL on stdout, `pr view` and
`pr list` print JSON with the fields asked for. Standard library only, Python 3.9+.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from ..names import printable
from . import bounded, records, remote

GH = "gh"
GH_TIMEOUT = 60.0  # seconds one gh call may take
PULL_REQUESTS = "pull_requests"  # the records' folder inside the state folder
VIEW_FIELDS = "state,mergedAt,mergeCommit,url,closed"
TITLE_LIMIT = 200
BODY_LIMIT = 60_000  # GitHub takes up to 65,536 characters
GH_QUIET = {"GH_NO_UPDATE_NOTIFIER": "1", "NO_COLOR": "1"}  # no update check, plain text
_URL = re.compile(r"https?://[^\s]+/pull/\d+")
_GITHUB_REMOTE = re.compile(
    r"^(?:(?:https?|ssh|git)://(?:[^@/]+@)?(?P<host>[^/:]+)(?::\d+)?/|(?:[^@/]+@)?(?P<scp>[^/:]+):)"
    r"(?P<path>[^/\s]+/[^/\s]+?)(?:\.git)?/?$")


@dataclass(frozen=True)
class PullRequestRecord:
    """The pull request a stream has: remembered so that none is opened twice."""

    stream_id: str
    branch: str
    base: str
    url: str
    opened_at: float = 0.0

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Opened:
    """What open_pull_request did: the URL (found or created), or why there is none."""

    stream_id: str
    ok: bool
    url: str = ""
    created: bool = False  # False: an existing one was found (recorded, or listed by gh)
    reason: str = ""
    pushes: Tuple[Dict[str, Any], ...] = ()  # each push's PushResult.as_dict()

    def as_dict(self) -> Dict[str, Any]:
        return dict(asdict(self), pushes=list(self.pushes))


@dataclass(frozen=True)
class PullRequestState:
    """`state`: open, merged (with `merge_commit`), closed (without merging), or unknown (with `reason`)."""

    url: str
    state: str
    merge_commit: str = ""
    merged_at: str = ""
    reason: str = ""

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)


def _gh(project: Path, *args: str, timeout: float = GH_TIMEOUT) -> bounded.Ran:
    return bounded.run([GH, *args], Path(project), timeout, env=bounded.quiet_environment(GH_QUIET))


# ---------------------------------------------------------------- is gh ready


def gh_problem(project: Path, push_remote: str = remote.DEFAULT_REMOTE,
               timeout: float = remote.CHECK_TIMEOUT) -> Optional[str]:
    """Why pull requests cannot be opened from here (gh missing, not running, not logged in), with
    the fix; None when gh is ready. For `start`'s refusal, before anything starts."""
    if shutil.which(GH) is None:
        return ("merge_gate is pr, which opens pull requests with the GitHub CLI, and gh is not installed. "
                "Install it (https://cli.github.com), or set merge_gate to review or auto")
    version = _gh(project, "--version", timeout=timeout)
    if not version.ok:
        return f"the GitHub CLI (gh) does not run: {version.reason()}"
    target = github_repository(project, push_remote)
    auth = _gh(project, "auth", "status", *(("--hostname", target[0]) if target else ()), timeout=timeout)
    if not auth.ok:
        return f"the GitHub CLI (gh) is not logged in ({auth.reason()}); log in with: gh auth login"
    return None


def github_repository(project: Path, push_remote: str) -> Optional[Tuple[str, str]]:
    """(host, OWNER/REPO) of the remote's URL when it looks like a GitHub repository, else None."""
    if remote.remote_name_problem(push_remote):
        return None
    done = bounded.git(project, "remote", "get-url", push_remote)
    found = _GITHUB_REMOTE.match(done.stdout.strip()) if done.ok else None
    if not found:
        return None
    return (found.group("host") or found.group("scp"), found.group("path"))


def _repo_option(project: Path, push_remote: str) -> List[str]:
    """`--repo [HOST/]OWNER/REPO`, so gh opens the pull request where we pushed (not another remote's repository)."""
    target = github_repository(project, push_remote)
    if target is None:
        return []
    host, path = target
    return ["--repo", path if host == "github.com" else f"{host}/{path}"]


# ---------------------------------------------------------------- open


def open_pull_request(project: Path, state: Path, stream_id: str, branch: str, base: str,
                      push_remote: str = remote.DEFAULT_REMOTE, title: str = "", body: str = "",
                      timeout: float = GH_TIMEOUT) -> Opened:
    """Push `base` and `branch` to `push_remote`, then find or open the draft pull request from `branch`
    into `base`, and remember its URL. Safe to call again at any point: it never opens a second one."""
    project = Path(project)
    known = recorded(state, stream_id)
    if known is not None and (known.branch, known.base) == (branch, base):
        return Opened(stream_id, True, known.url)
    pushes = remote.push_branches(project, [base, branch], push_remote, timeout=remote.NETWORK_TIMEOUT)
    if pushes[0].status == "behind":  # pull requests merged there moved it on: catch up, never force
        caught_up = remote.fetch_branch(project, base, push_remote)
        if caught_up.ok:
            pushes[0] = remote.PushResult(base, push_remote, "up_to_date", caught_up.after)
    pushed = tuple(p.as_dict() for p in pushes)
    failed = [p for p in pushes if not p.ok]
    if failed:
        return Opened(stream_id, False, reason=failed[0].reason, pushes=pushed)
    repo = _repo_option(project, push_remote)
    found, why = _listed(project, branch, base, repo, timeout)
    created = False
    if why:
        return Opened(stream_id, False, reason=why, pushes=pushed)
    if not found:
        found, why = _create(project, branch, base, repo, title or f"Stream {stream_id}", body, timeout)
        if why:
            return Opened(stream_id, False, reason=why, pushes=pushed)
        created = True
    note = _remember(state, PullRequestRecord(stream_id, branch, base, found, time.time()))
    return Opened(stream_id, True, found, created, note, pushed)


def _listed(project: Path, branch: str, base: str, repo: List[str], timeout: float) -> Tuple[str, str]:
    """(URL of an open or merged pull request from `branch` into `base`, or ''; why gh could not say, or '')."""
    done = _gh(project, "pr", "list", "--head", branch, "--base", base, "--state", "all", "--json", "url,state",
               *repo, timeout=timeout)
    if not done.ok:
        return "", f"could not list the pull requests of {branch} with gh: {done.reason()}"
    try:
        found = json.loads(done.stdout or "[]")
    except ValueError:
        return "", f"gh pr list printed something that is not JSON: {printable(done.stdout[:120])}"
    for item in found if isinstance(found, list) else []:
        if isinstance(item, dict) and item.get("state") in ("OPEN", "MERGED") and isinstance(item.get("url"), str):
            return item["url"], ""  # a closed one is history: after a rejection the stream gets a new one
    return "", ""


def _create(project: Path, branch: str, base: str, repo: List[str], title: str, body: str,
            timeout: float) -> Tuple[str, str]:
    """(URL of the new draft pull request, ''), or ('', why not)."""
    title = " ".join(printable(title).split())[:TITLE_LIMIT] or branch
    body = body.replace("\0", "")[:BODY_LIMIT]
    done = _gh(project, "pr", "create", "--draft", "--base", base, "--head", branch, "--title", title,
               "--body", body, *repo, timeout=timeout)
    urls = _URL.findall(done.stdout)
    if done.ok and urls:
        return urls[-1], ""
    why = done.reason() if not done.ok else f"gh pr create printed no pull request URL: {printable(done.stdout[:120])}"
    return "", f"could not open a pull request from {branch} into {base}: {why}"


# ---------------------------------------------------------------- poll


def pull_request_state(project: Path, url: str, timeout: float = GH_TIMEOUT) -> PullRequestState:
    """Open, merged or closed, from one `gh pr view URL --json ...` (unknown, with the reason, when gh cannot say)."""
    done = _gh(project, "pr", "view", url, "--json", VIEW_FIELDS, timeout=timeout)
    if not done.ok:
        return PullRequestState(url, "unknown", reason=f"gh pr view failed: {done.reason()}")
    try:
        data = json.loads(done.stdout)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return PullRequestState(url, "unknown", reason=f"gh pr view printed no JSON object: {printable(done.stdout[:120])}")
    state = data.get("state")
    merge_commit = data.get("mergeCommit")
    oid = merge_commit.get("oid") if isinstance(merge_commit, dict) else None
    merged_at = data.get("mergedAt")
    if state == "MERGED":
        return PullRequestState(url, "merged", oid if isinstance(oid, str) else "",
                                merged_at if isinstance(merged_at, str) else "")
    if state == "CLOSED":
        return PullRequestState(url, "closed")
    if state == "OPEN":
        return PullRequestState(url, "open")
    return PullRequestState(url, "unknown", reason=f"gh pr view gave the state {printable(str(state))!r}")


# ---------------------------------------------------------------- records


def pull_requests_folder(state: Path) -> Path:
    return Path(state) / PULL_REQUESTS


def recorded(state: Path, stream_id: str) -> Optional[PullRequestRecord]:
    """The pull request remembered for a stream, if any (a damaged record reads as none: gh is asked)."""
    data = records.load_record(pull_requests_folder(state), stream_id)
    if data is None:
        return None
    branch, base, url, opened = (data.get(k) for k in ("branch", "base", "url", "opened_at"))
    if not all(isinstance(t, str) and t for t in (branch, base, url)):
        return None
    return PullRequestRecord(stream_id, str(branch), str(base), str(url),
                             float(opened) if isinstance(opened, (int, float)) else 0.0)


def forget(state: Path, stream_id: str) -> None:
    """Drop a stream's pull request record: once merged, or closed (the next round opens a new one)."""
    records.remove_record(pull_requests_folder(state), stream_id)


def _remember(state: Path, record: PullRequestRecord) -> str:
    try:
        records.save_record(pull_requests_folder(state), record.stream_id, record.as_dict())
    except OSError as exc:
        return f"could not record the pull request ({exc.strerror or exc}); gh is asked again next time"
    return ""


def pull_request_text(stream_id: str, stream_name: str, base: str, summary: Optional[str] = None) -> Tuple[str, str]:
    """A title and body for a stream's pull request (the worker's summary quoted, when there is one)."""
    name = printable(stream_name or "", 120)
    title = f"Stream {printable(stream_id, 60)}" + (f": {name}" if name and name != stream_id else "")
    body = (f"The work of stream `{printable(stream_id, 200)}`, from an orchestrate-kit run.\n\n"
            f"Merging this pull request into `{base}` counts as merging the stream: the orchestrator then "
            "fetches the branch and starts the streams that depend on it. Closing it without merging parks "
            "the stream (see `orchestrate.py status`).\n")
    if summary:
        quoted = "\n".join("> " + line for line in summary.strip().splitlines())
        body += f"\nThe worker's summary:\n\n{quoted}\n"
    return title, body
