"""Launch requests check themselves; launch ids map to safe, distinct directory names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from distcron.executors.base import LaunchRequest, RunState, RunStatus
from distcron.executors.rundir import dir_name

from .conftest import SLOT, launch

ids = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=300)


@given(ids)
def test_a_directory_name_is_safe_and_decodes_back_to_its_launch_id(launch_id: str) -> None:
    name = dir_name(launch_id)
    assert "/" not in name and "\0" not in name and not name.startswith(".")
    assert len(name.encode()) <= 255
    if "~" not in name:
        assert unquote(name) == launch_id
    else:
        assert len(name) == 200


@given(ids, ids)
def test_different_launch_ids_get_different_names(one: str, two: str) -> None:
    assert (dir_name(one) == dir_name(two)) == (one == two)


def test_a_slot_launch_id_stays_readable() -> None:
    assert dir_name("backup@2026-11-24T06:00:00Z") == "backup@2026-11-24T06:00:00Z"


@pytest.mark.parametrize(("changes", "complaint"), [
    ({"command": None}, "exactly one of command and argv"),
    ({"argv": ("true",)}, "exactly one of command and argv"),
    ({"command": None, "argv": ()}, "argv is empty"),
    ({"slot": datetime(2026, 11, 24, 6)}, "timezone-aware"),
    ({"timeout": 0}, "timeout must be positive"),
    ({"launch_id": ""}, "needs a launch id"),
])
def test_a_bad_launch_request_is_refused_with_a_reason(changes: dict[str, object],
                                                        complaint: str) -> None:
    fields = launch("true").to_dict() | {"slot": SLOT, "argv": None} | changes
    with pytest.raises(ValueError, match=complaint):
        LaunchRequest(**fields)  # type: ignore[arg-type]


def test_requests_and_statuses_survive_a_round_trip_through_json_types() -> None:
    request = launch(argv=("a", "b"), env={"K": "V"}, timeout=1.5,
                     slot=datetime(2026, 11, 24, 7, tzinfo=timezone(timedelta(hours=1))))
    assert LaunchRequest.from_dict(request.to_dict()) == request
    assert request.launch_env()["DISTCRON_SLOT"] == "2026-11-24T06:00:00Z"
    status = RunStatus("a@1", RunState.FAILED, pid=7, exit_code=2,
                       started_at=datetime.now(UTC), ended_at=datetime.now(UTC), reason="x")
    assert RunStatus.from_dict(status.to_dict()) == status
