"""Fixtures for the installer tests: a fresh HOME for every test, and what many of them start from.

Every test gets its own HOME, XDG folders, copier cache and git configuration, and no GIT_*
variable from the outside; the template store therefore starts empty. The user's real home is out
of reach for the whole session (tests/conftest.py), so it needs no watching: a user running
orchestrate-kit in it while the tests run changes nothing here. Packaged versions and installed
projects that many tests start from are built once per test process and copied into each test
(tests/installer/prebuilt.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrate_kit.store import PackagedTemplate

from . import helpers, prebuilt as prebuilt_builds


@pytest.fixture(scope="session", autouse=True)
def prebuilt(tmp_path_factory):
    """This test process's builds (each xdist worker keeps its own)."""
    with prebuilt_builds.shelf(tmp_path_factory.mktemp("prebuilt")):
        yield


@pytest.fixture(autouse=True)
def fake_home(tmp_path_factory, monkeypatch) -> Path:
    """A fresh HOME with its own git identity; no GIT_* or XDG_* variable leaks in."""
    home = tmp_path_factory.mktemp("home")
    helpers.isolate_home(home, monkeypatch)
    assert Path.home() == home
    return home


@pytest.fixture
def repo_template(tmp_path) -> PackagedTemplate:
    """The repository's own template, as a packaged folder at version 1.0.0."""
    return helpers.make_version(tmp_path / "pkg-1.0.0", "1.0.0")
