"""Build the template-history bundle that the orchestrate-kit wheel ships.

A pip-installed orchestrate-kit has no git history of its template, yet copier needs the
version a project was installed with to compute a three-way update. So every wheel carries a
git bundle holding one commit and one tag ``vX.Y.Z`` per released version, each commit holding
only ``copier.yml`` and ``template/`` as they were at that tag in this repository.

The commits are deterministic (fixed author, the tagged commit's own date, parent = previous
release), so two builds of the same tags give the same commit ids. The new objects are written
into a throwaway repository that borrows this repository's objects, never into this one.

Run alone: ``python tools/template_bundle.py [OUT]`` (``make bundle``). Standard library and
``packaging`` only: the wheel build hook imports it too.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

# packaging comes with hatchling (the build hook) and with copier (make bundle).
from packaging.version import InvalidVersion, Version

# Template-only commits are authored by this identity, at the tagged commit's own time.
AUTHOR = ("orchestrate-kit", "orchestrate-kit@localhost")
TEMPLATE_PATHS = ("copier.yml", "template")
DEFAULT_OUT = Path("generator/orchestrate_kit/template-history.bundle")
def _git(repo: Path | str, *args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> str:
    result = subprocess.run(
        ["git", *args], cwd=repo, env=env, input=stdin, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def _release_version(tag: str) -> Version | None:
    """The version a ``vX.Y.Z`` tag names, or None for any other tag (local versions too)."""
    try:
        version = Version(tag[1:])
    except InvalidVersion:
        return None
    return None if version.local else version


def release_tags(repo: Path) -> list[str]:
    """The repository's ``v*`` release tags that hold a template, oldest first."""
    versions = {t: _release_version(t) for t in _git(repo, "tag", "--list", "v*").split()}
    releases = {t: v for t, v in versions.items() if v is not None and _has_template(repo, t)}
    return sorted(releases, key=releases.__getitem__)


def _has_template(repo: Path, tag: str) -> bool:
    listing = _git(repo, "ls-tree", "--name-only", tag, "--", *TEMPLATE_PATHS).split()
    return set(listing) == set(TEMPLATE_PATHS)


def build_bundle(repo: Path, out: Path) -> list[str]:
    """Write the bundle of every release tag of ``repo`` to ``out``; return the tags it holds.

    With no release tags nothing is written (and a stale ``out`` is removed), because git
    refuses to write an empty bundle and the installer then builds its store from the
    packaged tree alone.
    """
    repo = repo.resolve()
    tags = release_tags(repo)
    if not tags:
        out.unlink(missing_ok=True)
        return []
    objects = Path(_git(repo, "rev-parse", "--git-common-dir").strip())
    if not objects.is_absolute():
        objects = repo / objects
    with tempfile.TemporaryDirectory(prefix="orchestrate-kit-bundle.") as scratch:
        _git(scratch, "init", "--quiet", "--bare")
        # Borrow the repository's objects; new commits land in the scratch repository only.
        (Path(scratch) / "objects/info/alternates").write_text(f"{objects / 'objects'}\n")
        parent: str | None = None
        for tag in tags:
            parent = _template_commit(repo, scratch, tag, parent)
            _git(scratch, "update-ref", f"refs/tags/{tag}", parent)
        _git(scratch, "update-ref", "refs/heads/main", parent or "")
        _git(scratch, "symbolic-ref", "HEAD", "refs/heads/main")
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp_out = out.with_name(out.name + ".tmp")
        _git(scratch, "bundle", "create", "--quiet", str(tmp_out.resolve()), "--all")
        os.replace(tmp_out, out)
    return tags


def _template_commit(repo: Path, scratch: str, tag: str, parent: str | None) -> str:
    """Commit ``copier.yml`` and ``template/`` of ``tag`` as a template-only commit."""
    entries = _git(repo, "ls-tree", tag, "--", *TEMPLATE_PATHS)
    tree = _git(scratch, "mktree", stdin=entries).strip()
    date = _git(repo, "log", "-1", "--format=%cI", f"{tag}^{{commit}}").strip()
    env = dict(
        os.environ,
        GIT_AUTHOR_NAME=AUTHOR[0], GIT_AUTHOR_EMAIL=AUTHOR[1], GIT_AUTHOR_DATE=date,
        GIT_COMMITTER_NAME=AUTHOR[0], GIT_COMMITTER_EMAIL=AUTHOR[1], GIT_COMMITTER_DATE=date,
    )
    args = ["commit-tree", tree, "-m", f"orchestrate-kit template {tag}"]
    if parent:
        args += ["-p", parent]
    return _git(scratch, *args, env=env).strip()


def main(argv: list[str]) -> int:
    """``python tools/template_bundle.py [OUT]``: build the bundle from this repository's tags."""
    repo = Path(__file__).resolve().parents[1]
    out = Path(argv[0]) if argv else repo / DEFAULT_OUT
    tags = build_bundle(repo, out)
    if tags:
        print(f"template_bundle: wrote {out} with {len(tags)} version(s): {' '.join(tags)}")
    else:
        print("template_bundle: no v* release tags with a template; no bundle written")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
