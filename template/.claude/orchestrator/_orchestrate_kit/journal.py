"""The run's journal: every event of a run as one JSON line, appended; what the report, `history` and spend caps read.

One file per run, `<state>/journal/<run id>.jsonl`, under the runtime's state folder (inside the
git directory in a git project, where an agent's `git clean` cannot reach it). Each line is one
JSON object: `v` (the format), `run` (the run id), `t` (wall clock, unix seconds), `mono` (the
writer's monotonic clock, for durations immune to a clock change), `kind` (one of `Kind`),
`stream` where the event is a stream's, and the event's own fields. `Journal` has one method per
kind, so the loop's call sites read as what happened.

Appends are atomic per line: the whole line goes to the kernel in one `os.write` on an `O_APPEND`
descriptor, so two writers never interleave and a reader never sees half a line in the normal
case; what `os.write` returned is in the page cache and survives a SIGKILL of the writer. A line
torn anyway (a full disk, a kill in the middle of a very long write) is never glued to the next
event: the next append (by this writer, or the next one to open the file) starts on a new line.
A write that fails (a full disk, a file size limit) is a warning, never a stopped run. Reading is
streaming and bounded; a damaged line is skipped with one warning, never a traceback.
Standard library only, Python 3.9+.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import AbstractSet, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

FORMAT = 1
TEXT_LIMIT = 1000  # characters kept of a reason, a message, a command
RESULT_LIMIT = 4000  # characters kept of a worker's final result text
LINE_LIMIT = 8 << 20  # a line longer than this is not read back (a run's plan of 10,000 streams fits)
RUN_ID = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{6}")
SUFFIX = ".jsonl"


class Kind(str, Enum):
    """Every kind of event the journal holds."""

    RUN_STARTED = "run_started"  # also when a run continues after its orchestrator died (resumed: true)
    TRANSITION = "transition"
    ATTEMPT_STARTED = "attempt_started"
    ATTEMPT_ENDED = "attempt_ended"
    BACKOFF = "backoff"
    USAGE_LIMIT = "usage_limit"
    USAGE_LIMIT_RESUMED = "usage_limit_resumed"
    MERGE_STARTED = "merge_started"
    MERGED = "merged"
    MERGE_CONFLICT = "merge_conflict"
    CHECK_STARTED = "check_started"
    CHECK_PASSED = "check_passed"
    CHECK_FAILED = "check_failed"
    CHECK_TIMED_OUT = "check_timed_out"
    REVIEW_REQUESTED = "review_requested"
    APPROVED = "approved"
    REJECTED = "rejected"
    PUSHED = "pushed"
    PR_OPENED = "pr_opened"
    PR_MERGED = "pr_merged"
    SPEND_CAP_REACHED = "spend_cap_reached"
    RUN_FINISHED = "run_finished"


# Settings a report shows beside the run (those that exist in this runtime's Settings).
REPORTED_SETTINGS = ("max_parallel", "max_restarts", "max_cost_usd", "spend_cap_usd", "spend_cap_period",
                     "isolation", "conflicts", "merge_check", "merge_gate", "agent_events", "stall_timeout",
                     "fallback_model", "executor", "tracker")


def new_run_id(now: Optional[float] = None) -> str:
    """A run's id: its UTC start time and a random suffix, so ids sort by time and never clash."""
    import secrets  # only a run's start needs it: status and the dashboard read ids, never make them

    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    return f"{stamp}-{secrets.token_hex(3)}"


def is_run_id(text: str) -> bool:
    return bool(RUN_ID.fullmatch(text))


def journal_path(folder: Path, run_id: str) -> Path:
    """The journal of `run_id` in `folder` (`Layout.journals`); the id is checked, so it stays in the folder."""
    if not is_run_id(run_id):
        raise ValueError(f"not a run id: {run_id!r}")
    return folder / f"{run_id}{SUFFIX}"


def run_ids(folder: Path) -> List[str]:
    """Every run with a journal in `folder`, oldest first."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    return sorted(name[:-len(SUFFIX)] for name in names if name.endswith(SUFFIX) and is_run_id(name[:-len(SUFFIX)]))


# ---------------------------------------------------------------- writing


def _ignore(_message: str) -> None:
    return None


class Journal:
    """Appends one run's events to its journal. Every method returns whether the line was written
    (or, holding, kept for the next `flush`).

    The loop's journal is made before its run's id is known and `open`ed at the run's start (an
    event before that is dropped: no run, nothing to record). It holds its lines (`held`) and
    writes them in one append at `flush`, which the loop calls right after saving the run's table,
    so the journal never runs ahead of the saved state: an orchestrator killed in between left a
    table a little ahead of its journal, and the next one records the difference
    (`supervisor.begin`, through record.py), never an event twice."""

    def __init__(self, path: Optional[Path] = None, run_id: str = "", warn: Callable[[str], None] = _ignore,
                 clock: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic,
                 write: Callable[[int, bytes], int] = os.write, held: bool = False):
        self.path, self.run_id, self.warn = path, run_id, warn
        self.clock, self.monotonic, self._write = clock, monotonic, write
        self._fd: Optional[int] = None
        self._torn = False  # the file does not end with a newline: the next line starts with one
        self.lost = 0  # events not written since the journal last worked
        self.held: Optional[List[bytes]] = [] if held else None  # holding: lines waiting for `flush`

    def open(self, path: Path, run_id: str) -> None:
        """Point the journal at its run's file (`journal_path`)."""
        self.close()
        self.path, self.run_id = path, run_id

    def append(self, kind: str, stream: Optional[str] = None, **fields: object) -> bool:
        """Write one event as one line (holding: keep it for `flush`); a failure is warned about once, never raised."""
        if self.path is None:
            return False
        record: Dict[str, object] = {"v": FORMAT, "run": self.run_id, "t": round(self.clock(), 3),
                                     "mono": round(self.monotonic(), 3), "kind": str(getattr(kind, "value", kind))}
        if stream is not None:
            record["stream"] = stream
        record.update({key: _plain(value) for key, value in fields.items()})
        line = (json.dumps(record, ensure_ascii=True, separators=(",", ":"), allow_nan=False) + "\n").encode("ascii")
        if self.held is not None:
            self.held.append(line)
            return True
        return self._put(line, 1)

    def flush(self) -> bool:
        """Write the held lines in one append (one system call, however many events the turn had)."""
        if not self.held:
            return True
        data, count = b"".join(self.held), len(self.held)
        self.held = []
        return self._put(data, count)

    def _put(self, data: bytes, count: int) -> bool:
        try:
            fd = self._descriptor()
            data = b"\n" + data if self._torn else data
            written = self._write(fd, data)
            if written != len(data):
                self._torn = True
                raise OSError(f"only {written} of {len(data)} bytes were written")
        except OSError as exc:
            self._failed(exc, count)
            return False
        self._torn = False
        if self.lost:
            self.warn(f"the run's journal is written again ({self.lost} event(s) before this one were lost)")
            self.lost = 0
        return True

    def close(self) -> None:
        """Write what is held, then let the file go."""
        if self.held:
            self.flush()
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None

    def _descriptor(self) -> int:
        """The open journal; opened again if it was removed under us (a new file, started on a new line)."""
        if self._fd is not None:
            try:
                if os.fstat(self._fd).st_nlink > 0:
                    return self._fd
            except OSError:
                pass
            self.close()
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        size = os.fstat(fd).st_size
        self._torn = size > 0 and os.pread(fd, 1, size - 1) != b"\n"  # a writer before us was cut short
        self._fd = fd
        return fd

    def _failed(self, exc: OSError, count: int = 1) -> None:
        if not self.lost:
            why = exc.strerror or str(exc)
            self.warn(f"cannot write the run's journal {self.path} ({why}); the run goes on, its report will miss "
                      "what happens until the journal can be written again")
        self.lost += count
        self.close()  # open afresh next time: the folder may come back, the disk may have room

    # -- one method per kind: what the wiring calls

    def run_started(self, *, settings: Mapping[str, object], targets: Optional[Sequence[str]], tracker: str,
                    isolation: str, plan: Mapping[str, object], resumed: bool = False,
                    integration_branch: Optional[str] = None) -> bool:
        """The run begins (or continues after its orchestrator died): what it runs and with what settings.
        `plan` is `plan_of(...)`: the graph as planned."""
        return self.append(Kind.RUN_STARTED, settings=dict(settings), targets=None if targets is None else sorted(targets),
                           tracker=tracker, isolation=isolation, plan=dict(plan), resumed=resumed,
                           integration_branch=integration_branch, pid=os.getpid())

    def transition(self, stream: str, before: Optional[str], after: str, reason: str = "") -> bool:
        return self.append(Kind.TRANSITION, stream, before=before, after=after, reason=_cut(reason))

    def record_changes(self, before: Mapping[str, object], after: Mapping[str, object]) -> None:
        """A transition for every row whose state differs between two tables of lifecycle rows
        (`Life`: `.state`, `.reason`); rows new in `after` come from None."""
        for sid, life in after.items():
            old = before.get(sid)
            old_state = _state_of(old) if old is not None else None
            new_state = _state_of(life)
            if old_state != new_state:
                self.transition(sid, old_state, new_state, str(getattr(life, "reason", "") or ""))

    def attempt_started(self, stream: str, attempt: int, *, session_id: str = "", where: str = "local",
                        workspace: str = "", resume: bool = False) -> bool:
        return self.append(Kind.ATTEMPT_STARTED, stream, attempt=attempt, session_id=session_id, where=where,
                           workspace=workspace, resume=resume)

    def attempt_ended(self, stream: str, attempt: int, *, exit_code: Optional[int], signal: Optional[int],
                      complete: bool, ending: str = "exit", reason: str = "", cost_usd: Optional[float] = None,
                      turns: int = 0, input_tokens: int = 0, output_tokens: int = 0, session_id: str = "",
                      result: str = "") -> bool:
        """A worker ended: its exit (code or signal, as numbers), whether the tracker shows the stream
        complete, and the agent's own account (ending kind, cost, turns, tokens, session, final result)."""
        return self.append(Kind.ATTEMPT_ENDED, stream, attempt=attempt, exit_code=exit_code, signal=signal,
                           complete=complete, ending=ending, reason=_cut(reason), cost_usd=cost_usd, turns=turns,
                           input_tokens=input_tokens, output_tokens=output_tokens, session_id=session_id,
                           result=_cut(result, RESULT_LIMIT))

    def backoff(self, stream: str, until: float, failures: int) -> bool:
        return self.append(Kind.BACKOFF, stream, until=until, failures=failures)

    def usage_limit(self, stream: Optional[str], until: float, message: str, probing: bool = False) -> bool:
        """The account's usage limit, seen in `stream`'s worker: no worker starts before `until`."""
        return self.append(Kind.USAGE_LIMIT, stream, until=until, message=_cut(message), probing=probing)

    def usage_limit_resumed(self, stream: Optional[str] = None) -> bool:
        return self.append(Kind.USAGE_LIMIT_RESUMED, stream)

    def merge_started(self, stream: str, *, branch: str, into: str, commit: str = "") -> bool:
        return self.append(Kind.MERGE_STARTED, stream, branch=branch, into=into, commit=commit)

    def merged(self, stream: str, *, commit: str, branch: str = "", into: str = "") -> bool:
        return self.append(Kind.MERGED, stream, commit=commit, branch=branch, into=into)

    def merge_conflict(self, stream: str, *, files: Sequence[str], reason: str = "", commit: str = "") -> bool:
        return self.append(Kind.MERGE_CONFLICT, stream, files=[_cut(f, 300) for f in list(files)[:100]],
                           reason=_cut(reason), commit=commit)

    def check_started(self, stream: str, command: str) -> bool:
        return self.append(Kind.CHECK_STARTED, stream, command=_cut(command))

    def check_passed(self, stream: str, seconds: float = 0.0) -> bool:
        return self.append(Kind.CHECK_PASSED, stream, seconds=seconds)

    def check_failed(self, stream: str, *, exit_code: Optional[int], reason: str = "", seconds: float = 0.0) -> bool:
        return self.append(Kind.CHECK_FAILED, stream, exit_code=exit_code, reason=_cut(reason), seconds=seconds)

    def check_timed_out(self, stream: str, seconds: float) -> bool:
        return self.append(Kind.CHECK_TIMED_OUT, stream, seconds=seconds)

    def review_requested(self, stream: str, commit: str) -> bool:
        return self.append(Kind.REVIEW_REQUESTED, stream, commit=commit)

    def approved(self, stream: str, commit: str, by: str = "") -> bool:
        return self.append(Kind.APPROVED, stream, commit=commit, by=_cut(by, 200))

    def rejected(self, stream: str, commit: str, by: str = "", reason: str = "") -> bool:
        return self.append(Kind.REJECTED, stream, commit=commit, by=_cut(by, 200), reason=_cut(reason))

    def pushed(self, stream: str, *, branch: str, remote: str, commit: str) -> bool:
        return self.append(Kind.PUSHED, stream, branch=branch, remote=_cut(remote, 300), commit=commit)

    def pr_opened(self, stream: str, *, url: str, number: Optional[int] = None) -> bool:
        return self.append(Kind.PR_OPENED, stream, url=_cut(url, 500), number=number)

    def pr_merged(self, stream: str, *, url: str, commit: str = "") -> bool:
        return self.append(Kind.PR_MERGED, stream, url=_cut(url, 500), commit=commit)

    def spend_cap_reached(self, *, spent_usd: float, cap_usd: float, period: str) -> bool:
        return self.append(Kind.SPEND_CAP_REACHED, spent_usd=spent_usd, cap_usd=cap_usd, period=period)

    def run_finished(self, *, exit_code: int, outcome: str, cost_usd: float,
                     states: Mapping[str, int], report: str = "") -> bool:
        """The run's end: its exit code and outcome, what it cost, how many streams ended in each state
        (so `history` reads only the first and the last line), and where its report went."""
        return self.append(Kind.RUN_FINISHED, exit_code=exit_code, outcome=_cut(outcome), cost_usd=cost_usd,
                           states=dict(states), report=report)


def plan_of(views: Mapping[str, object], critical_path: Sequence[str]) -> Dict[str, object]:
    """The graph as planned, for `run_started`: from the board's views (graph.StreamView: name,
    dependencies, level, state, tasks) and the critical path (graph.critical_path)."""
    streams: Dict[str, object] = {}
    levels: Dict[int, List[str]] = {}
    for sid, view in views.items():
        level = getattr(view, "level", None)
        streams[sid] = {"name": _cut(str(getattr(view, "stream_name", "") or ""), 500),
                        "dependencies": list(getattr(view, "dependencies", ()) or ()), "level": level,
                        "state": _state_of(view), "tasks": getattr(view, "total", 0),
                        "finished": getattr(view, "finished", 0)}
        if level is not None:
            levels.setdefault(int(level), []).append(sid)
    return {"streams": streams, "levels": [sorted(levels[n]) for n in sorted(levels)],
            "critical_path": list(critical_path)}


def settings_of(settings: object) -> Dict[str, object]:
    """The settings a report shows (REPORTED_SETTINGS that this runtime has), and the worker program."""
    found = {key: getattr(settings, key) for key in REPORTED_SETTINGS if hasattr(settings, key)}
    command = str(getattr(settings, "worker_command", "") or "").split()
    if command:
        found["worker_program"] = os.path.basename(command[0])  # not its arguments: they may hold anything
    return found


def _state_of(row: object) -> str:
    state = getattr(row, "state", row)
    return str(getattr(state, "value", state))


def _cut(text: object, limit: int = TEXT_LIMIT) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _plain(value: object) -> object:
    """A value JSON can hold: enums by value, non-finite numbers as None, tuples and sets as lists."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


# ---------------------------------------------------------------- reading


def read_journal(path: Path, warn: Callable[[str], None] = _ignore,
                 kinds: Optional[AbstractSet[str]] = None) -> Iterator[dict]:
    """Each event of a journal in order, streaming; damaged lines (a torn tail, a hand edit) are
    skipped and named in one warning once the file is read. A journal that cannot be read warns.
    With `kinds`, only events of those kinds, and other lines are not even parsed (parsing is
    most of the cost of reading)."""
    damaged: List[int] = []
    wanted = None if kinds is None else [kind.encode("ascii") for kind in kinds]
    try:
        handle = open(path, "rb")
    except OSError as exc:
        warn(f"cannot read the journal {path}: {exc.strerror or exc}")
        return
    with handle:
        batch: List[Tuple[int, bytes]] = []
        number = 0
        while True:
            line = handle.readline(LINE_LIMIT)
            if not line:
                break
            number += 1
            if len(line) >= LINE_LIMIT and not line.endswith(b"\n"):
                while line and not line.endswith(b"\n"):  # too long to be ours: skip the rest of it
                    line = handle.readline(LINE_LIMIT)
                damaged.append(number)
                continue
            if line.strip() == b"":
                continue  # the new line a torn line was closed with
            if wanted is not None and not any(kind in line for kind in wanted):
                continue
            batch.append((number, line))
            if len(batch) >= _BATCH:
                yield from _parsed(batch, damaged, kinds)
                batch = []
        yield from _parsed(batch, damaged, kinds)
    if damaged:
        shown = ", ".join(str(n) for n in damaged[:5]) + (", ..." if len(damaged) > 5 else "")
        warn(f"{path.name}: skipped {len(damaged)} damaged line(s) (line {shown})")


_BATCH = 256  # lines parsed by one json.loads: half the cost of a call per line


def _parsed(batch: List[Tuple[int, bytes]], damaged: List[int], kinds: Optional[AbstractSet[str]]) -> Iterator[dict]:
    """The events of a batch of lines, parsed as one JSON array when every line is a whole object
    (the usual case), else line by line so a damaged one costs only itself."""
    events: List[Optional[dict]] = []
    if batch and all(line.startswith(b"{") and line.rstrip().endswith(b"}") for _, line in batch):
        try:
            whole = json.loads(b"[" + b",".join(line for _, line in batch) + b"]")
        except ValueError:
            whole = None
        if isinstance(whole, list) and len(whole) == len(batch):
            events = [event if _is_event(event) else None for event in whole]
    if not events:
        events = [parse_line(line) for _, line in batch]
    for (number, _line), event in zip(batch, events):
        if event is None:
            damaged.append(number)
        elif kinds is None or event["kind"] in kinds:
            yield event


def parse_line(line: bytes) -> Optional[dict]:
    """One journal line as an event, or None when it is not one (torn, hand-edited, another format)."""
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if _is_event(event) else None


def _is_event(event: object) -> bool:
    if not isinstance(event, dict) or not isinstance(event.get("kind"), str):
        return False
    t = event.get("t")
    return not isinstance(t, bool) and isinstance(t, (int, float)) and math.isfinite(t)


def first_and_last(path: Path) -> Tuple[Optional[dict], Optional[dict]]:
    """The first and the last event of a journal (None where there is none), reading only its ends."""
    first: Optional[dict] = None
    last: Optional[dict] = None
    try:
        with open(path, "rb") as handle:
            for _ in range(3):  # a torn first line is closed by the next writer: look a little further
                line = handle.readline(LINE_LIMIT)
                if not line:
                    break
                first = parse_line(line)
                if first is not None:
                    break
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(size - (64 << 10), 0))
            tail = handle.read().split(b"\n")
    except OSError:
        return None, None
    for line in reversed(tail):
        if line.strip():
            last = parse_line(line)
            if last is not None:
                break
    return first, last


def events_of(paths: Iterable[Path], warn: Callable[[str], None] = _ignore,
              kinds: Optional[AbstractSet[str]] = None) -> Iterator[Iterator[dict]]:
    """One event reader per journal, for readers that sum across runs (spend caps)."""
    for path in paths:
        yield read_journal(path, warn, kinds)


@dataclass
class Recorded:
    """What a journal says of each stream so far: where a run continued after its orchestrator died
    goes on from (record.py writes what its saved table says happened since)."""

    states: Dict[str, str] = field(default_factory=dict)  # its state as planned, then as each transition left it
    open_attempts: Dict[str, int] = field(default_factory=dict)  # stream -> its attempt started and not ended
    events: int = 0


def recorded(path: Path, warn: Callable[[str], None] = _ignore) -> Recorded:
    """The streams' last states and open attempts in the journal at `path` (none when it does not exist)."""
    found = Recorded()
    if not path.exists():
        return found
    kinds = {Kind.RUN_STARTED.value, Kind.TRANSITION.value, Kind.ATTEMPT_STARTED.value, Kind.ATTEMPT_ENDED.value}
    planned = False
    for event in read_journal(path, warn, kinds):
        found.events += 1
        kind, sid = event["kind"], event.get("stream")
        if kind == Kind.RUN_STARTED.value:
            plan = event.get("plan")
            streams = plan.get("streams") if isinstance(plan, dict) and not planned else None
            for plan_sid, info in (streams.items() if isinstance(streams, dict) else ()):
                state = info.get("state") if isinstance(info, dict) else None
                found.states[str(plan_sid)] = state if isinstance(state, str) else "waiting"
            planned = True
        elif not isinstance(sid, str):
            continue
        elif kind == Kind.TRANSITION.value and isinstance(event.get("after"), str):
            found.states[sid] = event["after"]
        elif kind == Kind.ATTEMPT_STARTED.value:
            attempt = event.get("attempt")
            found.open_attempts[sid] = attempt if isinstance(attempt, int) and not isinstance(attempt, bool) else 0
        elif kind == Kind.ATTEMPT_ENDED.value:
            found.open_attempts.pop(sid, None)
    return found
