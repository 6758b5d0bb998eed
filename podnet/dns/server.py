"""The DNS server: UDP and TCP on port 53, answers from a Table.

Speed comes from doing per change what can be done per change: the Table
(answers.py) holds every likely response in wire format, and the UDP loop
is a dict lookup on the question bytes, a 2-byte ID and the RD bit copied,
one sendto. Only unusual queries (EDNS, other classes, names we have no
precomputed answer for, forwarding) touch dnspython.

Workers: `workers` processes, each with its own UDP socket bound to the same
address with SO_REUSEPORT (the kernel spreads clients over them by a hash of
the 4-tuple), its own Table and its own watch. The first process also serves
TCP. Children die with the parent (PR_SET_PDEATHSIG), so stopping the
container's process group or just its main process stops them all.

Answers follow the store: one thread watches /registry/ (services and
endpointslices only mark work pending), another rebuilds the Table from a
full list and swaps it in with one assignment; a resync every RESYNC seconds
repairs a missed event. The server binds only after its first Table exists,
so a client never sees answers from an empty cluster.
"""

import ctypes
import logging
import os
import signal
import socket
import socketserver
import struct
import sys
import threading
import time

import dns.message

from podnet.dns import answers, mmsg, records
from podnet.dns.answers import FORWARD, ONE_QUESTION, Chase, question_key
from podnet.dns.forward import Forwarder

log = logging.getLogger("podnet.dns")
RESYNC = 30.0
WHOLE_MAX = 200000  # joined answers kept per worker (a few hundred bytes each)
WATCHED = ("Service", "EndpointSlice")
TCP_IDLE = 10.0


class Server:
    def __init__(self, source, upstreams=(), address="0.0.0.0", port=53):
        """source: a callable -> records.Records (called per change), plus
        an optional `.store` to watch; or a fixed Records."""
        self.source = source
        self.address, self.port = address, port
        self.forwarder = Forwarder(upstreams)
        self.table = None
        self.dirty = threading.Event()
        self.stop = threading.Event()
        self.rebuilds = 0
        self.stats = None  # podnet.dns.stats.Stats, set by run()
        # answers of the slow path (other threads answer forwarded queries)
        self.slow_rc = [0] * 16
        self.slow_lock = threading.Lock()

    def _count(self, wire):
        """An answer sent by the slow path (dnspython, forwarding, chasing)."""
        if wire and len(wire) > 3:
            with self.slow_lock:
                self.slow_rc[wire[3] & 15] += 1

    def _account(self, queries, rc, seconds):
        """The hot loop's batch, and whatever the slow path answered meanwhile."""
        if self.stats is None:
            return
        with self.slow_lock:
            for i, n in enumerate(self.slow_rc):
                if n:
                    rc[i] += n
                    self.slow_rc[i] = 0
        self.stats.add(queries, rc, seconds)

    # ---- the table -------------------------------------------------------------

    def rebuild(self):
        t0 = time.monotonic()
        rec = self.source() if callable(self.source) else self.source
        self.table = answers.Table(rec, self.table)
        self.rebuilds += 1
        log.info(
            "table: %d names, %d answers in %.0f ms",
            len(rec.names),
            len(self.table.udp),
            (time.monotonic() - t0) * 1000,
        )

    def _rebuilder(self):
        last = time.monotonic()
        while not self.stop.is_set():
            if self.dirty.wait(0.5) or time.monotonic() - last > RESYNC:
                self.dirty.clear()
                last = time.monotonic()
                try:
                    self.rebuild()
                except Exception as exc:  # keep serving the last good table; try again
                    log.exception("rebuild failed: %s", exc)
                    from podnet.client.loop import THREAD_ERRORS  # here: the client costs ~80 ms to import

                    THREAD_ERRORS.note("dns rebuild")
                    self.stop.wait(0.5)
                    self.dirty.set()

    def start_following(self):
        cluster = getattr(self.source, "cluster", None)
        if cluster is not None:
            cluster.stop = self.stop
            for kind in WATCHED:
                cluster.watch_dirty(kind, self.dirty)
            threading.Thread(target=self._rebuilder, daemon=True, name="rebuild").start()

    # ---- UDP -----------------------------------------------------------------------

    def udp_socket(self):
        family = socket.AF_INET6 if ":" in self.address else socket.AF_INET
        s = socket.socket(family, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
        s.bind((self.address, self.port))
        return s

    def serve_udp(self, sock):
        # PODNET_DNS_NO_MMSG=1: the one-by-one loop (the tests run both)
        if mmsg.available() and not os.environ.get("PODNET_DNS_NO_MMSG"):
            return self.serve_udp_batched(sock)
        return self.serve_udp_single(sock)

    def serve_udp_batched(self, sock):
        """The hot loop with recvmmsg/sendmmsg: up to mmsg.BATCH queries per
        system call pair. Same answers as serve_udp_single; kept flat on
        purpose: every attribute lookup here is paid per query."""
        b = mmsg.Batcher(sock)
        recv, reply, put, flush = b.recv, b.reply, b.put, b.flush
        sendto = sock.sendto
        cache = self.forwarder.cache
        monotonic = time.monotonic
        account = self._account
        rc = [0] * 16  # answers by rcode in this batch: the byte after the flags' first
        table, whole = None, {}
        while not self.stop.is_set():
            try:
                batch = recv()
            except OSError:
                if self.stop.is_set():
                    return
                continue
            t0 = monotonic()
            slow = None
            if self.table is not table:  # a new table: the joined answers go with the old one
                table, whole = self.table, {}
            udp = table.udp
            for data, slot in batch:
                try:
                    if data[4:12] == ONE_QUESTION and not data[2] & 0xF8:
                        q = data[12:]
                        w = whole.get(q)  # everything after the ID, joined once per question
                        if w is not None:
                            a = w[data[2] & 1]
                            if put(slot, data, a):
                                rc[a[1] & 15] += 1
                                continue
                        v = udp.get(q)
                        if v is not None and len(whole) < WHOLE_MAX:
                            w = whole[q] = (v[0] + q + v[2], v[1] + q + v[2])
                            a = w[data[2] & 1]
                            if put(slot, data, a):
                                rc[a[1] & 15] += 1
                                continue
                        if v is None:
                            key = data[12:-4].lower() + data[-4:]
                            v = udp.get(key)
                            if v is None:
                                v = cache.get(key)
                                if v is not None and v[0] >= monotonic():
                                    a = v[1 + (data[2] & 1)]
                                    if reply(slot, data[:2] + a + q + v[3]):
                                        rc[a[1] & 15] += 1
                                        continue
                                v = None
                        if v is not None:
                            a = v[data[2] & 1]
                            if reply(slot, data[:2] + a + q + v[2]):
                                rc[a[1] & 15] += 1
                                continue
                    (slow := slow or []).append((data, slot))
                except Exception as exc:  # one bad packet must not stop the server
                    log.warning("query: %s", exc)
            flush()
            for data, slot in slow or ():
                try:
                    self._slow_udp(data, b.sender(slot), sendto)
                except Exception as exc:
                    log.warning("query: %s", exc)
            account(len(batch), rc, monotonic() - t0)

    def serve_udp_single(self, sock):
        """The hot loop, one query per recvfrom/sendto (where recvmmsg is not
        available). Kept flat on purpose: every attribute lookup and call
        here is paid per query."""
        recvfrom, sendto = sock.recvfrom, sock.sendto
        fwd = self.forwarder
        cache = fwd.cache
        monotonic = time.monotonic
        account = self._account
        rc = [0] * 16
        while not self.stop.is_set():
            try:
                data, addr = recvfrom(4096)
            except InterruptedError:
                continue
            except OSError:
                if self.stop.is_set():
                    return
                continue
            t0 = monotonic()
            try:
                if data[4:12] == ONE_QUESTION and not data[2] & 0xF8:
                    udp = self.table.udp
                    v = udp.get(data[12:])
                    if v is None:
                        key = data[12:-4].lower() + data[-4:]
                        v = udp.get(key)
                        if v is None:
                            v = cache.get(key)
                            if v is not None and v[0] < monotonic():
                                v = None
                            if v is not None:
                                a = v[1 + (data[2] & 1)]
                                sendto(data[:2] + a + data[12:] + v[3], addr)
                                rc[a[1] & 15] += 1
                                account(1, rc, monotonic() - t0)
                                continue
                    if v is not None:
                        a = v[data[2] & 1]
                        sendto(data[:2] + a + data[12:] + v[2], addr)
                        rc[a[1] & 15] += 1
                        account(1, rc, monotonic() - t0)
                        continue
                self._slow_udp(data, addr, sendto)
            except Exception as exc:  # one bad packet must not stop the server
                log.warning("query from %s: %s", addr, exc)
            account(1, rc, monotonic() - t0)

    def _slow_udp(self, data, addr, sendto):
        res = self.table.respond(data)
        if res is None:
            return
        count = self._count

        def send(wire):
            if wire:
                sendto(wire, addr)
                count(wire)

        if isinstance(res, bytes):
            send(res)
        elif res is FORWARD:
            self.forwarder.query(data, send)
        elif isinstance(res, Chase):
            self._chase(res, send)

    def _chase(self, chase, reply):
        key = question_key(chase.target, chase.rdtype)
        hit = self.forwarder.cached(key)
        if hit is not None:
            reply(chase.finish(b"\x00\x00" + hit[1] + key + hit[3]))
            return
        q = dns.message.make_query(chase.target, chase.rdtype).to_wire()
        self.forwarder.query(q, lambda wire: reply(chase.finish(wire)))

    # ---- TCP -----------------------------------------------------------------------

    def answer_tcp(self, data):
        if data[4:12] == ONE_QUESTION and not data[2] & 0xF8:
            v = self.table.tcp.get(data[12:-4].lower() + data[-4:])
            if v is not None:
                return data[:2] + v[data[2] & 1] + data[12:] + v[2]
        res = self.table.respond(data, tcp=True)
        if res is FORWARD:
            return self.forwarder.query_tcp(data)
        if isinstance(res, Chase):
            q = dns.message.make_query(res.target, res.rdtype).to_wire()
            return res.finish(self.forwarder.query_tcp(q))
        return res

    def tcp_server(self):
        server = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                conn = self.request
                conn.settimeout(TCP_IDLE)
                try:
                    while True:
                        head = _read(conn, 2)
                        if head is None:
                            return
                        data = _read(conn, struct.unpack("!H", head)[0])
                        if data is None:
                            return
                        wire = server.answer_tcp(data)
                        if wire:
                            conn.sendall(struct.pack("!H", len(wire)) + wire)
                except (TimeoutError, OSError):
                    return

        family = socket.AF_INET6 if ":" in self.address else socket.AF_INET
        cls = type(
            "TCP",
            (socketserver.ThreadingTCPServer,),
            {"address_family": family, "allow_reuse_address": True, "daemon_threads": True},
        )
        return cls((self.address, self.port), Handler)


def _read(conn, n):
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def _die_with_parent():
    PR_SET_PDEATHSIG = 1
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def run(make_server, workers=1, tcp=True, metrics_port=0):
    """Fork workers-1 children (before any thread starts), then in every
    process: build the first table, bind, serve. Returns only on SIGTERM/INT.
    metrics_port: the first process serves the counters of all of them
    (podnet.dns.stats) on the server's address; 0: no page."""
    from podnet.dns.stats import Stats

    workers = max(1, workers or os.cpu_count() or 1)
    stats = Stats(workers)  # before the fork: one shared mapping
    role = 0
    children = []
    for i in range(1, workers):
        pid = os.fork()
        if pid == 0:
            role = i
            children = []
            _die_with_parent()
            break
        children.append(pid)
    server = make_server()
    stats.mine(role)
    server.stats = stats
    signal.signal(signal.SIGTERM, lambda *_: _exit(server, children))
    signal.signal(signal.SIGINT, lambda *_: _exit(server, children))
    server.rebuild()
    server.start_following()
    server.forwarder.start(server.stop)
    udp = server.udp_socket()
    if metrics_port and role == 0:
        from podnet.dns.stats import serve

        serve(stats, server.address, metrics_port)
    if tcp and role == 0:
        t = server.tcp_server()
        threading.Thread(target=t.serve_forever, kwargs={"poll_interval": 0.5}, daemon=True, name="tcp").start()
    print(
        "podnet dns: worker %d serving %s:%d (%s), %d answers"
        % (role, server.address, server.port, "udp+tcp" if tcp and role == 0 else "udp", len(server.table.udp)),
        file=sys.stderr,
        flush=True,
    )
    server.serve_udp(udp)


_exiting: list[bool] = []


def _exit(server, children):
    # a second SIGTERM (the process group's, then the parent's to its
    # children) runs this handler again inside the first one; entering
    # stop.set() twice would wait for ever on the Event's own lock
    if _exiting:
        return
    _exiting.append(True)
    server.stop.set()
    for pid in children:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for pid in children:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
    os._exit(0)


def api_source(kubeconfig, zone=records.ZONE):
    """A records source reading Services and EndpointSlices through the API
    (informers: the lists are local copies, kept current by watches)."""
    from podnet.client import connect

    cluster = connect(kubeconfig, "podnet-dns")

    def source():
        # the SOA serial stays fixed: it is in every negative answer, and a
        # serial per change would re-render them all (nobody transfers this zone)
        return records.build(cluster.list("Service"), cluster.list("EndpointSlice"), zone=zone)

    source.cluster = cluster
    return source
