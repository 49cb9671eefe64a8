"""Hostile stream ids and names: data, never code, never a path, never a second line.

tests/runtime/test_bad_input.py runs a dozen hostile ids through `start`. Here: more of them
(10 000 characters, reserved file names, look-alikes that must not share a file, terminal
escapes, right-to-left overrides, names as hostile as the ids, hostile dependency names), and
every reader a user has: `status`, `plan`, `logs`, `stop STREAM` and the dashboard.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.support import taskdb
from tests.support.project import Project

from .checks import starts_per_stream

CANARY = "pwned-canary"


def hostile_ids(tmp: Path) -> list:
    canary = tmp / CANARY
    return [
        "/", "..", ".", "../../../../escape", "a/b", "a_b", "a?b", "a*b", "/etc/passwd", "~",
        f"$(touch {canary}-1)", f"`touch {canary}-2`", f"; touch {canary}-3", f"x && touch {canary}-4",
        f"| touch {canary}-5", "'quoted' \"double\"", "$HOME", "${IFS}", "%s%n%x",
        "new\nline", "carriage\rreturn", "tab\there", "\x1b[2J\x1b[31mred", "bell\x07", "\u202eevil-rtl",
        "orchestrator", "ORCHESTRATOR", "-rf", "--help", ".hidden", "CON", "x" * 10_000, "Ünïcødé-流",
    ]


ROOT = "../../root;$(id)"
LAST = "\x1b]0;title\x07last\nstream"


@pytest.fixture
def hostile_project(project, tmp_path):
    ids = hostile_ids(tmp_path)
    taskdb.make_db(project.db)
    taskdb.add_stream(project.db, ROOT, [], 1, name=f"root name $(touch {tmp_path / CANARY}-6)\n\x1b[1m")
    for sid in ids:
        taskdb.add_stream(project.db, sid, [ROOT], 1, name=f"{sid}\r\x1b[K name")
    taskdb.add_stream(project.db, LAST, ids, 1, name="\x1b[31m" + "n" * 5_000)
    project.ids = [ROOT, *ids, LAST]
    return project


def created_files(tmp_path: Path, before: set, project: Project) -> list:
    """Files and folders created since `before`, other than the database's and the fake worker's."""
    ignored = (str(project.events_file), str(project.base))
    return sorted(p for p in set(tmp_path.rglob("*")) - before if not str(p).startswith(ignored))


def assert_inert(text: str) -> None:
    for control in ("\x1b", "\x07", "\r"):
        assert control not in text, f"{control!r} reached the terminal"


def test_hostile_ids_and_names_stay_data(hostile_project, tmp_path):
    project = hostile_project
    before = set(tmp_path.rglob("*"))
    result = project.orchestrate("start", timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert_inert(result.stdout + result.stderr)
    assert starts_per_stream(project) == dict.fromkeys(project.ids, 1)
    assert set(project.states().values()) == {"complete"}

    # Nothing executed, nothing written outside logs/, pids/, state/ and the run's report in reports/.
    assert not list(tmp_path.rglob(f"{CANARY}*")) and not list(Path.cwd().glob(f"{CANARY}*"))
    for path in created_files(tmp_path, before, project):
        relative = path.relative_to(project.home)  # raises if outside the runtime folder
        assert relative.parts[0] in {"logs", "pids", "state", "reports"}, path
        if relative.parts[0] == "reports":  # named by the run's id, never by a stream
            assert relative == Path("reports") or re.fullmatch(r"reports/\d{8}T\d{6}Z-[0-9a-f]{6}\.html",
                                                                 relative.as_posix()), path
    logs = sorted(p.name for p in (project.home / "logs").iterdir())
    assert len(logs) == len(project.ids) and "orchestrator.log" not in logs  # one file per stream, none shared
    for name in logs:
        assert len(name.encode()) <= 255 and name.isprintable() and not name.startswith((".", "-")), name
        assert "/" not in name, name

    # Every reader prints one inert line per stream.
    status = project.orchestrate("status")
    assert status.returncode == 0
    assert_inert(status.stdout)
    lines = status.stdout.splitlines()
    header = next(n for n, line in enumerate(lines) if line.startswith("LEVEL"))
    rows = lines[header + 1: lines.index("", header)]
    assert len(rows) == len(project.ids) and all(" complete " in row for row in rows), status.stdout
    plan = project.orchestrate("plan")
    assert_inert(plan.stdout + plan.stderr)
    for sid in (ROOT, LAST, "new\nline", "\x1b[2J\x1b[31mred", "x" * 10_000):
        logs_cmd = project.orchestrate("logs", sid)
        assert logs_cmd.returncode == 0, logs_cmd.stderr
        assert_inert(logs_cmd.stdout)
        assert "Working on stream" in logs_cmd.stdout  # the fake worker's stream-json, printed inert
        stop = project.orchestrate("stop", sid)
        assert stop.returncode == 1 and "has no running worker" in stop.stderr
        assert_inert(stop.stderr)
    assert not list(tmp_path.rglob(f"{CANARY}*"))


def dashboard_is_built() -> bool:
    script = Project.create.__globals__["RUNTIME"] / "check-streams"
    return script.is_file() and "cs_die" in script.read_text()


@pytest.mark.skipif(not dashboard_is_built(), reason="the dashboard is still a placeholder")
def test_the_dashboard_stays_one_line_per_stream(hostile_project, tmp_path):
    project = hostile_project
    project.plan({sid: ["hang"] for sid in project.ids[1:]})
    orchestrator = project.start_background()
    project.wait_for(lambda: len(project.events("start")) == len(project.ids) - 1, timeout=120,
                     what="every hostile stream to run")
    for columns in ("60", "200"):
        env = {**project.env, "COLUMNS": columns, "LC_ALL": "C.UTF-8", "NO_COLOR": "1"}
        frame = subprocess.run([str(project.home / "check-streams"), "--color", "never"], env=env,
                               cwd=project.root, capture_output=True, text=True, timeout=60)
        assert frame.returncode == 0, frame.stderr
        assert_inert(frame.stdout + frame.stderr)
        lines = frame.stdout.splitlines()
        assert all(len(line) <= int(columns) for line in lines), [ln for ln in lines if len(ln) > int(columns)]
        # One line per running stream; the last stream waits on all of them (its own line, plus
        # the dashboard's one "waiting on ..." line under it).
        running = [line for line in lines if "RUN " in line]
        assert len(running) == len(project.ids) - 2, frame.stdout
    assert not list(tmp_path.rglob(f"{CANARY}*"))
    project.orchestrate("stop", "--grace", "1")
    orchestrator.communicate(timeout=60)
