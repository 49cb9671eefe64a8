"""What the Ray executor keeps on disk, so a restarted orchestrator, `stop` and `status` know its jobs.

Under the state folder (`state/ray/`, inside the git directory in a git project):

    run.json            the executor's run id (one per integration branch: it names every job and
                        attempt ref), the cluster's address, how many jobs each stream has had (job ids
                        never repeat: a resume after a usage limit repeats its attempt number), and the
                        node each stream's last job ran on (a resumed session goes back there)
    jobs/<job>.json     one per job submitted, or about to be: written before the submit, removed once
                        its work is fetched and Ray has forgotten it
    jobs/<job>.tail.json, jobs/<job>.applied.json
                        the log tail's byte count and the applier's last update, kept across restarts

Every file is written whole (atomic.py): a reader sees the old or the new content. Reading needs
no network, so `status` shows each job's node from here. Standard library only.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ...atomic import write_text

# A job's phase: being submitted; submitted (Ray has it, or may: a submit that timed out); or a
# leftover: reported ended (a pending job we stopped, which Ray keeps pending) and deleted once Ray lets us.
SUBMITTING, SUBMITTED, LEFTOVER = "submitting", "submitted", "leftover"


@dataclass(frozen=True)
class JobRecord:
    """One job as the executor submitted it."""

    sid: str  # Ray's submission id, `<run>-<name>-<number>`
    run: str
    stream_id: str
    name: str  # the stream's safe name (names.safe_name): branches and refs
    attempt: int  # the lifecycle's attempt number (the job's log lines and refs carry it)
    token: str  # the attempt's token: only the live attempt's ref carries it (fencing)
    started_at: float
    log: str  # the stream's local log, which the tail writes
    generation: str  # the tracker's: mcp or tc
    task_ids: Tuple[str, ...]  # the stream's tasks when it was submitted: the only ones its lines may update
    phase: str = SUBMITTING
    node_id: str = ""
    where: str = ""  # for people: the node it runs on, or that it waits for one
    pinned: str = ""  # the node it was pinned to (a resumed session), if any

    @classmethod
    def from_json(cls, data: dict) -> "JobRecord":
        data = dict(data, task_ids=tuple(str(t) for t in data.get("task_ids") or ()))
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class RunRecord:
    run: str = ""
    base_branch: str = ""
    address: str = ""
    spawns: Dict[str, int] = field(default_factory=dict)  # stream name -> jobs submitted for it
    nodes: Dict[str, str] = field(default_factory=dict)  # stream id -> the node of its last job


def new_run_id() -> str:
    """Unique across projects sharing a cluster: the time and a random part (Ray's id characters only)."""
    return f"ok{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{secrets.token_hex(3)}"


class Records:
    """The files under `folder` (state/ray)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.jobs_folder = self.folder / "jobs"

    # ---------------------------------------------------------------- the run

    def load_run(self) -> RunRecord:
        try:
            data = json.loads((self.folder / "run.json").read_text(encoding="utf-8"))
            return RunRecord(str(data.get("run") or ""), str(data.get("base_branch") or ""),
                             str(data.get("address") or ""),
                             {str(k): int(v) for k, v in (data.get("spawns") or {}).items()},
                             {str(k): str(v) for k, v in (data.get("nodes") or {}).items()})
        except (OSError, ValueError, TypeError, AttributeError):
            return RunRecord()

    def save_run(self, run: RunRecord) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        write_text(self.folder / "run.json", json.dumps(asdict(run), sort_keys=True))

    # ---------------------------------------------------------------- jobs

    def job_path(self, sid: str) -> Path:
        return self.jobs_folder / f"{sid}.json"

    def tail_path(self, sid: str) -> Path:
        return self.jobs_folder / f"{sid}.tail.json"

    def applied_path(self, sid: str) -> Path:
        return self.jobs_folder / f"{sid}.applied.json"

    def save_job(self, record: JobRecord) -> None:
        self.jobs_folder.mkdir(parents=True, exist_ok=True)
        write_text(self.job_path(record.sid), json.dumps(asdict(record), sort_keys=True))

    def update_job(self, record: JobRecord, **changes) -> JobRecord:
        changed = replace(record, **changes)
        if changed != record:
            self.save_job(changed)
        return changed

    def forget_job(self, sid: str) -> None:
        """The job's record and its tail's and applier's state."""
        for path in (self.job_path(sid), self.tail_path(sid), self.applied_path(sid)):
            try:
                path.unlink()
            except FileNotFoundError:
                pass

    def jobs(self, tidy: bool = True) -> Tuple[List[JobRecord], List[str]]:
        """Every job record, oldest first, and a note for each one that could not be read (removed when `tidy`)."""
        records, notes = [], []
        try:
            paths = sorted(p for p in self.jobs_folder.iterdir()
                           if p.name.endswith(".json") and not p.name.endswith((".tail.json", ".applied.json"))
                           and not p.name.startswith("."))
        except OSError:
            return [], []
        for path in paths:
            try:
                records.append(JobRecord.from_json(json.loads(path.read_text(encoding="utf-8"))))
            except (OSError, ValueError, TypeError, KeyError):
                notes.append(f"removing the unreadable Ray job record {path.name}")
                if tidy:
                    try:
                        path.unlink()
                    except OSError:
                        pass
        return sorted(records, key=lambda r: r.started_at), notes


def read_jobs(folder: Path) -> List[JobRecord]:
    """Read only (`status`, `plan`): the jobs recorded as running, at most one per stream (its latest)."""
    records, _ = Records(folder).jobs(tidy=False)
    latest: Dict[str, JobRecord] = {}
    for record in records:
        if record.phase != LEFTOVER:
            latest[record.stream_id] = record
    return list(latest.values())

