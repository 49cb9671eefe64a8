"""The package version from git: a release only at its tag, a dev version that sorts before it elsewhere."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from packaging.version import Version

from .helpers import REPO, commit_all, git, init_repo

_spec = importlib.util.spec_from_file_location("package_version", REPO / "tools" / "package_version.py")
assert _spec is not None and _spec.loader is not None
package_version = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(package_version)


def checkout(path: Path, next_release: str = "0.1.0") -> Path:
    init_repo(path)
    (path / "pyproject.toml").write_text(f'[project]\nname = "x"\n\n[tool.orchestrate-kit]\nnext-release = "{next_release}"\n')
    (path / "template").mkdir()
    (path / "template" / "file.txt").write_text("one\n")
    commit_all(path, "first")
    return path


def sha(path: Path) -> str:
    return git(path, "rev-parse", "--short=7", "HEAD").strip()


def test_untagged_checkout_is_a_dev_build_of_the_next_release(tmp_path):
    repo = checkout(tmp_path / "repo")
    commit_all(repo, "second")

    version = package_version.package_version(repo)

    assert version == f"0.1.0.dev2+g{sha(repo)}"
    assert Version(version) < Version("0.1.0")
    assert not package_version.is_release(version)


def test_the_tag_of_a_clean_checkout_is_the_release(tmp_path):
    repo = checkout(tmp_path / "repo")
    git(repo, "tag", "v0.1.0")
    assert package_version.package_version(repo) == "0.1.0"
    assert package_version.is_release("0.1.0")


def test_after_a_release_and_with_edits_it_is_a_dev_build_of_the_one_after(tmp_path):
    repo = checkout(tmp_path / "repo")
    git(repo, "tag", "v0.1.0")
    (repo / "template" / "file.txt").write_text("edited at the tag\n")
    tagged = sha(repo)
    dirty = package_version.package_version(repo)
    commit_all(repo, "after the release")
    later = package_version.package_version(repo)

    assert dirty == f"0.1.1.dev0+g{tagged}.dirty"
    assert later == f"0.1.1.dev1+g{sha(repo)}"
    assert Version("0.1.0") < Version(dirty) < Version(later) < Version("0.1.1")


def test_next_release_aims_dev_builds_higher(tmp_path):
    repo = checkout(tmp_path / "repo", next_release="0.2.0")
    git(repo, "tag", "v0.1.0")
    commit_all(repo, "work towards 0.2")
    assert package_version.package_version(repo).startswith("0.2.0.dev1+g")


def test_an_sdist_keeps_the_version_it_was_built_with(tmp_path):
    sdist = tmp_path / "orchestrate_kit-0.1.0"
    sdist.mkdir()
    (sdist / "PKG-INFO").write_text("Metadata-Version: 2.4\nName: orchestrate-kit\nVersion: 0.1.0\n")
    (sdist / "pyproject.toml").write_text("[project]\n")
    assert package_version.package_version(sdist) == "0.1.0"
