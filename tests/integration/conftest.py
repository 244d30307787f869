"""Fixtures of the integration tests.

- ``store_url``: the store of one test, once a SQLite file and once a fresh
  prefix on the session's 3-member etcd cluster (skipped where there is no etcd).
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(params=["sqlite", pytest.param("etcd", marks=pytest.mark.cluster)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The store of one test: a SQLite file, or a fresh prefix on the session's
    3-member etcd cluster (skipped where there is no etcd)."""
    if request.param == "etcd":
        return str(request.getfixturevalue("etcd_url"))
    return f"sqlite:///{tmp_path / 'data' / 'state.db'}"
