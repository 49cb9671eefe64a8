"""The loop's side of the observed git steps (steps.py): start one as a child process, look at it each turn.

    start(key, name, args, deadline)   a child `python3 -m _orchestrate_kit.git.steps` in a session of
                                       its own, its request on stdin, its answer in a temporary file
    finished()                         the steps that have ended since: (key, result) pairs, a step past
                                       its deadline ended with its whole process group ({"error": ...})
    running(key) / keys()              what still runs
    stop(until, spare)                 KILL every step (shutdown), except that the steps `spare` names run
                                       on until `until` (a merge: see merging.Merger.stop); `keys()` is
                                       empty once they are reaped

Nothing here waits: a step's exit wakes the loop (SIGCHLD, like a worker's) and the next turn
reads its answer. A step's answer is one JSON object; an answer that cannot be read is an
{"error"} like any other failure, so a step can never crash the loop. Standard library only.

How a step's process is made: while the orchestrator has only its own thread (the local
executor), a step is a fork of it that runs the step and `_exit`s: the modules are imported
already, so a hand-off pays a fork (a few milliseconds) instead of a Python start-up and the
imports (about 0.15 s of CPU here, twice a hand-off: its merge and the next worktree). The fork
makes a session of its own, puts the loop's signal handlers and wakeup fd back to the defaults,
and closes every inherited descriptor (an orphaned step must not hold the project's locks). With
other threads running (the Ray executor's watchers) a fork could inherit a lock one of them
holds, so the step is a fresh `python3 -m _orchestrate_kit.git.steps` instead.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

RUNTIME = Path(__file__).resolve().parents[2]  # the folder that holds _orchestrate_kit
ANSWER_LIMIT = 4 * 1024 * 1024  # bytes of a step's answer read back
# A step is stdlib-only: no `site` (-S), whose .pth files cost tens of milliseconds on some Pythons
# at every worktree and merge, and none of the environment's PYTHON* variables (-E).


class _Forked:
    """A step forked from the orchestrator, seen as a Popen is: its pid (its session's id too), poll()
    and returncode."""

    def __init__(self, pid: int):
        self.pid = pid
        self.returncode: Optional[int] = None

    def poll(self) -> Optional[int]:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped by someone else: how it ended is not known
                self.returncode = 255
                return self.returncode
            if pid == self.pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode


Process = Union[subprocess.Popen, _Forked]


@dataclass
class _Step:
    process: Process
    answer: IO[bytes]
    deadline: float
    name: str
    ended: str = ""  # why we ended it ("" while it ran on its own)
    late: str = ""  # why it is ended at its deadline ("" : it did not finish in time)


class Stepper:
    """The observed steps of one orchestrator, by key (a stream id, or a name such as "poll")."""

    def __init__(self, clock: Callable[[], float], fork: Optional[bool] = None):
        self.clock = clock
        self.fork = fork  # None: fork while this process has one thread (`forking`); tests choose
        self.steps: Dict[str, _Step] = {}

    def start(self, key: str, name: str, args: Mapping[str, Any], timeout: float) -> None:
        """Start step `name`; its result comes out of `finished()` under `key`. Raises OSError."""
        answer = tempfile.TemporaryFile()
        try:
            fork = forking() if self.fork is None else self.fork
            process = _fork(name, args, answer.fileno()) if fork else _python(name, args, answer)
        except OSError:
            answer.close()
            raise
        self.steps[key] = _Step(process, answer, self.clock() + timeout, name)

    def running(self, key: str) -> bool:
        return key in self.steps

    def keys(self) -> Tuple[str, ...]:
        return tuple(self.steps)

    def next_deadline(self) -> float:
        return min((s.deadline for s in self.steps.values() if not s.ended), default=float("inf"))

    def finished(self) -> List[Tuple[str, Dict[str, Any]]]:
        """The steps that have ended, with their answers; a step past its deadline is ended first."""
        done = []
        now = self.clock()
        for key, step in list(self.steps.items()):
            if step.process.poll() is None:
                if now >= step.deadline and not step.ended:
                    step.ended = step.late or f"the {step.name} step did not finish in time and was ended"
                    _kill_group(step.process)
                continue
            del self.steps[key]
            stopped = {"stopped": True} if step.ended.endswith("the run is stopping") else {}
            done.append((key, {"error": step.ended, **stopped} if step.ended else _answer(step)))
            step.answer.close()
        return done

    def stop(self, until: float = 0.0, spare: Callable[[str], bool] = lambda key: False) -> None:
        """End every step (the run is stopping); their results are errors, read at the next turns. A
        step `spare` names may end on its own until `until`, and is ended then; called again, nothing
        more happens."""
        for key, step in self.steps.items():
            if step.process.poll() is not None or step.ended:
                continue
            stopping = f"the {step.name} step was ended: the run is stopping"
            if spare(key) and self.clock() < until:
                step.deadline, step.late = min(step.deadline, until), stopping
                continue
            step.ended = stopping
            _kill_group(step.process)


def forking() -> bool:
    """Whether a step is a fork of this process: where fork exists and no other thread could hold a lock."""
    return hasattr(os, "fork") and threading.active_count() == 1


def _python(name: str, args: Mapping[str, Any], answer: IO[bytes]) -> subprocess.Popen:
    """The step in a Python of its own, its request on stdin."""
    process = subprocess.Popen([sys.executable, "-E", "-S", "-m", "_orchestrate_kit.git.steps"], cwd=str(RUNTIME),
                               stdin=subprocess.PIPE, stdout=answer, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        assert process.stdin is not None
        process.stdin.write(json.dumps({"step": name, "args": dict(args)}).encode())
        process.stdin.close()  # a request is small: the pipe takes it whole
    except OSError:
        pass  # it died at once: its answer says so
    return process


def _fork(name: str, args: Mapping[str, Any], answer: int) -> _Forked:
    """The step in a fork of this process; the child never returns from here."""
    pid = os.fork()
    if pid:
        return _Forked(pid)
    code = 1
    try:
        _become_step(answer)
        from . import steps

        result = steps.run_step(name, args)
        _write_all(1, (json.dumps(result) + "\n").encode())
        code = 1 if "error" in result else 0
    except BaseException:  # noqa: B036 - whatever happens, the child must not go on as the orchestrator
        pass  # no answer: the loop reads "ended without an answer"
    finally:
        os._exit(code)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


def _become_step(answer: int) -> None:
    """In the fork: a session of its own, default signal handling, the answer file as stdout, and none
    of the orchestrator's descriptors (its locks, the database, the wakeup pipe)."""
    os.setsid()
    try:
        signal.set_wakeup_fd(-1)
    except ValueError:  # forked from a thread other than the main one: it had none to put back
        pass
    for sig in (signal.SIGCHLD, signal.SIGUSR1, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(answer, 1)
    os.dup2(null, 2)
    for fd in _open_descriptors():
        if fd > 2:
            try:
                os.close(fd)
            except OSError:
                pass


def _open_descriptors() -> List[int]:
    for folder in ("/proc/self/fd", "/dev/fd"):
        try:
            return [int(name) for name in os.listdir(folder)]
        except (OSError, ValueError):
            continue
    return list(range(3, 1024))


def _kill_group(process: Process) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)  # its session: git and whatever git started (ssh, a hook)
    except ProcessLookupError:  # a fork killed before it made its session: the process alone
        try:
            os.kill(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    except PermissionError:
        pass


def _answer(step: _Step) -> Dict[str, Any]:
    step.answer.seek(0)
    text = step.answer.read(ANSWER_LIMIT).decode("utf-8", "replace").strip().splitlines()
    try:
        result = json.loads(text[-1]) if text else None
    except ValueError:
        result = None
    if not isinstance(result, dict):
        return {"error": f"the {step.name} step ended ({_how(step.process.returncode)}) without an answer"}
    return result


def _how(code: Optional[int]) -> str:  # read once it has exited: never None here
    return f"signal {-code}" if code is not None and code < 0 else f"exit status {code}"
