"""The executor interface: what starts, signals and observes a worker, whatever runs it.

The supervisor, `status`, the offline `stop` and the merge check know workers
only through this interface: a `WorkerSpec` goes in, an opaque `Handle` comes
out, and `poll` says how the worker ended as numbers (`Ended`). How a worker is
identified (local processes: pid + start time + a token, pid files, process
groups, what an ended worker left running) is each executor's own business.

    spawn(spec, before_go) -> Handle   start one attempt; `before_go(handle)` runs before the
                                        worker's command does (the caller records it there)
    poll(handle) -> Ended | None       None while it runs; answers from what the last `tick` learnt
                                        where asking is costly (a cluster lists its jobs once a tick)
    terminate(handle), kill(handle)    ask it to end (TERM), end it (KILL); both return at once
    adopt(streams) -> Adoption         after a restart: the executor's own records of workers an
                                        earlier orchestrator started (live, or ended meanwhile)
    live() -> {stream: Handle}         the workers it runs now, one per stream
    output(handle) -> Output           the local log file and where this attempt's output starts
                                        (a cluster executor copies its job's log tail there)
    tick() -> when                     its own housekeeping, once a turn, never blocking; returns
                                        when it wants the next turn at the latest (None: no need)
    cleaning_up() -> streams           streams whose ended attempt still has something being ended
                                        (it could still write): neither respawned nor merged yet
    shutdown(deadline)                 the run is stopping: whatever it still ends is gone by then

`LocalExecutor` (local.py) runs workers as local process groups; `RayExecutor`
(ray/executor.py, `executor = ray`) as jobs on a Ray cluster's nodes. Nothing here may
block the supervisor's loop. Standard library only, Python 3.9+.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, AbstractSet, Callable, Dict, List, Mapping, Optional, Protocol, Tuple, Union

from ..logfiles import DEFAULT_KEEP, DEFAULT_MAX_BYTES

if TYPE_CHECKING:
    from ..settings import Layout, Settings
    from ..trackers import DatabaseLocation

Detail = Union[int, str]


@dataclass(frozen=True)
class WorkerSpec:
    """Everything needed to start one attempt of one stream."""

    stream_id: str
    attempt: int
    argv: List[str]
    env: Dict[str, str]
    cwd: Path
    log_path: Path
    banner: str  # written to the log before the worker's own output
    log_max_bytes: int = DEFAULT_MAX_BYTES  # the log is rotated before this attempt beyond this size
    log_keep: int = DEFAULT_KEEP
    warn: Callable[[str], None] = lambda _message: None
    # What an executor that runs workers elsewhere needs besides `cwd` (the local executor ignores both):
    base_branch: str = ""  # the branch the worker's folder was made from (worktree isolation: the integration branch)
    afresh: Tuple[str, ...] = ()  # argv that starts a new session instead, where `argv` resumes one that is unreachable


@dataclass(frozen=True)
class Handle:
    """One started attempt, as the supervisor holds it: it never looks inside `key`."""

    stream_id: str
    attempt: int
    key: str  # the executor's own identifier (local: pid and start time; a cluster: its job id)
    started_at: float  # unix seconds
    where: str  # a few words for people: "pid 4242", a node's name
    details: Tuple[Tuple[str, Detail], ...] = ()  # the executor's own facts for `status --json`

    def detail(self, name: str) -> Optional[Detail]:
        return dict(self.details).get(name)


@dataclass(frozen=True)
class Ended:
    """How a worker ended: its exit code, or the signal that ended it, or neither when that is unknown
    (`why` says why: an adopted worker that was not our child, a record lost while no orchestrator ran)."""

    exit_code: Optional[int] = None
    signal: Optional[int] = None
    why: str = ""

    @property
    def known(self) -> bool:
        return self.exit_code is not None or self.signal is not None

    @property
    def returncode(self) -> Optional[int]:
        """As subprocess has it: the code, minus the signal, or None when unknown."""
        if self.exit_code is not None:
            return self.exit_code
        return -self.signal if self.signal is not None else None

    def describe(self) -> str:
        """'code 1', 'signal 9', 'unknown code (ended while no orchestrator ran)'."""
        if self.exit_code is not None:
            return f"code {self.exit_code}"
        if self.signal is not None:
            return f"signal {self.signal}"
        return f"unknown code ({self.why})" if self.why else "unknown code"


@dataclass(frozen=True)
class Adoption:
    """What an executor's own records say after an orchestrator restart."""

    live: Tuple[Handle, ...] = ()  # still running: now ours to watch and end
    ended: Tuple[Tuple[Handle, Ended], ...] = ()  # ended while no orchestrator ran
    notes: Tuple[str, ...] = ()  # records it could not read and dropped, one line each


@dataclass(frozen=True)
class Output:
    """Where a worker's output can be read as it grows: a local file, from `offset`."""

    path: Path
    offset: int


class Executor(Protocol):
    """What the supervisor needs of an engine that runs workers (see the module's docstring)."""

    def spawn(self, spec: WorkerSpec, before_go: Callable[[Handle], None]) -> Handle:
        """Start a worker; OSError (or the error `before_go` raised) with nothing left running."""
        ...

    def poll(self, handle: Handle) -> Optional[Ended]:
        ...

    def terminate(self, handle: Handle) -> None:
        ...

    def kill(self, handle: Handle) -> None:
        ...

    def adopt(self, streams: Optional[AbstractSet[str]] = None) -> Adoption:
        """Take over what the records show (of `streams` only, when given)."""
        ...

    def live(self) -> Mapping[str, Handle]:
        ...

    def output(self, handle: Handle) -> Output:
        ...

    def tick(self) -> Optional[float]:
        ...

    def cleaning_up(self) -> AbstractSet[str]:
        ...

    def shutdown(self, deadline: float) -> None:
        ...


# ---------------------------------------------------------------- which executor runs this project's workers


def open_executor(layout: "Layout", grace: float, clock: Callable[[], float], settings: Optional["Settings"] = None,
                  location: Optional["DatabaseLocation"] = None) -> Executor:
    """The executor for this project's workers: local processes, or jobs on a Ray cluster when the
    `executor` setting says ray or Ray jobs of a run are still recorded (so `stop` finds them).
    Without `location` (a command such as `stop`) a Ray executor only looks at and stops its jobs."""
    from ..settings import UserError, load_settings

    settings = settings if settings is not None else load_settings(layout.config_files())
    if settings.executor == "ray" or ray_jobs_recorded(layout):
        from dataclasses import replace

        from .ray.executor import RayExecutor
        from .ray.jobs import RayError

        try:
            return RayExecutor(layout, replace(settings, stop_grace=grace), clock, location)
        except RayError as error:
            raise UserError(f"the Ray cluster cannot be used: {error}") from None
    from .local import LocalExecutor

    return LocalExecutor(layout.pids, layout.log_for, grace, clock)


def ray_jobs_recorded(layout: "Layout") -> bool:
    """Whether the Ray executor's records show jobs (one listing of a folder: no network)."""
    try:
        return any(p.name.endswith(".json") for p in (layout.state / "ray" / "jobs").iterdir())
    except OSError:
        return False


def open_check_executor(layout: "Layout", grace: float, clock: Callable[[], float]) -> Executor:
    """Where merge checks run: always here, beside the integration worktree, recorded apart from workers."""
    from .local import LocalExecutor

    return LocalExecutor(layout.pids / "checks", layout.log_for, grace, clock)


def read_workers(layout: "Layout") -> Dict[str, Handle]:
    """Read only: the workers the executors' records show running now, by stream (`status`, `plan`):
    local processes that are alive, and the Ray jobs recorded (with the node each runs on)."""
    from .local import recorded_workers

    workers = recorded_workers(layout.pids)
    if ray_jobs_recorded(layout):
        from .ray.executor import recorded_jobs

        workers.update({sid: handle for sid, handle in recorded_jobs(layout).items() if sid not in workers})
    return workers
