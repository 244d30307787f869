"""Errors of the cron engine.

Both are ``ValueError`` subclasses so that callers validating user input can catch
one built-in type; both sit in distcron's error tree too.
"""

from __future__ import annotations

from distcron.errors import DistcronError


class CronSyntaxError(DistcronError, ValueError):
    """A cron expression (or its time zone) is invalid.

    ``field`` names the field ("day-of-week", ...) or is None when the whole
    expression is at fault; ``position`` is the 0-based index in ``expr`` of the
    offending character (None when no single character is to blame).
    """

    def __init__(
        self,
        expr: str,
        reason: str,
        field: str | None = None,
        position: int | None = None,
    ) -> None:
        self.expr = expr
        self.reason = reason
        self.field = field
        self.position = position
        what = f"bad {field}" if field is not None else "bad cron expression"
        message = f'{what} in "{expr}": {reason}'
        if position is not None:
            # Whitespace is shown as plain spaces so that the caret lines up.
            shown = "".join(" " if ch.isspace() else ch for ch in expr)
            message += f"\n  {shown}\n  {' ' * position}^"
        super().__init__(message)


class UnknownTimeZoneError(CronSyntaxError):
    """The time zone is not a known IANA zone name (or is "localtime", which names
    no zone but each machine's own setting)."""

    def __init__(self, zone: str, reason: str | None = None) -> None:
        super().__init__(
            zone,
            reason or "unknown time zone (expected an IANA name such as Europe/Amsterdam or UTC)",
            field="time zone",
        )
        self.zone = zone


class NoSlotError(DistcronError, LookupError):
    """A schedule has no slot in the direction asked for within years 1 to 9999."""
