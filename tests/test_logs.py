"""Log lines: repeated warnings and errors are held back, and counted."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from distcron.logs import KeyValueFormatter, RepeatFilter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def written(clock: Clock) -> Iterator[tuple[logging.Logger, io.StringIO]]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(KeyValueFormatter())
    handler.addFilter(RepeatFilter(10.0, clock))
    logger = logging.getLogger("distcron.test_logs")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield logger, out
    logger.removeHandler(handler)
    logger.propagate = True


def lines(out: io.StringIO) -> list[str]:
    return [line.split(" ", 3)[3] for line in out.getvalue().splitlines()]


def test_a_repeated_error_is_written_once_then_with_its_count_each_window(
        written: tuple[logging.Logger, io.StringIO], clock: Clock) -> None:
    log, out = written
    for _ in range(40):  # a second of a full disk
        log.warning("event=store_error error=%r", "database or disk is full")
        clock.now += 0.025
    assert lines(out) == ["event=store_error error='database or disk is full'"]
    clock.now += 9.1
    log.warning("event=store_error error=%r", "database or disk is full")
    assert lines(out)[1:] == ["event=store_error error='database or disk is full' repeated=39"]
    log.warning("event=store_error error=%r", "database or disk is full")
    assert len(lines(out)) == 2


def test_different_errors_and_info_lines_are_never_held_back(
        written: tuple[logging.Logger, io.StringIO], clock: Clock) -> None:
    log, out = written
    log.error("event=a")
    log.error("event=b")
    log.warning("event=a")  # another level
    for _ in range(3):
        log.info("event=joined")
    assert lines(out) == ["event=a", "event=b", "event=a"] + ["event=joined"] * 3
