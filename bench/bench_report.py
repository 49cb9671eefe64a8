"""The run report and its journal: making a report of 10 and 200 streams, the page's size, and what one
journal event costs to write and to read.

A report is made the way the end of a run (and `orchestrate.py report`) makes it: `write_report`
reads the journal, builds the report, renders the page and writes it atomically. The journals are
hand-built through the real `Journal` (tests/support/journals.py): 10 streams with 30 attempts, and
200 streams with 1000 attempts (failures and retries spread over the streams, every stream
merged), each final result 600 characters. `report` as a command adds Python's start-up and the
imports (a new process, as a user runs it). Goals: under 0.5 s for 10 streams and 2 s for 200, a
200-stream page under 2 MB. Medians of BENCH_ROUNDS runs (default 5).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator, List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support import journals  # noqa: E402
from tests.support.project import RUNTIME, install_runtime  # noqa: E402
from _orchestrate_kit.journal import Journal, journal_path, read_journal  # noqa: E402
from _orchestrate_kit.report import write_report  # noqa: E402
from _orchestrate_kit.settings import Layout, layout_for  # noqa: E402
from _orchestrate_kit.spend import SpendWindow  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
SIZES = ((10, 30, "20260921T100000Z-000010"), (200, 1000, "20260921T100000Z-000200"))
APPENDS = 20_000
READ_LINES = 100_000


def median(measure: Callable[[], float]) -> float:
    return statistics.median(measure() for _ in range(ROUNDS))


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def run() -> Iterator[Tuple[str, str]]:
    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        root = Path(tmp)
        home = root / "project" / ".claude" / "orchestrator"
        install_runtime(home)
        layout = layout_for(home)  # as the installed runtime finds it (no git here: state beside home)
        for streams, attempts, run_id in SIZES:
            path = journals.generated(layout.journals, run_id, streams, attempts)
            spent = median(lambda: timed(lambda: write_report(layout, run_id)))
            page = layout.reports / f"{run_id}.html"
            goal = "0.5" if streams <= 10 else "2"
            yield (f"report of {streams} streams, {attempts} attempts (goal < {goal} s)", f"{spent:.3f} s")
            yield (f"  its page / its journal ({sum(1 for _ in read_journal(path))} events)",
                   f"{page.stat().st_size / 1e6:.2f} MB / {path.stat().st_size / 1e6:.2f} MB")
            command = [sys.executable, str(home / "orchestrate.py"), "report", run_id]
            spent = median(lambda: timed(lambda: subprocess.run(command, check=True, capture_output=True,
                                                                cwd=root / "project")))
            yield f"  `orchestrate.py report` in a new process", f"{spent:.3f} s"
        yield from journal_figures(root)
        yield from spend_figures(layout, journal_path(layout.journals, SIZES[-1][2]))


def journal_figures(root: Path) -> Iterator[Tuple[str, str]]:
    folder = root / "journal-bench"

    def appends() -> float:
        path = journal_path(folder, "20260921T110000Z-aaaaaa")
        if path.exists():
            path.unlink()
        journal = Journal(path, "20260921T110000Z-aaaaaa")
        started = time.perf_counter()
        for n in range(APPENDS):
            journal.transition(f"stream-{n % 200:04d}", "ready", "starting", "")
        spent = time.perf_counter() - started
        journal.close()
        return spent / APPENDS

    yield "one journal event appended (a transition)", f"{median(appends) * 1e6:.1f} µs"
    path = journal_path(folder, "20260921T120000Z-bbbbbb")
    journal = Journal(path, "20260921T120000Z-bbbbbb")
    for n in range(READ_LINES // 5):  # a run's mix: three state changes to an attempt's start and end
        sid = f"stream-{n % 200:04d}"
        journal.transition(sid, "ready", "starting")
        journal.attempt_started(sid, 1, session_id="s" * 36)
        journal.transition(sid, "starting", "running")
        journal.attempt_ended(sid, 1, exit_code=0, signal=None, complete=True, cost_usd=0.12, turns=7,
                              input_tokens=52000, output_tokens=4100, session_id="s" * 36, result="Done." * 20)
        journal.transition(sid, "running", "merging")
    journal.close()

    def reads() -> float:
        return timed(lambda: sum(1 for _ in read_journal(path)))

    yield f"reading a journal of {READ_LINES // 1000}k events ({path.stat().st_size / 1e6:.0f} MB)", \
        f"{median(reads):.3f} s"

    def cost_reads() -> float:
        return timed(lambda: sum(1 for _ in read_journal(path, kinds={"attempt_ended"})))

    yield "  the same, only its attempt ends (what spend caps read)", f"{median(cost_reads):.3f} s"


def spend_figures(layout: Layout, big: Path) -> Iterator[Tuple[str, str]]:
    """A spend cap's start-up: the week's attempt costs read from 20 runs of 200 streams each."""
    for n in range(20):
        shutil.copyfile(big, journal_path(layout.journals, f"20260922T{n:02d}0000Z-cccccc"))
    now = journals.START + 86_400  # the hand-built runs' own clock: a day after they ran
    window = SpendWindow.load(layout.journals, now, "week")
    spent = median(lambda: timed(lambda: SpendWindow.load(layout.journals, now, "week")))
    yield f"spend cap: a week of 21 runs' costs loaded ({len(window.costs)} attempt ends)", f"{spent:.3f} s"


if __name__ == "__main__":
    print(f"runtime: {RUNTIME}")
    for label, figure in run():
        print(f"{label:58} {figure}")
