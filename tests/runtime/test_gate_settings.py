"""The gate, push and merge-check settings as the runtime reads them from orchestrator.conf."""

from __future__ import annotations

import pytest

from tests.runtime.runtime_import import settings as st


def load(tmp_path, text):
    conf = tmp_path / "orchestrator.conf"
    conf.write_text(text, encoding="utf-8")
    return st.load_settings([conf])


def test_the_defaults_keep_todays_behaviour():
    defaults = st.Settings()
    assert (defaults.merge_gate, defaults.push, defaults.push_remote, defaults.merge_check_timeout) == (
        "auto", "none", "origin", 30.0)


def test_the_gate_settings_are_read_with_fractions_of_minutes(tmp_path):
    loaded = load(tmp_path, "merge_gate = review\npush = all\npush_remote = upstream\nmerge_check_timeout = 0.5\n")
    assert (loaded.merge_gate, loaded.push, loaded.push_remote, loaded.merge_check_timeout) == (
        "review", "all", "upstream", 0.5)
    assert load(tmp_path, "merge_gate = pr\npush = integration\nmerge_check_timeout = 0\n").merge_check_timeout == 0


@pytest.mark.parametrize("line, message", [
    ("merge_gate = manual", "merge_gate must be one of auto, review, pr, not 'manual'"),
    ("push = yes", "push must be one of none, integration, all, not 'yes'"),
    ("merge_check_timeout = -1", "merge_check_timeout must be a number of minutes, 0 or more (0 = never), e.g. 30 or 0.5, not '-1'"),
    ("merge_check_timeout = soon", "merge_check_timeout must be a number of minutes, 0 or more (0 = never), e.g. 30 or 0.5, not 'soon'"),
    ("merge_check_timeout = inf", "merge_check_timeout must be a number of minutes, 0 or more (0 = never), e.g. 30 or 0.5, not 'inf'"),
])
def test_a_bad_value_names_its_file_line_and_what_fits(tmp_path, line, message):
    with pytest.raises(st.UserError) as caught:
        load(tmp_path, f"# gates\n{line}\n")
    assert message in str(caught.value) and "orchestrator.conf:2" in str(caught.value)
