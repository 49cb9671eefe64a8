"""An in-memory executor for the loop tests: the `Executor` interface with workers as entries in a dict.

Nothing runs. The test says how and when each worker ends (`exit`, `die`), which
ones ignore TERM (`deaf`), which leave something behind that is still being ended
(`leave_behind`), and what the records of an earlier orchestrator show (`recorded`).
Every call the supervisor makes is logged in `calls`, in order. Output is a real
log file per stream (the supervisor reads it as it would a real worker's), written
with `say`.
"""

from __future__ import annotations

from pathlib import Path
from typing import AbstractSet, Callable, Dict, List, Optional, Set, Tuple

from tests.runtime.runtime_import import executor_api as ex

BANNER = "=== fake worker ===\n"


class FakeExecutor:
    """Implements executor.Executor (checked in tests/runtime/test_executor_interface.py)."""

    def __init__(self, clock: Callable[[], float], logs: Path):
        self.clock, self.logs = clock, logs
        self.calls: List[tuple] = []
        self.running: Dict[str, ex.Handle] = {}
        self.outputs: Dict[str, ex.Output] = {}
        self.endings: Dict[str, ex.Ended] = {}  # how a live worker has ended, seen at the next poll
        self.deaf: Set[str] = set()  # streams whose workers ignore TERM (only KILL ends them)
        self.leaves: Set[str] = set()  # streams whose next ended worker leaves something being ended
        self.left: Dict[str, Optional[float]] = {}  # streams cleaning up -> when a shutdown ends it (None: never)
        self.gone: Set[str] = set()  # leftovers that have ended, unseen until the next tick
        self.deadline: Optional[float] = None
        self.recorded_live: List[ex.Handle] = []  # what adopt() finds still running
        self.recorded_ended: List[Tuple[ex.Handle, ex.Ended]] = []  # ... and ended while no orchestrator ran
        self.spawned = 0
        self.specs: Dict[str, ex.WorkerSpec] = {}  # each stream's latest spawn (its argv holds the prompt)
        self.refuse: Optional[OSError] = None  # the next spawn fails with this

    # ---------------------------------------------------------------- what the test says

    def exit(self, sid: str, code: int = 0) -> None:
        self.endings[sid] = ex.Ended(exit_code=code)

    def die(self, sid: str, signal: int = 9) -> None:
        self.endings[sid] = ex.Ended(signal=signal)

    def say(self, sid: str, *lines: str) -> None:
        """The worker writes lines to its log (stream-json or text, as the supervisor parses it)."""
        with open(self.outputs[sid].path, "a", encoding="utf-8") as log:
            log.write("".join(line + "\n" for line in lines))

    def leave_behind(self, sid: str) -> None:
        self.leaves.add(sid)

    def left_gone(self, sid: str) -> None:
        """What the stream's ended worker left has ended (the next tick finds it gone, as a sweep would)."""
        self.gone.add(sid)

    def recorded(self, sid: str, attempt: int, alive: bool = True) -> ex.Handle:
        handle = ex.Handle(sid, attempt, f"recorded-{sid}", self.clock(), f"fake worker of {sid}")
        if alive:
            self.recorded_live.append(handle)
        else:
            self.recorded_ended.append((handle, ex.Ended(why="ended while no orchestrator ran")))
        return handle

    def ended_unseen(self) -> bool:
        """A live worker has ended and no poll has seen it yet (its SIGCHLD would wake the loop)."""
        return any(sid in self.running for sid in self.endings)

    def spawns(self) -> List[Tuple[str, int]]:
        return [(call[1], call[2]) for call in self.calls if call[0] == "spawn"]

    def sent(self, kind: str) -> List[str]:
        return [call[1] for call in self.calls if call[0] == kind]

    # ---------------------------------------------------------------- the interface

    def spawn(self, spec: ex.WorkerSpec, before_go: Callable[[ex.Handle], None]) -> ex.Handle:
        if self.refuse is not None:
            error, self.refuse = self.refuse, None
            raise error
        self.spawned += 1
        handle = ex.Handle(spec.stream_id, spec.attempt, f"fake-{self.spawned}", self.clock(),
                           f"fake worker {self.spawned}", (("pid", 40000 + self.spawned),))
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(spec.log_path, "a", encoding="utf-8") as log:
            log.write(spec.banner + BANNER)
            offset = log.tell()
        before_go(handle)
        self.calls.append(("spawn", spec.stream_id, spec.attempt))
        self.specs[spec.stream_id] = spec
        self.running[spec.stream_id] = handle
        self.outputs[spec.stream_id] = ex.Output(spec.log_path, offset)
        return handle

    def poll(self, handle: ex.Handle) -> Optional[ex.Ended]:
        if self.running.get(handle.stream_id) != handle:
            return ex.Ended(why="no such worker")
        ended = self.endings.pop(handle.stream_id, None)
        if ended is not None:
            del self.running[handle.stream_id]
            if handle.stream_id in self.leaves:
                self.leaves.discard(handle.stream_id)
                self.left[handle.stream_id] = self.deadline
        return ended

    def terminate(self, handle: ex.Handle) -> None:
        self.calls.append(("terminate", handle.stream_id))
        if handle.stream_id not in self.deaf:
            self.endings.setdefault(handle.stream_id, ex.Ended(signal=15))

    def kill(self, handle: ex.Handle) -> None:
        self.calls.append(("kill", handle.stream_id))
        self.endings[handle.stream_id] = ex.Ended(signal=9)

    def adopt(self, streams: Optional[AbstractSet[str]] = None) -> ex.Adoption:
        live = tuple(h for h in self.recorded_live if streams is None or h.stream_id in streams)
        ended = tuple((h, e) for h, e in self.recorded_ended if streams is None or h.stream_id in streams)
        for handle in live:
            self.running[handle.stream_id] = handle
            log = self.logs / f"{handle.stream_id}.log"
            self.outputs[handle.stream_id] = ex.Output(log, log.stat().st_size if log.exists() else 0)
        return ex.Adoption(live, ended)

    def live(self) -> Dict[str, ex.Handle]:
        return dict(self.running)

    def output(self, handle: ex.Handle) -> ex.Output:
        return self.outputs[handle.stream_id]

    def tick(self) -> Optional[float]:
        now = self.clock()
        for sid in self.gone:
            self.left.pop(sid, None)
        self.gone.clear()
        for sid, until in list(self.left.items()):
            if until is not None and until <= now:
                del self.left[sid]  # KILLed at the shutdown's deadline
        dues = [until for until in self.left.values() if until is not None]
        return min(dues) if dues else None

    def cleaning_up(self) -> AbstractSet[str]:
        return frozenset(self.left)

    def shutdown(self, deadline: float) -> None:
        if self.deadline is None or deadline < self.deadline:
            self.calls.append(("shutdown", deadline))
        self.deadline = deadline if self.deadline is None else min(self.deadline, deadline)
        self.left = {sid: self.deadline for sid in self.left}
