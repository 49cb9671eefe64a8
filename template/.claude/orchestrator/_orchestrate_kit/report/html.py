"""The run report as one self-contained HTML page: inline CSS and inline SVG, no script, nothing fetched.

The page works offline and from a mail attachment: no fonts, scripts or images from anywhere, and
a Content-Security-Policy that forbids scripts, plugins, frames, forms and every fetch (its one
style block is allowed by its hash, so even an injected style would not apply). Every text that
came from the tracker or an agent (stream ids and names, results, reasons, log lines, commit ids)
is escaped; control, bidirectional-override and unpaired surrogate characters become U+FFFD. A
link is made only of an `https://` URL of printable ASCII; anything else is shown as text.
Element ids are numbers, never names. Details sit in `<details>` elements, which open without a
script. Standard library only, Python 3.9+.
"""

from __future__ import annotations

import base64
import hashlib
import html
import math
import re
import time
from typing import Dict, List, Optional, Tuple

from ..status import format_duration
from .model import SHOWN_RESULT, RunReport, Span, StreamReport

_UNSAFE_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
                           "\u2028\u2029\ud800-\udfff]")
_SAFE_URL = re.compile(r"https://[A-Za-z0-9.-]+(?::[0-9]{1,5})?(?:[/?#][!#-&(-;=?-\[\]-_a-z~]*)?")
_CLASS = re.compile(r"[a-z_]{1,40}")

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
main{max-width:1180px;margin:0 auto;padding:16px 24px 48px}
h1{font-size:22px;margin:8px 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d6dae1;padding-bottom:4px}
h3{font-size:15px;margin:16px 0 4px}
.outcome{font-size:15px;font-weight:600;padding:6px 10px;border-radius:6px;display:inline-block}
.outcome.ok{background:#dff3e4;color:#0f5a24}.outcome.bad{background:#fde2e1;color:#8a1c16}.outcome.open{background:#e6ecf7;color:#23406e}
table{border-collapse:collapse;margin:6px 0;background:#fff}th,td{border:1px solid #dde1e7;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#eef0f4;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}
dl.settings{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;margin:8px 0}dl.settings dt{color:#5a6272}
dl.settings dd{margin:0;word-break:break-all}
pre{background:#1d2330;color:#e8eaf0;padding:8px 10px;border-radius:6px;overflow-x:auto;white-space:pre-wrap;word-break:break-all;font-size:12px}
.result{white-space:pre-wrap;background:#fff;border-left:3px solid #7a8bb0;padding:6px 10px;margin:6px 0}
code{background:#eef0f4;padding:1px 4px;border-radius:3px;word-break:break-all}
details{background:#fff;border:1px solid #dde1e7;border-radius:6px;margin:6px 0;padding:4px 10px}
summary{cursor:pointer;font-weight:600}
.scroll{overflow-x:auto;background:#fff;border:1px solid #dde1e7;border-radius:6px;padding:6px}
.failure{background:#fff;border:1px solid #f0b8b4;border-left:4px solid #c8321f;border-radius:6px;padding:4px 12px;margin:10px 0}
.muted{color:#5a6272}.legend span{display:inline-block;margin-right:14px}
.key{display:inline-block;width:12px;height:12px;border-radius:2px;vertical-align:-1px;margin-right:4px}
svg text{font:11px system-ui,sans-serif;fill:#1d2330}
svg .edge{fill:none;stroke:#9aa3b2;stroke-width:1.2}
svg .node rect{stroke:#5a6272;stroke-width:1;rx:4}svg .node.cp rect{stroke:#1d2330;stroke-width:2.5}
.st-complete{fill:#bfe6c8;background:#bfe6c8}.st-failed{fill:#f6b8b2;background:#f6b8b2}
.st-merge_conflict,.st-check_failed{fill:#f9d19c;background:#f9d19c}.st-held{fill:#d5d9e0;background:#d5d9e0}
.st-running,.st-starting,.st-stopping,.st-merging{fill:#b9d3f5;background:#b9d3f5}
.st-waiting,.st-ready{fill:#eceef2;background:#eceef2}.st-backoff{fill:#f3e3a4;background:#f3e3a4}
.st-rate_limited{fill:#f5e08a;background:#f5e08a}.st-invalid{fill:#d9a3c9;background:#d9a3c9}.st-other{fill:#fff;background:#fff}
svg .lane{fill:#fff}svg .lane.alt{fill:#f4f5f8}svg .lane.ran{fill:#fff4d6}
svg .axis{stroke:#c5cad3;stroke-width:1}svg .pause{fill:#f5c542;fill-opacity:.25}
svg .span{stroke:#1d2330;stroke-width:.4}
svg .attempt.o-complete{fill:#3e9b57}svg .attempt.o-failed{fill:#d2452f}svg .attempt.o-running{fill:#4a7fd1}
svg .attempt.o-paused{fill:#e0a31d}svg .attempt.o-restarted,svg .attempt.o-stopped{fill:#8d96a6}
svg .attempt.o-configuration_error,svg .attempt.o-budget_spent{fill:#8a1c16}
svg .backoff{fill:#f3e3a4}svg .usage_limit{fill:#f5c542}svg .parked{fill:#f9d19c}
svg .merge{fill:#6b5bd2}svg .merge.o-conflict{fill:#e07b1d}svg .check{fill:#27a3a3}svg .check.o-failed,svg .check.o-timed_out{fill:#b3261e}
svg .review{fill:#b05fc9}svg .review.o-rejected{fill:#7a1f8f}
.k-complete{background:#3e9b57}.k-failed{background:#d2452f}.k-paused{background:#e0a31d}.k-backoff{background:#f3e3a4}
.k-merge{background:#6b5bd2}.k-check{background:#27a3a3}.k-review{background:#b05fc9}.k-parked{background:#f9d19c}
.k-pause{background:#f5c54266;border:1px solid #e0a31d}.k-ran{background:#fff4d6;border:1px solid #e3c36d}
"""
_STYLE_HASH = base64.b64encode(hashlib.sha256(STYLE.encode("utf-8")).digest()).decode("ascii")
CSP = (f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; script-src 'none'; img-src 'none'; font-src 'none'; "
       "connect-src 'none'; object-src 'none'; frame-src 'none'; base-uri 'none'; form-action 'none'")

LANE_HEIGHT, LABEL_WIDTH, CHART_WIDTH, AXIS_HEIGHT = 18, 210, 900, 22
BOX_WIDTH, BOX_HEIGHT, COLUMN_GAP, ROW_GAP, COLUMN_ROWS = 170, 28, 46, 10, 25


def e(text: object) -> str:
    """Any text made inert for HTML (elements and attribute values alike)."""
    return html.escape(_UNSAFE_CHARS.sub("\ufffd", str(text)), quote=True)


def link(url: str) -> str:
    """An https link, or the URL as plain text when it is anything else."""
    if url.isascii() and url.isprintable() and _SAFE_URL.fullmatch(url):
        return f'<a href="{e(url)}" rel="noreferrer noopener">{e(url)}</a>'
    return f"<code>{e(url)}</code>" if url else ""


def state_class(state: str) -> str:
    return "st-" + (state if _CLASS.fullmatch(state or "") else "other")


def _class(word: str) -> str:
    word = word.replace(" ", "_")
    return word if _CLASS.fullmatch(word) else "other"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _usd(amount: float) -> str:
    return f"{amount:.2f}" if amount >= 0.01 or amount == 0 else f"{amount:.4f}"


def _when(seconds: Optional[float]) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(seconds)) if seconds else "unknown"


def render_html(report: RunReport, generated_at: Optional[float] = None) -> str:
    """The whole page."""
    title = f"Run {report.run_id}: {report.outcome or ('finished' if report.finished else 'not finished')}"
    parts = [
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{e(CSP)}">',
        '<meta name="referrer" content="no-referrer"><meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(title)}</title><style>{STYLE}</style></head><body><main>",
        _header(report), _totals(report), _graph(report), _timeline(report), _failures(report), _streams(report),
        _footer(report, generated_at),
        "</main></body></html>\n",
    ]
    return "".join(parts)


# ---------------------------------------------------------------- sections


def _header(report: RunReport) -> str:
    if not report.finished:
        outcome, kind = "not finished (still running, or its orchestrator was stopped)", "open"
    else:
        outcome = f"{report.outcome or 'finished'} · exit {report.exit_code}"
        kind = "ok" if report.exit_code == 0 else "bad"
    facts = [f"started {_when(report.started_at)}", f"ran {format_duration(report.duration_s)}",
             f"{len(report.streams)} stream(s)", f"{_usd(report.totals.cost_usd)} USD"]
    if report.resumes:
        facts.append(f"continued {report.resumes} time(s) after its orchestrator stopped")
    settings = {"tracker": report.tracker, "isolation": report.isolation,
                "integration branch": report.integration_branch,
                "targets": ", ".join(report.targets) if report.targets is not None else "every stream"}
    settings.update({k: str(v) for k, v in report.settings.items()})
    rows = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in settings.items() if v not in ("", "None"))
    cap = ""
    if report.spend_cap:
        cap = (f'<p class="outcome bad">Spend cap reached: {e(report.spend_cap.get("spent_usd"))} of '
               f'{e(report.spend_cap.get("cap_usd"))} USD in the last {e(report.spend_cap.get("period"))}; '
               "no new worker started after it.</p>")
    return (f"<header><h1>Run {e(report.run_id)}</h1><p class=\"outcome {kind}\" id=\"outcome\">{e(outcome)}</p>"
            f"<p class=\"muted\">{e(' · '.join(facts))}</p>{cap}"
            f'<details><summary>Settings</summary><dl class="settings">{rows}</dl></details></header>')


def _totals(report: RunReport) -> str:
    t = report.totals
    cells = [("cost (USD)", _usd(t.cost_usd)), ("turns", str(t.turns)), ("input tokens", f"{t.input_tokens:,}"),
             ("output tokens", f"{t.output_tokens:,}"), ("attempts", str(t.attempts)),
             ("failed attempts", str(t.failed_attempts)), ("running", format_duration(t.running_s)),
             ("waiting", format_duration(t.waiting_s)), ("parked", format_duration(t.parked_s))]
    head = "".join(f"<th>{e(k)}</th>" for k, _ in cells)
    body = "".join(f'<td class="n">{e(v)}</td>' for _, v in cells)
    return (f'<section id="totals"><h2>Totals</h2><table><tr>{head}</tr><tr>{body}</tr></table>'
            '<p class="muted">Time is summed over streams: running (a worker or a merge busy), waiting (on '
            "dependencies, a back-off or the usage limit), parked (stopped by you, a merge conflict, a failed "
            "check).</p></section>")


def _graph(report: RunReport) -> str:
    positions, width, height = _graph_layout(report)
    by_id = {s.stream_id: s for s in report.streams}
    edges, nodes = [], []
    for stream in report.streams:
        x, y = positions[stream.stream_id]
        for dep in stream.dependencies:
            if dep in positions:
                x0, y0 = positions[dep]
                sx, sy, ex, ey = x0 + BOX_WIDTH, y0 + BOX_HEIGHT / 2, x, y + BOX_HEIGHT / 2
                mid = (sx + ex) / 2
                edges.append(f'<path class="edge" d="M{sx:.0f},{sy:.0f} C{mid:.0f},{sy:.0f} {mid:.0f},{ey:.0f} '
                             f'{ex:.0f},{ey:.0f}"/>')
        cp = " cp" if stream.critical_planned else ""
        tip = f"{stream.stream_id} ({stream.name}): {stream.final_state}" if stream.name != stream.stream_id \
            else f"{stream.stream_id}: {stream.final_state}"
        nodes.append(f'<g class="node{cp}"><title>{e(tip)}</title><rect class="{state_class(stream.final_state)}" '
                     f'x="{x}" y="{y}" width="{BOX_WIDTH}" height="{BOX_HEIGHT}"/>'
                     f'<text x="{x + 6}" y="{y + 18}">{e(_cut(stream.stream_id, 24))}</text></g>')
    missing = [d for s in report.streams for d in s.dependencies if d not in by_id]
    note = (f'<p class="muted">Not part of this run: {e(", ".join(sorted(set(missing))))}</p>' if missing else "")
    legend = "".join(f'<span><i class="key {state_class(s)}"></i>{e(s.replace("_", " "))}</span>'
                     for s in sorted({s.final_state for s in report.streams}))
    return (f'<section id="graph"><h2>Dependency graph</h2><p class="muted">Levels from left to right; each '
            "stream in its final state; a thick border marks the critical path as planned.</p>"
            f'<div class="scroll"><svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'role="img" aria-label="dependency graph">{"".join(edges)}{"".join(nodes)}</svg></div>'
            f'<p class="legend">{legend}</p>{note}</section>')


def _graph_layout(report: RunReport) -> Tuple[Dict[str, Tuple[int, int]], int, int]:
    """Boxes in columns by level (a level of more than COLUMN_ROWS streams takes several columns);
    streams the plan gave no level go in a last column."""
    columns: List[List[str]] = []
    levels: Dict[Optional[int], List[str]] = {}
    for stream in report.streams:
        levels.setdefault(stream.level, []).append(stream.stream_id)
    for level in sorted((k for k in levels if k is not None)) + ([None] if None in levels else []):
        ids = levels[level]
        columns += [ids[i:i + COLUMN_ROWS] for i in range(0, len(ids), COLUMN_ROWS)]
    positions = {}
    for col, ids in enumerate(columns):
        for row, sid in enumerate(ids):
            positions[sid] = (10 + col * (BOX_WIDTH + COLUMN_GAP), 10 + row * (BOX_HEIGHT + ROW_GAP))
    rows = max((len(c) for c in columns), default=0)
    return positions, 20 + max(len(columns), 1) * (BOX_WIDTH + COLUMN_GAP), 20 + max(rows, 1) * (BOX_HEIGHT + ROW_GAP)


def _timeline(report: RunReport) -> str:
    duration = max(report.duration_s, 1.0)
    scale = CHART_WIDTH / duration
    height = AXIS_HEIGHT + len(report.streams) * LANE_HEIGHT + 4
    width = LABEL_WIDTH + CHART_WIDTH + 10
    parts = [_axis(duration, scale, height)]
    for index, stream in enumerate(report.streams):
        y = AXIS_HEIGHT + index * LANE_HEIGHT
        lane = "lane ran" if stream.critical_ran else "lane alt" if index % 2 else "lane"
        marker = "◆ " if stream.critical_planned else ""
        parts.append(f'<rect class="{lane}" x="0" y="{y}" width="{width}" height="{LANE_HEIGHT}"/>'
                     f'<text x="4" y="{y + 13}"><title>{e(stream.stream_id)}</title>'
                     f"{e(marker + _cut(stream.stream_id, 30))}</text>")
        parts += [_bar(stream, span, y, scale) for span in stream.spans]
    for pause in report.pauses:
        x = LABEL_WIDTH + pause.start * scale
        parts.append(f'<rect class="pause" x="{x:.1f}" y="{AXIS_HEIGHT}" width="{max((pause.end - pause.start) * scale, 1):.1f}" '
                     f'height="{height - AXIS_HEIGHT}"><title>{e(_span_text("the account", pause))}</title></rect>')
    planned = " → ".join(report.critical_path_planned) or "none recorded"
    ran = " → ".join(report.critical_path_ran) or "no stream completed"
    keys = [("complete", "attempt that completed its stream"), ("failed", "failed attempt"),
            ("paused", "attempt ended by the usage limit"), ("backoff", "back-off"), ("pause", "usage limit (every stream)"),
            ("merge", "merge"), ("check", "merge check"), ("review", "review"), ("parked", "parked"),
            ("ran", "on the critical path as it ran")]
    legend = "".join(f'<span><i class="key k-{k}"></i>{e(text)}</span>' for k, text in keys)
    return (f'<section id="timeline"><h2>Timeline</h2><p class="legend">{legend}</p>'
            f'<p>Critical path as planned (◆): <span id="cp-planned">{e(planned)}</span><br>As it ran: '
            f'<span id="cp-ran">{e(ran)}</span></p>'
            f'<div class="scroll"><svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
            f'aria-label="timeline">{"".join(parts)}</svg></div></section>')


def _axis(duration: float, scale: float, height: int) -> str:
    step = _tick_step(duration)
    ticks, t = [], 0.0
    while t <= duration + 1e-9:
        x = LABEL_WIDTH + t * scale
        label = (f'<text x="{x + 2:.1f}" y="{AXIS_HEIGHT - 8}">{e(format_duration(t))}</text>'
                 if x < LABEL_WIDTH + CHART_WIDTH - 30 else "")  # no label cut off at the right edge
        ticks.append(f'<line class="axis" x1="{x:.1f}" y1="{AXIS_HEIGHT - 4}" x2="{x:.1f}" y2="{height}"/>{label}')
        t += step
    return "".join(ticks)


def _tick_step(duration: float) -> float:
    """About eight ticks at 1, 2 or 5 times a power of ten seconds (or of minutes and hours above a minute)."""
    raw = duration / 8
    for unit in (3600.0, 60.0, 1.0):
        if raw >= unit or unit == 1.0:
            base = raw / unit
            power = 10 ** math.floor(math.log10(base)) if base > 0 else 1
            for factor in (1, 2, 5, 10):
                if factor * power >= base:
                    return max(factor * power * unit, 1.0)
    return max(raw, 1.0)  # pragma: no cover - the loop always returns


def _bar(stream: StreamReport, span: Span, y: int, scale: float) -> str:
    x = LABEL_WIDTH + span.start * scale
    width = max((span.end - span.start) * scale, 1.5)
    top, bar = (y + 2, LANE_HEIGHT - 4) if span.kind == "attempt" else (y + 5, LANE_HEIGHT - 10)
    return (f'<rect class="span {_class(span.kind)} o-{_class(span.outcome)}" x="{x:.1f}" y="{top}" '
            f'width="{width:.1f}" height="{bar}"><title>{e(_span_text(stream.stream_id, span))}</title></rect>')


def _span_text(who: str, span: Span) -> str:
    outcome = f", {span.outcome}" if span.outcome else ""
    return f"{who}: {span.label} at {format_duration(span.start)} for {format_duration(span.end - span.start)}{outcome}"


def _failures(report: RunReport) -> str:
    if not report.failures:
        return '<section id="failures"><h2>Failures</h2><p>None: every stream of the run completed or is still to run.</p></section>'
    items = []
    for failure in report.failures:
        tail = "\n".join(_cut(line, 500) for line in failure.log_tail)
        items.append(f'<article class="failure"><h3>{e(failure.stream_id)} <span class="muted">'
                     f"({e(failure.state.replace('_', ' '))})</span></h3>"
                     f"<p>{e(failure.reason or 'no reason was recorded')}</p>"
                     f"<p>Next: {_inline_code(failure.next_step)}</p>"
                     + (f"<p class=\"muted\">Last lines of its log:</p><pre>{e(tail)}</pre>" if tail else "")
                     + "</article>")
    return f'<section id="failures"><h2>Failures</h2>{"".join(items)}</section>'


def _inline_code(text: str) -> str:
    """`backticked` parts as code, everything escaped."""
    pieces = text.split("`")
    return "".join(f"<code>{e(p)}</code>" if i % 2 else e(p) for i, p in enumerate(pieces))


def _streams(report: RunReport) -> str:
    head = ("<tr><th>stream</th><th>name</th><th>level</th><th>state</th><th>attempts</th><th>cost (USD)</th>"
            "<th>turns</th><th>tokens in / out</th><th>running</th><th>waiting</th><th>parked</th></tr>")
    rows, details = [], []
    for index, s in enumerate(report.streams):
        rows.append(f'<tr><td><a href="#s{index}">{e(s.stream_id)}</a></td><td>{e(s.name)}</td>'
                    f'<td class="n">{e("" if s.level is None else s.level)}</td>'
                    f'<td><i class="key {state_class(s.final_state)}"></i>{e(s.final_state.replace("_", " "))}</td>'
                    f'<td class="n">{len(s.attempts)}</td><td class="n">{_usd(s.cost_usd)}</td><td class="n">{s.turns}</td>'
                    f'<td class="n">{s.input_tokens:,} / {s.output_tokens:,}</td>'
                    f'<td class="n">{format_duration(s.running_s)}</td><td class="n">{format_duration(s.waiting_s)}</td>'
                    f'<td class="n">{format_duration(s.parked_s)}</td></tr>')
        details.append(_stream_details(index, s))
    t = report.totals
    rows.append(f'<tr id="total-row"><th>total</th><th></th><th></th><th></th><td class="n">{t.attempts}</td>'
                f'<td class="n">{_usd(t.cost_usd)}</td><td class="n">{t.turns}</td>'
                f'<td class="n">{t.input_tokens:,} / {t.output_tokens:,}</td><td class="n">{format_duration(t.running_s)}</td>'
                f'<td class="n">{format_duration(t.waiting_s)}</td><td class="n">{format_duration(t.parked_s)}</td></tr>')
    return (f'<section id="streams"><h2>Streams</h2><div class="scroll"><table>{head}{"".join(rows)}</table></div>'
            f'<h2>What each stream did</h2>{"".join(details)}</section>')


def _stream_details(index: int, s: StreamReport) -> str:
    facts = []
    if s.branch:
        facts.append(f"branch <code>{e(s.branch)}</code>")
    if s.merge_commit:
        facts.append(f"merged as <code>{e(s.merge_commit)}</code>")
    if s.pr_url:
        facts.append(f"pull request {link(s.pr_url)}")
    if s.dependencies:
        facts.append("depends on " + ", ".join(f"<code>{e(d)}</code>" for d in s.dependencies))
    result = (f'<p class="muted">Its worker\'s final result:</p><div class="result">{e(_cut(s.result, SHOWN_RESULT))}</div>'
              if s.result else '<p class="muted">No final result was reported.</p>')
    attempts = "".join(
        f'<tr class="attempt"><td class="n">{a.number}</td><td class="n">{format_duration(a.started)}</td>'
        f'<td class="n">{format_duration((a.ended if a.ended is not None else a.started) - a.started)}</td>'
        f"<td>{e(a.outcome)}</td><td>{e(_exit_text(a.exit_code, a.signal))}</td><td class=\"n\">{_usd(a.cost_usd)}</td>"
        f'<td class="n">{a.turns}</td><td class="n">{a.input_tokens:,} / {a.output_tokens:,}</td>'
        f"<td><code>{e(a.session_id)}</code></td><td>{e(a.reason)}</td></tr>" for a in s.attempts)
    table = ("<table><tr><th>#</th><th>at</th><th>for</th><th>outcome</th><th>exit</th><th>cost</th><th>turns</th>"
             f"<th>tokens in / out</th><th>session</th><th>reason</th></tr>{attempts}</table>" if s.attempts
             else '<p class="muted">No worker ran in this run.</p>')
    name = f" <span class=\"muted\">{e(s.name)}</span>" if s.name != s.stream_id else ""
    return (f'<details id="s{index}"><summary>{e(s.stream_id)}{name} · {e(s.final_state.replace("_", " "))}</summary>'
            f"<p>{' · '.join(facts)}</p>{result}{table}</details>")


def _exit_text(code: Optional[int], signal: Optional[int]) -> str:
    if signal:
        return f"signal {signal}"
    return "" if code is None else f"code {code}"


def _footer(report: RunReport, generated_at: Optional[float]) -> str:
    warnings = "".join(f"<li>{e(w)}</li>" for w in report.warnings)
    when = f" on {_when(generated_at)}" if generated_at else ""
    return (f'<footer><p class="muted">Written by orchestrate-kit{e(when)} from the run\'s journal.</p>'
            + (f"<ul class=\"muted\">{warnings}</ul>" if warnings else "") + "</footer>")
