"""Fixtures for the installer tests: a fake HOME for every test, and a guard on the real one.

Every test gets its own HOME, XDG folders, copier cache and git configuration, and no GIT_*
variable from the outside; the template store therefore starts empty. After the last installer test
the real home is checked: anything the installer or copier would write there must be unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchestrate_kit.store import PackagedTemplate

from . import helpers

REAL_HOME = Path(os.path.expanduser("~")).resolve()
# What the installer and copier write under a home; none of it may change in the real one.
WATCHED = [
    ".local/share/orchestrate-kit",
    ".cache/orchestrate-kit",
    ".cache/copier",
    ".claude/commands/orchestrate.md",
    ".config/copier",
    ".gitconfig",
]


def _snapshot(home: Path) -> dict[str, float | None]:
    state: dict[str, float | None] = {}
    for rel in WATCHED:
        path = home / rel
        state[rel] = path.stat().st_mtime if path.exists() else None
        if path.is_dir():
            for child in path.rglob("*"):
                state[str(child.relative_to(home))] = child.stat().st_mtime
    return state


@pytest.fixture(scope="package", autouse=True)
def real_home_untouched():
    """Fail loudly, after the last installer test, if anything under the real home changed."""
    before = _snapshot(REAL_HOME)
    yield
    after = _snapshot(REAL_HOME)
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    if changed:
        pytest.fail(f"installer tests touched the real home {REAL_HOME}: {changed}", pytrace=False)


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
    assert Path.home().resolve() != REAL_HOME
    return home


@pytest.fixture
def repo_template(tmp_path) -> PackagedTemplate:
    """The repository's own template, as a packaged folder at version 1.0.0."""
    return helpers.make_version(tmp_path / "pkg-1.0.0", "1.0.0")
