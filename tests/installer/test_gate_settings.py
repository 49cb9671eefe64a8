"""`orchestrate-kit config` knows the gate settings: merge_gate (an install answer), push, push_remote, merge_check_timeout."""

from __future__ import annotations

import pytest

from orchestrate_kit import copier_runner, settings
from orchestrate_kit.errors import UserError

from .helpers import REPO


@pytest.fixture(scope="module")
def known():
    return settings.known(REPO, copier_runner.questions(REPO))


def test_the_gate_settings_are_known_with_their_defaults_and_choices(known):
    assert (known["merge_gate"].default, known["merge_gate"].choices) == ("auto", ("auto", "review", "pr"))
    assert (known["push"].default, known["push"].choices) == ("none", ("none", "integration", "all"))
    assert known["push_remote"].default == "origin" and known["merge_check_timeout"].default == "30"
    assert "never forced" in known["push"].help and "minutes" in known["merge_check_timeout"].help


@pytest.mark.parametrize("key, value", [("merge_gate", "review"), ("push", "integration"), ("push_remote", "upstream"),
                                        ("merge_check_timeout", "0.5"), ("merge_check_timeout", "0")])
def test_good_values_are_taken(known, key, value):
    assert settings.check_value(REPO, known[key], f" {value} ") == value


@pytest.mark.parametrize("key, value, message", [
    ("merge_gate", "manual", "merge_gate must be one of auto, review, pr"),
    ("push", "always", "push must be one of none, integration, all"),
    ("merge_check_timeout", "-2", "merge_check_timeout must be a number of minutes, 0 or more"),
    ("merge_check_timeout", "half an hour", "merge_check_timeout must be a number of minutes"),
])
def test_bad_values_say_what_fits(known, key, value, message):
    with pytest.raises(UserError, match=message):
        settings.check_value(REPO, known[key], value)
