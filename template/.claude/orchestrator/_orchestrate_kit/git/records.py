"""Small per-stream JSON records under the state folder, each replaced atomically: review decisions, pull request links.

One file per stream, named by `names.safe_name`, so any stream id gets its own file inside
the folder. A reader sees the old record or the new one, never half of one; a record it
cannot use (missing, damaged, hand-edited into another stream's) reads as none. They live
in the state folder (inside the git directory), where an agent's `git clean` cannot reach
them, so they survive an orchestrator restart. Standard library only, Python 3.9+.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Optional

from .. import atomic
from ..names import safe_name


def record_path(folder: Path, stream_id: str) -> Path:
    return Path(folder) / f"{safe_name(stream_id)}.json"


def save_record(folder: Path, stream_id: str, data: Dict[str, Any]) -> None:
    """Write the stream's record (its `stream_id` included) through a temporary file. Raises OSError."""
    path = record_path(folder, stream_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(path, json.dumps(dict(data, stream_id=stream_id), indent=1) + "\n")


def load_record(folder: Path, stream_id: str) -> Optional[Dict[str, Any]]:
    """The stream's record, or None when there is none it can use."""
    try:
        data = json.loads(record_path(folder, stream_id).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("stream_id") == stream_id else None


def remove_record(folder: Path, stream_id: str) -> None:
    try:
        record_path(folder, stream_id).unlink()
    except FileNotFoundError:
        pass
