"""The contract with the real Claude Code CLI: every argument shape claude_command builds must parse.

`make test` installs the pinned CLI from the npm registry into .cache/claude-cli (`make claude-cli`).
Each shape runs the real CLI with no credentials and an empty HOME, as the current user (as root the
CLI gets IS_SANDBOX=1, as a sandbox would set it; the product never sets it): it must reach its login
check (the init event, then `authentication_failed`), never a parse error, and agent_events must
classify what it printed as fatal not-logged-in. The CLI's own failure messages are checked against
our patterns too, and the events' fields against the samples in tests/support/claude-samples/, which
`UPDATE_CLAUDE_SAMPLES=1` rewrites from the real CLI (trimmed, no paths of this machine).
"""

import json
import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

import tests.runtime.runtime_import  # noqa: F401  (puts the runtime on sys.path)
from _orchestrate_kit.agent import events as ev  # noqa: E402
from _orchestrate_kit.agent import claude as cc  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CLI = REPO / ".cache" / "claude-cli" / "node_modules" / ".bin" / "claude"
SAMPLES = REPO / "tests" / "support" / "claude-samples"
VERSION = re.search(r"^CLAUDE_CLI_VERSION\s*:=\s*(\S+)", (REPO / "Makefile").read_text(), re.M).group(1)
IS_ROOT = os.geteuid() == 0
SESSION = "5b0d3c5e-8a4f-4a7e-9d61-0c2f3b7e1a90"


@pytest.fixture(scope="module")
def cli():
    if not CLI.exists():
        if shutil.which("npm") is None:
            pytest.skip("npm not found: cannot install the real Claude Code CLI for the contract test")
        subprocess.run(["make", "-C", str(REPO), "claude-cli"], check=True, timeout=600)
    return CLI


def run_cli(argv, home, sandbox=IS_ROOT):
    """The real CLI with no credentials, an empty HOME, no network chatter, stdin closed."""
    env = {"PATH": os.defpath, "HOME": str(home), "LANG": "C.UTF-8",
           "DISABLE_TELEMETRY": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}
    if sandbox:
        env["IS_SANDBOX"] = "1"
    return subprocess.run(argv, cwd=home, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=120)


def classify(done):
    stream = ev.AgentStream()
    for line in (done.stdout + done.stderr).splitlines():
        stream.feed(line, 0.0)
    return stream, stream.outcome(done.returncode)


DEFAULT = ["--print", "--dangerously-skip-permissions", "-p"]  # the install's default worker command
LONG_PROMPT = "Work on stream A. " * 6000  # about 105 KB: one argv item, under Linux's 128 KiB limit

SHAPES = {
    # name: (options from task metadata, Launch fields, extra args in the install's command)
    "default-text": ({}, {"stream_json": False}, []),
    "stream-json": ({}, {}, []),
    "maxBudgetUsd": ({"maxBudgetUsd": 2.5}, {}, []),
    "budget-left": ({"maxBudgetUsd": "3"}, {"budget_usd": 0.123456}, []),
    "maxTurns": ({"maxTurns": 7}, {}, []),
    "model": ({"model": "sonnet"}, {}, []),
    **{f"permissionMode-{mode}": ({"permissionMode": mode}, {}, []) for mode in cc.PERMISSION_MODES},
    "allowedTools-list-with-spaces": ({"allowedTools": ["Bash(git log:*)", "Edit", "Read"]}, {}, []),
    "allowedTools-comma-string": ({"allowedTools": "Read,Bash(npm run test:*),Edit"}, {}, []),
    "all-limits": ({"maxBudgetUsd": 1, "maxTurns": 3, "model": "sonnet", "permissionMode": "acceptEdits",
                    "allowedTools": ["Edit", "Bash(git diff:*)"]}, {"budget_usd": 0.5}, []),
    "resume": ({}, {"resume_session": SESSION}, []),
    "session-id": ({}, {"session_id": SESSION}, []),
    "prompt-starting-with-dashes": ({}, {"prompt": "--max-turns 3 -p and a prompt that looks like flags"}, []),
    "prompt-starting-with-a-dash-text-mode": ({"maxTurns": 2}, {"prompt": "-hello", "stream_json": False}, []),
    "prompt-naming-a-subcommand": ({}, {"prompt": "doctor"}, []),
    "prompt-100-KB": ({"allowedTools": "Edit"}, {"prompt": LONG_PROMPT}, []),
    "user-variadic-option-before-ours": ({"maxTurns": 2}, {}, ["--allowedTools", "Edit", "Bash"]),
    "user-output-format-json": ({}, {}, ["--output-format", "json"]),
    "metadata-model-over-the-install's": ({"model": "sonnet"}, {}, ["--model", "opus"]),
    "metadata-permissionMode-over-the-install's": ({"permissionMode": "plan"}, {}, ["--permission-mode", "auto"]),
    # The session named after its stream, and the install's fallback model (issue 21).
    "name": ({}, {"name": "Stream-A", "session_id": SESSION}, []),
    "name-hostile": ({}, {"name": "-p --model evil\n$(rm -rf ~) \x1b[31m<script>"}, []),
    "name-on-resume": ({}, {"name": "Stream-A", "resume_session": SESSION}, []),
    "fallback-model": ({}, {"fallback_model": "sonnet"}, []),
    "fallback-model-list-and-metadata-model": ({"model": "sonnet"}, {"fallback_model": "haiku,opus"}, []),
    "name-and-fallback-with-all-limits": ({"maxBudgetUsd": 1, "maxTurns": 3, "model": "sonnet"},
                                          {"name": "Stream-Z", "fallback_model": "haiku", "budget_usd": 0.5}, []),
}


def shape_argv(cli, name):
    options, launch, extra = SHAPES[name]
    fields = {"prompt": "Work on stream A.", **launch}
    return cc.build_argv([str(cli), *DEFAULT[:-1], *extra, DEFAULT[-1]], cc.parse_worker_options(options),
                         cc.Launch(**fields))


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_every_argument_shape_reaches_the_login_check(cli, tmp_path, name):
    argv = shape_argv(cli, name)
    if "resume_session" in SHAPES[name][1]:  # a session to resume: the CLI keeps one even without a login
        run_cli(shape_argv(cli, "session-id"), tmp_path)
    done = run_cli(argv, tmp_path)
    stream, outcome = classify(done)
    said = (done.stdout + done.stderr)[-600:]
    assert done.returncode == 1, said
    assert not re.search(r"^(error|Error):", done.stderr, re.M), f"the CLI rejected {argv[1:]!r}: {said}"
    assert outcome.kind is ev.EndKind.FATAL and outcome.fatal.kind is ev.FatalKind.NOT_LOGGED_IN, said
    if "--output-format=stream-json" in argv:
        events = [json.loads(line) for line in done.stdout.splitlines()]
        assert [e["type"] for e in events] == ["system", "assistant", "result"]
        init, message, result = events
        assert init["subtype"] == "init" and message["error"] == "authentication_failed"
        assert result["is_error"] is True and stream.session_id == init["session_id"]
        check_the_cli_read_our_values(argv, init)


def check_the_cli_read_our_values(argv, init):
    """What the init event echoes back proves the value reached the right option."""
    for arg in argv:
        if arg.startswith("--session-id="):
            assert init["session_id"] == SESSION
        if arg.startswith("--resume="):
            assert init["session_id"] == SESSION
        if arg.startswith("--permission-mode="):
            assert init["permissionMode"] == arg.split("=", 1)[1]
        if arg.startswith("--model="):
            assert "sonnet" in init["model"]


def test_a_worker_session_is_named_after_its_stream_and_resumable_by_that_name(cli, tmp_path):
    named = cc.build_argv([str(cli), *DEFAULT], cc.StreamLimits(),
                          cc.Launch("hi", session_id=SESSION, name="Stream-A"))
    assert "--name=Stream-A" in named
    run_cli(named, tmp_path)
    done = run_cli([str(cli), "--print", "--output-format=stream-json", "--verbose", "--resume=Stream-A", "--", "hi"],
                   tmp_path)
    init = json.loads(done.stdout.splitlines()[0])
    assert init["subtype"] == "init" and init["session_id"] == SESSION, done.stdout[-600:] + done.stderr


def test_resuming_a_session_the_cli_does_not_have_says_so(cli, tmp_path):
    argv = cc.build_argv([str(cli), *DEFAULT], cc.StreamLimits(), cc.Launch("hi", resume_session=SESSION))
    done = run_cli(argv, tmp_path)
    _stream, outcome = classify(done)
    assert outcome.kind is ev.EndKind.SESSION_NOT_FOUND and SESSION in outcome.reason


def test_the_cli_version_is_the_pinned_one_and_preflight_reports_it(cli, tmp_path):
    done = run_cli([str(cli), "--version"], tmp_path)
    assert done.stdout.split()[0] == VERSION
    report = cc.preflight([str(cli), *DEFAULT], runner=lambda argv, timeout: as_result(run_cli(argv, tmp_path)),
                          euid=1000, environ={})
    assert report.version == f"{VERSION} (Claude Code)"
    assert report.logged_in is False
    assert [p.check for p in report.problems] == ["login"] and "claude /login" in report.problems[0].fix


def as_result(done):
    return cc.RunResult(done.returncode, done.stdout, done.stderr)


def test_preflight_sees_a_missing_worker_command(tmp_path):
    report = cc.preflight([str(tmp_path / "claude"), *DEFAULT], euid=1000, environ={})
    assert [p.check for p in report.problems] == ["runs"] and "cannot run" in report.problems[0].message


# The CLI's own failure messages, as our classifier must read them.
FAILURES = {
    "unknown-option": ([*DEFAULT, "--bogus-flag", "--", "hi"], ev.FatalKind.UNKNOWN_OPTION),
    "swallowed-prompt": (["--print", "--allowedTools", "Edit", "Bash", "hello"], ev.FatalKind.NO_PROMPT),
    "bad-permission-mode": (["--print", "--permission-mode", "weird", "--", "hi"], ev.FatalKind.BAD_ARGUMENT),
    "bad-session-id": (["--print", "--session-id", "not-a-uuid", "--", "hi"], ev.FatalKind.BAD_ARGUMENT),
    "stream-json-without-verbose": (["--print", "--output-format", "stream-json", "--", "hi"],
                                    ev.FatalKind.BAD_ARGUMENT),
}


@pytest.mark.parametrize("name", sorted(FAILURES))
def test_the_cli_failure_messages_classify_as_fatal(cli, tmp_path, name):
    args, kind = FAILURES[name]
    done = run_cli([str(cli), *args], tmp_path)
    stream, outcome = classify(done)
    assert outcome.kind is ev.EndKind.FATAL and outcome.fatal.kind is kind, done.stdout + done.stderr
    assert not stream.events  # all of these fail before the first event


@pytest.mark.skipif(not IS_ROOT, reason="the root refusal only happens as root")
def test_as_root_the_default_command_is_refused_and_preflight_says_so(cli, tmp_path):
    done = run_cli([str(cli), *DEFAULT, "--", "hi"], tmp_path, sandbox=False)
    _stream, outcome = classify(done)
    assert outcome.fatal.kind is ev.FatalKind.ROOT_REFUSED
    problem = cc.check_root([str(cli), *DEFAULT], 0, {})
    assert problem is not None and "normal user" in problem.fix and "IS_SANDBOX=1" in problem.fix


# ---------------------------------------------------------------- real samples


def sample_runs(cli):
    stream_json = cc.build_argv([str(cli), *DEFAULT], cc.StreamLimits(), cc.Launch("hello"))
    return {
        "not-logged-in.stream-json": (stream_json, IS_ROOT),
        "not-logged-in.json": ([str(cli), "--print", "--output-format=json", "--", "hello"], IS_ROOT),
        "not-logged-in.txt": ([str(cli), "--print", "--", "hello"], IS_ROOT),
        "auth-status.json": ([str(cli), "auth", "status"], IS_ROOT),
        "unknown-option.txt": ([str(cli), "--print", "--bogus-flag", "--", "hi"], IS_ROOT),
        "swallowed-prompt.txt": ([str(cli), "--print", "--allowedTools", "Edit", "Bash", "hi"], IS_ROOT),
        "root-refusal.txt": ([str(cli), *DEFAULT, "--", "hi"], False),
    }


def scrub(text, home):
    """No paths of this machine, and long lists trimmed: a sample shows shapes, not this install."""
    text = text.replace(str(home), "/home/user/project")
    text = text.replace(re.sub(r"[^A-Za-z0-9]", "-", str(home)), "-home-user-project")  # its folder under ~/.claude
    lines = []
    for line in text.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            lines.append(line)
            continue
        if isinstance(event, dict):
            for key, value in event.items():
                if isinstance(value, list) and len(value) > 3:
                    event[key] = value[:3]
        lines.append(json.dumps(event, ensure_ascii=False, separators=(",", ":")))  # compact, as the CLI prints
    return "\n".join(lines) + "\n"


def test_samples_match_the_real_cli(cli, tmp_path):
    """The saved samples have the same event fields as the real CLI prints now."""
    update = os.environ.get("UPDATE_CLAUDE_SAMPLES") == "1"
    for name, (argv, sandbox) in sample_runs(cli).items():
        if name == "root-refusal.txt" and not IS_ROOT:
            continue
        home = tmp_path / name
        home.mkdir()
        done = run_cli(argv, home, sandbox=sandbox)
        live = scrub(done.stdout + done.stderr, home)
        if update:
            (SAMPLES / name).write_text(live, encoding="utf-8")
        saved = (SAMPLES / name).read_text(encoding="utf-8")
        assert field_shapes(live) == field_shapes(saved), name


def field_shapes(text):
    """Per line: the sorted keys of a JSON event, or the text up to its first id-like token."""
    out = []
    for line in text.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            out.append(re.sub(r"[0-9a-f-]{36}", "<id>", line))
            continue
        out.append(sorted(event) if isinstance(event, dict) else type(event).__name__)
    return out


def test_samples_carry_no_machine_paths_or_secrets():
    for path in SAMPLES.iterdir():
        text = path.read_text(encoding="utf-8")
        assert "/root" not in text and "tmp" not in text and str(REPO) not in text, path.name
        assert not re.search(r"sk-ant-|oauth_token\"\s*:\s*\"\w", text), path.name


# ---------------------------------------------------------------- the orchestrator with the real CLI


def real_cli_project(tmp_path, cli):
    """The documented diamond, run by the real orchestrator with the real CLI as its worker command,
    no credentials and an empty HOME."""
    from tests.support import taskdb
    from tests.support.project import Project

    project = Project.create(tmp_path)
    taskdb.diamond(project.db)
    home = tmp_path / "empty-home"
    home.mkdir()
    project.env.update(HOME=str(home), PATH=f"{cli.parent}{os.pathsep}{os.defpath}", DISABLE_TELEMETRY="1",
                       CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1")
    if not IS_ROOT:
        project.env.pop("IS_SANDBOX", None)
    return project


def test_the_run_stops_at_once_when_the_real_cli_is_not_logged_in(tmp_path, cli):
    project = real_cli_project(tmp_path, cli)
    result = project.orchestrate("start", "--no-preflight", "--max-restarts", "5", timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Not logged in" in result.stdout and "claude /login" in result.stdout
    assert result.stdout.count("started Stream-A") == 1  # no second attempt, nothing else started
    assert "started Stream-B" not in result.stdout
    view = {s["stream_id"]: s for s in project.status()["streams"]}["Stream-A"]
    assert view["attempts"] == 0 and view["state"] == "ready"  # no restart budget spent


def test_preflight_with_the_real_cli_refuses_before_anything_starts(tmp_path, cli):
    project = real_cli_project(tmp_path, cli)
    result = project.orchestrate("start", timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "not ready" in result.stderr and "claude /login" in result.stderr
    assert not (project.home / "logs" / "Stream-A.log").exists()
