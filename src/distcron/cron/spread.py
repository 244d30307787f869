"""Spread: the values distcron picks for ``?`` and ``H`` fields.

A value is derived from a stable hash of (seed, field index), so every replica,
process and restart computes the same one (promise 5), and fields are independent
of each other. Python's ``hash()`` is salted per process and must never be used here.
"""

from __future__ import annotations

import hashlib


def spread_hash(seed: str, field_index: int) -> int:
    """A 64-bit number that depends only on ``seed`` and ``field_index``."""
    digest = hashlib.blake2b(
        f"{field_index}:{seed}".encode(), digest_size=8, person=b"distcron-H"
    ).digest()
    return int.from_bytes(digest, "big")
