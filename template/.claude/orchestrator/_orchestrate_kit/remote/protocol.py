"""What crosses between the orchestrator and a node: the job description and the update lines.

The job description (everything the remote worker needs: the git remote, the commit to start from,
branch and ref names, the worker's argv and environment, the tracker snapshot) travels in one
environment variable, `ORCHESTRATE_JOB`, as zlib-compressed JSON in base64. It holds no credentials
(the jobs API shows a job's environment to anyone who may list jobs): nodes bring their own.

A task update made on the node reaches the orchestrator as one line of the job's log:
`PREFIX + JSON`. The prefix starts with the ASCII unit separator, which no agent's text or
stream-json line starts with; an agent can still print anything, so the orchestrator trusts a line
only as far as `trackers/apply.py` checks it (its own run, stream, attempt and token; a task of its
stream; a known field).
"""

from __future__ import annotations

import base64
import json
import zlib
from typing import Any, Dict, Mapping, Optional

JOB_VARIABLE = "ORCHESTRATE_JOB"
PREFIX = "\x1forchestrate-kit/1 "
VERSION = 1
# Linux refuses one environment string over 128 KiB; keep room for the name and the rest.
MAX_ENCODED = 120 * 1024


class ProtocolError(ValueError):
    """A job description or an update line that cannot be read."""


def encode_job(job: Mapping[str, Any]) -> str:
    text = base64.b64encode(zlib.compress(json.dumps(dict(job), sort_keys=True).encode("utf-8"), 9)).decode("ascii")
    if len(text) > MAX_ENCODED:
        raise ProtocolError(f"the job description is {len(text)} bytes encoded, more than the {MAX_ENCODED} an "
                            "environment variable can carry; the stream has too many or too long tasks")
    return text


def decode_job(text: str) -> Dict[str, Any]:
    try:
        job = json.loads(zlib.decompress(base64.b64decode(text.encode("ascii"), validate=True)).decode("utf-8"))
    except (ValueError, zlib.error, UnicodeError) as error:
        raise ProtocolError(f"unreadable job description: {error}") from None
    if not isinstance(job, dict) or job.get("version") != VERSION:
        raise ProtocolError("the job description is not one this runtime version reads")
    return job


def update_line(record: Mapping[str, Any]) -> str:
    """One structured log line (no newline inside: JSON escapes them)."""
    return PREFIX + json.dumps(dict(record), sort_keys=True, ensure_ascii=True)


def parse_line(line: str) -> Optional[Dict[str, Any]]:
    """The record of a structured line, None for any other line; ProtocolError if it is ours but broken."""
    text = line.rstrip("\r\n")
    if not text.startswith(PREFIX):
        return None
    try:
        record = json.loads(text[len(PREFIX):])
    except ValueError:
        raise ProtocolError("a structured line whose JSON cannot be read") from None
    if not isinstance(record, dict):
        raise ProtocolError("a structured line that is not a JSON object")
    return record


WORKER_KINDS = ("ending", "result")  # the remote worker's own lines: its worker has exited; what it pushed


def worker_line(line: str, run: str, stream: str, attempt: int, token: str) -> Optional[Dict[str, Any]]:
    """One of the remote worker's own lines, if `line` is that attempt's: `kind` "ending" (the worker
    has exited, the push comes next) or "result" (the last line: its exit code, what it pushed, its
    timings); None for any other line. An agent could print such a line too (it has the token), so it
    is a hint (look at the job now), never a verdict: Ray's status and the attempt's ref on the
    remote are."""
    if not line.startswith(PREFIX):
        return None
    try:
        record = parse_line(line)
    except ProtocolError:
        return None
    if record is None or record.get("kind") not in WORKER_KINDS:
        return None
    mine = (record.get("run"), record.get("stream"), record.get("attempt"), record.get("token"))
    return record if mine == (run, stream, attempt, token) else None
