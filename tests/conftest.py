"""Fixtures for the whole suite: the tests get a home of their own, never the user's.

For the whole session HOME is a fresh temporary folder, and the XDG folders, git's global and
system configuration and every GIT_* variable from the outside are gone, as copier's and
pre-commit's own suites isolate themselves. A user who runs orchestrate-kit (or git, or Claude
Code) in their real home while the tests run therefore changes nothing the tests see, and nothing
a test does can reach that home through HOME. Single tests may still set a HOME of their own (the
installer tests do, per test; real-process tests pass one to each command).

`python3` on the tests' PATH is the interpreter the tests run on, never a version manager's shim
(tests/support/interpreter.py says why).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.interpreter import path_with_interpreter

OUTSIDE_PREFIXES = ("GIT_", "XDG_", "COPIER_")
OUTSIDE_NAMES = {"TASK_DB_PATH", "WORKSPACE_ID", "NO_COLOR"}


@pytest.fixture(scope="session", autouse=True)
def session_home(tmp_path_factory) -> Path:
    """A home for the whole session; HOME outside the suite is never read or written."""
    outside = os.environ.get("HOME")
    home = tmp_path_factory.mktemp("session-home")
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith(OUTSIDE_PREFIXES) or name in OUTSIDE_NAMES:
                patch.delenv(name)
        patch.setenv("HOME", str(home))
        patch.setenv("GIT_CONFIG_NOSYSTEM", "1")  # /etc/gitconfig is the machine's, not the test's
        patch.setenv("PATH", path_with_interpreter(tmp_path_factory.mktemp("interpreter")))
        assert Path.home() == home and str(home) != outside
        yield home


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups (its worker plugin comes later)
def pytest_collection_modifyitems(items) -> None:
    """With pytest-xdist (`make test` runs the suite on several workers), the tests that share one
    expensive session fixture run on one worker: the Ray cluster is started once, not once a worker."""
    for item in items:
        if "tests/ray/" in item.nodeid or item.nodeid.startswith("ray/"):
            item.add_marker(pytest.mark.xdist_group("ray"))


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session) -> None:
    """In an xdist worker with `--dist loadgroup`, xdist has named each grouped test `<id>@<group>`; where
    it has not (a pytest that xdist does not support), every worker would start its own Ray cluster."""
    if not getattr(session.config.option, "loadgroup", False):
        return
    ungrouped = [item.nodeid for item in session.items
                 if item.get_closest_marker("xdist_group") and "@" not in item.nodeid]
    if ungrouped:
        raise pytest.UsageError(f"pytest-xdist did not group {ungrouped[0]} (pytest {pytest.__version__}): "
                                "the versions pyproject.toml pins are needed")
