"""The six cron fields and the items a field's text is made of.

Items are the parsed, seed-independent form of a field: ranges (``*``, ``5``,
``1-5``, ``*/15``, ``5/15`` all become a stepped range), spread items (``?``,
``H``, ``H(a-b)/n``, resolved later with the job's seed) and the Quartz specials.
"""

from __future__ import annotations

from dataclasses import dataclass

SECOND, MINUTE, HOUR, DAY_OF_MONTH, MONTH, DAY_OF_WEEK = range(6)

MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
DAY_NAMES = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")


@dataclass(frozen=True)
class FieldDef:
    index: int
    name: str
    lo: int
    hi: int
    names: dict[str, int]
    # Range a bare ``?``/``H`` picks from: day-of-month stops at 28 so that the
    # picked day exists in every month (as Jenkins does).
    spread_lo: int
    spread_hi: int

    @property
    def expected(self) -> str:
        if self.index == MONTH:
            return "jan…dec or 1–12"
        if self.index == DAY_OF_WEEK:
            return "sun…sat or 0–7"
        return f"{self.lo}–{self.hi}"


FIELDS = (
    FieldDef(SECOND, "second", 0, 59, {}, 0, 59),
    FieldDef(MINUTE, "minute", 0, 59, {}, 0, 59),
    FieldDef(HOUR, "hour", 0, 23, {}, 0, 23),
    FieldDef(DAY_OF_MONTH, "day-of-month", 1, 31, {}, 1, 28),
    FieldDef(MONTH, "month", 1, 12, {n: i + 1 for i, n in enumerate(MONTH_NAMES)}, 1, 12),
    # 7 is Sunday too; values are folded to 0–6 when a field is compiled.
    FieldDef(DAY_OF_WEEK, "day-of-week", 0, 7, {n: i for i, n in enumerate(DAY_NAMES)}, 0, 6),
)


@dataclass(frozen=True, slots=True)
class Range:
    """Every ``step``-th value from ``lo`` to ``hi`` inclusive."""

    lo: int
    hi: int
    step: int


@dataclass(frozen=True, slots=True)
class Spread:
    """``?`` / ``H`` / ``H(lo-hi)`` / ``H/step`` / ``H(lo-hi)/step``; None = field default."""

    lo: int | None
    hi: int | None
    step: int | None


@dataclass(frozen=True, slots=True)
class LastDay:
    """Day-of-month ``L`` (before=0) or ``L-n``: ``before`` days before the month's last."""

    before: int


@dataclass(frozen=True, slots=True)
class NearestWorkday:
    """Day-of-month ``15W``: the Monday–Friday nearest the 15th, within the month."""

    day: int


@dataclass(frozen=True, slots=True)
class LastWorkday:
    """Day-of-month ``LW``: the month's last Monday–Friday."""


@dataclass(frozen=True, slots=True)
class NthWeekday:
    """Day-of-week ``5#2``: the 2nd Friday of the month."""

    weekday: int
    nth: int


@dataclass(frozen=True, slots=True)
class LastWeekday:
    """Day-of-week ``5L``: the month's last Friday."""

    weekday: int


Special = LastDay | NearestWorkday | LastWorkday | NthWeekday | LastWeekday
Item = Range | Spread | Special


@dataclass(frozen=True)
class FieldSyntax:
    """One field as written: its items and where it stands in the expression."""

    index: int
    text: str
    position: int
    items: tuple[Item, ...]

    @property
    def star(self) -> bool:
        """Whether the text starts with ``*``: Vixie cron's test for the day-of-month /
        day-of-week rule (``*/2`` counts as a star, as in Vixie cron and cronie)."""
        return self.text.startswith("*")

    @property
    def interval(self) -> bool:
        """Whether the field repeats over its whole range (``*``, ``*/n``, ``H/n``):
        such time fields keep their real spacing across DST changes."""
        upper = self.text.upper()
        return upper.startswith(("*", "H/"))

    @property
    def spread(self) -> bool:
        return any(isinstance(item, Spread) for item in self.items)
