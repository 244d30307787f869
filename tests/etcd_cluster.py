"""Real etcd clusters for tests: members on 127.0.0.1 that a test can pause, kill and restart.

A cluster runs Debian's ``/usr/bin/etcd`` (package ``etcd-server``) with fresh
data directories, free ports and a fresh cluster token, tuned so that elections
take well under a second. Each member's output goes to a log file; a test can
read what the members logged since a mark it took. Members get SIGKILL when
the process that started them dies (``setpriv --pdeathsig``, from util-linux),
so even a test run that is killed leaves no etcd behind.

A cluster may serve clients over TLS with client certificates
(:func:`make_certificates` makes a throwaway CA and certificates with
``openssl``). The harness is synchronous (subprocesses and blocking HTTP): it is used from
session fixtures and from benchmarks alike.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.waiting import wait_until

ETCD = os.environ.get("DISTCRON_TEST_ETCD", "/usr/bin/etcd")
# 50 ms heartbeats, 500 ms elections: a leader is replaced within a second.
# etcd's minimum lease TTL follows (1.5 election timeouts, rounded up): 1 s.
TUNING = ("--heartbeat-interval", "50", "--election-timeout", "500")
START_TIMEOUT = 30.0
LOG_TAIL_LINES = 80
# Killed with the test process, however it ends; not forked with a preexec_fn,
# which is unsafe in a process with threads.
_DIE_WITH_PARENT = ("setpriv", "--pdeathsig", "KILL", "--")


def etcd_available() -> bool:
    return os.access(ETCD, os.X_OK)


def free_ports(count: int) -> list[int]:
    """Ports nobody listens on now (held open together, so they are distinct)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclass(frozen=True)
class TlsFiles:
    """A CA, and a certificate signed by it for the members (127.0.0.1) and for a client."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_certificates(directory: Path) -> TlsFiles:
    """Throwaway EC certificates made with ``openssl`` (valid two days)."""
    directory.mkdir(parents=True, exist_ok=True)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    openssl("req", "-x509", *ec, "-days", "2", "-subj", "/CN=distcron test CA",
            "-keyout", "ca.key", "-out", "ca.crt")  # fmt: skip
    for name, usage in (("server", "serverAuth,clientAuth"), ("client", "clientAuth")):
        (directory / f"{name}.ext").write_text(
            f"subjectAltName=IP:127.0.0.1\nextendedKeyUsage={usage}\n"
        )
        openssl("req", *ec, "-subj", f"/CN={name}", "-keyout", f"{name}.key",
                "-out", f"{name}.csr")  # fmt: skip
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext",
                "-out", f"{name}.crt")  # fmt: skip
    return TlsFiles(
        directory / "ca.crt",
        directory / "server.crt",
        directory / "server.key",
        directory / "client.crt",
        directory / "client.key",
    )


@dataclass
class EtcdMember:
    """One member: its ports, data directory, log file and process."""

    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    log_path: Path
    args: Sequence[str] = ()
    tls: TlsFiles | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    paused: bool = False

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def client_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.endpoint}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start (or restart, on the same data directory) this member."""
        assert not self.running, f"{self.name} is already running"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [*(_DIE_WITH_PARENT if shutil.which("setpriv") else ()), ETCD, *self.args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.paused = False

    def pause(self) -> None:
        """SIGSTOP: the member keeps its connections but answers nothing."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)
        self.paused = False

    def kill(self) -> None:
        """SIGKILL, and wait until it is gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.paused = False

    def status(self, timeout: float = 1.0) -> dict[str, str] | None:
        """The member's ``/v3/maintenance/status``, or ``None`` if it does not answer."""
        verify: ssl.SSLContext | bool = False
        if self.tls is not None:
            verify = ssl.create_default_context(cafile=self.tls.ca)
            verify.load_cert_chain(self.tls.client_cert, self.tls.client_key)
        try:
            with httpx.Client(trust_env=False, timeout=timeout, verify=verify) as http:
                answer = http.post(self.client_url + "/v3/maintenance/status", json={})
        except httpx.HTTPError:
            return None
        if answer.status_code != httpx.codes.OK:
            return None
        status: dict[str, str] = answer.json()
        return status

    def healthy(self) -> bool:
        """Answers, and knows a leader."""
        status = self.status()
        return status is not None and int(status.get("leader", 0)) != 0

    def member_id(self) -> int | None:
        status = self.status()
        return None if status is None else int(status["header"]["member_id"])

    def log_size(self) -> int:
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def log_since(self, offset: int, max_lines: int = LOG_TAIL_LINES) -> str:
        with self.log_path.open("rb") as log:
            log.seek(offset)
            lines = log.read().decode(errors="replace").splitlines()
        skipped = len(lines) - max_lines
        shown = lines[-max_lines:] if skipped > 0 else lines
        head = [f"[… {skipped} earlier lines in {self.log_path}]"] if skipped > 0 else []
        return "\n".join(head + shown)


class EtcdCluster:
    """``size`` members on 127.0.0.1 under ``base_dir``; call :meth:`start`, then :meth:`stop`.

    With ``tls``, members serve clients over TLS and require a client certificate.
    """

    def __init__(
        self,
        base_dir: Path,
        size: int = 3,
        extra_args: Sequence[str] = (),
        tls: TlsFiles | None = None,
    ) -> None:
        self.base_dir = base_dir
        self.token = f"distcron-test-{uuid.uuid4().hex[:12]}"
        ports = free_ports(2 * size)
        self.members = [
            EtcdMember(
                f"m{i}",
                ports[2 * i],
                ports[2 * i + 1],
                base_dir / f"m{i}.data",
                base_dir / f"m{i}.log",
                tls=tls,
            )
            for i in range(size)
        ]
        tls_args = ()
        if tls is not None:
            tls_args = ("--cert-file", str(tls.server_cert), "--key-file", str(tls.server_key),
                        "--client-cert-auth", "--trusted-ca-file", str(tls.ca))  # fmt: skip
        initial = ",".join(f"{m.name}=http://127.0.0.1:{m.peer_port}" for m in self.members)
        for m in self.members:
            m.args = (
                "--name", m.name,
                "--data-dir", str(m.data_dir),
                "--listen-client-urls", m.client_url,
                "--advertise-client-urls", m.client_url,
                "--listen-peer-urls", f"http://127.0.0.1:{m.peer_port}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{m.peer_port}",
                "--initial-cluster", initial,
                "--initial-cluster-token", self.token,
                "--initial-cluster-state", "new",
                "--logger", "zap",
                "--log-outputs", "stderr",
                *TUNING,
                *tls_args,
                *extra_args,
            )  # fmt: skip

    @property
    def endpoints(self) -> str:
        return ",".join(m.endpoint for m in self.members)

    def url(self, prefix: str = "", members: Sequence[EtcdMember] | None = None) -> str:
        """An ``etcd://`` URL of ``members`` (default: all), in that order."""
        hosts = ",".join(m.endpoint for m in (members or self.members))
        return f"{'etcds' if self.members[0].tls else 'etcd'}://{hosts}/{prefix}"

    def start(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        for m in self.members:
            m.start()
        try:
            self.wait_healthy()
        except BaseException:
            self.stop()
            raise

    def wait_healthy(self, timeout: float = START_TIMEOUT) -> None:
        """Until every member answers and they agree on one leader."""
        wait_until(lambda: self.leader_now() is not None and self._all_healthy(), timeout,
                   f"etcd members {', '.join(m.name for m in self.members)} to be healthy")

    def leader(self, timeout: float = 10.0) -> EtcdMember:
        """The member that is raft leader (waiting for an election if need be)."""
        return wait_until(self.leader_now, timeout, "an etcd leader")

    def leader_now(self) -> EtcdMember | None:
        ids: dict[int, EtcdMember] = {}
        leaders: set[int] = set()
        for m in self.members:
            if not m.running or m.paused:
                continue
            status = m.status()
            if status is None:
                continue
            ids[int(status["header"]["member_id"])] = m
            leaders.add(int(status.get("leader", 0)))
        if len(leaders) != 1:
            return None
        return ids.get(leaders.pop())

    def revoke_leases(self) -> None:
        """Revoke every lease: one a test left would expire during a later test
        and delete its keys there, moving the revision that test counts."""
        member = self.leader()
        verify: ssl.SSLContext | bool = False
        if member.tls is not None:
            verify = ssl.create_default_context(cafile=member.tls.ca)
            verify.load_cert_chain(member.tls.client_cert, member.tls.client_key)
        with httpx.Client(trust_env=False, timeout=5, verify=verify) as http:
            listed = http.post(member.client_url + "/v3/lease/leases", json={})
            listed.raise_for_status()
            for lease in listed.json().get("leases", []):
                http.post(member.client_url + "/v3/lease/revoke", json={"ID": lease["ID"]})

    def followers(self) -> list[EtcdMember]:
        leader = self.leader()
        return [m for m in self.members if m is not leader]

    def heal(self) -> None:
        """Resume paused members, restart killed ones, and wait until all are healthy."""
        for m in self.members:
            if m.paused:
                m.resume()
            if not m.running:
                m.start()
        self.wait_healthy()

    def log_marks(self) -> list[int]:
        return [m.log_size() for m in self.members]

    def logs_since(self, marks: Sequence[int]) -> str:
        return "\n".join(
            f"----- etcd {m.name} ({m.endpoint}) -----\n{m.log_since(mark)}"
            for m, mark in zip(self.members, marks, strict=True)
        )

    def stop(self) -> None:
        for m in self.members:
            if m.paused:
                m.resume()
            m.kill()

    def remove(self) -> None:
        shutil.rmtree(self.base_dir, ignore_errors=True)

    def _all_healthy(self) -> bool:
        return all(m.healthy() for m in self.members)
