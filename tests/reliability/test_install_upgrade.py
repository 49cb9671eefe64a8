"""Install and upgrade under trouble: killed mid-way, the user's own files, a read-only folder.

tests/installer covers a dirty tree (refused, nothing changed) and a conflict (markers, exit 1,
how to abort). Here: an upgrade killed at random moments and at its first write (the project
must end up unchanged, fully upgraded, or with the next `upgrade` saying how to restore it), a
user's own ./watch-status and slash command through install *and* upgrade, and a project folder
that cannot be written.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrate_kit import store
from tests.installer.conftest import fake_home, prebuilt  # noqa: F401  (autouse: an isolated HOME and git config; builds kept)
from tests.installer.helpers import (
    NEW_IN_V2, SAMPLE, commit_all, git, init_repo, make_version, run, snapshot, use, v2_edit,
)

from .conftest import ROUNDS, soak_timeout

COMMAND = ".claude/commands/orchestrate.md"
ANSWERS = ".claude/orchestrator/.copier-answers.yml"


def v2_with_a_new_command(template_dir: Path) -> None:
    v2_edit(template_dir)
    command = template_dir / COMMAND
    command.write_text(command.read_text() + "\nA line the template adds in version 2.\n")


@pytest.fixture
def versions(tmp_path):
    return (make_version(tmp_path / "pkg-1", "1.0.0"),
            make_version(tmp_path / "pkg-2", "2.0.0", edit=v2_with_a_new_command))


def installed(tmp_path, capsys, monkeypatch, versions, name="project", before_install=None) -> Path:
    """A git project with version 1 installed and committed, and a user edit committed on top."""
    v1, v2 = versions
    use(monkeypatch, v1)
    project = init_repo(tmp_path / name)
    (project / "app.py").write_text("print('the user app')\n")
    if before_install:
        before_install(project)
    result = run(capsys, "install", "--defaults", str(project))
    assert result.code == 0, result.err
    sample = project / SAMPLE
    sample.write_text(sample.read_text().replace('return "a"', 'return "a, as the user wants"'))
    commit_all(project, "install 1.0.0, then a user edit")
    use(monkeypatch, v2)
    return project


UPGRADE_SCRIPT = """
import sys
from pathlib import Path
from orchestrate_kit import store
from orchestrate_kit.main import main
template = store.PackagedTemplate(Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]) if sys.argv[3] else None)
store.packaged_template = lambda: template
sys.exit(main(["upgrade", sys.argv[4]]))
"""


def upgrade_process(project: Path, template) -> subprocess.Popen:
    """`orchestrate-kit upgrade` as its own process (carrying version 2), so it can be killed."""
    bundle = str(template.bundle or "")  # a release carries its history bundle (tests/installer/helpers.py)
    return subprocess.Popen([sys.executable, "-c", UPGRADE_SCRIPT, str(template.root), template.version, bundle,
                             str(project)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def restore_command(message: str) -> str:
    """The one command the upgrade's hint says restores the project."""
    found = re.search(r"restore [^`]*`([^`]+)`", message)
    assert found, f"no restore command in: {message}"
    return found.group(1)


def kill_during(proc: subprocess.Popen, project: Path, before: dict, rng, how: str) -> str:
    """SIGKILL the upgrade at a random moment, or as soon as the project starts to change."""
    if how == "random":
        deadline = time.monotonic() + rng.uniform(0.0, 2.5)
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.01)
    else:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None and snapshot(project) == before:
            time.sleep(0.005)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    return "finished first" if proc.returncode == 0 else "killed"


@pytest.mark.soak
@pytest.mark.timeout(soak_timeout(90))  # a hang guard: 5 rounds took 286 s at a load of 20
def test_an_upgrade_killed_mid_way_leaves_the_project_whole_or_says_how_to_restore(
        tmp_path, capsys, monkeypatch, versions, rng):
    project = installed(tmp_path, capsys, monkeypatch, versions)
    before = snapshot(project)
    reference = tmp_path / "reference"
    shutil.copytree(project, reference, symlinks=True)
    assert run(capsys, "upgrade", str(reference)).code == 0
    upgraded = snapshot(reference)
    assert upgraded != before

    outcomes = {"unchanged": 0, "upgraded": 0, "restored as told": 0}
    for number in range(ROUNDS):
        how = "first write" if number % 2 else "random"
        kill_during(upgrade_process(project, versions[1]), project, before, rng, how)
        now = snapshot(project)
        if now == before:
            outcomes["unchanged"] += 1
        elif now == upgraded:
            outcomes["upgraded"] += 1
        else:
            again = run(capsys, "upgrade", str(project))
            assert again.code == 1, again.out + again.err
            assert "interrupted" in again.err and "Traceback" not in again.err, again.err
            restore = restore_command(again.err)
            subprocess.run(restore, shell=True, cwd=project, check=True, capture_output=True)
            assert snapshot(project) == before, restore
            outcomes["restored as told"] += 1
        # Whatever happened, the next upgrade (or the one after a commit) is a normal one.
        if snapshot(project) == upgraded:
            commit_all(project, "upgraded")
            git(project, "reset", "--hard", "--quiet", "HEAD~1")
        final = run(capsys, "upgrade", str(project))
        assert final.code == 0, final.out + final.err
        assert snapshot(project) == upgraded
        git(project, "reset", "--hard", "--quiet")
        git(project, "clean", "-d", "--force", "--quiet")
        assert snapshot(project) == before
    with capsys.disabled():
        print(f"\n[soak] upgrade killed: {ROUNDS} rounds; " + ", ".join(f"{k} {v}" for k, v in outcomes.items()))


def test_an_upgrade_stopped_with_sigterm_or_sighup_rolls_back(tmp_path, capsys, monkeypatch, versions):
    project = installed(tmp_path, capsys, monkeypatch, versions)
    before = snapshot(project)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        proc = upgrade_process(project, versions[1])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None and snapshot(project) == before:
            time.sleep(0.005)
        if proc.poll() is None:
            os.killpg(proc.pid, sig)
        out, err = proc.communicate(timeout=60)
        assert "Traceback" not in out + err
        if proc.returncode == 0:  # it won the race: a whole upgrade, which is fine; undo it and go on
            git(project, "reset", "--hard", "--quiet")
            git(project, "clean", "-d", "--force", "--quiet")
            continue
        assert proc.returncode == 130, (proc.returncode, out, err)
        assert snapshot(project) == before
    assert run(capsys, "upgrade", str(project)).code == 0


def own_files(project: Path) -> None:
    (project / "watch-status").write_text("#!/bin/sh\necho my own watch-status\n")
    (project / ".claude" / "commands").mkdir(parents=True)
    (project / COMMAND).write_text("my own /orchestrate command\n")


def test_the_users_own_watch_status_and_command_survive_install_and_upgrade(tmp_path, capsys, monkeypatch, versions):
    project = installed(tmp_path, capsys, monkeypatch, versions, before_install=own_files)
    result = run(capsys, "upgrade", str(project))
    assert result.code == 0, result.out + result.err
    assert not (project / "watch-status").is_symlink()
    assert (project / "watch-status").read_text() == "#!/bin/sh\necho my own watch-status\n"
    assert (project / COMMAND).read_text() == "my own /orchestrate command\n"
    assert (project / NEW_IN_V2).is_file() and "TIMEOUT = 60" in (project / SAMPLE).read_text()
    assert "<<<<<<<" not in (project / COMMAND).read_text()
    assert not list(project.rglob("*.rej"))


def read_only(project: Path, argv: list) -> subprocess.CompletedProcess:
    """Run the CLI on `project` made unwritable: a read-only bind mount for root, else chmod."""
    template = store.packaged_template()
    script = UPGRADE_SCRIPT.replace('["upgrade", sys.argv[4]]', "sys.argv[4:]")
    command = [sys.executable, "-c", script, str(template.root), template.version, str(template.bundle or ""), *argv]
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in [project, *project.rglob("*")] if not p.is_symlink()}
        try:
            for path, mode in modes.items():
                path.chmod(mode & ~0o222)
            return subprocess.run(command, capture_output=True, text=True, timeout=120)
        finally:
            for path, mode in modes.items():
                path.chmod(mode)
    if not shutil.which("unshare"):
        pytest.skip("running as root without unshare: cannot make a folder read-only")
    wrapped = ["unshare", "--mount", "sh", "-c",
               'mount --bind "$0" "$0" && mount -o remount,ro,bind "$0" && exec "$@"', str(project), *command]
    result = subprocess.run(wrapped, capture_output=True, text=True, timeout=120)
    if "mount:" in result.stderr and "Traceback" not in result.stderr:
        pytest.skip(f"cannot make a read-only bind mount here: {result.stderr.strip()}")
    return result


def test_a_read_only_project_is_refused_with_a_clear_message_and_nothing_changed(
        tmp_path, capsys, monkeypatch, versions):
    fresh = init_repo(tmp_path / "fresh")
    before = snapshot(fresh)
    use(monkeypatch, versions[0])
    result = read_only(fresh, ["install", "--defaults", str(fresh)])
    assert result.returncode == 1, result.stdout + result.stderr
    assert "unexpected error" not in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert "write" in result.stderr and str(fresh) in result.stderr
    assert snapshot(fresh) == before

    project = installed(tmp_path, capsys, monkeypatch, versions)
    before = snapshot(project)
    result = read_only(project, ["upgrade", str(project)])
    assert result.returncode == 1, result.stdout + result.stderr
    assert "unexpected error" not in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert "write" in result.stderr and str(project) in result.stderr
    assert snapshot(project) == before
    assert run(capsys, "upgrade", str(project)).code == 0  # and once it is writable, it works
