"""Process mechanics for the local executor: pid files, process identity, process groups.

A pid alone is not an identity: it is reused. Every pid file therefore records
the process start time too, and nothing is signalled unless the live process
with that pid started at that time and proves it is ours: a worker by carrying
its token (ORCHESTRATE_KIT_TOKEN) in its environment, the orchestrator by
running orchestrate.py. A worker is ended with everything that carries its
token, so a descendant that left the process group (`setsid`) ends with it.

Where the environment of a process cannot be read (macOS has no /proc), a worker
is trusted on pid + start time + a token in its record, the orchestrator on pid +
start time + script name, and only a worker's process group is ended: a
descendant in a session of its own is not found there. Standard library only.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Tuple

from .. import atomic

_HAS_PROC = os.path.isdir("/proc/self")
ORCHESTRATOR_SCRIPT = "orchestrate.py"
TOKEN_VARIABLE = "ORCHESTRATE_KIT_TOKEN"


# ---------------------------------------------------------------- process identity


def process_start_time(pid: int) -> Optional[str]:
    """When the live, non-zombie process `pid` started (an opaque token); None if gone."""
    if pid <= 0:
        return None
    if _HAS_PROC:
        try:
            with open(f"/proc/{pid}/stat", "rb") as handle:
                data = handle.read()
        except (FileNotFoundError, ProcessLookupError):
            return None
        except OSError:
            return None
        fields = data[data.rindex(b")") + 2 :].split()
        if fields[0] in (b"Z", b"X"):
            return None
        return fields[19].decode()  # field 22 of stat: start time in clock ticks
    out = subprocess.run(
        ["ps", "-o", "stat=", "-o", "lstart=", "-p", str(pid)], capture_output=True, text=True
    ).stdout.strip()
    if not out or out.startswith("Z"):
        return None
    return out.split(None, 1)[1] if " " in out else out


@dataclass(frozen=True)
class ProcessTable:
    """One look at every live process: who is in which process group, and (Linux) which of our own
    processes carry which worker token. Ending many workers at once reads /proc once for all of
    them, not twice for each (with 300 workers that was most of a `stop`)."""

    groups: Dict[int, Tuple[int, ...]]  # process group id -> its live (non-zombie) members
    carriers: Dict[str, Tuple[int, ...]]  # worker token -> our live processes whose environment has it

    def group(self, pgid: int) -> List[int]:
        return list(self.groups.get(pgid, ()))

    def carrying(self, token: str) -> List[int]:
        return list(self.carriers.get(token, ())) if token else []


_TOKEN_PREFIX = f"{TOKEN_VARIABLE}=".encode()


def _tokens_in(environment: bytes) -> List[str]:
    """The worker tokens an environment block (NUL-separated entries) holds; almost always none."""
    if _TOKEN_PREFIX not in environment:
        return []  # the usual case, found by one substring search
    return [entry[len(_TOKEN_PREFIX):].decode("ascii", "replace")
            for entry in environment.split(b"\0") if entry.startswith(_TOKEN_PREFIX)]


def scan_processes(tokens: bool = True) -> ProcessTable:
    """Every live process's group, and with `tokens` the worker tokens our own processes carry
    (Linux: each /proc entry's stat once, and the environment of those of our user once)."""
    groups: Dict[int, List[int]] = {}
    carriers: Dict[str, List[int]] = {}
    if not _HAS_PROC:
        out = subprocess.run(["ps", "-A", "-o", "pid=,pgid=,stat="], capture_output=True, text=True).stdout
        for line in out.splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0].isdigit() and parts[1].isdigit() and not parts[2].startswith("Z"):
                groups.setdefault(int(parts[1]), []).append(int(parts[0]))
        return ProcessTable({g: tuple(m) for g, m in groups.items()}, {})
    uid = os.getuid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                data = handle.read()
        except OSError:
            continue
        fields = data[data.rindex(b")") + 2:].split()
        if fields[0] in (b"Z", b"X"):
            continue
        pid = int(entry)
        groups.setdefault(int(fields[2]), []).append(pid)
        if not tokens:
            continue
        try:
            if os.stat(f"/proc/{entry}").st_uid != uid:
                continue  # not ours: not readable, and never ours to end
        except OSError:
            continue
        for token in _tokens_in(_environment(pid)):
            carriers.setdefault(token, []).append(pid)
    return ProcessTable({g: tuple(m) for g, m in groups.items()}, {t: tuple(p) for t, p in carriers.items()})


def group_members(pgid: int) -> List[int]:
    """Live (non-zombie) processes in process group `pgid`."""
    return scan_processes(tokens=False).group(pgid)


def runs_script(pid: int, name: str) -> bool:
    """Whether a process's command line names the script `name`."""
    if not _HAS_PROC:
        args = subprocess.run(["ps", "-ww", "-o", "args=", "-p", str(pid)], capture_output=True, text=True).stdout
        return re.search(rf"(^|[\s/]){re.escape(name)}(\s|$)", args.strip()) is not None
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            argv = handle.read().split(b"\0")
    except OSError:
        return False
    return any(os.path.basename(arg.decode("utf-8", "replace")) == name for arg in argv)


def _token_entry(token: str) -> bytes:
    return f"{TOKEN_VARIABLE}={token}".encode()


EXEC_SETTLE_TRIES, EXEC_SETTLE_SECONDS = 20, 0.005  # an environment read mid-exec is empty: look again


def _environment(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            return handle.read()
    except OSError:
        return b""


def _environment_has(pid: int, entry: bytes, settle: bool = False) -> bool:
    """`settle`: the process is known to be live and not a zombie, so an empty environment means it is
    between two images (a launcher exec'ing the worker's command): read it again once it has settled."""
    text = _environment(pid)
    for _ in range(EXEC_SETTLE_TRIES if settle else 0):
        if text:
            break
        time.sleep(EXEC_SETTLE_SECONDS)
        text = _environment(pid)
    return entry in text.split(b"\0")


def carries_token(pid: int, token: str, settle: bool = False) -> bool:
    """Whether a process inherited our worker token (Linux: from its environment)."""
    if not _HAS_PROC:
        return True  # no way to look; a live group whose leader pid is free is ours
    return bool(token) and _environment_has(pid, _token_entry(token), settle)


def token_carriers(token: str) -> List[int]:
    """Every live process of ours whose environment carries `token` (Linux; [] elsewhere).

    Only processes of our own user are read, each environment once; zombies and
    kernel threads have an empty environment and never match.
    """
    if not token or not _HAS_PROC:
        return []
    return scan_processes().carrying(token)


# ---------------------------------------------------------------- pid files


@dataclass(frozen=True)
class PidRecord:
    """What a pid file says: whose process, which one, since when.

    Two kinds: a worker's record names its stream and the token in the worker's
    environment; the orchestrator's names no stream and has no token (write it
    as `PidRecord(os.getpid(), process_start_time(os.getpid()), "", 0, time.time())`).
    """

    pid: int
    start_time: str
    stream_id: str
    attempt: int = 0
    started_at: float = 0.0
    token: str = ""

    def is_alive(self) -> bool:
        """True only for the very process the record describes: same pid, same start time (pid
        files outlive a reboot, and start times, counted in clock ticks since boot, can repeat
        after one) and proof that it is ours. A worker proves it with the token in its
        environment; where no environment is readable, its record must at least hold a token
        (files of versions without tokens are refused). The orchestrator's record proves it by
        the process running orchestrate.py. A record naming a stream without a token is never ours."""
        if self.pid <= 1 or process_start_time(self.pid) != self.start_time:
            return False
        if self.token:
            return carries_token(self.pid, self.token, settle=True)  # a live non-zombie: its environment settles
        return not self.stream_id and runs_script(self.pid, ORCHESTRATOR_SCRIPT)

    def own_group_members(self) -> List[int]:
        """Everything of this worker that is still alive: the same as `members_of(self)`."""
        return members_of(self)


def _own_group(record: PidRecord, table: ProcessTable) -> List[int]:
    """Live members of a worker's process group, if the group is still that worker's."""
    if record.is_alive():
        return table.group(record.pid) or [record.pid]
    if process_start_time(record.pid) is not None:
        return []  # the pid now belongs to someone else: not our group
    members = table.group(record.pid)
    return members if any(carries_token(m, record.token) for m in members) else []


def members_of(record: PidRecord, table: Optional[ProcessTable] = None) -> List[int]:
    """A worker's live processes: its process group (if still ours) plus every process that
    carries its token, wherever it went (Linux). [] for a record without a token: an
    orchestrator's record, or a file we did not write, has no members we may signal. `table`:
    a recent look at the processes, shared by many records (else one is taken now)."""
    if not record.token or record.pid <= 1:
        return []  # without a token nothing proves the group is ours
    table = table if table is not None else scan_processes(tokens=_HAS_PROC)
    return sorted(set(_own_group(record, table)) | set(table.carrying(record.token)))


def write_pid_file(path: Path, record: PidRecord) -> None:
    """Write atomically: a reader sees the old file or the new one, never half."""
    atomic.write_text(path, json.dumps(asdict(record)) + "\n")


def read_pid_file(path: Path) -> Optional[PidRecord]:
    """The record in a pid file, or None when it is missing or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return PidRecord(
            pid=int(data["pid"]),
            start_time=str(data["start_time"]),
            stream_id=str(data["stream_id"]),
            attempt=int(data.get("attempt", 0)),
            started_at=float(data.get("started_at", 0.0)),
            token=str(data.get("token", "")),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remove_file(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def read_pid_dir(folder: Path) -> Dict[Path, Optional[PidRecord]]:
    """Every pid file in a folder with its record (None for unreadable ones)."""
    if not folder.is_dir():
        return {}
    return {p: read_pid_file(p) for p in sorted(folder.glob("*.pid"))}


# ---------------------------------------------------------------- signals


def signal_group(pgid: int, sig: int) -> None:
    if pgid <= 1 or pgid == os.getpgrp():
        return  # never init's group, nor (with a corrupt pid file) everything of our own
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass  # already gone, or not ours to signal


def _group_of(pid: int) -> int:
    try:
        return os.getpgid(pid)
    except OSError:
        return 0  # gone: nothing to signal


def _send(pid: int, signals: List[int]) -> None:
    for sig in signals:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def signal_members(pids: Iterable[int], sig: int, group: int = 0) -> None:
    """Send `sig` to a worker's members, as `members_of` listed them just now.

    When `group` (the worker's pid) is among their groups, the whole group gets it at once,
    so children forked since the listing get it too; the others one by one. After SIGTERM
    comes SIGCONT, so that a stopped process can act on it. Never init, never ourselves,
    never our own group (a `stop` run by a worker is one of its token carriers).
    """
    signals = [sig, signal.SIGCONT] if sig == signal.SIGTERM else [sig]
    ours = os.getpgrp()
    groups = {pid: _group_of(pid) for pid in pids if pid > 1 and pid != os.getpid()}
    if group > 1 and group != ours and group in groups.values():
        for each in signals:
            signal_group(group, each)
    for pid, pgid in groups.items():
        if pgid not in (0, ours, group):
            _send(pid, signals)


def signal_worker(record: PidRecord, sig: int, table: Optional[ProcessTable] = None) -> List[int]:
    """One non-blocking step of ending a worker: send `sig` to all its members (its group and
    the token carriers, from `table` when given). Returns the members found; [] means nothing
    of it is left."""
    members = members_of(record, table)
    signal_members(members, sig, record.pid)
    return members


def terminate_groups(
    groups: Dict[int, Callable[[], List[int]]],
    grace: float,
    reap: Callable[[], None] = lambda: None,
) -> List[int]:
    """TERM whole process groups at once, wait up to `grace`, then KILL what is left (blocking).

    `groups` maps each group id to a function listing its live members (which
    also checks that the group is still ours, and may name members that left the
    group, such as a worker's token carriers); `reap` collects our own exited
    children so they do not linger as zombies. Returns the groups that had to
    be killed.
    """
    live = {pgid: members for pgid, members in groups.items() if members()}
    for pgid, members in live.items():
        signal_members(members(), signal.SIGTERM, pgid)
    deadline = time.monotonic() + grace
    while live and time.monotonic() < deadline:
        reap()
        live = {pgid: members for pgid, members in live.items() if members()}
        if live:
            time.sleep(0.05)
    for pgid, members in live.items():
        signal_members(members(), signal.SIGKILL, pgid)
    if live:
        time.sleep(0.05)
        reap()
    return sorted(live)
