"""Files written whole: a reader (status, the dashboard, a restarted orchestrator) sees the old content
or the new one, never half, and a full disk leaves no temporary file behind.

The one way the runtime replaces a file it shares with other processes: the run table, pid files,
requests to a running orchestrator, the agents' activity, the per-stream records (worktrees, reviews,
pull requests), a Ray job's tail and applier counts and a node's task snapshot. The merge check's
wrapper alone writes its status by hand: it runs by path, without this package. Standard library only.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path


def write_text(path: Path, text: str) -> None:
    """Write `text` (UTF-8) to a temporary file beside `path`, then rename it into place.
    Raises OSError (the temporary file removed) when it cannot be written."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
