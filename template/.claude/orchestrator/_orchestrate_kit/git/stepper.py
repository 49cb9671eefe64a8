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
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Dict, List, Mapping, Tuple

RUNTIME = Path(__file__).resolve().parents[2]  # the folder that holds _orchestrate_kit
ANSWER_LIMIT = 4 * 1024 * 1024  # bytes of a step's answer read back
# A step is stdlib-only: no `site` (-S), whose .pth files cost tens of milliseconds on some Pythons
# at every worktree and merge, and none of the environment's PYTHON* variables (-E).


@dataclass
class _Step:
    process: subprocess.Popen
    answer: IO[bytes]
    deadline: float
    name: str
    ended: str = ""  # why we ended it ("" while it ran on its own)
    late: str = ""  # why it is ended at its deadline ("" : it did not finish in time)


class Stepper:
    """The observed steps of one orchestrator, by key (a stream id, or a name such as "poll")."""

    def __init__(self, clock: Callable[[], float]):
        self.clock = clock
        self.steps: Dict[str, _Step] = {}

    def start(self, key: str, name: str, args: Mapping[str, Any], timeout: float) -> None:
        """Start step `name`; its result comes out of `finished()` under `key`. Raises OSError."""
        answer = tempfile.TemporaryFile()
        try:
            process = subprocess.Popen([sys.executable, "-E", "-S", "-m", "_orchestrate_kit.git.steps"], cwd=str(RUNTIME),
                                       stdin=subprocess.PIPE, stdout=answer, stderr=subprocess.DEVNULL,
                                       start_new_session=True)
        except OSError:
            answer.close()
            raise
        try:
            assert process.stdin is not None
            process.stdin.write(json.dumps({"step": name, "args": dict(args)}).encode())
            process.stdin.close()  # a request is small: the pipe takes it whole
        except OSError:
            pass  # it died at once: its answer says so
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


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)  # its session: git and whatever git started (ssh, a hook)
    except (ProcessLookupError, PermissionError):
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


def _how(code: int) -> str:
    return f"signal {-code}" if code < 0 else f"exit status {code}"
