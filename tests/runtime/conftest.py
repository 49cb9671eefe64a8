"""Fixtures for runtime tests: `project` and `repo` (tests/support/fixtures.py)."""

from tests.support.fixtures import project, repo  # noqa: F401
