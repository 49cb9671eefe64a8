"""The remote worker on its own (real git, a bare remote, real process trees, the fake claude), and
the applier against real databases of both Task Copilot generations. Ray is not needed here: the
worker is run the way Ray runs a job's entrypoint (`sh -c`, its own session)."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest

from tests.ray.helpers import wait_for
from tests.ray.remote_support import RemoteProject, carriers, result_of, start_worker, worker_environment
from _orchestrate_kit.executor import processes
from _orchestrate_kit.executor.ray import jobs
from _orchestrate_kit.remote import protocol, refs
from _orchestrate_kit.trackers import apply

pytestmark = pytest.mark.timeout(180)


def statuses(project: RemoteProject, stream: str):
    import sqlite3

    conn = sqlite3.connect(project.db)
    try:
        if project.generation == "mcp":
            rows = conn.execute("SELECT status FROM tasks WHERE json_extract(metadata, '$.streamId') = ?", (stream,))
        else:
            rows = conn.execute("SELECT status FROM tasks WHERE json_extract(metadata, '$.streamId') = ?", (stream,))
        return sorted(r[0] for r in rows)
    finally:
        conn.close()


@pytest.mark.parametrize("generation", ["mcp", "tc"])
def test_a_stream_runs_is_pushed_and_its_updates_apply(tmp_path, generation):
    project = RemoteProject.create(tmp_path, generation)
    description = project.describe()
    assert "ANTHROPIC_API_KEY" not in description["env"]  # only what the orchestrator sets travels
    log = tmp_path / "job.log"
    worker = start_worker(worker_environment(tmp_path, description, {"Stream-A": ["write"]}), log)
    assert worker.wait(120) == 0, log.read_text()
    text = log.read_text()
    result = result_of(text)
    assert result["pushed"] and result["branch_pushed"] and result["committed_leftovers"]
    pushed = project.remote_refs()
    assert pushed[description["attempt_ref"]] == pushed["refs/heads/stream/Stream-A"] == result["commit"]
    assert "Stream-A.txt" in project.files_at(description["attempt_ref"])
    assert project.files_at(description["progress_ref"]) == [refs.PROGRESS_FILE]
    # The attempt's worktree and folder are gone once its work is on the remote; the node's copy stays.
    cache = tmp_path / "node-cache"
    assert list((cache / "work").rglob("*.txt")) == [] and list((cache / "attempts").iterdir()) == []
    assert len(list((cache / "mirrors").glob("*.git"))) == 1
    # The database is untouched until the orchestrator applies the lines.
    assert statuses(project, "Stream-A") == ["pending", "pending"]
    applier = project.applier(description, tmp_path / "applied.json")
    outcomes = applier.feed_text(text)
    assert [o.status for o in outcomes] == ["applied"] * 4 and result["updates"] == 4
    assert statuses(project, "Stream-A") == ["completed", "completed"]
    # The backstop: the progress ref replayed after the fetch changes nothing more.
    progress = subprocess.run(["git", "show", f"{description['progress_ref']}:{refs.PROGRESS_FILE}"],
                              cwd=project.remote, capture_output=True, text=True, check=True).stdout
    assert {o.status for o in applier.feed_text(progress)} == {"duplicate"}
    # And a fresh applier (an orchestrator restart) remembers what it applied.
    assert {o.status for o in project.applier(description, tmp_path / "applied.json").feed_text(text)} == {"duplicate"}


def test_the_worker_tree_is_reaped_after_a_normal_exit(tmp_path):
    project = RemoteProject.create(tmp_path)
    description = project.describe()
    log = tmp_path / "job.log"
    events = tmp_path / "events.jsonl"
    env = worker_environment(tmp_path, description, {"Stream-A": ["ok-with-daemon"]}, events)
    worker = start_worker(env, log)
    assert worker.wait(120) == 0, log.read_text()
    daemon = [json.loads(e)["child_pid"] for e in events.read_text().splitlines() if '"daemon"' in e]
    assert daemon and processes.process_start_time(daemon[0]) is None
    assert carriers(description["token"]) == []
    assert "ended 1 process(es) the worker left running" in log.read_text()


def test_term_reaps_the_tree_even_a_daemon_and_still_pushes(tmp_path):
    project = RemoteProject.create(tmp_path)
    description = project.describe(grace=2)
    log = tmp_path / "job.log"
    events = tmp_path / "events.jsonl"
    worker = start_worker(worker_environment(tmp_path, description, {"Stream-A": ["spawn-daemon"]}, events), log)
    wait_for(lambda: events.exists() and '"daemon"' in events.read_text(), "the worker's daemon")
    daemon = [json.loads(e)["child_pid"] for e in events.read_text().splitlines() if '"daemon"' in e][0]
    os.killpg(worker.pid, signal.SIGTERM)  # what Ray's stop does: TERM to the entrypoint's tree
    assert worker.wait(60) == 128 + signal.SIGTERM
    assert carriers(description["token"]) == [] and processes.process_start_time(daemon) is None
    result = result_of(log.read_text())
    assert result["pushed"] and result["exit_code"] == 143


def test_a_second_attempt_is_fenced_from_the_first(tmp_path):
    project = RemoteProject.create(tmp_path)
    first = project.describe(attempt=1)
    second = project.describe(attempt=2)
    for description, name in ((first, "one"), (second, "two")):
        worker = start_worker(worker_environment(tmp_path, description, {"Stream-A": ["write"]}), tmp_path / name)
        assert worker.wait(120) == 0
    second_result = result_of((tmp_path / "two").read_text())
    # Both started from the same commit: the second could not fast-forward stream/Stream-A.
    assert second_result["pushed"] and not second_result["branch_pushed"]
    found = refs.list_attempt_refs(str(project.remote), "run1", "Stream-A")
    assert [r.attempt for r in found] == [1, 2]
    live = refs.live_ref(found, 2, second["token"])
    assert live and live.ref == second["attempt_ref"]
    assert [r.ref for r in refs.fenced(found, 2, second["token"])] == [first["attempt_ref"]]
    assert refs.live_ref(found, 2, "0" * 16) is None  # a guessed token is not the live attempt


def test_a_missing_start_commit_is_one_clear_line(tmp_path):
    project = RemoteProject.create(tmp_path)
    description = project.describe()
    description["start"] = "0123456789abcdef0123456789abcdef01234567"
    worker = start_worker(worker_environment(tmp_path, description, {"Stream-A": ["write"]}), tmp_path / "log")
    assert worker.wait(60) == 3
    assert "is not on the project's remote" in (tmp_path / "log").read_text()


def test_the_description_keeps_credentials_out():
    with pytest.raises(jobs.RayError, match="holds a password or token"):
        from _orchestrate_kit.executor.ray import job as ray_job

        ray_job.public_remote("https://user:ghp_secret@github.com/o/r.git")
    assert protocol.decode_job(protocol.encode_job({"version": 1, "a": "é"}))["a"] == "é"
    with pytest.raises(protocol.ProtocolError):
        protocol.encode_job({"version": 1, "big": os.urandom(200_000).hex()})


# ---------------------------------------------------------------- hostile lines


def line(description, **overrides):
    record = {"kind": "task_update", "run": description["run"], "stream": description["stream"],
              "attempt": description["attempt"], "token": description["token"], "seq": 1,
              "task": str(description["tracker"]["snapshot"]["tasks"][0]["id"]), "fields": {"status": "completed"}}
    record.update(overrides)
    return protocol.update_line(record)


@pytest.mark.parametrize("generation", ["mcp", "tc"])
def test_hostile_lines_change_nothing(tmp_path, generation):
    project = RemoteProject.create(tmp_path, generation)
    description = project.describe()
    other = project.describe("Stream-B")
    applier = project.applier(description, tmp_path / "state.json")
    before = statuses(project, "Stream-A"), statuses(project, "Stream-B")
    hostile = [
        line(description, task=str(other["tracker"]["snapshot"]["tasks"][0]["id"])),  # another stream's task
        line(description, token="f" * 16),  # another attempt's token
        line(description, attempt=2),
        line(description, run="other"),
        line(description, seq=0),
        line(description, seq=True),
        line(description, fields={}),
        line(description, kind="delete_everything"),
        line(description, fields={"status": "done"}, seq=1),
        line(description, fields={"metadata": {"streamId": "Stream-B"}}, seq=2),
        line(description, fields={"title": "x", "status": "completed"} if generation == "mcp"
             else {"assignedAgent": "x"}, seq=3),
        protocol.PREFIX + "{not json",
        protocol.PREFIX + "[1, 2]",
        "plain agent text " + line(description),  # not at the start of the line
    ]
    outcomes = [applier.feed(text) for text in hostile]
    assert outcomes[-1] is None and all(o and o.status == "rejected" for o in outcomes[:-1]), outcomes
    assert (statuses(project, "Stream-A"), statuses(project, "Stream-B")) == before
    # A good line after all that is applied, once, and an old one cannot undo it.
    assert applier.feed(line(description, seq=4)).status == "applied"
    assert applier.feed(line(description, seq=4)).status == "duplicate"
    assert applier.feed(line(description, seq=2, fields={"status": "pending"})).status == "duplicate"
    assert statuses(project, "Stream-A") == ["completed", "pending"]


def test_the_tc_write_logs_completion_like_tc(tmp_path):
    project = RemoteProject.create(tmp_path, "tc")
    import sqlite3

    conn = sqlite3.connect(project.db)
    with conn:
        conn.execute("UPDATE tasks SET agent = 'me' WHERE json_extract(metadata, '$.streamId') = 'Stream-A'")
    description = project.describe()
    applier = project.applier(description, tmp_path / "s.json")
    assert applier.feed(line(description, fields={"status": "completed", "priority": 1,
                                                  "metadata": {"note": "n"}})).status == "applied"
    task_id = int(description["tracker"]["snapshot"]["tasks"][0]["id"])
    row = conn.execute("SELECT status, priority, metadata FROM tasks WHERE id = ?", (task_id,)).fetchone()
    assert row[0] == "completed" and row[1] == 1 and '"note": "n"' in row[2] and '"streamId": "Stream-A"' in row[2]
    assert conn.execute("SELECT agent, task_id, action FROM agent_log").fetchall() == [("me", task_id, "completed")]
    conn.close()


def test_an_archived_gen1_task_is_refused_as_the_server_refuses_it(tmp_path):
    project = RemoteProject.create(tmp_path, "mcp")
    description = project.describe()
    task_id = description["tracker"]["snapshot"]["tasks"][0]["id"]
    import sqlite3

    conn = sqlite3.connect(project.db)
    with conn:
        conn.execute("UPDATE tasks SET archived = 1 WHERE id = ?", (task_id,))
    conn.close()
    outcome = project.applier(description, tmp_path / "s.json").feed(line(description))
    assert outcome.status == "rejected" and "archived" in outcome.reason
    assert apply.stream_snapshot(project.db, "mcp", "Stream-A")["tasks"][0]["id"] != task_id
