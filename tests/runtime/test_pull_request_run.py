"""merge_gate = pr end to end: real `orchestrate.py start` runs with the fake claude, the stand-in gh and a real
local bare remote ("GitHub" merges there for real, so the integration branch moves there and is fetched back).

A stream's branch is pushed and a draft pull request opened; the run polls it (observed steps, never
blocking the loop: `status` answers meanwhile); merged there, the stream is complete and its dependent
starts from the fetched branch; a pull request closed unmerged parks its stream (`pr_closed`), and
`start STREAM` hands it back to its agent, told to read the comments. `start` refuses without gh, its
login or the remote.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.support.fake_github import FakeGitHub
from tests.support.project import Project
from tests.support.taskdb import add_stream, make_db


@pytest.fixture
def project(tmp_path):
    proj = Project.create_git(tmp_path / "p", {"isolation": "worktree", "merge_gate": "pr", "spawn_gap": 0,
                                               "pr_poll_interval": 1})
    bare = tmp_path / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    proj.git("remote", "add", "origin", str(bare))
    proj.hub = FakeGitHub(tmp_path, bare)
    proj.env.update(proj.hub.environment())
    make_db(proj.db)
    add_stream(proj.db, "A", [], 1, "Foundation")
    add_stream(proj.db, "B", ["A"], 1, "On top")
    proj.plan({"A": ["commit"], "B": ["require:A"]})  # B fails unless A's work reached its worktree
    yield proj
    proj.stop_leftovers()


def rows(project):
    return {s["stream_id"]: s for s in project.status()["streams"]}


def test_a_pull_request_per_stream_merged_on_github_then_closed_and_handed_back(project):
    hub = project.hub
    run = project.start_background("--no-preflight")
    try:
        project.wait_for(lambda: rows(project)["A"]["state"] == "awaiting_pr", timeout=60, what="A's pull request")
        a = rows(project)["A"]
        assert a["pull_request"] == "https://github.com/octo-fake/project/pull/1"
        assert "awaiting its pull request https://github.com/octo-fake/project/pull/1" in \
            project.orchestrate("status").stdout
        opened = hub.pull_requests()[0]
        assert (opened["headRefName"], opened["isDraft"]) == ("stream/A", True)
        assert opened["baseRefName"] == project.status()["run"]["integration_branch"]
        assert rows(project)["B"]["state"] == "waiting"  # an open pull request is not merged

        hub.merge(1)

        project.wait_for(lambda: rows(project)["B"]["state"] == "awaiting_pr", timeout=60, what="B's pull request")
        assert rows(project)["A"]["state"] == "complete"
        assert [e["stream"] for e in project.events("missing")] == []  # B started on the fetched branch

        assert hub.gh("pr", "close", "2").returncode == 0

        assert run.wait(timeout=60) == 1  # B parked: nothing else can progress
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    b = rows(project)["B"]
    assert b["state"] == "pr_closed" and "closed without merging" in b["description"]
    assert len([c for c in hub.calls("pr", "create")]) == 2  # one per stream, never a second for the same

    project.plan({"B": ["ok"]})
    again = project.start_background("--no-preflight", "B")
    try:
        project.wait_for(lambda: rows(project)["B"]["state"] == "awaiting_pr", timeout=60, what="B's new pull request")
        prompt = [e["prompt"] for e in project.events("start") if e["stream"] == "B"][-1]
        assert "pull/2 was closed without being merged" in prompt and "--comments" in prompt
        assert rows(project)["B"]["pull_request"].endswith("/pull/3")
        hub.merge(3)
        assert again.wait(timeout=60) == 0
    finally:
        if again.poll() is None:
            again.kill()
            again.wait()
    assert rows(project)["B"]["state"] == "complete"


def test_start_refuses_without_gh_its_login_or_the_remote(project, tmp_path):
    hub = project.hub
    hub.change(logged_in=False)
    refused = project.orchestrate("start", "--no-preflight")
    assert refused.returncode != 0 and "gh auth login" in refused.stderr and "Traceback" not in refused.stderr
    hub.change(logged_in=True)

    no_gh = tmp_path / "bin-without-gh"
    no_gh.mkdir()
    os.symlink(project.env["PATH"].split(os.pathsep)[0] + "/claude", no_gh / "claude")
    path = os.pathsep.join([str(no_gh)] + [p for p in os.environ["PATH"].split(os.pathsep) if p])
    if any(os.path.exists(os.path.join(p, "gh")) for p in os.environ["PATH"].split(os.pathsep)):
        pytest.skip("a real gh is installed on this machine")
    refused = project.orchestrate("start", "--no-preflight", env=dict(project.env, PATH=path))
    assert refused.returncode != 0 and "gh is not installed" in refused.stderr and "Traceback" not in refused.stderr

    project.git("remote", "remove", "origin")
    refused = project.orchestrate("start", "--no-preflight")
    assert refused.returncode != 0 and "'origin'" in refused.stderr and "nothing was started" in refused.stderr
    assert project.events("start") == []
