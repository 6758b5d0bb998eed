"""Pure parsers of what podnet.kernel.flowsrc reads: conntrack events and
NFLOG packets (NETLINK_NETFILTER messages), into plain dicts.

Layouts from linux/netfilter/nfnetlink_conntrack.h and nfnetlink_log.h:
every message is nlmsghdr (16 bytes) + nfgenmsg (4 bytes) + attributes
(TLV, 4-byte aligned, nested ones flagged NLA_F_NESTED).
"""

import ipaddress
import struct

NLMSG_HDR = struct.Struct("=IHHII")
NLA_TYPE_MASK = 0x3FFF
NLM_F_CREATE, NLM_F_EXCL = 0x400, 0x200
NFNL_SUBSYS_CTNETLINK, NFNL_SUBSYS_ULOG = 1, 4
IPCTNL_MSG_CT_NEW, IPCTNL_MSG_CT_DELETE = 0, 2
NFULNL_MSG_PACKET = 0
# conntrack attributes
CTA_TUPLE_ORIG, CTA_TUPLE_REPLY, CTA_STATUS, CTA_PROTOINFO = 1, 2, 3, 4
CTA_COUNTERS_ORIG, CTA_COUNTERS_REPLY, CTA_ID = 9, 10, 12
CTA_TUPLE_IP, CTA_TUPLE_PROTO = 1, 2
CTA_IP_V4_SRC, CTA_IP_V4_DST = 1, 2
CTA_PROTO_NUM, CTA_PROTO_SRC_PORT, CTA_PROTO_DST_PORT = 1, 2, 3
CTA_COUNTERS_PACKETS, CTA_COUNTERS_BYTES = 1, 2
CTA_PROTOINFO_TCP, CTA_PROTOINFO_TCP_STATE = 1, 1
TCP_STATES = ["none", "syn_sent", "syn_recv", "established", "fin_wait", "close_wait", "last_ack", "time_wait", "close"]
# nflog attributes
NFULA_PACKET_HDR, NFULA_TIMESTAMP, NFULA_IFINDEX_INDEV, NFULA_IFINDEX_OUTDEV = 1, 3, 4, 5
NFULA_PAYLOAD, NFULA_PREFIX = 9, 10
PROTOS = {1: "icmp", 6: "tcp", 17: "udp", 132: "sctp"}


def messages(data):
    """(type, flags, payload after nlmsghdr) of each message in a datagram."""
    off = 0
    while off + 16 <= len(data):
        length, mtype, flags, _seq, _pid = NLMSG_HDR.unpack_from(data, off)
        if length < 16 or off + length > len(data):
            break
        yield mtype, flags, data[off + 16 : off + length]
        off += (length + 3) & ~3


def attrs(buf, off=0):
    """{type: bytes} of a run of netlink attributes (the last of a type wins)."""
    out = {}
    while off + 4 <= len(buf):
        length, kind = struct.unpack_from("=HH", buf, off)
        if length < 4:
            break
        out[kind & NLA_TYPE_MASK] = buf[off + 4 : off + length]
        off += (length + 3) & ~3
    return out


def _tuple(buf):
    a = attrs(buf)
    ip = attrs(a.get(CTA_TUPLE_IP, b""))
    proto = attrs(a.get(CTA_TUPLE_PROTO, b""))
    num = proto.get(CTA_PROTO_NUM, b"\0")[0]
    out = {
        "src": str(ipaddress.IPv4Address(ip[CTA_IP_V4_SRC])) if CTA_IP_V4_SRC in ip else None,
        "dst": str(ipaddress.IPv4Address(ip[CTA_IP_V4_DST])) if CTA_IP_V4_DST in ip else None,
        "proto": PROTOS.get(num, str(num)),
        "sport": None,
        "dport": None,
    }
    if CTA_PROTO_SRC_PORT in proto:
        out["sport"] = struct.unpack(">H", proto[CTA_PROTO_SRC_PORT])[0]
        out["dport"] = struct.unpack(">H", proto[CTA_PROTO_DST_PORT])[0]
    return out


def _counters(buf):
    a = attrs(buf)
    if CTA_COUNTERS_PACKETS not in a:
        return None
    return struct.unpack(">Q", a[CTA_COUNTERS_PACKETS])[0], struct.unpack(">Q", a[CTA_COUNTERS_BYTES])[0]


def conntrack_event(mtype, flags, payload):
    """A conntrack event as {event: new|update|destroy, id, orig, reply,
    tcp_state, orig_counters, reply_counters}, or None (not IPv4 conntrack)."""
    if mtype >> 8 != NFNL_SUBSYS_CTNETLINK or len(payload) < 4 or payload[0] != 2:  # AF_INET
        return None
    kind = mtype & 0xFF
    if kind == IPCTNL_MSG_CT_DELETE:
        event = "destroy"
    elif kind == IPCTNL_MSG_CT_NEW:
        event = "new" if flags & (NLM_F_CREATE | NLM_F_EXCL) else "update"
    else:
        return None
    a = attrs(payload, 4)
    if CTA_TUPLE_ORIG not in a:
        return None
    ev = {
        "event": event,
        "id": struct.unpack(">I", a[CTA_ID])[0] if CTA_ID in a else None,
        "orig": _tuple(a[CTA_TUPLE_ORIG]),
        "reply": _tuple(a[CTA_TUPLE_REPLY]) if CTA_TUPLE_REPLY in a else None,
        "tcp_state": None,
        "orig_counters": _counters(a[CTA_COUNTERS_ORIG]) if CTA_COUNTERS_ORIG in a else None,
        "reply_counters": _counters(a[CTA_COUNTERS_REPLY]) if CTA_COUNTERS_REPLY in a else None,
    }
    if CTA_PROTOINFO in a:
        tcp = attrs(attrs(a[CTA_PROTOINFO]).get(CTA_PROTOINFO_TCP, b""))
        if CTA_PROTOINFO_TCP_STATE in tcp:
            s = tcp[CTA_PROTOINFO_TCP_STATE][0]
            ev["tcp_state"] = TCP_STATES[s] if s < len(TCP_STATES) else str(s)
    return ev


def ip_packet(payload):
    """{src, dst, proto, sport, dport, length} of an IPv4 packet's headers, or None."""
    if len(payload) < 20 or payload[0] >> 4 != 4:
        return None
    ihl = (payload[0] & 0x0F) * 4
    total = struct.unpack_from(">H", payload, 2)[0]
    num = payload[9]
    out = {
        "src": str(ipaddress.IPv4Address(payload[12:16])),
        "dst": str(ipaddress.IPv4Address(payload[16:20])),
        "proto": PROTOS.get(num, str(num)),
        "sport": None,
        "dport": None,
        "length": total,
    }
    if num in (6, 17, 132) and len(payload) >= ihl + 4:
        out["sport"], out["dport"] = struct.unpack_from(">HH", payload, ihl)
    return out


def nflog_packet(mtype, payload):
    """An NFLOG packet as {prefix, ts, packet: ip_packet(...)}, or None."""
    if mtype >> 8 != NFNL_SUBSYS_ULOG or mtype & 0xFF != NFULNL_MSG_PACKET or len(payload) < 4:
        return None
    a = attrs(payload, 4)
    pkt = ip_packet(a.get(NFULA_PAYLOAD, b""))
    if pkt is None:
        return None
    prefix = a.get(NFULA_PREFIX, b"").split(b"\0", 1)[0].decode("utf-8", "replace")
    ts = None
    if NFULA_TIMESTAMP in a and len(a[NFULA_TIMESTAMP]) >= 16:
        sec, usec = struct.unpack(">QQ", a[NFULA_TIMESTAMP][:16])
        ts = sec + usec / 1e6
    return {"prefix": prefix, "ts": ts, "packet": pkt}
