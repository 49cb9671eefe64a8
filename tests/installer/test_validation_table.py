"""One table of values, accepted or refused identically, with the same words, by every path a number takes.

The paths: the runtime reading orchestrator.conf, the runtime's command-line flags, `orchestrate-kit
config`, `orchestrate-kit install --data`, and the install questions as plain copier asks them
(copier.yml's validators). The runtime and the installer share one check (validate.py); copier's
validators are Jinja, so this table is what holds them to it.
"""

from __future__ import annotations

import contextlib
import io

import copier
import pytest

from tests.runtime.runtime_import import orchestrate, settings as runtime_settings, validate

from . import helpers
from .helpers import init_repo, run, use

# value -> accepted as (a whole number 0 or more, a number of seconds above 0, an amount 0 or more)
TABLE = {
    "1_0": (False, False, False),  # Python's int() and float() take it; nobody means it
    "inf": (False, False, False),
    "nan": (False, False, False),
    "-1": (False, False, False),
    "0x10": (False, False, False),
    "1e3": (False, False, False),
    "0": (True, False, True),
    "0.5": (False, True, True),
    " 3 ": (True, True, True),
    "": (False, False, False),
    "+3": (False, False, False),
    ".5": (False, True, True),
    "5.": (False, False, False),
    "\uff13": (False, False, False),  # a full-width 3: a digit to str.isdigit, not to us
    "0.0": (False, False, True),
    "007": (True, True, True),
    "1.25": (False, True, True),
    "1 2": (False, False, False),
    "1" + "0" * 20: (False, False, False),  # float() would say 1e20; more than any setting takes
}
# One setting of each kind, with the flag of `orchestrate.py start` that sets it.
KEYS = {"max_parallel": ("--max-parallel", 0), "poll_interval": ("--poll-interval", 1),
        "max_cost_usd": ("--max-cost-usd", 2)}
WORDS = {
    "max_parallel": "max_parallel must be 0 (unlimited) or a positive whole number, e.g. 4",
    "poll_interval": "poll_interval must be a number of seconds above 0, e.g. 1 or 0.5",
    "max_cost_usd": "max_cost_usd must be an amount in USD, 0 (no limit) or more, e.g. 25",
}
CASES = [(key, value) for key in KEYS for value in TABLE]


def accepted(key: str, value: str) -> bool:
    return TABLE[value][KEYS[key][1]]


def test_the_words_are_the_runtimes():
    for key, words in WORDS.items():
        assert f"{key} must be {validate.RULES[key].fits}" == words


@pytest.mark.parametrize("key, value", CASES)
def test_the_runtime_conf_file(tmp_path, key, value):
    conf = tmp_path / "orchestrator.conf"
    conf.write_text(f"{key} = {value}\n")
    if accepted(key, value):
        assert getattr(runtime_settings.load_settings([conf]), key) == float(value)
    else:
        with pytest.raises(runtime_settings.UserError) as refused:
            runtime_settings.load_settings([conf])
        assert f"{conf}:1: {WORDS[key]}, not {value.strip()!r}" == str(refused.value)


@pytest.mark.parametrize("key, value", CASES)
def test_the_runtime_flags(key, value):
    flag = KEYS[key][0]
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        try:
            args = orchestrate.build_parser().parse_args(["start", f"{flag}={value}"])
        except SystemExit as exit_:
            assert exit_.code == 2 and not accepted(key, value)
            assert f"argument {flag}: {WORDS[key]}, not {value.strip()!r}" in stderr.getvalue()
            return
    assert accepted(key, value), stderr.getvalue()
    assert getattr(args, key) == float(value)


@pytest.fixture
def installed(tmp_path, monkeypatch, fake_home):
    """helpers.installed_v1's project (built once per test process, copied here); the installer is version 1."""
    use(monkeypatch, helpers.make_version(tmp_path / "pkg-1", "1.0.0"))
    return helpers.prebuilt_project("installed-v1", helpers.installed_v1, tmp_path / "project", fake_home)


@pytest.mark.parametrize("key", KEYS)
def test_orchestrate_kit_config_and_install_data(installed, tmp_path, capsys, key):
    for value in TABLE:
        configured = run(capsys, "config", "--project", str(installed), key, value)
        fresh = init_repo(tmp_path / f"fresh-{key}")
        data = run(capsys, "install", "--defaults", "--data", f"{key}={value}", str(fresh)) \
            if not accepted(key, value) else None  # a refusal comes before any write; acceptance is config's
        if accepted(key, value):
            assert configured.code == 0, (value, configured.err)
            assert run(capsys, "config", "--project", str(installed), key).out == f"{value.strip()}\n"
        else:
            assert configured.code == 1, value
            assert f"{WORDS[key]}, not {value.strip()!r}." in configured.err
            assert data is not None and data.code == 1 and f"{WORDS[key]}, not {value.strip()!r}." in data.err
            assert [p.name for p in fresh.iterdir()] == [".git"]  # nothing written


@pytest.fixture(scope="module")
def template_repo(tmp_path_factory):
    return helpers.tagged_template_repo(tmp_path_factory.mktemp("template") / "repo", [("v1.0.0", None)])


@pytest.mark.parametrize("key, value", CASES)
def test_the_install_questions_as_plain_copier_asks_them(template_repo, tmp_path, key, value):
    def copy():
        copier.run_copy(str(template_repo), tmp_path / "project", data={key: value}, defaults=True, quiet=True,
                        vcs_ref="v1.0.0", pretend=True)

    if accepted(key, value):
        copy()
    else:
        with pytest.raises(ValueError) as refused:
            copy()
        assert str(refused.value) == f"Validation error for question '{key}': {WORDS[key]}"
