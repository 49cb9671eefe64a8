"""The `on_event` hook: a user's command told about what happened, which can never stall the run.

The command (setting `on_event`) is split like a shell would split it but run
without one; the event is described in its environment (`ORCHESTRATE_EVENT`,
`STREAM_ID`, `STREAM_NAME`, `REASON`, `COST_USD`, ...). It runs in a session of
its own with no input; its output goes to the orchestrator log. A hook that is
still running after `HOOK_TIMEOUT` seconds is killed; one that cannot start is
reported once. Events: run_finished, stream_failed, usage_limit,
usage_limit_resumed, configuration_error (and, with worktrees, merge_conflict
and check_failed). Standard library only, Python 3.9+.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

HOOK_TIMEOUT = 30.0


@dataclass
class Notifier:
    command: str
    log: Path
    warn: Callable[[str], None]
    clock: Callable[[], float] = time.monotonic
    running: List[tuple] = field(default_factory=list)  # (process, kill_at)
    broken: bool = False

    def fire(self, event: str, **details: object) -> None:
        """Start the hook for `event` and return at once."""
        if not self.command.strip() or self.broken:
            return
        env = dict(os.environ, ORCHESTRATE_EVENT=event)
        env.update({key.upper(): _text(value) for key, value in details.items() if value is not None})
        try:
            argv = shlex.split(self.command)
            with open(self.log, "ab") as out:
                process = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                           stderr=subprocess.STDOUT, start_new_session=True)
        except (OSError, ValueError) as exc:
            self.broken = True
            self.warn(f"the on_event hook cannot run ({exc}); no more events are sent to it this run")
            return
        self.running.append((process, self.clock() + HOOK_TIMEOUT))

    def sweep(self) -> None:
        """Forget hooks that ended; kill those past their time."""
        now = self.clock()
        left = []
        for process, kill_at in self.running:
            if process.poll() is not None:
                continue
            if now >= kill_at:
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                self.warn(f"the on_event hook (pid {process.pid}) ran over {HOOK_TIMEOUT:g}s; killed it")
                process.poll()
                continue
            left.append((process, kill_at))
        self.running = left


def _text(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value).replace("\0", "")
