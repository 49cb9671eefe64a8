"""Worktree isolation in the supervisor's loop: where a worker works, and merging its stream when done.

The supervisor calls a Merger at a few marked points; the git work itself is in
workspaces.py and every state change goes through lifecycle.transition:

    begin(table)         at start: repair what a killed run left, then start or continue the
                         run's integration branch (its RunInfo is saved in the table)
    prepare(stream)      before a spawn: the stream's worktree, checked for the tracker
    step(rows, apply)    each turn: merge the streams in `merging`, one at a time, once what
                         their worker left running has ended; the merge check is a
                         subprocess polled here, never waited on
    stop()               at shutdown: end a running check (that stream is merged again next start)

Merges are serialised: while a check runs on the merged tree no other stream is
merged, so a failing check undoes exactly its own merge. With isolation `none`
every call does nothing. Standard library only, Python 3.9+.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence

from . import workspaces
from ..lifecycle import PARKED, CheckFailed, Event, Life, Merged, MergeConflict, StreamState, Table
from ..lifecycle import RunInfo as TableRun
from ..names import printable
from ..settings import EXIT_STUCK, Settings, UserError
from ..trackers import DatabaseLocation
from .workspaces import MergeOutcome, RunInfo, Workspace, WorkspaceError

Apply = Callable[[str, Event, float], Life]
LISTED_FILES = 5  # conflicted files named in a one-line reason


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
    stream_id: str
    running: workspaces.RunningCheck
    before: str  # the integration tip before this stream's merge: where a failed check returns


class Merger:
    """The run's integration branch and the one merge check in progress (worktree isolation)."""

    def __init__(self, root: Path, settings: Settings, location: DatabaseLocation,
                 say: Callable[[str], None], log_for: Callable[[str], Path]):
        self.root, self.settings, self.location = Path(root), settings, location
        self.say, self.log_for = say, log_for
        self.run: Optional[RunInfo] = None
        self.check: Optional[_Check] = None

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
        try:
            for note in workspaces.recover(self.root, previous):
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

    # ---------------------------------------------------------------- before a spawn

    def prepare(self, stream_id: str) -> Optional[Workspace]:
        """The stream's worktree (created or reused), or None without isolation. Raises UserError."""
        if self.run is None:
            return None
        try:
            workspace = workspaces.prepare_workspace(self.root, self.run, stream_id)
        except WorkspaceError as exc:
            raise UserError(f"its worktree could not be prepared: {exc}") from None
        for note in workspace.notes:  # the user's stash or refs, or our integration branch, changed by someone
            self.say(f"warning: {printable(note, 600)}")
        refusal = self.location.worker_refusal(workspace.cwd)
        if refusal:
            raise UserError(f"a worker in its worktree could not open the database: {refusal}")
        return workspace

    @property
    def integration_branch(self) -> str:
        return self.run.integration_branch or "" if self.run else ""

    # ---------------------------------------------------------------- each turn

    def step(self, rows: Dict[str, Life], apply: Apply, now: float,
             busy: Callable[[str], bool] = lambda _sid: False) -> None:
        """Poll the running check; merge the streams in `merging` while no check runs.
        `busy(stream)`: processes its worker left are still being ended (they could still write)."""
        if self.run is None:
            return
        if self.check is not None and not self._check_finished(apply, now):
            return
        for sid in sorted(s for s, life in rows.items() if life.state is StreamState.MERGING):
            if self.check is not None:
                return  # one merge at a time: the next one waits for this check
            if busy(sid):
                continue  # the executor's sweep wakes the loop once they are gone
            self._merge(sid, rows[sid], apply, now)

    def _merge(self, sid: str, life: Life, apply: Apply, now: float, again: bool = True) -> None:
        assert self.run is not None
        try:
            if life.conflicts:  # handed back (or parked): resolved and committed since?
                pending = workspaces.hand_back_pending(self.root, self.run, sid, life.conflicts)
                if pending:
                    self._park(sid, life.conflicts, f"merge conflict still open ({pending})", apply, now)
                    return
            result = workspaces.merge_stream(self.root, self.run, sid)
            for note in result.notes:  # the user's stash or refs, or our integration branch, changed by someone
                self.say(f"warning: {printable(note, 600)}")
            if result.outcome is MergeOutcome.MERGED:
                self._merged(sid, result, apply, now)
                return
            files = result.conflicts
            if result.outcome is MergeOutcome.CONFLICT:
                files = workspaces.hand_back_conflict(self.root, self.run, sid)  # the conflict, in its worktree
                if not files and again:
                    self._merge(sid, life, apply, now, again=False)  # it merged cleanly there: try once more
                    return
        except WorkspaceError as exc:
            self._park(sid, (), f"cannot merge: {exc}", apply, now)
            return
        after = apply(sid, MergeConflict(tuple(files), self._conflict_text(sid, files)), now)
        if after.state is StreamState.READY:
            self.say(f"{printable(sid)}: merging it into {self.integration_branch} conflicts in "
                     f"{_listed(files)}; handing the conflict back to its agent")
        else:
            self.say(f"{printable(sid)}: {printable(after.reason, 500)}")

    def _merged(self, sid: str, result: workspaces.MergeResult, apply: Apply, now: float) -> None:
        if result.committed_leftovers:
            self.say(f"{printable(sid)}: committed what its worker left uncommitted")
        command = self.settings.merge_check.strip()
        if command and result.tip != result.before:
            log = self.log_for(sid)
            with open(log, "a", encoding="utf-8") as handle:
                handle.write(f"\n=== orchestrate-kit: merge check `{command}` on {self.integration_branch} ===\n")
            try:
                running = workspaces.start_merge_check(self.root, command, log)
            except WorkspaceError as exc:
                self._check_failed(sid, result.before, f"the merge check could not run: {exc}", apply, now)
                return
            self.check = _Check(sid, running, result.before)
            self.say(f"{printable(sid)}: merged into {self.integration_branch}; running the merge check")
            return
        self._accept(sid, apply, now)

    def _check_finished(self, apply: Apply, now: float) -> bool:
        """True once the running check has ended (and its stream was settled)."""
        check = self.check
        assert check is not None
        if check.running.process.poll() is None:
            return False
        self.check = None
        try:
            result = workspaces.merge_check_result(self.root, check.running)
        except WorkspaceError as exc:
            self._check_failed(check.stream_id, check.before, str(exc), apply, now)
            return True
        if result.passed:
            self._accept(check.stream_id, apply, now)
        else:
            self._check_failed(check.stream_id, check.before, f"the merge check `{self.settings.merge_check.strip()}` "
                               f"failed (code {result.returncode}; its output is in `orchestrate.py logs "
                               f"{shlex.quote(printable(check.stream_id, 200))}`)", apply, now)
        return True

    def _accept(self, sid: str, apply: Apply, now: float) -> None:
        apply(sid, Merged(), now)
        self.say(f"{printable(sid)} merged into {self.integration_branch}")
        try:
            workspaces.remove_workspace(self.root, sid)
        except WorkspaceError as exc:
            self.say(f"warning: {printable(str(exc))}")

    def _check_failed(self, sid: str, before: str, why: str, apply: Apply, now: float) -> None:
        assert self.run is not None
        try:
            workspaces.undo_merge(self.root, self.run, before)
        except WorkspaceError as exc:
            why += f"; and undoing its merge failed: {exc}"
        folder = self._folder(sid)
        reason = f"{why}; its merge was undone. Fix it in {folder} and commit, then run `{start_command(sid)}`"
        apply(sid, CheckFailed(reason), now)
        self.say(f"{printable(sid)}: {printable(reason, 600)}")

    def _park(self, sid: str, files: Sequence[str], why: str, apply: Apply, now: float) -> None:
        reason = (f"{why}; resolve it in {self._folder(sid)} (edit, git add, git commit), "
                  f"then run `{start_command(sid)}`")
        apply(sid, MergeConflict(tuple(files), reason), now)
        self.say(f"{printable(sid)}: {printable(reason, 600)}")

    def _conflict_text(self, sid: str, files: Sequence[str]) -> str:
        return (f"merge conflict in {_listed(files)}; resolve it in {self._folder(sid)} (edit the files, "
                f"git add, git commit), then run `{start_command(sid)}`")

    def _folder(self, sid: str) -> str:
        return os.path.relpath(workspaces.worktree_path(self.root, sid), self.root)

    # ---------------------------------------------------------------- stopping and the end

    def stop(self) -> None:
        """End a running check at shutdown; its stream stays `merging` and is merged again next start."""
        if self.check is not None:
            workspaces.stop_merge_check(self.check.running)
            self.check = None


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
