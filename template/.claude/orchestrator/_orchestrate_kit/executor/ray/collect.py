"""An ended attempt's work brought back from the project's git remote, so it merges as a local stream's does.

The remote worker pushed the attempt's commits to its own ref (`refs/orchestrate/<run>/<name>/
<attempt>-<token>`) and its task updates to a progress ref beside it (remote/refs.py). Here:

1. The remote's refs of that stream are listed and only the live attempt's is taken (`live_ref`):
   its attempt number and token are the ones this job was given. An earlier attempt fenced off
   (its node lost, its worker pushing late) is never fetched, so it can never reach a merge.
2. That commit is fetched and the local `refs/heads/stream/<name>` moved to it by a fast-forward
   only (git/remote.fast_forward: in the stream's worktree when it has one, so its files follow),
   so the merge pipeline merges the stream exactly as it merges a local worker's branch.
3. The progress ref's update lines are replayed into the applier: a line the log tail already
   applied is a duplicate and changes nothing; one the tail missed lands now.

Nothing is pushed, forced or deleted on the remote. Each git command has a deadline (git/bounded.py)
and runs in the executor's own thread, never in the supervisor's loop. Standard library only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from ...git import bounded
from ...git.remote import NETWORK_TIMEOUT, fast_forward
from ...git.workspaces import stream_branch
from ...remote import refs
from ...trackers.apply import Applier
from .records import JobRecord

LANDING = "refs/orchestrate-kit/ray/"
_HEX = re.compile(r"[0-9a-f]{40,64}")  # where a fetched ref lands before the stream branch moves to it


class CollectError(Exception):
    """The remote could not be asked or read; the message is one line (the fetch is tried again)."""


@dataclass(frozen=True)
class Collected:
    commit: str = ""  # the live attempt's commit ('' when it pushed nothing)
    replayed: int = 0  # update lines the progress ref carried
    notes: tuple = ()  # what a person should know (the stream branch could not move, ...)


def bring_back(project: Path, remote: str, record: JobRecord, applier: Optional[Applier],
               timeout: float = NETWORK_TIMEOUT, result: Optional[Mapping[str, Any]] = None) -> Collected:
    """Fetch the live attempt's ref into the local stream branch and replay its progress ref.

    `result`: the remote worker's last line, when the job's log showed it. When it says the attempt
    pushed, its refs are fetched by name at once (one round trip); the remote's refs are listed
    first only without it, or when that fetch fails (then the listing says what is there). Either
    way only the refs named by this attempt's number and token are ever fetched."""
    attempt_ref = refs.attempt_ref(record.run, record.name, record.attempt, record.token)
    progress_ref = refs.progress_ref(record.run, record.name, record.attempt, record.token)
    landed: Optional[Dict[str, str]] = None
    if result is not None and result.get("pushed"):
        named = [(attempt_ref, "")] + ([(progress_ref, "")] if result.get("updates") else [])
        try:
            landed = _fetch(project, remote, record.name, named, timeout)
        except CollectError:
            landed = None  # a line an agent printed, or a ref not there after all: list the remote's
    if landed is None:
        wanted = _listed(project, remote, record, progress_ref, timeout)
        if not wanted:
            return Collected()
        landed = _fetch(project, remote, record.name, wanted, timeout)
    commit = landed[attempt_ref]
    notes = []
    why = fast_forward(project, stream_branch(record.stream_id), commit)
    if why:
        notes.append(f"its work (commit {commit[:12]}, on {attempt_ref} on {remote}) did not move "
                     f"{stream_branch(record.stream_id)}: {why}")
    replayed = 0
    if progress_ref in landed and applier is not None:
        shown = bounded.git(project, "show", f"{landed[progress_ref]}:{refs.PROGRESS_FILE}")
        if shown.ok:
            replayed = len(applier.feed_text(shown.stdout))
        else:
            notes.append(f"its progress ref could not be read: {shown.reason()}")
    _drop_landing(project, record.name, len(landed))
    return Collected(commit, replayed, tuple(notes))


def _listed(project: Path, remote: str, record: JobRecord, progress_ref: str, timeout: float) -> List[tuple]:
    """(ref, commit) of the live attempt's ref and its progress ref as the remote lists them; [] when
    the attempt pushed nothing. Every other attempt's ref is fenced off."""
    listed = bounded.git(project, "ls-remote", remote, f"{refs.ATTEMPT_ROOT}/{record.run}/{record.name}/*",
                         progress_ref, timeout=timeout)
    if not listed.ok:
        raise CollectError(f"git ls-remote {remote} failed: {listed.reason()}")
    found, progress = [], ""
    for line in listed.stdout.splitlines():
        commit, _, ref = line.partition("\t")
        parsed = refs.parse_attempt_ref(ref.strip(), record.run, record.name)
        if parsed:
            found.append(refs.AttemptRef(ref.strip(), commit.strip(), parsed[0], parsed[1]))
        elif ref.strip() == progress_ref:
            progress = commit.strip()
    live = refs.live_ref(found, record.attempt, record.token)
    if live is None:
        return []
    return [(live.ref, live.commit)] + ([(progress_ref, progress)] if progress else [])


def _fetch(project: Path, remote: str, name: str, wanted: List[tuple], timeout: float) -> Dict[str, str]:
    """Fetch each (ref, commit) into a landing ref of ours; {ref: commit fetched}. A commit of '' takes
    whatever the remote's ref holds. Never forced: a landing ref left by an interrupted fetch is
    deleted first, so the fetch only creates refs."""
    _drop_landing(project, name, len(wanted))
    specs = [f"{ref}:{LANDING}{name}/{i}" for i, (ref, _commit) in enumerate(wanted)]
    done = bounded.git(project, "-c", "core.hooksPath=/dev/null", "fetch", "-q", "--no-tags",
                       "--no-recurse-submodules", remote, *specs, timeout=timeout)
    if not done.ok:
        raise CollectError(f"git fetch {remote} failed: {done.reason()}")
    got = bounded.git(project, "rev-parse", *(f"{LANDING}{name}/{i}^{{commit}}" for i in range(len(wanted))))
    commits = got.stdout.split() if got.ok else []
    if len(commits) != len(wanted) or not all(_HEX.fullmatch(c) for c in commits):
        raise CollectError(f"fetching {', '.join(ref for ref, _ in wanted)} from {remote} left no commit")
    landed = {}
    for (ref, commit), fetched in zip(wanted, commits):
        if commit and fetched != commit:
            raise CollectError(f"fetching {ref} from {remote} gave {fetched[:12]}, not {commit[:12]}")
        landed[ref] = fetched
    return landed


def _drop_landing(project: Path, name: str, count: int) -> None:
    """Our landing refs of this stream gone, in one command (a ref that is not there is no error)."""
    bounded.git(project, "update-ref", "--stdin", stdin="".join(f"delete {LANDING}{name}/{i}\n" for i in range(count)))
