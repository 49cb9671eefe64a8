"""The orchestrator SIGKILLed at random moments of a layered run, started again, over and over.

Each round runs the eight-stream, four-level graph of `checks.LAYERED`, kills the orchestrator
two to four times at a random moment (while it starts workers, waits, judges exits, ...), and
after every kill checks that each live worker is still known (its pid file, and `status`).
Then one last `start` must adopt what is running and finish the run. Over all rounds the
goal is 0 duplicate workers, 0 lost workers and 0 streams left unfinished.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

import pytest

from tests.support.project import Project

from .checks import (LAYERED, killed_at_random, layered_db, live_fake_workers, lost_workers, starts_per_stream,
                     unfinished_streams)
from .conftest import ROUNDS, soak_timeout


def one_round(project: Project, rng, totals: Counter) -> None:
    layered_db(project.db)
    project.env["FAKE_CLAUDE_DELAY"] = "0.1"
    for killed in killed_at_random(project, rng, rng.randint(2, 4), (0.0, 1.2), timeout=30):
        totals["kills"] += killed
        totals["lost"] += len(lost_workers(project))
    final = project.orchestrate("start", timeout=120)
    assert "Traceback" not in final.stdout + final.stderr, final.stdout + final.stderr
    totals["final run failed"] += final.returncode != 0
    totals["lost"] += len(live_fake_workers(project))  # the run is over: nothing may still be working
    totals["duplicates"] += len(project.events("duplicate"))
    totals["unfinished"] += len(unfinished_streams(project))
    starts = starts_per_stream(project)
    totals["never started"] += len(set(LAYERED) - set(starts))
    totals["restarts"] += sum(starts.values()) - len(starts)


@pytest.mark.soak
@pytest.mark.timeout(soak_timeout(60))
def test_killed_orchestrator_leaves_no_duplicate_lost_or_unfinished_worker(tmp_path, rng, capsys):
    totals: Counter = Counter()
    for number in range(ROUNDS):
        project = Project.create(tmp_path / f"round-{number}")
        try:
            one_round(project, rng, totals)
        finally:
            project.stop_leftovers()
    with capsys.disabled():
        print(f"\n[soak] orchestrator killed: {ROUNDS} rounds, {totals['kills']} kills; "
              f"duplicates {totals['duplicates']}, lost {totals['lost']}, unfinished {totals['unfinished']}; "
              f"restarts {totals['restarts']}, failed final runs {totals['final run failed']}")
    bad = {k: totals[k] for k in ("duplicates", "lost", "unfinished", "never started", "final run failed")}
    assert bad == dict.fromkeys(bad, 0), dict(totals)


def test_a_worker_spawned_as_the_orchestrator_dies_never_runs(project):
    """The spawn window the random kills rarely hit: a worker is a launcher waiting for "go",
    which comes only after its pid file is written; if the orchestrator dies before that, the
    launcher reads end-of-file and exits without running the worker command."""
    from tests.runtime.runtime_import import executor

    env = {**project.env, "STREAM_ID": "A", "ORCHESTRATOR_ATTEMPT": "1"}
    outcomes = []
    for say_go in (False, True):
        go_read, go_write = os.pipe()
        launcher = subprocess.Popen([sys.executable, "-I", "-S", "-c", executor._LAUNCHER, str(go_read),
                                     "claude", "-p", "prompt"], env=env, pass_fds=(go_read,),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(go_read)
        if say_go:
            os.write(go_write, b"go")
        os.close(go_write)  # what the kernel does when the orchestrator dies
        outcomes.append(launcher.wait(timeout=30))
    assert outcomes[0] == 75
    assert [e["attempt"] for e in project.events("start")] == [1]  # only the one that was told "go"
