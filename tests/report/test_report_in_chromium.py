"""The run report opened in a real headless Chromium: it draws, asks the network for nothing, logs no
error, shows every stream, attempt and total, and a page of hostile names runs no script.

The reports come from hand-built journals (tests/support/journals.py): the documented diamond with a
failed attempt and its retry, the account's usage limit and a merge conflict. PNG screenshots are
left in the test's folder for a look.
"""

import http.server
import struct
import threading

import pytest

import tests.runtime.runtime_import  # noqa: F401  (puts the runtime on sys.path)
from _orchestrate_kit.report import write_report  # noqa: E402
from _orchestrate_kit.settings import Layout  # noqa: E402
from tests.support import journals

ATTACKS_SEEN = "[...document.querySelectorAll('script,img,iframe,object,embed,link,form,base,audio,video,style')].length"
HANDLERS = "[...document.querySelectorAll('*')].some(el => [...el.attributes].some(a => a.name.startsWith('on')))"
PAGE_FACTS = {
    "text": "document.body.textContent",
    "attempt_rows": "document.querySelectorAll('tr.attempt').length",
    "attempt_bars": "document.querySelectorAll('#timeline rect.attempt').length",
    "graph_nodes": "document.querySelectorAll('#graph g.node').length",
    "total_row": "document.getElementById('total-row').textContent",
    "planned": "document.getElementById('cp-planned').textContent",
    "ran": "document.getElementById('cp-ran').textContent",
    "title": "document.title",
    "styled": "getComputedStyle(document.querySelector('main')).maxWidth",  # our style block applied
    "pwned": "typeof window.pwned",
    "foreign_elements": ATTACKS_SEEN,
    "handlers": HANDLERS,
    "links": "[...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href'))",
}


@pytest.fixture
def layout(tmp_path):
    home = tmp_path / "project" / ".claude" / "orchestrator"
    home.mkdir(parents=True)
    return Layout(home, tmp_path / "state")


def png_size(data):
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_the_diamond_s_report_in_chromium(chromium, layout, tmp_path):
    journals.diamond(layout.journals)
    layout.logs.mkdir(parents=True)
    layout.log_for("Stream-Z").write_text("CONFLICT (content): Merge conflict in src/app.py\n")
    path = write_report(layout, journals.DIAMOND_RUN)

    visit = chromium.visit(path, PAGE_FACTS)
    (tmp_path / "diamond.png").write_bytes(visit.screenshot)

    assert visit.errors == []
    assert visit.requests == [visit.url]  # the file itself, nothing else
    width, height = png_size(visit.screenshot)
    assert width == 1280 and height > 1000 and len(visit.screenshot) > 50_000
    facts = visit.values
    assert facts["styled"] == "1180px"
    for stream in ("Stream-A", "Stream-B", "Stream-C", "Stream-Z", "Foundation", "Integration"):
        assert stream in facts["text"]
    assert facts["attempt_rows"] == 6 and facts["attempt_bars"] == 6 and facts["graph_nodes"] == 4
    assert "1.82" in facts["total_row"] and "69,800" in facts["total_row"]
    assert facts["planned"] == "Stream-A → Stream-B → Stream-Z"
    assert facts["ran"] == "Stream-A → Stream-C → Stream-Z"
    assert "Merge conflict in src/app.py" in facts["text"] and "orchestrate.py start Stream-Z" in facts["text"]
    assert "Stream-A: all tasks done and committed." in facts["text"]
    assert facts["links"][-1] == "https://github.com/acme/app/pull/7"


class Receiver(http.server.BaseHTTPRequestHandler):
    """Counts any request a hostile page manages to make."""

    seen = []

    def do_GET(self):
        Receiver.seen.append(self.path)
        self.send_response(204)
        self.end_headers()

    do_POST = do_GET

    def log_message(self, *_args):
        pass


def test_a_page_of_hostile_names_and_agent_text_runs_no_script_and_fetches_nothing(chromium, layout, tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Receiver.seen = []
    try:
        port = server.server_address[1]
        run_path = journals.hostile(layout.journals, port)
        failed = journals.hostile_texts(port)["img"]
        layout.logs.mkdir(parents=True)
        layout.log_for(failed).write_text("<script>window.pwned=1</script>\n<img src=x onerror=window.pwned=1>\n")
        path = write_report(layout, run_path.stem)
        visit = chromium.visit(path, PAGE_FACTS)
    finally:
        server.shutdown()
        server.server_close()
    (tmp_path / "hostile.png").write_bytes(visit.screenshot)

    assert visit.errors == []  # not even a CSP violation: nothing to block was ever in the page
    assert visit.requests == [visit.url] and Receiver.seen == []
    facts = visit.values
    assert facts["pwned"] == "undefined" and "PWNED" not in facts["title"]
    assert facts["foreign_elements"] == 1  # our own style block, nothing else
    assert facts["handlers"] is False
    assert all(link.startswith("#") for link in facts["links"])
    assert "<script>window.pwned=1;document.title='PWNED'</script>" in facts["text"]  # shown, as text
    assert "javascript:window.pwned=1" in facts["text"]
    assert "<img src=x onerror=window.pwned=1>" in facts["text"]  # the failed stream's log tail, as text
