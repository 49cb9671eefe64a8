"""The review gate: what a stream would merge, and an approval bound to the very commit that was shown.

With `merge_gate = review` a stream whose tracker says complete waits in `awaiting_review`
instead of merging. Then:

    review(...)    what a merge would bring: the diff stat and diff of the stream branch
                   against the integration branch (from their merge base), the commit it
                   shows, how many commits, the worker's final summary; records that commit
    approve(...)   refused unless the stream branch's tip is still exactly the reviewed
                   commit (the refusal names the new one: review again); returns the commit
                   to merge (`workspaces.merge_stream(..., commit=...)`) and records the approval
    reject(...)    records the reason and the rejected commit; `review_feedback_text` puts
                   them into the agent's next prompt
    clear(...)     once the stream is merged or handed back
    take_to_gate   a finished stream's leftovers committed, its commit and diff stat (a step's)

One record per stream (`state/reviews/<stream>.json`, replaced atomically) holds the commit
shown and the decision, so a review, an approval or a rejection made while no orchestrator
runs is honoured by the next `start`, and one made before a restart survives it. Every
function takes plain arguments and returns plain data (or raises GateError with one line),
so it can run as a short child process with a deadline. Standard library only, Python 3.9+.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

from . import bounded, records
from .workspaces import RunInfo, commit_leftovers, stream_branch, worktree_path

REVIEWS = "reviews"  # the records' folder inside the state folder
DIFF_LIMIT = 2 * 1024 * 1024  # bytes of diff a review shows; past that it says how to see the rest
SUMMARY_LIMIT = 8000  # characters of the worker's final summary kept
SUMMARY_SCAN = 8 * 1024 * 1024  # bytes of log read back, at most, to find the last result event
REASON_LIMIT = 4000  # characters of a rejection's reason (it goes into a prompt, one argv item)
UNCOMMITTED_LISTED = 20
_BLOCK = 64 * 1024


class GateError(Exception):
    """A review, approval or rejection that cannot be done, said in one line the user can act on."""


@dataclass(frozen=True)
class ReviewRecord:
    """What was shown for a stream and what was decided: `decision` is '', 'approved' or 'rejected'."""

    stream_id: str
    branch: str
    commit: str
    integration_branch: str = ""
    reviewed_at: float = 0.0
    decision: str = ""
    reason: str = ""
    decided_at: float = 0.0

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Optional["ReviewRecord"]:
        """A record read back, or None when it is not one (hand-edited, or of an older shape)."""
        texts = {k: data.get(k) for k in ("stream_id", "branch", "commit", "integration_branch", "decision", "reason")}
        times = {k: data.get(k) for k in ("reviewed_at", "decided_at")}
        if not all(isinstance(v, str) for v in texts.values()) or not texts["commit"]:
            return None
        if texts["decision"] not in ("", "approved", "rejected"):
            return None
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in times.values()):
            return None
        return cls(**texts, **{k: float(v) for k, v in times.items()})  # type: ignore[arg-type]


@dataclass(frozen=True)
class Review:
    """What merging the stream would bring into the integration branch, as `review` shows it."""

    stream_id: str
    branch: str
    integration_branch: str
    commit: str  # the stream branch's tip: what `approve` will merge
    base: str  # the merge base with the integration branch
    commits: int  # commits on the stream branch that the integration branch lacks
    stat: str
    diff: str
    diff_truncated: bool
    summary: Optional[str]  # the worker's final summary (its last stream-json result), when there is one
    uncommitted: Tuple[str, ...] = ()  # files changed in its worktree since: not part of this review

    def as_dict(self) -> Dict[str, Any]:
        return dict(asdict(self), uncommitted=list(self.uncommitted))


def reviews_folder(state: Path) -> Path:
    return Path(state) / REVIEWS


# ---------------------------------------------------------------- review, approve, reject


def review(project: Path, state: Path, run: RunInfo, stream_id: str, log: Optional[Path] = None,
           diff_limit: int = DIFF_LIMIT) -> Review:
    """Show what merging the stream would bring, and record the commit shown (any earlier decision ends).

    `state` is the layout's state folder; `log` the stream's log (for the worker's summary).
    """
    project = Path(project)
    integration = _integration_branch(project, run)
    branch = stream_branch(stream_id)
    commit = _tip(project, stream_id)
    base_ran = bounded.git(project, "merge-base", "refs/heads/" + integration, commit)
    if not base_ran.ok:
        raise GateError(f"{branch} and {integration} have no common history: {base_ran.reason()}")
    base = base_ran.stdout.strip()
    count = bounded.git(project, "rev-list", "--count", f"{base}..{commit}").stdout.strip()
    diff_options = ("-c", "core.quotePath=false", "diff", "--no-color", "--no-ext-diff", "--find-renames")
    stat = bounded.git(project, *diff_options, "--stat=120", base, commit)
    diff = bounded.git(project, *diff_options, base, commit, limit=diff_limit)
    if not stat.ok or not diff.ok:
        raise GateError(f"cannot compare {branch} with {integration}: {(diff if stat.ok else stat).reason()}")
    truncated = diff.stdout_size > diff_limit
    shown = diff.stdout[:diff.stdout.rfind("\n") + 1] if truncated else diff.stdout
    found = Review(stream_id, branch, integration, commit, base, int(count) if count.isdigit() else 0,
                   stat.stdout, shown, truncated, last_result_text(log) if log else None,
                   _uncommitted(project, stream_id))
    _save(state, ReviewRecord(stream_id, branch, commit, integration, time.time()))
    return found


def take_to_gate(project: Path, run: RunInfo, stream_id: str, stat: bool = False) -> Dict[str, Any]:
    """The git of a finished stream's way to its gate (the `gate_stream` step, git/steps.py): what its
    worker left committed, then its branch's commit ('' : it never had a branch) and, with `stat`
    (review), its diff stat. Raises WorkspaceError when its work cannot be committed."""
    committed = commit_leftovers(project, stream_id)
    commit = bounded.rev(Path(project), "refs/heads/" + stream_branch(stream_id))
    try:
        shown = shortstat(project, run, stream_id) if stat and commit else ""
    except GateError:
        shown = ""
    return {"committed": committed, "commit": commit, "stat": shown}


def shortstat(project: Path, run: RunInfo, stream_id: str) -> str:
    """One line for `status` and the dashboard: "3 files changed, 20 insertions(+)" ('' when none)."""
    project = Path(project)
    integration = _integration_branch(project, run)
    base = bounded.git(project, "merge-base", "refs/heads/" + integration, _tip(project, stream_id))
    done = bounded.git(project, "diff", "--shortstat", base.stdout.strip(), _tip(project, stream_id))
    return done.stdout.strip() if base.ok and done.ok else ""


def approve(project: Path, state: Path, stream_id: str) -> str:
    """The commit to merge, if the stream branch's tip is still the reviewed commit; records the approval."""
    reviewed = read_record(state, stream_id)
    if reviewed is None:
        raise GateError(f"stream {stream_id!r} has not been reviewed: run `orchestrate.py review STREAM` first; "
                        "approve merges exactly the commit the review showed")
    tip = _tip(Path(project), stream_id)
    if tip != reviewed.commit:
        raise GateError(f"{reviewed.branch} moved since the review: the review showed {reviewed.commit[:12]}, "
                        f"the branch is at {tip[:12]} now. Review again (orchestrate.py review STREAM)")
    _save(state, _decided(reviewed, "approved", ""))
    return reviewed.commit


def reject(project: Path, state: Path, stream_id: str, reason: str) -> ReviewRecord:
    """Record why the stream is not merged, for its agent's next prompt; the record is returned.

    The rejected commit is the one the review showed (or the branch's tip, without a review).
    """
    why = " ".join(reason.replace("\0", "").split())
    if not why:
        raise GateError("say why with --reason TEXT: the reason goes into the agent's next prompt")
    if len(why) > REASON_LIMIT:
        why = why[:REASON_LIMIT - 1] + "…"
    reviewed = read_record(state, stream_id)
    if reviewed is None:
        reviewed = ReviewRecord(stream_id, stream_branch(stream_id), _tip(Path(project), stream_id))
    decided = _decided(reviewed, "rejected", why)
    _save(state, decided)
    return decided


def read_record(state: Path, stream_id: str) -> Optional[ReviewRecord]:
    """The stream's review record, or None (none, or one that cannot be read: as if never reviewed)."""
    data = records.load_record(reviews_folder(state), stream_id)
    return ReviewRecord.from_dict(data) if data is not None else None


def approved_commit(state: Path, stream_id: str) -> Optional[str]:
    """The commit an approval (given while no orchestrator ran, or before a restart) says to merge."""
    found = read_record(state, stream_id)
    return found.commit if found is not None and found.decision == "approved" else None


def pending_rejection(state: Path, stream_id: str) -> Optional[ReviewRecord]:
    """A rejection not yet handed back to the stream's agent."""
    found = read_record(state, stream_id)
    return found if found is not None and found.decision == "rejected" else None


def clear(state: Path, stream_id: str) -> None:
    """Forget the stream's review: call once it is merged, or once its rejection reached its agent."""
    records.remove_record(reviews_folder(state), stream_id)


def review_feedback_text(reason: str, commit: str) -> str:
    """The prompt's part about a rejection (worker_spec adds it to the prompt of the next attempt)."""
    return ("A reviewer looked at your stream's work at commit "
            f"{commit[:12]} and did not merge it. Their reason:\n{reason.strip()}\n"
            "Address it in your worktree and commit on your branch, then exit. Your work is reviewed "
            "again before it is merged.\n")


# ---------------------------------------------------------------- the worker's summary


def last_result_text(log: Path, scan: int = SUMMARY_SCAN, limit: int = SUMMARY_LIMIT) -> Optional[str]:
    """The `result` text of the last stream-json `result` event in a worker's log, or None.

    The log is read backwards in blocks, at most `scan` bytes of it, so a long log costs the
    same as a short one. Lines that are not JSON (banners, a plain-text worker, a merge
    check's output, half a line) are skipped.
    """
    try:
        handle = open(log, "rb")
    except OSError:
        return None
    with handle:
        position = handle.seek(0, os.SEEK_END)
        floor = max(0, position - scan)
        head = b""  # the start of the earliest line read: its beginning is in the next block back
        while position > floor:
            size = min(_BLOCK, position - floor)
            position -= size
            handle.seek(position)
            pieces = (handle.read(size) + head).split(b"\n")
            head = pieces[0]
            for line in reversed(pieces[1:]):
                text = _result_text(line)
                if text is not None:
                    return _bounded(text, limit)
        text = _result_text(head) if position == 0 else None  # the file's first line, read whole
        return None if text is None else _bounded(text, limit)


def _result_text(line: bytes) -> Optional[str]:
    line = line.strip()
    if not line.startswith(b"{") or b'"result"' not in line:
        return None
    try:
        event = json.loads(line.decode("utf-8", "replace"))
    except ValueError:
        return None
    if isinstance(event, dict) and event.get("type") == "result" and isinstance(event.get("result"), str):
        return event["result"]
    return None


def _bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


# ---------------------------------------------------------------- helpers


def _integration_branch(project: Path, run: RunInfo) -> str:
    if run.isolation != "worktree" or not run.integration_branch:
        raise GateError("reviews need a run with worktree isolation, and this one has none "
                        "(start it with --isolation worktree)")
    if not bounded.rev(project, "refs/heads/" + run.integration_branch):
        raise GateError(f"this run's integration branch {run.integration_branch} no longer exists")
    return run.integration_branch


def _tip(project: Path, stream_id: str) -> str:
    branch = stream_branch(stream_id)
    tip = bounded.rev(project, "refs/heads/" + branch)
    if not tip:
        raise GateError(f"stream {stream_id!r} has no branch {branch}: there is no work of it to review")
    return tip


def _uncommitted(project: Path, stream_id: str) -> Tuple[str, ...]:
    folder = worktree_path(project, stream_id)
    if not folder.is_dir():
        return ()
    done = bounded.git(folder, "status", "--porcelain", "-z", "--untracked-files=all")
    names, entries = [], iter(done.stdout.split("\0") if done.ok else [])
    for entry in entries:
        if len(entry) > 3:
            names.append(entry[3:])
            if entry[0] in "RC":
                next(entries, None)  # a rename's or copy's source path
    return tuple(names[:UNCOMMITTED_LISTED])


def _decided(reviewed: ReviewRecord, decision: str, reason: str) -> ReviewRecord:
    return ReviewRecord(reviewed.stream_id, reviewed.branch, reviewed.commit, reviewed.integration_branch,
                        reviewed.reviewed_at, decision, reason, time.time())


def _save(state: Path, record: ReviewRecord) -> None:
    try:
        records.save_record(reviews_folder(state), record.stream_id, record.as_dict())
    except OSError as exc:
        raise GateError(f"cannot save the review record in {reviews_folder(state)}: {exc.strerror or exc}") from None
