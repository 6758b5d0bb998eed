"""Forwarding names outside our zones to upstream resolvers, with a cache.

UDP forwarding never blocks the server's receive loop: `query()` sends the
question upstream under a fresh random ID from the caller's thread and one
background thread reads the replies, matches them by (ID, question) and calls
the caller's callback. A question not answered within `timeout` is tried on
the next upstream once, then answered SERVFAIL, so a dead upstream costs a
client one timeout, not a hang.

Answers to plain questions (no EDNS) are cached, split as answers.split does,
keyed by the question bytes, for the smallest TTL in the answer (or the SOA
minimum for negative answers) and never longer than CACHE_MAX_TTL, so the
receive loop serves repeated external names without a round trip. TTLs in a
cached answer are not counted down: a client sees the upstream's TTL for at
most CACHE_MAX_TTL seconds longer than it should.

TCP (and UDP answers the upstream truncated) go through `query_tcp`, which
blocks: the TCP server calls it from the connection's own thread.
"""

import logging
import os
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


class Forwarder:
    def __init__(self, upstreams, timeout=2.0):
        self.upstreams = list(upstreams)
        self.timeout = timeout
        self.cache = {}  # question key -> (expires, pre0, pre1, tail)
        self.pending = {}  # (upstream index, id) -> [client id, question, callback, deadline, tries, data]
        self.lock = threading.Lock()
        self.socks = []
        for host, _port in self.upstreams:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            s = socket.socket(family, socket.SOCK_DGRAM)
            s.setblocking(False)
            self.socks.append(s)
        self.thread = None

    def start(self, stop):
        if self.upstreams:
            self.thread = threading.Thread(target=self._replies, args=(stop,), daemon=True, name="forward")
            self.thread.start()

    # ---- the cache ----------------------------------------------------------

    def cached(self, key):
        hit = self.cache.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit
        return None

    def _remember(self, question, wire):
        try:
            msg = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return
        if msg.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN) or msg.flags & 0x0200:  # TC
            return
        ttls = (
            [rr.ttl for rr in msg.answer]
            or [min(rr.ttl, rr[0].minimum) for rr in msg.authority if rr.rdtype == 6]
            or [0]
        )
        ttl = min(min(ttls), CACHE_MAX_TTL)
        if ttl <= 0:
            return
        if len(self.cache) >= CACHE_MAX:
            now = time.monotonic()
            for k in [k for k, v in self.cache.items() if v[0] <= now] or list(self.cache)[: CACHE_MAX // 10]:
                self.cache.pop(k, None)
        key = question[:-4].lower() + question[-4:]
        self.cache[key] = (time.monotonic() + ttl,) + split(wire, len(question))

    # ---- UDP ----------------------------------------------------------------

    def query(self, data, callback, upstream=0, tries=0):
        """Send the query `data` upstream; callback(response wire with the
        client's ID, or None when every upstream failed) runs later, from the
        forwarder thread."""
        if not self.upstreams:
            callback(servfail(data))
            return
        i = upstream % len(self.upstreams)
        with self.lock:
            while True:
                qid = struct.unpack("!H", os.urandom(2))[0]
                if (i, qid) not in self.pending:
                    break
            self.pending[(i, qid)] = [
                data[:2],
                data[12 : question_end(data)],
                callback,
                time.monotonic() + self.timeout,
                tries,
                data,
            ]
        try:
            self.socks[i].sendto(struct.pack("!H", qid) + data[2:], self.upstreams[i])
        except OSError as exc:
            log.warning("upstream %s:%d: %s", *self.upstreams[i], exc)

    def _replies(self, stop):
        while not stop.is_set():
            ready, _, _ = select.select(self.socks, [], [], 0.2)
            for s in ready:
                i = self.socks.index(s)
                while True:
                    try:
                        wire, _addr = s.recvfrom(65535)
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:
                        break
                    if len(wire) < 12:
                        continue
                    with self.lock:
                        entry = self.pending.get((i, struct.unpack("!H", wire[:2])[0]))
                        # the reply must repeat our question (RFC 5452), else it is spoofed or stale
                        if entry is None or wire[12 : 12 + len(entry[1])].lower() != entry[1].lower():
                            continue
                        del self.pending[(i, struct.unpack("!H", wire[:2])[0])]
                    reply = entry[0] + wire[2:]
                    if entry[5][4:12] == ONE_QUESTION:
                        self._remember(entry[1], wire)
                    self._call(entry[2], reply)
            self._expire()

    def _expire(self):
        now = time.monotonic()
        with self.lock:
            late = [(k, v) for k, v in self.pending.items() if v[3] <= now]
            for k, _ in late:
                del self.pending[k]
        for (i, _), v in late:
            if v[4] + 1 < max(2, len(self.upstreams)):
                self.query(v[5], v[2], upstream=i + 1, tries=v[4] + 1)
            else:
                self._call(v[2], servfail(v[5]))

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
