"""The cluster store contract: a revisioned key-value store with list and watch.

Every backend (sqlite embedded, etcd) implements `Store`; one contract suite
(tests/store) runs against each. Values are Kubernetes objects as dicts; the
store sets nothing inside them except on read, where
`metadata.resourceVersion` is the key's modification revision as a string.

Revisions are one global, strictly increasing integer per store (as etcd's):
every put or delete gets the next one. `watch(prefix, from_rev)` yields every
change with rev > from_rev exactly once and in order, also across a backend
reconnect; a caller that falls too far behind a compacted history gets
`Compacted` and must re-list.

Keys: /registry/<plural>/<namespace>/<name> for namespaced kinds,
/registry/<plural>/<name> for cluster-scoped ones (see podnet.api.keys).
"""

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from podnet.api.types import Obj


class StoreError(Exception):
    pass


class Conflict(StoreError):
    """expect_rev did not match (someone else changed the key first)."""


class Compacted(StoreError):
    """The requested start revision is no longer in the history."""


@dataclass(frozen=True)
class Event:
    type: str  # "PUT" or "DELETE"
    key: str
    value: Obj | None  # the new object (PUT) or the last one (DELETE)
    rev: int


class Store(Protocol):
    def get(self, key: str) -> tuple[Obj | None, int]:
        """(object or None, its mod revision or 0)."""

    def list(self, prefix: str) -> tuple[list[tuple[str, Obj, int]], int]:
        """([(key, object, mod_rev)] sorted by key, the store's current revision)."""

    def put(self, key: str, value: Obj, expect_rev: int | None = None) -> int:
        """Write; expect_rev=None: unconditional, 0: must not exist, N: must be at N.
        Returns the new revision; raises Conflict."""

    def delete(self, key: str, expect_rev: int | None = None) -> int | None:
        """Remove; returns the revision of the delete, or None when absent."""

    def watch(self, prefix: str, from_rev: int, stop: threading.Event | None = None) -> Iterator[Event]:
        """Events with rev > from_rev under prefix, in order, until `stop`
        (a threading.Event) is set; blocks waiting for new ones."""

    def close(self) -> None: ...


def open_store(url: str) -> Store:
    """sqlite:///abs/path.db or etcd://host:port[,host:port]."""
    if url.startswith("sqlite://"):
        from podnet.store.sqlite import SqliteStore

        return SqliteStore(url[len("sqlite://") :])
    if url.startswith("etcd://"):
        from podnet.store.etcd import EtcdStore

        return EtcdStore(url[len("etcd://") :].split(","))
    raise StoreError("unknown store URL %r: use sqlite:///path or etcd://host:port" % url)
