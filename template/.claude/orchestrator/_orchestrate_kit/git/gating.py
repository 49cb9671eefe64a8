"""The merge gate in the loop: a finished stream waits for a person (review) or its pull request (pr).

The Merger (merging.py) hands these the scheduler's gate steps; every state change goes
through lifecycle.transition (the `apply` the supervisor gives):

    gate(stream, ...)    a `Gate` action: a step commits what its worker left (the loop goes on), then
                         review: `AwaitReview` with the stream branch's commit and its diff stat
                           (`awaiting_review`; on_event `needs_review`)
                         pr: an observed step (stepper.py) pushes its branch and the integration
                           branch to push_remote and opens its draft pull request with gh; its
                           answer is `PullRequestOpened` (`awaiting_pr`; on_event `pull_request`)
    poll_pull_requests   a `PollPullRequests` action: one step asks gh about every stream's pull
                         request and, once one is merged, fetches the integration branch back
    after_merge(stream)  push = integration | all: push the integration branch (and the stream's
                         branch) to push_remote, never forced, as a step; merges meanwhile are
                         pushed by the next one; a refusal is a warning with the reason
    poll(rows, ...)      each turn: the steps that ended (merged -> `Merged`, closed ->
                         `PullRequestClosed`, parked); and a decision recorded for a stream
                         awaiting review (git/gates.py's record, written by `approve` / `reject`,
                         with or without a running orchestrator) becomes `Approved` (it merges
                         exactly the reviewed commit) or `Rejected` (back to its agent, the reason
                         in its next prompt)
    facts()              for decide: streams whose step runs (the merger's too: worktrees, merges),
                         whether a poll runs and when the last began, the earliest step deadline
    ended_steps(...)     each turn: the steps that ended; the merger's own (PREP, MERGE, UNDO keys)
                         are handed back to it
    stop(until)          at shutdown: every step ended, a merge's only at `until`
    refusal(...)         for `start`: why this gate cannot work here (gh, its login, the remote)

The review record is read again each turn for the streams awaiting review (one small file each,
only while some do), so a request only needs to wake the loop and nothing is missed between two
turns. A record is cleared when its stream next goes to review (a stale decision never judges
new work) and once it is merged, never before its transition is saved: a kill in between
leaves the decision to be read again. A killed orchestrator's pull request is found again
(pull_requests.py never opens a second one). Standard library only, Python 3.9+.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, ContextManager, Dict, List, Mapping, Optional, Tuple

from . import gates, pull_requests, remote, workspaces
from ..lifecycle import (Approved, AwaitReview, Event, Life, MergeConflict, Merged, PullRequestClosed, PullRequestOpened,
                         Rejected, StreamState)
from ..names import printable
from ..settings import Settings
from .stepper import Stepper
from .workspaces import RunInfo

Apply = Callable[[str, Event, float], Life]
Notify = Callable[..., None]  # notify(event, needs_you, **details): the on_event hook (notify.Notifier.fire)
ORCHESTRATE = "orchestrate.py"
POLL = "\0poll"  # the pull request poll's step key (no stream id is this)
PUSH = "\0push"  # push = integration | all: the push after merges
PREP = "\0prepare:"  # + a stream id: its worktree being made (merging.Merger.prepare)
MERGE = "\0merge:"  # + a stream id: its merge (merging.Merger.merge)
UNDO = "\0undo:"  # + a stream id: its merge undone after its check failed (merging.Merger._check_failed)
GATE = "\0gate:"  # + a stream id: its leftovers committed on its way to its gate (Gating.gate)
OWN = (PREP, MERGE, UNDO)  # the merger's steps: their results go back to it (ended_steps)
SPARED = (MERGE, UNDO, GATE)  # steps a stop lets finish within its grace (merging.Merger.stop says why)
OPEN_TIMEOUT = 2 * remote.NETWORK_TIMEOUT + 3 * pull_requests.GH_TIMEOUT  # two pushes, a list and a create
FETCH_TIMEOUT = remote.NETWORK_TIMEOUT
GATE_TIMEOUT = 3600.0  # seconds committing a finished stream's leftovers may take (merging.MERGE_TIMEOUT's reason)


def _stream_of(key: str) -> str:
    kind = next((k for k in OWN + (GATE,) if key.startswith(k)), "")
    return key[len(kind):]


def refusal(root: Path, settings: Settings, isolation: str) -> Optional[str]:
    """Why merge_gate (or push) cannot work in this project, with the fix; None when it can."""
    if settings.merge_gate in ("review", "pr") and isolation != "worktree":
        return (f"merge_gate is {settings.merge_gate}, which needs worktree isolation (each stream on a branch "
                "of its own), and this run has none; use --isolation worktree, or set merge_gate to auto")
    if settings.merge_gate == "pr" or settings.push != "none":
        why = "merge_gate is pr" if settings.merge_gate == "pr" else f"push is {settings.push}"
        problem = remote.check_remote(root, settings.push_remote)
        if problem:
            return f"{why}, which pushes to the remote {settings.push_remote!r}: {problem}"
    if settings.merge_gate == "pr":
        return pull_requests.gh_problem(root, settings.push_remote)
    return None


class Gating:
    """The merge gate's steps for one run's integration branch."""

    def __init__(self, root: Path, state: Path, say: Callable[[str], None], notify: Notify,
                 settings: Settings = Settings(), log_for: Optional[Callable[[str], Path]] = None,
                 clock: Callable[[], float] = time.time):
        self.root, self.state, self.say, self.notify = Path(root), Path(state), say, notify
        self.settings, self.log_for = settings, log_for
        self.steps = Stepper(clock)
        self.commits: Dict[str, str] = {}  # a stream whose pull request is being opened -> its commit
        self.polled_at: Optional[float] = None
        self.polled: Dict[str, str] = {}  # the running poll's pull requests: URL -> stream
        self.unknown: Dict[str, str] = {}  # URL -> the last reason gh could not say (said once)
        self.to_push: List[str] = []  # branches merged since the running push began, pushed next
        self.gating: Dict[str, RunInfo] = {}  # a stream whose gate step runs -> its run
        self.stopping = False  # the run is stopping: a stream whose gate step ends opens no pull request

    def gate(self, sid: str, run: RunInfo, apply: Apply, now: float) -> None:
        """Take a finished stream (in `merging`, no approval yet) to its gate: a step commits its work first
        (gates.take_to_gate) while the loop goes on, and `_gated` goes on with its answer."""
        gates.clear(self.state, sid)  # a decision about earlier work does not judge this work
        args = {"project": str(self.root), "run": run.as_dict(), "stream_id": sid,
                "stat": self.settings.merge_gate == "review"}
        try:
            self.steps.start(GATE + sid, "gate_stream", args, GATE_TIMEOUT)
        except OSError as exc:
            self._gated(sid, run, {"error": str(exc)}, apply, now)
            return
        self.gating[sid] = run

    def _gated(self, sid: str, run: RunInfo, result: Dict[str, Any], apply: Apply, now: float) -> None:
        if result.get("stopped"):
            return  # ended at the stop grace: it stays merging and goes to its gate at the next start
        if "error" in result:
            exc = result["error"]
            apply(sid, MergeConflict((), f"its work could not be taken to its gate: {exc}; fix it in its worktree "
                                         f"and commit, then run `{ORCHESTRATE} start {printable(sid)}`"), now)
            self.say(f"{printable(sid)}: its work could not be taken to its gate: {printable(str(exc), 500)}")
            return
        commit = str(result.get("commit") or "")
        if not commit:  # it never had a branch (complete before the run began): nothing of ours to gate
            apply(sid, Merged(), now)
            return
        left = "committed what its worker left uncommitted; " if result.get("committed") else ""
        if self.settings.merge_gate == "pr":
            if not self.stopping:  # else it stays merging: its pull request is opened at the next start
                self._open(sid, run, commit, left, apply, now)
            return
        stat = str(result.get("stat") or "")
        apply(sid, AwaitReview(commit, stat), now)
        self.say(f"{printable(sid)}: {left}awaiting review of {commit[:12]} ({stat or 'no changes'}): "
                 f"`{ORCHESTRATE} review {printable(sid)}`, then approve or reject")
        self.notify("needs_review", True, stream_id=sid, commit=commit, diff_stat=stat)

    def _open(self, sid: str, run: RunInfo, commit: str, left: str, apply: Apply, now: float) -> None:
        base = run.integration_branch or ""
        summary = gates.last_result_text(self.log_for(sid)) if self.log_for else None
        title, body = pull_requests.pull_request_text(sid, sid, base, summary)
        args = {"project": str(self.root), "state": str(self.state), "stream_id": sid,
                "branch": workspaces.stream_branch(sid), "base": base, "remote": self.settings.push_remote,
                "title": title, "body": body}
        try:
            self.steps.start(sid, "open_pull_request", args, OPEN_TIMEOUT)
        except OSError as exc:
            self._park(sid, f"its pull request could not be opened: {exc}", apply, now)
            return
        self.commits[sid] = commit
        self.say(f"{printable(sid)}: {left}pushing {workspaces.stream_branch(sid)} to {self.settings.push_remote} "
                 "and opening its draft pull request")

    def poll_pull_requests(self, rows: Mapping[str, Life], run: RunInfo, now: float) -> None:
        """Ask about every pull request a stream awaits (one step), fetching the integration branch if one merged."""
        urls = {life.pull_request: sid for sid, life in rows.items()
                if life.state is StreamState.AWAITING_PR and life.pull_request}
        self.polled_at = now
        if not urls or self.steps.running(POLL):
            return
        args = {"project": str(self.root), "urls": sorted(urls), "branch": run.integration_branch or "",
                "remote": self.settings.push_remote}
        try:
            self.steps.start(POLL, "poll_pull_requests", args, pull_requests.GH_TIMEOUT * len(urls) + FETCH_TIMEOUT)
        except OSError as exc:
            self.say(f"warning: the pull requests could not be asked about: {exc}")
            return
        self.polled = urls

    def after_merge(self, sid: str, run: RunInfo) -> None:
        """push = integration | all: the branches a merge moved go to push_remote (one push at a time)."""
        if self.settings.push == "none" or not run.integration_branch:
            return
        wanted = [run.integration_branch] + ([workspaces.stream_branch(sid)] if self.settings.push == "all" else [])
        self.to_push += [b for b in wanted if b not in self.to_push]
        self._push_next()

    def _push_next(self) -> None:
        if not self.to_push or self.steps.running(PUSH):
            return
        branches, self.to_push = self.to_push, []
        args = {"project": str(self.root), "branches": branches, "remote": self.settings.push_remote}
        try:
            self.steps.start(PUSH, "push", args, remote.NETWORK_TIMEOUT + 10.0)
        except OSError as exc:
            self.say(f"warning: could not push {', '.join(branches)} to {self.settings.push_remote}: {exc}")

    def _pushed(self, result: Dict[str, Any]) -> None:
        if result.get("stopped"):
            self.say("note: the push was ended as the run stopped; the next merge pushes again "
                     f"(or: git push {self.settings.push_remote} BRANCH)")
        elif "error" in result:
            self.say(f"warning: pushing to {self.settings.push_remote} failed: {printable(str(result['error']), 300)}")
        for push in result.get("pushes") or []:
            if push.get("status") == "pushed":
                self.say(f"pushed {printable(str(push.get('branch')))} to {self.settings.push_remote} "
                         f"({str(push.get('commit', ''))[:12]})")
            elif not push.get("ok"):
                self.say(f"warning: {printable(str(push.get('branch')))} was not pushed to "
                         f"{self.settings.push_remote}: {printable(str(push.get('reason', '')), 400)}; nothing was "
                         "changed there or here, and the run goes on")
        if not result.get("stopped"):
            self._push_next()

    def facts(self) -> Dict[str, Any]:
        deadline = self.steps.next_deadline()
        return {"stepping": frozenset(_stream_of(k) for k in self.steps.keys() if k != POLL),
                "polling": self.steps.running(POLL), "polled_at": self.polled_at,
                "step_deadline": deadline if deadline != float("inf") else None}

    def stop(self, until: float = 0.0) -> None:
        """End the steps; a merge may finish until `until` (merging.Merger.stop says why)."""
        self.stopping = True
        self.steps.stop(until, lambda key: key.startswith(SPARED))

    def ended_steps(self, rows: Mapping[str, Life], apply: Apply, now: float,
                    guard: Callable[[str, str, float], ContextManager[None]] = lambda *_: nullcontext()
                    ) -> Tuple[List[str], List[Tuple[str, str, Dict[str, Any]]]]:
        """Settle the steps that ended: the streams whose pull request merged, and the merger's own steps
        that ended (worktrees, merges, undoing one) as (kind: PREP, MERGE or UNDO, stream, result) for it to
        carry on."""
        merged: List[str] = []
        own: List[Tuple[str, str, Dict[str, Any]]] = []
        for key, result in self.steps.finished():
            kind = next((k for k in OWN if key.startswith(k)), None)
            if kind is not None:
                own.append((kind, key[len(kind):], result))
            elif key.startswith(GATE):
                sid = key[len(GATE):]
                run = self.gating.pop(sid, None)
                life = rows.get(sid)
                if run is not None and life is not None and life.state is StreamState.MERGING:
                    with guard(sid, "merging it", now):  # as the Gate action that started it
                        self._gated(sid, run, result, apply, now)
            elif key == POLL:
                merged += self._polled(result, rows, apply, now)
            elif key == PUSH:
                self._pushed(result)
            else:
                self._opened(key, result, rows, apply, now)
        return merged, own

    def _opened(self, sid: str, result: Dict[str, Any], rows: Mapping[str, Life], apply: Apply, now: float) -> None:
        commit = self.commits.pop(sid, "")
        life = rows.get(sid)
        if life is None or life.state is not StreamState.MERGING:
            return
        if result.get("stopped"):
            return  # the run is stopping: it stays merging, and its pull request is opened (or found) next start
        if not result.get("ok"):
            why = result.get("reason") or result.get("error") or "no reason given"
            self._park(sid, f"its pull request could not be opened: {why}", apply, now)
            return
        url = str(result.get("url", ""))
        apply(sid, PullRequestOpened(url, commit), now)
        verb = "opened" if result.get("created") else "found"
        self.say(f"{printable(sid)}: draft pull request {verb}: {printable(url, 300)}; it merges once that "
                 "pull request is merged")
        self.notify("pull_request", True, stream_id=sid, url=url, commit=commit)

    def _polled(self, result: Dict[str, Any], rows: Mapping[str, Life], apply: Apply, now: float) -> List[str]:
        urls, self.polled = self.polled, {}
        if "error" in result:
            if not result.get("stopped"):
                self.say(f"warning: asking about the pull requests failed: {printable(str(result['error']), 300)}")
            return []
        fetched = result.get("fetch") or {}
        merged = []
        for seen in result.get("states") or []:
            url, state = str(seen.get("url", "")), seen.get("state")
            sid = urls.get(url)
            life = rows.get(sid) if sid is not None else None
            if sid is None or life is None or life.state is not StreamState.AWAITING_PR:
                continue
            if state == "merged" and fetched.get("ok"):
                merged.append(sid)
            elif state == "merged":
                self.say(f"warning: {printable(sid)}'s pull request is merged, but fetching "
                         f"{fetched.get('branch', 'the integration branch')} failed: "
                         f"{printable(str(fetched.get('reason', '')), 300)}; tried again at the next poll")
            elif state == "closed":
                pull_requests.forget(self.state, sid)
                apply(sid, PullRequestClosed(url), now)
                self.say(f"{printable(sid)}: its pull request {printable(url, 300)} was closed without merging; "
                         f"`{ORCHESTRATE} start {printable(sid)}` hands it back to its agent")
                self.notify("pr_closed", True, stream_id=sid, url=url)
            elif state == "unknown" and self.unknown.get(url) != seen.get("reason"):
                self.unknown[url] = str(seen.get("reason", ""))
                self.say(f"warning: {printable(sid)}'s pull request: {printable(self.unknown[url], 300)}")
        return merged

    def _park(self, sid: str, why: str, apply: Apply, now: float) -> None:
        reason = f"{why}; fix it, then run `{ORCHESTRATE} start {printable(sid)}`"
        apply(sid, MergeConflict((), reason), now)
        self.say(f"{printable(sid)}: {printable(reason, 600)}")

    def poll(self, rows: Mapping[str, Life], apply: Apply, now: float) -> None:
        """Act on the decisions recorded for streams awaiting review."""
        for sid, life in list(rows.items()):
            if life.state is not StreamState.AWAITING_REVIEW:
                continue
            record = gates.read_record(self.state, sid)
            if record is None or not record.decision:
                continue
            if record.decision == "approved":
                apply(sid, Approved(record.commit), now)
                self.say(f"{printable(sid)}: approved at {record.commit[:12]}; merging exactly that commit")
            else:
                apply(sid, Rejected(gates.review_feedback_text(record.reason, record.commit)), now)
                self.say(f"{printable(sid)}: rejected in review ({printable(record.reason, 300)}); "
                         "handing it back to its agent")

    def merged(self, sid: str) -> None:
        gates.clear(self.state, sid)
        pull_requests.forget(self.state, sid)
