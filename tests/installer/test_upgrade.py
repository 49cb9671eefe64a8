"""``orchestrate-kit upgrade``: copier's three-way update from version 1 to version 2.

Version 2 changes ``sample_module.py`` (TIMEOUT and the print line) and adds ``NEW_IN_V2.md``;
the user's edits are committed before each upgrade, as the command requires.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from orchestrate_kit import store

from . import helpers
from .helpers import ANSWERS, NEW_IN_V2, SAMPLE, commit_all, git, init_repo, run, snapshot, use

CHECK_STREAMS = ".claude/orchestrator/check-streams"


@pytest.fixture
def versions(tmp_path):
    v1 = helpers.make_version(tmp_path / "pkg-1", "1.0.0")
    v2 = helpers.make_version(tmp_path / "pkg-2", "2.0.0", edit=helpers.v2_edit)
    return v1, v2


def installed_with_an_app(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A git project of the user's (app.py) with version 1 installed and committed."""
    use(monkeypatch, helpers.make_version(project.parent / "pkg-1", "1.0.0"))
    init_repo(project)
    (project / "app.py").write_text("print('the user's app')\n")
    installed = helpers.call("install", "--defaults", str(project))
    assert installed.code == 0, installed.err
    commit_all(project, "install orchestrate-kit 1.0.0")


@pytest.fixture
def project(tmp_path, monkeypatch, fake_home, versions):
    """installed_with_an_app's project (built once per test process, copied here); the installer is then version 2."""
    use(monkeypatch, versions[1])
    return helpers.prebuilt_project("upgrade-project", installed_with_an_app, tmp_path / "project", fake_home)


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def installed_version(project: Path) -> str:
    return yaml.safe_load((project / ANSWERS).read_text())["_commit"]


def test_edits_in_untouched_regions_new_files_and_run_bits_survive(project, capsys):
    sample = project / SAMPLE
    edit(sample, 'return "a"', 'return "a-user-edit"')
    sample.write_text(sample.read_text() + "\n\ndef helper_user():\n    return 'mine'\n")
    (project / CHECK_STREAMS).chmod(0o644)  # the user takes the run bit away on purpose
    commit_all(project, "user edits")

    result = run(capsys, "upgrade", str(project))

    assert result.code == 0, result.err
    text = sample.read_text()
    assert 'return "a-user-edit"' in text  # (a) the user's edit in a region v2 leaves alone
    assert "def helper_user()" in text
    assert "TIMEOUT = 60" in text and 'print("sample v2")' in text  # v2's own changes arrived
    assert "<<<<<<<" not in text
    assert (project / NEW_IN_V2).read_text() == "Added in version 2.\n"  # (c) the new file
    assert not os.access(project / CHECK_STREAMS, os.X_OK)  # (d) the user's mode change kept
    assert installed_version(project) == "v2.0.0"
    assert "from v1.0.0 to v2.0.0" in result.out
    assert SAMPLE in result.out and NEW_IN_V2 in result.out and ANSWERS in result.out
    assert git(project, "diff", "--name-only", "--diff-filter=U") == ""


def test_overlapping_edit_is_a_conflict_and_exit_1(project, capsys):
    edit(project / SAMPLE, "TIMEOUT = 30", "TIMEOUT = 45  # the user's choice")
    commit_all(project, "user edits")

    result = run(capsys, "upgrade", str(project))

    assert result.code == 1
    text = (project / SAMPLE).read_text()
    assert "<<<<<<< before updating" in text and ">>>>>>> after updating" in text
    assert "TIMEOUT = 45  # the user's choice" in text and "TIMEOUT = 60" in text
    assert "conflicts" in result.err and SAMPLE in result.err
    assert "git reset --hard" in result.err  # how to abort
    assert "Upgraded" not in result.out and "not finished" in result.err
    assert git(project, "diff", "--name-only", "--diff-filter=U").split() == [SAMPLE]
    assert installed_version(project) == "v2.0.0"


def test_dirty_tree_is_refused_with_the_dirty_files_and_nothing_changed(project, capsys):
    edit(project / SAMPLE, 'return "a"', 'return "uncommitted"')
    (project / "scratch.txt").write_text("new, never added\n")
    before = snapshot(project)

    result = run(capsys, "upgrade", str(project))

    assert result.code == 1
    assert "uncommitted changes" in result.err
    assert SAMPLE in result.err and "scratch.txt" in result.err
    assert "git stash -u" in result.err
    assert snapshot(project) == before
    assert installed_version(project) == "v1.0.0"


def test_runtime_state_is_never_touched(project, capsys):
    state = {}
    for name in ("logs/Stream-A.log", "pids/Stream-A.pid", "state/run.json"):
        path = project / ".claude/orchestrator" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"runtime data {name}\n")
        state[path] = path.stat().st_mtime_ns
    assert git(project, "status", "--porcelain") == ""  # the template's .gitignore keeps them out

    result = run(capsys, "upgrade", str(project))

    assert result.code == 0, result.err
    for path, mtime in state.items():
        assert path.read_text().startswith("runtime data")
        assert path.stat().st_mtime_ns == mtime
    assert installed_version(project) == "v2.0.0"


def test_data_changes_an_answer_on_upgrade(project, capsys):
    result = run(capsys, "upgrade", str(project), "--data", "max_parallel=2")

    assert result.code == 0, result.err
    assert "max_parallel = 2" in (project / ".claude/orchestrator/orchestrator.conf").read_text()
    assert yaml.safe_load((project / ANSWERS).read_text())["max_parallel"] == "2"


def test_already_current_is_a_no_op(project, capsys):
    assert run(capsys, "upgrade", str(project)).code == 0
    commit_all(project, "upgraded")
    before = snapshot(project)

    result = run(capsys, "upgrade", str(project))

    assert result.code == 0
    assert "Already at v2.0.0" in result.out
    assert snapshot(project) == before


def test_to_a_version_the_history_has_and_one_it_lacks(project, capsys):
    # Any run syncs the store with the installer's version; v1.0.0 came from the install.
    stay = run(capsys, "upgrade", str(project), "--to", "1.0.0")
    missing = run(capsys, "upgrade", str(project), "--to", "9.9.9")

    assert stay.code == 0 and "Already at v1.0.0" in stay.out
    assert missing.code == 1 and "no template version 9.9.9" in missing.err
    assert "1.0.0, 2.0.0" in missing.err
    assert installed_version(project) == "v1.0.0"


def test_downgrade_is_refused(project, capsys, monkeypatch, versions):
    assert run(capsys, "upgrade", str(project)).code == 0
    commit_all(project, "at v2")
    use(monkeypatch, versions[0])
    before = snapshot(project)

    result = run(capsys, "upgrade", str(project))

    assert result.code == 1
    assert "downgrades are not supported" in result.err
    assert "hint: upgrade orchestrate-kit itself first" in result.err
    assert snapshot(project) == before


def test_to_an_older_version_gets_a_hint_about_to(project, capsys, monkeypatch):
    assert run(capsys, "upgrade", str(project)).code == 0
    commit_all(project, "at v2")
    before = snapshot(project)

    result = run(capsys, "upgrade", str(project), "--to", "1.0.0")

    assert result.code == 1 and "downgrades are not supported" in result.err
    assert "hint: pass --to 2.0.0 or newer (2.0.0), or leave --to out" in result.err
    assert "git revert" in result.err
    assert snapshot(project) == before


def test_not_installed(tmp_path, capsys, monkeypatch, versions):
    use(monkeypatch, versions[1])
    project = init_repo(tmp_path / "bare")

    result = run(capsys, "upgrade", str(project))

    assert result.code == 1
    assert "not installed" in result.err and "orchestrate-kit install" in result.err


def test_not_a_git_repository(tmp_path, capsys, monkeypatch, versions):
    use(monkeypatch, versions[0])
    project = tmp_path / "plain"
    project.mkdir()
    assert run(capsys, "install", "--defaults", str(project)).code == 0
    use(monkeypatch, versions[1])
    before = snapshot(project)

    result = run(capsys, "upgrade", str(project))

    assert result.code == 1
    assert "not a git repository" in result.err and "git init" in result.err
    assert snapshot(project) == before


@pytest.mark.parametrize(
    "mangled, message",
    [
        ("{{{: this is not yaml [\n", "not valid YAML"),
        ("- a list\n- of things\n", "should hold `key: value` answers"),
        ("", "should hold `key: value` answers"),
        ("_src_path: ~/.local/share/orchestrate-kit/template\nmax_parallel: 0\n", "has no _commit"),
        (
            "_commit: v1.0.0\n_src_path: ~/.local/share/orchestrate-kit/template\nmax_parallel: lots\n",
            "max_parallel must be 0 (unlimited) or a positive whole number",
        ),
        (
            "_commit: v1.0.0\n_src_path: ~/.local/share/orchestrate-kit/template\nmax_parallel: -3\n",
            "max_parallel must be 0 (unlimited) or a positive whole number, e.g. 4, not '-3'",
        ),
    ],
)
def test_hand_mangled_answers_file_is_a_clear_error(project, capsys, mangled, message):
    (project / ANSWERS).write_text(mangled)
    commit_all(project, "mangled by hand")
    before = snapshot(project)

    result = run(capsys, "upgrade", str(project))

    assert result.code == 1
    assert message in result.err
    assert "Traceback" not in result.err and "unexpected" not in result.err
    assert snapshot(project) == before
    assert git(project, "status", "--porcelain") == ""


def test_a_version_missing_from_this_machines_history(project, capsys, fake_home):
    """A teammate's machine that never saw v1.0.0, and an installer with no bundle."""
    shutil.rmtree(helpers.store_dir(fake_home))
    before = snapshot(project)

    result = run(capsys, "upgrade", str(project))

    assert result.code == 1
    assert "has no v1.0.0" in result.err and "orchestrate-kit 1.0.0" in result.err
    assert "@v1.0.0" in result.err and "uvx" not in result.err  # from its git tag: it is not on PyPI
    assert snapshot(project) == before


def test_the_bundle_brings_the_history_to_a_fresh_machine(project, capsys, tmp_path, monkeypatch, fake_home):
    """With the release history in the package, the upgrade works on a machine that never installed v1."""
    repo = helpers.tagged_template_repo(tmp_path / "history", [("v1.0.0", None), ("v2.0.0", helpers.v2_edit)])
    bundle = tmp_path / "template-history.bundle"
    assert helpers.build_bundle(repo, bundle) == ["v1.0.0", "v2.0.0"]
    v2 = helpers.make_version(tmp_path / "pkg-2b", "2.0.0", edit=helpers.v2_edit, bundle=bundle)
    use(monkeypatch, v2)
    shutil.rmtree(helpers.store_dir(fake_home))
    edit(project / SAMPLE, 'return "a"', 'return "a-user-edit"')
    commit_all(project, "user edit")

    result = run(capsys, "upgrade", str(project))

    assert result.code == 0, result.err
    assert installed_version(project) == "v2.0.0"
    assert 'return "a-user-edit"' in (project / SAMPLE).read_text()
    # The packaged tree is exactly the bundle's v2.0.0: no local tag was needed.
    assert store.tags(helpers.store_dir(fake_home)) == ["v1.0.0", "v2.0.0"]


def test_plain_copier_update_works_where_the_installer_ran(project, capsys):
    """`copier update` alone, offline, in a project the installer set up."""
    store.sync(store.packaged_template())  # the v2 installer has run on this machine
    copier = Path(sys.executable).with_name("copier")

    done = subprocess.run(
        [str(copier), "update", "--defaults", "-a", ANSWERS], cwd=project, capture_output=True, text=True,
        stdin=subprocess.DEVNULL, check=False,
    )

    assert done.returncode == 0, done.stderr
    assert installed_version(project) == "v2.0.0"
    assert (project / NEW_IN_V2).is_file()


def test_project_installed_by_plain_copier_elsewhere_is_pointed_to_copier(tmp_path, capsys, monkeypatch, versions):
    repo = helpers.tagged_template_repo(tmp_path / "tpl", [("v1.0.0", None)])
    project = init_repo(tmp_path / "project")
    copier = Path(sys.executable).with_name("copier")
    subprocess.run([str(copier), "copy", "--defaults", str(repo), str(project)], check=True, capture_output=True)
    commit_all(project, "copied")
    use(monkeypatch, versions[1])

    result = run(capsys, "upgrade", str(project))

    assert result.code == 1
    assert "plain copier" in result.err and "copier update -a" in result.err


def test_a_file_the_new_version_drops_goes(tmp_path, capsys, monkeypatch):
    old_file = ".claude/orchestrator/OLD_IN_V1.md"
    v1 = helpers.make_version(tmp_path / "p1", "1.0.0", edit=lambda t: (t / old_file).write_text("old\n"))
    v2 = helpers.make_version(tmp_path / "p2", "2.0.0")
    use(monkeypatch, v1)
    project = init_repo(tmp_path / "project")
    assert run(capsys, "install", "--defaults", str(project)).code == 0
    commit_all(project, "v1")
    assert (project / old_file).is_file()
    use(monkeypatch, v2)

    result = run(capsys, "upgrade", str(project))

    assert result.code == 0, result.err
    assert not (project / old_file).exists()
    assert old_file in result.out


def test_upgrade_from_a_dev_build_to_its_release_is_a_real_merge(tmp_path, capsys, monkeypatch):
    """The dev build's template is the merge base: its lines are replaced, never taken for edits."""
    def dev_edit(template: Path) -> None:
        edit(template / SAMPLE, "TIMEOUT = 30", "TIMEOUT = 45  # dev build")

    dev = helpers.make_version(tmp_path / "pkg-dev", "2.0.0.dev1+gabc1234", edit=dev_edit, released=False)
    release = helpers.make_version(tmp_path / "pkg-2", "2.0.0", edit=helpers.v2_edit)
    use(monkeypatch, dev)
    project = init_repo(tmp_path / "project")
    assert run(capsys, "install", "--defaults", str(project)).code == 0
    assert installed_version(project) == "v2.0.0.dev1+gabc1234"
    commit_all(project, "install a dev build")
    edit(project / SAMPLE, 'return "a"', 'return "a-user-edit"')
    commit_all(project, "user edit")
    use(monkeypatch, release)

    result = run(capsys, "upgrade", str(project))

    assert result.code == 0, result.err
    assert "from v2.0.0.dev1+gabc1234 to v2.0.0" in result.out
    text = (project / SAMPLE).read_text()
    assert "TIMEOUT = 60" in text and "dev build" not in text and "<<<<<<<" not in text
    assert 'return "a-user-edit"' in text
    assert installed_version(project) == "v2.0.0"


def test_upgrade_from_a_subfolder_finds_the_project(project, capsys, monkeypatch):
    sub = project / ".claude" / "orchestrator"
    monkeypatch.chdir(sub)

    result = run(capsys, "upgrade")

    assert result.code == 0, result.err
    assert f"Upgraded {project} from v1.0.0 to v2.0.0" in result.out
    assert not (sub / ".claude").exists()
