"""Fixtures shared by every test directory: a real etcd cluster, started once
per session, and only when a test asks for it.

- ``etcd_cluster``: the session's 3-member cluster; after each test that used
  it, paused members are resumed and killed ones restarted, and every lease
  is revoked, so that the next test finds it whole and quiet. When such a
  test fails, what the members logged during it is added to the failure report.
- ``etcd_url``: an ``etcd://`` URL of every member with a key prefix of the
  test's own.

Hypothesis runs without its timing checks: these machines are shared and
noisy, and speed is measured in ``bench/``, not in tests.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.etcd_cluster import ETCD, EtcdCluster, etcd_available

settings.register_profile("distcron", deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("distcron")

_LOG_MARKS = pytest.StashKey[tuple[EtcdCluster, list[int]]]()


def _fast_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory for etcd's data: in memory when the machine has /dev/shm,
    since every write waits for fsync on each member."""
    shm = Path("/dev/shm")
    if shm.is_dir():
        return Path(tempfile.mkdtemp(prefix="distcron-etcd-", dir=shm))
    return tmp_path_factory.mktemp("etcd")


@pytest.fixture(scope="session")
def etcd_session_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    if not etcd_available():
        pytest.skip(f"no etcd at {ETCD} (scripts/test installs Debian's etcd-server)")
    cluster = EtcdCluster(_fast_dir(tmp_path_factory))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
        cluster.remove()


@pytest.fixture
def etcd_cluster(
    etcd_session_cluster: EtcdCluster, request: pytest.FixtureRequest
) -> Iterator[EtcdCluster]:
    if request.node.get_closest_marker("cluster") is None:
        # So that `-m "not cluster"` runs exactly the tests that need no etcd.
        pytest.fail(f"{request.node.nodeid} uses etcd but is not marked cluster")
    cluster = etcd_session_cluster
    request.node.stash[_LOG_MARKS] = (cluster, cluster.log_marks())
    yield cluster
    cluster.heal()
    cluster.revoke_leases()


@pytest.fixture
def etcd_url(etcd_cluster: EtcdCluster) -> str:
    return etcd_cluster.url(f"test-{uuid.uuid4().hex}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``cluster`` every test that asks for etcd through its fixtures."""
    for item in items:
        if {"etcd_cluster", "etcd_url"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.cluster)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    marks = item.stash.get(_LOG_MARKS, None)
    if report.failed and marks is not None:
        cluster, offsets = marks
        report.sections.append(("etcd member logs", cluster.logs_since(offsets)))
    return report
