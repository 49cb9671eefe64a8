"""One name per stream id for its log, pid file, worktree and branch (names.safe_name)."""

import subprocess

import pytest

from tests.runtime.runtime_import import names, settings, workspaces

# Names earlier runs already use for plain ids: one mapping must not move them.
PLAIN = ["Stream-A", "stream-a", "api", "A", "v1.2", "db_migrations", "x" * 80, "Stream-Z.final", "9lives"]
HOSTILE = ["a/b", "../../etc", "..", ".", "orchestrator", "ORCHESTRATOR", "a.lock", "trailing.", "-rf", ".hidden",
           "tab\there", "new\nline", "Ünïcødé-流", "x" * 81, "a~b", "a+b", "a b", "~", "+", "", "a..b"]


@pytest.mark.parametrize("sid", PLAIN)
def test_a_plain_id_keeps_its_name_everywhere(tmp_path, sid):
    layout = settings.layout_for(tmp_path / ".claude" / "orchestrator")
    assert names.safe_name(sid) == sid
    assert layout.log_for(sid).name == f"{sid}.log" and layout.pid_for(sid).name == f"{sid}.pid"
    assert workspaces.stream_branch(sid) == f"stream/{sid}"
    assert workspaces.worktree_path(tmp_path, sid).name == sid


def test_any_other_id_gets_one_hashed_name_for_files_and_git(tmp_path):
    layout = settings.layout_for(tmp_path / ".claude" / "orchestrator")
    found = {}
    for sid in HOSTILE:
        name = names.safe_name(sid)
        assert "+" in name and name != sid, sid
        assert layout.log_for(sid).name == f"{name}.log" and layout.pid_for(sid).name == f"{name}.pid"
        assert workspaces.stream_branch(sid) == f"stream/{name}"
        assert workspaces.worktree_path(tmp_path, sid) == tmp_path / ".claude" / "worktrees" / name
        assert layout.log_for(sid).parent == layout.logs  # never outside its folder
        check = subprocess.run(["git", "check-ref-format", f"refs/heads/stream/{name}"])
        assert check.returncode == 0, (sid, name)
        found[name] = sid
    assert len(found) == len(HOSTILE)  # no two ids share a name
    assert not set(found) & set(PLAIN)
