"""What to run for a job, kept by the leader per job and made into each launch's
request: only the fields a launch needs, so that a leader of many jobs holds
little and decodes a job's spec once per change, not at every launch."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from types import MappingProxyType

from distcron.executors.base import HttpCall, LaunchRequest, SlurmOptions
from distcron.jobs import JobSpec

_NO_ENV: Mapping[str, str] = MappingProxyType({})


@lru_cache(maxsize=256)
def _states(notify_on: tuple[str, ...]) -> frozenset[str]:
    """One set per distinct list: most jobs keep the default, and a leader holds
    a template per job."""
    return frozenset(notify_on)


@dataclass(frozen=True, slots=True)
class LaunchTemplate:
    job: str
    command: str | None = None
    argv: tuple[str, ...] | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    workdir: str | None = None
    timeout: float | None = None
    http: HttpCall | None = None
    notify: tuple[str, ...] = ()
    notify_on: frozenset[str] = frozenset()
    notify_output: bool = False
    slurm: SlurmOptions | None = None

    @classmethod
    def of(cls, spec: JobSpec) -> LaunchTemplate:
        http = None
        if spec.executor == "http":  # the spec has no command, argv, env or workdir then
            assert spec.url is not None
            http = HttpCall(spec.url, spec.method or "POST", dict(spec.headers or {}),
                            spec.body)
        slurm = None
        if spec.executor == "slurm":
            slurm = SlurmOptions(spec.partition, spec.cpus, spec.memory, spec.time_limit,
                                 spec.account, spec.qos, spec.sbatch_options or (),
                                 spec.starting_deadline)
        # The spec is frozen and dropped once read: its env is kept, not copied.
        return cls(spec.name, spec.command, spec.argv, spec.env or _NO_ENV, spec.workdir,
                   spec.timeout, http, spec.notify, _states(spec.notify_on),
                   spec.notify_output, slurm)

    def request(self, run_id: str, slot: datetime | None, fence: int, store_id: str,
                idempotency_key: str | None) -> LaunchRequest:
        return LaunchRequest(
            launch_id=run_id, job=self.job, slot=slot, fence=fence, store_id=store_id,
            timeout=self.timeout,
            idempotency_key=idempotency_key, command=self.command, argv=self.argv,
            env=dict(self.env), workdir=self.workdir, http=self.http, slurm=self.slurm)
