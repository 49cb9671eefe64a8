"""The `on_event` hook's watchdog: runs one hook call, bounds its time and its output, then exits.

Started by `notify.Notifier` as `python -I -S hook_watchdog.py TIMEOUT LIMIT TOKEN -- ARGV...`, in a
session of its own with the orchestrator log as its output, so the loop never waits for a hook and
a hook outliving the orchestrator still ends. The hook runs in a session of its own too, with
ORCHESTRATE_KIT_TOKEN=TOKEN in its environment, as workers do: when it ran over TIMEOUT seconds,
everything carrying the token is ended (its group, and on Linux a `setsid` daemon it forked), and
the watchdog waits for those too, so nothing of a hook outlives the timeout. At most LIMIT bytes of
what it prints reach the log; the rest is read and dropped, and the log says how much.
Standard library only, Python 3.9+.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from typing import List, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # -I leaves it out
from _orchestrate_kit.executor.processes import TOKEN_VARIABLE, signal_group, signal_members, token_carriers  # noqa: E402

POLL_SECONDS = 0.2  # how often leftovers are looked for once the hook's output has ended


def _say(text: str) -> None:
    os.write(1, f"orchestrate: {text}\n".encode("utf-8", "replace"))


def _relay(pipe: int, limit: int, deadline: float) -> int:
    """Copy the hook's output to ours, up to `limit` bytes, until it ends or `deadline`; bytes dropped."""
    kept = dropped = 0
    while time.monotonic() < deadline:
        ready, _, _ = select.select([pipe], [], [], max(deadline - time.monotonic(), 0.0))
        if not ready:
            break
        data = os.read(pipe, 1 << 16)
        if not data:
            break
        room = max(limit - kept, 0)
        if room:
            os.write(1, data[:room])
        kept += min(room, len(data))
        dropped += len(data) - min(room, len(data))
    return dropped


def _leftovers(hook: subprocess.Popen, token: str) -> List[int]:
    """What of the hook still runs: the hook itself and (Linux) every process carrying its token."""
    alive = [hook.pid] if hook.poll() is None else []
    return alive + [pid for pid in token_carriers(token) if pid not in alive and pid != os.getpid()]


def watch(timeout: float, limit: int, token: str, argv: Sequence[str]) -> int:
    """Run the hook; end all of it at the deadline. The exit code is the hook's (124 when it ran over)."""
    deadline = time.monotonic() + timeout
    env = dict(os.environ, **{TOKEN_VARIABLE: token})
    try:
        hook = subprocess.Popen(list(argv), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
    except OSError as exc:
        _say(f"the on_event hook cannot run: {exc}")
        return 127
    assert hook.stdout is not None
    dropped = _relay(hook.stdout.fileno(), limit, deadline)
    hook.stdout.close()  # a daemon still writing gets EPIPE, not our log
    if dropped:
        _say(f"the on_event hook printed {dropped} bytes more than the {limit} kept here; dropped them")
    while _leftovers(hook, token) and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
    left = _leftovers(hook, token)
    if left:
        _say(f"the on_event hook (or what it started) ran over {timeout:g}s; killed it")
        signal_group(hook.pid, signal.SIGKILL)
        signal_members(left, signal.SIGKILL)
        hook.wait()
        return 124
    return hook.wait()


def main(args: Sequence[str]) -> int:
    timeout, limit, token, separator, *argv = args
    if separator != "--" or not argv:
        _say("hook_watchdog: usage: TIMEOUT LIMIT TOKEN -- ARGV...")
        return 2
    return watch(float(timeout), int(limit), token, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
