"""Worktree isolation in the supervisor's loop: where a worker works, and merging its stream when done.

The supervisor calls a Merger at a few marked points; which stream merges when
is `scheduler.decide`'s (a `Merge` action); the git work itself is in
workspaces.py and every state change goes through lifecycle.transition:

    begin(table)         at start: take over the merge check a killed orchestrator left (or end
                         it), repair what a killed run left, then start or continue the run's
                         integration branch (its RunInfo is saved in the table)
    prepare(stream)      before a spawn: the stream's worktree (a step), checked for the tracker
    merge(stream, life)  a Merge action: a step does all of its merge's git (workspaces.merge_finished)
    poll()               each turn: the steps that ended (a merge's answer: merged, then its merge
                         check started; a conflict handed back; parked) and whether the running
                         check has ended, with its verdict (a failed one's merge undone by a step)
    busy                 a merge or undo step or a check runs, or a check's leftovers are ended
                         (decide merges nothing else meanwhile)
    stop(deadline)       at shutdown: KILL a running check (that stream is merged again next start);
                         a merge step may finish by `deadline`, the stop grace (see Merger.stop)

The loop never waits on git here: merges run as observed steps (stepper.py, steps.py)
while other streams complete and start. The merge check is a process started through
an executor (the local one: the integration worktree is here), recorded like a worker
and polled, never waited on. It runs through git/check_wrapper.py, which writes how it
ended to a status file, and its own record (git/check_record.py: stream, the tips
before and with the merge, log offset, start, identity) survives the orchestrator. So a
`start` after an orchestrator was killed mid-check takes that check's verdict instead
of running a second one: one still running is adopted and watched (its timeout counts
from its real start); one that ended meanwhile is settled from its status; one whose
status is unknown (KILLed, or the status unreadable), whose record is unusable, whose
command changed, or whose integration branch is no longer at the merge it checked is
ended and its stream merged and checked again. Each merge, conflict and check goes
into the run's journal (`journal`). With isolation `none` every call does nothing.
Standard library only, Python 3.9+.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path
import time
from contextlib import nullcontext
from typing import Any, Callable, ContextManager, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from . import check_record, workspaces
from ..announce import spawn_failed_line
from ..executor import Ended, Executor, Handle, WorkerSpec, open_check_executor
from ..journal import Journal
from ..lifecycle import (PARKED, CheckFailed, Event, Life, Merged, MergeConflict, SpawnCancelled, SpawnFailed,
                         StreamState, Table)
from ..lifecycle import RunInfo as TableRun
from ..names import printable
from ..settings import EXIT_STUCK, Layout, Settings, UserError
from ..trackers import DatabaseLocation
from ..scheduler import Gate, GitAction, Merge, PollPullRequests
from .gating import MERGE, PREP, UNDO, Gating, Notify
from .workspaces import MergeOutcome, MergeResult, RunInfo, Workspace, WorkspaceError

Apply = Callable[[str, Event, float], Life]
LISTED_FILES = 5  # conflicted files named in a one-line reason
NEVER_ROTATE = 1 << 62  # the check appends to the stream's log: never rotate it away under the merge
ADOPTED_CHECK_WAIT = 2.0  # at start, how long a check left by a killed orchestrator may take to die
LEFT_CHECK = "the merge check an earlier orchestrator started"
END_UNKNOWN = "ended and how is not known (it was killed?); it is merged and checked again"


Guard = Callable[[str, str, float], ContextManager[None]]  # (stream, doing, now): supervisor's StreamGuard.stream


def _unguarded(_sid: str, _doing: str, _now: float) -> ContextManager[None]:
    return nullcontext()


PREPARING = object()  # Merger.prepare: a step makes the worktree, and calls back when it is ready
PREPARE_TIMEOUT = 900.0  # seconds a worktree's creation may take (a checkout of a very large repository)
MERGE_TIMEOUT = 3600.0  # seconds a merge step may take (a huge leftover commit through a slow clean filter)
UNDO_TIMEOUT = 900.0  # seconds undoing a merge may take (a reset of the integration worktree's files)


def open_merger(layout: Layout, settings: Settings, location: DatabaseLocation, say: Callable[[str], None],
                notify: Notify, clock: Callable[[], float], journal: Optional[Journal] = None) -> "Merger":
    """The loop's merger: merge checks through the local executor, gate records in the state folder, merges
    and checks in the run's journal."""
    return Merger(layout.root, settings, location, say, layout.log_for,
                  open_check_executor(layout, settings.stop_grace, clock), layout.state, notify, clock, journal)


def resolve_isolation(settings: Settings, project: Path) -> str:
    """`worktree` or `none`: `auto` becomes the default for this folder; `worktree` outside git is refused."""
    found = workspaces.default_isolation(project)
    if settings.isolation == "auto":
        return found
    if settings.isolation == "worktree" and found != "worktree":
        raise UserError("isolation is worktree, but this project is not a git repository with at least one "
                        "commit (or git is older than 2.17); commit once, or use --isolation none")
    return settings.isolation


def start_command(stream_id: str) -> str:
    return f"orchestrate.py start {shlex.quote(printable(stream_id, 200))}"


@dataclass
class _Check:
    handle: Handle
    log: Path
    offset: int  # where the check's output starts in the log
    before: str  # the integration tip before this stream's merge: where a failed check returns
    tip: str = ""  # the integration tip with this stream merged: its merge commit once the check passes
    stopped: bool = False  # KILLed at shutdown: its verdict no longer counts
    timed_out: bool = False  # KILLed after merge_check_timeout: it failed
    nonce: str = ""  # names its status file (check_wrapper.py)
    adopted: bool = False  # left by a killed orchestrator: not our child, its end known only from its status
    ended: Optional[check_record.CheckStatus] = None  # it ended while no orchestrator ran: settled at first poll


class Merger:
    """The run's integration branch and the one merge check in progress (worktree isolation)."""

    def __init__(self, root: Path, settings: Settings, location: DatabaseLocation,
                 say: Callable[[str], None], log_for: Callable[[str], Path], checks: Executor,
                 state: Optional[Path] = None, notify: Notify = lambda event, needs_you=False, **details: None,
                 clock: Callable[[], float] = time.time, journal: Optional[Journal] = None):
        self.root, self.settings, self.location = Path(root), settings, location
        self.say, self.log_for = say, log_for
        self.checks = checks  # runs merge checks, and records them as workers are recorded
        self.journal = journal or Journal()  # the run's (one not opened records nothing)
        self.run: Optional[RunInfo] = None
        self.check: Optional[_Check] = None
        self.state = Path(state) if state is not None else self.root  # the merge check's record and status
        self.gating = Gating(self.root, state if state is not None else self.root, say, notify, settings, log_for,
                             clock)
        self.preparing: Dict[str, Callable[[Workspace, float], None]] = {}  # stream -> what to do once ready
        self.merging: Tuple[str, ...] = ()  # the streams whose merge step runs, merged in this order
        self.queued: Dict[str, Life] = {}  # Merge actions of this turn, started as one step by `flush`
        self.undoing: Dict[str, str] = {}  # a stream whose failed check's merge a step undoes -> why it failed
        self.stopping = False  # the run is stopping (stop): a merge that ends starts no check

    @property
    def active(self) -> bool:
        return self.run is not None

    # ---------------------------------------------------------------- start

    def begin(self, table: Table) -> None:
        """Repair, then start the run's integration branch or continue the saved one."""
        saved = table.run
        if self.settings.isolation != "worktree":
            unmerged = sorted(sid for sid, life in table.rows.items()
                              if life.state is StreamState.MERGING or life.state in PARKED)
            if unmerged:
                raise UserError(f"{', '.join(printable(s) for s in unmerged)} still wait(s) to be merged into "
                                f"{saved.integration_branch}; finish that run with --isolation worktree", EXIT_STUCK)
            saved.isolation = "none"  # an earlier run's integration branch stays recorded for `land`
            return
        previous = RunInfo("worktree", saved.integration_branch, saved.base) if saved.integration_branch else None
        self.check = self._left_check(table)
        merging = sorted(sid for sid, life in table.rows.items() if life.state is StreamState.MERGING)
        try:  # a check that still runs keeps the integration worktree as it is
            for note in workspaces.recover(self.root, previous, merging,
                                           checking=self.check is not None and self.check.ended is None):
                self.say(f"recovered: {printable(note)}")
            self.run = workspaces.start_run(self.root, previous)
        except WorkspaceError as exc:
            raise UserError(f"cannot set up the stream worktrees: {exc}", EXIT_STUCK) from None
        saved.isolation, saved.integration_branch, saved.base = "worktree", self.run.integration_branch, self.run.base
        for note in self.run.notes:  # the user's hooks skipped; a run found in git; shared refs put back
            self.say(f"note: {printable(note, 600)}")
        verb = "continuing" if self.run.continued else "created"
        self.say(f"{verb} integration branch {self.run.integration_branch} (from {str(self.run.base)[:12]}); "
                 "each stream works in its own worktree under .claude/worktrees/")

    def _left_check(self, table: Table) -> Optional[_Check]:
        """The merge check a killed orchestrator left, if its verdict can still be taken: adopted while
        it runs, or to settle at the first poll when it ended meanwhile. Any other check it left is
        ended (its stream is merged and checked again), before recovery touches the integration worktree."""
        record, warning = check_record.load_check(self.state)
        if warning:
            self.say(f"warning: {printable(warning, 600)}; a stream it names is merged and checked again")
        adoption = self.checks.adopt()
        kept = self._trusted(record, table) if record is not None else None
        live = next((h for h in adoption.live if kept is not None and h.key == kept.key), None)
        for handle in adoption.live:
            if handle is not live:
                self.checks.kill(handle)
        self._wait_for_killed_checks(live)
        if kept is None:
            check_record.clear_check(self.state)
            return None
        sid, log = kept.stream_id, self.log_for(kept.stream_id)
        if live is not None:
            self.say(f"{printable(sid)}: {LEFT_CHECK} still runs; watching it (its verdict decides the merge)")
            return _Check(live, log, kept.offset, kept.before, kept.tip, nonce=kept.nonce, adopted=True)
        status = check_record.read_status(self.state, kept.nonce)
        if status is None:
            self.say(f"{printable(sid)}: {LEFT_CHECK} {END_UNKNOWN}")
            check_record.clear_check(self.state)
            return None
        self.say(f"{printable(sid)}: {LEFT_CHECK} ended while no orchestrator ran ({status.ended.describe()}); "
                 "taking its verdict")
        handle = Handle(sid, 1, kept.key, kept.started_at, "ended")
        return _Check(handle, log, kept.offset, kept.before, kept.tip, nonce=kept.nonce, adopted=True, ended=status)

    def _trusted(self, record: check_record.CheckRecord, table: Table) -> Optional[check_record.CheckRecord]:
        """The record, if its verdict still means what it meant: its stream still waits in `merging`, the
        check is the one configured, and the integration branch is still at the merge it checks."""
        sid = record.stream_id
        if table.rows.get(sid, Life()).state is not StreamState.MERGING \
                or record.integration_branch != table.run.integration_branch:
            return None  # settled before the orchestrator was killed: nothing left to take
        if record.command != self.settings.merge_check.strip():
            self.say(f"{printable(sid)}: the merge_check setting changed since {LEFT_CHECK}; that check is "
                     "ended and its stream merged again under the new setting")
            return None
        try:
            at_tip = workspaces.integration_at(self.root, record.integration_branch, record.tip)
        except WorkspaceError:
            at_tip = False
        if not at_tip:
            self.say(f"{printable(sid)}: {record.integration_branch} is no longer at the merge {LEFT_CHECK} "
                     "checks; that check is ended and its stream merged and checked again")
            return None
        return record

    def _wait_for_killed_checks(self, kept: Optional[Handle]) -> None:
        """A killed check must not touch the integration worktree while recovery repairs it (the one
        kept is not polled here: its end is its verdict, taken by `poll`)."""
        deadline = time.monotonic() + ADOPTED_CHECK_WAIT
        while time.monotonic() < deadline and any(self.checks.poll(h) is None for h in self.checks.live().values()
                                                  if kept is None or h.key != kept.key):
            time.sleep(0.02)  # at start, before any worker runs: KILL takes effect at once

    # ---------------------------------------------------------------- before a spawn

    def prepare(self, stream_id: str, then: Optional[Callable[[Workspace, float], None]] = None) -> Any:
        """The stream's worktree (created or reused), or None without isolation. Raises UserError.
        With `then`: PREPARING, and a step makes it (the loop goes on); `then(workspace, now)` once it is
        ready (checked for the tracker), else the stream's SpawnFailed, or SpawnCancelled at a stop."""
        if self.run is None:
            return None
        if then is not None:
            args = {"project": str(self.root), "run": self.run.as_dict(), "stream_id": stream_id}
            try:
                self.gating.steps.start(PREP + stream_id, "prepare_workspace", args, PREPARE_TIMEOUT)
            except OSError as exc:
                raise UserError(f"its worktree could not be prepared: {exc}") from None
            self.preparing[stream_id] = then
            return PREPARING
        try:
            workspace = workspaces.prepare_workspace(self.root, self.run, stream_id)
        except WorkspaceError as exc:
            raise UserError(f"its worktree could not be prepared: {exc}") from None
        return self._checked(workspace)

    def _prepared(self, sid: str, result: Dict[str, Any], rows: Mapping[str, Life], apply: Apply, now: float) -> None:
        """A worktree step ended: start the worker, or say why not."""
        then = self.preparing.pop(sid, None)
        state = rows.get(sid, Life()).state
        if then is None or result.get("stopped") or state is not StreamState.STARTING:
            if state in (StreamState.STARTING, StreamState.STOPPING):  # stopped meanwhile: no worker ran
                apply(sid, SpawnCancelled(StreamState.WAITING, "the run stopped while its worktree was prepared"), now)
            return
        try:
            if "error" in result:
                raise UserError(f"its worktree could not be prepared: {result['error']}")
            made = Workspace(sid, str(result["branch"]), Path(result["path"]), Path(result["cwd"]),
                             tuple(str(n) for n in result.get("notes") or ()))
            workspace = self._checked(made)
        except (UserError, KeyError, TypeError) as exc:
            failed = apply(sid, SpawnFailed(f"its worker could not be started: {exc}"), now)
            self.say(spawn_failed_line(sid, exc, failed.state is StreamState.FAILED))
            return
        then(workspace, now)

    def _checked(self, workspace: Workspace) -> Workspace:
        for note in workspace.notes:  # the user's stash or refs, or our integration branch, changed by someone
            self.say(f"warning: {printable(note, 600)}")
        refusal = self.location.worker_refusal(workspace.cwd)
        if refusal:
            raise UserError(f"a worker in its worktree could not open the database: {refusal}")
        return workspace

    @property
    def integration_branch(self) -> str:
        return self.run.integration_branch or "" if self.run else ""

    # ---------------------------------------------------------------- merging

    @property
    def busy(self) -> bool:
        """A merge step or a merge check runs, or what a check left running is still being ended:
        nothing else is merged meanwhile (it could still touch the integration worktree) and the run
        does not end before them."""
        return self.check is not None or bool(self.merging) or bool(self.undoing) \
            or bool(self.checks.cleaning_up())

    @property
    def activity(self) -> tuple:
        """Changes when a check or a gate step starts or ends: the loop decides again then."""
        return self.busy, self.gating.steps.keys()

    def act(self, action: GitAction, rows: Mapping[str, Life], apply: Apply, now: float) -> None:
        """Carry out one of decide's merge or gate steps."""
        if isinstance(action, Merge):
            self.merge(action.stream_id, rows.get(action.stream_id, Life()), apply, now)
        elif isinstance(action, Gate) and self.run is not None:
            self.gating.gate(action.stream_id, self.run, apply, now)
        elif isinstance(action, PollPullRequests) and self.run is not None:
            self.gating.poll_pull_requests(rows, self.run, now)

    def facts(self) -> Dict[str, Any]:
        """What decide needs to know of the gate's steps (scheduler.Facts' fields)."""
        return self.gating.facts()

    def merge(self, sid: str, life: Life, apply: Apply, now: float) -> None:
        """A Merge action for a stream in `merging` (decide chose it: nothing of its worker is left running).
        The turn's merges are started together by `flush`, as one step."""
        if self.run is not None and not self.busy:
            self.queued[sid] = life

    def flush(self, apply: Apply, now: float) -> None:
        """Start the turn's merges as one step: it does all their git (workspaces.merge_finished, one after
        another, in decide's order) while the loop goes on, and `poll` carries on with each answer. One
        step at a time: nothing else is merged until it has ended. (With a merge check decide asks for one
        merge at a time; without one a level of 8 finished streams costs one step's start, not 8.)"""
        queued, self.queued = self.queued, {}
        if not queued or self.run is None or self.busy:
            return
        for sid in queued:
            self.journal.merge_started(sid, branch=workspaces.stream_branch(sid), into=self.integration_branch)
        streams = [{"stream_id": sid, "handed_back": list(life.conflicts), "commit": life.commit or None}
                   for sid, life in queued.items()]  # approved: exactly its commit
        try:
            self.gating.steps.start(MERGE + next(iter(queued)), "merge_streams",
                                    {"project": str(self.root), "run": self.run.as_dict(), "streams": streams},
                                    MERGE_TIMEOUT)
        except OSError as exc:
            for sid in queued:
                self._park(sid, (), f"cannot merge: {exc}", apply, now)
            return
        self.merging = tuple(queued)

    def poll(self, apply: Apply, now: float, rows: Mapping[str, Life] = {},  # noqa: B006
             guard: Guard = _unguarded) -> None:
        """Each turn: carry on with the steps that ended (each inside `guard`: the loop's StreamGuard.stream,
        so a bug fails or parks that stream only); settle the stream whose check has ended; act on review
        decisions."""
        if self.run is None:
            return
        self.gating.poll(rows, apply, now)  # review decisions (whatever merge_gate is now: a stream may await one)
        merged, own = self.gating.ended_steps(rows, apply, now, guard)
        for sid in merged:  # its pull request merged, the integration branch fetched
            workspaces.note_integration_moved(self.root, self.run)
            self._accept(sid, apply, now)
        for kind, sid, result in own:
            if kind == MERGE:  # its streams, each in its own guard
                self._merges_ended(result, rows, apply, now, guard)
                continue
            with guard(sid, "starting its worker" if kind == PREP else "merging it", now):
                if kind == PREP:
                    self._prepared(sid, result, rows, apply, now)
                elif kind == UNDO:
                    self._undone(sid, self.undoing.pop(sid, "its merge check failed"), result, apply, now)
        self.checks.tick()
        check = self.check
        if check is None:
            return
        timeout = self.settings.merge_check_timeout * 60
        if check.ended is not None:  # it ended while no orchestrator ran: its status says how, and when
            check.timed_out = check_overdue(check.handle.started_at, check.ended.ended_at, timeout)
            self._check_finished(check.ended.ended, apply, now, check.ended.ended_at)
            return
        if check_overdue(check.handle.started_at, now, timeout) and not (check.stopped or check.timed_out):
            self.checks.kill(check.handle)  # its whole tree: the group and whatever carries its token
            check.timed_out = True
            _append(check.log, f"\n[merge check {workspaces.check_timeout_text(timeout)}; it and every process "
                               "it started were ended]\n")
        ended = self.checks.poll(check.handle)
        if ended is not None:
            self._check_finished(ended, apply, now)

    def _merges_ended(self, result: Dict[str, Any], rows: Mapping[str, Life], apply: Apply, now: float,
                      guard: Guard) -> None:
        """The merge step ended: each of its streams carried on in turn, each inside its own guard. An answer
        that is no list of one result a stream (the step failed, or was ended at a stop) is every stream's."""
        streams, self.merging = self.merging, ()
        answers = result.get("results")
        if not isinstance(answers, list) or len(answers) != len(streams):
            answers = [result] * len(streams)
        for sid, answer in zip(streams, answers):
            with guard(sid, "merging it", now):
                self._merge_ended(sid, answer if isinstance(answer, dict) else {"error": "no answer"},
                                  rows.get(sid, Life()), apply, now)

    def _merge_ended(self, sid: str, answer: Dict[str, Any], life: Life, apply: Apply, now: float) -> None:
        """A stream's merge ended: merged (its check next), its conflict handed back, or parked."""
        if life.state is not StreamState.MERGING:
            return  # changed meanwhile (a user's hold): what git did stays, and the next merge sees it
        if answer.get("stopped"):  # ended at the stop grace: the next start repairs and merges it again
            self.say(f"{printable(sid)}: its merge was ended as the run stopped; the next start merges it again")
            return
        try:
            if "error" in answer:
                raise WorkspaceError(str(answer["error"]))
            result = MergeResult.from_dict(answer)
        except (WorkspaceError, KeyError, TypeError, ValueError) as exc:
            self._park(sid, (), f"cannot merge: {exc}", apply, now)
            return
        for note in result.notes:  # the user's stash or refs, or our integration branch, changed by someone
            self.say(f"warning: {printable(note, 600)}")
        if result.outcome is MergeOutcome.PENDING:
            self._park(sid, life.conflicts, f"merge conflict still open ({result.pending})", apply, now)
        elif result.outcome is MergeOutcome.MERGED:
            self._merged(sid, result, apply, now)
        else:
            self._conflicted(sid, result.conflicts, apply, now)

    def _conflicted(self, sid: str, files: Sequence[str], apply: Apply, now: float) -> None:
        self.journal.merge_conflict(sid, files=files, reason=self._conflict_text(sid, files))
        after = apply(sid, MergeConflict(tuple(files), self._conflict_text(sid, files)), now)
        if after.state is StreamState.READY:
            self.say(f"{printable(sid)}: merging it into {self.integration_branch} conflicts in "
                     f"{_listed(files)}; handing the conflict back to its agent")
        else:
            self.say(f"{printable(sid)}: {printable(after.reason, 500)}")

    def _merged(self, sid: str, result: MergeResult, apply: Apply, now: float) -> None:
        if result.committed_leftovers:
            self.say(f"{printable(sid)}: committed what its worker left uncommitted")
        command = self.settings.merge_check.strip()
        if command and result.tip != result.before and self.stopping:
            self.say(f"{printable(sid)}: merged into {self.integration_branch}; its merge check runs at the next "
                     "start (the run is stopping)")  # it stays `merging`: the next merge finds it merged
            return
        if command and result.tip != result.before:
            try:
                self.check = self._start_check(sid, command, result.before, result.tip)
            except (OSError, WorkspaceError) as exc:
                why = f"the merge check could not run: {exc}"
                self.journal.check_failed(sid, exit_code=None, reason=why)
                self._check_failed(sid, result.before, why, apply, now)
                return
            self.journal.check_started(sid, command)
            self.say(f"{printable(sid)}: merged into {self.integration_branch}; running the merge check")
            return
        self._accept(sid, apply, now, result.tip)

    def _start_check(self, sid: str, command: str, before: str, tip: str) -> _Check:
        """Start the check through the wrapper that writes its status, and save its record, so the
        next orchestrator can take its verdict if this one is killed meanwhile."""
        log = self.log_for(sid)
        nonce = check_record.new_nonce()
        check_record.clear_check(self.state)  # an earlier check's status must not be read as this one's
        spec = check_spec(self.root, self.state, sid, command, log, self.integration_branch, nonce)

        def record(handle: Handle) -> None:  # before the command runs: a check that runs is recorded
            # The launcher waits for "go": nothing follows the banner yet, so the log ends where its output starts.
            saved = check_record.CheckRecord(sid, command, self.integration_branch, before, tip,
                                             self.checks.output(handle).offset, handle.started_at, handle.key, nonce)
            try:
                check_record.save_check(self.state, saved)
            except OSError as exc:  # the check still runs; only a restart during it cannot take its verdict
                self.say(f"warning: the merge check's record could not be saved ({printable(str(exc), 300)}); "
                         "if the orchestrator is killed during it, it is run again")

        handle = self.checks.spawn(spec, before_go=record)
        return _Check(handle, log, self.checks.output(handle).offset, before, tip, nonce=nonce)

    def _check_finished(self, ended: Ended, apply: Apply, now: float, ended_at: Optional[float] = None) -> None:
        check = self.check
        assert check is not None
        self.check = None
        sid = check.handle.stream_id
        if check.stopped:
            return  # stopped at shutdown: the stream stays `merging` and is merged (and checked) again
        status = check_record.read_status(self.state, check.nonce) if check.nonce and ended_at is None else None
        check_record.clear_check(self.state)
        if status is not None:  # the wrapper's word: the check's own end (a signal stays a signal)
            ended, ended_at = status.ended, status.ended_at
        try:  # (its result also restores what it changed in the integration worktree)
            result = workspaces.check_result_of(self.root, check.log, check.offset, ended.returncode)
        except (OSError, WorkspaceError) as exc:
            self._check_failed(sid, check.before, str(exc), apply, now)
            return
        if check.adopted and not ended.known and not check.timed_out:
            self.say(f"{printable(sid)}: {LEFT_CHECK} {END_UNKNOWN}")
            return  # still `merging`: decide merges it again, which finds it merged and checks again
        took = round(max((now if ended_at is None else ended_at) - check.handle.started_at, 0.0), 3)
        if result.passed and not check.timed_out:
            self.journal.check_passed(sid, took)
            self._accept(sid, apply, now, check.tip)
            return
        where = f"its output is in `orchestrate.py logs {shlex.quote(printable(sid, 200))}`"
        how = (workspaces.check_timeout_text(self.settings.merge_check_timeout * 60) + f" ({where})"
               if check.timed_out else f"failed ({ended.describe()}; {where})")
        if check.timed_out:
            self.journal.check_timed_out(sid, took)
        else:
            self.journal.check_failed(sid, exit_code=ended.exit_code, reason=how, seconds=took)
        self._check_failed(sid, check.before, f"the merge check `{self.settings.merge_check.strip()}` {how}",
                           apply, now)

    def _accept(self, sid: str, apply: Apply, now: float, commit: str = "") -> None:
        self.journal.merged(sid, commit=commit, branch=workspaces.stream_branch(sid), into=self.integration_branch)
        apply(sid, Merged(), now)
        self.gating.merged(sid)
        if self.run is not None:
            self.gating.after_merge(sid, self.run)
        self.say(f"{printable(sid)} merged into {self.integration_branch}")
        try:
            workspaces.remove_workspace(self.root, sid)
        except WorkspaceError as exc:
            self.say(f"warning: {printable(str(exc))}")

    def _check_failed(self, sid: str, before: str, why: str, apply: Apply, now: float) -> None:
        """Its check failed: a step moves the integration branch back to `before` (the loop goes on,
        `busy` meanwhile); `_undone` parks the stream once it has ended."""
        assert self.run is not None
        args = {"project": str(self.root), "run": self.run.as_dict(), "before": before}
        try:
            self.gating.steps.start(UNDO + sid, "undo_merge", args, UNDO_TIMEOUT)
        except OSError as exc:
            self._undone(sid, why, {"error": str(exc)}, apply, now)
            return
        self.undoing[sid] = why

    def _undone(self, sid: str, why: str, answer: Dict[str, Any], apply: Apply, now: float) -> None:
        if answer.get("stopped"):  # it stays `merging`: the next start finds it merged and checks it again
            self.say(f"{printable(sid)}: {printable(why, 500)}; undoing its merge was ended as the run stopped, "
                     "and the next start checks it again")
            return
        if "error" in answer:
            why += f"; and undoing its merge failed: {answer['error']}"
        folder = self._folder(sid)
        reason = f"{why}; its merge was undone. Fix it in {folder} and commit, then run `{start_command(sid)}`"
        apply(sid, CheckFailed(reason), now)
        self.say(f"{printable(sid)}: {printable(reason, 600)}")

    def _park(self, sid: str, files: Sequence[str], why: str, apply: Apply, now: float) -> None:
        reason = (f"{why}; resolve it in {self._folder(sid)} (edit, git add, git commit), "
                  f"then run `{start_command(sid)}`")
        self.journal.merge_conflict(sid, files=files, reason=reason)
        apply(sid, MergeConflict(tuple(files), reason), now)
        self.say(f"{printable(sid)}: {printable(reason, 600)}")

    def _conflict_text(self, sid: str, files: Sequence[str]) -> str:
        return (f"merge conflict in {_listed(files)}; resolve it in {self._folder(sid)} (edit the files, "
                f"git add, git commit), then run `{start_command(sid)}`")

    def _folder(self, sid: str) -> str:
        return os.path.relpath(workspaces.worktree_path(self.root, sid), self.root)

    # ---------------------------------------------------------------- stopping and the end

    def stop(self, deadline: float = 0.0) -> None:
        """At shutdown: KILL a running check (a check has nothing to save); its stream stays `merging`
        and is merged again next start. `busy` until the executor has seen it end.

        A running merge step may finish until `deadline` (the stop grace), then its process group is
        KILLed. Killing git at once would leave work half done where the next start must repair it
        (recover: the integration worktree's half merge aborted, git's stale locks removed in the
        stream's worktree), and most merges end well within the grace; one that does not (a blocked
        filter, a huge leftover commit) must not hold the stop. Either way nothing is lost: leftovers
        are committed on the stream's own branch or still in its worktree, the stream stays `merging`
        (what finished meanwhile is recorded, but no merge check starts), and the next start merges it
        again (an already merged branch counts as merged)."""
        self.stopping = True
        self.gating.stop(deadline)
        if self.check is not None and not self.check.stopped:
            self.checks.kill(self.check.handle)
            self.check.stopped = True
            check_record.clear_check(self.state)  # its verdict no longer counts, for the next start either


def check_spec(root: Path, state: Path, sid: str, command: str, log: Path, branch: str, nonce: str) -> WorkerSpec:
    """How a stream's merge check starts in the check executor: the user's shell in the integration
    worktree (workspaces.merge_check_launch) under the wrapper that writes its status (`nonce`) in `state`,
    its output appended to the stream's log after a banner, the log never rotated under it."""
    launch = workspaces.merge_check_launch(root, command)
    banner = f"\n=== orchestrate-kit: merge check `{command}` on {branch} ===\n"
    argv = check_record.wrapped(launch.argv, state, nonce)
    return WorkerSpec(sid, 1, argv, launch.env, launch.cwd, log, banner, log_max_bytes=NEVER_ROTATE)


def check_overdue(started_at: float, at: float, timeout: float) -> bool:
    """Whether a check started at `started_at` has run `timeout` seconds (merge_check_timeout; 0: no
    limit) by `at`: the loop's own clock each turn, or when an adopted check ended."""
    return timeout > 0 and at - started_at >= timeout


def _append(log: Path, text: str) -> None:
    try:
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(text)
    except OSError:
        pass  # the stream's reason still says what happened


def _listed(files: Sequence[str]) -> str:
    shown = ", ".join(printable(f, 200) for f in files[:LISTED_FILES])
    return (shown + (f" and {len(files) - LISTED_FILES} more" if len(files) > LISTED_FILES else "")) or "(no files)"


# ---------------------------------------------------------------- status and land


def stream_places(root: Path, run: TableRun, stream_ids: Iterable[str]) -> Dict[str, dict]:
    """Each stream's branch and worktree, when they exist (`status --json`)."""
    if run.isolation != "worktree":
        return {}
    branches = set(workspaces.stream_branches(root))
    places = {}
    for sid in stream_ids:
        branch = workspaces.stream_branch(sid)
        folder = workspaces.worktree_path(root, sid)
        places[sid] = {"branch": branch if branch in branches else None,
                       "worktree": str(folder) if folder.is_dir() else None}
    return places


def land_run(root: Path, run: TableRun, landed: Iterable[str], missing: Mapping[str, str] = {}) -> List[str]:  # noqa: B006
    """Land the run's integration branch into the user's branch; the lines to print. Raises UserError.
    `landed`: the streams merged into it, whose branches are tidied away; `missing`: the plan's streams
    that are not (stream -> its state), whose branches and worktrees are left as they are."""
    found = None if run.integration_branch else workspaces.find_run(root)  # run.json lost: the run is in git
    if not run.integration_branch and found is None:
        raise UserError("nothing to land: no run with worktree isolation has been started here", EXIT_STUCK)
    info = found or RunInfo("worktree", run.integration_branch, run.base)
    try:
        result = workspaces.land(root, info, [sid for sid in landed if sid not in missing])
    except WorkspaceError as exc:
        raise UserError(str(exc), EXIT_STUCK) from None
    how = "fast-forwarded" if result.fast_forward else "merged"
    lines = [f"note: {printable(n, 600)}" for n in result.notes]
    if found is not None:
        lines.append(f"note: the orchestrator's record of the run (state/run.json) is gone; landing the run found in "
                     f"git, {info.integration_branch}")
    lines.append(f"Landed {info.integration_branch} on {result.branch} ({how}; now at {result.head[:12]}).")
    if result.deleted:
        lines.append(f"Deleted {len(result.deleted)} branch(es) of the run: " + ", ".join(result.deleted))
    lines += [f"Kept {branch}: {printable(why)}" for branch, why in result.kept]
    branches = set(workspaces.stream_branches(root)) if missing else set()
    for sid in sorted(missing):
        kept = [f"its branch {workspaces.stream_branch(sid)}"] if workspaces.stream_branch(sid) in branches else []
        folder = workspaces.worktree_path(root, sid)
        kept += [f"its worktree {os.path.relpath(folder, root)}"] if folder.is_dir() else []
        lines.append(f"Not landed: {printable(sid)} ({printable(missing[sid], 200)})"
                     + ("; kept for the next run: " + " and ".join(kept) if kept else ""))
    return lines
