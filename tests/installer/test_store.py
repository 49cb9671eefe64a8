"""The per-user template store: tags per version, dev tags for edited trees, bundles, the lock."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from orchestrate_kit import store
from orchestrate_kit.store import PackagedTemplate

from . import helpers
from .helpers import git


def ls_tree(store_path: Path, ref: str) -> dict[str, str]:
    out = git(store_path, "ls-tree", "-r", ref)
    return {line.split("\t")[1]: line.split()[0] for line in out.splitlines()}


def test_store_lives_under_xdg_data_home_or_local_share(fake_home, monkeypatch, tmp_path):
    assert store.store_path() == fake_home / ".local/share/orchestrate-kit/template"
    assert store.source_for_copier(store.store_path()) == "~/.local/share/orchestrate-kit/template"
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert store.store_path() == tmp_path / "data/orchestrate-kit/template"
    assert store.source_for_copier(store.store_path()) == str(tmp_path / "data/orchestrate-kit/template")


def test_sync_tags_the_packaged_tree_once(tmp_path, fake_home):
    version = helpers.make_version(tmp_path / "pkg", "1.0.0")

    first = store.sync(version)
    second = store.sync(version)

    path = helpers.store_dir(fake_home)
    assert first == second == "v1.0.0"
    assert store.tags(path) == ["v1.0.0"]
    tree = ls_tree(path, "v1.0.0")
    assert tree["copier.yml"] == "100644"
    assert tree["template/watch-status"] == "120000"
    assert tree["template/.claude/orchestrator/check-streams"] == "100755"
    assert git(path, "cat-file", "blob", "v1.0.0:template/watch-status") == ".claude/orchestrator/watch-status"
    # The store's work tree shows the newest version, for anyone who looks.
    assert (path / "copier.yml").is_file()


def test_store_commits_are_the_same_on_every_machine(tmp_path, monkeypatch):
    version = helpers.make_version(tmp_path / "pkg", "1.0.0")
    a, b = tmp_path / "machine-a", tmp_path / "machine-b"
    store.sync(version, a)
    store.sync(version, b)
    assert git(a, "rev-parse", "v1.0.0") == git(b, "rev-parse", "v1.0.0")


def test_an_edited_tree_of_the_same_version_gets_its_own_local_tag(tmp_path, fake_home):
    version = helpers.make_version(tmp_path / "pkg", "1.0.0")
    assert store.sync(version) == "v1.0.0"
    sample = version.root / "template" / helpers.SAMPLE

    sample.write_text(sample.read_text() + "# edit one\n")
    first_dev = store.sync(version)
    sample.write_text(sample.read_text() + "# edit two\n")
    second_dev = store.sync(version)
    sample.write_text(helpers.SAMPLE_V1)
    back = store.sync(version)

    assert first_dev.startswith("v1.0.0+local.1.g") and second_dev.startswith("v1.0.0+local.2.g")
    assert back == "v1.0.0"
    # Later dev builds sort later, so an update between them never looks like a downgrade.
    assert store.version_of(first_dev) < store.version_of(second_dev)
    assert store.tags()[-1] == second_dev


def test_wheel_style_template_symlinks_from_the_list_and_no_bytecode(tmp_path, fake_home):
    """A wheel holds no symlinks and pip adds __pycache__: the store restores one, skips the other."""
    version = helpers.make_version(tmp_path / "pkg", "1.0.0")
    link = version.root / "template" / "watch-status"
    link.unlink()
    cache = version.root / "template/.claude/orchestrator/__pycache__"
    cache.mkdir()
    (cache / "x.cpython-311.pyc").write_bytes(b"\0")
    wheel_like = PackagedTemplate(
        version.root, "1.0.0", version.bundle,
        symlinks=(("template/watch-status", ".claude/orchestrator/watch-status"),),
    )

    assert store.sync(wheel_like) == "v1.0.0"  # the same tree as the release's

    tree = ls_tree(helpers.store_dir(fake_home), "v1.0.0")
    assert tree["template/watch-status"] == "120000"
    assert not any("__pycache__" in name or name.endswith(".pyc") for name in tree)


def test_a_release_name_comes_only_from_a_bundle(tmp_path, fake_home):
    """A release version without its bundle (an editable install at a tag) gets a local name,
    so the real release's bundle later adds vX.Y.Z beside it and no tag changes meaning."""
    unbundled = helpers.make_version(tmp_path / "unbundled", "2.0.0", edit=helpers.v2_edit, released=False)
    local = store.sync(unbundled)
    path = helpers.store_dir(fake_home)
    local_commit = git(path, "rev-parse", local)
    repo = helpers.tagged_template_repo(tmp_path / "history", [("v1.0.0", None), ("v2.0.0", helpers.v2_edit)])
    bundle = tmp_path / "history.bundle"
    helpers.build_bundle(repo, bundle)
    released = helpers.make_version(tmp_path / "pkg-2", "2.0.0", edit=helpers.v2_edit, bundle=bundle)

    assert local.startswith("v2.0.0+local.1.g")
    assert store.sync(released) == "v2.0.0"
    assert store.tags(path) == ["v1.0.0", "v2.0.0", local]
    assert git(path, "rev-parse", local) == local_commit
    assert store.layout("v1.0.0").links == {"watch-status": ".claude/orchestrator/watch-status"}


def test_a_dev_build_keeps_its_own_name_which_sorts_before_the_release(tmp_path, fake_home):
    dev = helpers.make_version(tmp_path / "dev", "2.0.0.dev3+gabc1234", edit=helpers.v2_edit, released=False)
    assert store.sync(dev) == "v2.0.0.dev3+gabc1234"
    sample = dev.root / "template" / helpers.SAMPLE
    sample.write_text(sample.read_text() + "# uncommitted edit\n")
    edited = store.sync(dev)

    assert edited.startswith("v2.0.0.dev3+gabc1234.local.1.g")
    assert store.version_of("v1.0.0") < store.version_of("v2.0.0.dev3+gabc1234") < store.version_of(edited)
    assert store.version_of(edited) < store.version_of("v2.0.0")


def test_a_bundle_never_moves_a_tag_the_store_has(tmp_path, fake_home):
    """A store made by an old development build holds its own v2.0.0: stop, change nothing."""
    path = helpers.store_dir(fake_home)
    odd = helpers.make_version(tmp_path / "odd", "2.0.0", edit=lambda t: (t / "odd.txt").write_text("odd\n"))
    store.sync(odd)
    before = git(path, "show-ref", "--tags")
    repo = helpers.tagged_template_repo(tmp_path / "history", [("v1.0.0", None), ("v2.0.0", helpers.v2_edit)])
    bundle = tmp_path / "history.bundle"
    helpers.build_bundle(repo, bundle)
    v2 = helpers.make_version(tmp_path / "pkg-2", "2.0.0", edit=helpers.v2_edit, bundle=bundle)

    from orchestrate_kit.errors import UserError

    with pytest.raises(UserError, match="has its own v2.0.0") as raised:
        store.sync(v2)

    assert "mv " in (raised.value.hint or "")
    assert git(path, "show-ref", "--tags") == before
    assert "incoming" not in git(path, "for-each-ref")


def test_layout_lists_project_paths(tmp_path):
    version = helpers.make_version(tmp_path / "pkg", "1.0.0")
    ref = store.sync(version)

    layout = store.layout(ref)

    assert ".claude/orchestrator/orchestrator.conf" in layout.modes  # .jinja suffix dropped
    assert not any("{{" in rel for rel in layout.modes)  # the answers file's template is not a path
    assert ".claude/orchestrator/check-streams" in layout.scripts
    assert "watch-status" in layout.links and "watch-status" not in layout.files


def test_has_ref_treats_refs_as_data(tmp_path):
    store.sync(helpers.make_version(tmp_path / "pkg", "1.0.0"))
    assert store.has_ref("v1.0.0")
    assert not store.has_ref("v9.9.9")
    assert not store.has_ref("--output=/tmp/x")


def test_concurrent_syncs_agree(tmp_path, fake_home):
    version = helpers.make_version(tmp_path / "pkg", "1.0.0")
    results: list[str] = []
    errors: list[BaseException] = []

    def sync() -> None:
        try:
            results.append(store.sync(version))
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=sync) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not errors
    assert results == ["v1.0.0"] * 4
    assert store.tags(helpers.store_dir(fake_home)) == ["v1.0.0"]


def test_a_broken_package_without_template_is_a_user_error(tmp_path, monkeypatch):
    """packaged_template() outside a checkout reads package data; missing data is said plainly."""
    from orchestrate_kit.errors import UserError

    fake_pkg = tmp_path / "site" / "orchestrate_kit"
    fake_pkg.mkdir(parents=True)
    monkeypatch.setattr(store, "__file__", str(fake_pkg / "store.py"))
    monkeypatch.setattr(store.resources, "files", lambda name: fake_pkg)

    with pytest.raises(UserError, match="no template inside it"):
        store.packaged_template()
    assert os.listdir(fake_pkg) == []
