"""Small helpers the Ray tests share: the runtime's modules, a client, waiting on a job by events."""

from __future__ import annotations

import secrets
import time
from typing import Callable, Iterable

import tests.ray.conftest  # noqa: F401  (puts the runtime on sys.path)

from _orchestrate_kit.executor.ray import jobs  # noqa: E402


def client(cluster, timeout: float = 30.0) -> "jobs.JobsClient":
    return jobs.JobsClient(cluster.address, jobs.read_token(cluster.environ), timeout=timeout)


def wait_for(condition: Callable[[], object], what: str, limit: float = 120.0, step: float = 0.2):
    """Poll until `condition()` is truthy; the limit only turns a hang into a failure, never a verdict."""
    deadline = time.monotonic() + limit
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what() if callable(what) else what}")
        time.sleep(step)


def wait_status(api, sid: str, statuses: Iterable[str], limit: float = 120.0) -> "jobs.JobInfo":
    wanted = set(statuses)
    return wait_for(lambda: (lambda j: j if j and j.status in wanted else None)(api.info(sid)),
                    f"job {sid} to reach {sorted(wanted)}", limit)


def unique(prefix: str) -> str:
    """A run id no other test uses (submission ids must never repeat within the session's cluster)."""
    return f"{prefix}{secrets.token_hex(4)}"
