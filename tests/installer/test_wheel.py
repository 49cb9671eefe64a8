"""The real wheel path: two built wheels, a venv, install with the first, upgrade with the second.

Offline: the wheels are built without build isolation (hatchling comes from the test extras),
and the throwaway venv sees this venv's packages through a .pth file, so pip installs only
our wheel (--no-index --no-deps). Between the two, the template store is deleted, as on a
teammate's machine that never saw version 1: the wheel's own history bundle must bring it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import yaml

from . import helpers
from .helpers import ANSWERS, NEW_IN_V2, SAMPLE, commit_all, git, init_repo

pytestmark = pytest.mark.slow

SOURCE_PARTS = ("pyproject.toml", "README.md", "copier.yml", "template", "generator", "tools")


def source_copy(dest: Path) -> Path:
    """This checkout's package sources as a fresh git repository (no tags yet)."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *SOURCE_PARTS],
        cwd=helpers.REPO, capture_output=True, text=True, check=True,
    ).stdout
    for rel in sorted({n for n in out.split("\0") if n}):
        source, target = helpers.REPO / rel, dest / rel
        if not os.path.lexists(source):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(os.readlink(source))
        else:
            shutil.copy2(source, target)
    (dest / "template" / SAMPLE).write_text(helpers.SAMPLE_V1)
    init_repo(dest)
    return dest


def release(src: Path, version: str, dist: Path) -> Path:
    """Commit, tag vVERSION and build the wheel: the version comes from the tag."""
    commit_all(src, f"release {version}")
    git(src, "tag", f"v{version}")
    return build_wheel(src, dist, version)


def build_wheel(src: Path, dist: Path, version: str) -> Path:
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(src)],
        check=True, capture_output=True, text=True,
    )
    (wheel,) = dist.glob(f"orchestrate_kit-{version}-*.whl")
    return wheel


def make_venv(path: Path) -> Path:
    """A venv without pip that borrows this venv's packages (copier and friends) read-only."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    (site,) = path.glob("lib/python3*/site-packages")
    (site / "_borrowed_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return path / "bin"


def pip_install(bin_dir: Path, wheel: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(bin_dir / "python"), "install", "--quiet",
         "--no-index", "--no-deps", "--disable-pip-version-check", str(wheel)],
        check=True, capture_output=True, text=True,
    )


def cli(bin_dir: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(bin_dir / "orchestrate-kit"), *args], cwd=cwd, capture_output=True, text=True,
        stdin=subprocess.DEVNULL, check=False,
    )


def test_two_wheels_install_then_upgrade(tmp_path, fake_home):
    src = source_copy(tmp_path / "src")
    wheel1 = release(src, "1.0.0", tmp_path / "dist")
    helpers.v2_edit(src / "template")
    wheel2 = release(src, "2.0.0", tmp_path / "dist")

    with zipfile.ZipFile(wheel2) as archive:
        names = set(archive.namelist())
        symlinks = archive.read("orchestrate_kit/_template/symlinks.txt").decode()
    assert "orchestrate_kit/template-history.bundle" in names
    assert "orchestrate_kit/_template/copier.yml" in names
    assert "orchestrate_kit/_template/template/watch-status" not in names  # wheels hold no symlinks
    assert symlinks == "template/watch-status\t.claude/orchestrator/watch-status\n"

    bin_dir = make_venv(tmp_path / "venv")
    pip_install(bin_dir, wheel1)
    assert cli(bin_dir, "--version", cwd=tmp_path).stdout.strip() == "orchestrate-kit 1.0.0"
    (site,) = (tmp_path / "venv").glob("lib/python3*/site-packages")
    assert list((site / "orchestrate_kit/_template").rglob("__pycache__")), "pip byte-compiled the template"

    project = init_repo(tmp_path / "project")
    installed = cli(bin_dir, "install", "--defaults", str(project), cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr
    assert os.readlink(project / "watch-status") == ".claude/orchestrator/watch-status"
    assert os.access(project / ".claude/orchestrator/watch-status", os.X_OK)
    assert not list(project.rglob("__pycache__"))
    assert yaml.safe_load((project / ANSWERS).read_text())["_commit"] == "v1.0.0"
    sample = project / SAMPLE
    commit_all(project, "install 1.0.0")
    sample.write_text(sample.read_text().replace('return "a"', 'return "a-user-edit"'))
    commit_all(project, "user edit")

    shutil.rmtree(helpers.store_dir(fake_home))  # a machine that never saw 1.0.0
    pip_install(bin_dir, wheel2)
    assert cli(bin_dir, "--version", cwd=tmp_path).stdout.strip() == "orchestrate-kit 2.0.0"
    upgraded = cli(bin_dir, "upgrade", str(project), cwd=tmp_path)

    assert upgraded.returncode == 0, upgraded.stderr
    assert "from v1.0.0 to v2.0.0" in upgraded.stdout
    assert yaml.safe_load((project / ANSWERS).read_text())["_commit"] == "v2.0.0"
    assert 'return "a-user-edit"' in sample.read_text() and "TIMEOUT = 60" in sample.read_text()
    assert (project / NEW_IN_V2).is_file()
    assert not list(project.rglob("__pycache__"))

    commit_all(project, "upgraded")
    copier = Path(sys.executable).with_name("copier")
    plain = subprocess.run([str(copier), "update", "--defaults", "-a", ANSWERS], cwd=project,
                           capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
    assert plain.returncode == 0, plain.stderr
    assert git(project, "status", "--porcelain") == ""


def test_a_dev_wheel_then_the_release_is_a_real_merge(tmp_path, fake_home):
    """An untagged build is NEXT.devN+g<commit>, sorts before the release, and its template is the
    merge base of the upgrade to the release: its lines are replaced, not taken for the user's."""
    src = source_copy(tmp_path / "src")
    dist = tmp_path / "dist"
    wheel1 = release(src, "1.0.0", dist)
    sample_src = src / "template" / SAMPLE
    sample_src.write_text(sample_src.read_text().replace("TIMEOUT = 30", "TIMEOUT = 45  # dev build"))
    commit_all(src, "work in progress")
    dev_version = f"1.0.1.dev1+g{git(src, 'rev-parse', '--short=7', 'HEAD').strip()}"
    dev_wheel = build_wheel(src, dist, dev_version)
    sample_src.write_text(sample_src.read_text().replace("TIMEOUT = 45  # dev build", "TIMEOUT = 60"))
    wheel2 = release(src, "2.0.0", dist)

    bin_dir = make_venv(tmp_path / "venv")
    project = init_repo(tmp_path / "project")
    pip_install(bin_dir, wheel1)
    assert cli(bin_dir, "install", "--defaults", str(project), cwd=tmp_path).returncode == 0
    commit_all(project, "install 1.0.0")
    sample = project / SAMPLE
    sample.write_text(sample.read_text().replace('return "a"', 'return "a-user-edit"'))
    commit_all(project, "user edit")

    pip_install(bin_dir, dev_wheel)
    assert cli(bin_dir, "--version", cwd=tmp_path).stdout.strip() == f"orchestrate-kit {dev_version}"
    to_dev = cli(bin_dir, "upgrade", str(project), cwd=tmp_path)
    assert to_dev.returncode == 0, to_dev.stderr
    assert yaml.safe_load((project / ANSWERS).read_text())["_commit"] == f"v{dev_version}"
    commit_all(project, "on the dev build")

    pip_install(bin_dir, wheel2)
    to_release = cli(bin_dir, "upgrade", str(project), cwd=tmp_path)

    assert to_release.returncode == 0, to_release.stderr
    assert f"from v{dev_version} to v2.0.0" in to_release.stdout
    text = sample.read_text()
    assert "TIMEOUT = 60" in text and "dev build" not in text and "<<<<<<<" not in text
    assert 'return "a-user-edit"' in text
    tags = git(helpers.store_dir(fake_home), "tag", "--list").split()
    assert sorted(tags) == sorted(["v1.0.0", f"v{dev_version}", "v2.0.0"])  # nothing renamed or moved
