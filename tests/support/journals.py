"""Hand-built run journals, written through the real `Journal` on a fake clock: what the report tests,
the browser test and the report benchmark read.

`diamond` is the documented A -> (B, C) -> Z run with a failed attempt and its retry, the account's
usage limit pausing the run, and a merge conflict that parks a stream; `generated` is a large run
(any number of streams and attempts) for the size and speed figures.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import tests.runtime.runtime_import  # noqa: F401  (puts the runtime on sys.path)
from _orchestrate_kit.journal import Journal, journal_path  # noqa: E402

START = 1_790_000_000.0  # a fixed wall clock for the runs
DIAMOND_RUN = "20260921T120000Z-d1a300"


class FakeClock:
    """Wall and monotonic time moved by hand; the monotonic clock starts elsewhere, as a real one does."""

    def __init__(self, wall: float = START, mono: float = 5000.0):
        self.wall, self.mono = wall, mono

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds


def journal_on(folder: Path, run_id: str, clock: FakeClock) -> Journal:
    return Journal(journal_path(folder, run_id), run_id, clock=lambda: clock.wall, monotonic=lambda: clock.mono)


def plan(streams: Dict[str, Sequence[str]], names: Optional[Dict[str, str]] = None,
         critical: Sequence[str] = ()) -> dict:
    """The run_started plan of a graph given as stream -> dependencies."""
    level: Dict[str, int] = {}
    for sid in _topological(streams):
        level[sid] = 1 + max((level[d] for d in streams[sid]), default=-1)
    levels: Dict[int, List[str]] = {}
    for sid, n in level.items():
        levels.setdefault(n, []).append(sid)
    return {"streams": {sid: {"name": (names or {}).get(sid, sid), "dependencies": list(deps), "level": level[sid],
                              "state": "ready" if not deps else "waiting", "tasks": 2, "finished": 0}
                        for sid, deps in streams.items()},
            "levels": [sorted(levels[n]) for n in sorted(levels)], "critical_path": list(critical)}


def _topological(streams: Dict[str, Sequence[str]]) -> List[str]:
    done: List[str] = []
    while len(done) < len(streams):
        for sid in sorted(streams):
            if sid not in done and all(d in done for d in streams[sid]):
                done.append(sid)
    return done


SETTINGS = {"max_parallel": 0, "max_restarts": 10, "isolation": "worktree", "conflicts": "manual",
            "worker_program": "claude"}


def diamond(folder: Path, run_id: str = DIAMOND_RUN, names: Optional[Dict[str, str]] = None,
            results: Optional[Dict[str, str]] = None, pr_url: str = "https://github.com/acme/app/pull/7") -> Path:
    """A -> (B, C) -> Z: B's first attempt fails and is retried; C's worker hits the usage limit and
    continues its session after the reset; Z completes but conflicts when merged and is parked."""
    clock = FakeClock()
    j = journal_on(folder, run_id, clock)
    graph = {"Stream-A": [], "Stream-B": ["Stream-A"], "Stream-C": ["Stream-A"], "Stream-Z": ["Stream-B", "Stream-C"]}
    names = names or {"Stream-A": "Foundation", "Stream-B": "API Implementation", "Stream-C": "Frontend",
                      "Stream-Z": "Integration"}
    results = results or {}
    j.run_started(settings=SETTINGS, targets=None, tracker="mcp", isolation="worktree",
                  plan=plan(graph, names, ["Stream-A", "Stream-B", "Stream-Z"]), integration_branch="orchestrate/run")

    def attempt(sid, number, seconds, *, complete, cost, ending="exit", reason="", exit_code=0, session="",
                resume=False):
        j.transition(sid, "ready" if number == 1 else "backoff" if not resume else "rate_limited", "starting")
        j.attempt_started(sid, number, session_id=session, resume=resume)
        j.transition(sid, "starting", "running")
        clock.advance(seconds)
        j.attempt_ended(sid, number, exit_code=exit_code, signal=None, complete=complete, ending=ending,
                        reason=reason, cost_usd=cost, turns=int(cost * 10), input_tokens=int(cost * 40000),
                        output_tokens=int(cost * 3000), session_id=session,
                        result=results.get(sid, f"{sid}: all tasks done and committed.") if complete else "")

    def merge(sid, commit, conflict=False):
        j.transition(sid, "running", "merging")
        j.merge_started(sid, branch=f"stream/{sid}", into="orchestrate/run", commit="a1" * 20)
        clock.advance(2)
        if conflict:
            j.merge_conflict(sid, files=["src/app.py", "README.md"], reason="conflict in src/app.py, README.md")
            j.transition(sid, "merging", "merge_conflict", "conflict in src/app.py, README.md")
            return
        j.check_started(sid, "make test")
        clock.advance(3)
        j.check_passed(sid, 3.0)
        j.merged(sid, commit=commit, branch=f"stream/{sid}", into="orchestrate/run")
        j.transition(sid, "merging", "complete")

    attempt("Stream-A", 1, 60, complete=True, cost=0.42, session="11111111-1111-4111-8111-111111111111")
    merge("Stream-A", "c0ffee" + "0" * 34)
    for sid in ("Stream-B", "Stream-C"):
        j.transition(sid, "waiting", "ready")
    # B fails once, then completes; C hits the usage limit and resumes its session after the reset.
    j.transition("Stream-B", "ready", "starting")
    j.attempt_started("Stream-B", 1, session_id="22222222-2222-4222-8222-222222222222")
    j.transition("Stream-B", "starting", "running")
    j.transition("Stream-C", "ready", "starting")
    j.attempt_started("Stream-C", 1, session_id="33333333-3333-4333-8333-333333333333")
    j.transition("Stream-C", "starting", "running")
    clock.advance(30)
    j.attempt_ended("Stream-B", 1, exit_code=1, signal=None, complete=False, reason="worker exited with code 1 "
                    "with 0/2 tasks done; exit code 1: tests failed", cost_usd=0.2, turns=3, input_tokens=9000,
                    output_tokens=700, session_id="22222222-2222-4222-8222-222222222222")
    j.transition("Stream-B", "running", "backoff", "worker exited with code 1 with 0/2 tasks done")
    j.backoff("Stream-B", until=clock.wall + 5, failures=1)
    clock.advance(5)
    attempt("Stream-B", 2, 90, complete=True, cost=0.55, session="44444444-4444-4444-8444-444444444444")
    clock.advance(5)
    j.usage_limit("Stream-C", until=clock.wall + 120, message="Claude usage limit reached · resets 1pm (UTC)")
    j.attempt_ended("Stream-C", 1, exit_code=1, signal=None, complete=False, ending="usage_limit",
                    reason="Claude usage limit reached · resets 1pm (UTC)", cost_usd=0.1, turns=2,
                    session_id="33333333-3333-4333-8333-333333333333")
    j.transition("Stream-C", "running", "rate_limited", "Claude usage limit reached")
    merge("Stream-B", "beef" + "0" * 36)
    clock.advance(115)
    j.usage_limit_resumed("Stream-C")
    attempt("Stream-C", 1, 50, complete=True, cost=0.3, session="33333333-3333-4333-8333-333333333333", resume=True)
    merge("Stream-C", "cafe" + "0" * 36)
    j.transition("Stream-Z", "waiting", "ready")
    attempt("Stream-Z", 1, 40, complete=True, cost=0.25, session="55555555-5555-4555-8555-555555555555")
    j.pushed("Stream-Z", branch="stream/Stream-Z", remote="origin", commit="d00d" + "0" * 36)
    j.pr_opened("Stream-Z", url=pr_url, number=7)
    merge("Stream-Z", "", conflict=True)
    clock.advance(1)
    j.run_finished(exit_code=1, outcome="nothing more can progress", cost_usd=1.82,
                   states={"complete": 3, "merge_conflict": 1})
    j.close()
    return journal_path(folder, run_id)


def generated(folder: Path, run_id: str, streams: int, attempts: int, seed: int = 7, result_chars: int = 600) -> Path:
    """A large run: `streams` streams in levels of about 20, `attempts` attempts in all (failures and
    retries spread over the streams), each complete stream merged; results of `result_chars` characters."""
    rng = random.Random(seed)
    clock = FakeClock()
    j = journal_on(folder, run_id, clock)
    ids = [f"stream-{n:04d}" for n in range(streams)]
    graph = {sid: ([ids[rng.randrange(0, n - n % 20)]] if n >= 20 else []) for n, sid in enumerate(ids)}
    j.run_started(settings=SETTINGS, targets=None, tracker="tc", isolation="worktree",
                  plan=plan(graph, critical=ids[::40]))
    extra = attempts - streams
    for n, sid in enumerate(ids):
        tries = 1 + extra // streams + (1 if n < extra % streams else 0)
        j.transition(sid, "waiting", "ready")
        for number in range(1, tries + 1):
            last = number == tries
            j.transition(sid, "ready" if number == 1 else "backoff", "starting")
            j.attempt_started(sid, number, session_id=f"{n:08d}-0000-4000-8000-{number:012d}")
            j.transition(sid, "starting", "running")
            clock.advance(rng.uniform(5, 60))
            j.attempt_ended(sid, number, exit_code=0 if last else 1, signal=None, complete=last,
                            reason="" if last else "worker exited with code 1 with 1/3 tasks done",
                            cost_usd=round(rng.uniform(0.01, 0.9), 4), turns=rng.randint(1, 40),
                            input_tokens=rng.randint(1000, 90000), output_tokens=rng.randint(100, 9000),
                            result=("Done: " + "implemented and tested the change. " * 50)[:result_chars] if last else "")
            if not last:
                j.transition(sid, "running", "backoff", "worker exited with code 1")
                clock.advance(5)
        j.transition(sid, "running", "merging")
        j.merge_started(sid, branch=f"stream/{sid}", into="orchestrate/run")
        clock.advance(1)
        j.merged(sid, commit=f"{n:040x}", branch=f"stream/{sid}")
        j.transition(sid, "merging", "complete")
    j.run_finished(exit_code=0, outcome="all complete", cost_usd=0.0, states={"complete": streams})
    j.close()
    return journal_path(folder, run_id)


def hostile_texts(port: int) -> Dict[str, str]:
    """Text an attacker can put in task metadata or make an agent print, aimed at a receiver on `port`."""
    leak = f"http://127.0.0.1:{port}"
    return {
        "script": "<script>window.pwned=1;document.title='PWNED'</script>",
        "img": f'"><img src="{leak}/img" onerror="window.pwned=1">',
        "js": "javascript:window.pwned=1//",
        "svg": "<svg onload=window.pwned=1><a href=javascript:window.pwned=1>x</a>",
        "result": f"</div></pre><script>fetch('{leak}/fetch')</script><iframe src=\"{leak}/frame\"></iframe>",
        "style": f"<style>body{{background:url({leak}/css)}}</style><link rel=stylesheet href={leak}/link>",
        "bidi": "Stream\u202eevil\u2066 \x1b[31m\x00",
        "meta": f'<meta http-equiv="refresh" content="0;url={leak}/refresh">',
    }


def hostile(folder: Path, port: int, run_id: str = "20260921T140000Z-bad000") -> Path:
    """A run whose stream ids, names, results, reasons, branches and links are all hostile: one stream
    completes (with a `javascript:` pull request link), one fails, one is parked by a merge conflict."""
    texts = hostile_texts(port)
    clock = FakeClock()
    j = journal_on(folder, run_id, clock)
    done, failed, parked = texts["script"], texts["img"], texts["js"]
    graph = {done: [], failed: [done], parked: [done]}
    names = {done: texts["svg"], failed: texts["bidi"], parked: texts["meta"]}
    j.run_started(settings={**SETTINGS, "merge_check": texts["style"]}, targets=[done, failed, parked],
                  tracker=texts["script"], isolation="worktree", plan=plan(graph, names, [done, failed]),
                  integration_branch=texts["img"])
    for sid in graph:
        j.transition(sid, "ready", "starting")
        j.attempt_started(sid, 1, session_id=texts["script"], where=texts["img"])
        j.transition(sid, "starting", "running")
        clock.advance(20)
        ok = sid != failed
        j.attempt_ended(sid, 1, exit_code=0 if ok else 1, signal=None, complete=ok, reason=texts["style"],
                        cost_usd=0.1, turns=1, result=texts["result"] + texts["svg"], session_id=texts["js"])
    j.pushed(done, branch=texts["img"], remote=texts["js"], commit=texts["script"])
    j.pr_opened(done, url="javascript:window.pwned=1", number=1)
    j.merge_started(done, branch=texts["img"], into=texts["svg"])
    j.merged(done, commit=texts["script"], branch=texts["img"])
    j.transition(done, "merging", "complete")
    j.transition(failed, "running", "failed", texts["result"])
    j.pr_opened(parked, url=f'https://example.com/x" onmouseover="window.pwned=1', number=2)
    j.merge_conflict(parked, files=[texts["script"]], reason=texts["style"])
    j.transition(parked, "merging", "merge_conflict", texts["style"])
    j.usage_limit(failed, until=clock.wall + 5, message=texts["result"])
    j.run_finished(exit_code=1, outcome=texts["svg"], cost_usd=0.3, states={"complete": 1, "failed": 1})
    j.close()
    return journal_path(folder, run_id)
