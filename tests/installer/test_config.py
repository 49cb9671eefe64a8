"""``orchestrate-kit config`` and orchestrator.local.conf: the user's settings never conflict with an upgrade."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

import re

from orchestrate_kit.settings import CONF, LOCAL_CONF

from . import helpers
from .helpers import ANSWERS, commit_all, git, init_repo, run, snapshot, use


@pytest.fixture
def installed(tmp_path, monkeypatch, fake_home):
    """helpers.installed_v1's project (built once per test process, copied here); the installer is version 1."""
    use(monkeypatch, helpers.make_version(tmp_path / "pkg-1", "1.0.0"))
    return helpers.prebuilt_project("installed-v1", helpers.installed_v1, tmp_path / "project", fake_home)


def listed_as(out, key, value, source):
    """Whether `config`'s listing shows `key = value   (source)` (keys are padded to the longest one)."""
    return re.search(rf"^{re.escape(key)} += {re.escape(value)}   \({re.escape(source)}\)$", out, re.M) is not None


def test_config_lists_sets_shows_and_unsets(installed, capsys, monkeypatch):
    monkeypatch.chdir(installed / ".claude")  # from a subfolder: the project is found
    listed = run(capsys, "config")
    assert listed.code == 0
    assert listed_as(listed.out, "max_parallel", "0", "orchestrator.conf")
    assert listed_as(listed.out, "restart_delay", "5", "default")

    changed = run(capsys, "config", "max_parallel", "4")
    shown = run(capsys, "config", "max_parallel")
    assert changed.code == 0 and f"Set max_parallel = 4 in {LOCAL_CONF}" in changed.out
    assert shown.out == "4\n"
    assert "max_parallel = 4\n" in (installed / LOCAL_CONF).read_text()
    assert "max_parallel = 0" in (installed / CONF).read_text()  # the template's file is left alone
    assert listed_as(run(capsys, "config").out, "max_parallel", "4", "orchestrator.local.conf")

    assert run(capsys, "config", "max_parallel", "6").code == 0
    assert (installed / LOCAL_CONF).read_text().count("max_parallel") == 1  # replaced, not added twice
    unset = run(capsys, "config", "--unset", "max_parallel")
    assert unset.code == 0 and "it is now 0 (from orchestrator.conf)" in unset.out
    assert "max_parallel" not in (installed / LOCAL_CONF).read_text()


def test_bad_keys_and_values_change_nothing(installed, capsys):
    before = snapshot(installed)
    typo = run(capsys, "config", "--project", str(installed), "max_paralel", "3")
    word = run(capsys, "config", "--project", str(installed), "poll_interval", "soon")
    zero = run(capsys, "config", "--project", str(installed), "refresh_interval", "0")
    quotes = run(capsys, "config", "--project", str(installed), "worker_command", 'claude "-p')
    assert typo.code == 1 and "no setting max_paralel" in typo.err and "max_parallel" in typo.err
    assert word.code == 1 and "poll_interval must be a number of seconds above 0" in word.err
    assert zero.code == 1 and "refresh_interval must be" in zero.err
    assert quotes.code == 1 and "worker_command must be a command line" in quotes.err and "check its quotes" in quotes.err
    assert snapshot(installed) == before


def test_not_installed(tmp_path, capsys, monkeypatch):
    use(monkeypatch, helpers.make_version(tmp_path / "pkg", "1.0.0"))
    result = run(capsys, "config", "--project", str(init_repo(tmp_path / "bare")), "max_parallel", "2")
    assert result.code == 1 and "not installed" in result.err


def test_a_setting_changed_with_config_never_conflicts_with_an_upgrade(installed, tmp_path, capsys, monkeypatch):
    """The issue's case: a changed setting, then an upgrade that changes the same setting's lines."""
    def v2_changes_settings(template):
        conf = template / ".claude/orchestrator/orchestrator.conf.jinja"
        conf.write_text(conf.read_text().replace("# Most workers running at once (0 = unlimited).",
                                                 "# Most workers running at once; 0 means no limit."))
        helpers.v2_edit(template)

    assert run(capsys, "config", "--project", str(installed), "max_parallel", "3").code == 0
    assert run(capsys, "config", "--project", str(installed), "worker_command", "mycli -p").code == 0
    commit_all(installed, "my settings")
    use(monkeypatch, helpers.make_version(tmp_path / "pkg-2", "2.0.0", edit=v2_changes_settings))

    upgraded = run(capsys, "upgrade", str(installed), "--data", "max_parallel=5")

    assert upgraded.code == 0, upgraded.err
    assert git(installed, "diff", "--name-only", "--diff-filter=U") == ""
    assert "<<<<<<<" not in (installed / CONF).read_text()
    assert "max_parallel = 5" in (installed / CONF).read_text()
    local = (installed / LOCAL_CONF).read_text()
    assert "max_parallel = 3\n" in local and "worker_command = mycli -p\n" in local
    assert LOCAL_CONF not in upgraded.out  # the upgrade did not touch it
    assert yaml.safe_load((installed / ANSWERS).read_text())["_commit"] == "v2.0.0"
    assert listed_as(run(capsys, "config", "--project", str(installed)).out, "max_parallel", "3",
                     "orchestrator.local.conf")


def test_an_upgrade_gives_an_older_install_its_settings_file(installed, tmp_path, capsys, monkeypatch):
    (installed / LOCAL_CONF).unlink()  # installed before orchestrator.local.conf existed
    commit_all(installed, "an older install")
    use(monkeypatch, helpers.make_version(tmp_path / "pkg-2", "2.0.0", edit=helpers.v2_edit))

    upgraded = run(capsys, "upgrade", str(installed))

    assert upgraded.code == 0, upgraded.err
    assert (installed / LOCAL_CONF).is_file() and LOCAL_CONF in upgraded.out


def test_every_runtime_setting_is_known_to_the_config_command():
    """The runtime's Settings and the installer's list of settings must not drift apart."""
    import dataclasses

    from orchestrate_kit import settings as installer_settings
    from orchestrate_kit import copier_runner
    from tests.runtime.runtime_import import settings as runtime_settings
    from tests.runtime.runtime_import import validate as runtime_validate

    runtime_keys = {f.name for f in dataclasses.fields(runtime_settings.Settings)}
    known = installer_settings.known(helpers.REPO, copier_runner.questions(helpers.REPO))
    assert runtime_keys == set(known) == set(runtime_validate.RULES)
    validate = installer_settings.runtime_validate(helpers.REPO)
    assert Path(validate.__file__).resolve() == Path(runtime_validate.__file__).resolve()  # the runtime's own file


@pytest.mark.parametrize("committed", [True, False], ids=["changed-since-its-commit", "never-committed"])
def test_an_uncommitted_settings_file_does_not_stop_an_upgrade(installed, tmp_path, capsys, monkeypatch, committed):
    """Issue 19: `config` then `upgrade` refused ("uncommitted changes ... M orchestrator.local.conf")."""
    if not committed:
        git(installed, "rm", "--cached", "--quiet", LOCAL_CONF)
        git(installed, "commit", "--quiet", "-m", "the settings file was never committed")
    assert run(capsys, "config", "--project", str(installed), "max_parallel", "3").code == 0
    mine = (installed / LOCAL_CONF).read_text()
    use(monkeypatch, helpers.make_version(tmp_path / "pkg-2", "2.0.0", edit=helpers.v2_edit))

    upgraded = run(capsys, "upgrade", str(installed))

    assert upgraded.code == 0, upgraded.err
    assert yaml.safe_load((installed / ANSWERS).read_text())["_commit"] == "v2.0.0"
    assert (installed / LOCAL_CONF).read_text() == mine  # as the user left it, still theirs to commit
    status = git(installed, "status", "--porcelain", "--", LOCAL_CONF)
    assert status.startswith(" M" if committed else "??")


def test_other_uncommitted_changes_still_stop_an_upgrade(installed, tmp_path, capsys, monkeypatch):
    assert run(capsys, "config", "--project", str(installed), "max_parallel", "3").code == 0
    (installed / "scratch.txt").write_text("not committed\n")
    use(monkeypatch, helpers.make_version(tmp_path / "pkg-2", "2.0.0", edit=helpers.v2_edit))
    before = snapshot(installed)

    upgraded = run(capsys, "upgrade", str(installed))

    assert upgraded.code == 1 and "uncommitted changes" in upgraded.err and "scratch.txt" in upgraded.err
    assert LOCAL_CONF not in upgraded.err  # not what blocks it
    assert snapshot(installed) == before


def test_the_spend_cap_and_notification_settings_are_checked_by_config(installed, capsys):
    assert run(capsys, "config", "--project", str(installed), "spend_cap_usd", "25").code == 0
    assert run(capsys, "config", "--project", str(installed), "spend_cap_period", "week").code == 0
    refused = run(capsys, "config", "--project", str(installed), "spend_cap_period", "month")
    assert refused.code == 1 and "day, week" in refused.err
    refused = run(capsys, "config", "--project", str(installed), "spend_cap_usd", "-3")
    assert refused.code == 1 and "an amount in USD" in refused.err
    assert run(capsys, "config", "--project", str(installed), "notify_ntfy_url", "https://ntfy.sh/my-topic").code == 0
    text = (installed / LOCAL_CONF).read_text()
    assert "spend_cap_usd = 25" in text and "spend_cap_period = week" in text and "notify_ntfy_url = https" in text
