"""From expression text to syntax: fields, items and macros, with errors that point.

Every error names the field, shows where (``position`` is an index into the original
expression) and says what was expected there.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from distcron.cron.errors import CronSyntaxError
from distcron.cron.fields import (
    DAY_OF_MONTH,
    DAY_OF_WEEK,
    FIELDS,
    SECOND,
    FieldDef,
    FieldSyntax,
    Item,
    LastDay,
    LastWeekday,
    LastWorkday,
    NearestWorkday,
    NthWeekday,
    Range,
    Spread,
)
from distcron.durations import parse_duration

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_WEEKDAY_WORDS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_DIGITS = "0123456789"
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_MAX_DIGITS = 6  # longer numbers are out of every range; also keeps int() cheap
# Only ASCII spaces and tabs separate fields; ASCII white space around the whole
# expression (a line break read from a file) is ignored.
_ENDS = " \t\n\r\f\v"
_WORD = re.compile(r"[^ \t]+")
_MACRO = re.compile(r"(@[^ \t]*)(?:[ \t]+(.*))?", re.DOTALL)
# Any other white space (what str.isspace() calls white space), wherever it stands.
_OTHER_BLANK = re.compile(r"[^\S \t]")
_CONTROL_NAMES = {
    "\n": "line feed",
    "\r": "carriage return",
    "\v": "vertical tab",
    "\f": "form feed",
    "\x85": "next line",
}

_ITEM_HELP = {
    SECOND: "a number 0–59, a range like 10-20, a step like */15, *, ? or H",
    1: "a number 0–59, a range like 10-20, a step like */15, *, ? or H",
    2: "a number 0–23, a range like 9-17, a step like */2, *, ? or H",
    DAY_OF_MONTH: "a number 1–31, a range, a step, *, ?, H, L, L-n, nW or LW",
    4: "a number 1–12, jan…dec, a range, a step, *, ? or H",
    DAY_OF_WEEK: "a number 0–7, sun…sat, a range, a step, *, ?, H, n#k or nL",
}


@dataclass(frozen=True)
class CronSyntax:
    """A classic expression: always six fields, seconds first (``0`` when not written)."""

    expr: str
    fields: tuple[FieldSyntax, ...]
    has_seconds: bool

    @property
    def spread(self) -> bool:
        return any(f.spread for f in self.fields)


@dataclass(frozen=True)
class EverySyntax:
    """``@every DURATION``: a fixed interval of whole seconds counted from the Unix epoch."""

    expr: str
    seconds: int


def parse_syntax(expr: str) -> CronSyntax | EverySyntax:
    """Parse ``expr``; raise CronSyntaxError pointing at the first thing wrong."""
    core = expr.strip(_ENDS)
    if not core:
        raise CronSyntaxError(expr, "empty expression (expected 5 or 6 fields, or a macro)")
    lead = len(expr) - len(expr.lstrip(_ENDS))
    blank = _OTHER_BLANK.search(core)
    if blank is not None:
        raise _other_blank(expr, lead + blank.start())
    if core.startswith("@"):
        return _parse_macro(expr, core, lead)
    words = [(m.group(), lead + m.start()) for m in _WORD.finditer(core)]
    if len(words) not in (5, 6):
        # Point at the first field too many, or just past the end when some are missing.
        at = words[6][1] if len(words) > 6 else len(expr.rstrip())
        year = " (a year field, as in Quartz, is not supported)" if len(words) == 7 else ""
        raise CronSyntaxError(
            expr,
            f"expected 5 fields (minute hour day-of-month month day-of-week) or 6 "
            f"(with seconds first), got {len(words)}{year}",
            position=at,
        )
    has_seconds = len(words) == 6
    first = SECOND if has_seconds else SECOND + 1
    fields = [
        _FieldParser(expr, FIELDS[first + i], text, position).parse()
        for i, (text, position) in enumerate(words)
    ]
    if not has_seconds:
        fields.insert(0, FieldSyntax(SECOND, "0", -1, (Range(0, 0, 1),)))
    return CronSyntax(expr, tuple(fields), has_seconds)


def _other_blank(expr: str, at: int) -> CronSyntaxError:
    """White space other than an ASCII space or tab, named with its code point and
    blamed on the field it follows (or precedes, at the start), counting the fields
    as the writer meant them: separated by any white space."""
    ch = expr[at]
    name = _CONTROL_NAMES.get(ch) or unicodedata.name(ch, "control character").lower()
    intended = expr.split()
    field, where = None, ""
    if intended and not intended[0].startswith("@"):
        before = len(expr[:at].split())
        index = max(before - 1, 0)
        first = SECOND if len(intended) == 6 else SECOND + 1
        if first + index < len(FIELDS):
            field = FIELDS[first + index].name
            where = f" {'after' if before else 'before'} the {field} field"
    return CronSyntaxError(
        expr,
        f"{name} (U+{ord(ch):04X}){where}: only ASCII spaces and tabs separate fields "
        "(retype it as a plain space)",
        field,
        at,
    )


def _parse_macro(expr: str, core: str, lead: int) -> CronSyntax | EverySyntax:
    match = _MACRO.fullmatch(core)
    assert match is not None  # the expression starts with "@" after blanks
    name, rest = match.group(1), match.group(2)
    key = name.lower()
    if key == "@reboot":
        raise CronSyntaxError(
            expr,
            "@reboot is not supported: a distributed cron has no one machine whose "
            "boot it could follow (run the job from the machine's own init system)",
            position=lead + match.start(1),
        )
    if key == "@every":
        if rest is None:
            raise CronSyntaxError(expr, "@every needs a duration, e.g. @every 90s or @every 1h30m")
        return _parse_every(expr, rest, lead + match.start(2))
    if key not in MACROS:
        raise CronSyntaxError(
            expr,
            f'unknown macro "{name}" (expected one of {", ".join(MACROS)} or @every DURATION)',
            position=lead + match.start(1),
        )
    if rest is not None:
        raise CronSyntaxError(
            expr, f"{name} takes nothing after it", position=lead + match.start(2)
        )
    syntax = parse_syntax(MACROS[key])
    assert isinstance(syntax, CronSyntax)
    return CronSyntax(expr, syntax.fields, syntax.has_seconds)


def _parse_every(expr: str, text: str, position: int) -> EverySyntax:
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise CronSyntaxError(expr, str(exc), field="duration", position=position) from None
    if seconds < 1 or seconds != int(seconds):
        raise CronSyntaxError(
            expr,
            f"@every needs a whole number of seconds, at least 1s (got {seconds:g}s)",
            field="duration",
            position=position,
        )
    return EverySyntax(expr, int(seconds))


class _FieldParser:
    """Recursive descent over one field's text; ``self.i`` indexes that text."""

    def __init__(self, expr: str, fdef: FieldDef, text: str, position: int) -> None:
        self.expr = expr
        self.fdef = fdef
        self.raw = text
        # Upper-case ASCII only, so that positions never shift.
        self.text = "".join(ch.upper() if ch.isascii() else ch for ch in text)
        self.base = position
        self.i = 0

    def parse(self) -> FieldSyntax:
        items: list[Item] = []
        workday_at = None  # where an nW item starts
        while True:
            if self._peek() in (",", ""):
                raise self._error("empty item in list" if items or self._peek() else "empty field")
            start = self.i
            items.append(self._item())
            if isinstance(items[-1], NearestWorkday):
                workday_at = start
            ch = self._peek()
            if ch == "":
                break
            if ch != ",":
                raise self._unexpected()
            self.i += 1
            if self._peek() == "":
                raise self._error("empty item at the end of the list")
        if workday_at is not None and len(items) > 1:
            end = self.raw.find(",", workday_at)
            typed = self.raw[workday_at : end if end >= 0 else None]
            raise self._error(
                f'"{typed}" must stand alone: nW picks one weekday and cannot be part of a '
                "list (as in Quartz and croniter; LW and L may be)",
                workday_at,
            )
        return FieldSyntax(self.fdef.index, self.raw, self.base, tuple(items))

    # -- items -----------------------------------------------------------------------

    def _item(self) -> Item:
        ch = self._peek()
        start = self.i
        if ch == "":
            raise self._unexpected()
        if ch == "*":
            self.i += 1
            step = self._step()
            return Range(self.fdef.lo, self.fdef.hi, step or 1)
        if ch == "?":
            self.i += 1
            if self._peek() not in (",", ""):
                raise self._error('"?" stands alone (for a picked range use H(a-b) or H/n)')
            return Spread(None, None, None)
        if ch in _LETTERS:
            word = self._word()
            if word == "H":
                return self._spread()
            special = self._letter_special(word, start)
            if special is not None:
                return special
            lo = self._name(word, start)
        elif ch in _DIGITS:
            lo = self._number(start)
            special = self._number_special(lo, start)
            if special is not None:
                return special
            self._check_range(lo, start)
        else:
            raise self._unexpected()
        return self._range_rest(lo, start)

    def _range_rest(self, lo: int, start: int) -> Range:
        hi = lo
        is_range = self._peek() == "-"
        if is_range:
            self.i += 1
            hi_at = self.i
            # "29-L": to the month's last day, which is "29-31" in every month (the days
            # a month lacks never match), stepped from the start as any range.
            hi = self._last_day() if self._peek() == "L" else self._value()
            if hi < lo:
                raise self._error(
                    f"range {self.text[start : self.i]} runs backwards (wrap-around ranges "
                    f"are not supported; write e.g. {lo}-{self.fdef.hi},{self.fdef.lo}-{hi})",
                    hi_at,
                )
        step = self._step()
        if step is not None and not is_range:
            hi = self.fdef.hi  # "5/15" means from 5 to the end of the range
        return Range(lo, hi, step or 1)

    def _spread(self) -> Spread:
        lo = hi = None
        if self._peek() == "(":
            self.i += 1
            lo_at = self.i
            lo = self._value()
            self._expect("-", "a range inside H( ), e.g. H(0-29)")
            hi = self._value()
            if hi < lo:
                raise self._error(f"range in H({lo}-{hi}) runs backwards", lo_at)
            self._expect(")", '")" to close H(')
        return Spread(lo, hi, self._step())

    def _letter_special(self, word: str, start: int) -> Item | None:
        index = self.fdef.index
        if index == DAY_OF_MONTH:
            if word == "LW":
                return LastWorkday()
            if word == "L":
                before = 0
                if self._peek() == "-":
                    self.i += 1
                    at = self.i
                    before = self._number(at)
                    if before > 30:
                        raise self._error(f"L-{before}: at most L-30 (a month has 31 days)", at)
                    if self._peek() == "/":
                        raise self._error(
                            f"L-{before} takes no step (for every n-th day up to the last, "
                            "write a range such as 20-L/3)"
                        )
                # "L/n" runs from the last day to the end of the month: the last day
                # alone, as "5/15" runs from 5 to the end of the field (and as cronsim).
                self._step()
                return LastDay(before)
        if index == DAY_OF_WEEK:
            if word == "L":
                raise self._error(
                    'day-of-week "L" needs a weekday number before it, e.g. 5L for the '
                    "month's last Friday",
                    start,
                )
            if word.endswith("L") and word[:-1] in self.fdef.names:
                typed = self.raw[start : self.i]
                number = self.fdef.names[word[:-1]]
                raise self._error(
                    f'"{typed}": L follows a weekday number, not a name (for the last '
                    f"{_WEEKDAY_WORDS[number]} of the month write {number}L)",
                    start,
                )
            if word in self.fdef.names and self._peek() == "#":
                return self._nth(self.fdef.names[word])
        return None

    def _number_special(self, value: int, start: int) -> Item | None:
        index = self.fdef.index
        ch = self._peek()
        if index == DAY_OF_MONTH and ch == "W":
            self._check_range(value, start)
            self.i += 1
            return NearestWorkday(value)
        if index == DAY_OF_WEEK and ch == "L":
            self._check_range(value, start)
            self.i += 1
            return LastWeekday(value % 7)
        if index == DAY_OF_WEEK and ch == "#":
            self._check_range(value, start)
            return self._nth(value % 7)
        return None

    def _nth(self, weekday: int) -> NthWeekday:
        self.i += 1  # the "#"
        at = self.i
        if not self._at(_DIGITS):
            raise self._error('expected 1–5 after "#" (e.g. 5#2 for the second Friday)')
        nth = self._number(at)
        if not 1 <= nth <= 5:
            raise self._error(f"#{nth}: a month has at most 5 of a weekday (expected 1–5)", at)
        return NthWeekday(weekday % 7, nth)

    # -- tokens ----------------------------------------------------------------------

    def _step(self) -> int | None:
        if self._peek() != "/":
            return None
        self.i += 1
        at = self.i
        if not self._at(_DIGITS):
            raise self._error("expected a step after /, e.g. */15")
        step = self._number(at)
        if step == 0:
            raise self._error("a step must be at least 1", at)
        return step

    def _value(self) -> int:
        start = self.i
        if self._at(_LETTERS):
            return self._name(self._word(), start)
        if self._at(_DIGITS):
            value = self._number(start)
            self._check_range(value, start)
            return value
        raise self._unexpected(self.fdef.expected)

    def _last_day(self) -> int:
        """``L`` as the end of a day-of-month range (the caller saw the "L")."""
        start = self.i
        word = self._word()
        if self.fdef.index != DAY_OF_MONTH or word != "L":
            return self._name(word, start)
        return self.fdef.hi

    def _name(self, word: str, start: int) -> int:
        if word in self.fdef.names:
            return self.fdef.names[word]
        name = self.raw[start : self.i]
        raise self._error(f'unknown name "{name}" (expected {self.fdef.expected})', start)

    def _number(self, start: int) -> int:
        while self._at(_DIGITS):
            self.i += 1
        digits = self.text[start : self.i]
        if not digits:
            raise self._unexpected()
        if len(digits) > _MAX_DIGITS:
            raise self._error(f"{digits} is out of range (expected {self.fdef.expected})", start)
        return int(digits)

    def _word(self) -> str:
        start = self.i
        while self._at(_LETTERS):
            self.i += 1
        return self.text[start : self.i]

    def _check_range(self, value: int, start: int) -> None:
        if not self.fdef.lo <= value <= self.fdef.hi:
            raise self._error(f"{value} is out of range (expected {self.fdef.expected})", start)

    def _expect(self, ch: str, what: str) -> None:
        if self._peek() != ch:
            raise self._unexpected(what)
        self.i += 1

    def _peek(self) -> str:
        return self.text[self.i] if self.i < len(self.text) else ""

    def _at(self, chars: str) -> bool:
        """Whether the next character is one of ``chars`` (False at the end)."""
        return self.i < len(self.text) and self.text[self.i] in chars

    def _unexpected(self, expected: str | None = None) -> CronSyntaxError:
        # As typed: the parser reads an upper-cased copy.
        ch = self.raw[self.i] if self.i < len(self.raw) else ""
        what = f'unexpected "{ch}"' if ch else "unexpected end of field"
        return self._error(f"{what} (expected {expected or _ITEM_HELP[self.fdef.index]})")

    def _error(self, reason: str, at: int | None = None) -> CronSyntaxError:
        offset = self.i if at is None else at
        return CronSyntaxError(self.expr, reason, self.fdef.name, self.base + offset)
