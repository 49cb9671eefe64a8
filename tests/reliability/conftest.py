"""Fixtures for the reliability suite: `project` and `repo` (tests/support/fixtures.py), and the soak's.

`SOAK_ROUNDS` sets how many rounds the soak-marked tests run (default 3, the CI size: each kind of
kill a test alternates between is made at least once, and the first round already goes through the
whole kill, restart and check; more rounds only try more random moments, which is `make soak`'s
part, at 50). `SOAK_SEED` replays the random kill times of a run.
"""

from __future__ import annotations

import os
import random

import pytest

from tests.support.fixtures import project, repo  # noqa: F401

ROUNDS = int(os.environ.get("SOAK_ROUNDS", "3"))


def soak_timeout(seconds_per_round: float) -> float:
    """A per-test time limit that grows with SOAK_ROUNDS (pytest-timeout's default is 300 s)."""
    return 60 + ROUNDS * seconds_per_round


@pytest.fixture
def rng(request):
    """A seeded random source; the seed is printed so a failing soak run can be replayed."""
    seed = int(os.environ.get("SOAK_SEED") or random.SystemRandom().randrange(1 << 30))
    print(f"{request.node.name}: SOAK_SEED={seed}")
    return random.Random(seed)
