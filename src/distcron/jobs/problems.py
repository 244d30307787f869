"""Problems found in job specs, collected so that all of them are reported at once.

Validation never stops at the first problem: a jobs file with three mistakes
gets one :class:`JobSpecErrors` listing three :class:`Problem`, each naming the
job and the key, and nothing from that file is applied.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from distcron.errors import JobSpecError, KeyProblems

# Types whose pydantic message does not show the value that was given.
_SHOW_INPUT_SKIP = frozenset({"value_error", "missing", "extra_forbidden"})


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one job (or with the file around the jobs)."""

    message: str
    job: str | None = None  # the job's name, when it has one
    index: int | None = None  # 1-based position of the job in its file
    field: str | None = None  # the key, with a path inside it: "env", "argv[2]"
    line: int | None = None  # line in the source, when known
    in_defaults: bool = False  # the key is in the [defaults] table

    def __str__(self) -> str:
        where = []
        if self.in_defaults:
            where.append("[defaults]")
        elif self.job is not None:
            where.append(f"job {self.job!r}")
        elif self.index is not None:
            where.append(f"job #{self.index}")
        if self.field is not None:
            where.append(f"field {self.field!r}")
        return f"{', '.join(where)}: {self.message}" if where else self.message


class JobSpecErrors(JobSpecError):
    """Every problem found in one source (a file, a spec); nothing was applied.

    ``str()`` gives one line per problem (continuation lines, such as a cron
    expression with a caret under the bad character, are indented under it).
    ``job`` and ``field`` are set when there is exactly one problem.
    """

    def __init__(self, source: str, problems: Iterable[Problem]) -> None:
        self.source = source
        self.problems = tuple(problems)
        count = len(self.problems)
        lines = [f"{source}: {count} problem{'s' if count != 1 else ''}, nothing was applied:"]
        for problem in self.problems:
            place = source if problem.line is None else f"{source}:{problem.line}"
            lines.append(f"{place}: {problem}".replace("\n", "\n    "))
        super().__init__("\n".join(lines))
        if count == 1:
            self.job = self.problems[0].job
            self.field = self.problems[0].field


def suggest(word: str, choices: Collection[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, or an empty string."""
    folded = {choice.lower(): choice for choice in choices}
    if word.lower() in folded:
        return f" (did you mean {folded[word.lower()]!r}?)"
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _field_path(loc: tuple[int | str, ...]) -> str | None:
    if not loc:
        return None
    path = str(loc[0])
    for part in loc[1:]:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _short_repr(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# pydantic's error types in the words of a jobs file (see plain_message).
_PLAIN = {
    "string_type": "must be a string",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "dict_type": "must be a table (key = value pairs)",
    "mapping_type": "must be a table (key = value pairs)",
    "tuple_type": "must be a list",
    "list_type": "must be a list",
    "model_type": "must be a table (key = value pairs)",
    "path_type": "must be a path",
    "extra_forbidden": "is not a known key",
    "missing": "is required",
}
_BOUNDS = {
    "greater_than": "must be more than {gt}",
    "greater_than_equal": "must be at least {ge}",
    "less_than": "must be less than {lt}",
    "less_than_equal": "must be at most {le}",
}


def plain_message(error: ErrorDetails) -> str:
    """One pydantic error in the words of a jobs file or config, without
    pydantic's own ("Input should be ...", "Value error, ...")."""
    kind, context = error["type"], error.get("ctx", {})
    cause = context.get("error")
    if kind in ("value_error", "assertion_error") and cause is not None:
        return str(cause)
    if kind == "literal_error":
        return f"must be {context['expected']}"
    if kind in _BOUNDS:
        bounds = {k: f"{v:g}" if isinstance(v, float) else v for k, v in context.items()}
        return _BOUNDS[kind].format(**bounds)
    if kind in _PLAIN:
        return _PLAIN[kind]
    message = error["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return message.replace("Input should be", "must be", 1)


def problems_from_validation_error(
    exc: ValidationError,
    known_keys: Collection[str],
    job: str | None = None,
    index: int | None = None,
    inherited: Collection[str] = (),
) -> list[Problem]:
    """pydantic's errors as Problems in the user's words: keys, not locations.

    ``inherited`` names the keys whose values came from a [defaults] table: a bad
    value there is the table's problem (the same for every job, reported once by
    the caller's de-duplication), while a clash with the job's other keys stays
    the job's problem.
    """
    problems: list[Problem] = []
    for error in exc.errors(include_url=False):
        kind = error["type"]
        cause = error.get("ctx", {}).get("error")
        if isinstance(cause, KeyProblems):
            problems.extend(
                Problem(
                    message + (" (inherited from [defaults])" if field in inherited else ""),
                    job=job,
                    index=index,
                    field=field,
                )
                for field, message in cause.problems
            )
            continue
        field = _field_path(error["loc"])
        if kind == "extra_forbidden":
            key = str(error["loc"][0])
            message = f"unknown key {key!r}{suggest(key, known_keys)}"
        elif kind == "missing":
            message = "is required"
        else:
            message = plain_message(error)
        if kind not in _SHOW_INPUT_SKIP:
            message += f" (got {_short_repr(error['input'])})"
        if error["loc"] and error["loc"][0] in inherited:
            problems.append(Problem(message, field=field, in_defaults=True))
        else:
            problems.append(Problem(message, job=job, index=index, field=field))
    return problems
