"""Slurm's answers, read: ``squeue --Format`` lines, and job states as run states.

Kept apart from the executor so that every Slurm state has its rule in one
table, and so that the reading can be tested without a Slurm cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from distcron.executors.base import RunState, RunStatus

# squeue's JobID, Name, State, exit_code, StartTime, EndTime, Reason, each ended
# by "|"; Reason is last because it is free text.
_FIELDS = 7

# Slurm's job states (squeue's long forms) and what each means for a run.
STATES: dict[str, RunState] = {
    "PENDING": RunState.PENDING,
    "REQUEUED": RunState.PENDING,
    "REQUEUE_HOLD": RunState.PENDING,
    "REQUEUE_FED": RunState.PENDING,
    "RESV_DEL_HOLD": RunState.PENDING,
    "CONFIGURING": RunState.RUNNING,
    "RUNNING": RunState.RUNNING,
    "COMPLETING": RunState.RUNNING,  # ended; its exit code is final only once completed
    "SUSPENDED": RunState.RUNNING,
    "STOPPED": RunState.RUNNING,
    "SIGNALING": RunState.RUNNING,
    "STAGE_OUT": RunState.RUNNING,
    "RESIZING": RunState.RUNNING,
    "COMPLETED": RunState.SUCCEEDED,
    "FAILED": RunState.FAILED,
    "OUT_OF_MEMORY": RunState.FAILED,
    "BOOT_FAIL": RunState.FAILED,
    "SPECIAL_EXIT": RunState.FAILED,
    "TIMEOUT": RunState.TIMED_OUT,
    "CANCELLED": RunState.STOPPED,
    "DEADLINE": RunState.MISSED,
    "NODE_FAIL": RunState.LOST,
    "PREEMPTED": RunState.LOST,
    "REVOKED": RunState.LOST,
}


@dataclass(frozen=True)
class SlurmJob:
    job_id: str
    name: str
    state: str
    exit_status: int | None  # the raw wait status, as squeue's exit_code gives it
    started_at: datetime | None
    ended_at: datetime | None
    reason: str


def parse_squeue(text: str) -> list[SlurmJob]:
    """The jobs of ``squeue --noheader --Format=<_FIELDS, each ended by |>``; lines
    that are not such (a warning squeue printed) are skipped."""
    jobs = []
    for line in text.splitlines():
        parts = line.split("|", _FIELDS - 1)
        if len(parts) != _FIELDS:
            continue
        job_id, name, state, exit_status, started, ended, reason = (p.strip() for p in parts)
        job_id = job_id.split("_")[0]  # an array task's id is "<job>_<task>"
        if not job_id.isdigit():
            continue
        jobs.append(SlurmJob(
            job_id, name, state.split()[0] if state else "",
            int(exit_status) if exit_status.isdigit() else None,
            _slurm_time(started), _slurm_time(ended), reason.rstrip("|").strip()))
    return jobs


def _slurm_time(text: str) -> datetime | None:
    """Slurm prints times in the local time zone, without one; None for N/A, Unknown."""
    try:
        return datetime.fromisoformat(text).astimezone(UTC)
    except ValueError:
        return None


def status_of(run_id: str, job: SlurmJob, exit_file: int | None) -> RunStatus:
    """The run's status from Slurm's job, and the exit status the job's wrapper
    wrote (``None`` when it wrote none: not ended, or killed)."""
    state = STATES.get(job.state)
    if state is None:
        # A state newer than this table: not final, so it is asked about again.
        return RunStatus(run_id, RunState.RUNNING, started_at=job.started_at,
                         reason=f"Slurm state {job.state}")
    slurm = f"Slurm job {job.job_id} {job.state}"
    if state is RunState.PENDING:
        return RunStatus(run_id, state, reason=f"pending in Slurm: {job.reason or 'None'}")
    if state is RunState.RUNNING:
        return RunStatus(run_id, state, started_at=job.started_at, reason=slurm)
    exit_code: int | None = None
    signal: int | None = None
    if exit_file is not None:
        exit_code = exit_file
    elif job.exit_status is not None and state in (RunState.SUCCEEDED, RunState.FAILED):
        exit_code, signal = job.exit_status >> 8, job.exit_status & 0x7F or None
        if signal is not None:
            exit_code = None
    if state is RunState.SUCCEEDED and (exit_code not in (None, 0) or signal is not None):
        state = RunState.FAILED  # the job's own exit status decides
    reason = slurm
    if job.reason and job.reason != "None":
        reason += f" ({job.reason})"
    if state is RunState.MISSED:
        reason = f"still pending in Slurm at its starting deadline ({slurm})"
    elif state is RunState.FAILED and exit_code is not None:
        reason += f", exit code {exit_code}"
    return RunStatus(run_id, state, exit_code=exit_code, signal=signal,
                     started_at=job.started_at if state is not RunState.MISSED else None,
                     ended_at=job.ended_at, reason=reason)
