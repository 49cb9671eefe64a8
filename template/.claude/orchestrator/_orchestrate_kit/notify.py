"""The `on_event` hook: a user's command told about what happened, which can never stall the run.

The command (setting `on_event`) is split like a shell would split it but run
without one; the event is described in its environment (`ORCHESTRATE_EVENT`,
`STREAM_ID`, `STREAM_NAME`, `REASON`, `COST_USD`, ...). It runs in a session of
its own with no input; its output goes to the orchestrator log. A hook that is
still running after `HOOK_TIMEOUT` seconds is killed by its watchdog; one that
cannot start is reported once. Events: run_finished, stream_failed, usage_limit,
usage_limit_resumed, configuration_error (and, with worktrees, merge_conflict
and check_failed). Standard library only, Python 3.9+.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

HOOK_TIMEOUT = 30.0


# The hook runs under a tiny watchdog of its own that kills it (and its group) after the timeout,
# so a hook outliving the orchestrator still ends, and the loop never waits for one.
_WATCHDOG = (
    "import os,signal,subprocess,sys\n"
    "p=subprocess.Popen(sys.argv[2:],start_new_session=True)\n"
    "try: p.wait(float(sys.argv[1]))\n"
    "except subprocess.TimeoutExpired:\n"
    "    sys.stderr.write('orchestrate: the on_event hook ran over %ss; killed it\\n' % sys.argv[1])\n"
    "    os.killpg(p.pid,signal.SIGKILL); p.wait()\n"
)


@dataclass
class Notifier:
    command: str
    log: Path
    warn: Callable[[str], None]
    broken: bool = False
    cwd: Optional[Path] = None  # where the hook runs: the project root, so a relative hook path works

    def fire(self, event: str, **details: object) -> None:
        """Start the hook for `event` under its watchdog and return at once."""
        if not self.command.strip() or self.broken:
            return
        env = dict(os.environ, ORCHESTRATE_EVENT=event)
        env.update({key.upper(): _text(value) for key, value in details.items() if value is not None})
        try:
            argv = shlex.split(self.command)
            if not argv:
                return
            with open(self.log, "ab") as out:
                subprocess.Popen([sys.executable, "-I", "-S", "-c", _WATCHDOG, str(HOOK_TIMEOUT), *argv], env=env,
                                 stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True, cwd=self.cwd)
        except (OSError, ValueError) as exc:
            self.broken = True
            self.warn(f"the on_event hook cannot run ({exc}); no more events are sent to it this run")


def _text(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value).replace("\0", "")
