"""Helpers for the store contract suite: expected events, a writer script
for a second process, and sqlite connections that break on demand."""

import sqlite3


def plain(value):
    """The object without the resourceVersion the store adds on read."""
    if value is None:
        return None
    md = {k: v for k, v in value.get("metadata", {}).items() if k != "resourceVersion"}
    return dict(value, metadata=md) if md else {k: v for k, v in value.items() if k != "metadata"}


def obj(name, **spec):
    return {"metadata": {"name": name}, "spec": spec}


def as_tuples(events):
    return [(e.type, e.key, e.rev, plain(e.value)) for e in events]


class Recorder:
    """Writes through a store and remembers the events they must produce."""

    def __init__(self, store):
        self.store, self.expected, self.current = store, [], {}

    def put(self, key, value, **kw):
        rev = self.store.put(key, value, **kw)
        self.expected.append(("PUT", key, rev, plain(value)))
        self.current[key] = plain(value)
        return rev

    def delete(self, key, **kw):
        rev = self.store.delete(key, **kw)
        if rev is not None:
            self.expected.append(("DELETE", key, rev, self.current.pop(key)))
        return rev


WRITER = r"""
import json, sys
from podnet.store.base import open_store
url, prefix, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = open_store(url)
out, live = [], {}
for i in range(n):
    key = prefix + "sub/k%d" % (i % 17)
    if key in live and i % 5 == 4:
        out.append(["DELETE", key, s.delete(key), live.pop(key)])
    else:
        value = {"metadata": {"name": "k"}, "spec": {"i": i}}
        out.append(["PUT", key, s.put(key, value), value])
        live[key] = value
s.close()
print(json.dumps(out))
"""


class FlakyConnections:
    """sqlite: wraps the store's connections so that `drop(at)` makes each
    current one fail like a broken connection does, at its next statement
    containing `at` (None: at the very next one)."""

    def __init__(self, store):
        self.conns, self.failures = [], 0
        real = store._connect

        def connect():
            c = _Flaky(real(), self)
            self.conns.append(c)
            return c

        store._connect = connect

    def drop(self, at=None):
        for c in self.conns:
            c.broken, c.at = True, at


class _Flaky:
    def __init__(self, conn, owner):
        self.conn, self.owner, self.broken, self.at = conn, owner, False, None

    def execute(self, sql, *a):
        if self.broken and (self.at is None or self.at in sql):
            self.broken = False
            self.owner.failures += 1
            raise sqlite3.OperationalError("disk I/O error (injected)")
        return self.conn.execute(sql, *a)

    def close(self):
        self.conn.close()
