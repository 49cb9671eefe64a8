"""The stream dependency graph and stream states: pure functions, no I/O.

Input is a mapping of stream id -> StreamRecord (from task_copilot_client) plus
the lifecycle rows (lifecycle.py) and the live workers (the executor's handles).
Output is one StreamView
per stream, the single source of truth for `orchestrate.py status`, the
scheduler and the dashboard. The states themselves live in lifecycle.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import AbstractSet, Container, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from .executor import Detail, Handle
from .lifecycle import (LIVE, NO_ROW, PASSIVE, UNMERGED, Life, Observed, Policy, StreamState, describe,
                        handed_back, transition)
from .trackers.snapshot import StreamRecord, percentage


@dataclass(frozen=True)
class GraphProblems:
    """Why streams cannot run: cycles, dependencies on unknown streams, unreadable task metadata."""

    cycles: Tuple[Tuple[str, ...], ...] = ()
    unknown: Tuple[Tuple[str, str], ...] = ()  # (stream, missing dependency)
    malformed: Tuple[Tuple[str, str], ...] = ()  # (stream, one of its tasks whose metadata is unusable, named)
    conflicts: Tuple[Tuple[str, str], ...] = ()  # (stream, why no worker can run it: its worker options)
    hints: Tuple[Tuple[str, str], ...] = ()  # (missing dependency, what it is: "did you mean ...", unreadable tasks)

    def reasons(self) -> Dict[str, str]:
        """stream id -> why it is invalid."""
        out: Dict[str, List[str]] = {}
        for cycle in self.cycles:
            text = "Circular dependency detected: " + " -> ".join(cycle + (cycle[0],))
            for sid in cycle:
                out.setdefault(sid, []).append(text)
        for sid, missing in self.unknown:
            out.setdefault(sid, []).append(self._unknown_text(missing))
        for sid, task in self.malformed:
            out.setdefault(sid, []).append(f"{task}; fix it in Task Copilot")
        for sid, text in self.conflicts:
            out.setdefault(sid, []).append(text)
        return {sid: "; ".join(texts) for sid, texts in out.items()}

    def messages(self, streams: Optional[Iterable[str]] = None) -> List[str]:
        """One line per problem; with `streams`, only the problems that involve them."""
        wanted = None if streams is None else set(streams)
        lines = ["Circular dependency detected: " + " -> ".join(c + (c[0],))
                 for c in self.cycles if wanted is None or wanted & set(c)]
        lines += [f"Stream {sid!r} {self._unknown_text(missing)}"
                  for sid, missing in self.unknown if wanted is None or sid in wanted]
        lines += [f"Stream {sid!r} cannot run until its task is fixed in Task Copilot: {task}"
                  for sid, task in self.malformed if wanted is None or sid in wanted]
        lines += [f"Stream {sid!r}: {text}" for sid, text in self.conflicts if wanted is None or sid in wanted]
        return lines

    def _unknown_text(self, missing: str) -> str:
        hint = dict(self.hints).get(missing)
        if hint and hint.startswith(UNREADABLE):
            return f"depends on stream {missing!r}, {hint}"
        return f"depends on unknown stream {missing!r}" + (f" ({hint})" if hint else "")


UNREADABLE = "whose only task(s) have metadata that cannot be read"


def check_graph(streams: Mapping[str, StreamRecord],
                unreadable: Mapping[str, Tuple[str, ...]] = {}) -> GraphProblems:  # noqa: B006 (never mutated)
    """Name every cycle (one per strongly connected component), unknown dependency and task with
    unusable metadata. `unreadable`: streams named only by tasks whose metadata cannot be read
    (stream -> those tasks, described), so that a dependency on one says so."""
    unknown: List[Tuple[str, str]] = []
    malformed: List[Tuple[str, str]] = []
    conflicts: List[Tuple[str, str]] = []
    edges: Dict[str, Sequence[str]] = {}
    for sid, rec in streams.items():  # one pass; the usual stream has known dependencies and nothing else
        edges[sid] = deps = rec.dependencies
        for dep in deps:
            if dep not in streams:
                unknown += [(sid, d) for d in deps if d not in streams]
                edges[sid] = [d for d in deps if d in streams]
                break
        if rec.bad_tasks:
            malformed += [(sid, task) for task in rec.bad_tasks]
        if rec.conflicts:
            conflicts += [(sid, text) for text in rec.conflicts]
    cyclic = [] if _acyclic(edges) else _cyclic_components(edges)  # the usual plan has no cycle: one cheap pass
    cycles = tuple(_cycle_in(component, edges) for component in cyclic)
    hints = tuple((missing, _hint(missing, streams, unreadable)) for missing in sorted({m for _s, m in unknown}))
    return GraphProblems(tuple(sorted(cycles)), tuple(unknown), tuple(malformed), tuple(conflicts),
                         tuple(h for h in hints if h[1]))


def _hint(missing: str, streams: Mapping[str, StreamRecord], unreadable: Mapping[str, Tuple[str, ...]]) -> str:
    """What an unknown dependency probably is: a stream whose tasks cannot be read, or a misspelling."""
    if missing in unreadable:
        tasks = unreadable[missing]
        return (f"{UNREADABLE} ({'; '.join(tasks[:3])}{'; ...' if len(tasks) > 3 else ''}); "
                "fix them in Task Copilot")
    close = close_matches(missing, streams, 1)
    return f"did you mean {close[0]!r}?" if close else ""


def close_matches(name: str, known: Iterable[str], n: int = 3) -> List[str]:
    """Known names `name` may be a misspelling of, closest first; a difference of case only comes first."""
    import difflib  # only for a name that is not known: the dashboard's frames need not load it

    known = list(known)
    by_case = {k.casefold(): k for k in known}
    same = [by_case[name.casefold()]] if name.casefold() in by_case and by_case[name.casefold()] != name else []
    close = difflib.get_close_matches(name.casefold(), list(by_case), n=n)
    return (same + [by_case[c] for c in close if by_case[c] not in same])[:n]


def _acyclic(edges: Mapping[str, Sequence[str]]) -> bool:
    """Whether the graph has no cycle: Kahn's algorithm, a fraction of Tarjan's cost on 10,000 streams."""
    pending = {node: len(deps) for node, deps in edges.items()}
    dependents: Dict[str, List[str]] = {}
    for node, deps in edges.items():
        for dep in deps:
            dependents.setdefault(dep, []).append(node)
    done = [node for node, count in pending.items() if count == 0]
    for node in done:  # grows while we walk it
        for child in dependents.get(node, ()):
            pending[child] -= 1
            if pending[child] == 0:
                done.append(child)
    return len(done) == len(pending)


def _cyclic_components(edges: Mapping[str, Sequence[str]]) -> List[List[str]]:
    """Tarjan's strongly connected components, iteratively (graphs may be deep)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    on_stack: set = set()
    stack: List[str] = []
    found: List[List[str]] = []
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(edges[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(edges[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in edges[node]:
                    found.append(sorted(component))
    return found


def _cycle_in(component: List[str], edges: Mapping[str, Sequence[str]]) -> Tuple[str, ...]:
    """One concrete cycle through the component's smallest member, for the message."""
    members = set(component)
    start = component[0]
    previous: Dict[str, str] = {}
    queue = [start]
    while queue:  # breadth-first search back to start gives a shortest cycle
        node = queue.pop(0)
        for dep in edges[node]:
            if dep not in members:
                continue
            if dep == start:
                path = [node]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                return tuple(reversed(path))
            if dep not in previous:
                previous[dep] = node
                queue.append(dep)
    return (start,)


def topological_order(streams: Mapping[str, StreamRecord], invalid: Iterable[str] = (),
                      dependents: Optional[Mapping[str, List[str]]] = None) -> List[str]:
    """Streams with every dependency before its dependents; invalid ones left out. `dependents`:
    `_dependents(streams, invalid)`, when the caller has it already."""
    skip = set(invalid)
    if dependents is None:
        dependents = _dependents(streams, skip)
    pending = {s: 0 for s in streams if s not in skip}
    for children in dependents.values():
        for child in children:
            pending[child] += 1
    order = sorted(s for s, n in pending.items() if n == 0)
    for node in order:  # order grows while we walk it
        for child in dependents.get(node, ()):
            pending[child] -= 1
            if pending[child] == 0:
                order.append(child)
    return order


def _dependents(streams: Mapping[str, StreamRecord], skip: Container[str]) -> Dict[str, List[str]]:
    """stream -> the streams that depend on it, in id order; a stream in `skip` is on neither side."""
    out: Dict[str, List[str]] = {}
    for sid in sorted(streams):
        if sid in skip:
            continue
        for dep in streams[sid].dependencies:
            if dep in streams and dep not in skip:
                out.setdefault(dep, []).append(sid)
    return out


def dependency_levels(streams: Mapping[str, StreamRecord], order: Sequence[str]) -> Dict[str, int]:
    """Level 0 has no dependencies; every other stream sits one below its deepest dependency."""
    level: Dict[str, int] = {}
    for sid in order:
        deepest = -1  # (a dependency outside `order`, invalid or unknown, does not count)
        for dep in streams[sid].dependencies:
            below = level.get(dep, -1)
            if below > deepest:
                deepest = below
        level[sid] = deepest + 1
    return level


def remaining_paths(streams: Mapping[str, StreamRecord], order: Sequence[str],
                    complete: Optional[AbstractSet[str]] = None,
                    dependents: Optional[Mapping[str, List[str]]] = None) -> Dict[str, Tuple[int, Optional[str]]]:
    """For each stream: incomplete streams on the longest chain from it to the end, and the next hop.
    `complete`: the streams the tracker shows complete; `dependents`: `_dependents` of the streams
    outside `order`; each when the caller has it already."""
    if complete is None:
        complete = {sid for sid in order if streams[sid].is_complete}
    if dependents is None:
        dependents = _dependents(streams, streams.keys() - set(order))
    best: Dict[str, Tuple[int, Optional[str]]] = {}
    for sid in reversed(order):
        own = 0 if sid in complete else 1
        tail, hop = 0, None
        for child in dependents.get(sid, ()):
            length = best[child][0]
            if length > tail:
                tail, hop = length, child
        best[sid] = (own + tail, hop)
    return best


def critical_path(streams: Mapping[str, StreamRecord], order: Sequence[str]) -> List[str]:
    """The longest chain of incomplete streams still to run."""
    paths = remaining_paths(streams, order)
    roots = [s for s in order if not streams[s].is_complete]
    if not roots:
        return []
    node: Optional[str] = min(roots, key=lambda s: (-paths[s][0], s))
    chain = []
    while node is not None:
        if not streams[node].is_complete:
            chain.append(node)
        node = paths[node][1]
    return chain


# ---------------------------------------------------------------- states


@dataclass
class StreamView:
    """Everything anyone shows or decides about one stream. (build_board passes the fields by position:
    a new field goes last, or there too.)"""

    stream_id: str
    stream_name: str
    state: StreamState  # what the lifecycle table says, after the graph was observed
    graph_state: StreamState  # what the tracker and the graph alone say: waiting, ready, complete, invalid
    dependencies: Tuple[str, ...]
    counts: Dict[str, int]
    total: int
    finished: int
    level: Optional[int]
    remaining_path: int
    waiting_on: Tuple[str, ...] = ()
    reason: str = ""
    where: str = ""  # where its live worker runs, for people ("pid 4242", a node)
    worker: Dict[str, Detail] = field(default_factory=dict)  # the executor's own facts about it (local: pid)
    attempts: int = 0
    started_at: Optional[float] = None
    retry_at: Optional[float] = None
    description: str = ""

    @property
    def percent(self) -> float:
        return percentage(self.finished, self.total)

    def describe(self) -> str:
        """The state as a short phrase: 'waiting on Stream-A', 'restarting in 12 s (attempt 3 of 11)'."""
        return self.description or self.state.value


@dataclass
class Board:
    """All stream views at one moment, the graph facts behind them, and the observed lifecycle rows."""

    views: Dict[str, StreamView]
    problems: GraphProblems
    order: List[str] = field(default_factory=list)
    rows: Dict[str, Life] = field(default_factory=dict)

    def in_state(self, *states: StreamState) -> List[StreamView]:
        return [v for v in self.views.values() if v.state in states]

    def all_complete(self) -> bool:
        return bool(self.views) and all(v.state is StreamState.COMPLETE for v in self.views.values())


def build_board(
    streams: Mapping[str, StreamRecord],
    rows: Mapping[str, Life],
    workers: Mapping[str, Handle] = {},  # noqa: B006 (never mutated)
    now: float = 0.0,
    policy: Policy = Policy(),
    unrunnable: Mapping[str, str] = {},  # noqa: B006 (never mutated); stream -> why no worker can run it
    unreadable: Mapping[str, Tuple[str, ...]] = {},  # noqa: B006 (never mutated); see check_graph
) -> Board:
    """Each stream's graph state, observed into its lifecycle row, as one view per stream."""
    problems = check_graph(streams, unreadable)
    if unrunnable:
        problems = replace(problems, conflicts=problems.conflicts + tuple(sorted(unrunnable.items())))
    complete = frozenset(sid for sid, rec in streams.items() if rec.is_complete)  # asked of every dependency
    invalid = {s: r for s, r in problems.reasons().items() if s not in complete}
    dependents = _dependents(streams, invalid)
    order = topological_order(streams, invalid, dependents)
    levels = dependency_levels(streams, order)
    # The streams left out of the order are the invalid ones (unless complete streams form a cycle):
    # then the dependents are the same for the remaining paths.
    left_out = len(streams) - len(order)
    paths = remaining_paths(streams, order, complete,
                            dependents if left_out == sum(1 for s in invalid if s in streams) else None)
    views, observed = {}, {}
    unmerged = _unmerged(streams, rows, now, policy)
    # graph state -> a row-less, worker-less stream's observed row, shown state and its row, and its
    # description when it waits on nothing and has no reason: most streams of a large board.
    fresh: Dict[StreamState, Tuple[Life, StreamState, Life, str]] = {}
    max_restarts = policy.max_restarts
    for sid, rec in streams.items():
        seen, waiting_on, reason = _graph_state_of(rec, complete, invalid.get(sid), unmerged, sid in complete)
        row, worker = rows.get(sid), workers.get(sid)
        if row is None and worker is None and seen in fresh:
            life, shown, shown_life, plain = fresh[seen]
        else:
            life = transition(row or NO_ROW, _OBSERVED[seen], now, policy)
            shown = _shown_state(life, seen, worker)
            shown_life = life if shown is life.state else Life(state=shown)
            plain = describe(shown_life, now, max_restarts)
            if row is None and worker is None:
                fresh[seen] = (life, shown, shown_life, plain)
        observed[sid] = life
        if reason and not waiting_on and shown in _REASON_SHOWN:
            description = f"{shown.value}: {reason}"
        else:
            description = describe(shown_life, now, max_restarts, waiting_on) if waiting_on else plain
        # Positional, in the order of StreamView's fields: 18 keyword arguments cost three times as
        # much, a fifth of the board at 10,000 streams.
        if worker is None:
            views[sid] = StreamView(sid, rec.stream_name, shown, seen, rec.dependencies, dict(rec.counts), rec.total,
                                    rec.finished, levels.get(sid), paths.get(sid, _NO_PATH)[0], waiting_on,
                                    reason or life.reason, "", {}, life.attempts, None, life.retry_at, description)
        else:
            views[sid] = StreamView(sid, rec.stream_name, shown, seen, rec.dependencies, dict(rec.counts), rec.total,
                                    rec.finished, levels.get(sid), paths.get(sid, _NO_PATH)[0], waiting_on,
                                    reason or life.reason, worker.where, dict(worker.details),
                                    max(life.attempts, worker.attempt), worker.started_at, life.retry_at, description)
    for sid, life in rows.items():  # streams gone from the tracker keep their rows
        observed.setdefault(sid, life)
    return Board(views, problems, order, observed)


def _unmerged(streams: Mapping[str, StreamRecord], rows: Mapping[str, Life], now: float,
              policy: Policy) -> frozenset:
    """Streams complete in the tracker whose work is not merged yet (worktree isolation only)."""
    if not policy.merge:
        return frozenset()
    return frozenset(sid for sid, rec in streams.items() if rec.is_complete and transition(
        rows.get(sid, NO_ROW), Observed(StreamState.COMPLETE), now, policy).state is not StreamState.COMPLETE)


def _shown_state(life: Life, seen: StreamState, worker: Optional[Handle]) -> StreamState:
    """What users see: the row's state, except that a stream the tracker shows complete is
    complete (once merged, with worktrees), and a row that claims a worker nobody can find
    shows what the graph says."""
    if life.state in UNMERGED or (handed_back(life) and (life.state not in LIVE or worker is not None)):
        return life.state  # done in the tracker, not merged yet
    if seen is StreamState.COMPLETE or (seen is StreamState.INVALID and life.state not in LIVE):
        return seen
    if life.state in LIVE and worker is None and life.state is not StreamState.STARTING:
        return seen  # (starting: its worktree is prepared before its worker exists)
    if worker is not None and life.state in PASSIVE:
        return StreamState.RUNNING  # a worker adopted before its row caught up
    return life.state


_OBSERVED = {state: Observed(state) for state in StreamState}  # one event per state (frozen: shared)
_REASON_SHOWN = (StreamState.INVALID, StreamState.WAITING)  # described by their reason, when they wait on nothing
_NO_PATH = (0, None)
PAUSED_TEXT = "paused in Task Copilot (its streams row); resume it there to run it"


def _graph_state_of(
    rec: StreamRecord,
    complete: AbstractSet[str],
    invalid_reason: Optional[str],
    unmerged: AbstractSet[str] = frozenset(),
    is_complete: Optional[bool] = None,
) -> Tuple[StreamState, Tuple[str, ...], str]:
    """What the tracker and the graph alone say of a stream: complete, invalid, waiting or ready.
    `complete`: the streams the tracker shows complete. A dependency complete in the tracker but
    still `unmerged` (worktrees) is waited on too. `is_complete`: whether this one is, when known."""
    if rec.is_complete if is_complete is None else is_complete:
        return StreamState.COMPLETE, (), ""
    if invalid_reason:
        return StreamState.INVALID, (), invalid_reason
    if rec.paused:
        return StreamState.WAITING, (), PAUSED_TEXT
    waiting_on = tuple([d for d in rec.dependencies if d not in complete or d in unmerged])
    if rec.task_waits:
        waiting_on += tuple([f"task {t}" for t in rec.task_waits])
    if waiting_on:
        return StreamState.WAITING, waiting_on, ""
    return StreamState.READY, (), ""


def start_order(board: Board, candidates: Iterable[str]) -> List[str]:
    """Ready streams, longest remaining path first (then most remaining tasks, then id)."""
    views = [board.views[s] for s in candidates]
    views.sort(key=lambda v: (-v.remaining_path, -(v.total - v.finished), v.stream_id))
    return [v.stream_id for v in views]
