"""Waiting for something a real process does: polled until it holds, with a deadline that only
ends a test that would otherwise hang (never a measured time: a slow machine waits longer)."""

from __future__ import annotations

import time

DEADLINE = 120.0


def wait_until(predicate, what: str, timeout: float = DEADLINE, interval: float = 0.02):
    """`predicate()`'s first true value, asked every `interval` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"gave up after {timeout:g} s waiting for {what}"
        time.sleep(interval)
