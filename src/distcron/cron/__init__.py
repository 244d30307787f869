"""The cron engine: parse expressions, compute next and previous slots, fast.

    from distcron.cron import parse, CronSyntaxError
    schedule = parse("*/15 9-17 * * 1-5", tz="Europe/Amsterdam", job="report")
    schedule.next(datetime.now(UTC))

Pure: no I/O beyond loading tzdata, no clock; the caller passes every instant.
See docs/cron.md for the expression language and its DST rules.
"""

from distcron.cron.compile import parse
from distcron.cron.errors import CronSyntaxError, NoSlotError, UnknownTimeZoneError
from distcron.cron.schedule import Schedule

__all__ = ["CronSyntaxError", "NoSlotError", "Schedule", "UnknownTimeZoneError", "parse"]
