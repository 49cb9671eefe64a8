"""git/pull_requests.py with the stand-in gh over a real local bare remote: one draft pull request per stream.

"GitHub" is tests/support/bin/gh with its state file; merging a pull request there really
merges on the bare remote, so the integration branch moves there and our fetch brings it back.
"""

from __future__ import annotations

import json
import os

import pytest

from tests.runtime.test_workspaces import bare, commit_all, git, isolated_git, repo  # noqa: F401
from tests.runtime.runtime_import import workspaces as ws
from tests.support.fake_github import FakeGitHub
from _orchestrate_kit.git import pull_requests as prs
from _orchestrate_kit.git import remote


@pytest.fixture
def github(tmp_path, bare, monkeypatch):
    hub = FakeGitHub(tmp_path, bare)
    for key, value in hub.environment().items():
        monkeypatch.setenv(key, value)
    return hub


@pytest.fixture
def state(tmp_path):
    return tmp_path / "state"


def finished_stream(root, run, sid, files):
    space = ws.prepare_workspace(root, run, sid)
    for name, text in files.items():
        (space.cwd / name).write_text(text, encoding="utf-8")
    commit_all(space.cwd, f"{sid}'s work")
    return ws.stream_branch(sid)


def remote_tip(bare, branch):
    return git(bare, "rev-parse", "--verify", "-q", f"refs/heads/{branch}", check=False)


# ---------------------------------------------------------------- is gh ready


def test_gh_missing_not_logged_in_or_offline_is_a_refusal_with_the_fix(repo, github, tmp_path, monkeypatch):
    assert prs.gh_problem(repo) is None
    github.change(logged_in=False)
    problem = prs.gh_problem(repo)
    assert "not logged in (You are not logged into any GitHub hosts" in problem and "gh auth login" in problem
    github.change(logged_in=True, offline=True)
    assert "error connecting to api.github.com" in prs.gh_problem(repo)
    lonely = tmp_path / "bin-without-gh"
    lonely.mkdir()
    monkeypatch.setenv("PATH", str(lonely))
    problem = prs.gh_problem(repo)
    assert "gh is not installed" in problem and "set merge_gate to review or auto" in problem


def test_auth_status_is_asked_for_the_remotes_own_host(repo, github):
    git(repo, "remote", "add", "enterprise", "git@ghe.example.com:team/project.git")
    assert "not logged in" in prs.gh_problem(repo, "enterprise")  # the fake is logged in to github.com only
    assert github.calls("auth", "status")[-1] == ["auth", "status", "--hostname", "ghe.example.com"]


@pytest.mark.parametrize("url, expected", [
    ("https://github.com/octo/project.git", ("github.com", "octo/project")),
    ("https://github.com/octo/project", ("github.com", "octo/project")),
    ("git@github.com:octo/project.git", ("github.com", "octo/project")),
    ("ssh://git@ghe.example.com:2222/team/app.git", ("ghe.example.com", "team/app")),
    ("https://token@ghe.example.com/team/app/", ("ghe.example.com", "team/app")),
    ("/srv/git/project.git", None),
    ("file:///srv/git/project.git", None),
])
def test_the_github_repository_is_read_from_the_remotes_url(repo, url, expected):
    git(repo, "remote", "add", "origin", url)
    assert prs.github_repository(repo, "origin") == expected


# ---------------------------------------------------------------- open


def test_a_draft_pull_request_is_opened_once_with_both_branches_pushed(repo, github, bare, state):
    run = ws.start_run(repo)
    branch = finished_stream(repo, run, "A", {"a.txt": "a\n"})
    title, body = prs.pull_request_text("A", "The A stream", run.integration_branch, "Added a.txt.")

    opened = prs.open_pull_request(repo, state, "A", branch, run.integration_branch, title=title, body=body)

    assert opened.ok and opened.created and opened.url == "https://github.com/octo-fake/project/pull/1"
    assert remote_tip(bare, branch) == git(repo, "rev-parse", branch)
    assert remote_tip(bare, run.integration_branch) == git(repo, "rev-parse", run.integration_branch)
    [create] = github.calls("pr", "create")
    assert create == ["pr", "create", "--draft", "--base", run.integration_branch, "--head", branch,
                      "--title", "Stream A: The A stream", "--body", body]
    [pr] = github.pull_requests()
    assert pr["isDraft"] and "> Added a.txt." in pr["body"]
    assert prs.recorded(state, "A").url == opened.url
    assert json.loads(json.dumps(opened.as_dict()))["pushes"][1]["status"] == "pushed"

    again = prs.open_pull_request(repo, state, "A", branch, run.integration_branch)
    assert again.ok and not again.created and again.url == opened.url
    assert len(github.calls("pr", "create")) == 1 and len(github.pull_requests()) == 1


def test_a_restart_that_lost_the_record_finds_the_pull_request_instead_of_opening_another(repo, github, state):
    run = ws.start_run(repo)
    branch = finished_stream(repo, run, "A", {"a.txt": "a\n"})
    first = prs.open_pull_request(repo, state, "A", branch, run.integration_branch)
    prs.forget(state, "A")  # killed after gh created it, before the record was written

    again = prs.open_pull_request(repo, state, "A", branch, run.integration_branch)

    assert again.ok and not again.created and again.url == first.url
    assert len(github.pull_requests()) == 1 and len(github.calls("pr", "create")) == 1
    assert github.calls("pr", "list")[-1][:9] == ["pr", "list", "--head", branch, "--base", run.integration_branch,
                                                  "--state", "all", "--json"]
    assert prs.recorded(state, "A").url == first.url
    (state / "pull_requests" / "A.json").write_text("{damaged", encoding="utf-8")
    assert prs.recorded(state, "A") is None
    assert prs.open_pull_request(repo, state, "A", branch, run.integration_branch).url == first.url


# ---------------------------------------------------------------- poll, merge on "GitHub", fetch back


def test_a_pull_request_merged_on_github_is_seen_and_the_integration_branch_fetched(repo, github, bare, state):
    run = ws.start_run(repo)
    branch = finished_stream(repo, run, "A", {"a.txt": "a\n"})
    opened = prs.open_pull_request(repo, state, "A", branch, run.integration_branch)
    assert prs.pull_request_state(repo, opened.url).state == "open"

    github.merge(1)
    seen = prs.pull_request_state(repo, opened.url)

    assert seen.state == "merged" and seen.merge_commit == remote_tip(bare, run.integration_branch)
    assert seen.merged_at.endswith("Z")
    fetched = remote.fetch_branch(repo, run.integration_branch)
    assert fetched.ok and fetched.after == seen.merge_commit
    git(repo, "merge-base", "--is-ancestor", branch, run.integration_branch)  # fails unless the stream is in it
    assert (ws.integration_path(repo) / "a.txt").read_text(encoding="utf-8") == "a\n"
    assert github.calls("pr", "view")[-1] == ["pr", "view", opened.url, "--json", "state,mergedAt,mergeCommit,url,closed"]


def test_a_closed_pull_request_is_seen_and_the_next_round_opens_a_new_one(repo, github, state):
    run = ws.start_run(repo)
    branch = finished_stream(repo, run, "A", {"a.txt": "a\n"})
    opened = prs.open_pull_request(repo, state, "A", branch, run.integration_branch)
    assert github.gh("pr", "close", "1").returncode == 0
    assert prs.pull_request_state(repo, opened.url).state == "closed"
    prs.forget(state, "A")  # the wiring forgets it when it parks the stream
    finished_stream(repo, run, "A", {"a.txt": "a, reworked\n"})

    again = prs.open_pull_request(repo, state, "A", branch, run.integration_branch)

    assert again.ok and again.created and again.url.endswith("/pull/2")


def test_a_base_that_moved_on_github_is_caught_up_never_overwritten(repo, github, bare, state):
    run = ws.start_run(repo)
    branch_a = finished_stream(repo, run, "A", {"a.txt": "a\n"})
    branch_b = finished_stream(repo, run, "B", {"b.txt": "b\n"})
    prs.open_pull_request(repo, state, "A", branch_a, run.integration_branch)
    github.merge(1)  # the remote's integration branch is ahead of ours now

    opened = prs.open_pull_request(repo, state, "B", branch_b, run.integration_branch)

    assert opened.ok and opened.created and opened.pushes[0]["status"] == "up_to_date"
    assert git(repo, "rev-parse", run.integration_branch) == remote_tip(bare, run.integration_branch)
    assert (ws.integration_path(repo) / "a.txt").is_file()


# ---------------------------------------------------------------- nothing blocks, every failure is a reason


def test_a_refused_push_opens_no_pull_request(repo, github, bare, state):
    hook = bare / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'pushes are closed today' >&2\nexit 1\n", encoding="utf-8")
    hook.chmod(0o755)
    run = ws.start_run(repo)
    branch = finished_stream(repo, run, "A", {"a.txt": "a\n"})
    opened = prs.open_pull_request(repo, state, "A", branch, run.integration_branch)
    assert not opened.ok and "pushes are closed today" in opened.reason
    assert github.calls("pr") == [] and prs.recorded(state, "A") is None


def test_gh_offline_hanging_or_logged_out_gives_reasons_within_the_deadline(repo, github, state):
    run = ws.start_run(repo)
    branch = finished_stream(repo, run, "A", {"a.txt": "a\n"})
    github.change(offline=True)
    offline = prs.open_pull_request(repo, state, "A", branch, run.integration_branch)
    assert not offline.ok and "error connecting to api.github.com" in offline.reason
    assert prs.pull_request_state(repo, "https://github.com/octo-fake/project/pull/1").state == "unknown"
    github.change(offline=False, hang=True)
    hung = prs.open_pull_request(repo, state, "A", branch, run.integration_branch, timeout=0.5)
    assert not hung.ok and "gh pr did not finish within 0.5 s" in hung.reason
    github.change(hang=False, logged_in=False)
    logged_out = prs.pull_request_state(repo, "https://github.com/octo-fake/project/pull/1")
    assert logged_out.state == "unknown" and "gh auth login" in logged_out.reason


def test_an_unknown_pull_request_is_unknown_with_ghs_reason(repo, github):
    seen = prs.pull_request_state(repo, "https://github.com/octo-fake/project/pull/42")
    assert seen.state == "unknown" and "Could not resolve to a PullRequest with the number of 42" in seen.reason


# ---------------------------------------------------------------- the stand-in's shapes


def test_the_stand_in_answers_in_ghs_shapes(repo, github, bare):
    run = ws.start_run(repo)
    branch = finished_stream(repo, run, "A", {"a.txt": "a\n"})
    assert remote.push_branches(repo, [run.integration_branch, branch])[1].ok
    version = github.gh("--version")
    assert version.stdout.startswith("gh version 2.") and version.returncode == 0
    made = github.gh("pr", "create", "--draft", "--base", run.integration_branch, "--head", branch,
                     "--title", "t", "--body", "b")
    assert made.stdout == "https://github.com/octo-fake/project/pull/1\n" and made.stderr == ""
    twice = github.gh("pr", "create", "--draft", "--base", run.integration_branch, "--head", branch,
                      "--title", "t", "--body", "b")
    assert twice.returncode == 1 and twice.stderr == (
        f'a pull request for branch "{branch}" into branch "{run.integration_branch}" already exists:\n'
        "https://github.com/octo-fake/project/pull/1\n")
    view = json.loads(github.gh("pr", "view", "1", "--json", "state,mergedAt,mergeCommit,url,closed").stdout)
    assert view == {"state": "OPEN", "mergedAt": None, "mergeCommit": None,
                    "url": "https://github.com/octo-fake/project/pull/1", "closed": False}
    unknown = github.gh("pr", "view", "1", "--json", "state,nonsense")
    assert unknown.returncode == 1 and unknown.stderr.startswith('Unknown JSON field: "nonsense"')
    assert json.loads(github.gh("pr", "list", "--head", branch, "--json", "number").stdout) == [{"number": 1}]
    assert json.loads(github.gh("pr", "list", "--head", "other", "--json", "number").stdout) == []
    draft = github.gh("pr", "merge", "1", "--merge")
    assert draft.returncode == 1 and "is still a draft" in draft.stderr
    no_commits = github.gh("pr", "create", "--base", branch, "--head", run.integration_branch, "--title", "t",
                           "--body", "b")
    assert "No commits between" in no_commits.stderr and no_commits.returncode == 1
    assert os.access(github.state_file, os.R_OK)
