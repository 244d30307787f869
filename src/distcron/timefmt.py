"""Instants as text: the one form launch ids, cursors and ``DISTCRON_SLOT`` use."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_iso(moment: datetime) -> str:
    """``moment`` in UTC ISO-8601 with ``Z``, to the second (or microsecond when it
    has a fraction): the form launch ids and ``DISTCRON_SLOT`` use."""
    utc = moment.astimezone(UTC)
    timespec = "microseconds" if utc.microsecond else "seconds"
    return utc.replace(tzinfo=None).isoformat(timespec=timespec) + "Z"
