"""A real one-node Slurm for tests: munged, slurmctld and slurmd on this machine.

Everything lives under one temporary directory: munge's own key and socket,
``slurm.conf`` (free ports, ``proctrack/linuxproc``, ``task/none``, no
accounting), the controller's state, the node's spool and the logs. Every Slurm
command a test or an executor runs gets ``SLURM_CONF`` pointing there
(:attr:`SlurmCluster.env`). The daemons run in the foreground as children of
this process (killed with it, through ``setpriv --pdeathsig``), and are stopped
by their own pids only. Slurm needs root (``SlurmUser=root``): tests run as
root; :func:`slurm_missing` says why Slurm cannot start where it cannot.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.etcd_cluster import free_ports
from tests.waiting import wait_until

SBIN = Path("/usr/sbin")
BIN = Path("/usr/bin")
_DAEMONS = ("munged", "slurmctld", "slurmd")
_DIE_WITH_PARENT = ("setpriv", "--pdeathsig", "KILL", "--")
NODE = "distcron-node"
START_TIMEOUT = 30.0
# Memory the node offers (MB): less than the machine has, so Slurm accepts it.
NODE_MEMORY = 1000


def slurm_missing() -> str | None:
    """Why a Slurm cannot start here, or None."""
    for daemon in _DAEMONS:
        if not os.access(SBIN / daemon, os.X_OK):
            return (f"{SBIN / daemon} is missing (scripts/test installs Debian's "
                    "slurm-wlm and munge)")
    if not os.access(BIN / "sbatch", os.X_OK):
        return f"{BIN / 'sbatch'} is missing (Debian's slurm-wlm)"
    if os.geteuid() != 0:
        return "the test Slurm runs as root (SlurmUser=root) and these tests do not"
    return None


@dataclass
class SlurmCluster:
    root: Path
    cpus: int = field(default_factory=lambda: os.cpu_count() or 1)
    min_job_age: int = 300
    # slurm.conf lines added at the end (e.g. SlurmdParameters=config_overrides,
    # so that a node may claim more CPUs than the machine has).
    extra_conf: tuple[str, ...] = ()
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ctld_port, self.slurmd_port = free_ports(2)
        self.conf = self.root / "slurm.conf"
        self.env = {"SLURM_CONF": str(self.conf)}
        self.host = socket.gethostname().split(".")[0]

    # -- life cycle ---------------------------------------------------------------------

    def start(self) -> None:
        for sub in ("state", "spool", "log", "munge"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)
        key = self.root / "munge" / "munge.key"
        if not key.exists():
            subprocess.run([str(SBIN / "mungekey"), "--create", f"--keyfile={key}"],
                           check=True, capture_output=True)
            key.chmod(0o600)
        self.conf.write_text(self._conf_text(), encoding="utf-8")
        self.start_munge()
        self.start_controller()
        self._spawn("slurmd", [str(SBIN / "slurmd"), "-D", "-N", NODE])
        wait_until(self.node_idle, START_TIMEOUT, "the Slurm node to be idle")

    def start_munge(self) -> None:
        munge = self.root / "munge"
        self._spawn("munged", [
            str(SBIN / "munged"), "--foreground", "--force",
            f"--socket={self.munge_socket}", f"--key-file={munge / 'munge.key'}",
            f"--pid-file={munge / 'munged.pid'}", f"--log-file={self.root / 'log/munged.log'}",
            f"--seed-file={munge / 'munged.seed'}"])
        wait_until(self.munge_socket.exists, START_TIMEOUT, "munged's socket")

    def start_controller(self) -> None:
        self._spawn("slurmctld", [str(SBIN / "slurmctld"), "-D"])
        wait_until(self.controller_answers, START_TIMEOUT, "slurmctld to answer")
        if "slurmd" in self.processes:
            # A restarted controller knows the node again once slurmd registers.
            wait_until(self.node_up, START_TIMEOUT, "the node to be up again")

    def stop_controller(self) -> None:
        self._stop("slurmctld")

    def stop(self) -> None:
        for name in ("slurmd", "slurmctld", "munged"):
            self._stop(name)
        self._end_leftovers()

    def _end_leftovers(self) -> None:
        """SIGKILL what the node left running (a job's slurmstepd and the job's
        processes outlive slurmd): the processes whose working directory is in
        this cluster's directory, found by their pids, none by name."""
        root = str(self.root.resolve())
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cwd = os.readlink(entry / "cwd").removesuffix(" (deleted)")
            except OSError:
                continue
            if cwd == root or cwd.startswith(root + "/"):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(entry.name), signal.SIGKILL)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    # -- asking it --------------------------------------------------------------------

    @property
    def munge_socket(self) -> Path:
        return self.root / "munge" / "munge.sock"

    def run(self, tool: str, *args: str, check: bool = True) -> str:
        """Run a Slurm command against this cluster; its stdout."""
        result = subprocess.run([str(BIN / tool), *args], capture_output=True, text=True,
                                env={**os.environ, **self.env}, timeout=60, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"{tool} {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def controller_answers(self) -> bool:
        return subprocess.run([str(BIN / "scontrol"), "ping"], capture_output=True, text=True,
                              env={**os.environ, **self.env}, timeout=30,
                              check=False).stdout.count("UP") > 0

    def node_up(self) -> bool:
        out = subprocess.run([str(BIN / "sinfo"), "--noheader", "--format=%T"],
                             capture_output=True, text=True, env={**os.environ, **self.env},
                             timeout=30, check=False).stdout.strip()
        return bool(out) and not any(word in out for word in ("down", "unk", "drain", "fail"))

    def node_idle(self) -> bool:
        out = subprocess.run([str(BIN / "sinfo"), "--noheader", "--format=%T"],
                             capture_output=True, text=True, env={**os.environ, **self.env},
                             timeout=30, check=False).stdout
        return out.strip().startswith("idle")

    def jobs_named(self, name: str) -> list[str]:
        """Ids of Slurm's jobs of this name, in any state it still remembers."""
        out = self.run("squeue", "--noheader", "--states=all", f"--name={name}",
                       "--format=%i")
        return out.split()

    def all_job_names(self) -> list[str]:
        out = self.run("squeue", "--noheader", "--states=all", "--format=%j")
        return out.split()

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.root / "log" / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    # -- inside -------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = (self.root / "log" / f"{name}.out").open("ab")
        self.processes[name] = subprocess.Popen(
            [*_DIE_WITH_PARENT, *argv], stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, **self.env}, cwd=self.root)
        log.close()

    def _stop(self, name: str) -> None:
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _conf_text(self) -> str:
        root = self.root
        return "\n".join([
            "ClusterName=distcrontest",
            f"SlurmctldHost={self.host}(127.0.0.1)",
            f"SlurmctldPort={self.ctld_port}",
            f"SlurmdPort={self.slurmd_port}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self.munge_socket}",
            f"StateSaveLocation={root / 'state'}",
            f"SlurmdSpoolDir={root / 'spool'}",
            f"SlurmctldPidFile={root / 'slurmctld.pid'}",
            f"SlurmdPidFile={root / 'slurmd.pid'}",
            f"SlurmctldLogFile={root / 'log/slurmctld.log'}",
            f"SlurmdLogFile={root / 'log/slurmd.log'}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobCompType=jobcomp/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "SchedulerType=sched/backfill",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            "MpiDefault=none",
            # Without it a job with no --mem is given the whole node's memory, and
            # the node runs one job at a time.
            "DefMemPerCPU=10",
            "ReturnToService=2",
            f"MinJobAge={self.min_job_age}",
            "MaxJobCount=20000",
            "KillWait=2",
            "SlurmctldTimeout=30",
            "SlurmdTimeout=30",
            "MessageTimeout=5",
            f"NodeName={NODE} NodeHostname={self.host} NodeAddr=127.0.0.1 "
            f"CPUs={self.cpus} RealMemory={NODE_MEMORY} State=UNKNOWN",
            f"PartitionName=debug Nodes={NODE} Default=YES MaxTime=INFINITE State=UP",
            *self.extra_conf,
            "",
        ])


@contextlib.contextmanager
def running_slurm(**settings: Any) -> Iterator[SlurmCluster]:
    """A started cluster in a fresh directory, stopped and removed afterwards;
    the test is skipped, saying why, where Slurm cannot run. (Not under pytest's
    tmp_path: munge's socket path must fit a Unix socket's 108 bytes.)"""
    missing = slurm_missing()
    if missing is not None:
        pytest.skip(missing)
    cluster = SlurmCluster(Path(tempfile.mkdtemp(prefix="distcron-slurm-")), **settings)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        cluster.remove()
