"""The ready-made on_event hooks (.claude/orchestrator/hooks/): each one run as the orchestrator runs it,
against a local HTTP receiver on 127.0.0.1 or a stand-in notify-send, and never holding up the run."""

import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import tests.runtime.runtime_import  # noqa: F401  (puts the runtime on sys.path)
from _orchestrate_kit import alerts  # noqa: E402
from tests.support.project import RUNTIME, install_runtime

CONFLICT = {"ORCHESTRATE_EVENT": "merge_conflict", "STREAM_ID": "Stream-Z", "STREAM_NAME": "Integration",
            "REASON": "conflict in src/app.py", "ORCHESTRATE_NEEDS_YOU": "1", "COST_USD": "1.2345"}
FINISHED = {"ORCHESTRATE_EVENT": "run_finished", "REASON": "nothing more can progress", "EXIT_CODE": "1",
            "COST_USD": "2.5000", "REPORT": "/p/.claude/orchestrator/reports/20260921T120000Z-d1a300.html",
            "ORCHESTRATE_NEEDS_YOU": "0"}
LIMIT = {"ORCHESTRATE_EVENT": "usage_limit", "STREAM_ID": "Stream-C", "REASON": "limit", "RESUME_AT": "1790000000.0",
         "ORCHESTRATE_NEEDS_YOU": "0"}


@pytest.fixture
def home(tmp_path):
    """An installed runtime with its hooks, in a project folder called `shop`."""
    home = tmp_path / "shop" / ".claude" / "orchestrator"
    install_runtime(home)
    shutil.copytree(RUNTIME / "hooks", home / "hooks")
    return home


class Receiver:
    """An HTTP server on 127.0.0.1 that records every request and answers with `status`."""

    def __init__(self, status=200):
        received = self.received = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.append({"path": self.path, "headers": dict(self.headers), "body": body})
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *_args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def json(self, n=0):
        return json.loads(self.received[n]["body"])

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


def hook(home, name, event, *args, path=None, **env):
    """Run a hook the way notify.py does: a new process in the project root, the event in its environment."""
    environ = {"PATH": path if path is not None else os.defpath, "HOME": str(home.parent.parent), **event, **env}
    return subprocess.run([sys.executable, str(home / "hooks" / f"{name}.py"), *args], cwd=home.parent.parent,
                          env=environ, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)


# ---------------------------------------------------------------- Slack-compatible webhooks


def test_slack_posts_a_message_when_you_are_needed(home, receiver):
    done = hook(home, "slack", CONFLICT, NOTIFY_SLACK_URL=f"{receiver.url}/services/T0/B0/x")
    assert (done.returncode, done.stderr) == (0, "")
    (request,) = receiver.received
    assert request["path"] == "/services/T0/B0/x" and request["headers"]["Content-Type"] == "application/json"
    assert receiver.json() == {"text": "*orchestrate-kit · shop: Stream-Z: merge conflict*\nStream-Z: Integration\n"
                                       "conflict in src/app.py\ncost so far: 1.23 USD\n"
                                       "Needs you: `orchestrate.py status` says what to do next."}


def test_slack_reads_its_url_from_the_settings_and_the_environment_wins(home, receiver):
    (home / "orchestrator.local.conf").write_text(f"notify_slack_url = {receiver.url}/from-settings\n")
    assert hook(home, "slack", FINISHED).returncode == 0
    assert hook(home, "slack", FINISHED, NOTIFY_SLACK_URL=f"{receiver.url}/from-env").returncode == 0
    assert [r["path"] for r in receiver.received] == ["/from-settings", "/from-env"]
    text = receiver.json()["text"]
    assert text.startswith("*orchestrate-kit · shop: the run finished (exit 1)*")
    assert "report: /p/.claude/orchestrator/reports/20260921T120000Z-d1a300.html" in text and "2.50 USD" in text


def test_by_default_only_what_needs_you_and_the_run_s_end_are_sent(home, receiver):
    url = f"{receiver.url}/hook"
    assert hook(home, "slack", LIMIT, NOTIFY_SLACK_URL=url).returncode == 0
    assert receiver.received == []  # a usage limit waits by itself: nobody needs to act
    assert hook(home, "slack", LIMIT, "--all", NOTIFY_SLACK_URL=url).returncode == 0
    assert "usage limit reached; no worker starts until" in receiver.json()["text"]
    older = {k: v for k, v in CONFLICT.items() if k != "ORCHESTRATE_NEEDS_YOU"}  # a runtime that does not say
    assert hook(home, "slack", older, NOTIFY_SLACK_URL=url).returncode == 0
    assert len(receiver.received) == 2 and "merge conflict" in receiver.json(1)["text"]


def test_slack_mentions_and_links_in_names_and_agent_text_stay_plain_text(home, receiver):
    event = dict(CONFLICT, STREAM_ID="<!channel> <https://evil.example|click me>", REASON="<@U123> & more\n\x1b[31m")
    assert hook(home, "slack", event, NOTIFY_SLACK_URL=receiver.url).returncode == 0
    text = receiver.json()["text"]
    assert "<" not in text.replace("&lt;", "") and ">" not in text.replace("&gt;", "")
    assert "&lt;!channel&gt; &lt;https://evil.example|click me&gt;" in text and "&amp; more" in text
    assert "\x1b" not in text


# ---------------------------------------------------------------- ntfy


def test_ntfy_publishes_title_message_priority_and_the_token(home, receiver):
    done = hook(home, "ntfy", CONFLICT, NOTIFY_NTFY_URL=f"{receiver.url}/orchestrate-shop-k3y",
                NOTIFY_NTFY_TOKEN="tk_secret")
    assert (done.returncode, done.stderr) == (0, "")
    (request,) = receiver.received
    assert request["path"] == "/" and request["headers"]["Authorization"] == "Bearer tk_secret"
    message = receiver.json()
    assert message["topic"] == "orchestrate-shop-k3y" and message["priority"] == 4 and message["tags"] == ["warning"]
    assert message["title"] == "orchestrate-kit · shop: Stream-Z: merge conflict"
    assert message["message"].startswith("Stream-Z: Integration\nconflict in src/app.py")


def test_ntfy_s_run_finished_is_a_normal_priority_message_from_the_settings_url(home, receiver):
    (home / "orchestrator.local.conf").write_text(f"notify_ntfy_url = {receiver.url}/my-topic\n")
    assert hook(home, "ntfy", FINISHED).returncode == 0
    message = receiver.json()
    assert (message["topic"], message["priority"], message["tags"]) == ("my-topic", 3, ["robot"])
    assert "Authorization" not in receiver.received[0]["headers"]


# ---------------------------------------------------------------- never holding up the run


def closed_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("name,key", [("slack", "NOTIFY_SLACK_URL"), ("ntfy", "NOTIFY_NTFY_URL")])
def test_network_trouble_is_one_line_on_stderr_and_exit_0(home, name, key):
    done = hook(home, name, CONFLICT, **{key: f"http://127.0.0.1:{closed_port()}/topic"})
    assert done.returncode == 0 and done.stderr.count("\n") == 1
    assert done.stderr.startswith(f"orchestrate-kit {name} hook: could not send merge_conflict: ")
    assert "refused" in done.stderr and "the run goes on" in done.stderr


def test_a_receiver_that_never_answers_is_given_up_on(home):
    with socket.socket() as silent:  # accepts connections (the kernel does) and never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(5)
        done = hook(home, "slack", CONFLICT, NOTIFY_SLACK_URL=f"http://127.0.0.1:{silent.getsockname()[1]}/",
                    NOTIFY_TIMEOUT="1")
    assert done.returncode == 0 and "timed out" in done.stderr and done.stderr.count("\n") == 1


def test_an_error_status_a_bad_url_a_missing_url_and_broken_settings_are_said_once(home):
    failing = Receiver(status=500)
    try:
        done = hook(home, "slack", CONFLICT, NOTIFY_SLACK_URL=failing.url)
    finally:
        failing.close()
    assert done.returncode == 0 and "HTTP Error 500" in done.stderr
    done = hook(home, "slack", CONFLICT, NOTIFY_SLACK_URL="file:///etc/passwd")
    assert done.returncode == 0 and "must start with https://" in done.stderr
    done = hook(home, "ntfy", CONFLICT, NOTIFY_NTFY_URL="https://ntfy.sh/")
    assert done.returncode == 0 and "not an ntfy topic URL" in done.stderr
    done = hook(home, "slack", CONFLICT)
    assert done.returncode == 0 and "no webhook URL: set NOTIFY_SLACK_URL" in done.stderr
    (home / "orchestrator.local.conf").write_text("this is not a setting\n")
    done = hook(home, "ntfy", CONFLICT)
    assert done.returncode == 0 and "expected `key = value`" in done.stderr and "Traceback" not in done.stderr


def test_usage_and_a_test_message(home, receiver):
    done = hook(home, "slack", {}, "--help")
    assert done.returncode == 0 and "on_event" in done.stdout and "--all" in done.stdout
    done = hook(home, "slack", {}, "--bogus")
    assert done.returncode == 2 and "usage: slack.py" in done.stderr
    assert hook(home, "slack", {}, "--test", NOTIFY_SLACK_URL=receiver.url).returncode == 0
    assert "a test notification: this hook works" in receiver.json()["text"]


# ---------------------------------------------------------------- the desktop


def stand_in(folder, script):
    folder.mkdir(exist_ok=True)
    program = folder / "notify-send"
    program.write_text(f"#!{sys.executable}\n{script}")
    program.chmod(0o755)
    return program


def test_the_desktop_hook_runs_notify_send_with_the_title_and_an_escaped_body(home, tmp_path):
    calls = tmp_path / "calls.jsonl"
    bin_dir = tmp_path / "bin"
    program = stand_in(bin_dir, f"import json, sys\nopen({str(calls)!r}, 'a').write(json.dumps(sys.argv) + '\\n')\n")
    event = dict(CONFLICT, STREAM_ID="-p <b>bold</b>", REASON="<a href='https://evil'>x</a> & y")
    done = hook(home, "desktop", event, path=str(bin_dir))
    assert (done.returncode, done.stderr) == (0, "")
    (argv,) = [json.loads(line) for line in calls.read_text().splitlines()]
    assert argv[:4] == [str(program), "--app-name=orchestrate-kit", "--urgency=critical", "--"]
    assert argv[4] == "orchestrate-kit · shop: -p <b>bold</b>: merge conflict"  # the title is never markup
    assert "&lt;a href='https://evil'&gt;x&lt;/a&gt; &amp; y" in argv[5] and "<a" not in argv[5]
    assert hook(home, "desktop", FINISHED, path=str(bin_dir)).returncode == 0
    assert json.loads(calls.read_text().splitlines()[1])[2] == "--urgency=normal"


def test_the_desktop_hook_without_notify_send_or_with_a_broken_one_says_so_and_exits_0(home, tmp_path):
    done = hook(home, "desktop", CONFLICT, path=str(tmp_path / "empty"))
    assert done.returncode == 0 and "notify-send is not on PATH" in done.stderr
    bin_dir = tmp_path / "bin"
    stand_in(bin_dir, "import sys\nsys.stderr.write('Cannot connect to the session bus\\n')\nsys.exit(1)\n")
    done = hook(home, "desktop", CONFLICT, path=str(bin_dir))
    assert done.returncode == 0 and "exited with 1: Cannot connect to the session bus" in done.stderr
    stand_in(bin_dir, "import time\ntime.sleep(600)\n")
    done = hook(home, "desktop", CONFLICT, path=str(bin_dir), NOTIFY_TIMEOUT="1")
    assert done.returncode == 0 and "did not answer within 1 s" in done.stderr


def test_on_macos_osascript_gets_the_texts_as_arguments_never_inside_its_script():
    note = alerts.note_from(dict(CONFLICT, STREAM_ID='x" & do shell script "rm -rf ~'), "shop")
    argv = alerts.desktop_command(note, platform="darwin")
    script = " ".join(argv[1:7])
    assert argv[0] == "osascript" and "rm -rf" not in script and "item 1 of argv" in script
    assert argv[7] == note.title and 'x" & do shell script "rm -rf ~' in argv[7] and argv[8] == note.body
