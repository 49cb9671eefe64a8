"""The Ray Job Submission REST API from the standard library (urllib), with one-line errors.

Calls (Ray 2.60's dashboard, the head's port 8265 by default):
- `POST /api/jobs/` submit; the submission id is `<run>-<stream>-<attempt>`, so a repeat is
  answered HTTP 500 "already exists" and means "already submitted": a job is never submitted twice.
- `GET /api/jobs/{id}`, `POST /api/jobs/{id}/stop`, `DELETE /api/jobs/{id}`,
  `GET /api/jobs/{id}/logs`, `GET /api/jobs/` (filtered here on our run's metadata: adoption).
- `GET /api/version` (the API version and Ray's), `GET /api/v0/nodes` (the state API: each node's
  `resources_total`, so `doctor` can tell whether some node advertises `agent_slot`).
- `GET|PUT /api/packages/gcs/{name}` (the runtime package for `py_modules`, see `package.py`).

The token is read the way Ray's own tools read it (Ray's `AuthenticationTokenLoader`): a non-empty
`RAY_AUTH_TOKEN`, else the first line of the file `RAY_AUTH_TOKEN_PATH` names (an error if that
file is missing or empty), else the first line of `~/.ray/auth_token`; whitespace trimmed. It is
sent as `Authorization: Bearer <token>`. Without a token a token-mode cluster answers 401 (every
route, `/api/version` too); a wrong one 403.

Secrets never go into a job: the jobs API echoes `runtime_env` (its env vars too) back in plain text
to any API client, so `job_request` refuses variables whose names look like credentials; nodes
have their git and Claude Code credentials provisioned.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

SLOT_RESOURCE = "agent_slot"
NODE_LABEL = "ray.io/node-id"  # every node's label with its id (Ray 2.60)
TERMINAL = ("STOPPED", "SUCCEEDED", "FAILED")
DEFAULT_TIMEOUT = 10.0
SUPPORTED_API_VERSION = "4"  # /api/version's "version" in Ray 2.x (2.60.0 answers 4)
# Names that look like credentials: never in a job's runtime_env (the jobs API echoes it back).
_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSW|CREDENTIAL|API_?KEY|PRIVATE|AUTH|COOKIE|SESSION_KEY", re.I)
_ID_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


class RayError(Exception):
    """A Ray call failed; the message is one line a user can act on."""


class RayUnreachable(RayError):
    """Nothing answered at the address (refused, timed out, unknown host)."""


class RayAuthError(RayError):
    """The cluster wants a token (401) or refused ours (403)."""


class NotRay(RayError):
    """Something answered, but not a Ray dashboard."""


# ---------------------------------------------------------------- the token


@dataclass(frozen=True)
class Token:
    value: str
    source: str  # where it came from, for messages (never the value)


def read_token(environ: Optional[Mapping[str, str]] = None, home: Optional[Path] = None) -> Optional[Token]:
    """The cluster token as Ray's tools find it, or None; RayAuthError if RAY_AUTH_TOKEN_PATH is unusable."""
    env = os.environ if environ is None else environ
    value = (env.get("RAY_AUTH_TOKEN") or "").strip()
    if value:
        return Token(value, "RAY_AUTH_TOKEN")
    path = env.get("RAY_AUTH_TOKEN_PATH") or ""
    if path:
        value = _first_line(Path(path))
        if not value:
            raise RayAuthError(f"RAY_AUTH_TOKEN_PATH is set but {path} cannot be read or is empty")
        return Token(value, f"RAY_AUTH_TOKEN_PATH ({path})")
    default = (home or Path(env.get("HOME") or Path.home())) / ".ray" / "auth_token"
    value = _first_line(default)
    return Token(value, str(default)) if value else None


def _first_line(path: Path) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.readline().strip()
    except OSError:
        return ""


# ---------------------------------------------------------------- what Ray says about a job


@dataclass(frozen=True)
class JobInfo:
    """One job as `GET /api/jobs/{id}` describes it (the fields we use)."""

    submission_id: str
    status: str  # PENDING, RUNNING, STOPPED, SUCCEEDED, FAILED
    message: str = ""
    metadata: Dict[str, str] = field(default_factory=dict)
    exit_code: Optional[int] = None  # the entrypoint's, when it ran to an end
    node_id: Optional[str] = None  # the node the entrypoint runs on, once it started
    start_time: Optional[float] = None  # seconds since the epoch (Ray sends milliseconds)
    end_time: Optional[float] = None
    error_type: Optional[str] = None
    entrypoint: str = ""

    @property
    def ended(self) -> bool:
        return self.status in TERMINAL

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "JobInfo":
        metadata = data.get("metadata") or {}
        code = data.get("driver_exit_code")
        return cls(str(data.get("submission_id") or ""), str(data.get("status") or ""),
                   str(data.get("message") or ""),
                   {str(k): str(v) for k, v in metadata.items()} if isinstance(metadata, dict) else {},
                   code if isinstance(code, int) else None, data.get("driver_node_id") or None,
                   _seconds(data.get("start_time")), _seconds(data.get("end_time")),
                   data.get("error_type") or None, str(data.get("entrypoint") or ""))


def _seconds(millis: Any) -> Optional[float]:
    return millis / 1000.0 if isinstance(millis, (int, float)) else None


@dataclass(frozen=True)
class NodeInfo:
    node_id: str
    alive: bool
    is_head: bool
    resources: Dict[str, float]
    name: str = ""  # Ray's node_name (its address unless the node was started with a name)

    @property
    def slots(self) -> float:
        return self.resources.get(SLOT_RESOURCE, 0.0)

    def describe(self) -> str:
        """For people: 'node 10.0.0.7 (6a433a19)'."""
        return f"node {self.name} ({self.node_id[:8]})" if self.name else f"node {self.node_id[:8]}"


# ---------------------------------------------------------------- what we submit


def submission_id(run: str, stream: str, attempt: int) -> str:
    """`<run>-<stream>-<attempt>`: one id per attempt, so a repeated submit is recognised."""
    for name, part in (("run", run), ("stream", stream)):
        if not _ID_PART.match(part) or len(part) > 100:
            raise ValueError(f"{name} {part!r} cannot be part of a Ray submission id (letters, digits, ._+- only)")
    return f"{run}-{stream}-{int(attempt)}"


def secret_names(env: Mapping[str, str]) -> List[str]:
    """The names in `env` that look like credentials (ours, ORCHESTRATE_KIT_TOKEN, is an identity)."""
    return sorted(k for k in env if k != "ORCHESTRATE_KIT_TOKEN" and _SECRET_NAME.search(k))


def job_request(run: str, stream: str, attempt: int, token: str, entrypoint: str, env: Mapping[str, str],
                stop_grace: float, py_modules: Sequence[str] = (), slots: float = 1,
                extra_resources: Optional[Mapping[str, float]] = None, node_id: Optional[str] = None,
                number: Optional[int] = None) -> Dict[str, Any]:
    """The body of `POST /api/jobs/` for one attempt. Refuses any variable that looks like a secret.

    `number` (default: the attempt) names the submission: a resume after a usage limit repeats the
    attempt number (that attempt is not counted), so the executor numbers its own submissions.

    `node_id` pins the job to one node (a resumed Claude Code session lives in that node's
    ~/.claude): Ray's `entrypoint_label_selector` on the node's `ray.io/node-id` label. A job pinned
    to a node that is gone stays pending, so check `node_alive` first and start afresh without it."""
    leaked = secret_names(env)
    if leaked:
        raise RayError(f"refusing to send {', '.join(leaked)} to the Ray cluster: a job's environment is "
                       "shown in plain text by the jobs API; provision credentials on the nodes instead")
    env_vars = {str(k): str(v) for k, v in env.items()}
    # Ray's job supervisor reads this from its own environment (the runtime_env's): TERM, then KILL
    # after this many seconds. Its default is 3 s, shorter than our stop grace.
    env_vars["RAY_JOB_STOP_WAIT_TIME_S"] = str(max(1, int(round(stop_grace))))
    runtime_env: Dict[str, Any] = {"env_vars": env_vars}
    if py_modules:
        runtime_env["py_modules"] = list(py_modules)
    resources = {SLOT_RESOURCE: float(slots), **{k: float(v) for k, v in (extra_resources or {}).items()}}
    body: Dict[str, Any] = {
        "submission_id": submission_id(run, stream, attempt if number is None else number),
        "entrypoint": entrypoint,
        "entrypoint_resources": resources,
        "metadata": {"orchestrate_run": run, "orchestrate_stream": stream, "orchestrate_attempt": str(attempt),
                     "orchestrate_token": token},
        "runtime_env": runtime_env,
    }
    if node_id:
        body["entrypoint_label_selector"] = {NODE_LABEL: node_id}
    return body


def node_alive(nodes: Sequence["NodeInfo"], node_id: Optional[str]) -> bool:
    """Whether a job pinned to `node_id` could run: the node is alive and takes agents."""
    return any(n.node_id == node_id and n.alive and n.slots > 0 for n in nodes)


# ---------------------------------------------------------------- the client


@dataclass(frozen=True)
class Submitted:
    submission_id: str
    already: bool  # True: Ray had this id already (an earlier submit got through); nothing new started


class JobsClient:
    """One cluster's jobs API. Each call is one HTTP request with a timeout; errors are RayError."""

    def __init__(self, address: str, token: Optional[Token] = None, timeout: float = DEFAULT_TIMEOUT):
        self.address = normalise_address(address)
        self.token = token
        self.timeout = timeout
        # The dashboard is addressed directly: a proxy set for the user's web traffic is not for it.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    @classmethod
    def from_environment(cls, address: str, environ: Optional[Mapping[str, str]] = None,
                         timeout: float = DEFAULT_TIMEOUT) -> "JobsClient":
        return cls(address, read_token(environ), timeout)

    def headers(self) -> Dict[str, str]:
        return {"Authorization": f"Bearer {self.token.value}"} if self.token else {}

    # -- the calls

    def version(self) -> Dict[str, Any]:
        """`/api/version`: {"version": "4", "ray_version": "2.60.0", ...}; NotRay if it is not Ray."""
        status, body = self._call("GET", "/api/version")
        data = _json_or_none(body)
        if status != 200 or not isinstance(data, dict) or "ray_version" not in data:
            raise NotRay(f"{self.address} is not a Ray dashboard: GET /api/version answered HTTP {status} "
                         f"{_snippet(body)}; set ray_address to the head's dashboard URL (http://HEAD:8265)")
        return data

    def submit(self, request: Mapping[str, Any]) -> Submitted:
        """Submit once. A repeated submission id is reported as `already`, never submitted again."""
        sid = str(request["submission_id"])
        status, body = self._call("POST", "/api/jobs/", request, timeout=max(self.timeout, 60.0))
        if status == 200:
            return Submitted(sid, False)
        if status == 500 and "already exists" in body:
            return Submitted(sid, True)
        raise self._failure("submit job", sid, status, body)

    def info(self, sid: str) -> Optional[JobInfo]:
        """The job, or None if Ray has no job by that id."""
        data = self._json("GET", f"/api/jobs/{_quote(sid)}", "read job", sid, dict)
        return None if data is None else JobInfo.from_json(data)

    def stop(self, sid: str) -> bool:
        """Ask Ray to stop the job (TERM, then KILL after RAY_JOB_STOP_WAIT_TIME_S). False if it had ended."""
        data = self._json("POST", f"/api/jobs/{_quote(sid)}/stop", "stop job", sid, dict)
        return bool(data and data.get("stopped"))

    def delete(self, sid: str) -> bool:
        """Forget an ended job (Ray refuses to delete one still running: that is an error here)."""
        data = self._json("DELETE", f"/api/jobs/{_quote(sid)}", "delete job", sid, dict)
        return bool(data and data.get("deleted"))

    def logs(self, sid: str) -> str:
        """Everything the job printed so far (the fallback when the WebSocket tail fails); '' if Ray has no such job."""
        data = self._json("GET", f"/api/jobs/{_quote(sid)}/logs", "read the logs of job", sid, dict)
        return str((data or {}).get("logs") or "")

    def jobs(self, run: Optional[str] = None) -> List[JobInfo]:
        """Submitted jobs, only our run's when `run` is given (what an orchestrator adopts after a restart)."""
        data = self._json("GET", "/api/jobs/", "list the jobs", "", list) or []
        found = [JobInfo.from_json(d) for d in data if isinstance(d, dict) and d.get("submission_id")]
        return [j for j in found if run is None or j.metadata.get("orchestrate_run") == run]

    def _json(self, method: str, path: str, what: str, target: str, shape: type) -> Any:
        """The JSON answer of one call, None when Ray says it has no such job; RayError otherwise."""
        status, body = self._call(method, path)
        if status == 404 and body.startswith("Job ") and "does not exist" in body:
            return None
        data = _json_or_none(body)
        if status != 200 or not isinstance(data, shape):
            raise self._failure(what, target, status, body)
        return data

    def nodes(self) -> List[NodeInfo]:
        """Every node the cluster knows, with its total resources (the state API)."""
        status, body = self._call("GET", "/api/v0/nodes?limit=10000")
        data = _json_or_none(body)
        try:
            rows = data["data"]["result"]["result"]
        except (TypeError, KeyError):
            raise self._failure("list the nodes", "", status, body) from None
        return [NodeInfo(str(r.get("node_id")), r.get("state") == "ALIVE", bool(r.get("is_head_node")),
                         {str(k): float(v) for k, v in (r.get("resources_total") or {}).items()},
                         str(r.get("node_name") or r.get("node_ip") or ""))
                for r in rows if isinstance(r, dict)]

    def package_exists(self, name: str) -> bool:
        status, body = self._call("GET", f"/api/packages/gcs/{_quote(name)}")
        if status in (200, 404):
            return status == 200
        raise self._failure("look up the package", name, status, body)

    def upload_package(self, name: str, data: bytes) -> None:
        status, body = self._call("PUT", f"/api/packages/gcs/{_quote(name)}", raw=data,
                                  timeout=max(self.timeout, 60.0))
        if status != 200:
            raise self._failure("upload the package", name, status, body)

    def tail_url(self, sid: str) -> str:
        """The WebSocket URL of a job's log tail."""
        scheme = "wss" if self.address.startswith("https:") else "ws"
        return f"{scheme}{self.address[self.address.index(':'):]}/api/jobs/{_quote(sid)}/logs/tail"

    # -- HTTP

    def _call(self, method: str, path: str, payload: Any = None, raw: Optional[bytes] = None,
              timeout: Optional[float] = None) -> Tuple[int, str]:
        """(status, body text); RayUnreachable when nothing answers, RayAuthError on 401/403."""
        data = raw if raw is not None else (json.dumps(payload).encode() if payload is not None else None)
        headers = {"Accept": "application/json", **self.headers()}
        if payload is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.address + path, data=data, method=method, headers=headers)
        try:
            with self._opener.open(request, timeout=timeout or self.timeout) as response:
                status, body = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, body = error.code, error.read()
        except http.client.HTTPException as error:  # something answered, not in HTTP (a GCS or Ray Client port)
            raise NotRay(f"{self.address} does not speak HTTP ({type(error).__name__}); set ray_address to the "
                         "head's dashboard URL (http://HEAD:8265), not the GCS (6379) or Ray Client (10001) "
                         "port") from None
        except (urllib.error.URLError, OSError, ValueError) as error:
            raise RayUnreachable(f"cannot reach the Ray cluster at {self.address}: {_why(error)}; check "
                                 "ray_address (the head's dashboard URL, e.g. http://HEAD:8265) and that the "
                                 "head node is up") from None
        text = body.decode("utf-8", "replace")
        if status == 401:
            raise RayAuthError(f"the Ray cluster at {self.address} wants a token (HTTP 401): set RAY_AUTH_TOKEN, "
                               "RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token as for Ray's own tools")
        if status == 403:
            source = self.token.source if self.token else "nowhere"
            raise RayAuthError(f"the Ray cluster at {self.address} refused the token from {source} (HTTP 403): "
                               "use the cluster's token (`ray get-auth-token` on the head)")
        return status, text

    def _failure(self, what: str, target: str, status: int, body: str) -> RayError:
        """`what` is a verb phrase ("submit job"), `target` what it was done to."""
        action = f"{what} {target}".strip()
        if status in (404, 405) or (_json_or_none(body) is None and "<html" in body.lower()):
            return NotRay(f"{self.address} did not answer like a Ray dashboard when asked to {action} "
                          f"(HTTP {status} {_snippet(body)}); set ray_address to the head's dashboard URL")
        return RayError(f"Ray could not {action}: HTTP {status} {_snippet(body)}")


def normalise_address(address: str) -> str:
    """`head:8265` or `http://head:8265/` -> `http://head:8265`; `ray://` and GCS ports are not the jobs API."""
    text = (address or "").strip().rstrip("/")
    if not text:
        raise RayError("no Ray address: set ray_address to the head's dashboard URL (e.g. http://HEAD:8265)")
    if "://" not in text:
        text = "http://" + text
    scheme = text.split("://", 1)[0].lower()
    if scheme not in ("http", "https"):
        raise RayError(f"ray_address {address!r} is not a dashboard URL: the jobs API is HTTP "
                       "(e.g. http://HEAD:8265), not ray:// (the Ray Client port)")
    return text


def _quote(part: str) -> str:
    return urllib.parse.quote(part, safe="")


def _json_or_none(body: str) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def _snippet(body: str, limit: int = 200) -> str:
    """The useful line of an answer: Ray's errors end in a traceback whose last line says what went wrong."""
    lines = [line.strip() for line in body.strip().splitlines() if line.strip() and line.strip() != "."]
    text = lines[-1] if lines else "(empty answer)"
    for line in reversed(lines):
        if "Error:" in line or "error" in line.lower():
            text = line
            break
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _why(error: BaseException) -> str:
    reason = getattr(error, "reason", error)
    if isinstance(reason, socket.timeout) or "timed out" in str(reason):
        return "no answer (timed out)"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, socket.gaierror):
        return "unknown host"
    return " ".join(str(getattr(reason, "strerror", None) or reason).split()) or type(reason).__name__


# ---------------------------------------------------------------- what a pending job waits for


def pending_reason(job: JobInfo, nodes: Sequence[NodeInfo], slots: float = 1) -> Optional[str]:
    """Why a PENDING job has not started, in one line, or None if it is not pending."""
    if job.status != "PENDING":
        return None
    alive = [n for n in nodes if n.alive]
    if not any(n.slots >= slots for n in alive):
        return (f"no live node has {slots:g} {SLOT_RESOURCE} (start worker nodes with "
                f"--resources '{{\"{SLOT_RESOURCE}\": N}}'); Ray keeps the job pending")
    return "waiting for a free agent slot (every node's agent_slot is taken) or for its runtime environment"


# ---------------------------------------------------------------- what doctor checks


@dataclass(frozen=True)
class Check:
    ok: bool
    message: str


def probe(api: JobsClient, slots: float = 1) -> List[Check]:
    """The cluster as `doctor` reports it: reachable with our token, Ray's API version, agent slots.

    Stops at the first failure (a later check means nothing without it). Never raises RayError.
    """
    try:
        version = api.version()
    except RayError as error:
        return [Check(False, str(error))]
    checks = [Check(True, f"Ray {version.get('ray_version')} at {api.address} (jobs API version "
                          f"{version.get('version')}){', token from ' + api.token.source if api.token else ''}")]
    if str(version.get("version")) != SUPPORTED_API_VERSION:
        checks.append(Check(False, f"the jobs API is version {version.get('version')}; this runtime speaks version "
                                   f"{SUPPORTED_API_VERSION} (Ray 2.x)"))
        return checks
    try:
        nodes = api.nodes()
    except RayError as error:
        return checks + [Check(False, str(error))]
    able = [n for n in nodes if n.alive and n.slots >= slots]
    if able:
        total = sum(n.slots for n in able)
        checks.append(Check(True, f"{len(able)} node(s) advertise {SLOT_RESOURCE}, {total:g} agent(s) in all"))
    else:
        checks.append(Check(False, f"no live node advertises {SLOT_RESOURCE}: jobs would stay pending; start "
                                   f"worker nodes with --resources '{{\"{SLOT_RESOURCE}\": N}}'"))
    return checks
