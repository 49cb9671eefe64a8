"""The node's stand-ins for Task Copilot as a worker meets them: `tc` and the MCP server over stdio."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.ray.remote_support import RemoteProject
from tests.support.project import RUNTIME
from _orchestrate_kit.remote import tasks as node_tasks
from _orchestrate_kit.trackers import apply


def node(tmp_path, generation):
    project = RemoteProject.create(tmp_path, generation)
    snapshot = apply.stream_snapshot(project.db, generation, "Stream-A")
    folder = tmp_path / "attempt"
    folder.mkdir()
    node_tasks.NodeTasks.write(folder / "tasks.json", snapshot)
    env = {**os.environ, "PYTHONPATH": str(RUNTIME), node_tasks.TASKS_VARIABLE: str(folder / "tasks.json"),
           node_tasks.UPDATES_VARIABLE: str(folder / "updates.jsonl")}
    return snapshot, folder, env


def tc(env, *args):
    return subprocess.run([sys.executable, "-m", "_orchestrate_kit.remote.tc_shim", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def test_tc_answers_like_tc_and_records_updates(tmp_path):
    snapshot, folder, env = node(tmp_path, "tc")
    first = snapshot["tasks"][0]
    listed = json.loads(tc(env, "task", "list", "--json").stdout)
    assert [t["id"] for t in listed] == [t["id"] for t in snapshot["tasks"]] and listed[0]["stream_id"]
    assert json.loads(tc(env, "task", "list", "--stream", str(first["stream_id"]), "--json").stdout) == listed
    assert json.loads(tc(env, "task", "list", "--stream", "999", "--json").stdout) == []
    done = tc(env, "task", "update", str(first["id"]), "--status", "in_progress")
    assert done.returncode == 0 and done.stdout == f"Updated task #{first['id']}: {first['title']} [in_progress]\n"
    assert json.loads(tc(env, "task", "get", str(first["id"]), "--json").stdout)["status"] == "in_progress"
    recorded = [json.loads(line) for line in (folder / "updates.jsonl").read_text().splitlines()]
    assert [(r["task"], r["fields"]) for r in recorded] == [(str(first["id"]), {"status": "in_progress"})]
    # tc's exit codes: 2 not found, 4 invalid; other commands are refused, not faked.
    assert tc(env, "task", "get", "9999").returncode == 2
    missing = tc(env, "task", "update", "9999", "--status", "completed", "--json")
    error = json.loads(missing.stderr)
    assert missing.returncode == error["code"] == 2 and error["error"].startswith("Task #9999 not found")
    assert tc(env, "task", "update", str(first["id"]), "--status", "finished").returncode == 4
    assert tc(env, "task", "update", str(first["id"]), "--metadata", '{"streamId": "Stream-Z"}').returncode == 4
    refused = tc(env, "stream", "list")
    assert refused.returncode == 1 and "not available on a cluster node" in refused.stderr
    assert len((folder / "updates.jsonl").read_text().splitlines()) == 1
    no_snapshot = {k: v for k, v in env.items() if k != node_tasks.TASKS_VARIABLE}
    assert tc(no_snapshot, "task", "list").returncode == 5


def test_the_mcp_stand_in_speaks_mcp_with_the_real_tool_names(tmp_path):
    snapshot, folder, env = node(tmp_path, "mcp")
    server = subprocess.Popen([sys.executable, "-m", "_orchestrate_kit.remote.mcp_shim"], env=env, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        def ask(ident, method, params=None):
            server.stdin.write(json.dumps({"jsonrpc": "2.0", "id": ident, "method": method, "params": params or {}})
                               + "\n")
            server.stdin.flush()
            return json.loads(server.stdout.readline())

        info = ask(1, "initialize", {"protocolVersion": "2025-06-18", "capabilities": {}})["result"]
        assert info["serverInfo"]["name"] == "task-copilot" and info["protocolVersion"] == "2025-06-18"
        server.stdin.write(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}) + "\n")
        names = [t["name"] for t in ask(2, "tools/list")["result"]["tools"]]
        assert names == ["task_update", "task_get", "task_list"]
        task_id = snapshot["tasks"][0]["id"]

        def call(ident, name, **arguments):
            result = ask(ident, "tools/call", {"name": name, "arguments": arguments})["result"]
            return result, result["content"][0]["text"]

        _result, text = call(3, "task_list")
        assert [t["id"] for t in json.loads(text)] == [t["id"] for t in snapshot["tasks"]]
        _result, text = call(4, "task_update", id=task_id, status="completed", notes="done on a node")
        assert json.loads(text)["status"] == "completed"
        _result, text = call(5, "task_get", id=task_id)
        assert json.loads(text)["notes"] == "done on a node" and json.loads(text)["metadata"]["streamId"] == "Stream-A"
        assert call(6, "task_get", id="TASK-99999")[1] == "Task not found"
        bad, text = call(7, "task_update", id=task_id, status="finished")
        assert bad.get("isError") and "invalid status" in text
        other, text = call(8, "stream_list")
        assert other.get("isError") and "not available on a cluster node" in text
        assert ask(9, "resources/list")["error"]["code"] == -32601
    finally:
        server.stdin.close()
        server.wait(10)
    recorded = [json.loads(line) for line in (folder / "updates.jsonl").read_text().splitlines()]
    assert [r["fields"] for r in recorded] == [{"status": "completed", "notes": "done on a node"}]


@pytest.mark.parametrize("generation", ["mcp", "tc"])
def test_concurrent_updates_lose_nothing(tmp_path, generation):
    snapshot, folder, env = node(tmp_path, generation)
    ids = [str(t["id"]) for t in snapshot["tasks"]]
    store = node_tasks.NodeTasks(folder / "tasks.json", folder / "updates.jsonl")
    script = ("import sys; from _orchestrate_kit.remote.tasks import NodeTasks as N; "
              "s = N.from_environment(); [s.update(sys.argv[1], {'status': st}) "
              "for st in ['in_progress', 'blocked', 'in_progress'] * 5]")
    workers = [subprocess.Popen([sys.executable, "-c", script, task], env=env) for task in ids]
    assert [w.wait(60) for w in workers] == [0] * len(ids)
    assert len((folder / "updates.jsonl").read_text().splitlines()) == 15 * len(ids)
    assert {t["status"] for t in store.tasks()} == {"in_progress"}
