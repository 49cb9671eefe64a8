"""Requests to a running orchestrator: `start STREAM`, `stop STREAM`, `stop` (shutdown), `--retry-failed`.

A request is a JSON file written atomically into the state folder's `requests/`,
announced with SIGUSR1 (and SIGCONT, in case the orchestrator was stopped); the
orchestrator answers in a `.reply` file beside it. Both ends are here.

The review gate's requests (cli/review.py sends them once the step is in the stream's review
record, git/gates.py, so they only wake the orchestrator: the record is what it acts on):
    {"action": "approve", "streams": [STREAM], "commit": SHA}
        merge exactly SHA (the reviewed commit; `gates.approve` checked the binding)
    {"action": "reject", "streams": [STREAM], "commit": SHA, "reason": TEXT}
        hand STREAM back to its agent with TEXT (`gates.review_feedback_text`)
The orchestrator only answers them: each turn it reads the review records of the streams
awaiting review (git/gating.py). One without gates answers "unknown request 'approve'"; the
command then says that the next `start` acts on the record.
Standard library only.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Collection, List, Optional, Tuple

from . import atomic
from .executor.processes import PidRecord
from .names import printable
from .settings import EXIT_STUCK, Layout, UserError

REQUEST_TIMEOUT = 10.0  # seconds a running orchestrator has to answer a request


def post_request(layout: Layout, orchestrator: PidRecord, payload: dict) -> Path:
    """Write a request where the running orchestrator reads it (atomically: it never sees half a
    file), continue it if it was stopped, and wake it. Raises OSError when it cannot be written."""
    layout.requests.mkdir(parents=True, exist_ok=True)
    name = f"{time.time():.6f}-{secrets.token_hex(4)}"
    path = layout.requests / f"{name}.json"
    atomic.write_text(path, json.dumps(payload))
    os.kill(orchestrator.pid, signal.SIGCONT)
    os.kill(orchestrator.pid, signal.SIGUSR1)
    return path


def send_request(layout: Layout, orchestrator: PidRecord, payload: dict) -> str:
    """Hand a request to the running orchestrator and return its answer."""
    path = post_request(layout, orchestrator, payload)
    reply = path.with_suffix(".reply")
    deadline = time.monotonic() + REQUEST_TIMEOUT
    while time.monotonic() < deadline:
        if reply.exists():
            try:
                message = json.loads(reply.read_text(encoding="utf-8"))["message"]
            except (OSError, ValueError, KeyError, TypeError):
                time.sleep(0.05)  # written but not complete yet
                continue
            reply.unlink()
            return f"Handed to the running orchestrator (pid {orchestrator.pid}): {message}."
        if not orchestrator.is_alive():
            break
        time.sleep(0.05)
    try:
        path.unlink()
    except OSError:
        pass
    raise UserError(f"the running orchestrator (pid {orchestrator.pid}) did not answer; "
                    "see `orchestrate.py logs orchestrator`", EXIT_STUCK)


# ---------------------------------------------------------------- the orchestrator's end


@dataclass(frozen=True)
class Request:
    """One request file waiting for the running orchestrator."""

    path: Path

    def read(self) -> dict:
        """The request; raises OSError or ValueError when it cannot be read."""
        data = json.loads(self.path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return data

    def answer(self, message: str) -> None:
        """Write the reply the requesting command waits for, and remove the request."""
        try:
            self.path.with_suffix(".reply").write_text(json.dumps({"message": message}), encoding="utf-8")
        except OSError:
            pass
        try:
            self.path.unlink()
        except OSError:
            pass


def pending_requests(layout: Layout) -> List[Request]:
    """Requests written so far, oldest first (their names start with the time they were made)."""
    try:
        names = sorted(p for p in os.listdir(layout.requests) if p.endswith(".json"))
    except OSError:
        return []
    return [Request(layout.requests / name) for name in names]


def serve_requests(layout: Layout, answer: Callable[[dict], str]) -> None:
    """Answer every waiting request with what `answer` makes of it; one that cannot be read is told so."""
    for request in pending_requests(layout):
        try:
            reply = answer(request.read())
        except (OSError, ValueError, TypeError, KeyError) as exc:
            reply = f"the request could not be read: {exc}"
        request.answer(reply)


@dataclass(frozen=True)
class Asked:
    """What a request asks of the running orchestrator, and the reply that says so."""

    reply: str
    shutdown: Optional[float] = None  # stop the run, with this grace
    release: Tuple[str, ...] = ()  # run these again with a fresh restart budget (they join the run's targets)
    retry: Tuple[str, ...] = ()  # failed streams to run again with a fresh restart budget
    hold: Tuple[str, ...] = ()  # stop these (TERM, KILL after `grace`) and keep them stopped
    grace: float = 0.0


def asked(request: dict, known: Collection[str], failed: Collection[str], default_grace: float) -> Asked:
    """Read one request against the streams the orchestrator knows and those that failed. Raises
    KeyError, TypeError or ValueError for a request that is not one."""
    action = request["action"]
    streams = tuple(str(s) for s in request.get("streams", []))
    grace = float(request.get("grace") or default_grace)
    if action == "shutdown":
        return Asked("stopping", shutdown=grace)
    unknown = [s for s in streams if s not in known]
    if unknown:
        return Asked("unknown stream(s): " + ", ".join(printable(s) for s in unknown))
    named = ", ".join(printable(s) for s in streams)
    if action == "start":
        return Asked(f"the running orchestrator lifted any stop on {named}, reset its restart budget and runs it "
                     "as its dependencies allow", release=streams)
    if action == "retry_failed":
        return Asked(f"the running orchestrator retries {len(failed)} failed stream(s)", retry=tuple(failed))
    if action == "stop":
        return Asked(f"stopping {named}; it stays stopped until `orchestrate.py start "
                     f"{printable(streams[0]) if streams else 'STREAM'}`", hold=streams, grace=grace)
    if action == "approve":  # the decision is in the stream's review record: the loop reads it this turn
        return Asked(f"the running orchestrator merges exactly the approved commit of {named}")
    if action == "reject":
        return Asked(f"the running orchestrator hands {named} back to its agent with your reason")
    return Asked(f"unknown request {action!r}")
