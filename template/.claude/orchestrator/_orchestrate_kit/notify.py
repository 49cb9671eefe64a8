"""The `on_event` hook: a user's command told about what happened, which can never stall the run.

The command (setting `on_event`) is split like a shell would split it but run
without one; a whole setting that names an existing file is that file, spaces and
all. The event is described in its environment (`ORCHESTRATE_EVENT`,
`ORCHESTRATE_NEEDS_YOU`: 1 when a person must act, else 0, `STREAM_ID`,
`STREAM_NAME`, `REASON`, `COST_USD`, ...). It runs in a session of
its own with no input, under a watchdog (hook_watchdog.py) that gives it a token
as workers have: the hook and everything it started (a `setsid` daemon too, on
Linux) end by HOOK_TIMEOUT seconds, and at most HOOK_OUTPUT_LIMIT bytes of what
it prints per event reach the orchestrator log. A hook that cannot run (missing,
not executable, a path with spaces that names nothing) is reported once, clearly,
and sent no more events. Events: run_finished (with `SUMMARY` and `REPORT`),
stream_failed, usage_limit, usage_limit_resumed, configuration_error,
spend_cap_reached (and, with worktrees, merge_conflict and check_failed).
Standard library only, Python 3.9+.
"""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Tuple

HOOK_TIMEOUT = 30.0
HOOK_OUTPUT_LIMIT = 64 * 1024  # bytes of one call's output kept in the orchestrator log
WATCHDOG = Path(__file__).resolve().with_name("hook_watchdog.py")


def hook_argv(command: str, cwd: Optional[Path] = None) -> Tuple[Optional[List[str]], str]:
    """The argv of the hook, or None and why it cannot run (a sentence with the fix). Relative
    paths are taken from `cwd` (where the hook runs)."""
    text = command.strip()
    here = Path(cwd) if cwd is not None else Path.cwd()
    if (here / os.path.expanduser(text)).is_file():  # `/my hooks/notify.sh`, unquoted: the file it names
        argv = [os.path.expanduser(text)]
    else:
        try:
            argv = shlex.split(text)
        except ValueError as exc:
            return None, f"on_event cannot be split into a command ({exc}): check its quotes"
    program = argv[0]
    if os.sep in program:
        if not (here / program).is_file():
            spaced = " (a path with spaces must be quoted: on_event = '/my hooks/notify.sh' --flag)" \
                if " " in text else ""
            return None, f"on_event names {program!r}, which is not a file{spaced}"
        if not os.access(here / program, os.X_OK):
            return None, f"on_event names {program!r}, which is not executable (chmod +x it)"
    elif shutil.which(program) is None:
        return None, f"on_event names {program!r}, which is not a program on PATH"
    return argv, ""


@dataclass
class Notifier:
    command: str
    log: Path
    warn: Callable[[str], None]
    broken: bool = False
    cwd: Optional[Path] = None  # where the hook runs: the project root, so a relative hook path works
    argv: Optional[List[str]] = field(default=None, repr=False)

    def fire(self, event: str, needs_you: bool = False, **details: object) -> None:
        """Start the hook for `event` under its watchdog and return at once; `needs_you`: a person must act."""
        if not self.command.strip() or self.broken:
            return
        if self.argv is None:
            self.argv, problem = hook_argv(self.command, self.cwd)
            if self.argv is None:
                self._give_up(problem)
                return
        env = dict(os.environ, ORCHESTRATE_EVENT=event, ORCHESTRATE_NEEDS_YOU="1" if needs_you else "0")
        env.update({key.upper(): _text(value) for key, value in details.items() if value is not None})
        watchdog = [sys.executable, "-I", "-S", str(WATCHDOG), str(HOOK_TIMEOUT), str(HOOK_OUTPUT_LIMIT),
                    "hook-" + secrets.token_hex(8), "--", *self.argv]
        try:
            with open(self.log, "ab") as out:
                subprocess.Popen(watchdog, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True, cwd=self.cwd)
        except (OSError, ValueError) as exc:
            self._give_up(f"the on_event hook cannot run ({exc})")

    def _give_up(self, problem: str) -> None:
        self.broken = True
        self.warn(f"{problem}; no more events are sent to it this run")


def _text(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value).replace("\0", "")
