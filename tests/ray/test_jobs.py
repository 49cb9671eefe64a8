"""The Job Submission REST client against a real local Ray cluster (token auth on), and its errors."""

from __future__ import annotations

import http.server
import json
import socket
import threading
from pathlib import Path

import pytest

from tests.ray.helpers import client, unique, wait_for, wait_status
from _orchestrate_kit.executor.ray import jobs

pytestmark = pytest.mark.timeout(300)


def request(run, stream="s", attempt=1, entrypoint="echo hello", env=None, **kwargs):
    return jobs.job_request(run, stream, attempt, "tok123", entrypoint, env or {}, stop_grace=5, **kwargs)


def test_version_and_nodes_say_what_doctor_checks(ray_cluster):
    api = client(ray_cluster)
    version = api.version()
    assert version["ray_version"].startswith("2.60") and version["version"] == "4"
    nodes = {n.node_id: n for n in api.nodes()}
    assert nodes[ray_cluster.head_node_id].is_head and nodes[ray_cluster.head_node_id].slots == 0
    workers = [nodes[n["node_id"]] for n in ray_cluster.nodes]
    assert [w.slots for w in workers] == [2.0, 2.0] and all(w.alive for w in workers)


def test_submit_poll_logs_list_delete(ray_cluster):
    api, run = client(ray_cluster), unique("run")
    body = request(run, entrypoint="echo line one; echo line two; exit 3")
    assert api.submit(body) == jobs.Submitted(f"{run}-s-1", False)
    job = wait_status(api, f"{run}-s-1", jobs.TERMINAL)
    assert (job.status, job.exit_code) == ("FAILED", 3)
    assert job.metadata == {"orchestrate_run": run, "orchestrate_stream": "s", "orchestrate_attempt": "1",
                            "orchestrate_token": "tok123"}
    # It ran on a worker node: entrypoint_resources keep jobs off the head.
    assert job.node_id in {n["node_id"] for n in ray_cluster.nodes}
    assert "line one\nline two\n" in api.logs(job.submission_id)
    api.submit(request(unique("other")))
    assert [j.submission_id for j in api.jobs(run)] == [f"{run}-s-1"]
    assert api.delete(job.submission_id) is True
    assert api.info(job.submission_id) is None and api.jobs(run) == []


def test_a_repeated_submission_id_is_never_submitted_twice(ray_cluster):
    api, run = client(ray_cluster), unique("dup")
    first = api.submit(request(run, entrypoint="echo first"))
    second = api.submit(request(run, entrypoint="echo second"))
    assert (first.already, second.already) == (False, True)
    job = wait_status(api, first.submission_id, jobs.TERMINAL)
    assert job.entrypoint == "echo first" and "second" not in api.logs(job.submission_id)
    assert len([j for j in api.jobs(run)]) == 1


def test_the_jobs_api_echoes_env_vars_in_plain_text_so_no_secret_is_sent(ray_cluster):
    api, run = client(ray_cluster), unique("env")
    api.submit(request(run, env={"ORCHESTRATE_PROBE": "visible-value"}))
    status, body = api._call("GET", f"/api/jobs/{run}-s-1")  # what any API client reads back
    echoed = json.loads(body)["runtime_env"]["env_vars"]
    assert status == 200 and echoed["ORCHESTRATE_PROBE"] == "visible-value"
    assert echoed["RAY_JOB_STOP_WAIT_TIME_S"] == "5"
    for name in ("ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN", "GH_TOKEN", "RAY_AUTH_TOKEN", "AWS_SECRET_ACCESS_KEY",
                 "GIT_PASSWORD", "my_credentials"):
        with pytest.raises(jobs.RayError, match=f"refusing to send {name}"):
            request(run, attempt=2, env={name: "x"})
    assert jobs.secret_names({"ORCHESTRATE_KIT_TOKEN": "t", "STREAM_ID": "a", "PATH": "/bin"}) == []


def test_stop_ends_a_running_job(ray_cluster):
    api, run = client(ray_cluster), unique("stop")
    sid = api.submit(request(run, entrypoint="echo started; sleep 600")).submission_id
    wait_status(api, sid, ["RUNNING"])
    assert api.stop(sid) is True
    assert wait_status(api, sid, jobs.TERMINAL).status == "STOPPED"
    # Already ended: Ray reads STOPPED before its job supervisor has gone, and until then a stop still
    # answers that it stopped something; once it has gone, a stop says there was nothing to stop.
    wait_for(lambda: api.stop(sid) is False, "a stop of the ended job to say it stopped nothing")
    assert api.stop("no-such-job") is False and api.logs("no-such-job") == "" and api.info("no-such-job") is None


def test_a_job_no_node_can_place_stays_pending_and_says_why(ray_cluster):
    api, run = client(ray_cluster), unique("pend")
    sid = api.submit(request(run, slots=64)).submission_id  # no node has 64 agent slots
    job = wait_status(api, sid, ["PENDING"])
    reason = jobs.pending_reason(job, api.nodes(), slots=64)
    assert reason and "no live node has 64 agent_slot" in reason
    assert jobs.pending_reason(job, api.nodes(), slots=1).startswith("waiting for a free agent slot")
    assert api.info(sid).status == "PENDING"
    api.stop(sid)


def test_a_job_pinned_to_a_node_runs_there_and_a_gone_node_is_told(ray_cluster):
    api, run = client(ray_cluster), unique("pin")
    nodes = api.nodes()
    for target in ray_cluster.nodes:
        assert jobs.node_alive(nodes, target["node_id"])
        for attempt in (1, 2):  # four jobs, each on its node: 1 in 16 by chance alone
            body = request(run, stream=f"s{target['index']}", attempt=attempt, node_id=target["node_id"])
            assert body["entrypoint_label_selector"] == {"ray.io/node-id": target["node_id"]}
            sid = api.submit(body).submission_id
            assert wait_status(api, sid, jobs.TERMINAL).node_id == target["node_id"]
    assert not jobs.node_alive(nodes, ray_cluster.head_node_id)  # alive, but takes no agents
    assert not jobs.node_alive(nodes, "f" * 56)


def test_missing_and_wrong_tokens_give_one_clear_line(ray_cluster):
    with pytest.raises(jobs.RayAuthError) as missing:
        jobs.JobsClient(ray_cluster.address, None).version()
    assert "wants a token (HTTP 401)" in str(missing.value) and "\n" not in str(missing.value)
    wrong = jobs.JobsClient(ray_cluster.address, jobs.Token("not-the-token", "RAY_AUTH_TOKEN"))
    with pytest.raises(jobs.RayAuthError) as refused:
        wrong.submit(request(unique("auth")))
    assert "refused the token from RAY_AUTH_TOKEN (HTTP 403)" in str(refused.value)
    assert "not-the-token" not in str(refused.value)


def test_an_unreachable_address_is_one_clear_line():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again below: nothing listens there
    api = jobs.JobsClient(f"127.0.0.1:{port}", None, timeout=5)
    with pytest.raises(jobs.RayUnreachable, match=f"cannot reach the Ray cluster at http://127.0.0.1:{port}: "
                                                  "connection refused; check ray_address"):
        api.version()
    with pytest.raises(jobs.RayError, match="not ray://"):
        jobs.JobsClient("ray://head:10001")


class _NotRay(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"<html><body>Welcome to nginx</body></html>"
        self.send_response(200 if self.path == "/" or self.path == "/api/version" else 404)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args):
        pass


def test_a_server_that_is_not_ray_is_named_so():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotRay)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        api = jobs.JobsClient(f"http://127.0.0.1:{server.server_address[1]}", None)
        with pytest.raises(jobs.NotRay, match="is not a Ray dashboard: GET /api/version answered HTTP 200"):
            api.version()
        with pytest.raises(jobs.NotRay, match="did not answer like a Ray dashboard when asked to read the logs of job x"):
            api.logs("x")
    finally:
        server.shutdown()
        server.server_close()


def test_a_port_that_does_not_speak_http_is_named_so():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def answer_garbage():
        conn, _ = server.accept()
        conn.recv(4096)
        conn.sendall(b"\x00\x00\x12\x04\x00\x00\x00\x00\x00 not http at all\r\n\r\n")
        conn.close()

    threading.Thread(target=answer_garbage, daemon=True).start()
    try:
        with pytest.raises(jobs.NotRay, match="does not speak HTTP .*not the GCS"):
            jobs.JobsClient(f"127.0.0.1:{server.getsockname()[1]}", None, timeout=10).version()
    finally:
        server.close()


def test_the_token_is_read_as_rays_tools_read_it(tmp_path):
    home = tmp_path / "home"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text("  from-default \nsecond line\n")
    given = tmp_path / "given"
    given.write_text("from-path\n")
    assert jobs.read_token({}, home) == jobs.Token("from-default", str(home / ".ray" / "auth_token"))
    assert jobs.read_token({"RAY_AUTH_TOKEN_PATH": str(given)}, home).value == "from-path"
    both = {"RAY_AUTH_TOKEN": " from-env ", "RAY_AUTH_TOKEN_PATH": str(given)}
    assert jobs.read_token(both, home) == jobs.Token("from-env", "RAY_AUTH_TOKEN")
    assert jobs.read_token({"RAY_AUTH_TOKEN": "", "RAY_AUTH_TOKEN_PATH": str(given)}, home).value == "from-path"
    with pytest.raises(jobs.RayAuthError, match="RAY_AUTH_TOKEN_PATH is set but .* cannot be read or is empty"):
        jobs.read_token({"RAY_AUTH_TOKEN_PATH": str(tmp_path / "missing")}, home)
    assert jobs.read_token({}, tmp_path / "nobody") is None
    assert jobs.JobsClient("h:1", jobs.Token("abc", "x")).headers() == {"Authorization": "Bearer abc"}


def test_submission_ids_and_addresses():
    assert jobs.submission_id("run1", "Stream-A", 2) == "run1-Stream-A-2"
    for bad in ("", "a b", "../x", "-x"):
        with pytest.raises(ValueError):
            jobs.submission_id("run", bad, 1)
    assert jobs.normalise_address(" head:8265/ ") == "http://head:8265"
    assert jobs.JobsClient("https://h:1").tail_url("a+b") == "wss://h:1/api/jobs/a%2Bb/logs/tail"
    assert Path(jobs.__file__).name == "jobs.py"


def test_the_doctor_probe_says_what_is_there(ray_cluster):
    checks = jobs.probe(client(ray_cluster))
    assert [c.ok for c in checks] == [True, True]
    assert checks[0].message.startswith("Ray 2.60") and "token from RAY_AUTH_TOKEN" in checks[0].message
    assert checks[1].message == "2 node(s) advertise agent_slot, 4 agent(s) in all"
    none = jobs.probe(client(ray_cluster), slots=64)
    assert not none[-1].ok and "no live node advertises agent_slot" in none[-1].message
    refused = jobs.probe(jobs.JobsClient(ray_cluster.address, None))
    assert len(refused) == 1 and not refused[0].ok and "HTTP 401" in refused[0].message
