"""A local Ray cluster for the tests, run in a process of its own and driven over stdin.

    python -m tests.ray.cluster SPEC_JSON

starts a head (dashboard with the jobs API on a free loopback port, no `agent_slot`) and the
worker nodes SPEC names, each advertising `{"agent_slot": N}`, all bound to 127.0.0.1
(`ray.cluster_utils.Cluster`: `ray start` binds the machine's real address, and a second node on
one host loses the log agent's port). It prints one JSON line when the jobs API answers, with the
address, the token, each node's id and cache folder, the seconds it took and the memory the
cluster holds; then it reads commands, one per line, answering each with one JSON line:
`remove N` (kill worker node N's Ray processes, as a lost machine), `add` (one more worker
node), `memory`. End of input shuts the cluster down, so a test run that dies takes its cluster
with it. Ray is imported here only: never by the tests' own process, never by the runtime.

Two facts this file works around, measured with Ray 2.60.0 on a host with a default route:
- Ray's dashboard agent turns a loopback GCS address into the host's outward address before it
  connects (`resolve_ip_for_localhost`), so a cluster bound to 127.0.0.1 accepts no job unless
  `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` keeps every process on loopback.
- With `RAY_AUTH_MODE=token` every dashboard route, `/api/version` included, wants
  `Authorization: Bearer <token>` (401 without one, 403 for a wrong one).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Dict, List


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tree_rss_mb(root_pid: int) -> float:
    """Resident memory of a process and all its descendants, in MB (Linux /proc)."""
    children: Dict[int, List[int]] = {}
    rss: Dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(entry), int(fields[1])
        children.setdefault(ppid, []).append(pid)
        rss[pid] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    total, todo = 0, [root_pid]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, []))
    return round(total / 1e6, 1)


def wait_for_jobs_api(url: str, token: str, timeout: float = 120) -> None:
    request = urllib.request.Request(url + "/api/jobs/", headers={"Authorization": f"Bearer {token}"})
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(request, timeout=5):
                return
        except (OSError, urllib.error.URLError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def main(spec: Dict) -> int:
    started = time.monotonic()
    token = spec.get("token") or secrets.token_hex(16)
    temp_dir = tempfile.mkdtemp(prefix="okray-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    # Ray writes the latest cluster's address to <RAY_TMPDIR or /tmp>/ray/ray_current_cluster: kept in our
    # own folder, so that another cluster on this host (or a clean-up of /tmp/ray) is none of ours.
    (Path(temp_dir) / "ray").mkdir()
    os.environ.update(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token,
                      RAY_USAGE_STATS_ENABLED="0", RAY_TMPDIR=temp_dir,
                      # A lost node is noticed in about 3 s rather than Ray's default of about 15 s.
                      RAY_health_check_period_ms="1000", RAY_health_check_failure_threshold="3")
    os.environ.update(spec.get("env", {}))
    from ray.cluster_utils import Cluster  # only here: the tests' own process never imports Ray

    port = free_port()
    cluster = Cluster(initialize_head=True, head_node_args=dict(
        node_ip_address="127.0.0.1", include_dashboard=True, dashboard_host="127.0.0.1", dashboard_port=port,
        dashboard_agent_listen_port=free_port(), num_cpus=1, temp_dir=temp_dir))
    nodes = []

    def add_node(slots: int) -> Dict:
        cache = Path(temp_dir) / f"node{len(nodes) + 1}-cache"
        cache.mkdir()
        node = cluster.add_node(node_ip_address="127.0.0.1", num_cpus=slots, resources={"agent_slot": slots},
                                env_vars={"ORCHESTRATE_NODE_CACHE": str(cache)})
        nodes.append(node)
        return {"node_id": node.node_id, "cache": str(cache), "index": len(nodes)}  # `remove` takes the index

    described = [add_node(int(n)) for n in spec.get("nodes", [2, 2])]
    cluster.wait_for_nodes()
    url = f"http://127.0.0.1:{port}"
    wait_for_jobs_api(url, token)
    print(json.dumps({"address": url, "token": token, "nodes": described, "temp_dir": temp_dir,
                      "head_node_id": cluster.head_node.node_id, "pid": os.getpid(),
                      "seconds": round(time.monotonic() - started, 1), "memory_mb": tree_rss_mb(os.getpid())}),
          flush=True)
    try:
        for line in sys.stdin:
            words = line.split()
            if not words:
                continue
            if words[0] == "remove":
                node = nodes[int(words[1]) - 1]
                cluster.remove_node(node, allow_graceful=False)
                print(json.dumps({"removed": node.node_id}), flush=True)
            elif words[0] == "add":
                print(json.dumps(add_node(int(words[1]) if len(words) > 1 else 1)), flush=True)
            elif words[0] == "memory":
                print(json.dumps({"memory_mb": tree_rss_mb(os.getpid())}), flush=True)
            else:
                print(json.dumps({"error": f"unknown command {words[0]!r}"}), flush=True)
    finally:
        cluster.shutdown()
        for _ in range(20):  # a dying Ray process may still create its session folder: until it stays gone
            shutil.rmtree(temp_dir, ignore_errors=True)
            time.sleep(0.25)
            if not os.path.exists(temp_dir):
                break
    return 0


if __name__ == "__main__":
    sys.exit(main(json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}))
