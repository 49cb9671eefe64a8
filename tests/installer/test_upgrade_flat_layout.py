"""A real upgrade from the previous release, whose runtime was 24 flat modules in .claude/orchestrator/.

tests/support/release-61beb0c.tar.gz is that release's template exactly as it was committed
(`git archive 61beb0c copier.yml template`; kept in the repository, since a shallow clone has no
history to make it from). It is installed the way its own orchestrate-kit installed it (copier from
the template store), with answers to questions the current version no longer asks; the user edits one
module and commits; then the current template's upgrade runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from orchestrate_kit import copier_runner, retired, store
from orchestrate_kit.store import PackagedTemplate
from tests.support import taskdb

from . import helpers
from .helpers import ANSWERS, commit_all, git, init_repo, run, use

ARCHIVE = Path(__file__).resolve().parents[1] / "support" / "release-61beb0c.tar.gz"
OLD_VERSION = "0.1.0.dev40+g61beb0c"
NEW_VERSION = "0.1.0.dev41+g5728800"
RUNTIME = ".claude/orchestrator"
EDITED = f"{RUNTIME}/stream_graph.py"


def previous_release(dest: Path) -> PackagedTemplate:
    dest.mkdir(parents=True)
    with tarfile.open(ARCHIVE) as archive:
        archive.extractall(dest, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    return PackagedTemplate(dest, OLD_VERSION, None)


@pytest.fixture
def flat_project(tmp_path, capsys, monkeypatch):
    """The previous release installed (as its installer did: copier from the store), committed, one module edited."""
    old = previous_release(tmp_path / "pkg-old")
    use(monkeypatch, old)
    tag = store.sync(old)
    project = init_repo(tmp_path / "project")
    (project / "app.py").write_text("print('the user's app')\n")
    copier_runner.copy(copier_runner.RunOptions(
        project=project, src=store.source_for_copier(store.store_path()), ref=tag, answers_file=ANSWERS,
        data={"poll_interval": "3", "max_parallel": "2", "stall_timeout": "7"}, defaults=True,
    ))
    assert (project / f"{RUNTIME}/supervisor.py").is_file() and not (project / f"{RUNTIME}/_orchestrate_kit").exists()
    commit_all(project, "install the previous release")
    edited = project / EDITED
    edited.write_text(edited.read_text() + "\n\ndef my_helper():\n    return 'the user keeps this'\n")
    commit_all(project, "my change to the graph module")
    use(monkeypatch, helpers.make_version(tmp_path / "pkg-new", NEW_VERSION, released=False))
    return project


def test_the_edited_module_is_kept_and_named_the_others_go_and_the_runtime_runs(flat_project, tmp_path, capsys):
    project = flat_project

    result = run(capsys, "upgrade", str(project))

    assert result.code == 0, result.err
    assert "my_helper" in (project / EDITED).read_text()  # the edit is there, not only in git history
    assert (f"kept {EDITED}, which you had edited: v{NEW_VERSION} no longer has it (its code now lives in "
            f"{RUNTIME}/_orchestrate_kit/graph.py); carry your change over to there, then delete it "
            f"(git rm {EDITED})") in " ".join(result.err.split())
    gone = [rel for rel in retired.MOVED if rel != EDITED]
    assert len(gone) == 20
    assert [rel for rel in gone if (project / rel).exists()] == []
    status = git(project, "status", "--porcelain").splitlines()
    assert {line[3:] for line in status if line.startswith(" D ")} == set(gone)  # shown before any commit
    assert EDITED not in " ".join(status)  # kept exactly as committed
    assert (project / f"{RUNTIME}/_orchestrate_kit/supervisor.py").is_file()
    answers = yaml.safe_load((project / ANSWERS).read_text())
    assert answers["_commit"] == f"v{NEW_VERSION}"
    assert (answers["poll_interval"], answers["max_parallel"], answers["stall_timeout"]) == ("3", "2", "7")
    conf = (project / f"{RUNTIME}/orchestrator.conf").read_text()
    assert "poll_interval = 3\n" in conf and "max_parallel = 2\n" in conf and "stall_timeout = 7\n" in conf

    base = tmp_path / "tasks"
    taskdb.diamond(base / "ws" / "tasks.db")
    plan = subprocess.run(
        [sys.executable, str(project / RUNTIME / "orchestrate.py"), "plan", "--json"], cwd=project,
        capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60,
        env={**os.environ, "TASK_DB_PATH": str(base), "WORKSPACE_ID": "ws"},
    )
    assert plan.returncode == 0, plan.stderr
    assert "Stream-Z" in plan.stdout

    commit_all(project, "upgraded")
    doctor = run(capsys, "doctor", str(project))
    assert f"{EDITED} (its code is now in {RUNTIME}/_orchestrate_kit/graph.py)" in doctor.out
    assert "old modules" in doctor.out


def test_an_unedited_flat_install_loses_every_old_module(tmp_path, capsys, monkeypatch, flat_project):
    project = flat_project
    git(project, "revert", "--no-edit", "HEAD")  # the edit undone: every module as the release wrote it

    result = run(capsys, "upgrade", str(project))

    assert result.code == 0, result.err
    assert "kept" not in result.err
    assert [rel for rel in retired.MOVED if (project / rel).exists()] == []
    assert (project / f"{RUNTIME}/orchestrate.py").is_file() and (project / f"{RUNTIME}/task_copilot_client.py").is_file()
