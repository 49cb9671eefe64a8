"""What the run's journal costs the loop: per turn and per run in the real supervisor, and on the
installed defaults' overhead figures, before (the runtime without the journal in its loop) and after.

Per turn: the real `Supervisor` driven through scripted histories (tests/support/loop_harness.py:
the in-memory executor, a fake clock, a scripted tracker) over 200 independent streams, 8 at a
time, each worker exiting once with its stream complete: about 230 turns, every one with a
transition or an attempt to journal. The loop's CPU time per turn is measured with the journal as
installed and with it turned off (its file unset: every event dropped at once), medians of
BENCH_ROUNDS. Per run: what the end of such a run adds, the last line and the report written
(`report_at_end`).

Installed overhead: bench_orchestrator's 4-stream chain and 3 levels x 8 wide rows (1-second fake
workers, the installed defaults), each run in a process of its own, alternating between this
runtime and the one in BENCH_BEFORE_RUNTIME (a runtime folder, e.g. from `git archive main
template/.claude/orchestrator`); without it only the "after" figures are printed.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.loop_harness import Harness  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
STREAMS = 200
PARALLEL = 8
BEFORE = os.environ.get("BENCH_BEFORE_RUNTIME", "")
INSTALLED_ROUNDS = int(os.environ.get("BENCH_INSTALLED_ROUNDS", "3"))


def _loop_run(journal_on: bool) -> Tuple[float, int, float, int]:
    """(loop CPU seconds, turns, CPU seconds of the run's end, journal lines) for one scripted run of
    STREAMS streams."""
    with tempfile.TemporaryDirectory(prefix="bench-journal.") as tmp:
        h = Harness(Path(tmp), {f"S{i:03d}": [] for i in range(STREAMS)}, max_parallel=PARALLEL)
        record = h.supervisor.announce.record
        if not journal_on:
            record.journal.path = None  # every event is dropped before it is even encoded
            record.run_id = ""  # and the end writes no report
        turns, cpu, end_cpu = 0, 0.0, 0.0
        code: Optional[int] = None
        while code is None:
            running = list(h.executor.running)
            h.tracker.complete(*running)
            for sid in running:
                h.executor.exit(sid, 0)
            started = time.process_time()
            code = h.turn()
            took = time.process_time() - started
            if code is not None:  # the run's end: its last line and report (with the journal on)
                end_cpu = took
            else:
                cpu += took
                turns += 1
        assert code == 0 and all(life.state.value == "complete" for life in h.supervisor.table.rows.values())
        journals = list(h.layout.journals.glob("*.jsonl")) if h.layout.journals.is_dir() else []
        lines = sum(path.read_bytes().count(b"\n") for path in journals)
        return cpu, turns, end_cpu, lines


def loop_rows() -> List[Tuple[str, str]]:
    rows = []
    figures: Dict[bool, Tuple[float, float]] = {}
    for on in (False, True):
        runs = [_loop_run(on) for _ in range(ROUNDS)]
        per_turn = statistics.median(cpu / turns for cpu, turns, _, _ in runs)
        end = statistics.median(end for _, _, end, _ in runs)
        figures[on] = (per_turn, end)
        turns = statistics.median(turns for _, turns, _, _ in runs)
        lines = statistics.median(lines for _, _, _, lines in runs)
        label = "journal on (installed)" if on else "journal off"
        rows.append((f"loop turn, {STREAMS} streams x {PARALLEL} at once, {label}",
                     f"{per_turn * 1000:.3f} ms CPU per turn ({turns:.0f} turns, {lines:.0f} journal lines, "
                     f"median of {ROUNDS})"))
        rows.append((f"the run's end (its last turn), {label}", f"{end * 1000:.1f} ms CPU"))
    rows.append(("the journal's cost per turn", f"{(figures[True][0] - figures[False][0]) * 1000:+.3f} ms CPU "
                 f"({(figures[True][0] - figures[False][0]) / figures[False][0] * 100:+.1f} %)"))
    rows.append(("the journal's cost per run (its end: last line and report)",
                 f"{(figures[True][1] - figures[False][1]) * 1000:+.1f} ms CPU"))
    return rows


_ONE = ("import json, sys; sys.path.insert(0, {repo!r}); sys.path.insert(0, {bench!r});"
        "from bench_orchestrator import _run, chain, layered;"
        "print(json.dumps(_run(*{graph}())))")


def _installed_once(graph: str, runtime: str) -> Dict[str, float]:
    env = dict(os.environ)
    env.pop("ORCHESTRATE_TEST_RUNTIME", None)
    if runtime:
        env["ORCHESTRATE_TEST_RUNTIME"] = runtime
    code = _ONE.format(repo=str(REPO), bench=str(REPO / "bench"), graph=graph)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def installed_rows() -> List[Tuple[str, str]]:
    rows = []
    for graph, label in (("chain", "4-stream chain"), ("layered", "3 levels x 8 wide")):
        after: List[Dict[str, float]] = []
        before: List[Dict[str, float]] = []
        for _ in range(INSTALLED_ROUNDS):  # alternating, so the machine's load falls on both alike
            if BEFORE:
                before.append(_installed_once(graph, BEFORE))
            after.append(_installed_once(graph, ""))
        for name, results in (("before (no journal in the loop)", before), ("after (journal on)", after)):
            if results:
                rows.append((f"{label}, installed defaults, {name}: overhead",
                             f"{statistics.median(r['overhead'] for r in results):.2f} s, dispatch "
                             f"{statistics.median(r['dispatch'] for r in results):.3f} s, orchestrator CPU "
                             f"{statistics.median(r['cpu'] for r in results):.2f} s (median of {len(results)})"))
    return rows


def run() -> List[Tuple[str, str]]:
    return loop_rows() + installed_rows()


if __name__ == "__main__":
    only = sys.argv[1:] or ["loop", "installed"]
    for label, figure in (loop_rows() if "loop" in only else []) + (installed_rows() if "installed" in only else []):
        print(f"{label:62} {figure}")
