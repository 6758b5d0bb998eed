"""The DNS forwarder against an upstream of the test's own on loopback
(no root needed): RFC 5452's defences (a fresh random source port and a
random ID per upstream query, answers taken only from the address and port
asked, with our ID and our question) and the cache's TTLs counting down, the
last through the real server process (`python -m podnet.dns serve`), whose
receive loop serves cached answers."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest

from podnet.dns.forward import Forwarder
from tests.helpers import wait_for

LOOPBACK, OTHER = "127.0.0.1", "127.0.0.2"  # 127.0.0.0/8 is all on lo


def response(query, address="192.0.2.80", ttl=30, qname=None, qid=None):
    """The wire of an answer to `query` (a Message), optionally for another
    name or under another ID (what a spoofer sends)."""
    r = dns.message.make_response(query)
    if qname is not None:
        r.question = [dns.rrset.RRset(dns.name.from_text(qname), dns.rdataclass.IN, dns.rdatatype.A)]
    name = r.question[0].name
    r.answer.append(dns.rrset.from_text(name, ttl, "IN", "A", address))
    if qid is not None:
        r.id = qid
    return r.to_wire()


class Upstream:
    """A UDP resolver on 127.0.0.1: records (source port, ID, name) of every
    query it receives and answers through `handler(upstream, query, addr)`
    (default: 192.0.2.80 with TTL `ttl`)."""

    def __init__(self, handler=None, ttl=30):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, 0))
        self.sock.settimeout(0.1)
        self.addr = self.sock.getsockname()
        self.seen = []
        self.ttl = ttl
        self.handler = handler or (lambda up, q, addr: up.sock.sendto(response(q, ttl=up.ttl), addr))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.is_set():
            try:
                data, addr = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            q = dns.message.from_wire(data)
            self.seen.append((addr[1], q.id, q.question[0].name.to_text()))
            self.handler(self, q, addr)

    def close(self):
        self.stop.set()
        self.thread.join()
        self.sock.close()


@pytest.fixture
def forwarder():
    """-> make(upstream, timeout): a started Forwarder, stopped and closed after."""
    made = []

    def make(upstream, timeout=2.0):
        fwd, stop = Forwarder([upstream.addr], timeout=timeout), threading.Event()
        fwd.start(stop)
        made.append((fwd, stop, upstream))
        return fwd

    yield make
    for fwd, stop, upstream in made:
        stop.set()
        fwd.thread.join()
        fwd.close()
        upstream.close()


def ask(fwd, name):
    """Send one query through the forwarder -> (event, box) to wait on."""
    q = dns.message.make_query(name, "A", use_edns=False)
    done, box = threading.Event(), []
    fwd.query(q.to_wire(), lambda wire: (box.append(dns.message.from_wire(wire)), done.set()))
    return q, done, box


def answered(q, done, box, wait=5.0):
    assert done.wait(wait), "no answer for %s" % q.question[0].name
    r = box[0]
    assert r.id == q.id  # the client's ID, not ours
    return r


def addresses(r):
    return sorted(rd.address for rrset in r.answer for rd in rrset)


def test_each_upstream_query_has_its_own_random_source_port_and_id(forwarder):
    n = 20
    release = threading.Event()

    def hold(up, q, addr):
        # answer only when all n are in flight: n sockets bound at once
        threading.Thread(target=lambda: (release.wait(5), up.sock.sendto(response(q), addr))).start()
        if len(up.seen) == n:
            release.set()

    up = Upstream(hold)
    fwd = forwarder(up)
    pending = [ask(fwd, "n%d.example.com" % i) for i in range(n)]  # distinct names: no query is shared
    for q, done, box in pending:
        assert addresses(answered(q, done, box)) == ["192.0.2.80"]
    ports = [p for p, _, _ in up.seen]
    ids = [i for _, i, _ in up.seen]
    assert len(up.seen) == n
    assert len(set(ports)) == n, ports  # one socket per query, all bound at once
    # the kernel picks a random free port for bind(port 0): not a counter
    assert sum(1 for a, b in zip(ports, ports[1:], strict=False) if 0 < b - a <= 2) <= 1, ports
    # random 16-bit IDs: two of 20 equal has probability 0.3% (the birthday
    # bound), three equal about 1e-6; a counter or a fixed ID fails this
    assert len(set(ids)) >= n - 1, ids
    assert max(ids) - min(ids) > 4096 and sum(1 for a, b in zip(ids, ids[1:], strict=False) if abs(b - a) == 1) <= 1
    assert fwd.stats["sent"] == n and fwd.stats["answered"] == n


def test_forged_answers_are_dropped_and_the_real_one_is_taken(forwarder):
    """A spoofer that knows our port and ID answers first from another address
    and from another port; the upstream itself sends a wrong ID and an
    answer to another question; only then the real answer."""
    spoof_addr = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    spoof_port = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    spoof_port.bind((LOOPBACK, 0))

    def forge(up, q, addr):
        spoof_addr.sendto(response(q, "6.6.6.1"), addr)
        spoof_port.sendto(response(q, "6.6.6.2"), addr)
        up.sock.sendto(response(q, "6.6.6.3", qid=(q.id + 1) % 65536), addr)
        up.sock.sendto(response(q, "6.6.6.4", qname="other.example.com"), addr)
        time.sleep(0.3)
        up.sock.sendto(response(q, "192.0.2.80"), addr)

    up = Upstream(forge)
    spoof_addr.bind((OTHER, up.addr[1]))  # the upstream's port, another address
    try:
        fwd = forwarder(up)
        r = answered(*ask(fwd, "www.example.com"))
        assert addresses(r) == ["192.0.2.80"]
        s = fwd.stats
        assert (s["dropped_source"], s["dropped_id"], s["dropped_question"]) == (2, 1, 1)
        # the cached answer is the real one too
        assert addresses(answered(*ask(fwd, "www.example.com"))) == ["192.0.2.80"]
        assert len(up.seen) == 1
    finally:
        spoof_addr.close()
        spoof_port.close()


def test_only_forged_answers_end_in_servfail_at_the_timeout(forwarder):
    spoof = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    spoof.bind((OTHER, 0))
    up = Upstream(lambda up, q, addr: spoof.sendto(response(q, "6.6.6.6"), addr))
    try:
        fwd = forwarder(up, timeout=0.3)
        t0 = time.monotonic()
        r = answered(*ask(fwd, "www.example.com"))
        assert r.rcode() == dns.rcode.SERVFAIL and not r.answer
        # tried twice (the one upstream again), each under its own port and ID
        assert time.monotonic() - t0 >= 0.55 and len(up.seen) == 2
        assert up.seen[0][:2] != up.seen[1][:2]
        assert fwd.stats["dropped_source"] == 2 and fwd.stats["timeouts"] == 2
    finally:
        spoof.close()


def test_identical_questions_in_flight_share_one_upstream_query(forwarder):
    release = threading.Event()
    up = Upstream(lambda up, q, addr: (release.wait(5), up.sock.sendto(response(q), addr)))
    fwd = forwarder(up)
    q = dns.message.make_query("same.example.com", "A", use_edns=False)
    boxes = []
    for qid in (1, 2, 3):
        q.id = qid
        done, box = threading.Event(), []
        fwd.query(q.to_wire(), lambda wire, box=box, done=done: (box.append(dns.message.from_wire(wire)), done.set()))
        boxes.append((qid, done, box))
    release.set()
    for qid, done, box in boxes:
        assert done.wait(5) and box[0].id == qid and addresses(box[0]) == ["192.0.2.80"]
    assert len(up.seen) == 1 and fwd.stats["shared"] == 2


# ---- the cache through the real server ---------------------------------------------------------


def free_port():
    """A port free for both UDP and TCP on 127.0.0.1 (the server binds both)."""
    for _ in range(50):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind((LOOPBACK, 0))
        port = u.getsockname()[1]
        t = socket.socket()
        try:
            t.bind((LOOPBACK, port))
            return port
        except OSError:
            continue
        finally:
            u.close()
            t.close()
    raise AssertionError("no free port")


def internet(up, q, addr):
    """www.*: TTL 30; short.*: TTL 2; chain.*: a CNAME (TTL 20) to an A
    (TTL 10); gone.*: NXDOMAIN with an SOA (TTL 60, minimum 5)."""
    name = q.question[0].name
    if name.labels[0] == b"chain":
        r = dns.message.make_response(q)
        target = dns.name.from_text("target.example.com.")
        r.answer.append(dns.rrset.from_text(name, 20, "IN", "CNAME", target.to_text()))
        r.answer.append(dns.rrset.from_text(target, 10, "IN", "A", "192.0.2.81"))
        wire = r.to_wire()
    elif name.labels[0] == b"gone":
        r = dns.message.make_response(q)
        r.set_rcode(dns.rcode.NXDOMAIN)
        r.authority.append(dns.rrset.from_text("example.com.", 60, "IN", "SOA", "ns. host. 1 2 3 4 5"))
        wire = r.to_wire()
    else:
        wire = response(q, ttl=2 if name.labels[0] == b"short" else 30)
    up.sock.sendto(wire, addr)


@pytest.fixture(params=["batched", "single"])
def server(request, tmp_path):
    """`python -m podnet.dns serve --static` on 127.0.0.1 with one worker,
    forwarding to an Upstream answering as `internet` does: both receive
    loops (recvmmsg and one by one) serve the cache."""
    up = Upstream(internet)
    zone = tmp_path / "zone"
    zone.write_text("cluster.local. SOA ns. host. 1 2 3 4 60\nweb.cluster.local. A 10.96.0.20\n")
    port = free_port()
    env = dict(os.environ, PODNET_DNS_NO_MMSG="1") if request.param == "single" else None
    log = tmp_path / "dns.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "podnet.dns", "serve", "--static", str(zone), "--listen", LOOPBACK]
            + ["--port", str(port), "--upstream", "%s:%d" % up.addr, "--workers", "1"],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    try:
        wait_for("the server", lambda: proc.poll() is None and " serving " in log.read_text(), timeout=20)
        yield port, up
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # its own session: the PID we started is the group
            proc.wait(10)
        up.close()


def udp(port, name, rdtype="A"):
    import dns.query

    q = dns.message.make_query(name, rdtype, use_edns=False)  # as glibc asks: the cached kind
    return dns.query.udp(q, LOOPBACK, port=port, timeout=3)


def ttls(r, section="answer"):
    return [rrset.ttl for rrset in getattr(r, section)]


def test_cached_answers_count_their_ttl_down_and_expire(server):
    port, up = server
    assert ttls(udp(port, "www.example.com")) == [30]
    assert ttls(udp(port, "short.example.com")) == [2]
    assert ttls(udp(port, "chain.example.com")) == [20, 10]
    gone = udp(port, "gone.example.com")
    assert gone.rcode() == dns.rcode.NXDOMAIN and ttls(gone, "authority") == [60]
    assert udp(port, "web.cluster.local").answer  # ours, not forwarded
    t0 = time.monotonic()
    time.sleep(1.2)
    assert ttls(udp(port, "www.example.com")) in ([29], [28])
    assert ttls(udp(port, "chain.example.com")) in ([19, 9], [18, 8])  # every record's TTL
    gone = udp(port, "gone.example.com")  # a negative answer, cached for the SOA minimum (5 s)
    assert gone.rcode() == dns.rcode.NXDOMAIN and ttls(gone, "authority") in ([59], [58])
    assert ttls(udp(port, "WWW.Example.COM")) in ([29], [28])  # the cache key ignores case
    time.sleep(max(0.0, 2.2 - (time.monotonic() - t0)))
    r = udp(port, "www.example.com")
    assert ttls(r) in ([28], [27]) and addresses(r) == ["192.0.2.80"]
    asked = ["www.example.com.", "short.example.com.", "chain.example.com.", "gone.example.com."]
    assert [name for _, _, name in up.seen] == asked  # the rest from the cache
    # short.example.com expired after 2 s: asked upstream again, full TTL
    assert ttls(udp(port, "short.example.com")) == [2]
    assert [name for _, _, name in up.seen].count("short.example.com.") == 2
