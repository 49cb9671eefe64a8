"""The tracker's database made read-only mid-run (issue 18): a configuration failure of the run, not of each
stream. Every worker fails on its first update with SQLite's "attempt to write a readonly database"; the
run stops with exit 2 and the fix, and no attempt is spent (no back-off, no restart, no failed stream).

How it is made read-only here: the tests run as root, which ignores permission bits, so `chmod -R a-w`
would change nothing. `chattr +i` (the immutable flag) on the database's folder and its files binds
root too: a worker's write then fails exactly as for a user whose folder was made read-only, with
SQLite's own message, while reads go on. Where the file system has no immutable flag the test is
skipped and says so. The orchestrator never reads this from what a worker printed: it asks the
database itself (a read-write connection and BEGIN IMMEDIATE, rolled back) when an attempt fails.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

from tests.support import taskdb


def immutable(paths: List[Path], on: bool) -> bool:
    if shutil.which("chattr") is None:
        return False
    result = subprocess.run(["chattr", "+i" if on else "-i", *map(str, paths)], capture_output=True, text=True)
    return result.returncode == 0


def database_files(db: Path) -> List[Path]:
    return [db.parent] + sorted(db.parent.glob(db.name + "*"))


def test_a_database_made_read_only_mid_run_stops_the_run_with_exit_2_and_spends_no_attempt(project, tmp_path):
    taskdb.make_db(project.db)
    taskdb.add_stream(project.db, "A", [], 2)
    taskdb.add_stream(project.db, "B", [], 2)
    taskdb.add_stream(project.db, "C", ["A"], 1)
    gate = tmp_path / "gate"
    project.env["FAKE_CLAUDE_GATE"] = str(gate)
    project.plan({"A": ["gated"], "B": ["gated"]})  # both run, then write once the folder is read-only
    proc = subprocess.Popen([sys.executable, str(project.home / "orchestrate.py"), "start", "--no-preflight"],
                            env=project.env, cwd=project.root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, stdin=subprocess.DEVNULL, start_new_session=True)
    files = []
    try:
        project.wait_for(lambda: len(project.events("start")) == 2, timeout=60, what="both workers")
        files = database_files(project.db)
        if not immutable(files, True):
            pytest.skip("this file system has no immutable flag (chattr +i): cannot make the database "
                        "read-only for root")
        gate.touch()
        out, _ = proc.communicate(timeout=60)
        status = json.loads(project.orchestrate("status", "--json").stdout)  # reads still work
    finally:
        if files:
            immutable(files, False)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 2, out
    assert "attempt to write a readonly database" in out and "cannot be written" in out
    assert f"fix: make {project.db.parent} and the database files in it writable again" in out
    assert "no attempt was counted" in out and "Traceback" not in out.split("fake claude")[0]
    streams = {s["stream_id"]: s for s in status["streams"]}
    assert {s["state"] for s in streams.values()} <= {"ready", "waiting"}  # nothing failed, nothing in back-off
    assert status["run"]["fatal"] and status["run"]["exit_code"] == 2
    assert sorted(e["stream"] for e in project.events("start")) == ["A", "B"]  # no restart
    table = json.loads(next(project.home.parent.parent.rglob("run.json")).read_text(encoding="utf-8"))
    assert all(row["failures"] == 0 for row in table["streams"].values())
    # Once writable again, `start` runs the plan to its end with fresh attempts.
    project.plan({})
    again = project.orchestrate("start", "--no-preflight", timeout=90)
    assert again.returncode == 0, again.stdout + again.stderr
