"""Structured logs: one event per line, ``key=value``.

Messages are written as ``event=name key=value …`` at the call site; this adds
the time, level and logger in the same form.

A warning or error repeated word for word (a full disk fails every write,
several a second) is written once, then at most once per
:data:`REPEAT_WINDOW` seconds with ``repeated=N``: how many identical lines
were held back since the last one written.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable

REPEAT_WINDOW = 10.0
# Past this many different lines in a window, the oldest are forgotten.
_REMEMBERED = 1000


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        stamp += f".{int(record.msecs):03d}Z"
        line = (f"ts={stamp} level={record.levelname.lower()} logger={record.name} "
                f"{record.getMessage()}")
        if record.exc_info:
            line += " exc=" + repr(self.formatException(record.exc_info))
        return line


class RepeatFilter(logging.Filter):
    """Hold back warnings and errors identical (logger, level, text) to one
    written less than ``window`` seconds ago; the next one written after that
    says how many were held back (``repeated=N``). Lines below WARNING pass."""

    def __init__(self, window: float = REPEAT_WINDOW,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.window = window
        self._monotonic = monotonic
        self._lock = threading.Lock()
        # (logger, level, text) -> (when last written, how many held back since)
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        text = record.getMessage()
        key = (record.name, record.levelno, text)
        now = self._monotonic()
        with self._lock:
            written, held = self._seen.get(key, (None, 0))
            if written is not None and now - written < self.window:
                self._seen[key] = (written, held + 1)
                return False
            self._seen.pop(key, None)  # re-inserted last: the dict stays oldest first
            self._seen[key] = (now, 0)
            while len(self._seen) > _REMEMBERED:
                del self._seen[next(iter(self._seen))]
        if held:
            record.msg, record.args = f"{text} repeated={held}", None
        return True


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter())
    handler.addFilter(RepeatFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # uvicorn's access log would print every API call, httpx every store call
    # (a lease keepalive each second); their warnings and errors still show.
    for chatty in ("uvicorn.access", "httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
