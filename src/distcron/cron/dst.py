"""Slots across daylight-saving changes (promise 6), as cronie runs them.

Wall times are searched in order; each match becomes zero, one or two instants:

* a wall time that exists once is that instant;
* a wall time in a gap (clocks jump forward): a *fixed-time* schedule runs at the
  first instant after the jump, an *interval* schedule skips it;
* a wall time in a repeat (clocks go back): a fixed-time schedule runs once, at the
  first occurrence; an interval schedule runs at both, keeping its real spacing.

In time order the repeated walls come twice: [.., R0) then [R0, R1) first pass, then
[R0, R1) second pass, then [R1, ..). The search therefore revisits [R0, R1) when
it starts inside the first pass and runs past R1 (and mirrored, going backwards).

Results are (instant, wall, fold, note) with a Note saying what was special.
"""

from __future__ import annotations

from typing import NamedTuple

from distcron.cron.wall import WallPattern
from distcron.cron.zone import ZoneRules


class Note(NamedTuple):
    """Why a slot is special: ``kind`` is "shifted" (``wall`` did not exist and the
    slot runs at the end of the gap), "once" (fixed time in a repeat: first
    occurrence only), "first" or "second" (interval schedule in a repeat)."""

    kind: str
    wall: int


class Found(NamedTuple):
    instant: int
    wall: int
    fold: int
    note: Note | None


def next_slot(rules: ZoneRules, pattern: WallPattern, fixed: bool, start: int) -> Found:
    """The first slot at or after instant ``start``."""
    offset, repeat = rules.locate(start)
    wall = start + offset
    pending = None  # a repeat whose second pass is still to come
    in_second_pass = False
    if repeat is not None and repeat.gap:
        # ``start`` is the first instant after a gap, where skipped fixed times run.
        if fixed:
            wall = repeat.lo
        repeat = None
    if repeat is not None:
        if start < repeat.at:
            pending = None if fixed else repeat
        elif fixed:
            wall = repeat.hi  # every first occurrence in the repeat is already past
        else:
            in_second_pass = True
    while True:
        wall = pattern.next_at(wall)
        if pending is not None and wall >= pending.hi:
            again = pattern.next_at(pending.lo)
            if again < pending.hi:
                return Found(again - pending.after, again, 1, Note("second", again))
            pending = None
        where = rules.classify(wall)
        if isinstance(where, int):
            return Found(wall - where, wall, 0, None)
        if where.gap:
            if fixed:
                return Found(where.at, where.hi, 0, Note("shifted", wall))
            wall = where.hi
            continue
        if fixed:
            return Found(wall - where.before, wall, 0, Note("once", wall))
        if in_second_pass and where == repeat:
            return Found(wall - where.after, wall, 1, Note("second", wall))
        return Found(wall - where.before, wall, 0, Note("first", wall))


def prev_slot(rules: ZoneRules, pattern: WallPattern, fixed: bool, start: int) -> Found:
    """The last slot at or before instant ``start``."""
    offset, repeat = rules.locate(start)
    wall = start + offset
    pending = None  # a repeat whose first pass is still to come (going backwards)
    if repeat is not None and not repeat.gap and start >= repeat.at:
        if fixed:
            wall = repeat.hi - 1  # every first occurrence in the repeat is before start
        else:
            pending = repeat
    while True:
        wall = pattern.prev_at(wall)
        if pending is not None and wall < pending.lo:
            again = pattern.prev_at(pending.hi - 1)
            if again >= pending.lo:
                return Found(again - pending.before, again, 0, Note("first", again))
            pending = None
        where = rules.classify(wall)
        if isinstance(where, int):
            return Found(wall - where, wall, 0, None)
        if where.gap:
            if fixed:
                return Found(where.at, where.hi, 0, Note("shifted", wall))
            wall = where.lo - 1
            continue
        if fixed:
            return Found(wall - where.before, wall, 0, Note("once", wall))
        if start >= where.at:
            return Found(wall - where.after, wall, 1, Note("second", wall))
        return Found(wall - where.before, wall, 0, Note("first", wall))
