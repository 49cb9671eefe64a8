"""The repository is a copier template on its own: plain ``copier copy`` and ``copier update``.

From a local clone of this repository's committed state, tagged v1.0.0 and then v2.0.0, the way
a user without orchestrate-kit would use it. copier runs as its own command, offline.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from . import helpers
from .helpers import ANSWERS, NEW_IN_V2, SAMPLE, commit_all, git, init_repo

COPIER = str(Path(sys.executable).with_name("copier"))


def copier(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [COPIER, *args], cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False
    )


@pytest.fixture
def clone(tmp_path) -> Path:
    """A clone of this repository's HEAD with a v1.0.0 tag, plus the tests' sample module."""
    path = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(helpers.REPO), str(path)], check=True)
    (path / "template" / SAMPLE).write_text(helpers.SAMPLE_V1)
    commit_all(path, "sample module")
    git(path, "tag", "v1.0.0")
    return path


def test_copy_then_update_from_a_tagged_clone(clone, tmp_path):
    project = init_repo(tmp_path / "project")

    copied = copier("copy", "--defaults", str(clone), str(project), cwd=tmp_path)

    assert copied.returncode == 0, copied.stderr
    assert os.readlink(project / "watch-status") == ".claude/orchestrator/watch-status"
    assert os.access(project / ".claude/orchestrator/watch-status", os.X_OK)
    assert (project / ".claude/commands/orchestrate.md").is_file()
    answers = yaml.safe_load((project / ANSWERS).read_text())
    assert answers["_commit"] == "v1.0.0" and answers["_src_path"] == str(clone)
    assert not (project / "copier.yml").exists() and not (project / "generator").exists()
    commit_all(project, "copied v1")

    helpers.v2_edit(clone / "template")
    commit_all(clone, "v2")
    git(clone, "tag", "v2.0.0")
    (project / SAMPLE).write_text((project / SAMPLE).read_text().replace('return "a"', 'return "mine"'))
    commit_all(project, "user edit")

    updated = copier("update", "--defaults", "-a", ANSWERS, cwd=project)

    assert updated.returncode == 0, updated.stderr
    assert yaml.safe_load((project / ANSWERS).read_text())["_commit"] == "v2.0.0"
    text = (project / SAMPLE).read_text()
    assert 'return "mine"' in text and "TIMEOUT = 60" in text
    assert (project / NEW_IN_V2).is_file()


def test_plain_copier_needs_no_trust(clone, tmp_path):
    """No _tasks, no _migrations: copier must not ask for --trust."""
    project = tmp_path / "project"

    copied = copier("copy", "--defaults", str(clone), str(project), cwd=tmp_path)

    assert copied.returncode == 0, copied.stderr
    assert "unsafe" not in copied.stderr.lower()


def test_update_without_the_answers_file_flag_is_copiers_known_trap(clone, tmp_path):
    """Documented in docs/INSTALL.md: the answers file lives in .claude/orchestrator/, so -a is needed."""
    project = init_repo(tmp_path / "project")
    assert copier("copy", "--defaults", str(clone), str(project), cwd=tmp_path).returncode == 0
    commit_all(project, "copied")

    updated = copier("update", "--defaults", cwd=project)

    assert updated.returncode != 0
