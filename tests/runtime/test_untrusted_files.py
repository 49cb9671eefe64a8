"""Files and folders that are not what they seem (issue 18): a deeply nested or special `.mcp.json`,
task metadata nested past Python's stack, a logs folder that is a file. Every command gives a clear
line or goes on; none hangs, none ends in "internal error"."""

import json
import os

import pytest

import tests.runtime.runtime_import  # noqa: F401  (puts the runtime on sys.path)
from _orchestrate_kit.trackers import mcp  # noqa: E402
from _orchestrate_kit.trackers import snapshot  # noqa: E402
from tests.support import taskdb

DEEP = '{"mcpServers":' + "[" * 100_000 + "]" * 100_000 + "}"
HANG_GUARD = 60  # seconds: a command that blocks on a FIFO never returns; one that works takes a second


def test_a_deeply_nested_mcp_json_is_ignored_with_a_reason(tmp_path):
    (tmp_path / ".mcp.json").write_text(DEEP, encoding="utf-8")
    entry, note = mcp.read_server_entry(tmp_path)
    assert entry is None and "nested too deeply" in note


@pytest.mark.timeout(HANG_GUARD)
def test_a_mcp_json_that_is_a_fifo_is_never_opened_for_reading(tmp_path):
    os.mkfifo(tmp_path / ".mcp.json")  # no writer: a blocking open would wait forever
    entry, note = mcp.read_server_entry(tmp_path)
    assert entry is None and "not a regular file" in note


def test_a_mcp_json_that_is_a_folder_or_huge_is_ignored(tmp_path):
    (tmp_path / ".mcp.json").mkdir()
    assert "unreadable" in mcp.read_server_entry(tmp_path)[1]
    os.rmdir(tmp_path / ".mcp.json")
    (tmp_path / ".mcp.json").write_text(json.dumps({"pad": "x" * (2 << 20)}), encoding="utf-8")
    entry, note = mcp.read_server_entry(tmp_path)
    assert entry is None and "more than" in note


def test_task_metadata_nested_past_the_stack_is_malformed_not_a_crash():
    meta = snapshot.classify('{"streamId":' + "[" * 100_000 + "]" * 100_000 + "}")
    assert meta.problem and meta.claims_stream


@pytest.mark.parametrize("kind", ["nested", "fifo"])
def test_every_command_works_beside_a_hostile_mcp_json(project, kind):
    taskdb.diamond(project.db)
    target = project.root / ".mcp.json"
    if kind == "nested":
        target.write_text(DEEP, encoding="utf-8")
    else:
        os.mkfifo(target)
    for args in (["status"], ["status", "--json"], ["plan"], ["start", "Stream-A"]):
        result = project.orchestrate(*args, timeout=HANG_GUARD)
        assert result.returncode == 0, (args, result.stdout + result.stderr)
        assert "internal error" not in result.stderr


def test_a_logs_folder_that_is_a_file_is_named_with_the_fix(project):
    taskdb.diamond(project.db)
    assert project.orchestrate("start", "Stream-A").returncode == 0
    logs = project.home / "logs"
    for log in logs.iterdir():
        log.unlink()
    logs.rmdir()
    logs.write_text("not a folder\n", encoding="utf-8")
    for args in (["logs", "Stream-A"], ["logs", "-f", "Stream-A"], ["logs", "orchestrator"], ["start"]):
        result = project.orchestrate(*args, timeout=HANG_GUARD)
        assert result.returncode == 1, (args, result.stdout + result.stderr)
        assert "internal error" not in result.stderr
        assert f"{logs} is not a folder" in result.stderr and "mv " in result.stderr, result.stderr
    assert logs.read_text(encoding="utf-8") == "not a folder\n"  # nothing of the user's was touched
