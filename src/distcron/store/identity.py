"""The store's identity: a UUID made with the store, under ``meta/identity``.

Fences are revisions, and two stores (a file removed and made again, a
snapshot restored into an empty store) count revisions from 1 alike: a fence
alone cannot tell two leaders of two incarnations apart. A launched job sees
the identity beside its fence (``DISTCRON_STORE_ID``), and the SQLite backend
keys its high-water mark by it.

The first process that asks writes it, in a guarded write (``Compare.missing``),
so every process of the store reads the same one. A snapshot does not carry
it: a restored store is a new incarnation.

On failure: StoreUnavailable from the store, as any call; nothing is cached
here.
"""

from __future__ import annotations

import uuid

from distcron.store.base import Compare, Get, KeyValue, Put, Store
from distcron.store.layout import IDENTITY


async def store_identity(store: Store) -> str:
    """The store's identity, made now if it has none."""
    made = str(uuid.uuid4())
    result = await store.txn([Compare.missing(IDENTITY)], [Put(IDENTITY, made.encode())],
                             [Get(IDENTITY)])
    if result.succeeded:
        return made
    found = result.results[0]
    assert isinstance(found, tuple) and found and isinstance(found[0], KeyValue)
    return found[0].value.decode(errors="replace")
