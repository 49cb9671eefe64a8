"""Fixtures for runtime tests: a fresh project per test, with the runtime, a database and the fake claude;
`repo` is the same project as a git repository (worktree isolation's default)."""

import pytest

from tests.support.project import Project


@pytest.fixture
def project(tmp_path):
    proj = Project.create(tmp_path)
    yield proj
    # Never leave a worker behind, whatever the test did.
    proj.stop_leftovers()


@pytest.fixture
def repo(tmp_path):
    proj = Project.create_git(tmp_path)
    yield proj
    proj.stop_leftovers()
