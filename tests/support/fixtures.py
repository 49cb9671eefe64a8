"""The real-process test projects as fixtures, for the conftest files of the folders that use them
(runtime/, reliability/): `project`, a fresh project with the runtime, a database folder and the fake
claude; `repo`, the same project as a git repository (worktree isolation's default). Each is stopped
afterwards, so that no worker is ever left behind, whatever the test did."""

import pytest

from tests.support.project import Project


@pytest.fixture
def project(tmp_path):
    proj = Project.create(tmp_path)
    yield proj
    proj.stop_leftovers()


@pytest.fixture
def repo(tmp_path):
    proj = Project.create_git(tmp_path)
    yield proj
    proj.stop_leftovers()
