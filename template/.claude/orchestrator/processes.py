"""Process mechanics for the orchestrator: safe file names, pid files, process groups.

A pid alone is not an identity: it is reused. Every pid file therefore records
the process start time too, and nothing is signalled unless the live process
with that pid started at that time (or, for a group whose leader has exited,
unless a member carries the worker's token). Standard library only.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")
_RESERVED = {"orchestrator"}
_HAS_PROC = os.path.isdir("/proc/self")


def file_stem(stream_id: str) -> str:
    """A file name for a stream id that can never leave its folder or clash.

    Plain ids ("Stream-A") are kept as they are, so users find their logs;
    anything else becomes a sanitised prefix plus '~' and a hash of the id.
    '~' never occurs in a plain id, so the two forms cannot collide.
    """
    if _SAFE_NAME.fullmatch(stream_id) and stream_id.lower() not in _RESERVED and ".." not in stream_id:
        return stream_id
    prefix = re.sub(r"[^A-Za-z0-9._-]+", "_", stream_id)[:40].strip("._-") or "stream"
    digest = hashlib.sha256(stream_id.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{prefix}~{digest}"


def printable(text: str, limit: int = 0) -> str:
    """Text from the database made safe for a terminal: control characters escaped."""
    out = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    if limit and len(out) > limit:
        out = out[: max(limit - 1, 0)] + "…"
    return out


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


def group_members(pgid: int) -> List[int]:
    """Live (non-zombie) processes in process group `pgid`."""
    members = []
    if _HAS_PROC:
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", "rb") as handle:
                    data = handle.read()
            except OSError:
                continue
            fields = data[data.rindex(b")") + 2 :].split()
            if int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
                members.append(int(entry))
        return members
    out = subprocess.run(["ps", "-A", "-o", "pid=,pgid=,stat="], capture_output=True, text=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and int(parts[1]) == pgid and not parts[2].startswith("Z"):
            members.append(int(parts[0]))
    return members


def runs_script(pid: int, name: str) -> bool:
    """Whether a process's command line names the script `name` (True where it cannot be seen)."""
    if not _HAS_PROC:
        return True
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            args = handle.read().split(b"\0")
    except OSError:
        return False
    return any(os.path.basename(arg.decode("utf-8", "replace")) == name for arg in args)


def carries_token(pid: int, token: str) -> bool:
    """Whether a process inherited our worker token (Linux: from its environment)."""
    if not _HAS_PROC:
        return True  # no way to look; a live group whose leader pid is free is ours
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            return f"ORCHESTRATE_KIT_TOKEN={token}".encode() in handle.read().split(b"\0")
    except OSError:
        return False


# ---------------------------------------------------------------- pid files


@dataclass(frozen=True)
class PidRecord:
    """What a pid file says: whose process, which one, since when."""

    pid: int
    start_time: str
    stream_id: str
    attempt: int = 0
    started_at: float = 0.0
    token: str = ""

    def is_alive(self) -> bool:
        """True only for the very process we started: same pid, same start time and, where the
        system shows it, our token in its environment (pid files outlive a reboot, and start
        times, counted in clock ticks since boot, can repeat after one)."""
        if self.pid <= 1 or process_start_time(self.pid) != self.start_time:
            return False
        return not self.token or carries_token(self.pid, self.token)

    def own_group_members(self) -> List[int]:
        """Live members of this worker's process group, if the group is still ours."""
        if self.is_alive():
            return group_members(self.pid) or [self.pid]
        if process_start_time(self.pid) is not None:
            return []  # the pid now belongs to someone else: not our group
        members = group_members(self.pid)
        if self.token and any(carries_token(m, self.token) for m in members):
            return members
        return []


def write_pid_file(path: Path, record: PidRecord) -> None:
    """Write atomically: a reader sees the old file or the new one, never half."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(asdict(record)) + "\n", encoding="utf-8")
    os.replace(tmp, path)


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


def terminate_groups(
    groups: Dict[int, Callable[[], List[int]]],
    grace: float,
    reap: Callable[[], None] = lambda: None,
) -> List[int]:
    """TERM whole process groups at once, wait up to `grace`, then KILL what is left.

    `groups` maps each group id to a function listing its live members (which
    also checks that the group is still ours); `reap` collects our own exited
    children so they do not linger as zombies. Returns the groups that had to
    be killed.
    """
    live = {pgid: members for pgid, members in groups.items() if members()}
    for pgid in live:
        signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while live and time.monotonic() < deadline:
        reap()
        live = {pgid: members for pgid, members in live.items() if members()}
        if live:
            time.sleep(0.05)
    for pgid in live:
        signal_group(pgid, signal.SIGKILL)
    if live:
        time.sleep(0.05)
        reap()
    return sorted(live)
