"""The per-user template store: a git repository with one tag per template version.

copier's three-way update needs the version a project was installed with as a git tag of the
template, but a pip-installed orchestrate-kit holds only a plain copy of its own version. So:

- the package ships ``template-history.bundle`` (every released version, one tag each, built
  by ``tools/template_bundle.py``), fetched into the store on every run;
- when the store has no tag for the packaged tree, the packaged tree is committed and tagged
  there. A tag never changes what it names: release names (``vX.Y.Z``) come only from bundles,
  and a bundle never moves a tag the store already has. A dev build's own version
  (``vX.Y.Z.devN+g<commit>``, which sorts before the release) is used when free; a release
  version without its bundle, or a name already taken by another tree (a checkout edited
  since), gets ``+local.N.g<tree>`` (``.local.N.g<tree>`` after a local part), numbered so later
  builds sort after earlier ones.

The store lives in ``$XDG_DATA_HOME/orchestrate-kit/template`` (default
``~/.local/share/orchestrate-kit/template``) and copier is pointed at it as ``~/...`` when it is
under HOME, so the recorded ``_src_path`` works for plain ``copier update`` too. A lock file
keeps two installers from syncing it at once.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import sh
from packaging.version import InvalidVersion, Version

from . import __version__
from .errors import UserError
from .git import git
from .project import SYMLINK, Layout

# Store commits are made by this identity at a fixed time, so the same tree and version give
# the same commit on every machine.
_IDENTITY = {
    "GIT_AUTHOR_NAME": "orchestrate-kit", "GIT_AUTHOR_EMAIL": "orchestrate-kit@localhost",
    "GIT_COMMITTER_NAME": "orchestrate-kit", "GIT_COMMITTER_EMAIL": "orchestrate-kit@localhost",
    "GIT_AUTHOR_DATE": "2000-01-01T00:00:00+00:00", "GIT_COMMITTER_DATE": "2000-01-01T00:00:00+00:00",
}
_SKIP_DIRS = {"__pycache__", ".git"}
_SKIP_SUFFIXES = (".pyc", ".pyo")
_BUNDLE_MARK = "orchestrate-kit-bundle.sha256"
# Where a bundle's tags land before they are checked against the store's own.
_INCOMING = "refs/orchestrate-kit/incoming"


@dataclass(frozen=True)
class PackagedTemplate:
    """The template this installer carries: a folder with copier.yml and template/."""

    root: Path
    version: str
    bundle: Path | None
    # Wheels cannot hold symlinks; the build lists them: (path, target) pairs.
    symlinks: tuple[tuple[str, str], ...] = ()
    # True when running from a checkout (editable install): list files the way git would.
    checkout: bool = False


def packaged_template() -> PackagedTemplate:
    """Find the template: the repository root in a checkout, else the package's data."""
    package = resources.files("orchestrate_kit")
    bundle_res = package.joinpath("template-history.bundle")
    bundle = Path(str(bundle_res)) if bundle_res.is_file() else None
    repo_root = Path(__file__).resolve().parents[2]
    if (repo_root / "copier.yml").is_file() and (repo_root / "template").is_dir():
        # An editable install: the checkout's own template, listed by git when it can.
        return PackagedTemplate(repo_root, __version__, bundle, checkout=(repo_root / ".git").exists())
    data = package.joinpath("_template")
    if not data.joinpath("copier.yml").is_file():
        raise UserError(
            "This orchestrate-kit has no template inside it (a broken build or install).",
            hint="reinstall it: pip install --force-reinstall orchestrate-kit",
        )
    root = Path(str(data))
    listing = root / "symlinks.txt"
    lines = listing.read_text().splitlines() if listing.is_file() else []
    links = tuple((path, target) for path, _, target in (line.partition("\t") for line in lines) if target)
    return PackagedTemplate(root, __version__, bundle, links)


def store_path() -> Path:
    """Where the per-user template repository lives."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "orchestrate-kit" / "template"


def source_for_copier(path: Path) -> str:
    """The store as copier should record it: ``~/...`` under HOME, so it reads the same anywhere."""
    home = Path.home()
    try:
        return "~/" + path.relative_to(home).as_posix()
    except ValueError:
        return str(path)


def tag_for(version: str) -> str:
    """The store tag of a version: ``1.2.0`` -> ``v1.2.0``."""
    return version if version.startswith("v") else f"v{version}"


def version_of(tag: str) -> Version | None:
    """The PEP 440 version a tag or ``_commit`` names, or None if it names none."""
    try:
        return Version(tag[1:] if tag.startswith("v") else tag)
    except InvalidVersion:
        return None


def older_release(ref: str) -> str:
    """How to run the orchestrate-kit that carries template version ``ref`` once (it puts that version in
    this machine's store). It is not on PyPI, so from its git tag, as the README installs it."""
    tag = tag_for(ref)
    return (f"`pipx install --force 'git+<repository URL>@{tag}'` (or a clone at `git checkout {tag}`: "
            "`pipx install --force ./orchestrate-kit`), then `orchestrate-kit doctor` in this project")


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def sync(template: PackagedTemplate, path: Path | None = None) -> str:
    """Bring the store up to date with ``template`` and return the tag that holds its tree."""
    path = path or store_path()
    with _locked(path):
        if not (path / ".git").is_dir():
            path.mkdir(parents=True, exist_ok=True)
            git("init", "--quiet", "--initial-branch=main", cwd=path)
        if template.bundle is not None:
            _fetch_bundle(path, template.bundle)
        tree = _write_tree(path, template)
        tag = _tag_for_tree(path, template.version, tree)
        _check_out_newest(path)
        return tag


def tags(path: Path | None = None) -> list[str]:
    """The store's version tags, oldest first (by PEP 440)."""
    path = path or store_path()
    if not (path / ".git").is_dir():
        return []
    names = git("tag", "--list", "v*", cwd=path).split()
    versioned = [(version_of(name), name) for name in names]
    return [name for v, name in sorted((v, n) for v, n in versioned if v is not None)]


def _fetch_bundle(path: Path, bundle: Path) -> None:
    """Add the bundle's tags the store lacks, unless this very bundle was fetched before.

    A tag the store already has is never moved: projects name the version they were installed
    with by its tag. A clash (a store tag that names another commit) stops everything.
    """
    digest = hashlib.sha256(bundle.read_bytes()).hexdigest()
    mark = path / ".git" / _BUNDLE_MARK
    if mark.is_file() and digest in mark.read_text().split():
        return
    git("fetch", "--quiet", "--force", "--no-tags", str(bundle), f"+refs/tags/*:{_INCOMING}/*", cwd=path)
    incoming = git("for-each-ref", "--format=%(objectname) %(refname)", _INCOMING, cwd=path).split("\n")
    offered = {ref[len(_INCOMING) + 1:]: commit for commit, ref in (line.split(" ", 1) for line in incoming if line)}
    deletes = git("for-each-ref", "--format=delete %(refname)", _INCOMING, cwd=path)
    git("update-ref", "--stdin", cwd=path, stdin=deletes)
    mine = {name: _commit_of(path, name) for name in offered}
    clashes = sorted(name for name, commit in offered.items() if mine[name] not in (None, commit))
    if clashes:
        raise UserError(
            f"The template store {path} has its own {', '.join(clashes)}, made by an earlier development "
            "build, and it differs from the released one; nothing was changed.",
            hint=f"move the store aside (mv {path} {path}.old) and run the command again",
        )
    for name, commit in offered.items():
        if mine[name] is None:
            git("tag", name, commit, cwd=path)
    with open(mark, "a") as handle:
        handle.write(digest + "\n")


def _commit_of(store: Path, tag: str) -> str | None:
    try:
        return git("rev-parse", "--verify", "--quiet", f"refs/tags/{tag}^{{commit}}", cwd=store).strip()
    except sh.ErrorReturnCode:
        return None


def _template_files(template: PackagedTemplate) -> list[str]:
    """copier.yml and the files under template/, relative to the template root."""
    root = template.root
    if template.checkout:
        out = git(
            "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", "copier.yml", "template",
            cwd=root,
        )
        return sorted({n for n in out.split("\0") if n and os.path.lexists(root / n)})
    found = ["copier.yml"]
    for dirpath, dirnames, filenames in os.walk(root / "template"):
        dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS]
        found += [
            (Path(dirpath) / name).relative_to(root).as_posix()
            for name in filenames
            if not name.endswith(_SKIP_SUFFIXES)
        ]
    return sorted(found)


def _write_tree(store: Path, template: PackagedTemplate) -> str:
    """Write the packaged tree into the store's object database and return its tree id."""
    files, links = [], dict(template.symlinks)
    for rel in _template_files(template):
        full = template.root / rel
        if full.is_symlink():
            links[rel] = os.readlink(full)
        elif rel not in links:
            files.append(rel)
    # --no-filters: the user's autocrlf or attributes must not change what we store.
    blobs = git(
        "hash-object", "-w", "--no-filters", "--stdin-paths",
        cwd=store, stdin="".join(str(template.root / rel) + "\n" for rel in files),
    ).split()
    index_lines = [
        f"{_mode(template.root / rel)} {blob}\t{rel}" for rel, blob in zip(files, blobs)
    ]
    for rel, target in sorted(links.items()):
        blob = git("hash-object", "-w", "--stdin", cwd=store, stdin=target).strip()
        index_lines.append(f"120000 {blob}\t{rel}")
    with tempfile.TemporaryDirectory(prefix="orchestrate-kit-index.") as scratch:
        env = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
        git("update-index", "--add", "-z", "--index-info", cwd=store, env=env,
            stdin="".join(line + "\0" for line in index_lines))
        return git("write-tree", cwd=store, env=env).strip()


def _mode(path: Path) -> str:
    return "100755" if os.stat(path).st_mode & 0o100 else "100644"


def _tree_of(store: Path, tag: str) -> str | None:
    try:
        return git("rev-parse", "--verify", "--quiet", f"refs/tags/{tag}^{{tree}}", cwd=store).strip()
    except sh.ErrorReturnCode:
        return None


def _tag_for_tree(store: Path, version: str, tree: str) -> str:
    """The tag naming this version with exactly this tree, made if there is none yet."""
    name = tag_for(version)
    named_tree = _tree_of(store, name)
    if named_tree == tree:
        return name
    parsed = version_of(name)
    local_prefix = name + ("." if parsed is not None and parsed.local else "+") + "local."
    local_tags = [t for t in tags(store) if t.startswith(local_prefix)]
    for local in local_tags:
        if _tree_of(store, local) == tree:
            return local
    # A dev version names one commit and no release will ever take it; a release name is left
    # to the bundles, and a taken name to the tree it has.
    dev_build = parsed is not None and (parsed.is_devrelease or parsed.local is not None)
    if not (dev_build and named_tree is None):
        name = f"{local_prefix}{len(local_tags) + 1}.g{tree[:10]}"
    commit = git(
        "commit-tree", tree, "-m", f"orchestrate-kit template {name}", cwd=store, env=_IDENTITY
    ).strip()
    git("tag", name, commit, cwd=store)
    return name


def _check_out_newest(store: Path) -> None:
    """Keep ``main`` and the work tree at the newest version, for people browsing the store."""
    newest = tags(store)[-1]
    commit = git("rev-parse", f"refs/tags/{newest}^{{commit}}", cwd=store).strip()
    try:
        head = git("rev-parse", "--verify", "--quiet", "HEAD", cwd=store).strip()
    except sh.ErrorReturnCode:
        head = ""
    if head != commit:
        # No hooks: a global core.hooksPath of the user's has no business in our store.
        git("-c", "core.hooksPath=/dev/null", "checkout", "--quiet", "--force", "-B", "main", commit, cwd=store)


def layout(ref: str, path: Path | None = None) -> Layout:
    """The files the template renders at ``ref``: project path -> git mode, plus link targets.

    ``.jinja`` suffixes are dropped; the answers file's own template is left out (its name is
    rendered by copier from ``_answers_file``).
    """
    path = path or store_path()
    out = git("ls-tree", "-r", "-z", ref, "--", "template/", cwd=path)
    modes, links = {}, {}
    for entry in filter(None, out.split("\0")):
        meta, name = entry.split("\t", 1)
        rel = name[len("template/"):]
        if "{{" in rel:
            continue
        mode, _kind, blob = meta.split()
        rel = rel.removesuffix(".jinja")
        modes[rel] = mode
        if mode == SYMLINK:
            links[rel] = git("cat-file", "blob", blob, cwd=path)
    return Layout(modes, links)


def has_ref(ref: str, path: Path | None = None) -> bool:
    """Whether the store holds the template version ``ref`` (a tag, or a commit)."""
    path = path or store_path()
    if ref.startswith("-") or not (path / ".git").is_dir():  # a ref from a file is data, not an option
        return False
    try:
        git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", cwd=path)
    except sh.ErrorReturnCode:
        return False
    return True
