"""Claude Code workers are named after their stream (`--name`) and get the install's `--fallback-model`.

tests/contract/test_claude_cli.py runs these shapes against the real CLI.
"""

import tests.runtime.runtime_import  # noqa: F401  (puts the runtime on sys.path)
from _orchestrate_kit.agent import claude as cc  # noqa: E402

BASE = ["claude", "--print", "--dangerously-skip-permissions", "-p"]


def test_the_stream_names_the_session_and_the_fallback_model_is_passed_before_the_prompt():
    argv = cc.build_argv(BASE, cc.StreamLimits(), cc.Launch("go", name="Stream-A", fallback_model="sonnet"))
    assert argv[-4:] == ["--name=Stream-A", "--fallback-model=sonnet", "--", "go"]


def test_a_hostile_stream_id_becomes_one_printable_bounded_argument():
    hostile = "-p --model evil\n$(rm -rf ~)\t\x1b[31m" + "x" * 500
    argv = cc.build_argv(BASE, cc.StreamLimits(), cc.Launch("go", name=hostile))
    names = [a for a in argv if a.startswith("--name=")]
    assert len(names) == 1 and argv[-2:] == ["--", "go"]
    value = names[0][len("--name="):]
    assert value.isprintable() and "\n" not in value and len(value) == cc.NAME_LENGTH
    assert value.startswith("-p --model evil $(rm -rf ~) [31m")  # inert text inside one `=` argument


def test_the_install_command_s_own_name_or_fallback_wins_and_empty_values_add_nothing():
    mine = ["claude", "--print", "--name", "mine", "--fallback-model=opus", "-p"]
    argv = cc.build_argv(mine, cc.StreamLimits(), cc.Launch("go", name="Stream-A", fallback_model="sonnet"))
    assert not any(a.startswith(("--name=", "--fallback-model=sonnet")) for a in argv)
    short = ["claude", "--print", "-n", "mine", "-p"]
    assert not any(a.startswith("--name=") for a in cc.build_argv(short, cc.StreamLimits(), cc.Launch("go", name="A")))
    plain = cc.build_argv(BASE, cc.StreamLimits(), cc.Launch("go", name="  ", fallback_model=" "))
    assert plain == [*BASE, "--output-format=stream-json", "--verbose", "--", "go"]


def test_other_worker_commands_get_neither():
    assert cc.build_argv(["./agent.sh"], cc.StreamLimits(), cc.Launch("go", name="A", fallback_model="x")) == [
        "./agent.sh", "go"]
