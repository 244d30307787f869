"""Wall clock <-> instants for one IANA zone, from the real tzdata.

The search for slots runs on wall-clock seconds ("local epoch seconds": the wall time
read as if it were UTC). This module says, for any wall time, whether it exists once
(and with which UTC offset), not at all (a gap) or twice (a repeat).

zoneinfo has no public list of transitions, so they are found by probing ``utcoffset``
once a day and bisecting to the second where it changes. In tzdata (checked for every
zone, 2026) offset changes are at least 167 hours apart, so a daily probe misses
none. Results are cached per zone: per year (transitions) and per wall day (the one
offset of an ordinary day, or the transitions touching an unusual one).
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from distcron.cron.days import MAX_YEAR, MIN_YEAR, month_info
from distcron.cron.errors import UnknownTimeZoneError

DAY = 86400
_DAY_CACHE_LIMIT = 200_000
# Probes stay this far inside datetime's range (years 1..9999) whatever the offset.
_FIRST_PROBE = (month_info(MIN_YEAR, 1)[0] + 2) * DAY
_LAST_PROBE = (month_info(MAX_YEAR, 12)[0] + 29) * DAY


class Transition(NamedTuple):
    """A change of UTC offset at instant ``at``. Wall times in [lo, hi) are affected:
    they do not exist when the clock jumps forward (a gap), and exist twice when it
    goes back (a repeat)."""

    at: int
    before: int
    after: int
    lo: int
    hi: int

    @property
    def gap(self) -> bool:
        return self.after > self.before


class SpecialDay(NamedTuple):
    """A wall day touched by transitions: ``offset`` holds for walls before the first."""

    offset: int
    transitions: tuple[Transition, ...]


class ZoneRules:
    """The wall-clock behaviour of one zone. Shared (interned) per zone key."""

    def __init__(self, key: str, zone: ZoneInfo) -> None:
        self.key = key
        self.zone = zone
        self._years: dict[int, tuple[int, tuple[Transition, ...]]] = {}
        # epoch day of a wall date -> its one offset, or a SpecialDay
        self.days: dict[int, int | SpecialDay] = {}

    # -- instants ---------------------------------------------------------------------

    def offset_at(self, t: int) -> int:
        """UTC offset in seconds at instant ``t`` (epoch seconds)."""
        offset, transitions = self._year(_year_of(t))
        for tr in transitions:
            if tr.at > t:
                break
            offset = tr.after
        return offset

    def locate(self, t: int) -> tuple[int, Transition | None]:
        """(offset at ``t``, the transition ``t`` stands in: a repeat whose walls
        contain ``t``'s wall time, or a gap that ends exactly at ``t``; else None)."""
        offset = self.offset_at(t)
        wall = t + offset
        info = self.day(wall // DAY)
        if isinstance(info, SpecialDay):
            for tr in info.transitions:
                if tr.gap and t == tr.at:
                    return offset, tr
                if not tr.gap and tr.lo <= wall < tr.hi:
                    return offset, tr
        return offset, None

    # -- wall times -------------------------------------------------------------------

    def day(self, epoch_day: int) -> int | SpecialDay:
        """The offset valid for every wall time of the day, or a SpecialDay."""
        info = self.days.get(epoch_day)
        if info is None:
            info = self._compute_day(epoch_day)
            if len(self.days) >= _DAY_CACHE_LIMIT:
                self.days.clear()
            self.days[epoch_day] = info
        return info

    def classify(self, wall: int) -> int | Transition:
        """The offset of a wall time that exists once, or the transition making it
        fall in a gap or a repeat."""
        info = self.day(wall // DAY)
        if not isinstance(info, SpecialDay):
            return info
        offset = info.offset
        for tr in info.transitions:
            if wall < tr.lo:
                return offset
            if wall < tr.hi:
                return tr
            offset = tr.after
        return offset

    def _compute_day(self, epoch_day: int) -> int | SpecialDay:
        start, end = epoch_day * DAY, (epoch_day + 1) * DAY
        # Offsets stay within about +-15 h, so farther transitions touch no wall of the day.
        low = max(start - 2 * DAY, _FIRST_PROBE)
        offset = self.offset_at(low)
        touching = []
        for tr in self._between(low, end + 2 * DAY):
            if tr.hi <= start:
                offset = tr.after
            elif tr.lo < end:
                touching.append(tr)
        return SpecialDay(offset, tuple(touching)) if touching else offset

    def _between(self, low: int, high: int) -> list[Transition]:
        found: list[Transition] = []
        for year in range(_year_of(low), _year_of(min(high, _LAST_PROBE)) + 1):
            found.extend(tr for tr in self._year(year)[1] if low < tr.at <= high)
        return found

    # -- probing ----------------------------------------------------------------------

    def transitions_in(self, year: int) -> tuple[Transition, ...]:
        """The offset changes in ``year`` (UTC), in order."""
        return self._year(year)[1]

    def _year(self, year: int) -> tuple[int, tuple[Transition, ...]]:
        """(offset at the start of ``year``, UTC, and the year's transitions)."""
        cached = self._years.get(year)
        if cached is None:
            cached = self._probe_year(year)
            self._years[year] = cached
        return cached

    def _probe_year(self, year: int) -> tuple[int, tuple[Transition, ...]]:
        start = max(month_info(year, 1)[0] * DAY, _FIRST_PROBE)
        end = min(month_info(year, 12)[0] * DAY + 31 * DAY, _LAST_PROBE)
        first = offset = self._probe(start)
        transitions = []
        t = start
        while t < end:
            nxt = min(t + DAY, end)
            new = self._probe(nxt)
            if new == offset:
                t = nxt
                continue
            # Bisect to the first second with a different offset.
            lo, hi = t, nxt
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if self._probe(mid) == offset:
                    lo = mid
                else:
                    hi = mid
            new = self._probe(hi)
            low, high = sorted((offset, new))
            transitions.append(Transition(hi, offset, new, hi + low, hi + high))
            offset, t = new, hi
        return first, tuple(transitions)

    def _probe(self, t: int) -> int:
        delta = datetime.fromtimestamp(t, self.zone).utcoffset()
        assert delta is not None
        return delta.days * DAY + delta.seconds


def _year_of(t: int) -> int:
    return datetime.fromtimestamp(min(max(t, _FIRST_PROBE), _LAST_PROBE), UTC).year


@lru_cache(maxsize=1024)
def zone_rules(key: str) -> ZoneRules | None:
    """The rules of zone ``key``, or None for UTC itself (which needs none)."""
    return None if key in ("UTC", "Etc/UTC") else ZoneRules(key, load_zone(key))


@lru_cache(maxsize=1024)
def load_zone(key: str) -> ZoneInfo:
    """The ZoneInfo for ``key``; UnknownTimeZoneError naming it when there is none."""
    if key == "localtime":
        # zoneinfo finds it (a link to /etc/localtime), but replicas on machines set to
        # different zones would then compute different slots for the same job.
        raise UnknownTimeZoneError(
            key,
            '"localtime" is each machine\'s own setting, not a zone: name the zone, e.g. '
            "Europe/Amsterdam or UTC, so that every replica computes the same slots",
        )
    try:
        return ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise UnknownTimeZoneError(key) from None
