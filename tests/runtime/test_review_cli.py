"""`orchestrate.py review | approve | reject STREAM`: the review gate on the command line, with real git.

The rows are real saved tables (a stream `awaiting_review`, as the loop leaves it with merge_gate =
review); the last test hands an approval to a real running orchestrator."""

from __future__ import annotations

import json

import pytest

from tests.runtime.runtime_import import lifecycle, orchestrate, settings, workspaces as ws
from tests.support.project import Project
from tests.support.taskdb import add_stream, make_db
from _orchestrate_kit.cli import review as review_cli
from _orchestrate_kit.git import gates


@pytest.fixture
def project(tmp_path):
    proj = Project.create_git(tmp_path, {"isolation": "worktree"})
    yield proj
    proj.stop_leftovers()


@pytest.fixture
def layout(project):
    return settings.layout_for(project.home)


def start_run(project, layout, rows):
    """A worktree run with these rows saved, as a stopped orchestrator leaves it; the stream branches committed."""
    run = ws.start_run(project.root)
    table = lifecycle.Table(run=lifecycle.RunInfo(isolation="worktree", integration_branch=run.integration_branch,
                                                  base=run.base))
    for sid, state in rows.items():
        table.rows[sid] = lifecycle.Life(state=lifecycle.StreamState(state), ran=True)
    layout.make_dirs()
    lifecycle.save_table(layout.run_file, table)
    return run


def commit_work(project, run, sid, name, text):
    space = ws.prepare_workspace(project.root, run, sid)
    (space.cwd / name).write_text(text, encoding="utf-8")
    project.git("add", "-A", cwd=space.cwd)
    project.git("commit", "-q", "-m", f"{sid}: {name}", cwd=space.cwd)
    return project.git("rev-parse", "HEAD", cwd=space.cwd).strip()


def cli(capsys, layout, *argv):
    code = orchestrate.main(list(argv), layout=layout)
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------- review, approve, reject


def test_review_prints_what_would_merge_and_records_the_commit(project, layout, capsys):
    run = start_run(project, layout, {"Stream-A": "awaiting_review"})
    commit = commit_work(project, run, "Stream-A", "a.txt", "from A\n")
    with open(layout.log_for("Stream-A"), "w", encoding="utf-8") as log:
        log.write('{"type":"result","subtype":"success","result":"Added a.txt.\\nAll tasks done. \\u001b[31m"}\n')

    code, out, err = cli(capsys, layout, "review", "Stream-A")

    assert code == 0, err
    assert f"Stream Stream-A: stream/Stream-A at {commit[:12]}, 1 commit(s) that {run.integration_branch}" in out
    assert "  Added a.txt.\n  All tasks done. \\x1b[31m\n" in out  # the agent's text is shown inert
    assert "a.txt | 1 +" in out and "+from A" in out
    assert "orchestrate.py approve Stream-A" in out and "orchestrate.py reject Stream-A --reason TEXT" in out
    assert gates.read_record(layout.state, "Stream-A").commit == commit
    code, out, _ = cli(capsys, layout, "review", "Stream-A", "--stat")
    assert "a.txt | 1 +" in out and "+from A" not in out
    code, out, _ = cli(capsys, layout, "review", "Stream-A", "--json")
    assert json.loads(out)["commit"] == commit and json.loads(out)["summary"].startswith("Added a.txt.")


def test_approve_records_an_approval_bound_to_the_reviewed_commit(project, layout, capsys):
    run = start_run(project, layout, {"Stream-A": "awaiting_review"})
    first = commit_work(project, run, "Stream-A", "a.txt", "v1\n")
    assert cli(capsys, layout, "review", "Stream-A")[0] == 0
    moved = commit_work(project, run, "Stream-A", "a.txt", "v2\n")

    code, out, err = cli(capsys, layout, "approve", "Stream-A")

    assert code == 1 and out == ""
    assert f"the review showed {first[:12]}, the branch is at {moved[:12]} now. Review again" in err
    assert gates.approved_commit(layout.state, "Stream-A") is None
    cli(capsys, layout, "review", "Stream-A", "--stat")
    code, out, err = cli(capsys, layout, "approve", "Stream-A")
    assert code == 0, err
    assert out == f"Approved Stream-A at {moved[:12]}: the next `orchestrate.py start` merges exactly that commit.\n"
    assert gates.approved_commit(layout.state, "Stream-A") == moved


def test_reject_records_the_reason_for_the_agents_next_prompt(project, layout, capsys):
    run = start_run(project, layout, {"Stream-A": "awaiting_review"})
    commit = commit_work(project, run, "Stream-A", "a.txt", "v1\n")
    code, out, err = cli(capsys, layout, "reject", "Stream-A", "--reason", "add the tests")
    assert code == 0, err
    assert "hands it back to its agent with your reason" in out
    pending = gates.pending_rejection(layout.state, "Stream-A")
    assert (pending.reason, pending.commit) == ("add the tests", commit)
    with pytest.raises(SystemExit) as usage:
        orchestrate.main(["reject", "Stream-A"], layout=layout)
    assert usage.value.code == 2 and "--reason" in capsys.readouterr().err


def test_an_agent_cannot_approve_its_own_stream(project, layout, capsys, monkeypatch):
    run = start_run(project, layout, {"Stream-A": "awaiting_review"})
    commit_work(project, run, "Stream-A", "a.txt", "v1\n")
    cli(capsys, layout, "review", "Stream-A")
    monkeypatch.setenv("ORCHESTRATE_KIT_TOKEN", "0123456789abcdef")  # what every worker has
    code, _, err = cli(capsys, layout, "approve", "Stream-A")
    assert code == 1 and "approved by a person" in err
    assert gates.approved_commit(layout.state, "Stream-A") is None


# ---------------------------------------------------------------- refusals, through the real table


def test_an_unknown_stream_gets_did_you_mean(project, layout, capsys):
    start_run(project, layout, {"Stream-A": "complete"})
    code, _, err = cli(capsys, layout, "approve", "Stream-a")
    assert code == 1 and "unknown stream(s): Stream-a (did you mean Stream-A?)" in err


def test_a_stream_that_does_not_await_review_is_refused(project, layout, capsys):
    run = start_run(project, layout, {"Stream-A": "running", "Stream-B": "complete"})
    commit_work(project, run, "Stream-A", "a.txt", "v1\n")
    for command in (["review", "Stream-A"], ["approve", "Stream-A"], ["reject", "Stream-A", "--reason", "x"]):
        code, _, err = cli(capsys, layout, *command)
        assert code == 1 and "stream Stream-A is running, not awaiting_review" in err, (command, err)
    code, _, err = cli(capsys, layout, "approve", "Stream-B")
    assert "stream Stream-B is complete, not awaiting_review" in err
    assert gates.read_record(layout.state, "Stream-A") is None  # a refusal records nothing


def test_a_stream_the_database_knows_but_the_run_has_not_started(project, layout, capsys, monkeypatch):
    for key in ("TASK_DB_PATH", "WORKSPACE_ID"):
        monkeypatch.setenv(key, project.env[key])
    make_db(project.db)
    add_stream(project.db, "Stream-Q", [], 1, "Later")
    start_run(project, layout, {"Stream-A": "complete"})
    code, _, err = cli(capsys, layout, "review", "Stream-Q")
    assert code == 1 and "stream Stream-Q has not run yet in this run" in err


def test_without_a_worktree_run_the_commands_say_so(project, layout, capsys):
    code, _, err = cli(capsys, layout, "review", "Stream-A")
    assert code == 1 and "need a run with worktree isolation" in err and "--isolation worktree" in err


def test_a_real_awaiting_review_row_is_accepted(project, layout, capsys):
    run = start_run(project, layout, {"Stream-A": "awaiting_review"})
    commit_work(project, run, "Stream-A", "a.txt", "v1\n")
    assert cli(capsys, layout, "review", "Stream-A", "--stat")[0] == 0
    assert cli(capsys, layout, "approve", "Stream-A")[0] == 0


# ---------------------------------------------------------------- with a running orchestrator


def test_with_a_running_orchestrator_an_approval_is_merged_at_once(project, layout, capsys):
    project.configure(isolation="worktree", merge_gate="review")
    make_db(project.db)
    add_stream(project.db, "Stream-A", [], 1, "Foundation")
    add_stream(project.db, "Stream-X", [], 1, "Elsewhere")
    project.plan({"Stream-A": ["commit"], "Stream-X": ["hang"]})  # X's worker keeps the orchestrator running
    started = project.orchestrate("start", "--detach", "--no-preflight")
    assert started.returncode == 0, started.stdout + started.stderr
    project.wait_for(lambda: project.states().get("Stream-A") == "awaiting_review", what="Stream-A awaiting review")
    assert cli(capsys, layout, "review", "Stream-A", "--stat")[0] == 0
    reviewed = project.git("rev-parse", "stream/Stream-A").strip()

    code, out, err = cli(capsys, layout, "approve", "Stream-A")

    assert code == 0, err
    assert "Handed to the running orchestrator" in out and "merges exactly the approved commit of Stream-A" in out
    project.wait_for(lambda: project.states().get("Stream-A") == "complete", what="Stream-A merged")
    integration = project.status()["run"]["integration_branch"]
    project.git("merge-base", "--is-ancestor", reviewed, integration)  # raises unless merged
    assert gates.read_record(layout.state, "Stream-A") is None  # merged: its review is done with
    assert not list(layout.requests.glob("*.json")) and not list(layout.requests.glob("*.reply"))
