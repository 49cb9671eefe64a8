"""What wakes the supervisor's loop, and what its signal handlers note for it.

Signal handlers only note what arrived (a stop signal, a request waiting); the
loop acts on it at its next turn. Every signal also writes to a wakeup fd (as
`signal.set_wakeup_fd` does), so the loop, asleep in `select` until the next
thing due, wakes at once: a worker's exit (SIGCHLD), a request (SIGUSR1), a
stop (TERM, INT, HUP). Standard library only, Python 3.9+.
"""

from __future__ import annotations

import os
import select
import signal
from typing import List


class Inbox:
    """What signal handlers noted, for the loop to act on; and the wakeup fd the loop sleeps on."""

    def __init__(self) -> None:
        self.wake_r, self.wake_w = os.pipe()
        self.stops: List[int] = []  # TERM, INT and HUP since the loop last looked
        self.requests = True  # look for request files (at start: some may be waiting)

    def install(self) -> None:
        os.set_blocking(self.wake_w, False)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # only to wake the loop at once
        signal.signal(signal.SIGUSR1, lambda *_: self.request())
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, lambda signum, _frame: self.stop(signum))

    def stop(self, signum: int) -> None:
        self.stops.append(signum)

    def take_stops(self) -> List[int]:
        """The stop signals noted since the last call (one arriving meanwhile is kept for the next)."""
        stops, self.stops = self.stops, []
        return stops

    def request(self) -> None:
        self.requests = True

    def sleep(self, timeout: float) -> None:
        try:
            ready, _, _ = select.select([self.wake_r], [], [], max(timeout, 0.0))
        except InterruptedError:
            return
        if ready:
            try:
                os.read(self.wake_r, 4096)
            except BlockingIOError:
                pass
