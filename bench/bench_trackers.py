"""One snapshot, and `orchestrate.py status`, on 1000-stream databases of both Task Copilot generations.

1000 streams x 10 tasks, ten dependency levels, a quarter complete and a quarter
half done. Generation 1: the MCP server's schema under TASK_DB_PATH/WORKSPACE_ID.
Generation 2: a tc database (<project>/.copilot/tasks.db) with a streams row per
stream, the metadata upstream's planning step writes, and one task_dependencies
edge inside every stream plus one across streams every tenth stream. Figures are
medians: the in-process snapshot (query + fold) and the real `status` command
(a Python start-up, locating the database, one snapshot, the states, the table).
The aim: the same order of time for both generations.
"""

from __future__ import annotations

import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support import taskdb  # noqa: E402
from bench.installed import CONF, default_conf  # noqa: E402
from tests.support.project import RUNTIME, install_runtime  # noqa: E402

STREAMS, TASKS = 1000, 10
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "7"))
WORKSPACE = "bench-ws"
CREATED = "2026-11-23T00:00:00Z"


def plan() -> List[Tuple[str, str, List[str], List[str]]]:
    """(stream id, name, dependencies, task statuses) for every stream."""
    width = STREAMS // 10
    out = []
    for s in range(STREAMS):
        done = TASKS if s < STREAMS // 4 else (TASKS // 2 if s < STREAMS // 2 else 0)
        deps = [f"Stream-{s - width:04d}"] if s >= width else []
        out.append((f"Stream-{s:04d}", f"Bench stream {s}", deps,
                    ["completed" if t < done else "pending" for t in range(TASKS)]))
    return out


def build_gen1(path: Path) -> None:
    taskdb.make_db(path)
    rows = []
    for sid, name, deps, statuses in plan():
        meta = json.dumps({"streamId": sid, "streamName": name, "dependencies": deps})
        rows += [(f"T-{sid}-{t:03d}", f"{sid} task {t}", status, meta, CREATED, CREATED)
                 for t, status in enumerate(statuses)]
    with sqlite3.connect(path) as conn:
        conn.executemany("INSERT INTO tasks (id, title, status, metadata, created_at, updated_at) "
                         "VALUES (?, ?, ?, ?, ?, ?)", rows)
    conn.close()


def build_gen2(project: Path) -> Path:
    path = taskdb.make_tc_db(project)
    conn = sqlite3.connect(path)
    with conn:
        for row, (sid, name, deps, statuses) in enumerate(plan(), 1):
            conn.execute("INSERT INTO streams (id, name) VALUES (?, ?)", (row, name))
            meta = json.dumps({"streamId": sid, "streamName": name, "dependencies": deps})
            conn.executemany("INSERT INTO tasks (title, stream_id, status, metadata, created_at, updated_at) "
                             "VALUES (?, ?, ?, ?, ?, ?)",
                             [(f"{sid} task {t}", row, status, meta, CREATED, CREATED) for t, status in enumerate(statuses)])
        ids = [r[0] for r in conn.execute("SELECT id FROM tasks ORDER BY id")]
        edges = [(ids[s * TASKS + 1], ids[s * TASKS]) for s in range(STREAMS)]  # inside each stream
        edges += [(ids[s * TASKS + 2], ids[(s - 1) * TASKS + 9]) for s in range(10, STREAMS, 10)]  # across
        conn.executemany("INSERT INTO task_dependencies (task_id, depends_on) VALUES (?, ?)", edges)
    conn.close()
    return path


def median_ms(action: Callable[[], object]) -> float:
    times = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def status_ms(project: Path, env: Dict[str, str]) -> float:
    argv = [sys.executable, str(project / ".claude" / "orchestrator" / "orchestrate.py"), "status"]

    def once() -> None:
        subprocess.run(argv, env=env, cwd=project, check=True, capture_output=True)

    return median_ms(once)


def run():
    sys.path.insert(0, str(RUNTIME))
    from _orchestrate_kit import trackers

    with tempfile.TemporaryDirectory() as tmp:
        gen1_project, gen2_project = Path(tmp) / "gen1", Path(tmp) / "gen2"
        for project in (gen1_project, gen2_project):
            install_runtime(project / ".claude" / "orchestrator")
            (project / CONF).write_text(default_conf(), encoding="utf-8")  # the installed settings
        base = Path(tmp) / "tasks"
        build_gen1(base / WORKSPACE / "tasks.db")
        gen2_db = build_gen2(gen2_project)
        clean = {k: v for k, v in os.environ.items() if k not in ("TASK_DB_PATH", "WORKSPACE_ID")}
        env1 = {**clean, "TASK_DB_PATH": str(base), "WORKSPACE_ID": WORKSPACE, "HOME": tmp}
        env2 = {**clean, "HOME": tmp}
        reader1 = trackers.Database(base / WORKSPACE / "tasks.db")
        reader2 = trackers.Database(gen2_db)
        yield "gen 1 (MCP server), 1000 x 10: snapshot", f"{median_ms(reader1.snapshot):.1f} ms"
        yield "gen 2 (tc), 1000 x 10 + task_dependencies: snapshot", f"{median_ms(reader2.snapshot):.1f} ms"
        yield "gen 1, 1000 x 10: orchestrate.py status", f"{status_ms(gen1_project, env1):.0f} ms"
        yield "gen 2, 1000 x 10: orchestrate.py status", f"{status_ms(gen2_project, env2):.0f} ms"
        reader1.close()
        reader2.close()


if __name__ == "__main__":
    for label, figure in run():
        print(f"{label:58} {figure}")
