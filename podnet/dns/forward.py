"""Forwarding names outside our zones to upstream resolvers, with a cache.

UDP forwarding never blocks the server's receive loop: `query()` sends the
question upstream from the caller's thread and one background thread reads
the replies and calls the caller's callback. A question not answered within
`timeout` is tried on the next upstream once, then answered SERVFAIL, so a
dead upstream costs a client one timeout, not a hang.

Spoofing (RFC 5452): every upstream query goes out from a socket of its own,
bound to port 0 (the kernel picks a random free ephemeral port), under a
random 16-bit ID from os.urandom. An answer is taken only when it comes from
the address and port we asked, carries our ID and repeats our question (name
case-insensitively, type and class exactly); anything else is dropped and
counted in `stats`, and the wait goes on until the timeout, so a forged
packet that arrives first cannot end the query. Identical questions in
flight share one upstream query (RFC 5452 section 5: many queries for one
name are what a birthday attack needs).

Answers to plain questions (no EDNS) are cached, split as answers.split does,
keyed by the question bytes, for the smallest TTL in the answer (or the SOA
minimum for negative answers) and never longer than CACHE_MAX_TTL, so the
receive loop serves repeated external names without a round trip. TTLs count
down: a cache entry is (valid_until, pre0, pre1, tail, expires, stored,
ttl offsets, original tail), and its tail holds the TTLs as they are during
one second of its life; `valid_until` is the end of that second (or the
expiry). The receive loop serves an entry only before `valid_until`; after
it the query takes the slow path to `query()`, which renders the entry again
with every TTL reduced by the whole seconds it has been cached (never below
0) and answers from it until it expires. So the hot path stays one dict
lookup and one comparison, and the re-rendering costs one slow query per name
per second.

TCP (and UDP answers the upstream truncated) go through `query_tcp`, which
blocks: the TCP server calls it from the connection's own thread (a TCP
answer cannot be forged without the connection; dnspython checks the ID and
the question).
"""

import logging
import os
import resource
import select
import socket
import struct
import threading
import time

import dns.exception
import dns.message
import dns.query
import dns.rcode

from podnet.dns.answers import ONE_QUESTION, split

log = logging.getLogger("podnet.dns.forward")
CACHE_MAX_TTL = 30
CACHE_MAX = 10000
EXPIRE_EVERY = 0.05  # how often the reply thread looks for queries past their deadline
DROP_REPORT_EVERY = 10.0  # a warning with the dropped answers at most this often
OPT, SOA = 41, 6


def parse_upstreams(items, default_port=53):
    """['192.168.200.100', '10.0.0.1:5353'] -> [(host, port)]; names in
    resolv.conf form are accepted as well ('nameserver 1.2.3.4' lines)."""
    out = []
    for item in items:
        host, _, port = item.rpartition(":") if item.count(":") == 1 else (item, "", "")
        out.append((host or item, int(port) if port else default_port))
    return out


def upstreams_from_resolv_conf(path="/etc/resolv.conf"):
    try:
        with open(path) as f:
            return [line.split()[1] for line in f if line.split()[:1] == ["nameserver"] and len(line.split()) > 1]
    except FileNotFoundError:
        return []


def _numeric(host):
    """The address as recvfrom reports it (an answer's source is compared to it)."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            return socket.inet_ntop(family, socket.inet_pton(family, host))
        except OSError:
            continue
    return socket.getaddrinfo(host, None, type=socket.SOCK_DGRAM)[0][4][0]


def _max_pending():
    """Queries in flight hold a socket each: stay well inside the fd limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(16, min(4096, (soft if soft != resource.RLIM_INFINITY else 8192) // 2))


class _Query:
    """One question in flight upstream (shared by every client asking it)."""

    __slots__ = ("sock", "upstream", "qid", "question", "waiters", "deadline", "tries", "data", "key")

    def __init__(self, data, key, upstream, tries):
        self.data, self.key = data, key
        self.question = data[12 : question_end(data)]
        self.waiters = []  # (client ID bytes, callback)
        self.upstream, self.tries = upstream, tries
        self.sock = None
        self.qid = b""
        self.deadline = 0.0


class Forwarder:
    def __init__(self, upstreams, timeout=2.0):
        self.upstreams = [(_numeric(host), int(port)) for host, port in upstreams]
        self.timeout = timeout
        self.cache = {}  # question key -> (valid_until, pre0, pre1, tail, expires, stored, offsets, tail0)
        self.pending = {}  # socket fd -> _Query
        self.inflight = {}  # the query after its ID -> _Query (identical questions share one)
        self.lock = threading.Lock()
        self.poller = select.epoll()
        self.max_pending = _max_pending()
        self.stats = dict.fromkeys(
            (
                "sent",
                "answered",
                "timeouts",
                "shared",  # clients that joined a question already in flight
                "overflow",  # answered SERVFAIL: too many questions in flight
                "dropped_source",  # an answer from another address or port than the one asked
                "dropped_id",  # with another ID
                "dropped_question",  # not a response to our question
            ),
            0,
        )
        self.thread = None
        self._next_expire = self._next_report = 0.0
        self._reported = (0, 0, 0)

    def start(self, stop):
        if self.upstreams:
            self.thread = threading.Thread(target=self._replies, args=(stop,), daemon=True, name="forward")
            self.thread.start()

    def close(self):
        """Close the sockets of queries still in flight (after the thread stopped)."""
        with self.lock:
            queries, self.pending, self.inflight = list(self.pending.values()), {}, {}
        for q in queries:
            if q.sock is not None:
                q.sock.close()
        self.poller.close()

    # ---- the cache ----------------------------------------------------------

    def cached(self, key, now=None):
        """The cache entry for a question key with its TTLs as they are now,
        or None (absent or expired)."""
        hit = self.cache.get(key)
        if hit is None:
            return None
        now = time.monotonic() if now is None else now
        if now < hit[0]:
            return hit
        if now >= hit[4]:
            if self.cache.get(key) is hit:
                self.cache.pop(key, None)
            return None
        hit = _render(hit, now)
        self.cache[key] = hit
        return hit

    def _remember(self, question, wire):
        """Cache an upstream answer (NOERROR or NXDOMAIN, not truncated) for
        its smallest TTL, or the SOA minimum of a negative one; read with a
        walk over the records, not a parse: this runs per forwarded answer."""
        if wire[3] & 0x0F not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN) or wire[2] & 0x02:  # TC
            return
        base = 12 + len(question)
        try:
            records = _records(wire, base)
        except (ValueError, IndexError, struct.error):
            return
        ttls = [ttl for section, _, _, ttl, _ in records if section == 0] or [
            min(ttl, struct.unpack_from("!I", wire, end - 4)[0])
            for section, rtype, _, ttl, end in records
            if section == 1 and rtype == SOA
        ]
        ttl = min(min(ttls or [0]), CACHE_MAX_TTL)
        if ttl <= 0:
            return
        now = time.monotonic()
        if len(self.cache) >= CACHE_MAX:
            for k in [k for k, v in self.cache.items() if v[4] <= now] or list(self.cache)[: CACHE_MAX // 10]:
                self.cache.pop(k, None)
        key = question[:-4].lower() + question[-4:]
        pre0, pre1, tail = split(wire, len(question))
        offsets = [(off - base, t) for _, rtype, off, t, _ in records if rtype != OPT]  # OPT's "TTL" is flags
        self.cache[key] = (now + 1, pre0, pre1, tail, now + ttl, now, offsets, tail)  # ttl >= 1

    # ---- UDP ----------------------------------------------------------------

    def query(self, data, callback):
        """Answer the query `data`: from the cache when it holds the question
        (TTLs counted down), else upstream; callback(response wire with the
        client's ID) runs now or later, from the forwarder thread."""
        if not self.upstreams:
            callback(servfail(data))
            return
        if data[4:12] == ONE_QUESTION and not data[2] & 0xF8:
            hit = self.cached(data[12:-4].lower() + data[-4:])
            if hit is not None:
                callback(data[:2] + hit[1 + (data[2] & 1)] + data[12:] + hit[3])
                return
        key = data[2:]
        with self.lock:
            q = self.inflight.get(key)
            if q is not None:
                q.waiters.append((data[:2], callback))
                self.stats["shared"] += 1
                return
            if len(self.pending) >= self.max_pending:
                self.stats["overflow"] += 1
                q = None
            else:
                q = self.inflight[key] = _Query(data, key, 0, 0)
                q.waiters.append((data[:2], callback))
        if q is None:
            log.warning("forward: %d questions in flight, answering SERVFAIL", self.max_pending)
            self._call(callback, servfail(data))
            return
        self._send(q)

    def _send(self, q):
        """Ask q's current upstream from a fresh socket under a fresh ID."""
        host, port = self.upstreams[q.upstream % len(self.upstreams)]
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        s = None
        try:
            s = socket.socket(family, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK)
            s.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", 0))  # a random free port
        except OSError as exc:
            if s is not None:
                s.close()
            log.warning("forward: a socket for %s:%d: %s", host, port, exc)
            q.sock, q.deadline = None, time.monotonic()  # the expiry moves it on
            with self.lock:
                self.pending[id(q)] = q
            return
        q.sock, q.qid = s, os.urandom(2)
        q.deadline = time.monotonic() + self.timeout
        with self.lock:
            self.pending[s.fileno()] = q
            self.stats["sent"] += 1
        self.poller.register(s.fileno(), select.EPOLLIN)
        try:
            s.sendto(q.qid + q.data[2:], (host, port))
        except OSError as exc:  # answered by the expiry: the next upstream, or SERVFAIL
            log.warning("upstream %s:%d: %s", host, port, exc)

    def _replies(self, stop):
        while not stop.is_set():
            for fd, _ in self.poller.poll(0.2):
                with self.lock:
                    q = self.pending.get(fd)
                if q is None:
                    continue
                while True:
                    try:
                        wire, addr = q.sock.recvfrom(65535)
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:
                        break
                    if self._accept(q, wire, addr):
                        self._finish(q, wire)
                        break
            now = time.monotonic()
            if now >= self._next_expire:
                self._next_expire = now + EXPIRE_EVERY
                self._expire()
            if now >= self._next_report:
                self._next_report = now + DROP_REPORT_EVERY
                self._report_drops()

    def _report_drops(self):
        dropped = tuple(self.stats[k] for k in ("dropped_source", "dropped_id", "dropped_question"))
        if dropped != self._reported:
            a, b, c = (x - y for x, y in zip(dropped, self._reported, strict=True))
            log.warning(
                "forward: dropped %d answers from another address or port, %d with a wrong ID, "
                "%d for another question (spoofed or late)",
                a,
                b,
                c,
            )
            self._reported = dropped

    def _accept(self, q, wire, addr):
        """Is this the answer to q (RFC 5452 section 9.1)? Counts what is not."""
        host, port = self.upstreams[q.upstream % len(self.upstreams)]
        if addr[0] != host or addr[1] != port:
            self.stats["dropped_source"] += 1
            log.debug("forward: dropped an answer from %s:%d (asked %s:%d)", addr[0], addr[1], host, port)
            return False
        if wire[:2] != q.qid:
            self.stats["dropped_id"] += 1
            return False
        n = len(q.question)
        if (
            len(wire) < 12 + n
            or not wire[2] & 0x80  # QR: a response
            or wire[4:6] != b"\x00\x01"
            or wire[12 : 8 + n].lower() != q.question[:-4].lower()
            or wire[8 + n : 12 + n] != q.question[-4:]
        ):
            self.stats["dropped_question"] += 1
            return False
        return True

    def _forget(self, q):
        with self.lock:
            if q.sock is not None:
                self.pending.pop(q.sock.fileno(), None)
            else:
                self.pending.pop(id(q), None)
            if self.inflight.get(q.key) is q:
                del self.inflight[q.key]
        if q.sock is not None:
            self.poller.unregister(q.sock.fileno())
            q.sock.close()
            q.sock = None

    def _finish(self, q, wire):
        self._forget(q)
        self.stats["answered"] += 1
        if q.data[4:12] == ONE_QUESTION:
            self._remember(q.question, wire)
        for cid, callback in q.waiters:
            self._call(callback, cid + wire[2:])

    def _expire(self):
        now = time.monotonic()
        with self.lock:
            late = [q for q in self.pending.values() if q.deadline <= now]
        for q in late:
            with self.lock:
                if q.sock is not None:
                    self.pending.pop(q.sock.fileno(), None)
                else:
                    self.pending.pop(id(q), None)
            if q.sock is not None:
                self.poller.unregister(q.sock.fileno())
                q.sock.close()
                q.sock = None
            self.stats["timeouts"] += 1
            if q.tries + 1 < max(2, len(self.upstreams)):
                q.tries += 1
                q.upstream += 1
                self._send(q)  # still in flight: later askers keep joining it
            else:
                self._forget(q)
                for cid, callback in q.waiters:
                    self._call(callback, servfail(cid + q.data[2:]))

    @staticmethod
    def _call(callback, reply):
        try:
            callback(reply)
        except Exception as exc:  # one bad callback must not stop the forwarder
            log.warning("forward callback: %s", exc)

    # ---- TCP (blocking) -------------------------------------------------------

    def query_tcp(self, data):
        """-> response wire (the client's ID), SERVFAIL when every upstream fails."""
        try:
            q = dns.message.from_wire(data)
        except dns.exception.DNSException:
            return servfail(data)
        for host, port in self.upstreams:
            try:
                r = dns.query.tcp(q, host, port=port, timeout=self.timeout)
                return r.to_wire()
            except (OSError, dns.exception.DNSException) as exc:
                log.warning("upstream %s:%d over TCP: %s", host, port, exc)
        return servfail(data)


def _skip_name(wire, i):
    while True:
        n = wire[i]
        if n == 0:
            return i + 1
        if n & 0xC0 == 0xC0:
            return i + 2
        if n & 0xC0:
            raise ValueError("bad label type")
        i += 1 + n


def _records(wire, start):
    """[(section 0-2, type, TTL offset, TTL, rdata end)] of a response's
    records, which begin at `start` (just past its one question)."""
    counts = struct.unpack_from("!HHH", wire, 6)
    out, i = [], start
    for section, count in enumerate(counts):
        for _ in range(count):
            i = _skip_name(wire, i)
            rtype, _rclass, ttl, rdlen = struct.unpack_from("!HHIH", wire, i)
            end = i + 10 + rdlen
            if end > len(wire):
                raise ValueError("a record runs past the message")
            out.append((section, rtype, i + 4, ttl, end))
            i = end
    return out


def _render(entry, now):
    """A cache entry with its TTLs reduced by the whole seconds since it was stored."""
    _valid, pre0, pre1, _tail, expires, stored, offsets, tail0 = entry
    age = int(now - stored)
    tail = bytearray(tail0)
    for off, ttl in offsets:
        struct.pack_into("!I", tail, off, max(0, ttl - age))
    return (min(stored + age + 1, expires), pre0, pre1, bytes(tail), expires, stored, offsets, tail0)


def question_end(data):
    """Offset just past the first question (uncompressed name + type + class)."""
    i = 12
    while i < len(data) and data[i]:
        i += 1 + data[i]
    return min(i + 5, len(data))


def servfail(data):
    flags = 0x80 | (data[2] & 0x79)
    return (
        data[:2] + bytes((flags, 0x80 | dns.rcode.SERVFAIL)) + data[4:6] + b"\x00" * 6 + data[12:]
        if data[4:6] == b"\x00\x01" and data[6:12] == b"\x00" * 6
        else data[:2] + bytes((flags, 0x82)) + b"\x00" * 8
    )
