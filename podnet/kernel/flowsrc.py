"""The flow log's kernel sources: conntrack events and NFLOG packets over
NETLINK_NETFILTER, each a socket bound to a node's network namespace.

Only sockets and bytes here; podnet.flows.netlink parses what they return.
A netlink socket stays in the namespace it was created in, so each is opened
inside `entered(ns)` and read from any thread afterwards.

- conntrack: multicast groups NEW and DESTROY, with nf_conntrack_acct=1 in the node namespace so a DESTROY carries
  packets and bytes (set per namespace, never in the root one).
- NFLOG: one group bound with NFULNL_CFG_CMD_BIND and COPY_PACKET of the
  first bytes (the IP and L4 headers are what the parser needs); podnet's drop
  and reject rules log to it (`log group N prefix ...`).
"""

import errno
import os
import socket
import struct

from podnet.kernel.links import write_sysctl
from podnet.kernel.netns import Netns, entered, run

NETLINK_NETFILTER = 12
NFNLGRP_CONNTRACK_NEW, NFNLGRP_CONNTRACK_UPDATE, NFNLGRP_CONNTRACK_DESTROY = 1, 2, 3
NFNL_SUBSYS_ULOG = 4
NFULNL_MSG_CONFIG = 1
NFULA_CFG_CMD, NFULA_CFG_MODE = 1, 2
NFULNL_CFG_CMD_BIND = 1
NFULNL_COPY_PACKET = 2
NLM_F_REQUEST, NLM_F_ACK = 1, 4
SO_RCVBUFFORCE = 33  # not in Python's socket module
SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, NETLINK_NO_ENOBUFS = 270, 1, 5
RCVBUF = 4 << 20  # bursts of short connections: a lost event is a lost flow
NFLOG_GROUP = 100  # podnet's drop and reject rules log here (`log group 100`)
COPY_RANGE = 96  # IPv4 header with options + TCP/UDP/ICMP header


class FlowSourceError(OSError):
    pass


def _ns(ns_name):
    return Netns(ns_name) if ns_name else None


def _socket(ns_name, what):
    ns = _ns(ns_name)
    try:
        with entered(ns):
            s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    except OSError as exc:
        raise FlowSourceError(exc.errno, "open %s socket in %s: %s" % (what, ns_name, exc.strerror)) from exc
    finally:
        if ns is not None:
            ns.close()
    try:
        s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
    except OSError:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    s.bind((0, 0))
    return s


def enable_acct(ns_name):
    """Packet and byte counters on every conntrack entry of this namespace."""
    ns = _ns(ns_name)
    try:
        write_sysctl(ns, "net.netfilter.nf_conntrack_acct", 1)
    finally:
        if ns is not None:
            ns.close()


def open_conntrack(ns_name):
    """A socket that receives conntrack NEW and DESTROY events of `ns_name`
    (not UPDATE: every TCP state change is one, twice the events for little)."""
    s = _socket(ns_name, "conntrack events")
    for group in (NFNLGRP_CONNTRACK_NEW, NFNLGRP_CONNTRACK_DESTROY):
        s.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, group)
    return s


def _attr(kind, payload):
    pad = (4 - len(payload) % 4) % 4
    return struct.pack("=HH", 4 + len(payload), kind) + payload + b"\0" * pad


def _config(s, group, attrs, what, seq):
    # nfgenmsg: family AF_UNSPEC, version 0, res_id = the group (big endian)
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(group)) + b"".join(attrs)
    msg = struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG,
                      NLM_F_REQUEST | NLM_F_ACK, seq, 0) + body  # fmt: skip
    s.send(msg)
    data = s.recv(65536)
    if len(data) >= 20:
        _, mtype, _, _, _ = struct.unpack_from("=IHHII", data)
        if mtype == 2:  # NLMSG_ERROR
            (err,) = struct.unpack_from("=i", data, 16)
            if err:
                raise FlowSourceError(-err, "nflog %s group %d: %s" % (what, group, os.strerror(-err)))


def open_nflog(ns_name, group):
    """A socket that receives the packets `log group <group>` rules of `ns_name` copy."""
    s = _socket(ns_name, "nflog")
    try:
        _config(s, group, [_attr(NFULA_CFG_CMD, struct.pack("=B", NFULNL_CFG_CMD_BIND))], "bind", 1)
        mode = struct.pack(">IBB", COPY_RANGE, NFULNL_COPY_PACKET, 0)
        _config(s, group, [_attr(NFULA_CFG_MODE, mode)], "copy mode", 2)
    except Exception:
        s.close()
        raise
    return s


def receive(s, timeout=1.0):
    """One datagram (several netlink messages), or b"" after `timeout`
    seconds. ENOBUFS (the kernel dropped events: a burst too big for the
    buffer) is returned as None so the caller can count it."""
    s.settimeout(timeout)
    try:
        return s.recv(1 << 18)
    except TimeoutError:
        return b""
    except OSError as exc:
        if exc.errno == errno.ENOBUFS:
            return None
        raise


def end_entries(ns_name, src_ip):
    """Delete the conntrack entries a source opened (a test's way to end
    connections now rather than after TIME_WAIT or the UDP timeout): each
    deletion is a DESTROY event with the entry's counters."""
    ns = _ns(ns_name)
    try:
        res = run(["conntrack", "-D", "-s", src_ip], ns=ns, check=False)
    finally:
        if ns is not None:
            ns.close()
    if res.returncode not in (0, 1):
        raise FlowSourceError(0, "conntrack delete -s %s in %s: %s" % (src_ip, ns_name, res.stderr.strip()))


def connect(ns_name, addr, port, timeout):
    """A TCP socket connected to addr:port from inside `ns_name` (the agents'
    endpoints listen on node addresses only reachable there)."""
    ns = _ns(ns_name)
    try:
        with entered(ns):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    finally:
        if ns is not None:
            ns.close()
    s.settimeout(timeout)
    try:
        s.connect((addr, port))
    except OSError as exc:
        s.close()
        raise FlowSourceError(exc.errno or 0, "connect to %s:%d in %s: %s" % (addr, port, ns_name, exc)) from exc
    return s
