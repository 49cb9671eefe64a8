"""What Ray itself does with a job's processes (measured; the remote worker exists because of it).

A job's entrypoint runs in a session of its own. `stop` signals the entrypoint and its descendants
as psutil sees them, so a grandchild that was orphaned (a daemon's double fork) is missed; and in
some runs here (after other jobs had run on the node) even the entrypoint's own child outlived a
stop that Ray reported as STOPPED. That is shown here with a plain shell entrypoint. After a normal
exit Ray promises nothing either way: a child left running was still there in most runs and ended
by Ray in some (measured), so no test asserts one or the other. The remote worker's own reaping is
what we rely on: tested in test_remote_worker.py and, on the cluster after a normal exit and after a
stop, in test_end_to_end.py.
"""

from __future__ import annotations

import secrets
import signal

import pytest

from tests.ray.helpers import client, unique, wait_for, wait_status
from _orchestrate_kit.executor import processes
from _orchestrate_kit.executor.ray import jobs

pytestmark = pytest.mark.timeout(300)

DAEMON = ("python3 -c \"import subprocess; subprocess.Popen(['sleep', '1001'], start_new_session=True, "
          "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\"")


def described(token):
    found = []
    for pid in processes.token_carriers(token):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                found.append((pid, handle.read().replace(b"\0", b" ").decode()[:80]))
        except OSError:
            pass
    return found


def end(token):
    for pid in processes.token_carriers(token):
        processes.signal_members([pid], signal.SIGKILL)


def test_stop_misses_an_orphaned_grandchild(ray_cluster):
    api, token = client(ray_cluster), secrets.token_hex(8)
    entrypoint = f"export ORCHESTRATE_KIT_TOKEN={token}; {DAEMON}; echo daemon started; sleep 1000"
    sid = api.submit(jobs.job_request(unique("stop"), "s", 1, token, entrypoint, {}, 5)).submission_id
    try:
        wait_status(api, sid, ["RUNNING"])
        # Both sleeps running and the daemon's launcher gone, so the daemon is orphaned already (a
        # shell's own `export` is not in its /proc environ, so the shell is not listed).
        # A launcher that has exited but is not reaped yet reads an empty cmdline: it is gone too.
        wait_for(lambda: sorted(cmd.split()[1] for _pid, cmd in described(token) if cmd.strip()) == ["1000", "1001"],
                 lambda: f"the sleep and the orphaned daemon; now: {described(token)}")
        api.stop(sid)
        assert wait_status(api, sid, jobs.TERMINAL).status == "STOPPED"
        # Ray reports STOPPED once its own TERM/KILL round is over: the daemon was never part of it.
        left = described(token)
        assert (any(cmd.startswith("sleep 1001") for _pid, cmd in left)), left
        print(f"left after Ray's stop: {left}")  # at times the entrypoint's own `sleep 1000` too
    finally:
        end(token)
