"""`plan` and `start --dry-run` with the default pacing list every ready stream, as real commands."""

import json

from tests.support import taskdb

WIDE = [f"S{i:02d}" for i in range(10)]


def wide_project(project):
    project.configure(spawn_gap=2)  # the installed default (the test projects turn it off)
    taskdb.make_db(project.db)
    for sid in WIDE:
        taskdb.add_stream(project.db, sid, [], 1)
    taskdb.add_stream(project.db, "Last", WIDE, 1)


def test_plan_lists_every_ready_stream_and_which_follow_the_first_eight(project):
    wide_project(project)
    plan = json.loads(project.orchestrate("plan", "--json").stdout)
    assert plan["ready"] == WIDE and plan["paced"] == WIDE[8:]
    text = project.orchestrate("plan").stdout
    assert f"Would start now: {', '.join(WIDE)} (the first 8 at once, then one every 2 s)" in text


def test_a_lone_ready_stream_is_listed_without_pacing(project):
    project.configure(spawn_gap=2)
    taskdb.diamond(project.db)
    plan = json.loads(project.orchestrate("plan", "--json").stdout)
    assert plan["ready"] == ["Stream-A"] and plan["paced"] == []
    assert "then one every" not in project.orchestrate("plan").stdout


def test_dry_run_shows_the_burst_and_the_paced_rest_and_starts_nothing(project):
    wide_project(project)
    result = project.orchestrate("start", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert f"Would start now: {', '.join(WIDE[:8])}\n" in result.stdout
    assert f"Then, one every 2 s (spawn_gap): {', '.join(WIDE[8:])}\n" in result.stdout
    assert "Last: waiting on" in result.stdout and project.events() == []
