"""The runtime package, shipped to the nodes as a Ray `py_modules` package (never the repository).

A job's entrypoint is `python3 -m _orchestrate_kit.remote.worker`: the node needs our code, not the
user's repository (the worker clones that itself, at the commit it is given). Ray's `working_dir`
would upload the project folder, so it is never used; instead this zips only `_orchestrate_kit/`
(a few hundred KB of source), names the zip after its content (`_ray_pkg_<sha1>.zip`, the form Ray's
package store takes), uploads it once per content (`PUT /api/packages/gcs/...`, skipped when Ray
has it), and each job names it in `runtime_env.py_modules`: Ray unpacks it on the node and puts it
on the entrypoint's PYTHONPATH. So the node runs exactly the orchestrator's own runtime version,
whatever is committed in the project. Chosen over a bootstrap in the entrypoint (the worker, the
`tc` shim and the MCP stand-in are several modules) and over the copy committed in the project (it
may be older than the orchestrator, or not committed at all).
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path
from typing import Optional, Tuple

from .jobs import JobsClient

PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # .../_orchestrate_kit
_FIXED_TIME = (2020, 1, 1, 0, 0, 0)  # zip entries carry no build time, so equal sources give equal names


def build(root: Path = PACKAGE_ROOT) -> Tuple[str, bytes]:
    """(package name, zip bytes) of the runtime package: `_orchestrate_kit/` and its .py files."""
    buffer = io.BytesIO()
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix == ".py" and "__pycache__" not in p.parts)
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in files:
            info = zipfile.ZipInfo(str(Path(root.name) / path.relative_to(root)), _FIXED_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    data = buffer.getvalue()
    return f"_ray_pkg_{hashlib.sha1(data).hexdigest()}.zip", data


def ensure_uploaded(client: JobsClient, built: Optional[Tuple[str, bytes]] = None) -> str:
    """The `py_modules` URI of the runtime package, uploading it if the cluster lacks it."""
    name, data = built or build()
    if not client.package_exists(name):
        client.upload_package(name, data)
    return f"gcs://{name}"
