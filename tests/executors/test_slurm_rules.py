"""The Slurm executor's rules that need no cluster: the job keys, what sbatch is
asked, the wrapper script, and how squeue's answers become run states."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distcron.executors.base import LaunchRequest, RunState, SlurmOptions
from distcron.executors.slurm import job_script, sbatch_args, start_by
from distcron.executors.slurm_states import STATES, SlurmJob, parse_squeue, status_of
from distcron.jobs import JobSpec, build_spec
from distcron.jobs.problems import JobSpecErrors
from distcron.scheduler.template import LaunchTemplate

SLOT = datetime(2026, 12, 2, 18, 0, tzinfo=UTC)
BASE = {"name": "tick", "schedule": "* * * * *", "command": "echo hi"}


def slurm_spec(**keys: object) -> JobSpec:
    return build_spec({**BASE, "executor": "slurm", **keys})


def problems(**keys: object) -> str:
    with pytest.raises(JobSpecErrors) as caught:
        build_spec({**BASE, **keys})
    return str(caught.value)


def test_slurm_keys_reach_the_launch_request() -> None:
    spec = slurm_spec(partition="batch", cpus=4, memory="4G", time_limit="90m",
                      account="physics", qos="low", sbatch_options=["--nice=10"],
                      timeout=60, starting_deadline="10m")
    request = LaunchTemplate.of(spec).request("tick@x", SLOT, 3, "", None)
    assert request.slurm == SlurmOptions("batch", 4, "4G", 5400.0, "physics", "low",
                                         ("--nice=10",), 600.0)
    assert LaunchRequest.from_dict(request.to_dict()) == request
    assert JobSpec.from_json(spec.to_json()) == spec


@pytest.mark.parametrize(("keys", "expected"), [
    ({"executor": "slurm", "cpus": 0}, "cpus"),
    ({"executor": "slurm", "memory": "lots"}, "memory"),
    ({"executor": "slurm", "partition": "a b"}, "partition"),
    ({"executor": "slurm", "sbatch_options": ["nice"]}, "sbatch_options"),
    ({"executor": "slurm", "sbatch_options": ["--job-name=other"]}, "set by distcron"),
    ({"executor": "slurm", "sbatch_options": ["-ofile"]}, "set by distcron"),
    ({"executor": "local", "partition": "batch"}, "only for executor 'slurm'"),
    ({"executor": "slurm", "command": None}, "command"),
])
def test_bad_slurm_keys_are_named(keys: dict[str, object], expected: str) -> None:
    assert expected in problems(**keys)


def test_sbatch_is_asked_by_name_with_the_jobs_resources(tmp_path: Path) -> None:
    request = LaunchTemplate.of(slurm_spec(
        partition="batch", cpus=2, memory="512M", account="a", qos="q", timeout=61,
        sbatch_options=["--nice=5"], workdir="/srv")).request("tick@x", SLOT, 9, "", None)
    args = sbatch_args(request, tmp_path)
    assert args[:2] == ["--parsable", "--job-name=tick@x"]
    for expected in ("--comment=distcron fence=9", f"--output={tmp_path / 'output'}",
                     "--chdir=/srv", "--partition=batch",
                     "--cpus-per-task=2", "--mem=512M", "--account=a", "--qos=q",
                     "--time=2"):
        assert expected in args
    assert args[-1] == "--nice=5"
    # time_limit wins over timeout; neither: the partition's default.
    limited = LaunchTemplate.of(slurm_spec(timeout=61, time_limit=600)).request(
        "tick@x", SLOT, 1, "", None)
    assert "--time=10" in sbatch_args(limited, tmp_path)
    plain = LaunchTemplate.of(slurm_spec()).request("tick@x", SLOT, 1, "", None)
    assert not [a for a in sbatch_args(plain, tmp_path) if a.startswith("--time")]
    assert start_by(plain) == datetime(2026, 12, 2, 19, 0, tzinfo=UTC)
    assert start_by(LaunchTemplate.of(slurm_spec()).request("tick@m", None, 1, "", None)) is None


# Each example runs the script in a real shell: no deadline, fewer examples.
@settings(deadline=None, max_examples=40)
@given(st.lists(st.text(st.characters(blacklist_characters="\0",
                                      blacklist_categories=("Cs",)), max_size=12),
                min_size=1, max_size=4),
       st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)),
               max_size=12))
def test_the_wrapper_passes_argv_and_env_exactly_and_records_the_exit(
        argv: list[str], value: str) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        run_dir = Path(directory)
        request = LaunchRequest(
            "t@x", "t", SLOT, 1, argv=("sh", "-c",
                                       'printf "%s\\0" "$@" "$V"; exit 7', "sh", *argv),
            env={"V": value})
        script = run_dir / "job.sh"
        script.write_text(job_script(request, run_dir))
        done = subprocess.run(["/bin/sh", str(script)], capture_output=True, check=False,
                              env={"PATH": "/usr/bin:/bin"})
        assert done.returncode == 7
        assert done.stdout.decode().split("\0")[:-1] == [*argv, value]
        assert (run_dir / "exit").read_text() == "7\n"
        assert (run_dir / "started").exists()


def squeue_line(job_id: str, name: str, state: str, exit_status: str = "0",
                start: str = "N/A", end: str = "N/A", reason: str = "None") -> str:
    return "|".join((job_id, name, state, exit_status, start, end, reason)) + "|"


@given(st.sampled_from(sorted(STATES)), st.integers(0, 255), st.integers(0, 0x7F),
       st.booleans())
def test_every_slurm_state_has_its_run_state(state: str, code: int, signal: int,
                                             wrote_exit: bool) -> None:
    line = squeue_line("12", "tick@x", state, str(code << 8 | signal),
                       "2026-12-02T18:00:01", "2026-12-02T18:00:09", "Resources")
    [job] = parse_squeue("squeue: warning\n" + line + "\n")
    assert job == SlurmJob("12", "tick@x", state, code << 8 | signal,
                           datetime(2026, 12, 2, 18, 0, 1).astimezone(UTC),
                           datetime(2026, 12, 2, 18, 0, 9).astimezone(UTC), "Resources")
    status = status_of("tick@x", job, code if wrote_exit else None)
    expected = STATES[state]
    # The job's own exit status decides: its wrapper's, else Slurm's.
    failed_itself = code != 0 if wrote_exit else (code != 0 or signal != 0)
    if expected is RunState.SUCCEEDED and failed_itself:
        expected = RunState.FAILED
    assert status.state is expected
    if expected is RunState.PENDING:
        assert status.reason == "pending in Slurm: Resources"
    if wrote_exit and expected in (RunState.SUCCEEDED, RunState.FAILED):
        assert status.exit_code == code
    if expected is RunState.FAILED and not wrote_exit and signal == 0:
        assert status.exit_code == code
        if state == "FAILED":
            assert status.reason.endswith(f"exit code {code}")


def test_an_unknown_state_is_not_final_and_bad_lines_are_skipped() -> None:
    [job] = parse_squeue(squeue_line("3_1", "a@x", "FUTURE_STATE") + "\nnot|a|line\n")
    assert job.job_id == "3"
    assert not status_of("a@x", job, None).state.final
