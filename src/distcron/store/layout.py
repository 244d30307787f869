"""Where each piece of distcron's state lives in the store.

Every key is relative to the store's prefix. One place names them so that the
leader, the API, the workers and the tests agree.

=========================  ==============================================  ==========
key                        value                                           written by
=========================  ==============================================  ==========
``jobs/<job>``             the job spec (JSON)                             API
``cursors/<job>``          the last slot of the job already accounted for  API, leader
``launches/<launch id>``   the launch record (JSON)                        leader
``active/<launch id>``     present while the launch is live (an index      leader
                           that a new leader reads instead of every record)
``output/<launch id>``     the run's last output bytes                     leader
``triggers/<trigger id>``  a request to run a job now (JSON)               API
``meta/identity``          the store's identity, made with it (a UUID)     first writer
``meta/restored``          the store was restored from a copy (JSON:       restore
                           ``at``): slots up to it are missed              (the leader
                                                                           deletes it)
``meta/apply``             an apply too large for one transaction, in      jobs apply
                           progress (JSON: ``id``, ``chunks``, ``state``,  (the leader
                           ``started``); while it exists only its          may finish
                           applier writes ``jobs/`` and ``notifiers/``     it)
                           (see :mod:`distcron.jobs.journal`)
``applying/<id>/<n>``      that apply's writes, part ``n`` (JSON list)     jobs apply
``released/<mark>``        the staged launches a leader released (JSON    leader
                           list of launch ids), written before it
                           releases them (a worker starts those staged
                           on it when it sees the mark); gone once none
                           still launches
``notifiers/<name>``       a notifier (JSON: ``name``, ``url``)            jobs apply
``synced/<hash of path>``  a config file applied: its text's digest and    serve
                           the job and notifier keys it left (JSON)
``notify/<id>:<state>``    a notification to deliver (JSON: ``body``,      leader
                           ``notifiers``, ``delivered``, ``output``);
                           gone once every notifier acknowledged it
``quarantined/<job>``      why the job gets no slots (JSON: ``reason``,    leader
                           ``since``), until its spec changes
``election/leader``        the leader's registration (JSON, with ``id``);  leader
                           leased; its ``create_revision`` is the fence
``replicas/<id>``          a replica's registration (JSON); leased         each replica
``workers/<id>``           a worker's registration and load (JSON);        each worker
                           leased: it vanishes when the worker dies
``assign/<worker>/<run>``  a run given to a worker: what to run (JSON)     leader
                           as a ``LaunchRequest``; rewritten as
                           ``{"launch_id": …, "stop": true}`` to stop it
                           (see :mod:`distcron.worker.protocol`)
``claims/<run>``           the worker that took the run (JSON)             worker
``reports/<run>``          what became of an assigned run (JSON)           worker
=========================  ==============================================  ==========

``<run>`` is the attempt's run id: the launch id, with ``~N`` for retries, so
that a worker sees each attempt as a run of its own.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime

from distcron.timefmt import utc_iso

JOBS = "jobs/"
CURSORS = "cursors/"
LAUNCHES = "launches/"
OUTPUT = "output/"
ACTIVE = "active/"
TRIGGERS = "triggers/"
QUARANTINED = "quarantined/"
NOTIFIERS = "notifiers/"
NOTIFY = "notify/"
RELEASED = "released/"
IDENTITY = "meta/identity"
SYNCED = "synced/"
RESTORED = "meta/restored"
APPLY = "meta/apply"
APPLYING = "applying/"
REPLICAS = "replicas/"
WORKERS = "workers/"
ASSIGN = "assign/"
CLAIMS = "claims/"
REPORTS = "reports/"
LEADER = "election/leader"


def job_key(job: str) -> str:
    return JOBS + job


def synced_key(path: str) -> str:
    return SYNCED + hashlib.sha256(path.encode()).hexdigest()[:32]


def cursor_key(job: str) -> str:
    return CURSORS + job


def launch_key(launch_id: str) -> str:
    return LAUNCHES + launch_id


def launch_prefix(job: str) -> str:
    """The launches of one job: launch ids start with ``<job>@``."""
    return f"{LAUNCHES}{job}@"


def active_key(launch_id: str) -> str:
    return ACTIVE + launch_id


def output_key(launch_id: str) -> str:
    return OUTPUT + launch_id


def trigger_key(trigger_id: str) -> str:
    return TRIGGERS + trigger_id


def notifier_key(name: str) -> str:
    return NOTIFIERS + name


def notify_key(launch_id: str, state: str) -> str:
    """A notification: one per launch and state (``Idempotency-Key`` is its name)."""
    return f"{NOTIFY}{launch_id}:{state}"


def quarantine_key(job: str) -> str:
    return QUARANTINED + job


def released_key(mark: str) -> str:
    return RELEASED + mark


def replica_key(replica_id: str) -> str:
    return REPLICAS + replica_id


def leader_id_of(value: bytes) -> str:
    """The replica id in the leader key: the leader writes its registration
    (JSON with ``id``) there; a bare id is read as itself."""
    try:
        body = json.loads(value)
    except ValueError:
        return value.decode(errors="replace")
    return str(body["id"]) if isinstance(body, dict) and "id" in body else value.decode()


def name_of(key: str, prefix: str) -> str:
    """The last part of a key under ``prefix``: ``name_of("jobs/backup", JOBS) == "backup"``."""
    return key[len(prefix) :]


def worker_key(worker_id: str) -> str:
    return WORKERS + worker_id


def assignment_prefix(worker_id: str) -> str:
    return f"{ASSIGN}{worker_id}/"


def assignment_key(worker_id: str, launch_id: str) -> str:
    return f"{ASSIGN}{worker_id}/{launch_id}"


def claim_key(launch_id: str) -> str:
    return CLAIMS + launch_id


def report_key(launch_id: str) -> str:
    return REPORTS + launch_id


@dataclass(frozen=True, slots=True)
class Cursor:
    """How far a job's slots are accounted for, and the skipped/missed span that
    may still grow (so a span survives a change of leader)."""

    slot: datetime
    gap: str | None = None


def cursor_value(cursor: Cursor) -> bytes:
    """The value of ``cursors/<job>``."""
    body: dict[str, str] = {"slot": utc_iso(cursor.slot)}
    if cursor.gap:
        body["gap"] = cursor.gap
    return json.dumps(body).encode()


def parse_cursor(value: bytes) -> Cursor:
    body = json.loads(value)
    return Cursor(datetime.fromisoformat(body["slot"]), body.get("gap"))
