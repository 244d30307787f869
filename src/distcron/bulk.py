"""Work on many objects at once (a jobs file of 100,000 jobs read, validated and
loaded by a new leader) with Python's cyclic garbage collector held off.

Each such step allocates hundreds of thousands of objects that all stay alive;
the collector would walk them again and again as they pile up (a quarter of the
time of a big load) and find nothing to free. Nested and concurrent holds
(a parse in a worker thread while the loop loads) are counted: the collector
runs again when the last one ends.

What such a step leaves behind (a parsed TOML document, every stored spec's
bytes) is freed in many small pieces, which the C allocator keeps rather than
give back: when the last hold ends, it is asked to return what it can
(``malloc_trim``), a third of the resident memory after a 100,000-job apply.
"""

from __future__ import annotations

import ctypes
import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# glibc's; None where the C library has none (musl, macOS).
_MALLOC_TRIM = getattr(ctypes.CDLL(None), "malloc_trim", None)


class _Holds:
    lock = threading.Lock()
    count = 0


@contextmanager
def collector_held() -> Iterator[None]:
    with _Holds.lock:
        _Holds.count += 1
        if _Holds.count == 1:
            gc.disable()
    try:
        yield
    finally:
        with _Holds.lock:
            _Holds.count -= 1
            if _Holds.count == 0:
                # What the step left alive would be walked at the collector's
                # next runs (gen 0, then 1, then 2: seconds after a big load)
                # for nothing: it is moved out of its reach. Freed by reference
                # counts as ever; only a cycle among it would stay.
                gc.freeze()
                gc.enable()
                if _MALLOC_TRIM is not None:
                    _MALLOC_TRIM(0)
