"""CPU the supervisor spends reading agent events: AgentStream.feed over 20 chatty Claude workers.

A minute of output at 200 events/s in total (10 per worker), shaped like a real session: assistant
messages (text, or a tool call) carrying usage, tool results (`user` events, some of them tens of KB),
an occasional rate-limit event, a result per worker at the end. Lines are built on the real CLI's
sample events. The figure is CPU time over the minute it stands for, as % of one core (goal: well
under 2%); the cost of a line does not depend on the pace, so the minute is fed without sleeping.
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path
from typing import Iterator, List, Tuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "template" / ".claude" / "orchestrator"))

from _orchestrate_kit.agent import events as agent_events  # noqa: E402

WORKERS = 20
EVENTS_PER_SECOND = 200
SECONDS = 60
SAMPLE = REPO / "tests" / "support" / "claude-samples" / "not-logged-in.stream-json"


def session_lines(worker: int, count: int, rng: random.Random) -> List[str]:
    init, assistant, result = (json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines())
    session = f"00000000-0000-4000-8000-{worker:012d}"
    lines = [json.dumps(dict(init, session_id=session), separators=(",", ":"))]
    base = {k: v for k, v in assistant.items() if k != "error"}
    for n in range(count - 2):
        roll = rng.random()
        if roll < 0.45:
            content = ([{"type": "text", "text": "Looking at the failing test. " * rng.randint(2, 60)}]
                       if rng.random() < 0.4 else
                       [{"type": "tool_use", "id": f"toolu_{worker}_{n}", "name": "Bash",
                         "input": {"command": "pytest tests/unit -x -q", "description": "run the tests"}}])
            message = dict(base["message"], id=f"msg_{worker}_{n}", model="claude-sonnet-5", content=content,
                           usage=dict(base["message"]["usage"], input_tokens=rng.randint(1, 50),
                                      cache_read_input_tokens=rng.randint(10_000, 90_000),
                                      output_tokens=rng.randint(20, 800)))
            lines.append(json.dumps(dict(base, message=message, session_id=session), separators=(",", ":")))
        elif roll < 0.97:
            output = "line of tool output\n" * rng.choice((5, 50, 400, 1500))
            lines.append(json.dumps({"type": "user", "message": {"role": "user", "content": [
                {"tool_use_id": f"toolu_{worker}_{n}", "type": "tool_result", "content": output}]},
                "parent_tool_use_id": None, "session_id": session}, separators=(",", ":")))
        else:
            lines.append(json.dumps({"type": "rate_limit_event", "rate_limit_info": {
                "status": "allowed", "resetsAt": 1771390800, "rateLimitType": "five_hour"},
                "session_id": session}, separators=(",", ":")))
    lines.append(json.dumps(dict(result, is_error=False, result="Done.", total_cost_usd=1.23, num_turns=count // 2,
                                 session_id=session), separators=(",", ":")))
    return lines


def interleaved(rng: random.Random) -> Tuple[List[Tuple[int, str]], int]:
    per_worker = EVENTS_PER_SECOND * SECONDS // WORKERS
    sessions = [session_lines(w, per_worker, rng) for w in range(WORKERS)]
    out = [(w, sessions[w][i]) for i in range(per_worker) for w in range(WORKERS)]
    return out, sum(len(line) for _, line in out)


def feed_all(lines: List[Tuple[int, str]]) -> float:
    streams = [agent_events.AgentStream() for _ in range(WORKERS)]
    step = SECONDS / len(lines)
    started = time.process_time()
    for n, (worker, line) in enumerate(lines):
        streams[worker].feed(line, n * step)
    spent = time.process_time() - started
    assert all(s.cost_usd == 1.23 for s in streams)
    return spent


def run() -> Iterator[Tuple[str, str]]:
    lines, size = interleaved(random.Random(7))
    spent = sorted(feed_all(lines) for _ in range(5))[2]  # median of five
    yield f"{len(lines)} events from {WORKERS} workers ({size / 1e6:.0f} MB), CPU", f"{spent:.3f} s"
    yield f"CPU at {EVENTS_PER_SECOND} events/s, % of one core (goal well under 2%)", f"{100 * spent / SECONDS:.2f} %"
    yield "per event", f"{1e6 * spent / len(lines):.0f} µs"
    # Tool results are skipped unparsed when "type" comes first, as the CLI prints it; without that:
    parsed = [(w, line.replace('{"type":"user",', '{', 1).replace('"session_id"', '"type":"user","session_id"', 1)
               if line.startswith('{"type":"user"') else line) for w, line in lines]
    spent = sorted(feed_all(parsed) for _ in range(5))[2]
    yield "the same if every tool result were parsed, % of one core", f"{100 * spent / SECONDS:.2f} %"


if __name__ == "__main__":
    for label, figure in run():
        print(f"{label:58} {figure}")
