"""Fixtures for the installer tests: a fresh HOME for every test.

Every test gets its own HOME, XDG folders, copier cache and git configuration, and no GIT_*
variable from the outside; the template store therefore starts empty. The user's real home is out
of reach for the whole session (tests/conftest.py), so it needs no watching: a user running
orchestrate-kit in it while the tests run changes nothing here.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchestrate_kit.store import PackagedTemplate

from . import helpers


@pytest.fixture(autouse=True)
def fake_home(tmp_path_factory, monkeypatch) -> Path:
    """A fresh HOME with its own git identity; no GIT_* or XDG_* variable leaks in."""
    home = tmp_path_factory.mktemp("home")
    for name in list(os.environ):
        if name.startswith(("GIT_", "XDG_", "COPIER_")) or name in {"NO_COLOR", "TASK_DB_PATH", "WORKSPACE_ID"}:
            monkeypatch.delenv(name)
    gitconfig = home / ".gitconfig"
    gitconfig.write_text(
        "[user]\n\tname = Test User\n\temail = test@example.invalid\n"
        "[init]\n\tdefaultBranch = main\n[advice]\n\tdetachedHead = false\n"
    )
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(gitconfig))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("COPIER_CACHE_DIR", str(home / ".cache" / "copier-git"))
    assert Path.home() == home
    return home


@pytest.fixture
def repo_template(tmp_path) -> PackagedTemplate:
    """The repository's own template, as a packaged folder at version 1.0.0."""
    return helpers.make_version(tmp_path / "pkg-1.0.0", "1.0.0")
