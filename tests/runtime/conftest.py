"""Fixtures for runtime tests: a fresh project per test, with the runtime, a database and the fake claude."""

import pytest

from tests.support.project import Project


@pytest.fixture
def project(tmp_path):
    proj = Project.create(tmp_path)
    yield proj
    # Never leave a worker behind, whatever the test did.
    proj.orchestrate("stop", "--grace", "1", timeout=30)
