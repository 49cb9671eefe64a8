"""tools/template_bundle.py: the release history that wheels carry."""

from __future__ import annotations

import subprocess
from pathlib import Path

from . import helpers
from .helpers import commit_all, git


def heads(bundle: Path) -> dict[str, str]:
    out = git(bundle.parent, "bundle", "list-heads", str(bundle))
    return {line.split()[1]: line.split()[0] for line in out.splitlines()}


def test_one_template_only_commit_per_release_tag(tmp_path):
    repo = helpers.tagged_template_repo(tmp_path / "repo", [("v1.0.0", None), ("v2.0.0", helpers.v2_edit)])
    (repo / "README.md").write_text("not template\n")
    commit_all(repo, "docs")
    git(repo, "tag", "v2.1.0rc1")
    git(repo, "tag", "not-a-version")
    git(repo, "tag", "v0.0.1", "HEAD")  # later tags may point anywhere; they still count
    bundle = tmp_path / "out" / "history.bundle"

    tags = helpers.build_bundle(repo, bundle)

    assert tags == ["v0.0.1", "v1.0.0", "v2.0.0", "v2.1.0rc1"]
    assert set(heads(bundle)) == {f"refs/tags/{t}" for t in tags} | {"refs/heads/main", "HEAD"}
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(bundle), str(clone)], check=True)
    assert sorted(git(clone, "ls-tree", "--name-only", "v2.0.0").split()) == ["copier.yml", "template"]
    assert git(clone, "ls-tree", "v1.0.0", "template/watch-status").startswith("120000")
    assert "TIMEOUT = 60" in git(clone, "show", f"v2.0.0:template/{helpers.SAMPLE}")
    assert "TIMEOUT = 30" in git(clone, "show", f"v1.0.0:template/{helpers.SAMPLE}")
    # History in version order: v2.0.0's parent is v1.0.0.
    assert git(clone, "rev-parse", "v2.0.0^") == git(clone, "rev-parse", "v1.0.0")
    # Nothing was written into the source repository.
    assert git(repo, "tag", "--list").split() == sorted(["not-a-version", "v0.0.1", "v1.0.0", "v2.0.0", "v2.1.0rc1"])


def test_tags_without_a_template_are_skipped_and_builds_are_deterministic(tmp_path):
    repo = helpers.init_repo(tmp_path / "repo")
    (repo / "README.md").write_text("before the template existed\n")
    commit_all(repo, "old")
    git(repo, "tag", "v0.1.0")
    helpers.copy_template(repo)
    commit_all(repo, "template")
    git(repo, "tag", "v1.0.0")

    first = helpers.build_bundle(repo, tmp_path / "a.bundle")
    second = helpers.build_bundle(repo, tmp_path / "b.bundle")

    assert first == second == ["v1.0.0"]
    assert heads(tmp_path / "a.bundle") == heads(tmp_path / "b.bundle")


def test_no_release_tags_means_no_bundle(tmp_path):
    repo = helpers.init_repo(tmp_path / "repo")
    helpers.copy_template(repo)
    commit_all(repo, "untagged")
    stale = tmp_path / "history.bundle"
    stale.write_text("stale")

    assert helpers.build_bundle(repo, stale) == []
    assert not stale.exists()
