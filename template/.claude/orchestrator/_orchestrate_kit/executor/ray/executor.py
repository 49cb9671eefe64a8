"""The Ray executor: each stream attempt a Ray job on a cluster node (the `Executor` interface).

The supervisor's loop never waits on the cluster: every REST call and every git command that
talks to the remote runs in a thread of this executor, and the interface's methods only read and
change what those threads keep in memory.

    spawn      here, at once: the banner in the stream's log, the stream's task snapshot, the job's
               record (then `before_go`), its id `<run>-<name>-<n>`. In a thread: the commit to
               start from pushed to the project's remote (never forced), the runtime package
               uploaded once, a resumed session pinned to its node (or started afresh when that
               node is gone), the job submitted (a submit that timed out is sent again with the same
               id: Ray answers "already exists", nothing runs twice), then its log tailed into the
               stream's log with its task updates applied to the tracker as they arrive.
    poll       what the watcher thread learnt: one `GET /api/jobs/` a second for every job (every
               0.2 s for a while once a job's log says its worker has exited). An ended job is
               reported only once its work is here (the rest of its log copied at once, collect.py:
               the live attempt's ref fetched into `stream/<name>`, by name when its result line
               says it pushed; the progress ref replayed) and Ray has deleted it.
               SUCCEEDED / FAILED with an exit code: that code; FAILED without one (its node was
               lost): unknown, with Ray's message; STOPPED: signal 15; PENDING past
               `ray_pending_timeout`: stopped, and a failed attempt with what it waits for.
    terminate  Ray's stop (TERM, then KILL after our grace plus time to push); kill asks again: the
               remote worker reaps its own process tree.
    adopt      after a restart, the records of jobs an earlier orchestrator submitted: those Ray
               still has are watched again, their tails and appliers resumed from their saved
               counts; none is submitted again. A record Ray never got is an ended attempt.

A thread that learns something the loop should act on wakes it as a local worker's exit does
(SIGCHLD to this process; the loop sleeps on its wakeup fd). Standard library only, Python 3.9+.
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
import signal
import sqlite3
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, AbstractSet, Callable, Dict, List, Optional, Tuple

from ...git import bounded
from ...git.remote import push_branches
from ...git.workspaces import stream_branch
from ...logfiles import rotate_log
from ...names import printable, safe_name
from ...remote import protocol
from ...trackers.apply import Applier, JobIdentity, stream_snapshot
from .. import Adoption, Ended, Handle, Output, WorkerSpec
from . import job as ray_job
from . import jobs, package
from .collect import CollectError, bring_back
from .jobs import JobInfo, JobsClient, NodeInfo, RayError, RayUnreachable
from .records import LEFTOVER, SUBMITTED, SUBMITTING, JobRecord, Records, new_run_id, read_jobs
from .tail import LogTail

if TYPE_CHECKING:
    from ...settings import Layout, Settings
    from ...trackers import DatabaseLocation

WATCH_SECONDS = 1.0  # how often the watcher lists the cluster's jobs while any of ours is unfinished
ENDING_SECONDS = 0.2  # how often instead once a job's log says its worker has exited (its end is near)
ENDING_LIMIT = 15.0  # for at most this long after that line (an agent could print it and run on)
SUBMIT_TRIES = 3  # a submit that got no answer is sent again (the same id: never a second job)
MISSING_LIMIT = 3  # listings in a row without a job we submitted before it counts as gone
TAIL_FINISH_SECONDS = 30.0  # how long an ended job's tail may take to copy its last lines
RETRY_SECONDS = (2.0, 5.0, 10.0, 30.0, 60.0)  # a failed fetch of its work, tried again after these
GIVE_UP_SECONDS = 30.0  # past the stop deadline, an unreachable cluster or remote no longer holds the run
NOT_PLACED = "Ray job, waiting for a node"
# A file the executor appends each job's steps to (JSON lines: job, step, wall clock), for a person or
# bench/bench_ray_run.py finding where an attempt's time goes. Unset: nothing is written.
TRACE_VARIABLE = "ORCHESTRATE_RAY_TRACE"
SUBMITTING_WHERE = "Ray job, being submitted"


@dataclass
class _Job:
    """One job as the executor follows it (changed by its threads under the executor's lock)."""

    record: JobRecord
    output: Output
    warn: Callable[[str], None]
    info: Optional[JobInfo] = None
    ended: Optional[Ended] = None  # set once everything of it is done: the next poll reports it
    collecting: bool = False
    stop_asked: bool = False
    missing: int = 0
    tail: Optional[LogTail] = None
    applier: Optional[Applier] = None
    refused: int = 0  # task updates the applier refused (the first few are said)
    ending_at: Optional[float] = None  # when the remote worker said its worker had exited (its job ends soon)
    result: Optional[dict] = None  # the remote worker's last line, once the tail has copied it


class RayExecutor:
    """Stream attempts as Ray jobs (see the module's docstring)."""

    def __init__(self, layout: "Layout", settings: "Settings", clock: Callable[[], float],
                 location: Optional["DatabaseLocation"] = None, api: Optional[JobsClient] = None,
                 warn: Callable[[str], None] = lambda message: print(f"orchestrate.py: warning: {message}",
                                                                       file=sys.stderr)):
        self.layout, self.settings, self.clock, self.location = layout, settings, clock, location
        self.records = Records(layout.state / "ray")
        self.run = self.records.load_run()
        address = settings.ray_address or self.run.address
        self.api = api or JobsClient.from_environment(address)  # RayError: no address, or an unusable token path
        self.grace = settings.stop_grace
        self.warn = warn  # the executor's own messages (a spawn's `warn` once there is one: the run's reporter)
        self.jobs: Dict[str, _Job] = {}  # by stream: its live (or not yet reported) job
        self.leftovers: Dict[str, JobRecord] = {}  # by job id: stopped while pending; deleted once Ray allows
        self.deadline: Optional[float] = None
        self._lock = threading.RLock()
        self._push_lock = threading.Lock()
        self._pushed: Dict[str, str] = {}  # branch -> the commit last pushed to the remote
        self._package: Optional[str] = None
        self._nodes: Dict[str, NodeInfo] = {}
        self._remote_url: Optional[str] = None
        self._unreachable_since: Optional[float] = None
        self._said: set = set()
        self._watcher: Optional[threading.Thread] = None
        self._wake = threading.Event()
        self._trace_path = os.environ.get(TRACE_VARIABLE) or None

    @property
    def following(self) -> bool:
        """A run's executor (it knows the database): tails, appliers, work fetched back. Without it
        (`stop`, `status`) jobs are only looked at and stopped, their records kept for the next start."""
        return self.location is not None

    # ---------------------------------------------------------------- starting

    def spawn(self, spec: WorkerSpec, before_go: Callable[[Handle], None]) -> Handle:
        if self.location is None:
            raise OSError("this Ray executor only looks at jobs (it has no database to apply their updates to)")
        problem = rotate_log(spec.log_path, spec.log_max_bytes, spec.log_keep)
        if problem:
            spec.warn(problem)
        self.warn = spec.warn
        start, folder = _start_point(spec.cwd)
        try:
            snapshot = stream_snapshot(self.location.path, self.location.generation, spec.stream_id)
        except sqlite3.Error as error:
            raise OSError(f"its tasks could not be read for the job: {error}") from None
        name = safe_name(spec.stream_id)
        with self._lock:
            run = self._run_for(spec.base_branch)
            number = self.run.spawns.get(name, 0) + 1
            self.run.spawns[name] = number
            self.records.save_run(self.run)
        record = JobRecord(jobs.submission_id(run, name, number), run, spec.stream_id, name, spec.attempt,
                           secrets.token_hex(8), time.time(), str(spec.log_path), self.location.generation,
                           tuple(str(t.get("id")) for t in snapshot["tasks"]), SUBMITTING, where=SUBMITTING_WHERE)
        with open(spec.log_path, "ab") as log:
            log.write(spec.banner.encode("utf-8", "replace"))
            offset = log.tell()
        self.records.save_job(record)
        handle = _handle(record)
        try:
            before_go(handle)
        except BaseException:
            self.records.forget_job(record.sid)
            raise
        job = _Job(record, Output(spec.log_path, offset), spec.warn)
        with self._lock:
            self.jobs[spec.stream_id] = job
        _thread(f"ray-submit-{record.sid}", self._submit, job, spec, snapshot, start, folder, number)
        self._ensure_watcher()
        return handle

    def _run_for(self, base_branch: str) -> str:
        """This run's id: one per integration branch, kept across restarts, new for a new run."""
        if not self.run.run or self.run.base_branch != base_branch:
            self.run.run, self.run.base_branch, self.run.spawns = new_run_id(), base_branch, {}
        self.run.address = self.api.address
        return self.run.run

    def _submit(self, job: _Job, spec: WorkerSpec, snapshot: dict, start: str, folder: str, number: int) -> None:
        """Thread: everything a submit needs that talks to the network, then the submit itself."""
        record = job.record
        try:
            remote = self._remote()
            start_branch = self._publish(spec, start)
            argv, node = self._placement(spec)
            description = ray_job.describe(record.run, record.stream_id, record.name, record.attempt, record.token,
                                           remote, start, argv, spec.env, record.generation, snapshot, self.grace,
                                           branch=stream_branch(record.stream_id), folder=folder,
                                           start_branch=start_branch)
            body = ray_job.submission(description, self._runtime_package(), self.grace, node_id=node, number=number)
            self._trace(job, "submit")
            self._send(body)
        except (RayError, OSError, ValueError) as error:
            self._give_up(job, f"its job could not be submitted to the Ray cluster: {error}")
            return
        with self._lock:
            job.record = self.records.update_job(job.record, phase=SUBMITTED, pinned=node or "",
                                                 where=NOT_PLACED if not node else f"{NOT_PLACED} (its session's)")
            stop = job.stop_asked
        self._follow(job)
        if stop:
            self._stop_job(job.record.sid)

    def _send(self, body: dict) -> None:
        """Submit, again with the same id after no answer: a repeat is 'already exists', never a second job."""
        for attempt in range(SUBMIT_TRIES):
            try:
                self.api.submit(body)
                return
            except RayUnreachable:
                if attempt + 1 == SUBMIT_TRIES:
                    raise
                time.sleep(1.0 + attempt)

    def _remote(self) -> str:
        """The project's git remote as the nodes reach it (a local path made absolute), without a password."""
        if self._remote_url is None:
            self._remote_url = remote_url(self.layout.root, self.settings.push_remote)
        return self._remote_url

    def _publish(self, spec: WorkerSpec, start: str) -> str:
        """The commit the attempt starts from on the remote: the integration branch, and the stream's
        own branch when it is ahead (an earlier attempt's work). Pushed once per tip, never forced.
        The branch that holds `start` there, for the node to fetch only that ('' when neither does)."""
        project, remote = self.layout.root, self.settings.push_remote
        own = stream_branch(spec.stream_id)
        with self._push_lock:
            tip = bounded.rev(project, "refs/heads/" + spec.base_branch) if spec.base_branch else ""
            wanted = [b for b, commit in ((spec.base_branch, tip), (own, start))
                      if b and commit and self._pushed.get(b) != commit and (b != own or start != tip)]
            for result in push_branches(project, wanted, remote) if wanted else []:
                if result.ok:
                    self._pushed[result.branch] = result.commit
                elif result.branch == spec.base_branch:
                    raise OSError(f"the integration branch could not be pushed for the nodes: {result.reason}")
                # The stream's own branch refused (the remote's has moved): its start commit is on the
                # remote under the attempt ref it came from; if it is not, the node says so.
            return next((b for b in (spec.base_branch, own) if b and self._pushed.get(b) == start), "")

    def _runtime_package(self) -> str:
        with self._push_lock:
            if self._package is None:
                self._package = package.ensure_uploaded(self.api)
            return self._package

    def _placement(self, spec: WorkerSpec) -> Tuple[List[str], Optional[str]]:
        """The argv to run and the node to pin it to: a resumed session runs where it lives (a node's
        ~/.claude), or afresh when that node is gone."""
        if not spec.afresh:
            return list(spec.argv), None
        node = self.run.nodes.get(spec.stream_id, "")
        if node and jobs.node_alive(self.api.nodes(), node):
            return list(spec.argv), node
        spec.warn(f"{printable(spec.stream_id)}: the node that holds its session "
                  f"({node[:8] or 'unknown'}) is gone; starting a new session elsewhere")
        return list(spec.afresh), None

    def _follow(self, job: _Job) -> None:
        """The job's log copied into the stream's log, its task updates applied as they arrive."""
        if self.location is None or job.tail is not None:
            return
        record = job.record
        job.applier = Applier(self.location.path, record.generation,
                              JobIdentity(record.run, record.stream_id, record.attempt, record.token),
                              frozenset(record.task_ids), self.records.applied_path(record.sid))
        job.tail = LogTail(self.api, record.sid, Path(record.log), warn=job.warn,
                           on_line=lambda line: self._apply_line(job, line),
                           state_path=self.records.tail_path(record.sid)).start()

    def _apply_line(self, job: _Job, line: str) -> None:
        assert job.applier is not None
        record = job.record
        news = protocol.worker_line(line, record.run, record.stream_id, record.attempt, record.token)
        if news is not None:  # its worker has exited (and pushed): Ray reports the job's end within moments
            job.ending_at = job.ending_at or time.monotonic()
            if news["kind"] == "result":
                job.result = news
            self._trace(job, news["kind"], times=news.get("times"))
            self._wake.set()
            return
        outcome = job.applier.feed(line)
        if outcome is not None and outcome.status == "rejected":
            job.refused += 1
            if job.refused <= 3:
                job.warn(f"{printable(job.record.stream_id)}: a task update from its node was refused: "
                         f"{printable(outcome.reason, 200)}")

    # ---------------------------------------------------------------- watching

    def _ensure_watcher(self) -> None:
        with self._lock:
            if self._watcher is None or not self._watcher.is_alive():
                self._watcher = _thread("ray-watch", self._watch)

    def _watch(self) -> None:
        while True:
            with self._lock:
                busy = any(j.ended is None for j in self.jobs.values()) or bool(self.leftovers)
            if not busy:
                with self._lock:
                    self._watcher = None
                return
            self._watch_once()
            self._wake.wait(ENDING_SECONDS if self._ending() else WATCH_SECONDS)
            self._wake.clear()

    def _ending(self) -> bool:
        """Whether a job's worker has exited while Ray has not yet reported the job's end."""
        now = time.monotonic()
        with self._lock:
            return any(j.ending_at is not None and now - j.ending_at < ENDING_LIMIT and j.ended is None
                       and not j.collecting for j in self.jobs.values())

    def _watch_once(self) -> None:
        """One listing of the cluster's jobs, and what it means for each of ours."""
        try:
            listing = {info.submission_id: info for info in self.api.jobs()}
        except RayError as error:
            self._unreachable(error)
            return
        self._unreachable_since = None
        with self._lock:
            watched = [j for j in self.jobs.values() if j.ended is None and not j.collecting
                       and j.record.phase == SUBMITTED]
            leftovers = list(self.leftovers.values())
        for job in watched:
            self._look(job, listing.get(job.record.sid))
        for record in leftovers:
            self._tidy_leftover(record, listing.get(record.sid))

    def _look(self, job: _Job, info: Optional[JobInfo]) -> None:
        if info is None:
            job.missing += 1
            if job.missing >= MISSING_LIMIT:
                self._give_up(job, "Ray no longer knows its job (deleted by someone, or its submit never reached "
                                   "the cluster)")
            return
        job.missing, job.info = 0, info
        if info.node_id and info.node_id != job.record.node_id:
            self._placed(job, info.node_id)
        if info.ended:
            with self._lock:
                job.collecting = True
            self._trace(job, "ended", status=info.status)
            _thread(f"ray-collect-{job.record.sid}", self._collect, job)
        elif info.status == "PENDING":
            self._check_pending(job, info)

    def _placed(self, job: _Job, node_id: str) -> None:
        node = self._node(node_id)
        with self._lock:
            job.record = self.records.update_job(job.record, node_id=node_id,
                                                 where=node.describe() if node else f"node {node_id[:8]}")
            self.run.nodes[job.record.stream_id] = node_id  # where its session lives, for a resume
            self.records.save_run(self.run)

    def _node(self, node_id: str) -> Optional[NodeInfo]:
        if node_id not in self._nodes:
            try:
                self._nodes.update({n.node_id: n for n in self.api.nodes()})
            except RayError:
                return None
        return self._nodes.get(node_id)

    def _check_pending(self, job: _Job, info: JobInfo) -> None:
        """A job no node has taken within ray_pending_timeout: stopped, and a failed attempt."""
        limit = self.settings.ray_pending_timeout * 60
        waited = time.time() - job.record.started_at
        if not limit or waited < limit:
            return
        try:
            reason = jobs.pending_reason(info, self.api.nodes()) or info.message
        except RayError:
            reason = info.message
        self._stop_job(job.record.sid)
        why = f"no node took its Ray job within {limit / 60:g} min (ray_pending_timeout): {reason}"
        with self._lock:
            # Ray keeps a stopped job pending (for up to 15 minutes) and will not delete it until it ends.
            job.record = self.records.update_job(job.record, phase=LEFTOVER)
            self.leftovers[job.record.sid] = job.record
        self._finish(job, Ended(why=why), note=why)

    def _tidy_leftover(self, record: JobRecord, info: Optional[JobInfo]) -> None:
        if info is not None and not info.ended:
            return
        try:
            if info is not None:
                self.api.delete(record.sid)
        except RayError:
            return
        with self._lock:
            self.leftovers.pop(record.sid, None)
        self.records.forget_job(record.sid)

    def _unreachable(self, error: RayError) -> None:
        """The cluster did not answer: said once, and, past the stop deadline, the run no longer waits."""
        now = time.time()
        if self._unreachable_since is None:
            self._unreachable_since = now
            self._say(f"the Ray cluster did not answer: {error}; its jobs are watched again when it does")
        if self.deadline is not None and self.clock() > self.deadline + GIVE_UP_SECONDS:
            with self._lock:
                stuck = [j for j in self.jobs.values() if j.ended is None and not j.collecting]
            for job in stuck:  # its record stays: the next start adopts the job and brings its work back
                self._finish(job, Ended(why=f"the Ray cluster did not answer ({error}); its job is left to the "
                                            "next start"), keep=True)

    # ---------------------------------------------------------------- an ended job

    def _collect(self, job: _Job) -> None:
        """Thread: the job's last lines copied, its work fetched, Ray's copy deleted; then it has ended."""
        if job.tail is not None:
            job.tail.finish(TAIL_FINISH_SECONDS)
            self._trace(job, "log_copied")
        info = job.info
        assert info is not None
        if not self.following:  # only looking (`stop`): the next start brings its work back, then deletes it
            self._finish(job, ended_of(info), keep=True)
            return
        notes = self._bring_back(job)
        if notes is None:
            return
        self._trace(job, "fetched")
        for note in notes:
            job.warn(f"{printable(job.record.stream_id)}: {note}")
        try:
            self.api.delete(job.record.sid)
        except RayError as error:
            job.warn(f"{printable(job.record.stream_id)}: Ray's job {job.record.sid} could not be deleted: {error}")
        self._finish(job, ended_of(info), note=failure_note(job.record, info))

    def _bring_back(self, job: _Job) -> Optional[Tuple[str, ...]]:
        """The attempt's work into the local stream branch, tried until it works: a stream reported ended
        without its work would be merged without it. Only a stopping run, past its deadline, stops
        trying (None): the job's record stays, and the next start adopts it and tries again."""
        for tries in itertools.count():
            try:
                return bring_back(self.layout.root, self.settings.push_remote, job.record, job.applier,
                                  result=job.result).notes
            except (CollectError, RuntimeError, OSError) as error:
                if tries % 5 == 0:
                    job.warn(f"{printable(job.record.stream_id)}: its work could not be fetched yet ({error}); "
                             "trying again")
                if self.deadline is not None and self.clock() > self.deadline + GIVE_UP_SECONDS:
                    self._finish(job, Ended(why=f"its work could not be fetched ({error}); the next start tries "
                                                "again"), keep=True)
                    return None
                time.sleep(RETRY_SECONDS[min(tries, len(RETRY_SECONDS) - 1)])
        return None

    def _finish(self, job: _Job, ended: Ended, note: str = "", keep: bool = False) -> None:
        """The job has ended for the loop: said in its log if `note`, its state forgotten unless `keep`
        (a leftover, or work still on the remote for the next start)."""
        if job.tail is not None:
            job.tail.stop()
        if note:
            _append(job.output.path, f"\n[orchestrate-kit: {note}]\n")
        with self._lock:
            if job.ended is not None:
                return
            job.ended = ended
            if not keep and job.record.phase != LEFTOVER:
                self.records.forget_job(job.record.sid)
        self._trace(job, "reported")
        _wake_the_loop()

    def _give_up(self, job: _Job, why: str) -> None:
        self._finish(job, Ended(why=why), note=why)

    def _stop_job(self, sid: str) -> None:
        try:
            self.api.stop(sid)
        except RayError as error:
            self._say(f"Ray's job {sid} could not be stopped yet: {error}")

    def _trace(self, job: _Job, step: str, **fields) -> None:
        if self._trace_path is None:
            return
        line = json.dumps({"job": job.record.sid, "stream": job.record.stream_id, "step": step, "t": time.time(),
                           **fields})
        try:
            with open(self._trace_path, "a", encoding="utf-8") as handle:
                handle.write(line + "\n")
        except OSError:
            pass

    def _say(self, text: str) -> None:
        if text not in self._said:
            self._said.add(text)
            self.warn(text)

    # ---------------------------------------------------------------- after a restart

    def adopt(self, streams: Optional[AbstractSet[str]] = None) -> Adoption:
        records, notes = self.records.jobs()
        records = [r for r in records if streams is None or r.stream_id in streams]
        if not records:
            return Adoption(notes=tuple(notes))
        try:
            listing: Optional[Dict[str, JobInfo]] = {info.submission_id: info for info in self.api.jobs()}
        except RayError as error:
            listing = None
            notes.append(f"the Ray cluster did not answer ({error}); its jobs are watched as running until it does")
        live, ended = [], []
        for record in records:
            info = listing.get(record.sid) if listing is not None else None
            if record.phase == LEFTOVER:
                with self._lock:
                    self.leftovers[record.sid] = record
                continue
            if listing is not None and info is None:  # the orchestrator died before its submit got through
                self.records.forget_job(record.sid)
                ended.append((_handle(record), Ended(why="its Ray job was never submitted (or was deleted)")))
                continue
            log = Path(record.log)
            job = _Job(replace_phase(record), Output(log, _size(log)), self.warn, info=info)
            with self._lock:
                self.jobs[record.stream_id] = job
            self._follow(job)
            live.append(_handle(job.record))
        if live or self.leftovers:
            self._ensure_watcher()
        return Adoption(tuple(live), tuple(ended), tuple(notes))

    # ---------------------------------------------------------------- the interface's reads

    def live(self) -> Dict[str, Handle]:
        """Every job whose end the loop has not taken yet (an ended one until its `poll` reports it)."""
        with self._lock:
            return {sid: _handle(job.record) for sid, job in self.jobs.items()}

    def poll(self, handle: Handle) -> Optional[Ended]:
        with self._lock:
            job = self.jobs.get(handle.stream_id)
            if job is None or job.record.sid != handle.key:
                return Ended(why="no such worker")
            if job.ended is None:
                return None
            del self.jobs[handle.stream_id]
            return job.ended

    def output(self, handle: Handle) -> Output:
        with self._lock:
            job = self.jobs.get(handle.stream_id)
        if job is not None and job.record.sid == handle.key:
            return job.output
        log = self.layout.log_for(handle.stream_id)
        return Output(log, _size(log))

    def terminate(self, handle: Handle) -> None:
        """Ray's stop, in a thread: TERM to the remote worker, which ends the agent's tree and pushes."""
        with self._lock:
            job = self.jobs.get(handle.stream_id)
            if job is None or job.record.sid != handle.key or job.ended is not None:
                return
            job.stop_asked = True
            submitted = job.record.phase == SUBMITTED
        if submitted:  # one being submitted is stopped as soon as its submit is through
            _thread(f"ray-stop-{handle.key}", self._stop_job, handle.key)

    def kill(self, handle: Handle) -> None:
        """Stop again: the remote worker reaps its own tree (Ray KILLs it after our grace and the push)."""
        self.terminate(handle)

    def tick(self) -> Optional[float]:
        return None  # the threads do the work; one with news wakes the loop

    def cleaning_up(self) -> AbstractSet[str]:
        return frozenset()  # a job is reported ended only once nothing of it is left to collect

    def shutdown(self, deadline: float) -> None:
        self.deadline = deadline if self.deadline is None else min(self.deadline, deadline)
        self._wake.set()

    def wait_idle(self, timeout: float) -> bool:
        """For commands (never the loop): until no thread has work in flight, at most `timeout` s."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self._lock:
                if self._watcher is None:
                    return True
            time.sleep(0.05)
        return False


# ---------------------------------------------------------------- small parts


def replace_phase(record: JobRecord) -> JobRecord:
    """An adopted job is watched as submitted: a record left mid-submit whose job Ray has, was submitted."""
    return replace(record, phase=SUBMITTED) if record.phase == SUBMITTING else record


def ended_of(info: JobInfo) -> Ended:
    """How an ended job's attempt ended, as numbers (the supervisor judges it as it judges a local exit)."""
    if info.status == "STOPPED":
        return Ended(signal=signal.SIGTERM)
    if info.exit_code is not None:
        return Ended(exit_code=info.exit_code)
    if info.status == "SUCCEEDED":
        return Ended(exit_code=0)
    return Ended(why=f"its Ray job failed without an exit code (its node lost?): {printable(info.message, 200)}")


def recorded_jobs(layout: "Layout") -> Dict[str, Handle]:
    """Read only, no network (`status`, `plan`): the jobs the records show, by stream, with their nodes."""
    return {record.stream_id: _handle(record) for record in read_jobs(layout.state / "ray")}


def failure_note(record: JobRecord, info: JobInfo) -> str:
    """For the stream's log (its last line, which an exit's reason quotes): why a job failed, as Ray says."""
    if info.status != "FAILED":
        return ""
    return f"its Ray job {record.sid} failed on {record.where or 'its node'}: {printable(info.message, 300)}"


def _handle(record: JobRecord) -> Handle:
    details = (("job", record.sid),) + ((("node", record.node_id),) if record.node_id else ())
    return Handle(record.stream_id, record.attempt, record.sid, record.started_at, record.where or NOT_PLACED, details)


def remote_url(project: Path, remote: str) -> str:
    """The URL the nodes fetch from and push to: `git remote get-url`, a local path made absolute;
    refused with the fix when it holds a password (a job's description is readable by anyone who may
    list the cluster's jobs)."""
    done = bounded.git(project, "remote", "get-url", remote)
    if not done.ok:
        raise OSError(f"the project has no git remote {remote!r} for the nodes to fetch from (push_remote): "
                      f"{done.reason()}")
    url = done.stdout.strip()
    if "://" not in url and not _scp_like(url):
        url = str((Path(project) / url).resolve())
    return ray_job.public_remote(url)


def _scp_like(url: str) -> bool:
    """`host:path` (git's scp-like syntax), as opposed to a local path."""
    head = url.split("/", 1)[0]
    return ":" in head and not (len(head) == 2 and head[0].isalpha())  # not a Windows drive letter


def _start_point(cwd: Path) -> Tuple[str, str]:
    """The commit the stream's folder is at, and that folder within its repository (a monorepo's project)."""
    done = bounded.git(cwd, "rev-parse", "HEAD", "--show-prefix")
    lines = done.stdout.splitlines()
    if not done.ok or not lines:
        raise OSError(f"{cwd} is not a git checkout with a commit ({done.reason()}); executor = ray needs worktree "
                      "isolation")
    return lines[0].strip(), (lines[1].strip() if len(lines) > 1 else "")


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _append(path: Path, text: str) -> None:
    try:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(text)
    except OSError:
        pass


def _thread(name: str, target: Callable, *args) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, name=name, daemon=True)
    thread.start()
    return thread


def _wake_the_loop() -> None:
    """As a local worker's exit does: the supervisor's loop wakes on SIGCHLD (elsewhere it is ignored)."""
    try:
        os.kill(os.getpid(), signal.SIGCHLD)
    except OSError:
        pass
