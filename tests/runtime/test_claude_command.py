"""claude_command: metadata limits -> flags, the worker argv, and preflight with a scripted runner.

The same shapes run through the real CLI in tests/contract/test_claude_cli.py.
"""

import math
import shlex
import threading

import pytest

import tests.runtime.runtime_import  # noqa: F401  (puts the runtime on sys.path)
from _orchestrate_kit.agent import claude as cc  # noqa: E402
from _orchestrate_kit.agent import events as ev  # noqa: E402

BASE = ["claude", "--print", "--dangerously-skip-permissions", "-p"]
SESSION = "5b0d3c5e-8a4f-4a7e-9d61-0c2f3b7e1a90"


@pytest.mark.parametrize("argv,expected", [
    (["claude", "-p"], True),
    (["/usr/local/bin/claude"], True),
    (["npx", "claude"], False),
    (["claude-wrapper", "-p"], False),
    (["./agent.sh"], False),
    ([], False),
])
def test_is_claude_looks_at_the_program_name(argv, expected):
    assert cc.is_claude(argv) is expected


def test_metadata_limits_become_flags_in_equals_form_each_one_argv_item():
    limits = cc.parse_worker_options({"maxBudgetUsd": "2.5", "maxTurns": 40.0, "model": " sonnet ",
                                      "permissionMode": "acceptEdits",
                                      "allowedTools": ["Bash(git log:*)", "Edit", "Read,Write"],
                                      "streamId": "ignored", "unrelated": object()})
    assert cc.limit_flags(limits) == ["--max-budget-usd=2.5", "--max-turns=40", "--model=sonnet",
                                      "--permission-mode=acceptEdits",
                                      "--allowedTools=Bash(git log:*),Edit,Read,Write"]


def test_no_metadata_no_flags():
    assert cc.limit_flags(cc.parse_worker_options({})) == []


def test_a_comma_string_of_tools_keeps_commas_inside_parentheses():
    limits = cc.parse_worker_options({"allowedTools": "Read, Bash(npm run test,lint:*) ,Edit"})
    assert limits.allowed_tools == ("Read", "Bash(npm run test,lint:*)", "Edit")


BAD_VALUES = [
    ("maxBudgetUsd", 0), ("maxBudgetUsd", -1), ("maxBudgetUsd", math.inf), ("maxBudgetUsd", math.nan),
    ("maxBudgetUsd", "lots"), ("maxBudgetUsd", True), ("maxBudgetUsd", [1]),
    ("maxTurns", 0), ("maxTurns", 2.5), ("maxTurns", "ten"), ("maxTurns", False), ("maxTurns", -3),
    ("maxTurns", cc.MAX_TURNS + 1),
    ("model", ""), ("model", "--dangerously-skip-permissions"), ("model", "opus\n--bogus"), ("model", 4),
    ("model", "a\0b"), ("model", "x" * 201),
    ("permissionMode", "yolo"), ("permissionMode", "plan "), ("permissionMode", None.__class__),
    ("allowedTools", 5), ("allowedTools", ["Edit", 3]), ("allowedTools", []), ("allowedTools", " , "),
    ("allowedTools", ["Edit", "-p"]), ("allowedTools", "Edit,Bash\nhello"),
]


@pytest.mark.parametrize("key,value", BAD_VALUES)
def test_a_bad_value_is_refused_with_its_key_and_value(key, value):
    with pytest.raises(cc.WorkerOptionError) as caught:
        cc.parse_worker_options({key: value})
    message = str(caught.value)
    assert key in message and repr(value)[:20] in message and "\n" not in message


def test_the_default_launch_adds_stream_json_and_puts_the_prompt_after_double_dash():
    argv = cc.build_argv(BASE, cc.StreamLimits(), cc.Launch("-do the work"))
    assert argv == [*BASE, "--output-format=stream-json", "--verbose", "--", "-do the work"]


def test_text_mode_and_a_users_own_output_format_are_left_alone():
    assert cc.build_argv(BASE, cc.StreamLimits(), cc.Launch("go", stream_json=False)) == [*BASE, "--", "go"]
    mine = ["claude", "--print", "--output-format", "json", "-p"]
    assert cc.build_argv(mine, cc.StreamLimits(), cc.Launch("go")) == [*mine, "--", "go"]
    verbose = ["claude", "--verbose", "--print"]
    assert cc.build_argv(verbose, cc.StreamLimits(), cc.Launch("go")) == [
        *verbose, "--output-format=stream-json", "--", "go"]


def test_an_interactive_command_gets_no_output_format():
    assert cc.build_argv(["claude"], cc.StreamLimits(), cc.Launch("go")) == ["claude", "--", "go"]


def test_other_worker_commands_get_the_prompt_appended_and_nothing_else():
    limits = cc.parse_worker_options({"maxTurns": 3})
    assert cc.build_argv(["./agent.sh", "-x"], limits, cc.Launch("go", session_id=SESSION)) == [
        "./agent.sh", "-x", "go"]


def test_resume_continues_the_session_with_the_short_continue_prompt():
    argv = cc.build_argv(BASE, cc.StreamLimits(), cc.Launch("the long prompt", resume_session=SESSION))
    assert argv[-4:] == ["--verbose", f"--resume={SESSION}", "--", cc.CONTINUE_PROMPT]


def test_a_session_id_chosen_by_the_orchestrator_is_passed():
    argv = cc.build_argv(BASE, cc.StreamLimits(), cc.Launch("go", session_id=SESSION.upper()))
    assert f"--session-id={SESSION.upper()}" in argv and argv[-2:] == ["--", "go"]


@pytest.mark.parametrize("launch", [
    cc.Launch("go", session_id="not-a-uuid"),
    cc.Launch("go", session_id=SESSION, resume_session=SESSION),
])
def test_session_ids_we_choose_must_be_uuids_and_one_kind(launch):
    with pytest.raises(ValueError):
        cc.build_argv(BASE, cc.StreamLimits(), launch)


def test_a_session_to_resume_that_is_not_a_uuid_is_not_resumed():
    """It came from a worker's output (by way of run.json): the stream starts afresh, nothing raises."""
    argv = cc.build_argv(BASE, cc.StreamLimits(), cc.Launch("go", resume_session="--bogus"))
    assert "--bogus" not in " ".join(argv) and argv[-2:] == ["--", "go"]


def test_a_streams_permission_mode_replaces_the_installs_permission_flags():
    limits = cc.parse_worker_options({"permissionMode": "plan"})
    base = ["claude", "--print", "--dangerously-skip-permissions", "--permission-mode", "auto",
            "--permission-mode=dontAsk", "-p"]
    assert cc.build_argv(base, limits, cc.Launch("go", stream_json=False)) == [
        "claude", "--print", "-p", "--permission-mode=plan", "--", "go"]


def test_a_users_variadic_option_cannot_swallow_the_prompt():
    base = ["claude", "--print", "--allowedTools", "Edit", "Bash"]
    argv = cc.build_argv(base, cc.StreamLimits(), cc.Launch("hello", stream_json=False))
    assert argv == [*base, "--", "hello"]


@pytest.mark.parametrize("stream_budget,spent,run_left,expected", [
    (None, 0.0, None, None),
    (5.0, 0.0, None, 5.0),
    (5.0, 1.5, None, 3.5),  # a retry gets what is left
    (5.0, 1.5, 2.0, 2.0),  # capped by the run's budget
    (None, 9.0, 0.75, 0.75),
    (5.0, 5.2, None, -0.2),  # spent: the caller fails the stream "budget"
])
def test_budget_left(stream_budget, spent, run_left, expected):
    left = cc.budget_left(cc.StreamLimits(max_budget_usd=stream_budget), spent, run_left)
    assert left == (None if expected is None else pytest.approx(expected))


def test_the_budget_passed_is_rounded_down_and_replaces_the_streams_own():
    limits = cc.parse_worker_options({"maxBudgetUsd": 10})
    assert cc.limit_flags(limits, budget_usd=3.456789) == ["--max-budget-usd=3.4567"]
    assert cc.limit_flags(limits, budget_usd=2.0) == ["--max-budget-usd=2"]
    with pytest.raises(ValueError, match="no budget left"):
        cc.limit_flags(limits, budget_usd=0.004)


@pytest.mark.parametrize("option,origin", [
    ("--bogus", "the worker_command setting"),
    ("--max-turns", "task metadata key 'maxTurns'"),
    ("--allowedTools=Edit", "task metadata key 'allowedTools'"),
    ("--verbose", "orchestrate-kit itself (please report it)"),
])
def test_option_origin_names_where_a_rejected_option_came_from(option, origin):
    assert cc.option_origin(option, ["claude", "--print", "--bogus", "-p"]) == origin


# ---------------------------------------------------------------- preflight with a scripted runner


def scripted(answers):
    """A runner answering by argv[1:] with (returncode, stdout) or an OSError to raise."""
    calls = []

    def runner(argv, timeout):
        calls.append(list(argv))
        answer = answers[" ".join(argv[1:])]
        if isinstance(answer, OSError):
            raise answer
        return cc.RunResult(answer[0], answer[1], "")
    runner.calls = calls
    return runner


LOGGED_IN = '{"loggedIn": true, "authMethod": "api_key"}'
LOGGED_OUT = '{"loggedIn": false, "authMethod": "none", "apiProvider": "firstParty"}'


def test_preflight_passes_with_a_logged_in_cli_as_a_normal_user():
    runner = scripted({"--version": (0, "2.1.197 (Claude Code)\n"), "auth status": (0, LOGGED_IN)})
    report = cc.preflight(BASE, runner=runner, euid=1000, environ={})
    assert report == cc.Preflight("2.1.197 (Claude Code)", True, ())
    assert report.ok and sorted(runner.calls) == [["claude", "--version"], ["claude", "auth", "status"]]


def test_preflight_reports_every_problem_with_its_fix():
    runner = scripted({"--version": (0, "2.1.197 (Claude Code)\n"), "auth status": (1, LOGGED_OUT)})
    report = cc.preflight(BASE, runner=runner, euid=0, environ={})
    assert report.logged_in is False and not report.ok
    login, root = report.problems
    assert login.check == "login" and "claude /login" in login.fix and "claude setup-token" in login.fix
    assert root.check == "root" and "--dangerously-skip-permissions" in root.message
    assert "normal user" in root.fix and "IS_SANDBOX=1" in root.fix and "never sets it" in root.fix
    # The fix is the config command, with the command it would set: orchestrator.conf is never edited.
    assert "`orchestrate-kit config worker_command 'claude --print -p'`" in root.fix
    assert "orchestrator.conf" not in root.fix


@pytest.mark.parametrize("argv,without", [
    (["claude", "--print", "--dangerously-skip-permissions", "-p"], "claude --print -p"),
    (["claude", "-p", "--permission-mode", "bypassPermissions", "--model=opus"], "claude -p --model=opus"),
    (["claude", "-p", "--permission-mode=bypassPermissions"], "claude -p"),
])
def test_the_root_fix_names_the_command_without_its_permission_skipping_flag(argv, without):
    problem = cc.check_root(argv, 0, {})
    assert problem is not None and f"worker_command {shlex.quote(without)}`" in problem.fix


def test_every_form_of_the_root_refusal_gives_the_same_advice():
    """The preflight's refusal and the one a worker prints under --no-preflight (a fatal ending)."""
    preflight_fix = cc.check_root(BASE, 0, {}).fix
    worker_fix = ev.FIXES[ev.FatalKind.ROOT_REFUSED]
    for fix in (preflight_fix, worker_fix):
        assert "normal user" in fix and "orchestrate-kit config worker_command" in fix
        assert "IS_SANDBOX=1" in fix and "never sets it" in fix
        assert "orchestrator.conf" not in fix


def test_a_command_that_cannot_run_is_the_only_problem_said():
    """The login check runs beside it (both at once); its answer counts only when the command runs."""
    runner = scripted({"--version": FileNotFoundError(2, "No such file or directory"),
                       "auth status": FileNotFoundError(2, "No such file or directory")})
    report = cc.preflight(["claude", "-p"], runner=runner, euid=1000, environ={})
    (problem,) = report.problems
    assert problem.check == "runs" and "No such file or directory" in problem.message and "PATH" in problem.fix
    failing = scripted({"--version": (3, "boom\n"), "auth status": (1, LOGGED_OUT)})
    (problem,) = cc.preflight(["claude"], runner=failing, euid=1000, environ={}).problems
    assert problem.check == "runs" and "boom" in problem.message


def test_the_version_and_login_checks_run_at_once():
    """Each is a start of the CLI (most of a second for the real one): neither waits for the other."""
    login_asked = threading.Event()

    def runner(argv, timeout):
        if list(argv[1:]) == ["auth", "status"]:
            login_asked.set()
            return cc.RunResult(0, LOGGED_IN, "")
        assert login_asked.wait(30), "the login check waited for --version"
        return cc.RunResult(0, "2.1.197 (Claude Code)\n", "")
    assert cc.preflight(BASE, runner=runner, euid=1000, environ={}) == cc.Preflight("2.1.197 (Claude Code)", True, ())


def test_an_older_cli_without_auth_status_is_not_a_problem():
    runner = scripted({"--version": (0, "1.0.3\n"), "auth status": (1, "error: unknown command 'auth'")})
    assert cc.preflight(BASE, runner=runner, euid=1000, environ={}) == cc.Preflight("1.0.3", None, ())


def test_other_agent_clis_are_only_checked_to_run():
    runner = scripted({"--version": (0, "aider 0.80\n")})
    report = cc.preflight(["aider", "--yes", "--dangerously-skip-permissions"], runner=runner, euid=0, environ={})
    assert report == cc.Preflight("aider 0.80", None, ()) and len(runner.calls) == 1


@pytest.mark.parametrize("argv,euid,environ,refused", [
    (BASE, 0, {}, True),
    (["claude", "-p", "--permission-mode", "bypassPermissions"], 0, {}, True),
    (["claude", "-p", "--permission-mode=bypassPermissions"], 0, {}, True),
    (["claude", "-p", "--allow-dangerously-skip-permissions"], 0, {}, True),
    (["claude", "-p", "--permission-mode=acceptEdits"], 0, {}, False),
    (BASE, 1000, {}, False),
    (BASE, 0, {"IS_SANDBOX": "1"}, False),  # the user's own sandbox setting: respected, never set by us
])
def test_root_with_a_permission_skipping_command(argv, euid, environ, refused):
    assert (cc.check_root(argv, euid, environ) is not None) is refused
