"""push = integration | all and `land --push`: real `orchestrate.py start` runs over a real local bare remote.

After each merge the integration branch (with `all` each stream branch too) is pushed, never forced, as
an observed step; a remote that refuses (a hook, or commits we lack) is a warning with the reason, the
run goes on and nothing is lost on either side; `land --push` pushes the branch that was landed.
"""

from __future__ import annotations

import subprocess

import pytest

from tests.support.project import Project
from tests.support.taskdb import add_stream, make_db


def bare_git(bare, *args):
    return subprocess.run(["git", "-C", str(bare), *args], capture_output=True, text=True).stdout.strip()


@pytest.fixture
def project(tmp_path):
    proj = Project.create_git(tmp_path / "p", {"isolation": "worktree", "spawn_gap": 0, "push": "all"})
    proj.bare = tmp_path / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", str(proj.bare)], check=True)
    proj.git("remote", "add", "origin", str(proj.bare))
    make_db(proj.db)
    add_stream(proj.db, "A", [], 1, "Foundation")
    add_stream(proj.db, "B", ["A"], 1, "On top")
    proj.plan({"A": ["commit"], "B": ["commit"]})
    yield proj
    proj.stop_leftovers()


def start(project, *args):
    done = project.orchestrate("start", "--no-preflight", *args, timeout=120)
    return done.returncode, done.stdout + done.stderr


def integration(project):
    return project.status()["run"]["integration_branch"]


def test_every_merge_is_pushed_and_land_push_pushes_the_landed_branch(project):
    code, out = start(project)

    assert code == 0, out
    branch = integration(project)
    assert f"pushed {branch} to origin" in out
    assert bare_git(project.bare, "rev-parse", branch) == project.git("rev-parse", branch).strip()
    for stream in ("stream/A", "stream/B"):  # push = all
        assert bare_git(project.bare, "rev-parse", stream) == project.git("rev-parse", stream).strip()

    landed = project.orchestrate("land", "--push")

    assert landed.returncode == 0, landed.stdout + landed.stderr
    assert "Pushed main to origin" in landed.stdout
    assert bare_git(project.bare, "rev-parse", "main") == project.git("rev-parse", "main").strip()


def test_a_refusing_remote_is_a_warning_and_the_run_goes_on(project):
    hook = project.bare / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'remote: pushes are frozen today' >&2\nexit 1\n", encoding="utf-8")
    hook.chmod(0o755)

    code, out = start(project)

    assert code == 0, out  # both streams merged: the refusal does not stop the run
    branch = integration(project)
    assert f"warning: {branch} was not pushed to origin" in out and "the run goes on" in out
    assert bare_git(project.bare, "branch", "--list") == ""  # nothing arrived, nothing was forced
    assert "work of B" in project.git("show", f"{branch}:B.txt")  # nothing lost here
    refused = project.orchestrate("land", "--push")
    assert refused.returncode == 1 and "landed, but main was not pushed to origin" in refused.stderr
    assert "work of B" in project.git("show", "main:B.txt")  # the landing stands


def test_a_remote_that_moved_on_is_never_overwritten(project, tmp_path):
    project.configure(isolation="worktree", spawn_gap=0, push="integration")
    project.plan({"A": ["commit"], "B": ["hang"]})
    add_stream(project.db, "C", ["A"], 1, "Later")
    code, out = start(project, "A")
    assert code == 0, out
    branch = integration(project)
    assert bare_git(project.bare, "rev-parse", branch) == project.git("rev-parse", branch).strip()
    clone = tmp_path / "someone-else"
    subprocess.run(["git", "clone", "-q", "-b", branch, str(project.bare), str(clone)], check=True)
    (clone / "theirs.txt").write_text("pushed by someone else\n", encoding="utf-8")
    for args in (["add", "theirs.txt"], ["-c", "user.name=x", "-c", "user.email=x@x", "commit", "-qm", "theirs"],
                 ["push", "-q", "origin", branch]):
        subprocess.run(["git", "-C", str(clone), *args], check=True)
    theirs = bare_git(project.bare, "rev-parse", branch)
    project.plan({"C": ["commit"]})

    code, out = start(project, "C")

    assert code == 0, out
    assert f"warning: {branch} was not pushed to origin" in out
    assert bare_git(project.bare, "rev-parse", branch) == theirs  # their commit kept
    assert "work of C" in project.git("show", f"{branch}:C.txt")  # ours kept too
