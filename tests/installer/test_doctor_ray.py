"""``orchestrate-kit doctor`` with ``executor = ray``: the workers run on the cluster's nodes, so doctor
asks the installed runtime (``orchestrate.py preflight --json``) to check the cluster instead of the
worker command on this machine: the address, the token, the jobs API version, a node advertising
``agent_slot`` and the git remote the nodes use (tests/ray/ checks a real cluster's answers)."""

from __future__ import annotations

from .helpers import init_repo, run, use


def doctor_line(capsys, project, label):
    result = run(capsys, "doctor", str(project))
    found = [line for line in result.out.splitlines() if line.split(None, 1)[1:2] and label in line]
    assert found, result.out
    return result, found[0]


def test_an_unset_or_unreachable_cluster_fails_with_the_fix(tmp_path, capsys, monkeypatch, repo_template):
    use(monkeypatch, repo_template)
    project = init_repo(tmp_path / "project")
    assert run(capsys, "install", "--defaults", str(project)).code == 0
    local = project / ".claude/orchestrator/orchestrator.local.conf"
    local.write_text(local.read_text() + "executor = ray\n")

    result, line = doctor_line(capsys, project, "Ray cluster")
    assert result.code == 1 and line.startswith("FAIL") and "needs ray_address" in line, line
    assert "worker command" not in result.out  # not looked for here: it runs on the nodes

    local.write_text(local.read_text() + "ray_address = http://127.0.0.1:9\n")
    result, line = doctor_line(capsys, project, "Ray cluster")
    assert result.code == 1 and line.startswith("FAIL") and "127.0.0.1:9" in line, line
