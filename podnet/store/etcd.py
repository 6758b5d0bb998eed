"""The distributed store: etcd v3 through its JSON gateway, standard library only.

Design, and why:
- etcd (>= 3.4) serves its gRPC API as JSON over plain HTTP/1.1 (/v3/kv/...,
  /v3/watch); talking to that with http.client keeps podnet free of a gRPC
  dependency. Keys and values are base64, 64-bit integers are strings.
- Revisions are etcd's own (header.revision, kv.mod_revision); expect_rev is
  a txn comparing mod_revision (0: create_revision == 0, i.e. absent). A
  multi-key `txn` is one etcd txn: one revision, its events in one watch
  response (etcd does not split a revision across responses).
- One keep-alive connection per thread (http.client is not thread-safe).
  A request that never reached etcd (refused, or a pooled connection found
  dead before sending) is retried on the next endpoint until `timeout`;
  reads are also retried after a failure mid-request, writes are not (their
  outcome is unknown): they raise StoreError.
- watch reads the streaming response from a raw socket with its own chunked
  decoder, so it can wake every POLL to honour `stop` without corrupting a
  half-read stream (http.client cannot resume after a timeout). When the
  stream breaks it reconnects (next endpoint, backoff) with start_revision =
  last delivered + 1 and drops anything <= last: exactly once, in order.
  etcd's "compacted" cancel becomes Compacted. prev_kv gives deletes their
  last value. TCP keepalive notices a peer that vanished without a FIN.
"""

import base64
import builtins
import http.client
import json
import logging
import select
import socket
import ssl
import threading
import time
import weakref
from collections.abc import Iterator, Sequence

from podnet.api.types import Obj
from podnet.store.base import Compacted, Conflict, Event, Op, StoreError, conflict_message

log = logging.getLogger(__name__)

POLL = 0.1  # how often a blocked watch looks at `stop`
PAGE = 1000  # list page size
COMPACTED_CODE = 11  # gRPC OutOfRange: "required revision has been compacted"


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def _encode(value: Obj) -> str:
    md = value.get("metadata")
    if isinstance(md, dict) and "resourceVersion" in md:
        value = dict(value, metadata={k: v for k, v in md.items() if k != "resourceVersion"})
    return _b64(json.dumps(value, separators=(",", ":")).encode())


def _decode(kv: Obj | None) -> Obj | None:
    """The object in an etcd kv (None for none), metadata.resourceVersion = its mod_revision."""
    return _load(kv) if kv else None


def _load(kv: Obj) -> Obj:
    obj: Obj = json.loads(base64.b64decode(kv.get("value", "")))
    md = obj.get("metadata")
    if not isinstance(md, dict):
        md = obj["metadata"] = {}
    md["resourceVersion"] = str(int(kv["mod_revision"]))
    return obj


def _range(prefix: str) -> dict:
    """etcd's [key, range_end) for every key starting with prefix."""
    p = prefix.encode()
    q = p.rstrip(b"\xff")
    end = q[:-1] + bytes([q[-1] + 1]) if q else b"\0"  # "\0": to the end of the keyspace
    return {"key": _b64(p or b"\0"), "range_end": _b64(end)}


class _NotSent(Exception):
    """The request never reached etcd: safe to retry anywhere."""


def _in_netns(netns_name: str | None, connect):  # type: ignore[no-untyped-def]
    """connect() with the socket made inside the named network namespace
    (a socket stays in the namespace it was made in): the lab's API server
    reaches its etcd members from the control-plane namespace."""
    if not netns_name:
        return connect()
    from podnet.kernel import netns

    ns = netns.Netns(netns_name)
    try:
        with netns.entered(ns):
            return connect()
    finally:
        ns.close()


class EtcdStore:
    def __init__(self, endpoints, timeout: float = 10.0, netns: str | None = None, tls: ssl.SSLContext | None = None):
        self.netns = netns
        self.tls = tls  # client TLS (etcd's --client-cert-auth): every endpoint is https then
        self.endpoints = []
        for e in endpoints:
            e = e.strip().rstrip("/")
            if e.startswith("https://") and tls is None:
                raise StoreError("etcd endpoint %s: https needs the CA (etcd://...?cacert=PATH)" % e)
            host, _, port = e.removeprefix("http://").removeprefix("https://").rpartition(":")
            self.endpoints.append((host.strip("[]"), int(port)))
        if not self.endpoints:
            raise StoreError("no etcd endpoints")
        self.timeout = timeout
        self._good = 0  # the endpoint that answered last
        self._local = threading.local()
        self._conns: weakref.WeakSet[http.client.HTTPConnection] = (
            weakref.WeakSet()
        )  # every thread's connection, for close()
        self._lock = threading.Lock()
        self._closed = threading.Event()

    # ---- requests --------------------------------------------------------

    def _pooled(self, ep: int) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is not None and (self._local.ep != ep or conn.sock is None or select.select([conn.sock], [], [], 0)[0]):
            conn.close()  # another endpoint, or idle and closed by the peer
            conn = None
        if conn is None:
            host, port = self.endpoints[ep]
            if self.tls is not None:
                conn = http.client.HTTPSConnection(host, port, timeout=self.timeout, context=self.tls)
            else:
                conn = http.client.HTTPConnection(host, port, timeout=self.timeout)
            try:
                _in_netns(self.netns, conn.connect)
            except OSError as exc:
                raise _NotSent(exc) from exc
            self._local.conn, self._local.ep = conn, ep
            with self._lock:
                self._conns.add(conn)
        return conn

    def _call(self, path: str, body: dict, idempotent: bool = False) -> dict:
        if self._closed.is_set():
            raise StoreError("store is closed")
        deadline, delay, n = time.monotonic() + self.timeout, 0.02, len(self.endpoints)
        last_exc = None
        while True:
            for i in range(n):
                ep = (self._good + i) % n
                try:
                    conn = self._pooled(ep)
                    try:
                        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
                        resp = conn.getresponse()
                        status, data = resp.status, resp.read()
                    except (OSError, http.client.HTTPException) as exc:
                        conn.close()
                        self._local.conn = None
                        if not idempotent:
                            raise StoreError(
                                "etcd %s%s: %s (outcome unknown)" % ("%s:%d" % self.endpoints[ep], path, exc)
                            ) from None
                        raise _NotSent(exc) from exc
                except _NotSent as exc:
                    last_exc = exc
                    continue
                self._good = ep
                try:
                    doc = json.loads(data or b"{}")
                except ValueError:
                    raise StoreError("etcd %s: HTTP %d %r" % (path, status, data[:200])) from None
                if status != 200 or "error" in doc:
                    msg = doc.get("message") or doc.get("error") or "HTTP %d" % status
                    if doc.get("code") == COMPACTED_CODE:
                        raise Compacted(msg)
                    raise StoreError("etcd %s: %s" % (path, msg))
                return doc
            if time.monotonic() + delay > deadline:
                raise StoreError(
                    "etcd unreachable at %s: %s" % (",".join("%s:%d" % e for e in self.endpoints), last_exc)
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.5)

    @staticmethod
    def _rev(doc: dict) -> int:
        return int(doc.get("header", {}).get("revision", 0))

    # ---- the Store contract ----------------------------------------------

    def get(self, key: str) -> tuple[Obj | None, int]:
        doc = self._call("/v3/kv/range", {"key": _b64(key.encode())}, idempotent=True)
        kvs = doc.get("kvs") or []
        return (_decode(kvs[0]), int(kvs[0]["mod_revision"])) if kvs else (None, 0)

    def list(self, prefix: str) -> tuple[list[tuple[str, Obj, int]], int]:
        out: list[tuple[str, Obj, int]] = []
        body, rev = dict(_range(prefix), limit=PAGE), 0
        while True:  # pages, all at the revision of the first
            if rev:
                body["revision"] = rev
            try:
                doc = self._call("/v3/kv/range", body, idempotent=True)
            except Compacted:  # compacted between two pages: list again
                body, out, rev = dict(_range(prefix), limit=PAGE), [], 0
                continue
            rev = rev or self._rev(doc)
            kvs = doc.get("kvs") or []
            out += [(base64.b64decode(kv["key"]).decode(), _load(kv), int(kv["mod_revision"])) for kv in kvs]
            if not doc.get("more") or not kvs:
                return out, rev
            body["key"] = _b64(base64.b64decode(kvs[-1]["key"]) + b"\0")

    def list_at(self, prefix: str, rev: int) -> builtins.list[tuple[str, Obj, int]]:
        """The keys under prefix as they were at revision rev (etcd keeps
        the history until a compaction: Compacted past it). The API server
        replays from here into its watch cache's history at start-up."""
        out: list[tuple[str, Obj, int]] = []
        body = dict(_range(prefix), limit=PAGE, revision=rev)
        while True:
            doc = self._call("/v3/kv/range", body, idempotent=True)
            kvs = doc.get("kvs") or []
            out += [(base64.b64decode(kv["key"]).decode(), _load(kv), int(kv["mod_revision"])) for kv in kvs]
            if not doc.get("more") or not kvs:
                return out
            body["key"] = _b64(base64.b64decode(kvs[-1]["key"]) + b"\0")

    def put(self, key: str, value: Obj, expect_rev: int | None = None) -> int:
        put = {"key": _b64(key.encode()), "value": _encode(value)}
        if expect_rev is None:
            return self._rev(self._call("/v3/kv/put", put))
        doc = self._txn(key, expect_rev, {"request_put": put})
        if not doc.get("succeeded"):
            found = self._found(doc)
            raise Conflict(conflict_message(key, expect_rev, found), key, found)
        return self._rev(doc)

    def delete(self, key: str, expect_rev: int | None = None) -> int | None:
        """None when the key is absent (whatever expect_rev says)."""
        rng = {"key": _b64(key.encode())}
        if expect_rev is None:
            doc = self._call("/v3/kv/deleterange", rng)
            return self._rev(doc) if int(doc.get("deleted", 0)) else None
        if expect_rev == 0:  # "must not exist": nothing to delete, or a conflict
            doc = self._txn(key, 0, {"request_range": rng})
            if doc.get("succeeded"):
                return None
            found = self._found(doc)
            raise Conflict(conflict_message(key, 0, found), key, found)
        doc = self._txn(key, expect_rev, {"request_delete_range": rng})
        if doc.get("succeeded"):
            return self._rev(doc)
        found = self._found(doc)
        if found == 0:
            return None
        raise Conflict(conflict_message(key, expect_rev, found), key, found)

    @staticmethod
    def _compare(key: str, expect_rev: int) -> dict:
        k = _b64(key.encode())
        if expect_rev == 0:
            return {"key": k, "target": "CREATE", "result": "EQUAL", "create_revision": 0}
        return {"key": k, "target": "MOD", "result": "EQUAL", "mod_revision": expect_rev}

    def _txn(self, key: str, expect_rev: int, op: dict) -> dict:
        k = _b64(key.encode())
        return self._call(
            "/v3/kv/txn",
            {"compare": [self._compare(key, expect_rev)], "success": [op], "failure": [{"request_range": {"key": k}}]},
        )

    def txn(self, ops: Sequence[Op]) -> int:
        if len({op.key for op in ops}) != len(ops):
            raise StoreError("txn: one op per key")
        checked = [op for op in ops if op.expect_rev is not None]
        success = [
            {"request_put": {"key": _b64(op.key.encode()), "value": _encode(op.value)}}
            if op.value is not None
            else {"request_delete_range": {"key": _b64(op.key.encode())}}
            for op in ops
        ]
        doc = self._call(
            "/v3/kv/txn",
            {
                "compare": [self._compare(op.key, op.expect_rev) for op in checked if op.expect_rev is not None],
                "success": success,
                # on failure: each compared key's revision, to name the one that failed
                "failure": [{"request_range": {"key": _b64(op.key.encode())}} for op in checked],
            },
        )
        if doc.get("succeeded") or not checked:
            return self._rev(doc)
        for op, resp in zip(checked, doc["responses"], strict=True):
            kvs = resp["response_range"].get("kvs") or []
            found = int(kvs[0]["mod_revision"]) if kvs else 0
            if found != op.expect_rev:
                assert op.expect_rev is not None
                raise Conflict(conflict_message(op.key, op.expect_rev, found), op.key, found)
        raise Conflict("txn on %s: a comparison failed" % ", ".join(op.key for op in checked))

    @staticmethod
    def _found(doc: dict) -> int:
        """The key's mod revision from a failed txn's range (0: absent)."""
        kvs = doc["responses"][0]["response_range"].get("kvs") or []
        return int(kvs[0]["mod_revision"]) if kvs else 0

    def compact(self, rev: int) -> None:
        """etcd's compaction: history before `rev` goes (no-op if already gone)."""
        try:
            self._call("/v3/kv/compaction", {"revision": rev})
        except Compacted:
            pass

    def watch(self, prefix: str, from_rev: int, stop: threading.Event | None = None) -> Iterator[Event]:
        create = dict(_range(prefix), prev_kv=True)
        last, delay, ep = from_rev, 0.05, self._good
        stopped = lambda: self._closed.is_set() or (stop is not None and stop.is_set())  # noqa: E731
        while not stopped():
            stream = _Stream(self.endpoints[ep], self.timeout, self.netns, self.tls)
            try:
                if not stream.open("/v3/watch", {"create_request": dict(create, start_revision=last + 1)}, stopped):
                    return
                for msg in stream.messages(stopped):
                    res = msg.get("result")
                    if res is None:  # {"error": ...}: etcd going away; reconnect
                        raise ConnectionError(msg.get("message") or msg.get("error"))
                    if int(res.get("compact_revision", 0)):
                        raise Compacted(
                            "revision %d is compacted (history starts at %s)" % (last + 1, res["compact_revision"])
                        )
                    if res.get("canceled"):
                        raise StoreError("etcd canceled the watch: %s" % res.get("cancel_reason", "?"))
                    delay = 0.05
                    done = last  # every revision up to here was delivered whole
                    for ev in res.get("events") or ():
                        kv = ev["kv"]
                        rev = int(kv["mod_revision"])
                        if rev <= done:
                            continue  # already delivered before a reconnect
                        last = rev
                        deleted = ev.get("type") == "DELETE"
                        yield Event(
                            "DELETE" if deleted else "PUT",
                            base64.b64decode(kv["key"]).decode(),
                            _decode(ev.get("prev_kv") if deleted else kv),
                            rev,
                        )
                        if stopped():
                            return
            except (OSError, ConnectionError, http.client.HTTPException, ValueError) as exc:
                if stopped():
                    return
                log.warning("etcd watch %s:%d broke (%s); resuming after rev %d", *self.endpoints[ep], exc, last)
                ep = (ep + 1) % len(self.endpoints)
                (stop or self._closed).wait(delay)
                delay = min(delay * 2, 1.0)
            finally:
                stream.close()

    def close(self) -> None:
        """Close the connections; running watches end within ~POLL."""
        self._closed.set()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            conn.close()


class _Stream:
    """A streaming HTTP/1.1 POST on a raw socket: one JSON object per line."""

    def __init__(self, endpoint, timeout, netns=None, tls=None):
        self.endpoint, self.timeout, self.sock, self.netns, self.tls = endpoint, timeout, None, netns, tls
        self.raw, self.body, self.chunked, self.left = bytearray(), bytearray(), False, 0
        self.ended = False

    def open(self, path, body, stopped) -> bool:
        """Send the request, read the response head; False if stopped meanwhile."""
        self.sock = _in_netns(
            self.netns, lambda: socket.create_connection(self.endpoint, timeout=min(self.timeout, 3.0))
        )
        if self.tls is not None:
            self.sock = self.tls.wrap_socket(self.sock, server_hostname=self.endpoint[0])
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for opt, val in (("TCP_KEEPIDLE", 10), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3)):
            if hasattr(socket, opt):
                self.sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, opt), val)
        data = json.dumps(body).encode()
        self.sock.sendall(
            b"POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s"
            % (path.encode(), self.endpoint[0].encode(), self.endpoint[1], len(data), data)
        )
        deadline = time.monotonic() + self.timeout
        while b"\r\n\r\n" not in self.raw:
            if stopped():
                return False
            if time.monotonic() > deadline:
                raise TimeoutError("etcd sent no response to the watch")
            self._recv(POLL)
        head, _, rest = bytes(self.raw).partition(b"\r\n\r\n")
        self.raw = bytearray(rest)
        lines = head.decode("latin-1").split("\r\n")
        if lines[0].split()[1:2] != ["200"]:
            raise ConnectionError("watch: %s" % lines[0])
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        self.chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        return True

    def _recv(self, wait):
        """Read what is there (up to `wait` seconds); False if nothing came."""
        # TLS: records already decrypted wait in the SSL object, not the socket
        pending = self.sock.pending() if isinstance(self.sock, ssl.SSLSocket) else 0
        if not pending and not select.select([self.sock], [], [], wait)[0]:
            return False
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("etcd closed the watch stream")
        self.raw += data
        return True

    def _dechunk(self):
        if not self.chunked:
            self.body += self.raw
            self.raw.clear()
            return
        while True:
            if self.left > 0:
                n = min(self.left, len(self.raw))
                self.body += self.raw[:n]
                del self.raw[:n]
                self.left -= n
                if self.left:
                    return
                self.left = -2  # the chunk's CRLF
            if self.left == -2:
                if len(self.raw) < 2:
                    return
                del self.raw[:2]
                self.left = 0
            line_end = self.raw.find(b"\r\n")
            if line_end < 0:
                return
            size = int(bytes(self.raw[:line_end]).split(b";")[0], 16)
            del self.raw[: line_end + 2]
            if size == 0:
                self.ended = True  # raised once the messages before it are out
                return
            self.left = size

    def messages(self, stopped):
        while not stopped():
            self._dechunk()
            while (nl := self.body.find(b"\n")) >= 0:
                line = bytes(self.body[:nl])
                del self.body[: nl + 1]
                if line.strip():
                    msg = json.loads(line)
                    if not isinstance(msg, dict):
                        raise ValueError("watch: not a JSON object: %r" % line[:100])
                    yield msg
                    if stopped():
                        return
            if self.ended:
                raise ConnectionError("etcd ended the watch stream")
            self._recv(POLL)

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None
