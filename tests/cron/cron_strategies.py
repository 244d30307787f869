"""Hypothesis strategies for cron expressions, zones and instants."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import strategies as st

# Zones with no offset change in 1990–2060 (as of tzdata 2026).
STEADY_ZONES = ["UTC", "Asia/Tokyo", "Asia/Kolkata", "Etc/GMT+5", "America/Phoenix", "Asia/Dubai"]
DST_ZONES = [
    "Europe/Amsterdam",
    "America/New_York",
    "Australia/Lord_Howe",
    "Europe/Dublin",
    "America/Havana",
    "America/Santiago",
    "Asia/Beirut",
    "Australia/Sydney",
    "Africa/Casablanca",
    "Pacific/Chatham",
]
MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]


@st.composite
def _item(draw: st.DrawFn, lo: int, hi: int, names: list[str] | None) -> str:
    def value(v: int) -> str:
        if names and draw(st.booleans()):
            return names[(v - lo) % len(names)] if v - lo < len(names) else str(v)
        return str(v)

    a = draw(st.integers(lo, hi))
    kind = draw(st.sampled_from(["value", "range", "stepped", "from"]))
    if kind == "value":
        return value(a)
    if kind == "from":
        return f"{a}/{draw(st.integers(1, hi - lo + 1))}"
    b = draw(st.integers(a, hi))
    if kind == "range":
        return f"{value(a)}-{value(b)}"
    # cronsim reads "a-a/n" as "a/n" (to the end of the range); ranges here have b > a.
    if b == a:
        return value(a)
    return f"{a}-{b}/{draw(st.integers(1, hi - lo + 1))}"


@st.composite
def plain_field(draw: st.DrawFn, lo: int, hi: int, names: list[str] | None = None) -> str:
    kind = draw(st.sampled_from(["star", "star", "step", "list"]))
    if kind == "star":
        return "*"
    if kind == "step":
        return f"*/{draw(st.integers(1, hi - lo + 1))}"
    items = draw(st.lists(_item(lo, hi, names), min_size=1, max_size=3))
    return ",".join(items)


@st.composite
def plain_expressions(
    draw: st.DrawFn, seconds: bool | None = None, daily: bool = False, names: bool = True
) -> str:
    """5- or 6-field expressions of plain cron syntax (no Quartz, no spread).
    ``daily``: day-of-month, month and day-of-week are all "*"."""
    with_seconds = draw(st.booleans()) if seconds is None else seconds
    fields = [draw(plain_field(0, 59)), draw(plain_field(0, 23))]
    if daily:
        fields += ["*", "*", "*"]
    else:
        fields += [
            draw(plain_field(1, 31)),
            draw(plain_field(1, 12, MONTHS if names else None)),
            draw(plain_field(0, 7, DAYS if names else None)),
        ]
    if with_seconds:
        fields.insert(0, draw(plain_field(0, 59)))
    return " ".join(fields)


@st.composite
def to_last_day(draw: st.DrawFn) -> str:
    """Day-of-month fields with croniter's "a-L" or "a-L/n", maybe in a list with plain
    items. "31-L" is left out: croniter reads it as the one-value range "31-31", which
    it takes for "*" (a documented difference)."""
    first = draw(st.integers(1, 30))
    step = draw(st.one_of(st.none(), st.integers(1, 35)))
    item = f"{first}-L" if step is None else f"{first}-L/{step}"
    others = draw(st.lists(_item(1, 31, None), max_size=2))
    return ",".join(draw(st.permutations([item, *others])))


@st.composite
def last_day_stepped(draw: st.DrawFn) -> str:
    """Day-of-month fields with cronsim's "L/n" (the last day), maybe in a list."""
    item = f"L/{draw(st.integers(1, 60))}"
    others = draw(st.lists(_item(1, 31, None), max_size=2))
    return ",".join(draw(st.permutations([item, *others])))


@st.composite
def with_day_of_month(
    draw: st.DrawFn, dom: st.SearchStrategy[str], seconds: bool | None = None
) -> str:
    """A plain expression (no names) whose day-of-month field is drawn from ``dom``."""
    fields = draw(plain_expressions(seconds=seconds, names=False)).split()
    fields[len(fields) - 3] = draw(dom)
    return " ".join(fields)


# White space that is not an ASCII space or tab (str.isspace() is true for each).
OTHER_BLANKS = ["\u00a0", "\u3000", "\u2003", "\u0085", "\u2028", "\u202f", "\u1680"]
ASCII_CONTROL_BLANKS = ["\n", "\r", "\v", "\f", "\x1c"]


@st.composite
def rich_expressions(draw: st.DrawFn) -> str:
    """Plain syntax plus Quartz specials, spread and macros."""
    base = draw(plain_expressions()).split()
    first = len(base) - 5
    if draw(st.booleans()):
        base[first + 2] = draw(
            st.sampled_from(["L", "L-3", "LW", "15W", "1W", "?", "H", "H(1-10)", "1,L", "*/2"])
        )
    if draw(st.booleans()):
        base[first + 4] = draw(
            st.sampled_from(["5L", "1#1", "FRI#5", "0L", "1-5", "?", "H", "mon,fri", "*/2"])
        )
    if draw(st.booleans()):
        base[first] = draw(st.sampled_from(["?", "H", "H/15", "H(0-29)/10", "*/7"]))
    if draw(st.booleans()):
        base[first + 1] = draw(st.sampled_from(["?", "H", "H/6", "H(8-17)", "*/5"]))
    macro = draw(
        st.sampled_from([None] * 8 + ["@daily", "@hourly", "@weekly", "@every 90s", "@every 1h30m"])
    )
    return macro or " ".join(base)


def instants(start: int = 1990, end: int = 2060) -> st.SearchStrategy[datetime]:
    """Aware UTC instants, some with microseconds."""
    low = datetime(start, 1, 1, tzinfo=UTC)
    span = int((datetime(end, 1, 1, tzinfo=UTC) - low).total_seconds())
    seconds = st.integers(0, span).map(lambda s: low + timedelta(seconds=s))
    micro = st.sampled_from([0, 0, 0, 1, 500_000, 999_999])
    return st.builds(lambda t, us: t + timedelta(microseconds=us), seconds, micro)
