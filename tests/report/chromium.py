"""Real headless Chromium for tests, driven over the DevTools protocol on a pipe (no extra library).

`make chromium` installs Debian's `chromium` (root and apt-get); without it the tests that need a
browser skip and say why. `Chromium.visit(path)` opens a file in a fresh tab and returns what the
page did: the console and log errors (CSP violations and failed loads included), every network
request it made, a full-page PNG screenshot, and an `evaluate` for reading the DOM. Chromium
starts with an empty profile (its HOME and XDG folders inside it, so the user's home is never
written) and everything that would reach the network at start turned off.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio",
         "--no-default-browser-check", "--remote-debugging-pipe"]
# A guard against a browser that hangs (never a measure of speed): generous for a loaded machine.
HANG_GUARD_SECONDS = 180.0

# Chromium reads the protocol on fd 3 and writes it on fd 4: put our pipe ends there, then exec it.
_LAUNCH = ("import fcntl,os,sys\n"
           "r=fcntl.fcntl(int(sys.argv[1]),fcntl.F_DUPFD,10); w=fcntl.fcntl(int(sys.argv[2]),fcntl.F_DUPFD,10)\n"
           "os.dup2(r,3); os.dup2(w,4); os.close(r); os.close(w)\n"
           "os.execv(sys.argv[3], sys.argv[3:])\n")


def find_chromium() -> Optional[str]:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def why_no_chromium() -> str:
    return ("Debian's chromium is not installed: `make chromium` installs it (it needs root and apt-get), "
            "so the report's browser test cannot run here")


class BrowserError(RuntimeError):
    pass


@dataclass
class Visit:
    """What one page did in the browser."""

    url: str
    errors: List[str] = field(default_factory=list)  # console errors, uncaught exceptions, error log entries
    requests: List[str] = field(default_factory=list)  # every URL the page asked for, itself included
    screenshot: bytes = b""
    values: Dict[str, Any] = field(default_factory=dict)  # what `expressions` evaluated to, by name


class Chromium:
    def __init__(self, program: str):
        self.profile = tempfile.mkdtemp(prefix="chromium-profile-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        argv = [sys.executable, "-c", _LAUNCH, str(to_browser_r), str(from_browser_w), program, *FLAGS,
                f"--user-data-dir={self.profile}", "about:blank"]
        self.stderr_path = Path(self.profile) / "stderr.txt"  # a file: a full pipe would stall the browser
        # Its crash database and dconf cache follow HOME and XDG_*: keep them in the profile, not the user's home.
        env = dict(os.environ, HOME=self.profile, XDG_CONFIG_HOME=f"{self.profile}/config",
                   XDG_CACHE_HOME=f"{self.profile}/cache", XDG_DATA_HOME=f"{self.profile}/data")
        with open(self.stderr_path, "wb") as stderr:
            self.process = subprocess.Popen(argv, pass_fds=(to_browser_r, from_browser_w), stdin=subprocess.DEVNULL,
                                            stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True, env=env)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self.events: List[dict] = []

    # -- the protocol

    def send(self, method: str, params: Optional[dict] = None, session: Optional[str] = None) -> dict:
        self._next_id += 1
        message: Dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        wanted = self._next_id
        while True:
            reply = self._receive()
            if reply.get("id") == wanted:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, session: str) -> dict:
        """The first event `method` of `session` (one already received counts)."""
        while True:
            for event in self.events:
                if event.get("method") == method and event.get("sessionId") == session:
                    return event
            self.events.append(self._receive())

    def _receive(self) -> dict:
        deadline = time.monotonic() + HANG_GUARD_SECONDS
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._from_browser], [], [], max(left, 0))
            if not ready:
                raise BrowserError(f"chromium said nothing for {HANG_GUARD_SECONDS:g} s")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                stderr = self.stderr_path.read_text(errors="replace")[-2000:] if self.stderr_path.exists() else ""
                raise BrowserError(f"chromium closed its protocol pipe (exit {self.process.poll()}): {stderr}")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    # -- a page

    def visit(self, path: Path, expressions: Optional[Dict[str, str]] = None, width: int = 1280) -> Visit:
        """Open `path` in a new tab, wait for its load event, take a full-page screenshot, evaluate
        `expressions` (name -> JavaScript, run by the debugger, not by the page) and close the tab."""
        url = path.resolve().as_uri()
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable", session=session)
        self.events.clear()  # about:blank's own events are not the page's
        self.send("Page.navigate", {"url": url}, session=session)
        self.wait_for("Page.loadEventFired", session)
        visit = Visit(url)
        metrics = self.send("Page.getLayoutMetrics", session=session)
        height = int(min(metrics["cssContentSize"]["height"], 16000))
        self.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": max(height, 200),
                                                         "deviceScaleFactor": 1, "mobile": False}, session=session)
        shot = self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}, session=session)
        visit.screenshot = base64.b64decode(shot["data"])
        for name, expression in (expressions or {}).items():
            result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=session)
            if "exceptionDetails" in result:
                raise BrowserError(f"evaluating {name}: {result['exceptionDetails']}")
            visit.values[name] = result["result"].get("value")
        self.send("Target.closeTarget", {"targetId": target})
        for event in self.events:
            if event.get("sessionId") != session:
                continue
            method, params = event.get("method"), event.get("params", {})
            if method == "Network.requestWillBeSent":
                visit.requests.append(params["request"]["url"])
            elif method == "Runtime.exceptionThrown":
                visit.errors.append(f"exception: {params.get('exceptionDetails', {}).get('text')}")
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                visit.errors.append(f"console.{params['type']}: {params.get('args')}")
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                entry = params["entry"]
                visit.errors.append(f"{entry.get('source')}: {entry.get('text')} ({entry.get('url', '')})")
        self.events.clear()
        return visit

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (BrowserError, OSError):
            pass
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, 9)
            self.process.wait()
        for fd in (self._to_browser, self._from_browser):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)
