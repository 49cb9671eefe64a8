"""Names from the database made safe: one name for files and branches, and text for a terminal.

Stream ids come from task metadata anyone can write. They reach the file system,
git and the terminal only through these functions. Standard library only.
"""

from __future__ import annotations

import hashlib
import re

_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")
_RESERVED = {"orchestrator"}  # logs/orchestrator.log is the background run's own


def safe_name(stream_id: str) -> str:
    """The one name of a stream id on disk and in git: its log and pid file, its worktree folder and
    its branch (`stream/<name>`). It can never leave its folder, clash with another id's, or be an
    invalid ref name.

    Plain ids ("Stream-A") are kept as they are, so users find their logs and branches; anything else
    (and a plain-looking id git would refuse as a ref: ending in `.lock` or `.`) becomes a sanitised
    prefix plus '+' and a hash of the id. '+' never occurs in a plain id, so the two forms cannot collide.
    """
    plain = (_SAFE_NAME.fullmatch(stream_id) and stream_id.lower() not in _RESERVED and ".." not in stream_id
             and not stream_id.endswith((".lock", ".")))
    if plain:
        return stream_id
    prefix = re.sub(r"[^A-Za-z0-9_-]+", "_", stream_id)[:40].strip("_-") or "stream"
    digest = hashlib.sha256(stream_id.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{prefix}+{digest}"


def printable(text: str, limit: int = 0) -> str:
    """Text from the database made safe for a terminal: control characters escaped."""
    out = text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    if limit and len(out) > limit:
        out = out[: max(limit - 1, 0)] + "…"
    return out
