"""Test hosts in Linux network namespaces on one bridge, one of which a test
can cut off from all the others (as root, with ``ip netns``).

The bridge lives in a namespace of its own (so the machine's own firewall,
which may filter bridged traffic, plays no part), joined by a veth pair to
each host and to the machine itself, which reaches every host at its address.
Cutting a host sets its veth down on the bridge's side: its packets go
nowhere and its connections hang, as in a real partition, until it is healed.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import uuid
from collections.abc import Sequence
from dataclasses import dataclass


def unavailable() -> str | None:
    """Why network namespaces cannot be used here, or None."""
    if shutil.which("ip") is None:
        return "no ip command (iproute2)"
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"dcprobe{uuid.uuid4().hex[:6]}"
    made = subprocess.run(["ip", "netns", "add", probe], check=False, capture_output=True,
                          text=True)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], check=False, capture_output=True)
    return None


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], check=False, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


@dataclass(frozen=True)
class Host:
    namespace: str
    address: str
    veth: str  # its pair's end on the bridge

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside this host."""
        return ["ip", "netns", "exec", self.namespace, *argv]


class Hosts:
    """``count`` hosts on a /24 of their own; a context manager."""

    def __init__(self, count: int) -> None:
        tag = uuid.uuid4().hex[:6]
        self._bridge_ns = f"dc{tag}br"
        subnet = f"10.{random.randint(100, 250)}.{random.randint(0, 255)}"
        self.local_address = f"{subnet}.254"  # the machine's own, on the bridge
        self._local_veth = f"dc{tag}l"
        self.hosts = [Host(f"dc{tag}h{i}", f"{subnet}.{i + 1}", f"dc{tag}v{i}")
                      for i in range(count)]
        self._made: list[str] = []

    def __enter__(self) -> Hosts:
        try:
            self._make()
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.remove()

    def _make(self) -> None:
        bridge = self._bridge_ns
        _ip("netns", "add", bridge)
        self._made.append(bridge)
        _ip("-n", bridge, "link", "add", "br0", "type", "bridge")
        _ip("-n", bridge, "link", "set", "br0", "up")
        # The machine's end: an address on the bridge's subnet.
        _ip("link", "add", self._local_veth, "type", "veth", "peer", "name", "up0",
            "netns", bridge)
        self._made.append(self._local_veth)
        _ip("-n", bridge, "link", "set", "up0", "master", "br0", "up")
        _ip("addr", "add", f"{self.local_address}/24", "dev", self._local_veth)
        _ip("link", "set", self._local_veth, "up")
        for host in self.hosts:
            _ip("netns", "add", host.namespace)
            self._made.append(host.namespace)
            _ip("-n", host.namespace, "link", "set", "lo", "up")
            _ip("-n", bridge, "link", "add", host.veth, "type", "veth", "peer", "name",
                "eth0", "netns", host.namespace)
            _ip("-n", bridge, "link", "set", host.veth, "master", "br0", "up")
            _ip("-n", host.namespace, "addr", "add", f"{host.address}/24", "dev", "eth0")
            _ip("-n", host.namespace, "link", "set", "eth0", "up")

    def cut(self, host: Host) -> None:
        """Cut ``host`` off from every other host and from the machine."""
        _ip("-n", self._bridge_ns, "link", "set", host.veth, "down")

    def heal(self, host: Host) -> None:
        _ip("-n", self._bridge_ns, "link", "set", host.veth, "up")

    def remove(self) -> None:
        for made in reversed(self._made):
            if made == self._local_veth:
                subprocess.run(["ip", "link", "del", made], check=False, capture_output=True)
            else:
                subprocess.run(["ip", "netns", "del", made], check=False, capture_output=True)
        self._made.clear()
