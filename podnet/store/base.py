"""The cluster store contract: a revisioned key-value store with list and watch.

Every backend (sqlite embedded, etcd) implements `Store`; one contract suite
(tests/store) runs against each. Values are Kubernetes objects as dicts; the
store sets nothing inside them except on read, where
`metadata.resourceVersion` is the key's modification revision as a string.

Revisions are one global, strictly increasing integer per store (as etcd's):
every put or delete gets the next one, and a `txn` (several puts and deletes,
all or nothing) gets one for all of its writes, as in etcd: its events share
that revision and come out in the txn's order. `watch(prefix, from_rev)` yields every
change with rev > from_rev exactly once and in order, also across a backend
reconnect; a caller that falls too far behind a compacted history gets
`Compacted` and must re-list.

Keys: /registry/<plural>/<namespace>/<name> for namespaced kinds,
/registry/<plural>/<name> for cluster-scoped ones (see podnet.api.keys).
"""

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from podnet.api.types import Obj


class StoreError(Exception):
    pass


class Conflict(StoreError):
    """expect_rev did not match (someone else changed the key first).
    .key: the key whose expectation failed, .found: its revision (0: absent)."""

    def __init__(self, message: str, key: str = "", found: int = 0):
        super().__init__(message)
        self.key, self.found = key, found


class Compacted(StoreError):
    """The requested start revision is no longer in the history."""


@dataclass(frozen=True)
class Event:
    type: str  # "PUT" or "DELETE"
    key: str
    value: Obj | None  # the new object (PUT) or the last one (DELETE)
    rev: int


@dataclass(frozen=True)
class Op:
    """One write of a txn: a put (value) or a delete (value None), with the
    same expect_rev as put's (None: unconditional, 0: absent, N: at N)."""

    key: str
    value: Obj | None = None
    expect_rev: int | None = None


def conflict_message(key: str, expect_rev: int, found: int) -> str:
    if expect_rev == 0:
        return "%s: expected absent, found revision %d" % (key, found)
    return "%s: expected revision %d, found %d" % (key, expect_rev, found)


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

    def txn(self, ops: Sequence[Op]) -> int:
        """Every op or none: when each expect_rev holds, apply them all at one
        new revision (returned); otherwise raise Conflict naming the first key
        whose expectation failed. A delete of an absent key without expect_rev
        is no change. At most one op per key."""

    def watch(self, prefix: str, from_rev: int, stop: threading.Event | None = None) -> Iterator[Event]:
        """Events with rev > from_rev under prefix, in order, until `stop`
        (a threading.Event) is set; blocks waiting for new ones."""

    def close(self) -> None: ...


def open_store(url: str) -> Store:
    """sqlite:///abs/path.db or etcd://host:port[,host:port][?netns=NAME]
    (netns: connect to etcd from inside that network namespace;
    cacert=PATH[&cert=PATH&key=PATH]: TLS to etcd, with a client certificate)."""
    if url.startswith("sqlite://"):
        from podnet.store.sqlite import SqliteStore

        return SqliteStore(url[len("sqlite://") :])
    if url.startswith("etcd://"):
        from podnet.store.etcd import EtcdStore

        hosts, _, query = url[len("etcd://") :].partition("?")
        from urllib.parse import parse_qs

        q = parse_qs(query)
        ns = q.get("netns", [None])[0]
        return EtcdStore(hosts.split(","), netns=ns, tls=_etcd_tls(q))
    raise StoreError("unknown store URL %r: use sqlite:///path or etcd://host:port" % url)


def _etcd_tls(q: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    """The client TLS context an etcd URL's cacert/cert/key ask for, or None."""
    if not q.get("cacert"):
        if q.get("cert") or q.get("key"):
            raise StoreError("etcd URL: cert and key need cacert (the CA of etcd's serving certificate)")
        return None
    import ssl

    try:
        ctx = ssl.create_default_context(cafile=q["cacert"][0])
        if q.get("cert"):
            ctx.load_cert_chain(q["cert"][0], q["key"][0] if q.get("key") else None)
    except (OSError, ssl.SSLError) as exc:
        raise StoreError("etcd URL: TLS files: %s" % exc) from None
    return ctx
