"""The merge check's own record: what a restarted orchestrator needs to take the verdict of a check
an earlier (killed) orchestrator left running, instead of running a second one.

    save_check(state, record)     once the check runs: its stream, command, the integration tip
                                  before and with the merge, its log offset, start, identity, nonce
    load_check(state)             (the record, or None, and a warning when one was there but unusable)
    read_status(state, nonce)     how it ended, as check_wrapper.py wrote it (None: not known)
    wrapped(argv, state, nonce)   the check's command line run through check_wrapper.py
    clear_check(state)            the verdict was taken (or no longer counts): both files removed

Both files live in the state folder (inside the git directory, out of reach of an agent's
`git clean`): `merge_check.json` and `merge_check.status`. Everything read back is checked: an
agent may edit either, so a record of the wrong shape is absent (with a warning) and a status
that is not exactly what the wrapper writes, for this check, is unknown. Standard library only,
Python 3.9+.
"""

from __future__ import annotations

import json
import math
import re
import secrets
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .. import atomic
from ..executor import Ended
from ..trackers.mcp import read_config_file

RECORD = "merge_check.json"
STATUS = "merge_check.status"
VERSION = 1
MAX_BYTES = 64 * 1024  # a record is a few hundred bytes: anything larger was not written by us
WRAPPER = Path(__file__).with_name("check_wrapper.py")
_COMMIT = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")  # sha-1 or sha-256
_NONCE = re.compile(r"[0-9a-f]{16,64}")


@dataclass(frozen=True)
class CheckRecord:
    """One merge check in progress, as saved for the next orchestrator."""

    stream_id: str
    command: str  # the merge_check setting it runs (a changed setting runs the new one instead)
    integration_branch: str
    before: str  # the integration tip before the stream's merge: where a failed check returns
    tip: str  # the integration tip with the stream merged: what the check checks
    offset: int  # where its output starts in the stream's log
    started_at: float  # unix seconds: merge_check_timeout counts from here, across restarts
    key: str  # the executor's identity of its process (local: pid and start time)
    nonce: str  # the status file must name it: a status left by another check is not this one's


@dataclass(frozen=True)
class CheckStatus:
    """How a check ended, from its status file."""

    ended: Ended
    ended_at: float


def new_nonce() -> str:
    return secrets.token_hex(8)


def record_path(state: Path) -> Path:
    return Path(state) / RECORD


def status_path(state: Path) -> Path:
    return Path(state) / STATUS


def wrapped(argv: List[str], state: Path, nonce: str) -> List[str]:
    """`argv` run by the wrapper, which writes its status for this check (`nonce`) when it ends."""
    return [sys.executable, "-I", "-S", str(WRAPPER), str(status_path(state)), nonce, *argv]


def save_check(state: Path, record: CheckRecord) -> None:
    """Replace the record whole. Raises OSError."""
    Path(state).mkdir(parents=True, exist_ok=True)
    atomic.write_text(record_path(state), json.dumps(dict(asdict(record), version=VERSION), sort_keys=True))


def clear_check(state: Path) -> None:
    """Remove the record and the status (missing ones are fine; one that cannot be removed stays: the
    record names its stream, which is not `merging` once settled, and a status names its nonce)."""
    for path in (record_path(state), status_path(state)):
        try:
            path.unlink()
        except OSError:
            pass


def load_check(state: Path) -> Tuple[Optional[CheckRecord], Optional[str]]:
    """The saved record, or None; the warning to say when one was there but could not be used."""
    path = record_path(state)
    try:
        data = json.loads(read_config_file(path, MAX_BYTES))
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError, RecursionError) as error:
        return None, f"the merge check's record {path.name} cannot be read ({_short(error)}); it is ignored"
    record = record_of(data)
    if record is None:
        return None, f"the merge check's record {path.name} is not one the orchestrator wrote; it is ignored"
    return record, None


def record_of(data: Any) -> Optional[CheckRecord]:
    """A record from its JSON, or None unless every field has the shape `save_check` writes."""
    if not isinstance(data, dict) or data.get("version") != VERSION:
        return None
    text: Dict[str, str] = {}
    for name in ("stream_id", "command", "integration_branch", "key", "nonce", "before", "tip"):
        value = data.get(name)
        if not isinstance(value, str) or not 0 < len(value) <= 4096:
            return None
        text[name] = value
    if not (_COMMIT.fullmatch(text["before"]) and _COMMIT.fullmatch(text["tip"]) and _NONCE.fullmatch(text["nonce"])):
        return None
    offset, started_at = _integer(data.get("offset")), _time(data.get("started_at"))
    if offset is None or offset < 0 or started_at is None:
        return None
    return CheckRecord(text["stream_id"], text["command"], text["integration_branch"], text["before"], text["tip"],
                       offset, started_at, text["key"], text["nonce"])


def read_status(state: Path, nonce: str) -> Optional[CheckStatus]:
    """How the check with `nonce` ended, or None when that is not known (no status, another check's,
    or anything the wrapper would not have written)."""
    try:
        data = json.loads(read_config_file(status_path(state), MAX_BYTES))
    except (OSError, ValueError, RecursionError):
        return None
    ended_at = _time(data.get("ended_at")) if isinstance(data, dict) and data.get("nonce") == nonce else None
    if ended_at is None:
        return None
    code, signum = _integer(data.get("exit_code")), _integer(data.get("signal"))
    if code is not None and 0 <= code <= 255 and "signal" not in data:
        return CheckStatus(Ended(exit_code=code), ended_at)
    if signum is not None and 0 < signum < 128 and "exit_code" not in data:
        return CheckStatus(Ended(signal=signum), ended_at)
    return None


def _integer(value: Any) -> Optional[int]:
    """An integer, not a boolean (True is an int to Python, not to us)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _time(value: Any) -> Optional[float]:
    """Unix seconds: a finite number after 2001, not a boolean."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 1e9:
        return float(value)
    return None


def _short(error: BaseException) -> str:
    return str(error)[:200] or type(error).__name__
