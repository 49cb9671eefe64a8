"""A misspelt setting changes nothing, so plan, start and status say so: its file, its line, the closest name.

A key no setting has is a warning, not a refusal: an older runtime reads a newer one's files. (doctor,
the installer's check, says the same: tests/installer/test_doctor.py.)
"""

import json

import pytest

from tests.support import taskdb


@pytest.fixture
def misspelt(project):
    taskdb.diamond(project.db)
    conf = project.home / "orchestrator.conf"
    conf.write_text(conf.read_text() + "engine = ray\n")
    local = project.home / "orchestrator.local.conf"
    local.write_text("# my settings\nmax_paralel = 2\n")
    line = len(conf.read_text().splitlines())
    return {
        "typo": f"{local}:2: max_paralel is not a setting, so it changes nothing; did you mean max_parallel?",
        "unknown": f"{conf}:{line}: engine is not a setting, so it changes nothing; the settings are: "
                   "worker_command, max_parallel,",
    }


def test_plan_names_them(project, misspelt):
    text = project.orchestrate("plan")
    as_json = project.orchestrate("plan", "--json")

    assert text.returncode == 0 and as_json.returncode == 0, text.stderr
    assert misspelt["typo"] in text.stderr and misspelt["unknown"] in text.stderr
    warnings = json.loads(as_json.stdout)["warnings"]
    assert misspelt["typo"] in warnings and any(w.startswith(misspelt["unknown"]) for w in warnings)


def test_status_names_them(project, misspelt):
    text = project.orchestrate("status")

    assert text.returncode in (0, 1), text.stderr
    assert f"warning: {misspelt['typo']}" in text.stdout and f"warning: {misspelt['unknown']}" in text.stdout
    assert misspelt["typo"] in project.status()["warnings"]


def test_start_names_them_and_runs_as_the_rest_of_the_settings_say(project, misspelt):
    result = project.orchestrate("start", timeout=120)

    assert result.returncode == 0, result.stderr
    assert f"warning: {misspelt['typo']}" in result.stderr and f"warning: {misspelt['unknown']}" in result.stderr
    assert {e["stream"] for e in project.events("end")} == {"Stream-A", "Stream-B", "Stream-C", "Stream-Z"}


def test_known_keys_only_no_warning(project):
    taskdb.diamond(project.db)
    (project.home / "orchestrator.local.conf").write_text("max_parallel = 2\n")

    result = project.orchestrate("plan")

    assert result.returncode == 0 and "not a setting" not in result.stderr
