"""The report of a real run: `orchestrate.py start` as a process over a real SQLite database and a
real git repository, the fake claude as each worker (stream-json with costs, one failure and its
retry), worktree isolation with a merge check. The run writes its journal as it goes, its report at
the end and prints the path; the page, opened in a real headless Chromium, shows that run's streams,
attempts, costs and outcomes, and asks the network for nothing."""

import re

import pytest

import tests.runtime.runtime_import  # noqa: F401  (puts the runtime on sys.path)
from _orchestrate_kit.journal import journal_path, read_journal, run_ids  # noqa: E402
from _orchestrate_kit.settings import layout_for  # noqa: E402
from tests.support.project import Project
from tests.support.taskdb import diamond

STREAMS = ("Stream-A", "Stream-B", "Stream-C", "Stream-Z")
FACTS = {
    "text": "document.body.textContent",
    "attempt_rows": "document.querySelectorAll('tr.attempt').length",
    "attempt_bars": "document.querySelectorAll('#timeline rect.attempt').length",
    "graph_nodes": "document.querySelectorAll('#graph g.node').length",
    "total_row": "document.getElementById('total-row').textContent",
    "outcome": "document.getElementById('outcome').textContent",
    "rows": "[...document.querySelectorAll('#streams tr')].map(r => r.textContent)",
}


@pytest.fixture
def repo(tmp_path):
    proj = Project.create_git(tmp_path, {"merge_check": "test -f README.md"})
    yield proj
    proj.stop_leftovers()


def test_a_real_run_journals_every_event_and_its_report_opens_in_chromium(repo, chromium, tmp_path):
    diamond(repo.db)
    repo.plan({"Stream-A": ["write"], "Stream-B": ["fail", "write"], "Stream-C": ["commit"], "Stream-Z": ["write"]})
    repo.env["FAKE_CLAUDE_COST"] = "0.05"

    result = repo.orchestrate("start", timeout=240)

    assert result.returncode == 0, result.stdout + result.stderr
    layout = layout_for(repo.home)
    (run_id,) = run_ids(layout.journals)
    printed = re.findall(r"report: (\S+\.html)", result.stdout)
    assert printed == [f".claude/orchestrator/reports/{run_id}.html"]
    page = repo.root / printed[0]
    assert page.is_file()

    warnings = []
    events = list(read_journal(journal_path(layout.journals, run_id), warnings.append))
    assert warnings == [] and {e["run"] for e in events} == {run_id}
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished" and kinds.count("run_finished") == 1
    ended = [(e["stream"], e["attempt"], e["complete"], e["cost_usd"]) for e in events if e["kind"] == "attempt_ended"]
    assert sorted(ended) == [("Stream-A", 1, True, 0.05), ("Stream-B", 1, False, 0.05), ("Stream-B", 2, True, 0.05),
                             ("Stream-C", 1, True, 0.05), ("Stream-Z", 1, True, 0.05)]
    assert sorted(e["stream"] for e in events if e["kind"] == "backoff") == ["Stream-B"]
    for kind in ("merge_started", "check_started", "check_passed", "merged"):  # each stream's merge and check
        assert sorted(e["stream"] for e in events if e["kind"] == kind) == sorted(STREAMS), kind
    branch = repo.status()["run"]["integration_branch"]
    merges = {e["stream"]: e["commit"] for e in events if e["kind"] == "merged"}
    history = repo.git("log", "--format=%H", branch).split()
    assert all(commit in history for commit in merges.values())  # the merge commits the branch holds
    assert events[-1]["exit_code"] == 0 and events[-1]["cost_usd"] == 0.25 and events[-1]["report"] == str(page)

    visit = chromium.visit(page, FACTS)
    (tmp_path / "real-run.png").write_bytes(visit.screenshot)
    assert visit.errors == [] and visit.requests == [visit.url]
    facts = visit.values
    assert facts["graph_nodes"] == 4 and facts["attempt_rows"] == 5 and facts["attempt_bars"] == 5
    assert "all complete" in facts["outcome"]
    assert "0.25" in facts["total_row"]
    for name in ("Foundation", "API Implementation", "UI Components", "Integration"):
        assert name in facts["text"]
    b_row = next(row for row in facts["rows"] if row.startswith("Stream-B"))
    assert "complete" in b_row and "0.10" in b_row  # two attempts, both paid for
    assert "failing on purpose" in facts["text"]  # the failed attempt's reason
    for commit in merges.values():
        assert commit[:7] in facts["text"] or commit in facts["text"]
