"""A Ray job's log copied into the stream's local log as it grows: the WebSocket tail, else polling.

The supervisor reads a stream's local log as it grows, whatever runs the worker; for a Ray job this
module writes that file. One thread per job (`LogTail.start`) does blocking network reads with short
timeouts and appends to the log; the supervisor's loop never touches the network for output and
never waits on it. A thread per job rather than one `select` loop: each job's reader is a plain
sequence (connect, handshake, frames, reconnect, fall back), and two dozen threads parked in `recv`
cost nothing; a `select` loop would have to keep every connection's partial frame and handshake as
explicit state.

`/api/jobs/{id}/logs/tail` replays the job's log from its first line on every connect, so the
reader counts the bytes it has received for this job and skips that many on a reconnect. The count
is saved beside the log (`<log>.ray-<job>.json`, with the log's size after the last append, so an
append that landed before a crash is counted too): an orchestrator restart neither loses nor repeats
a line. When the WebSocket cannot be opened (a proxy that refuses upgrades, an old Ray) the reader
polls `GET /api/jobs/{id}/logs` instead, which returns the whole log and is skipped the same way.
Each complete line can be handed to a callback as it is copied (`on_line`: the applier of the
job's task updates, so they land while the job runs), once, across restarts too. When the job has
ended the reader fetches the log once more so a last line the tail missed is not lost, then stops;
`finish` does that at once when the caller already knows the job ended (Ray closes its tail only a
second or two after the end, and never when the job's node is gone). Memory stays bounded on a flood: frames are read and written in pieces of at most
64 KiB (the polling fallback holds one whole log while it compares).

The WebSocket client is RFC 6455's client side, enough for Ray's server: the opening handshake
(with `Sec-WebSocket-Accept` checked), masked client frames, text/binary/continuation data, ping
(answered with pong), pong, close (answered). Standard library only.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import ssl
import struct
import threading
import urllib.parse
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

from ... import atomic
from .jobs import JobsClient, RayError

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
PIECE = 64 * 1024
LINE_LIMIT = 1024 * 1024  # no structured line is longer; longer lines are never handed on
OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class WebSocketError(Exception):
    """The connection failed or broke; the message says how."""


class HandshakeRefused(WebSocketError):
    """The server answered the upgrade with something other than 101: polling is the way then."""


# ---------------------------------------------------------------- RFC 6455, the client side


class WebSocket:
    """One client connection: `connect`, then `pieces()` yields (opcode, bytes) of data frames."""

    def __init__(self, url: str, headers: Optional[Dict[str, str]] = None, timeout: float = 10.0,
                 read_timeout: float = 1.0):
        self.url = url
        self.headers = headers or {}
        self.timeout = timeout
        self.read_timeout = read_timeout  # how often a blocked read checks whether it should stop
        self.sock: Optional[socket.socket] = None
        self.closed = False
        self._buffer = b""

    def connect(self) -> None:
        parts = urllib.parse.urlsplit(self.url)
        secure = parts.scheme == "wss"
        host, port = parts.hostname or "", parts.port or (443 if secure else 80)
        try:
            sock = socket.create_connection((host, port), timeout=self.timeout)
            if secure:
                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        except OSError as error:
            raise WebSocketError(f"cannot connect to {host}:{port}: {error}") from None
        self.sock = sock
        key = base64.b64encode(os.urandom(16)).decode()
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Upgrade: websocket", "Connection: Upgrade",
                 f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
        lines += [f"{k}: {v}" for k, v in self.headers.items()]
        self._send_all(("\r\n".join(lines) + "\r\n\r\n").encode())
        status, answer = self._read_response_head()
        if status != 101:
            self.close_socket()
            raise HandshakeRefused(f"the server answered the WebSocket upgrade with HTTP {status}")
        expected = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        if answer.get("sec-websocket-accept") != expected:
            self.close_socket()
            raise HandshakeRefused("the server's Sec-WebSocket-Accept does not match our key")
        sock.settimeout(self.read_timeout)

    def _read_response_head(self) -> Tuple[int, Dict[str, str]]:
        while b"\r\n\r\n" not in self._buffer:
            chunk = self._recv_blocking(4096)
            if not chunk:
                raise WebSocketError("the server closed the connection during the handshake")
            self._buffer += chunk
            if len(self._buffer) > 64 * 1024:
                raise WebSocketError("the server's handshake answer is too long")
        head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        try:
            status = int(lines[0].split()[1])
        except (IndexError, ValueError):
            raise WebSocketError(f"not an HTTP answer: {lines[0][:80]!r}") from None
        fields = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        return status, fields

    def _recv_blocking(self, size: int) -> bytes:
        assert self.sock is not None
        try:
            return self.sock.recv(size)
        except socket.timeout:
            raise WebSocketError("the server did not answer in time") from None
        except OSError as error:
            raise WebSocketError(f"the connection broke: {error}") from None

    def _send_all(self, data: bytes) -> None:
        assert self.sock is not None
        try:
            self.sock.sendall(data)
        except OSError as error:
            raise WebSocketError(f"the connection broke: {error}") from None

    def send_frame(self, opcode: int, payload: bytes = b"") -> None:
        """A masked client frame (clients must mask, RFC 6455 5.3)."""
        mask = os.urandom(4)
        size = len(payload)
        head = bytes([0x80 | opcode])
        if size < 126:
            head += bytes([0x80 | size])
        elif size < 1 << 16:
            head += bytes([0x80 | 126]) + struct.pack("!H", size)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", size)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self._send_all(head + mask + masked)

    def _read_exact(self, size: int, should_stop: Callable[[], bool]) -> bytes:
        """Exactly `size` bytes; a quiet connection is waited on in read_timeout steps."""
        while len(self._buffer) < size:
            assert self.sock is not None
            try:
                chunk = self.sock.recv(PIECE)
            except socket.timeout:
                if should_stop():
                    raise WebSocketError("stopped")
                continue
            except OSError as error:
                raise WebSocketError(f"the connection broke: {error}") from None
            if not chunk:
                raise WebSocketError("the server closed the connection without a close frame")
            self._buffer += chunk
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def pieces(self, should_stop: Callable[[], bool] = lambda: False):
        """Yield (opcode, piece) for data frames, each frame in pieces of at most 64 KiB (a
        continuation keeps its message's opcode); answer pings; end after a close frame."""
        message_op = OP_TEXT
        while not self.closed:
            first, second = self._read_exact(2, should_stop)
            opcode, masked, size = first & 0x0F, second & 0x80, second & 0x7F
            if size == 126:
                size = struct.unpack("!H", self._read_exact(2, should_stop))[0]
            elif size == 127:
                size = struct.unpack("!Q", self._read_exact(8, should_stop))[0]
            mask = self._read_exact(4, should_stop) if masked else b""
            if opcode >= 0x8:  # control frames: at most 125 bytes, never fragmented
                payload = self._unmask(self._read_exact(size, should_stop), mask, 0)
                if opcode == OP_PING:
                    self.send_frame(OP_PONG, payload)
                elif opcode == OP_CLOSE:
                    self.closed = True
                    try:
                        self.send_frame(OP_CLOSE, payload[:2])
                    except WebSocketError:
                        pass
                continue
            if opcode in (OP_TEXT, OP_BINARY):
                message_op = opcode
            offset = 0
            while offset < size:
                part = self._unmask(self._read_exact(min(PIECE, size - offset), should_stop), mask, offset)
                offset += len(part)
                yield message_op, part

    @staticmethod
    def _unmask(data: bytes, mask: bytes, offset: int) -> bytes:
        if not mask:
            return data
        return bytes(b ^ mask[(offset + i) % 4] for i, b in enumerate(data))

    def close(self) -> None:
        if self.sock is not None and not self.closed:
            try:
                self.send_frame(OP_CLOSE, struct.pack("!H", 1000))
            except WebSocketError:
                pass
        self.closed = True
        self.close_socket()

    def interrupt(self) -> None:
        """From another thread: end the connection so a blocked read returns (its reader then stops)."""
        sock = self.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close_socket(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None


# ---------------------------------------------------------------- one job's log, copied


class LogTail:
    """Copies one job's log into `log_path`, exactly once per byte, in a thread of its own."""

    def __init__(self, api: JobsClient, sid: str, log_path: Path, poll_interval: float = 1.0,
                 reconnect_limit: int = 5, warn: Callable[[str], None] = lambda _message: None,
                 on_line: Optional[Callable[[str], object]] = None, state_path: Optional[Path] = None):
        self.api = api
        self.sid = sid
        self.log_path = Path(log_path)
        # The count of bytes copied: beside the log unless the caller keeps it elsewhere (its state folder).
        self.state_path = Path(state_path or self.log_path.with_name(f"{self.log_path.name}.ray-{sid}.json"))
        self.poll_interval = poll_interval
        self.reconnect_limit = reconnect_limit
        self.warn = warn
        self.mode = "websocket"
        self.done = threading.Event()  # the job ended and everything it printed is in the log
        self.error: Optional[str] = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._socket: Optional[WebSocket] = None  # the open connection, for `finish` to interrupt
        self.received = self._load_count()
        # Each complete line copied is handed to `on_line` (the applier of the job's task updates),
        # in this thread. A line longer than LINE_LIMIT is passed over: no structured line is that long.
        self.on_line = on_line
        self._partial = self._unfinished_line() if on_line else b""

    # -- the count of bytes already copied, kept across restarts

    def _load_count(self) -> int:
        try:
            saved = json.loads(self.state_path.read_text(encoding="utf-8"))
            received, log_size = int(saved["received"]), int(saved["log_size"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0
        actual = self._log_size()
        # An append that landed after the last save (a crash in between) is in the log: count it.
        return received + (actual - log_size if actual > log_size else 0)

    def _log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def _save_count(self) -> None:
        atomic.write_text(self.state_path, json.dumps({"received": self.received, "log_size": self._log_size()}))

    def _take(self, position: int, piece: bytes) -> int:
        """Append the part of `piece` (at `position` of this replay) not copied before; the new position."""
        end = position + len(piece)
        if end > self.received:
            fresh = piece[max(0, self.received - position):]
            with open(self.log_path, "ab") as log:
                log.write(fresh)
            self.received = end
            self._save_count()
            if self.on_line is not None:
                self._hand_on(fresh)
        return end

    def _hand_on(self, fresh: bytes) -> None:
        data = self._partial + fresh
        lines = data.split(b"\n")
        self._partial = lines.pop()
        if len(self._partial) > LINE_LIMIT:
            self._partial = b"\xff"  # a flood without newlines: keep only a marker that spoils the rest
        for line in lines:
            if len(line) <= LINE_LIMIT and self.on_line is not None:
                self.on_line(line.decode("utf-8", "replace"))

    def _unfinished_line(self) -> bytes:
        """After a restart: the start of a line the last reader copied but did not finish (its own bytes)."""
        if not self.received:
            return b""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(max(0, self._log_size() - LINE_LIMIT))
                tail = log.read()
        except OSError:
            return b""
        cut = tail.rfind(b"\n")
        return tail[cut + 1:] if cut >= 0 or len(tail) < LINE_LIMIT else b"\xff"

    # -- the thread

    def start(self) -> "LogTail":
        self._thread = threading.Thread(target=self._run, name=f"ray-tail-{self.sid}", daemon=True)
        self._thread.start()
        return self

    def stop(self, wait: float = 0.0) -> None:
        """Ask the reader to stop (it notices within about a second); optionally wait for it."""
        self._stop.set()
        if wait and self._thread is not None:
            self._thread.join(wait)

    def finish(self, wait: float = 30.0) -> bool:
        """The job has ended (Ray says so), so its log on the cluster is complete: stop following and
        copy what is left with one fetch, now. Ray closes the tail only a second or two after the
        end (it sleeps a second between looks), and not at all when the job's node is gone.
        True once everything is copied (`done`); False if the reader did not stop within `wait` s
        or the fetch failed (said through `warn`)."""
        self._stop.set()
        socket_of = self._socket
        if socket_of is not None:
            socket_of.interrupt()  # a read blocked on the quiet connection returns at once
        if self._thread is not None:
            self._thread.join(wait)
            if self._thread.is_alive():
                return False
        if not self.done.is_set():
            try:
                self._poll_once()
            except (RayError, OSError) as error:
                self.error = str(error)
                self.warn(f"job {self.sid}: its last log lines could not be copied: {error}")
                return False
            self.done.set()
        return True

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def forget(self) -> None:
        """Remove the saved count (once the run no longer needs this job)."""
        try:
            self.state_path.unlink()
        except FileNotFoundError:
            pass

    def _run(self) -> None:
        try:
            failures = 0
            while not self._stop.is_set():
                if self.mode == "websocket":
                    try:
                        self._follow_websocket()
                        failures = 0
                        if not self._job_ended():
                            self._stop.wait(0.5)  # closed cleanly while the job runs: reconnect, gently
                            continue
                        self._poll_once()  # the tail may close before its last lines: catch up once
                        self.done.set()
                        return
                    except HandshakeRefused as error:
                        self.warn(f"job {self.sid}: {error}; polling its log instead")
                        self.mode = "polling"
                        continue
                    except WebSocketError as error:
                        if self._stop.is_set():
                            return
                        failures += 1
                        if failures >= self.reconnect_limit:
                            self.warn(f"job {self.sid}: the log tail keeps breaking ({error}); polling instead")
                            self.mode = "polling"
                            continue
                        self._stop.wait(min(0.2 * 2 ** failures, 5.0))
                else:
                    self._poll_once()
                if self._job_ended():
                    self._poll_once()  # the tail may close before its last lines: catch up once
                    self.done.set()
                    return
                if self.mode == "polling":
                    self._stop.wait(self.poll_interval)
        except (RayError, OSError) as error:
            self.error = str(error)
            self.warn(f"job {self.sid}: copying its log stopped: {error}")

    def _follow_websocket(self) -> None:
        ws = WebSocket(self.api.tail_url(self.sid), self.api.headers(), timeout=self.api.timeout)
        ws.connect()
        self._socket = ws
        try:
            position = 0
            for _opcode, piece in ws.pieces(self._stop.is_set):
                position = self._take(position, piece)
        finally:
            self._socket = None
            ws.close()

    def _poll_once(self) -> None:
        text = self.api.logs(self.sid).encode("utf-8")
        self._take(0, text)

    def _job_ended(self) -> bool:
        job = self.api.info(self.sid)
        return job is None or job.ended
