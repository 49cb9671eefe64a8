"""The run report: from a journal to a RunReport (pure), its JSON and its HTML page; `report` and `history`."""

import json
import re
from dataclasses import asdict
from html.parser import HTMLParser
from pathlib import Path

import pytest

import tests.runtime.runtime_import  # noqa: F401  (puts the runtime on sys.path)
from _orchestrate_kit import cli as orchestrate  # noqa: E402
from _orchestrate_kit.journal import journal_path, read_journal  # noqa: E402
from _orchestrate_kit.report import build_report, render_html, render_json, write_report  # noqa: E402
from _orchestrate_kit.report import html as page  # noqa: E402
from _orchestrate_kit.settings import Layout  # noqa: E402
from tests.support import journals
from tests.support.journals import DIAMOND_RUN, FakeClock, journal_on

LATER_RUN = "20260922T090000Z-e0e0e0"


@pytest.fixture
def layout(tmp_path):
    home = tmp_path / "project" / ".claude" / "orchestrator"
    home.mkdir(parents=True)
    return Layout(home, tmp_path / "state")


def diamond_report(layout, **kwargs):
    path = journals.diamond(layout.journals)
    return build_report(read_journal(path), DIAMOND_RUN, **kwargs)


# ---------------------------------------------------------------- the data


def test_the_diamond_s_streams_attempts_costs_and_final_states(layout):
    report = diamond_report(layout)
    assert [s.stream_id for s in report.streams] == ["Stream-A", "Stream-B", "Stream-C", "Stream-Z"]
    streams = {s.stream_id: s for s in report.streams}
    assert {sid: s.final_state for sid, s in streams.items()} == {
        "Stream-A": "complete", "Stream-B": "complete", "Stream-C": "complete", "Stream-Z": "merge_conflict"}
    assert [a.outcome for a in streams["Stream-B"].attempts] == ["failed", "complete"]
    assert "tests failed" in streams["Stream-B"].attempts[0].reason
    assert [a.outcome for a in streams["Stream-C"].attempts] == ["paused", "complete"]
    assert streams["Stream-C"].attempts[1].resumed_session  # it continued its session after the limit
    assert streams["Stream-B"].cost_usd == pytest.approx(0.75) and streams["Stream-B"].turns == 8
    assert report.totals.cost_usd == pytest.approx(1.82) and report.totals.attempts == 6
    assert report.totals.failed_attempts == 1 and report.totals.turns == 19
    assert report.totals.input_tokens == sum(s.input_tokens for s in report.streams) > 0
    assert (report.finished, report.exit_code, report.outcome) == (True, 1, "nothing more can progress")
    assert report.levels == [["Stream-A"], ["Stream-B", "Stream-C"], ["Stream-Z"]]
    assert streams["Stream-Z"].name == "Integration" and streams["Stream-Z"].dependencies == ["Stream-B", "Stream-C"]


def test_what_each_stream_accomplished_and_every_failure_with_its_next_step(layout):
    streams = {s.stream_id: s for s in diamond_report(layout).streams}
    a, z = streams["Stream-A"], streams["Stream-Z"]
    assert a.result == "Stream-A: all tasks done and committed."
    assert (a.branch, a.merge_commit) == ("stream/Stream-A", "c0ffee" + "0" * 34)
    assert z.pr_url == "https://github.com/acme/app/pull/7" and z.merge_commit == ""
    (failure,) = diamond_report(layout, log_tails={"Stream-Z": ["last line"]}).failures
    assert (failure.stream_id, failure.state, failure.reason) == (
        "Stream-Z", "merge_conflict", "conflict in src/app.py, README.md")
    assert "`orchestrate.py start Stream-Z`" in failure.next_step and "stream/Stream-Z" in failure.next_step
    assert failure.log_tail == ["last line"]


def test_the_timeline_spans_pauses_and_the_time_each_stream_spent_running_waiting_and_parked(layout):
    report = diamond_report(layout)
    streams = {s.stream_id: s for s in report.streams}
    b, c, z = streams["Stream-B"], streams["Stream-C"], streams["Stream-Z"]
    assert [(s.kind, s.start, s.end, s.outcome) for s in b.spans] == [
        ("attempt", 65, 95, "failed"), ("backoff", 95, 100, "backoff"), ("attempt", 100, 190, "complete"),
        ("merge", 195, 200, "merged"), ("check", 197, 200, "passed")]
    assert (b.running_s, b.waiting_s, b.parked_s) == (130, 70, 0)  # waited on A 65 s, backed off 5 s
    assert any(s.kind == "usage_limit" and (s.start, s.end) == (195, 315) for s in c.spans)
    assert [(p.start, p.end) for p in report.pauses] == [(195, 315)]  # the account's limit, every stream
    assert [s.kind for s in z.spans] == ["attempt", "merge", "parked"] and z.parked_s == 1
    assert report.duration_s == 413
    assert report.totals.running_s == sum(s.running_s for s in report.streams)


def test_the_critical_path_as_planned_and_as_it_ran(layout):
    report = diamond_report(layout)
    assert report.critical_path_planned == ["Stream-A", "Stream-B", "Stream-Z"]
    # C was held up by the usage limit and finished after B: the run's length went through C.
    assert report.critical_path_ran == ["Stream-A", "Stream-C", "Stream-Z"]
    assert [s.stream_id for s in report.streams if s.critical_ran] == ["Stream-A", "Stream-C", "Stream-Z"]


def test_the_saved_table_s_final_states_win_over_the_journal(layout):
    report = diamond_report(layout, final_states={"Stream-Z": "complete"})
    assert {s.stream_id: s.final_state for s in report.streams}["Stream-Z"] == "complete"
    assert report.failures == []


def test_a_run_continued_after_its_orchestrator_was_killed_reads_as_one_run(tmp_path):
    """The new orchestrator's monotonic clock starts elsewhere: the report re-anchors on run_started."""
    run = "20260921T150000Z-c0c0c0"
    clock = FakeClock()
    first = journal_on(tmp_path, run, clock)
    first.run_started(settings={}, targets=None, tracker="tc", isolation="none",
                      plan=journals.plan({"A": [], "B": ["A"]}))
    first.transition("A", "ready", "running")
    first.attempt_started("A", 1)
    clock.advance(100)  # ... and the orchestrator is SIGKILLed; its worker runs on
    clock.wall += 60
    clock.mono = 7.0  # a new process
    second = journal_on(tmp_path, run, clock)
    second.run_started(settings={}, targets=None, tracker="tc", isolation="none",
                       plan=journals.plan({"A": [], "B": ["A"]}), resumed=True)
    clock.advance(10)
    second.attempt_ended("A", 1, exit_code=None, signal=None, complete=True, cost_usd=1.0)
    second.transition("A", "running", "complete")
    second.run_finished(exit_code=0, outcome="all complete", cost_usd=1.0, states={"complete": 2})
    report = build_report(read_journal(journal_path(tmp_path, run)))
    (a, b) = report.streams
    assert report.resumes == 1 and report.run_id == run and report.duration_s == 170
    assert [(x.started, x.ended, x.outcome) for x in a.attempts] == [(0, 170, "complete")]  # not doubled
    assert a.running_s == 170 and a.final_state == "complete" and b.final_state == "waiting"


def test_a_journal_with_a_torn_tail_still_gives_a_report_and_says_what_it_skipped(layout):
    path = journals.diamond(layout.journals)
    path.write_bytes(path.read_bytes()[:-40])  # the run_finished line is cut: the run looks unfinished
    warnings = []
    report = build_report(read_journal(path, warnings.append), DIAMOND_RUN, warnings=warnings)
    assert not report.finished and report.warnings and "damaged" in report.warnings[0]
    assert "not finished" in render_html(report)


# ---------------------------------------------------------------- JSON and HTML


def test_the_json_report_is_the_same_data(layout):
    report = diamond_report(layout)
    data = json.loads(render_json(report))
    assert data["format"] == 1 and data == {"format": 1, **json.loads(json.dumps(asdict(report)))}
    assert data["totals"]["cost_usd"] == pytest.approx(1.82)
    assert [s["stream_id"] for s in data["streams"]] == ["Stream-A", "Stream-B", "Stream-C", "Stream-Z"]
    assert data["failures"][0]["state"] == "merge_conflict"


class Tags(HTMLParser):
    """Every tag and attribute of a page, as a browser's parser sees them."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags, self.attributes, self.text = set(), [], []

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.attributes += [(tag, name, value) for name, value in attrs]

    def handle_data(self, data):
        self.text.append(data)


SAFE_TAGS = {"html", "head", "meta", "title", "style", "body", "main", "header", "footer", "section", "article",
             "h1", "h2", "h3", "p", "span", "i", "a", "code", "pre", "div", "details", "summary", "dl", "dt", "dd",
             "table", "tr", "th", "td", "ul", "li", "br", "svg", "g", "rect", "text", "path", "line", "title"}


def parsed(text):
    tags = Tags()
    tags.feed(text)
    return tags


def test_the_page_is_self_contained_and_forbids_scripts(layout):
    text = render_html(diamond_report(layout), 1_790_000_500.0)
    tags = parsed(text)
    assert tags.tags <= SAFE_TAGS
    csp = next(v for t, n, v in tags.attributes if t == "meta" and n == "content" and "default-src" in v)
    assert "script-src 'none'" in csp and "default-src 'none'" in csp and "unsafe-inline" not in csp
    style = re.search(r"<style>(.*?)</style>", text, re.S).group(1)
    assert style == page.STYLE and page._STYLE_HASH in csp  # the one style block is allowed by its hash
    assert not [a for a in tags.attributes if a[1] == "style" or a[1].startswith("on")]
    assert not re.search(r"(?i)(src|href)\s*=\s*(?![\"']?(#|https://))", text)  # nothing fetched, no other links
    assert "https://github.com/acme/app/pull/7" in [v for t, n, v in tags.attributes if n == "href"]


def test_names_results_reasons_and_links_from_the_tracker_and_agents_render_inert(layout):
    path = journals.hostile(layout.journals, port=9)
    report = build_report(read_journal(path))
    text = render_html(report)
    tags = parsed(text)
    assert tags.tags <= SAFE_TAGS  # no script, img, iframe, svg onload, link, refresh meta, style from the data
    assert sum(1 for t in tags.attributes if t[0] == "meta" and t[1] == "http-equiv") == 1  # only our CSP
    assert not [a for a in tags.attributes if a[1].startswith("on") or a[1] in ("style", "src")]
    hrefs = [v for t, n, v in tags.attributes if n == "href"]
    assert all(h.startswith("#") for h in hrefs)  # the javascript: and the quote-breaking URL are text only
    shown = "".join(tags.text)
    for hostile in ("<script>window.pwned=1;document.title='PWNED'</script>", "javascript:window.pwned=1",
                    '"><img src="http://127.0.0.1:9/img" onerror="window.pwned=1">'):
        assert hostile in shown  # shown to the reader as the text it is
    assert "\u202e" not in text and "\x1b" not in text and "\x00" not in text  # no reordering or terminal tricks
    assert json.loads(render_json(report))["streams"][0]["stream_id"] == journals.hostile_texts(9)["script"]


def test_links_are_only_plain_https_urls():
    assert page.link("https://github.com/acme/app/pull/7").startswith('<a href="https://github.com/acme/app/pull/7"')
    for url in ("javascript:alert(1)", "JAVASCRIPT:alert(1)", " https://x.io", "http://x.io", "https://x.io/\"a",
                "https://x.io/<b>", "https://x.io/\u202e", "data:text/html,<b>", "https://x.io/a b", "//x.io"):
        assert "<a " not in page.link(url), url


def test_a_200_stream_1000_attempt_run_s_page_is_under_2_mb_and_shows_every_attempt(tmp_path):
    path = journals.generated(tmp_path, "20260921T130000Z-abcdef", 200, 1000, result_chars=4000)
    report = build_report(read_journal(path))
    text = render_html(report)
    assert len(text.encode("utf-8")) < 2 * 1024 * 1024
    assert text.count('<tr class="attempt">') == 1000 == report.totals.attempts
    assert all(f"<summary>{s.stream_id}" in text for s in report.streams) and len(report.streams) == 200


# ---------------------------------------------------------------- files and commands


def test_write_report_puts_the_page_in_reports_with_the_failed_stream_s_log_tail(layout):
    journals.diamond(layout.journals)
    layout.logs.mkdir(parents=True)
    layout.log_for("Stream-Z").write_text("".join(f"line {n}\n" for n in range(100)) + "<script>x</script>\n")
    path = write_report(layout, DIAMOND_RUN)
    assert path == layout.reports / f"{DIAMOND_RUN}.html"
    text = path.read_text(encoding="utf-8")
    assert "line 99" in text and "line 85" not in text and "&lt;script&gt;x&lt;/script&gt;" in text
    assert sorted(p.name for p in layout.reports.iterdir()) == [f"{DIAMOND_RUN}.html"]  # no temporary left


def later_run(layout, finished=True):
    clock = FakeClock(wall=journals.START + 86_400)
    j = journal_on(layout.journals, LATER_RUN, clock)
    j.run_started(settings={}, targets=["Stream-A"], tracker="tc", isolation="none",
                  plan=journals.plan({"Stream-A": []}))
    j.attempt_started("Stream-A", 1)
    clock.advance(30)
    j.attempt_ended("Stream-A", 1, exit_code=0, signal=None, complete=True, cost_usd=0.5)
    if finished:
        j.run_finished(exit_code=0, outcome="all complete", cost_usd=0.5, states={"complete": 1})
    j.close()


def run(capsys, layout, *argv):
    code = orchestrate.main(list(argv), layout=layout)
    out, err = capsys.readouterr()
    return code, out, err


def test_report_writes_the_latest_run_s_page_and_prints_where(layout, capsys):
    journals.diamond(layout.journals)
    later_run(layout)
    code, out, err = run(capsys, layout, "report")
    assert code == 0, err
    assert out.startswith(f"report of run {LATER_RUN}: ") and (layout.reports / f"{LATER_RUN}.html").is_file()
    code, out, _ = run(capsys, layout, "report", "20260921T12", "--json")
    assert code == 0 and json.loads(out)["run_id"] == DIAMOND_RUN
    target = layout.root / "diamond.json"
    code, out, _ = run(capsys, layout, "report", DIAMOND_RUN, "--json", "--out", str(target))
    assert code == 0 and json.loads(target.read_text())["totals"]["attempts"] == 6
    code, out, _ = run(capsys, layout, "report", DIAMOND_RUN, "--out", "-")
    assert code == 0 and out.startswith("<!DOCTYPE html>")


def test_report_of_an_unknown_run_says_what_it_may_have_meant(layout, capsys):
    code, _, err = run(capsys, layout, "report")
    assert code == 1 and "no run has been recorded" in err and "Traceback" not in err
    journals.diamond(layout.journals)
    code, _, err = run(capsys, layout, "report", "20260921T120000Z-d1a30")
    assert code == 0  # a unique start of an id is enough
    code, _, err = run(capsys, layout, "report", "20260921T120000Z-d1a301")
    assert code == 2 and f"did you mean {DIAMOND_RUN}?" in err
    code, _, err = run(capsys, layout, "report", "../../etc/passwd")
    assert code == 2 and "no run" in err


def test_report_to_a_folder_it_cannot_write_is_a_clear_error(layout, capsys, tmp_path):
    journals.diamond(layout.journals)
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, _, err = run(capsys, layout, "report", "--out", str(blocker / "report.html"))
    assert code == 1 and "cannot write the report" in err and "Traceback" not in err


def test_history_lists_past_runs_newest_first_from_their_journals(layout, capsys):
    journals.diamond(layout.journals)
    later_run(layout)
    code, out, _ = run(capsys, layout, "history")
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["RUN", "STARTED", "TOOK", "STREAMS", "COST", "OUTCOME"]
    assert lines[1].startswith(LATER_RUN) and "all complete (exit 0)" in lines[1] and " 0.50 " in lines[1]
    assert lines[2].startswith(DIAMOND_RUN) and "6m53s" in lines[2] and " 1.82 " in lines[2]
    assert "nothing more can progress (exit 1)" in lines[2]
    code, out, _ = run(capsys, layout, "history", "--json", "-n", "1")
    data = json.loads(out)
    assert data["total"] == 2 and [r["run_id"] for r in data["runs"]] == [LATER_RUN]
    assert data["runs"][0] == {"run_id": LATER_RUN, "started_at": journals.START + 86_400, "duration_s": 30.0,
                               "streams": 1, "outcome": "all complete", "exit_code": 0, "cost_usd": 0.5, "report": ""}


def test_history_of_a_run_that_never_recorded_its_end(layout, capsys):
    later_run(layout, finished=False)
    code, out, _ = run(capsys, layout, "history", "--json")
    (past,) = json.loads(out)["runs"]
    assert code == 0 and past["outcome"].startswith("interrupted") and past["cost_usd"] == 0.5
    code, out, _ = run(capsys, Layout(layout.home, layout.state_root / "other"), "history")
    assert code == 0 and "no runs recorded yet" in out


def test_the_report_at_the_end_of_a_run_never_raises(layout, monkeypatch):
    import _orchestrate_kit.report as reports

    journals.diamond(layout.journals)
    warnings = []
    assert reports.report_at_end(layout, DIAMOND_RUN, warnings.append) == layout.reports / f"{DIAMOND_RUN}.html"
    (layout.reports / f"{DIAMOND_RUN}.html").unlink()
    layout.reports.rmdir()
    layout.reports.write_text("a file where the folder should be")
    assert reports.report_at_end(layout, DIAMOND_RUN, warnings.append) is None
    assert "could not be written" in warnings[-1]
    monkeypatch.setattr(reports, "render_html", lambda *_args: 1 / 0)
    assert reports.report_at_end(layout, "20260921T120000Z-ffffff", warnings.append) is None
    layout.reports.unlink()
    assert reports.report_at_end(layout, DIAMOND_RUN, warnings.append) is None
    assert "ZeroDivisionError" in warnings[-1] and f"orchestrate.py report {DIAMOND_RUN}" in warnings[-1]


def test_usage_limit_pauses_that_end_unannounced_are_separate(tmp_path):
    run = "20260921T160000Z-0a0a0a"
    clock = FakeClock()
    j = journal_on(tmp_path, run, clock)
    j.run_started(settings={}, targets=None, tracker="tc", isolation="none", plan=journals.plan({"A": []}))
    j.usage_limit("A", until=clock.wall + 60, message="first")
    clock.advance(10)
    j.usage_limit("A", until=clock.wall + 100, message="again, while paused")  # extends the first
    clock.advance(500)
    j.usage_limit("A", until=clock.wall + 30, message="second")  # the first ran out long ago
    clock.advance(10)
    j.usage_limit_resumed("A")
    clock.advance(100)
    report = build_report(read_journal(journal_path(tmp_path, run)))
    assert [(p.start, p.end, p.outcome) for p in report.pauses] == [(0, 110, "first"), (510, 520, "second")]
