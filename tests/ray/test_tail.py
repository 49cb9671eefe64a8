"""A job's log copied into a local file: the WebSocket tail against real Ray, restarts, floods, fallback.

The protocol corners Ray's server never sends (pings, fragmented messages) are played by a small
WebSocket server here, written from RFC 6455's server side.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import socketserver
import struct
import threading
import tracemalloc

import pytest

from tests.ray.helpers import client, unique, wait_for, wait_status
from _orchestrate_kit.executor.ray import jobs, tail

pytestmark = pytest.mark.timeout(300)


def submit(api, run, entrypoint):
    body = jobs.job_request(run, "s", 1, "t", entrypoint, {}, stop_grace=5)
    return api.submit(body).submission_id


def test_the_tail_copies_the_log_exactly_once_across_a_restart(ray_cluster, tmp_path):
    api, run = client(ray_cluster), unique("tail")
    sid = submit(api, run, "for i in $(seq 1 40); do echo line $i; sleep 0.05; done; touch /dev/null")
    log = tmp_path / "stream.log"
    log.write_bytes(b"=== banner written by the executor ===\n")
    handed = []
    first = tail.LogTail(api, sid, log, on_line=handed.append).start()
    wait_for(lambda: b"line 5\n" in log.read_bytes(), "the first lines")
    first.stop(wait=10)
    assert not first.running
    # The orchestrator restarts: a new reader on the same log, which must skip what was copied.
    second = tail.LogTail(api, sid, log, on_line=handed.append).start()
    assert second.done.wait(120), second.error
    numbered = [line for line in handed if line.startswith("line ")]
    assert numbered == [f"line {i}" for i in range(1, 41)]  # each line handed on once, none cut
    wait_status(api, sid, jobs.TERMINAL)
    body = log.read_bytes().split(b"===\n", 1)[1]
    assert body == api.logs(sid).encode()
    assert body.count(b"line 1\n") == 1 and b"line 40\n" in body


def test_finish_after_the_end_copies_the_rest_at_once_and_stops_the_reader(ray_cluster, tmp_path):
    api, run = client(ray_cluster), unique("finish")
    sid = submit(api, run, "for i in $(seq 1 20); do echo line $i; sleep 0.05; done")
    log = tmp_path / "s.log"
    handed = []
    reader = tail.LogTail(api, sid, log, on_line=handed.append).start()
    wait_for(lambda: b"line 1\n" in log.read_bytes() if log.exists() else False, "the first line")
    wait_status(api, sid, jobs.TERMINAL)
    # Ray says it ended: the executor asks the reader to finish rather than wait for the tail to close.
    assert reader.finish(wait=30), reader.error
    assert reader.done.is_set() and not reader.running
    assert log.read_bytes() == api.logs(sid).encode()
    assert [line for line in handed if line.startswith("line ")] == [f"line {i}" for i in range(1, 21)]
    assert reader.finish(wait=1)  # a second finish copies nothing more
    assert log.read_bytes() == api.logs(sid).encode()


def test_finish_without_a_running_reader_fetches_the_log_once(ray_cluster, tmp_path):
    api, run = client(ray_cluster), unique("finish0")
    sid = submit(api, run, "echo only; echo lines")
    wait_status(api, sid, jobs.TERMINAL)
    reader = tail.LogTail(api, sid, tmp_path / "s.log")  # never started (an adopted job's, say)
    assert reader.finish(wait=1) and reader.done.is_set()
    assert (tmp_path / "s.log").read_bytes() == api.logs(sid).encode()


def test_an_append_that_landed_before_a_crash_is_not_repeated(ray_cluster, tmp_path):
    api, run = client(ray_cluster), unique("crash")
    sid = submit(api, run, "echo alpha; echo beta")
    wait_status(api, sid, jobs.TERMINAL)
    log = tmp_path / "s.log"
    reader = tail.LogTail(api, sid, log)
    reader._poll_once()
    copied = log.read_bytes()
    # A crash after the append but before the count was saved: the saved count is stale.
    reader.state_path.write_text('{"received": 0, "log_size": 0}')
    again = tail.LogTail(api, sid, log).start()
    assert again.done.wait(60)
    assert log.read_bytes() == copied == api.logs(sid).encode()


def test_a_flood_is_copied_whole_with_bounded_memory(ray_cluster, tmp_path):
    api, run = client(ray_cluster), unique("flood")
    # About 12 MB of output in a burst.
    sid = submit(api, run, "python3 -c \"import sys; [sys.stdout.write('x' * 199 + '\\n') for _ in range(60000)]\"")
    wait_status(api, sid, ["RUNNING"] + list(jobs.TERMINAL))
    log = tmp_path / "flood.log"
    reader = tail.LogTail(api, sid, log)
    tracemalloc.start()
    try:
        ws = tail.WebSocket(api.tail_url(sid), api.headers())
        ws.connect()
        position = 0
        for _op, piece in ws.pieces():
            position = reader._take(position, piece)
        ws.close()
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    wait_status(api, sid, jobs.TERMINAL)
    reader._poll_once()  # the catch-up the reader does at the end
    size = log.stat().st_size
    assert size > 10_000_000 and log.read_bytes() == api.logs(sid).encode()
    assert peak < 4_000_000, f"the reader held {peak} bytes at its peak for a {size}-byte log"


def test_a_refused_upgrade_falls_back_to_polling(ray_cluster, tmp_path):
    refuse = socketserver.TCPServer(("127.0.0.1", 0), _RefuseUpgrade)
    threading.Thread(target=refuse.serve_forever, daemon=True).start()
    try:
        api, run = client(ray_cluster), unique("poll")
        sid = submit(api, run, "echo one; sleep 1; echo two")

        class NoWebSocket(jobs.JobsClient):
            def tail_url(self, sid):
                return f"ws://127.0.0.1:{refuse.server_address[1]}/api/jobs/{sid}/logs/tail"

        warnings = []
        reader = tail.LogTail(NoWebSocket(api.address, api.token), sid, tmp_path / "p.log", poll_interval=0.2,
                              warn=warnings.append).start()
        assert reader.done.wait(120), reader.error
        assert reader.mode == "polling" and "answered the WebSocket upgrade with HTTP 400" in warnings[0]
        assert (tmp_path / "p.log").read_bytes() == api.logs(sid).encode()
    finally:
        refuse.shutdown()
        refuse.server_close()


class _RefuseUpgrade(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.recv(65536)
        self.request.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")


# ---------------------------------------------------------------- the protocol's corners


class _Scripted(socketserver.BaseRequestHandler):
    """Accepts the upgrade, then plays `script`: a ping, a fragmented text, a big binary, a close."""

    seen = []

    def handle(self):
        request = b""
        while b"\r\n\r\n" not in request:
            request += self.request.recv(4096)
        key = [line.split(b":", 1)[1].strip() for line in request.split(b"\r\n") if line.lower().startswith(b"sec-websocket-key")][0]
        accept = base64.b64encode(hashlib.sha1(key + tail.GUID.encode()).digest())
        self.request.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                             b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        send = self.request.sendall
        send(frame(0x9, b"are you there", fin=True))
        _Scripted.seen.append(read_client_frame(self.request))  # the pong, masked
        send(frame(0x1, b"hello ", fin=False) + frame(0x0, "wörld\n".encode(), fin=True))
        send(frame(0x2, b"y" * 200_000, fin=True))
        send(frame(0x8, struct.pack("!H", 1000), fin=True))
        _Scripted.seen.append(read_client_frame(self.request))  # the close answer


def frame(opcode, payload, fin=True):
    size = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    if size < 126:
        head += bytes([size])
    elif size < 1 << 16:
        head += bytes([126]) + struct.pack("!H", size)
    else:
        head += bytes([127]) + struct.pack("!Q", size)
    return head + payload


def read_client_frame(sock):
    head = sock.recv(2)
    opcode, masked, size = head[0] & 0x0F, bool(head[1] & 0x80), head[1] & 0x7F
    mask = sock.recv(4)
    data = b""
    while len(data) < size:
        data += sock.recv(size - len(data))
    return opcode, masked, bytes(b ^ mask[i % 4] for i, b in enumerate(data))


def test_pings_fragments_big_frames_and_close_are_handled():
    server = socketserver.TCPServer(("127.0.0.1", 0), _Scripted)
    threading.Thread(target=server.handle_request, daemon=True).start()
    try:
        ws = tail.WebSocket(f"ws://127.0.0.1:{server.server_address[1]}/x", {"Authorization": "Bearer t"})
        ws.connect()
        received = list(ws.pieces())
        assert b"".join(p for _op, p in received) == "hello wörld\n".encode() + b"y" * 200_000
        assert {op for op, _p in received} == {tail.OP_TEXT, tail.OP_BINARY}
        assert max(len(p) for _op, p in received) <= tail.PIECE
        assert ws.closed
        wait_for(lambda: len(_Scripted.seen) == 2, "the server to read our answers", 10)
        assert _Scripted.seen[0] == (tail.OP_PONG, True, b"are you there")
        assert _Scripted.seen[1][:2] == (tail.OP_CLOSE, True)
    finally:
        server.server_close()


def test_a_wrong_accept_key_is_refused():
    class WrongAccept(socketserver.BaseRequestHandler):
        def handle(self):
            self.request.recv(4096)
            self.request.sendall(b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: nope\r\n\r\n")

    server = socketserver.TCPServer(("127.0.0.1", 0), WrongAccept)
    threading.Thread(target=server.handle_request, daemon=True).start()
    try:
        with pytest.raises(tail.HandshakeRefused, match="Sec-WebSocket-Accept"):
            tail.WebSocket(f"ws://127.0.0.1:{server.server_address[1]}/").connect()
    finally:
        server.server_close()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(tail.WebSocketError, match="cannot connect"):
        tail.WebSocket(f"ws://127.0.0.1:{port}/").connect()


def test_a_line_cut_by_a_restart_is_handed_on_whole(tmp_path):
    api = jobs.JobsClient("http://127.0.0.1:9", None)  # never called here
    log = tmp_path / "cut.log"
    first = tail.LogTail(api, "job", log, on_line=lambda line: None)
    first._take(0, b"alpha\nstructured-par")  # the orchestrator dies here, mid-line
    handed = []
    second = tail.LogTail(api, "job", log, on_line=handed.append)
    second._take(0, b"alpha\nstructured-partial\nnext\n")  # the replay after reconnecting
    assert handed == ["structured-partial", "next"]
    assert log.read_bytes() == b"alpha\nstructured-partial\nnext\n"
    flood = tail.LogTail(api, "flood", tmp_path / "flood.log", on_line=handed.append)
    flood._take(0, b"x" * (tail.LINE_LIMIT + 10))
    flood._take(tail.LINE_LIMIT + 10, b"y\nshort\n")
    assert handed[-1] == "short" and all(len(line) < 100 for line in handed)
