"""The tests' Ray cluster: a head and two worker nodes on loopback, started once for the session and stopped after the last test here.

Ray is installed into the test venv by `make setup` (the `ray` extra: `ray[default]`, the jobs REST
API needs the dashboard); where it could not be installed every test here is skipped and says why.
The cluster runs in its own process (tests/ray/cluster.py) with token authentication on, so the
tests' process never imports Ray and keeps its environment; its nodes' PATH starts with the fake
`claude`, as a real node has Claude Code provisioned. Start-up takes about 10 s here and the cluster
holds about 2.4 GB resident (shared pages counted once per process): `cluster.started` says.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from tests.support.project import FAKE_BIN, REPO, RUNTIME

RAY_MISSING = importlib.util.find_spec("ray") is None
SKIP_REASON = ("Ray is not installed in the test venv: `make setup` installs the `ray` extra "
               "(ray[default]==2.60.*) and could not here")

if str(RUNTIME) not in sys.path:
    sys.path.insert(0, str(RUNTIME))


@dataclass
class LocalCluster:
    """The running cluster as the tests see it: its address, token and nodes; commands go over stdin."""

    process: subprocess.Popen
    address: str
    token: str
    nodes: List[Dict]
    head_node_id: str
    temp_dir: str
    started: Dict = field(default_factory=dict)
    plan: Optional[Path] = None  # the fake claude's behaviours per stream, read on the nodes
    events: Optional[Path] = None  # what the fake claude on the nodes did
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def command(self, text: str, timeout: float = 120) -> Dict:
        with self._lock:
            assert self.process.stdin and self.process.stdout
            self.process.stdin.write(text + "\n")
            self.process.stdin.flush()
            line = _read_line(self.process, timeout)
        return json.loads(line)

    @property
    def environ(self) -> Dict[str, str]:
        """What a client needs to reach this cluster (no token anywhere else in the tests' environment)."""
        return {"RAY_AUTH_TOKEN": self.token}

    def replace_node(self, node_id: str, slots: int = 2) -> Dict:
        """Kill a worker node's Ray processes (a lost machine), then add a fresh node in its place."""
        index = next(i for i, n in enumerate(self.nodes) if n["node_id"] == node_id)
        assert self.command(f"remove {self.nodes[index]['index']}")["removed"] == node_id
        added = self.command(f"add {slots}")
        self.nodes[index] = added
        return added

    def set_behaviour(self, stream: str, *behaviours: str) -> None:
        assert self.plan is not None
        plan = json.loads(self.plan.read_text())
        plan[stream] = list(behaviours)
        temporary = self.plan.with_name("plan.tmp")
        temporary.write_text(json.dumps(plan))
        os.replace(temporary, self.plan)

    def fake_events(self) -> List[Dict]:
        if self.events is None or not self.events.exists():
            return []
        return [json.loads(line) for line in self.events.read_text().splitlines() if line.strip()]

    def node_of(self, node_id: Optional[str]) -> Optional[Dict]:
        return next((n for n in self.nodes if n["node_id"] == node_id), None)


def _read_line(process: subprocess.Popen, timeout: float) -> str:
    """One line from the cluster process, failing (not hanging) if it dies or takes too long."""
    box: List[str] = []
    reader = threading.Thread(target=lambda: box.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not box or not box[0]:
        raise RuntimeError(f"the test cluster did not answer (exit code {process.poll()})")
    return box[0]


def start_cluster(nodes=(2, 2), env: Optional[Dict[str, str]] = None) -> LocalCluster:
    environ = {**os.environ, "PATH": f"{FAKE_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    environ.pop("PYTHONPATH", None)  # the nodes get the runtime from the job's py_modules, nowhere else
    spec = {"nodes": list(nodes), "env": env or {}}
    process = subprocess.Popen([sys.executable, str(Path(__file__).with_name("cluster.py")), json.dumps(spec)],
                               cwd=str(REPO),
                               env=environ, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        ready = json.loads(_read_line(process, 240))
    except Exception:
        process.kill()
        process.wait()
        raise
    return LocalCluster(process, ready["address"], ready["token"], ready["nodes"], ready["head_node_id"],
                        ready["temp_dir"], {"seconds": ready["seconds"], "memory_mb": ready["memory_mb"]})


def stop_cluster(cluster: LocalCluster) -> None:
    assert cluster.process.stdin
    cluster.process.stdin.close()
    try:
        cluster.process.wait(120)
    except subprocess.TimeoutExpired:
        cluster.process.kill()
        cluster.process.wait()


@pytest.fixture(scope="session")
def ray_cluster():
    if RAY_MISSING:
        pytest.skip(SKIP_REASON)
    fake = Path(tempfile.mkdtemp(prefix="okray-fake-"))
    plan = fake / "plan.json"
    plan.write_text("{}")
    # The fake claude on the nodes reads its behaviour per stream from this plan (tests add to it).
    cluster = start_cluster(env={"FAKE_CLAUDE_PLAN": str(plan), "FAKE_CLAUDE_EVENTS": str(fake / "events.jsonl"),
                                 "FAKE_CLAUDE_DELAY": "0.05"})
    cluster.plan, cluster.events = plan, fake / "events.jsonl"
    print(f"\nRay test cluster: up in {cluster.started['seconds']} s, {cluster.started['memory_mb']} MB resident")
    RUNNING.append(cluster)
    yield cluster
    end_session_cluster()


HERE = Path(__file__).resolve().parent
RUNNING: List[LocalCluster] = []  # the session's cluster while it runs
FINISHED: List[str] = []  # the tests here that have run (in this xdist worker: they all run in one)


def end_session_cluster() -> None:
    """Stop the cluster and check that it left nothing (once; at the latest when the session ends)."""
    while RUNNING:
        cluster = RUNNING.pop()
        stop_cluster(cluster)
        if cluster.plan is not None:
            shutil.rmtree(cluster.plan.parent, ignore_errors=True)
        left = processes_mentioning(cluster.temp_dir)
        assert not left, f"the Ray test cluster left processes behind: {left}"


@pytest.fixture(autouse=True)
def end_the_cluster_after_the_last_test_here(request):
    """The tests here run on one xdist worker, not always back to back: once the last of them has run,
    the cluster stops, so its processes do not take the CPU for the rest of the suite."""
    yield
    FINISHED.append(request.node.nodeid)
    here = [item.nodeid for item in request.session.items if HERE in item.path.parents]
    if set(here) <= set(FINISHED):
        end_session_cluster()


def processes_mentioning(text: str) -> List[str]:
    """Command lines of live processes that name `text` (the cluster's folder: every Ray process of it does)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                args = handle.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if text in args:
            found.append(f"{entry}: {args[:120]}")
    return found
