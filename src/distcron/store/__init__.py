"""The store: revisioned keys, leases, guarded transactions and watches.

Backends are chosen by the URL's scheme through :data:`BACKENDS`, imported
lazily so an optional client stays optional.
"""

from __future__ import annotations

import importlib
from urllib.parse import urlsplit

from distcron.errors import ConfigError
from distcron.store.base import (
    Compare,
    Delete,
    Event,
    Get,
    KeyValue,
    Op,
    Put,
    Store,
    StoreMember,
    Target,
    TxnResult,
    WatchBatch,
)

# scheme -> "module:function"; the function takes the URL and returns a Store.
BACKENDS: dict[str, str] = {
    "sqlite": "distcron.store.sqlite:open_sqlite_store",
    "etcd": "distcron.store.etcd:open_etcd_store",
    "etcds": "distcron.store.etcd:open_etcd_store",
}


def open_store(url: str) -> Store:
    """The store a URL names, e.g. ``sqlite:////var/lib/distcron/state.db``."""
    scheme = urlsplit(url).scheme
    target = BACKENDS.get(scheme)
    if target is None:
        known = ", ".join(f"{s}://" for s in sorted(BACKENDS))
        raise ConfigError(f"store URL {url!r}: unknown scheme {scheme!r} (expected {known})")
    module_name, _, function_name = target.partition(":")
    opener = getattr(importlib.import_module(module_name), function_name)
    store: Store = opener(url)
    return store


__all__ = [
    "BACKENDS",
    "Compare",
    "Delete",
    "Event",
    "Get",
    "KeyValue",
    "Op",
    "Put",
    "Store",
    "StoreMember",
    "Target",
    "TxnResult",
    "WatchBatch",
    "open_store",
]
