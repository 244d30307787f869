"""Classic cron schedules: the fast paths, and the DST-aware path when needed.

Most queries touch only ordinary days (one UTC offset all day): then the answer is
found on the wall clock and built straight from its fields, with no offset
arithmetic. A query touching a day with a DST change goes through ``dst``.
"""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from distcron.cron import describe as describing
from distcron.cron import dst
from distcron.cron.days import EPOCH_ORDINAL, month_info
from distcron.cron.schedule import Schedule, floor_seconds, in_zone, wall_datetime
from distcron.cron.wall import WallPattern
from distcron.cron.zone import ZoneRules, load_zone, zone_rules


class CronSchedule(Schedule):
    __slots__ = ("_fixed", "_has_seconds", "_pattern", "_rules", "_zone")

    _zone: ZoneInfo
    _rules: ZoneRules | None  # None for UTC: every day is ordinary
    _pattern: WallPattern
    _fixed: bool  # fixed-time: runs once per wall time across DST changes
    _has_seconds: bool

    def __init__(
        self,
        expr: str,
        tz: str,
        job: str | None,
        pattern: WallPattern,
        fixed: bool,
        has_seconds: bool,
    ) -> None:
        super().__init__(expr, tz, job)
        setattr_ = object.__setattr__
        setattr_(self, "_zone", load_zone(tz))
        setattr_(self, "_rules", zone_rules(tz))
        setattr_(self, "_pattern", pattern)
        setattr_(self, "_fixed", fixed)
        setattr_(self, "_has_seconds", has_seconds)

    def next(self, after: datetime) -> datetime:
        zone = self._zone
        if after.tzinfo is not zone:
            after = in_zone(after, zone)
        y, mo, d = after.year, after.month, after.day
        rules = self._rules
        if rules is not None and not _ordinary(rules, after.toordinal() - EPOCH_ORDINAL):
            return self._slow_next(after)
        sod = after.hour * 3600 + after.minute * 60 + after.second + 1
        ny, nmo, nd, sod = self._pattern.next_wall(y, mo, d, sod)
        if (
            rules is not None
            and (nd != d or nmo != mo or ny != y)
            and not _ordinary(rules, month_info(ny, nmo)[0] + nd - 1)
        ):
            return self._slow_next(after)
        return datetime(ny, nmo, nd, sod // 3600, sod // 60 % 60, sod % 60, tzinfo=zone)

    def prev(self, before: datetime) -> datetime:
        zone = self._zone
        if before.tzinfo is not zone:
            before = in_zone(before, zone)
        y, mo, d = before.year, before.month, before.day
        rules = self._rules
        if rules is not None and not _ordinary(rules, before.toordinal() - EPOCH_ORDINAL):
            return self._slow_prev(before)
        sod = before.hour * 3600 + before.minute * 60 + before.second
        if not before.microsecond:
            sod -= 1  # strictly before
        py, pmo, pd, sod = self._pattern.prev_wall(y, mo, d, sod)
        if (
            rules is not None
            and (pd != d or pmo != mo or py != y)
            and not _ordinary(rules, month_info(py, pmo)[0] + pd - 1)
        ):
            return self._slow_prev(before)
        return datetime(py, pmo, pd, sod // 3600, sod // 60 % 60, sod % 60, tzinfo=zone)

    def next_with_note(self, after: datetime) -> tuple[datetime, str | None]:
        rules = self._rules
        if rules is None:
            return self.next(after), None
        found = dst.next_slot(rules, self._pattern, self._fixed, floor_seconds(after) + 1)
        return wall_datetime(found.wall, found.fold, self._zone), _note_text(found, rules)

    def describe(self) -> str:
        return describing.describe(self._pattern, self._has_seconds, self.tz, self.job, self.expr)

    def _slow_next(self, after: datetime) -> datetime:
        assert self._rules is not None
        found = dst.next_slot(self._rules, self._pattern, self._fixed, floor_seconds(after) + 1)
        return wall_datetime(found.wall, found.fold, self._zone)

    def _slow_prev(self, before: datetime) -> datetime:
        assert self._rules is not None
        start = floor_seconds(before) - (0 if before.microsecond else 1)
        found = dst.prev_slot(self._rules, self._pattern, self._fixed, start)
        return wall_datetime(found.wall, found.fold, self._zone)


def _ordinary(rules: ZoneRules, epoch_day: int) -> bool:
    """Whether every wall time of the day exists exactly once."""
    info = rules.days.get(epoch_day)
    return (info if info is not None else rules.day(epoch_day)).__class__ is int


def _note_text(found: dst.Found, rules: ZoneRules) -> str | None:
    note = found.note
    if note is None:
        return None
    day, sod = divmod(note.wall, 86400)
    hhmm = f"{sod // 3600:02}:{sod // 60 % 60:02}" + (f":{sod % 60:02}" if sod % 60 else "")
    if note.kind == "shifted":
        on = date.fromordinal(day + EPOCH_ORDINAL).isoformat()
        return f"shifted: {hhmm} does not exist on {on}"
    if note.kind == "once":
        return f"repeated hour: runs once, at the first {hhmm}"
    offset = (note.wall - found.instant) // 60
    sign = "+" if offset >= 0 else "-"
    utc = f"UTC{sign}{abs(offset) // 60:02}:{abs(offset) % 60:02}"
    return f"repeated hour: the {note.kind} {hhmm} ({utc})"
