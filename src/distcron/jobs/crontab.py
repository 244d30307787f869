"""Turning a classic crontab into job specs, keeping what cron would have done.

cron's rules kept here (as in Vixie cron and cronie): an assignment applies to
the lines after it; ``CRON_TZ`` sets the zone of the schedules that follow;
the command runs with ``$SHELL -c`` in ``$HOME``; an unescaped ``%`` ends the
command and the rest, with ``%`` turned into newlines, is the command's stdin.
See docs/jobs-file.md, "Importing a crontab", for every rule.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Any

from distcron.jobs.problems import JobSpecErrors
from distcron.jobs.spec import JobSpec, build_spec

_ASSIGNMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)", re.ASCII)
# Settings of the cron daemon itself, not of the job's environment.
_DAEMON_SETTINGS = frozenset(
    {"MAILFROM", "RANDOM_DELAY", "CONTENT_TYPE", "CONTENT_TRANSFER_ENCODING"}
)
_DEFAULT_SHELL = "/bin/sh"  # what distcron runs a `command` with, as cron does by default
_HEREDOC_END = "DISTCRON_STDIN"


@dataclass(frozen=True)
class CrontabNote:
    """A warning or an error about one line of the crontab."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass(frozen=True)
class CrontabImport:
    """What came of a crontab: the jobs, and what could not be converted.

    The caller decides what errors mean (fail, or skip the lines)."""

    specs: tuple[JobSpec, ...]
    warnings: tuple[CrontabNote, ...]
    errors: tuple[CrontabNote, ...]


@dataclass
class _Context:
    """The assignments in force at a line."""

    zone: str
    env: dict[str, str]
    owner: str | None = None
    shell: str = _DEFAULT_SHELL
    home: str | None = None


def convert_crontab(text: str, tz: str = "UTC", system: bool = False) -> CrontabImport:
    """The jobs of crontab ``text``. Schedules before any ``CRON_TZ=`` are in ``tz``
    (the zone of the machine the crontab ran on); ``system`` reads the user column
    of /etc/crontab-style files."""
    context = _Context(zone=tz, env={})
    specs = []
    used_names: set[str] = set()
    warnings: list[CrontabNote] = []
    errors: list[CrontabNote] = []
    # cron ends a line at "\n" only (splitlines would also split at form feeds and others).
    for number, raw in enumerate(text.split("\n"), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        assignment = _ASSIGNMENT.fullmatch(line)
        if assignment:
            try:
                warning = _assign(context, assignment.group(1), _unquote(assignment.group(2)))
            except _LineError as exc:
                errors.append(CrontabNote(number, str(exc)))
                continue
            if warning is not None:
                warnings.append(CrontabNote(number, warning))
            continue
        if line.split(None, 1)[0] == "@reboot":
            warnings.append(CrontabNote(number, "@reboot is not supported; line skipped"))
            continue
        try:
            data = _job_data(line, number, context, system, used_names)
            spec = build_spec(data)
        except _LineError as exc:
            errors.append(CrontabNote(number, str(exc)))
            continue
        except JobSpecErrors as exc:
            errors.extend(CrontabNote(number, str(problem)) for problem in exc.problems)
            continue
        used_names.add(spec.name)
        specs.append(spec)
    return CrontabImport(tuple(specs), tuple(warnings), tuple(errors))


class _LineError(ValueError):
    pass


def _assign(context: _Context, name: str, value: str) -> str | None:
    """Apply ``NAME=value``; returns a warning, or None; raises _LineError."""
    if name == "CRON_TZ":
        context.zone = value
    elif name == "MAILTO":
        # distcron does not mail output; the address says whom the job belongs to.
        context.owner = value or None
    elif name == "SHELL":
        context.shell = value
    elif name in _DAEMON_SETTINGS:
        return f"{name} configures the cron daemon; ignored"
    elif name.startswith("DISTCRON_"):
        raise _LineError(f"{name}: names starting with DISTCRON_ are set by distcron")
    else:
        if name == "HOME":
            context.home = value
        # TZ too: cron passes it to the command but does not schedule by it.
        context.env[name] = value
    return None


def _unquote(value: str) -> str:
    # cron strips one pair of matching quotes around a value.
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def _job_data(
    line: str, number: int, context: _Context, system: bool, used_names: set[str]
) -> dict[str, Any]:
    if line.startswith("@"):
        schedule, rest = _first_word(line)
    else:
        fields = line.split(None, 5)
        if len(fields) < 6:
            raise _LineError("expected five time fields and a command")
        schedule, rest = " ".join(fields[:5]), fields[5]
    user = None
    if system:
        user, rest = _first_word(rest)
    script, stdin = split_percent(rest)
    if not script.strip():
        raise _LineError(
            "no command" + (" (expected a user column then a command)" if system else "")
        )
    command = with_stdin(script, stdin) if stdin else script
    ran_as = f" (user {user})" if user else ""
    data: dict[str, Any] = {
        "name": unique_name(job_name(script), used_names),
        "description": f"crontab line {number}{ran_as}: {line}",
        "schedule": schedule,
        "timezone": context.zone,
        "owner": context.owner,
    }
    if context.shell == _DEFAULT_SHELL:
        data["command"] = command
    else:
        data["argv"] = [context.shell, "-c", command]
    if context.env:
        data["env"] = dict(context.env)
    # cron runs each command in $HOME.
    if context.home and context.home.startswith("/"):
        data["workdir"] = context.home
    return {key: value for key, value in data.items() if value is not None}


def _first_word(text: str) -> tuple[str, str]:
    parts = text.split(None, 1)
    return (parts[0], parts[1]) if len(parts) == 2 else (text.strip(), "")


def split_percent(command: str) -> tuple[str, str]:
    """cron's reading of ``%``: (the command, its stdin text).

    In both parts ``\\%`` is a literal ``%`` (other backslashes stay); the first
    unescaped ``%`` ends the command; in the rest every unescaped ``%`` is a
    newline, and a final newline is added if there is text without one."""
    script: list[str] = []
    escaped = False
    for i, char in enumerate(command):
        if escaped:
            if char == "%":
                script[-1] = "%"
            else:
                script.append(char)
            escaped = False
        elif char == "%":
            return "".join(script), _stdin_text(command[i + 1 :])
        else:
            script.append(char)
            escaped = char == "\\"
    return "".join(script), ""


def _stdin_text(data: str) -> str:
    # A transcription of cron's loop, down to which characters count for the final newline.
    out: list[str] = []
    escaped = need_newline = False
    for char in data:
        if escaped and char != "%":
            out.append("\\")
        written = "\n" if char == "%" and not escaped else char
        escaped = written == "\\"
        if not escaped:
            out.append(written)
            need_newline = written != "\n"
    if escaped:
        out.append("\\")
    if need_newline:
        out.append("\n")
    return "".join(out)


def with_stdin(script: str, stdin: str) -> str:
    """A shell command that runs ``script`` with ``stdin`` (ending in a newline) as its input."""
    end = _HEREDOC_END
    while end in stdin.splitlines():
        end += "_"
    # A brace group, so the whole script (pipelines, lists) reads the text, as under cron;
    # the quoted delimiter keeps $ and ` in the text as they are.
    return f"{{ {script}\n}} <<'{end}'\n{stdin}{end}\n"


# Naming: the program that does the work, e.g. "backup-sh" for
# "cd /srv && nice -n 10 /usr/local/bin/backup.sh > /var/log/backup.log".
_PRELUDES = frozenset(
    {"cd", "test", "[", "[[", "true", ":", "sleep", "export", "umask", "set", "."}
)
_WRAPPERS = frozenset(
    {"nice", "ionice", "nohup", "env", "time", "exec", "chronic", "command", "timeout"}
)
_INTERPRETERS = frozenset(
    {
        "sh",
        "bash",
        "dash",
        "zsh",
        "ksh",
        "python",
        "python2",
        "python3",
        "perl",
        "ruby",
        "node",
        "php",
        "run-parts",
    }
)
_INLINE_FLAGS = frozenset({"-c", "-m", "-e", "-r"})  # the code follows, not a script path
_OPERATORS = re.compile(r"[();<>|&!{}]+")
# $((...)), $(...) and `...` are arguments, never the program; their parentheses
# would otherwise split the command into bogus segments.
_SUBSTITUTION = re.compile(r"\$\(\([^()]*\)\)|\$\([^()]*\)|`[^`]*`")


def job_name(command: str) -> str:
    """A readable name for a job, from the program its command runs."""
    segments = _segments(command)
    for words in segments:
        program = _program(words)
        if program is not None:
            return _slug(program)
    first = next((words[0] for words in segments if words), "")
    return _slug(first)


def unique_name(base: str, used: set[str]) -> str:
    """``base``, or ``base-2``, ``base-3``... whichever is not in ``used``."""
    name, n = base, 1
    while name in used:
        n += 1
        name = f"{base}-{n}"
    return name


def _segments(command: str) -> list[list[str]]:
    command = _SUBSTITUTION.sub("_", command)
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        tokens = list(lexer)
    except ValueError:  # unbalanced quotes: the shell will say so; a name is still needed
        tokens = command.split()
    segments: list[list[str]] = [[]]
    for token in tokens:
        if _OPERATORS.fullmatch(token):
            segments.append([])
        else:
            segments[-1].append(token)
    return segments


def _program(words: list[str]) -> str | None:
    words = [word for word in words if not _ASSIGNMENT.fullmatch(word)]
    while words and _basename(words[0]) in _WRAPPERS:
        words = words[1:]
        while words and (words[0].startswith("-") or words[0][:1].isdigit()):
            words = words[1:]
    if not words or words[0] in _PRELUDES:
        return None
    program = words[0]
    if _basename(program) in _INTERPRETERS:
        for word in words[1:]:
            if word in _INLINE_FLAGS:
                break
            if not word.startswith("-"):
                return word
    return program


def _basename(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def _slug(word: str) -> str:
    # Room is left for a "-N" suffix within the 128 characters a name may have.
    slug = re.sub(r"[^a-z0-9]+", "-", _basename(word).lower())[:64].strip("-")
    return slug or "job"
