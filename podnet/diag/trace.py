"""`podnet trace FROM TO`: send one real probe and explain its path.

Order matters: the monitors start first, then the trace table goes into
every namespace of the path (its "add table" event tells each monitor is
listening), then ONE probe leaves FROM's namespace (a real connect() for
TCP, a datagram for UDP, an echo request for ICMP), then the events are
collected. The trace tables and the monitors are removed in `finally`,
whatever happened. podnet/diag/tracewords.py turns the events into words.

The probe's socket is created by a thread that entered FROM's namespace
(a socket stays in the namespace it was made in), so no child process is
needed. A drop is known only by silence, so while waiting we watch the
monitors: once a rule has dropped or rejected the probe, waiting longer
tells nothing new.
"""

from __future__ import annotations

import errno
import os
import random
import re
import select
import socket
import struct
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from podnet.diag import targets as tg
from podnet.diag import tracewords as tw
from podnet.kernel import lookup, nfttrace
from podnet.kernel.netns import Netns, entered


class KernelLook:
    """tracewords.Look on the real kernel, answers cached per trace."""

    def __init__(self):
        self.cache: dict[Any, Any] = {}

    def _c(self, key, fn):
        if key not in self.cache:
            self.cache[key] = fn()
        return self.cache[key]

    def route(self, ns, dst):
        return self._c(("r", ns, dst), lambda: lookup.route_get(ns, dst))

    def neighbour(self, ns, dev, ip):
        return self._c(("n", ns, dev, ip), lambda: lookup.neighbour(ns, dev, ip))

    def fdb(self, ns, dev):
        return self._c(("f", ns, dev), lambda: lookup.fdb(ns, dev))

    def sysctl(self, ns, key):
        return self._c(("s", ns, key), lambda: lookup.sysctl(ns, key))


def _path_namespaces(cl, src, dst):
    """netns -> Place for every namespace the probe may cross."""
    places = {}
    if src.netns:
        places[src.netns] = _place(src)
    for n in cl.doc["nodes"]:
        places[n["netns"]] = tw.Place("node " + n["name"], n["name"], "node")
    places[cl.doc["external"]["netns"]] = tw.Place("external", None, "external")
    pods = []
    if dst.kind == "pod" and dst.obj is not None:
        pods.append(dst.obj)
    if dst.kind == "service" and dst.obj is not None:
        eps = cl.endpoints(dst.obj)
        pods += [p for p in cl.pods if p["status"]["podIP"] in eps and not p["spec"].get("hostNetwork")]
    for p in pods:
        t = cl.pod_target(p)
        if t.netns and t.netns not in places:
            places[t.netns] = _place(t)
    return {ns: pl for ns, pl in places.items() if lookup.exists(ns)}


def _place(t):
    if t.kind == "pod":
        return tw.Place("pod " + (t.name or "?"), t.node, "pod")
    if t.kind == "node":
        return tw.Place("node " + (t.name or "?"), t.name, "node")
    return tw.Place("external", None, "external")


def _stale_conntrack(cl, src, dst, proto, sport):
    """A UDP conntrack entry of this 5-tuple DNATed to an address that is
    no ready endpoint of the Service any more, read on FROM's node."""
    if proto != "udp" or dst.kind != "service" or dst.obj is None:
        return None
    ns = cl.node_ns.get(src.node or "") if src.kind == "pod" else src.netns
    if not ns:
        return None
    eps = cl.endpoints(dst.obj)
    for line in lookup.conntrack_entries(ns, "udp", sport):
        srcs = re.findall(r"\bsrc=(\S+)", line)
        if "dst=%s" % dst.ip in line and len(srcs) > 1 and srcs[1] not in eps:
            return " ".join(line.split())
    return None


# ---- the probe -----------------------------------------------------------------


def _socket_in(ns_name, *args):
    with Netns(ns_name) as h, entered(h):
        return socket.socket(*args)


def _dropped_seen(monitors):
    return any("(verdict drop)" in ln or " policy drop" in ln for m in monitors for ln in m.lines)


def _wait(sock, want, deadline, monitors):
    """Wait for `want` ("r" or "w") on sock; False on timeout or once a
    rule dropped the probe."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        r, w, _ = select.select([sock] if want == "r" else [], [sock] if want == "w" else [], [], min(left, 0.05))
        if r or w:
            return True
        if _dropped_seen(monitors):
            time.sleep(0.05)  # the rest of that packet's events
            return False


def probe_tcp(ns, dst, port, sport, timeout, monitors):
    s = _socket_in(ns, socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # close with RST: no FIN handshake to wait for (and trace)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.bind(("0.0.0.0", sport))
        s.setblocking(False)
        err = s.connect_ex((dst, port))
        if err not in (0, errno.EINPROGRESS):
            return _errno_outcome(err)
        if not _wait(s, "w", time.monotonic() + timeout, monitors):
            return "timeout", "no answer to the SYN in %.1f s" % timeout
        err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        return ("reply", "SYN-ACK") if err == 0 else _errno_outcome(err)
    finally:
        s.close()


def _errno_outcome(err):
    if err == errno.ECONNREFUSED:
        return "refused", "connection refused (RST or port unreachable)"
    if err in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return "unreachable", os.strerror(err)
    if err == errno.EMSGSIZE:
        return "msgsize", "message too long for the path MTU"
    if err == errno.ETIMEDOUT:
        return "timeout", "connect timed out"
    return "error", os.strerror(err)


def _udp_payload(port, size):
    if port == 53:
        import dns.message
        import dns.rdatatype

        return dns.message.make_query("kubernetes.default.svc.cluster.local.", dns.rdatatype.A).to_wire()
    body = b"hostname"
    if size:
        body = body.ljust(max(size - 28, len(body)), b" ")
    return body


def probe_udp(ns, dst, port, sport, timeout, monitors, size=None):
    s = _socket_in(ns, socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", sport))
        if size:
            s.setsockopt(socket.IPPROTO_IP, 10, 2)  # IP_MTU_DISCOVER = IP_PMTUDISC_DO: DF
            s.setsockopt(socket.IPPROTO_IP, 11, 1)  # IP_RECVERR: ICMP errors reach recv
        s.connect((dst, port))
        try:
            s.send(_udp_payload(port, size))
        except OSError as exc:
            return _errno_outcome(exc.errno)
        if not _wait(s, "r", time.monotonic() + timeout, monitors):
            return "timeout", "no answer to the datagram in %.1f s" % timeout
        try:
            s.recv(4096)
        except OSError as exc:
            return _errno_outcome(exc.errno)
        return "reply", "a datagram came back"
    finally:
        s.close()


def _checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def probe_icmp(ns, dst, ident, timeout, monitors, size=None):
    s = _socket_in(ns, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    try:
        if size:
            s.setsockopt(socket.IPPROTO_IP, 10, 2)  # IP_MTU_DISCOVER = IP_PMTUDISC_DO: DF
        payload = b"podnet-trace".ljust(max((size or 84) - 28, 12), b".")
        head = struct.pack("!BBHHH", 8, 0, 0, ident, 1)
        packet = struct.pack("!BBHHH", 8, 0, _checksum(head + payload), ident, 1) + payload
        try:
            s.sendto(packet, (dst, 0))
        except OSError as exc:
            return _errno_outcome(exc.errno)
        deadline = time.monotonic() + timeout
        while _wait(s, "r", deadline, monitors):
            data = s.recv(65535)
            ihl = (data[0] & 0x0F) * 4
            typ, code = data[ihl], data[ihl + 1]
            if typ == 0 and struct.unpack("!H", data[ihl + 4 : ihl + 6])[0] == ident:
                return "reply", "echo reply"
            if typ == 3:
                inner = data[ihl + 8 :]
                iihl = (inner[0] & 0x0F) * 4 if inner else 0
                if len(inner) >= iihl + 6 and struct.unpack("!H", inner[iihl + 4 : iihl + 6])[0] != ident:
                    continue
                src = socket.inet_ntoa(data[12:16])
                if code == 4:
                    mtu = struct.unpack("!H", data[ihl + 6 : ihl + 8])[0]
                    return "frag-needed", "ICMP fragmentation needed from %s (next-hop MTU %d)" % (src, mtu)
                if code == 3:
                    return "refused", "ICMP port unreachable from %s" % src
                return "unreachable", "ICMP destination unreachable (code %d) from %s" % (code, src)
        return "timeout", "no echo reply in %.1f s" % timeout
    finally:
        s.close()


# ---- the whole trace ------------------------------------------------------------


def trace(lab, client, source, dest, namespace="default", proto="tcp", size=None, sport=None, timeout=3.0, raw=None):
    """The contract's document (podnet/cli/trace_cmd.py prints it); `raw`, a
    dict, receives the monitors' lines per netns (for recording tests)."""
    t0 = time.monotonic()
    cl = tg.Cluster(lab, client)
    src = tg.resolve(cl, source, namespace, proto)
    if src.kind in ("service", "ip") or not src.netns:
        raise tg.TargetError("FROM %s is a %s: a trace starts at a pod, a node or 'external'" % (source, src.kind))
    dst = tg.resolve(cl, dest, namespace, proto, source=src)
    if proto != "icmp" and dst.port is None:
        raise tg.TargetError("TO %s: give a port (TO:PORT)" % dest)
    sport = sport or random.randint(33000, 60999)
    places = _path_namespaces(cl, src, dst)
    stale = _stale_conntrack(cl, src, dst, proto, sport)
    eps = sorted(cl.endpoints(dst.obj)) if dst.kind == "service" and dst.obj is not None else []
    monitors: list[nfttrace.Monitor] = []
    installed: list[str] = []
    by_ns: dict[str, list[str]] = {}
    try:
        monitors = nfttrace.start_monitors(list(places), sport)
        with ThreadPoolExecutor(max_workers=8) as pool:
            installed = list(places)
            list(pool.map(lambda ns: nfttrace.install(ns, sport, proto, eps), places))
        nfttrace.wait_ready(monitors, lambda ns: nfttrace.install(ns, sport, proto, eps))
        assert src.netns is not None
        if proto == "tcp":
            outcome = probe_tcp(src.netns, dst.ip, dst.port, sport, timeout, monitors)
        elif proto == "udp":
            outcome = probe_udp(src.netns, dst.ip, dst.port, sport, timeout, monitors, size)
        else:
            outcome = probe_icmp(src.netns, dst.ip, sport, timeout, monitors, size)
        by_ns = nfttrace.collect(monitors)
    finally:
        for m in monitors:
            m.stop()
        if installed:
            with ThreadPoolExecutor(max_workers=8) as pool:
                list(pool.map(lambda ns: nfttrace.remove(ns, sport), installed))
    probe = tw.Probe(proto, sport, src.ip, dst.ip, dst.port, outcome[0], outcome[1], size)
    ctx = tw.Context(
        source_ns=src.netns,
        places=places,
        node_ips={ip: n for n, ip in cl.node_ip.items()},
        pod_cidrs=cl.pod_cidrs(),
        services=cl.fronts(),
        routing=cl.doc.get("routing", {}).get("mode", "vxlan"),
        stale_conntrack=stale,
        ready_endpoints=len(eps) if dst.kind == "service" else None,
        dest_ns=dst.netns if dst.kind in ("node", "external") else None,
    )
    if ctx.routing == "bgp":
        ctx.bird_down = [n for n, ns in cl.node_ns.items() if not lookup.running_in(ns, "bird")]
    if raw is not None:
        raw.update(by_ns)
    events = {ns: tw.parse(ns, lines) for ns, lines in by_ns.items()}
    story = tw.explain(probe, events, ctx, KernelLook())
    return {
        "from": src.as_json(),
        "to": dst.as_json(with_port=True),
        "protocol": proto,
        "verdict": story["verdict"],
        "reason": story["reason"],
        "culprit": story["culprit"],
        "endpoint": story["endpoint"],
        "hops": story["hops"],
        "elapsed": round(time.monotonic() - t0, 2),
    }
