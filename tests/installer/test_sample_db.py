"""``orchestrate-kit sample-db``: the diamond as a real Task Copilot database, never over an existing one."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

from .helpers import REPO, init_repo, run

RUNTIME = REPO / "template" / ".claude" / "orchestrator" / "orchestrate.py"


def test_writes_the_diamond_where_the_runtime_looks(tmp_path, capsys, monkeypatch, fake_home):
    project = init_repo(tmp_path / "my-app")
    monkeypatch.chdir(project)

    result = run(capsys, "sample-db")

    db = fake_home / ".claude/tasks/my-app/tasks.db"
    assert result.code == 0, result.err
    assert f"Wrote the sample plan to {db}" in result.out and "orchestrate.py start" in result.out
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT metadata, status FROM tasks").fetchall()
    conn.close()
    assert len(rows) == 12 and {status for _, status in rows} == {"pending"}
    deps = {m["streamId"]: sorted(m["dependencies"]) for m in (json.loads(meta) for meta, _ in rows)}
    assert deps == {"Stream-A": [], "Stream-B": ["Stream-A"], "Stream-C": ["Stream-A"],
                    "Stream-Z": ["Stream-B", "Stream-C"]}
    # The runtime reads it as the documented example: A first, then B and C, then Z.
    plan = subprocess.run([sys.executable, str(RUNTIME), "plan", "--json", "--db", str(db)],
                          capture_output=True, text=True, check=False)
    assert plan.returncode == 0, plan.stderr
    assert json.loads(plan.stdout)["levels"] == [["Stream-A"], ["Stream-B", "Stream-C"], ["Stream-Z"]]


def test_an_existing_database_is_never_overwritten(tmp_path, capsys):
    db = tmp_path / "tasks.db"
    db.write_bytes(b"the user's own")

    result = run(capsys, "sample-db", "--db", str(db), "--project", str(tmp_path))

    assert result.code == 1 and "never overwritten" in result.err
    assert db.read_bytes() == b"the user's own"
