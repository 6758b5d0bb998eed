"""The embedded store: one sqlite file, shared by threads and processes.

Design, and why:
- Tables `kv` (current state), `log` (history, one row per put/delete, its
  rowid *is* the revision) and `meta` (the current revision and the highest
  compacted one). A write is one `BEGIN IMMEDIATE` transaction that bumps
  `meta.rev`, changes `kv` and appends to `log`, so revisions are global,
  strictly increasing and gap-free, and a reader's snapshot never sees a log
  row without every smaller one: that is what makes watch exactly-once.
- WAL mode + busy_timeout: readers never block the one writer, writers queue
  (across processes too) instead of failing. synchronous=NORMAL: a commit
  survives a crash of any process; a power loss may lose the last ones.
- One connection per thread (sqlite connections must not be used by two
  threads at once); every watch owns a private connection.
- watch polls: `PRAGMA data_version` every POLL seconds (a few microseconds;
  it changes when any other connection commits) and reads the log only when
  it moved, so an idle watch costs nearly nothing and a change from another
  process is seen within ~POLL.
- A txn of several writes is one `log` row of type TXN at one revision (its
  value: the writes, in order), so a revision stays one row and the schema
  is the one older versions wrote; watch expands it and filters its keys. A failing connection is reopened and the
  watch resumes after the last revision it delivered.
- The log keeps the newest `history` revisions (compacted every
  COMPACT_EVERY writes); a watch from an older revision raises Compacted,
  as etcd does. compact(rev) mirrors etcd's: history before `rev` goes.
"""

import functools
import json
import logging
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator, Sequence

from podnet.api.types import Obj
from podnet.store.base import Compacted, Conflict, Event, Op, StoreError, conflict_message

log = logging.getLogger(__name__)

POLL = 0.02  # watch poll interval, seconds
FULL_READ_EVERY = 1.0  # read the log even without a data_version change
COMPACT_EVERY = 1000  # writes between automatic log compactions
BUSY_MS = 30000

SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL,
    mod_rev INTEGER NOT NULL, create_rev INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS log (rev INTEGER PRIMARY KEY, type TEXT NOT NULL,
    key TEXT NOT NULL, value TEXT, prev_rev INTEGER);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('rev', 0), ('compacted', 0);
"""


def _encode(value: Obj) -> str:
    """JSON text of `value` without metadata.resourceVersion (set on read only)."""
    md = value.get("metadata")
    if isinstance(md, dict) and "resourceVersion" in md:
        value = dict(value, metadata={k: v for k, v in md.items() if k != "resourceVersion"})
    return json.dumps(value, separators=(",", ":"))


def _decode(text: str | None, rev: int) -> Obj | None:
    return None if text is None else _load(text, rev)


def _load(text: str, rev: int) -> Obj:
    obj: Obj = json.loads(text)
    md = obj.get("metadata")
    if not isinstance(md, dict):
        md = obj["metadata"] = {}
    md["resourceVersion"] = str(rev)
    return obj


def _prefix_end(prefix: str) -> str | None:
    """The smallest string greater than every string starting with prefix."""
    while prefix and ord(prefix[-1]) >= 0x10FFFF:
        prefix = prefix[:-1]
    return prefix[:-1] + chr(ord(prefix[-1]) + 1) if prefix else None


def _wrapped(method):
    """sqlite3 errors surface as StoreError, like every backend's."""

    @functools.wraps(method)
    def call(*args, **kw):
        try:
            return method(*args, **kw)
        except sqlite3.Error as exc:
            raise StoreError("sqlite: %s" % exc) from exc

    return call


class _Connection(sqlite3.Connection):
    """Weak-referenceable, so a finished thread's connection can go."""


class SqliteStore:
    @_wrapped
    def __init__(self, path: str, history: int = 10000):
        self.path = path
        self.history = history
        self._local = threading.local()
        self._conns: weakref.WeakSet[sqlite3.Connection] = weakref.WeakSet()  # every thread's connection, for close()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        conn = self._conn()
        with self._write(conn):
            for stmt in SCHEMA.strip().split(";"):
                if stmt.strip():
                    conn.execute(stmt)

    # ---- connections -----------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=BUSY_MS / 1000, isolation_level=None, check_same_thread=False, factory=_Connection
        )
        conn.execute("PRAGMA busy_timeout=%d" % BUSY_MS)
        if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def _conn(self) -> sqlite3.Connection:
        if self._closed.is_set():
            raise StoreError("store is closed")
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
            with self._lock:
                self._conns.add(conn)
        return conn

    class _write:
        """BEGIN IMMEDIATE ... COMMIT, ROLLBACK on any exception."""

        def __init__(self, conn):
            self.conn = conn

        def __enter__(self):
            self.conn.execute("BEGIN IMMEDIATE")

        def __exit__(self, exc_type, *_):
            self.conn.execute("ROLLBACK" if exc_type else "COMMIT")

    # ---- reads -----------------------------------------------------------

    @_wrapped
    def get(self, key: str) -> tuple[Obj | None, int]:
        row = self._conn().execute("SELECT value, mod_rev FROM kv WHERE key=?", (key,)).fetchone()
        return (None, 0) if row is None else (_decode(row[0], row[1]), row[1])

    @_wrapped
    def list(self, prefix: str) -> tuple[list[tuple[str, Obj, int]], int]:
        conn = self._conn()
        end = _prefix_end(prefix)
        conn.execute("BEGIN")  # one snapshot for the rows and the revision
        try:
            if end is None:
                rows = conn.execute(
                    "SELECT key, value, mod_rev FROM kv WHERE key >= ? ORDER BY key", (prefix,)
                ).fetchall()
            else:
                rows = conn.execute(
                    "SELECT key, value, mod_rev FROM kv WHERE key >= ? AND key < ? ORDER BY key", (prefix, end)
                ).fetchall()
            rev = conn.execute("SELECT value FROM meta WHERE name='rev'").fetchone()[0]
        finally:
            conn.execute("COMMIT")
        return [(k, _load(v, r), r) for k, v, r in rows], rev

    # ---- writes ----------------------------------------------------------

    def _append(self, conn, type_, key, value, prev_rev) -> int:
        rev = conn.execute("SELECT value FROM meta WHERE name='rev'").fetchone()[0] + 1
        conn.execute("UPDATE meta SET value=? WHERE name='rev'", (rev,))
        conn.execute("INSERT INTO log VALUES (?, ?, ?, ?, ?)", (rev, type_, key, value, prev_rev))
        if rev % COMPACT_EVERY == 0 and rev > self.history:
            self._compact(conn, rev - self.history + 1)
        return rev

    @_wrapped
    def put(self, key: str, value: Obj, expect_rev: int | None = None) -> int:
        text = _encode(value)
        conn = self._conn()
        with self._write(conn):
            row = conn.execute("SELECT mod_rev, create_rev FROM kv WHERE key=?", (key,)).fetchone()
            if expect_rev is not None and (row[0] if row else 0) != expect_rev:
                found = row[0] if row else 0
                raise Conflict(conflict_message(key, expect_rev, found), key, found)
            rev = self._append(conn, "PUT", key, text, row[0] if row else None)
            conn.execute("INSERT OR REPLACE INTO kv VALUES (?, ?, ?, ?)", (key, text, rev, row[1] if row else rev))
        return rev

    @_wrapped
    def delete(self, key: str, expect_rev: int | None = None) -> int | None:
        """None when the key is absent (whatever expect_rev says)."""
        conn = self._conn()
        with self._write(conn):
            row = conn.execute("SELECT value, mod_rev FROM kv WHERE key=?", (key,)).fetchone()
            if row is None:
                return None
            if expect_rev is not None and row[1] != expect_rev:
                raise Conflict(conflict_message(key, expect_rev, row[1]), key, row[1])
            rev = self._append(conn, "DELETE", key, row[0], row[1])
            conn.execute("DELETE FROM kv WHERE key=?", (key,))
        return rev

    @_wrapped
    def txn(self, ops: Sequence[Op]) -> int:
        if len({op.key for op in ops}) != len(ops):
            raise StoreError("txn: one op per key")
        conn = self._conn()
        with self._write(conn):
            writes = []  # (type, key, text, prev_rev, create_rev)
            for op in ops:
                row = conn.execute("SELECT value, mod_rev, create_rev FROM kv WHERE key=?", (op.key,)).fetchone()
                found = row[1] if row else 0
                if op.expect_rev is not None and found != op.expect_rev:
                    raise Conflict(conflict_message(op.key, op.expect_rev, found), op.key, found)
                if op.value is not None:
                    writes.append(("PUT", op.key, _encode(op.value), row[1] if row else None, row[2] if row else 0))
                elif row is not None:
                    writes.append(("DELETE", op.key, row[0], row[1], 0))
            rev = conn.execute("SELECT value FROM meta WHERE name='rev'").fetchone()[0]
            if not writes:
                return rev
            if len(writes) == 1:
                t, k, text, prev, _ = writes[0]
                rev = self._append(conn, t, k, text, prev)
            else:
                body = json.dumps([[t, k, text, prev] for t, k, text, prev, _ in writes], separators=(",", ":"))
                rev = self._append(conn, "TXN", writes[0][1], body, None)
            for t, k, text, _, created in writes:
                if t == "PUT":
                    conn.execute("INSERT OR REPLACE INTO kv VALUES (?, ?, ?, ?)", (k, text, rev, created or rev))
                else:
                    conn.execute("DELETE FROM kv WHERE key=?", (k,))
        return rev

    # ---- history ---------------------------------------------------------

    def _compact(self, conn, rev: int) -> None:
        conn.execute("DELETE FROM log WHERE rev < ?", (rev,))
        conn.execute("UPDATE meta SET value=max(value, ?) WHERE name='compacted'", (rev - 1,))

    @_wrapped
    def compact(self, rev: int) -> None:
        """Drop the history before `rev` (etcd's compaction): a watch then
        needs from_rev >= rev - 1."""
        conn = self._conn()
        with self._write(conn):
            self._compact(conn, rev)

    def watch(self, prefix: str, from_rev: int, stop: threading.Event | None = None) -> Iterator[Event]:
        last = from_rev
        conn, version, read_at = None, None, 0.0
        end = _prefix_end(prefix)
        try:
            while not (stop is not None and stop.is_set()) and not self._closed.is_set():
                try:
                    if conn is None:
                        conn, version = self._connect(), None
                    now = time.monotonic()
                    v = conn.execute("PRAGMA data_version").fetchone()[0]
                    if v == version and now - read_at < FULL_READ_EVERY:
                        self._sleep(stop)
                        continue
                    version, read_at = v, now
                    events, last_read, more = self._read_log(conn, prefix, end, last)
                    if more:
                        version = None  # a full batch: read on without waiting
                except sqlite3.Error as exc:  # dropped connection, I/O error: reopen, resume
                    log.warning("sqlite watch %s: %s; reconnecting after rev %d", self.path, exc, last)
                    if conn is not None:
                        try:
                            conn.close()
                        except sqlite3.Error:
                            pass
                    conn = None
                    self._sleep(stop, 0.1)
                    continue
                for ev in events:
                    last = ev.rev
                    yield ev
                    if stop is not None and stop.is_set():
                        return
                last = max(last, last_read)
                if not events and not more:
                    self._sleep(stop)
        finally:
            if conn is not None:
                conn.close()

    BATCH = 1000

    def _read_log(self, conn, prefix, end, last):
        """(events after `last` under prefix, the highest revision examined,
        whether there is more after it)."""
        conn.execute("BEGIN")
        try:
            compacted = conn.execute("SELECT value FROM meta WHERE name='compacted'").fetchone()[0]
            if last < compacted:
                raise Compacted("revision %d is compacted (history starts after %d)" % (last + 1, compacted))
            newest = conn.execute("SELECT value FROM meta WHERE name='rev'").fetchone()[0]
            top = min(newest, last + self.BATCH)
            cond, args = (
                ("AND (key >= ? OR type = 'TXN')", (prefix,))
                if end is None
                else ("AND ((key >= ? AND key < ?) OR type = 'TXN')", (prefix, end))
            )
            rows = conn.execute(
                "SELECT rev, type, key, value, prev_rev FROM log WHERE rev > ? AND rev <= ? " + cond + " ORDER BY rev",
                (last, top) + args,
            ).fetchall()
        finally:
            conn.execute("COMMIT")
        events = []
        for rev, t, k, v, p in rows:
            writes = json.loads(v) if t == "TXN" else [(t, k, v, p)]
            for t, k, v, p in writes:
                if k >= prefix and (end is None or k < end):
                    events.append(Event(t, k, _decode(v, rev if t == "PUT" else p), rev))
        return events, top, top < newest

    def _sleep(self, stop, seconds=POLL):
        if stop is not None:
            stop.wait(seconds)
        else:
            self._closed.wait(seconds)

    def close(self) -> None:
        """Close every connection; running watches end within ~POLL."""
        self._closed.set()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.close()
            except sqlite3.Error:
                pass
