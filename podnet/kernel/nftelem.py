"""Add and delete nftables map elements with one netlink batch, without `nft`.

Why: the CNI plugin's ipMasq writes one map element per pod address on ADD
and deletes it on DEL. Through `nft -f` each costs a fork and exec plus nft
reading the table before it writes: 10-20 ms, as much as the rest of the DEL
together. The kernel needs well under a millisecond for the same transaction.

What is covered, and nothing more: elements of a map keyed by an IPv4 or IPv6
address whose value is `jump <chain>` (masq.py's `masq4`/`masq6`), with an
nft-style comment so `nft list` and masq.elements() read them back exactly as
if nft had written them. Everything is one transaction (BATCH_BEGIN ...
BATCH_END): all or nothing, as `nft -f`. A refused batch raises ElementError
with the errno, so the caller can fall back to nft, which reports in its own
words (ENOENT: the table, map or chain is missing).

Builders (`add_message`, `delete_message`, `batch`, `acks`) are pure; `apply`
is the only function that reaches the kernel. A caller in its own namespace
reuses a kept socket (see _Kept: closing one after a delete costs 10-25 ms).
"""

import errno as E
import ipaddress
import os
import socket
import struct
import threading

from podnet.kernel.netns import entered

NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFNL_MSG_BATCH_BEGIN, NFNL_MSG_BATCH_END = 0x10, 0x11
NFT_MSG_NEWSETELEM, NFT_MSG_DELSETELEM = 12, 14
NLMSG_ERROR = 2
NLM_F_REQUEST, NLM_F_ACK, NLM_F_CREATE = 0x1, 0x4, 0x400
NLA_F_NESTED = 0x8000
NFPROTO = {"inet": 1, "ip": 2, "ip6": 10}
# nf_tables attribute numbers (linux/netfilter/nf_tables.h)
LIST_TABLE, LIST_SET, LIST_ELEMENTS, LIST_ELEM = 1, 2, 3, 1
ELEM_KEY, ELEM_DATA, ELEM_USERDATA = 1, 2, 6
DATA_VALUE, DATA_VERDICT = 1, 2
VERDICT_CODE, VERDICT_CHAIN = 1, 2
NFT_JUMP = -3
UDATA_ELEM_COMMENT = 0  # libnftnl's NFTNL_UDATA_SET_ELEM_COMMENT, as nft writes it
_HDR = struct.Struct("=LHHLL")


class ElementError(OSError):
    """The kernel refused the batch (nothing changed); errno says why."""


def attr(kind, payload):
    data = struct.pack("=HH", 4 + len(payload), kind) + payload
    return data + b"\0" * (-len(data) % 4)


def nest(kind, *parts):
    return attr(kind | NLA_F_NESTED, b"".join(parts))


def string(kind, text):
    return attr(kind, text.encode() + b"\0")


def comment_userdata(text):
    """nft's element comment: a libnftnl udata TLV (type, length, NUL-ended
    string); nft refuses comments over 128 bytes, so one length byte holds it."""
    raw = text.encode() + b"\0"
    if len(raw) > 255:
        raise ValueError("element comment too long (%d bytes): %r" % (len(raw), text))
    return struct.pack("=BB", UDATA_ELEM_COMMENT, len(raw)) + raw


def _key(ip):
    return nest(ELEM_KEY, attr(DATA_VALUE, ipaddress.ip_address(ip).packed))


def _head(family, table, set_name):
    if family not in NFPROTO:
        raise ValueError("nftables family %r: expected one of %s" % (family, ", ".join(sorted(NFPROTO))))
    return NFPROTO[family], string(LIST_TABLE, table) + string(LIST_SET, set_name)


def add_message(family, table, set_name, elements):
    """elements: [(ip, chain, comment or None)] -> (type, flags, family, body).

    NLM_F_CREATE without EXCL, as nft's `add element`: re-adding an identical
    element is no error."""
    fam, head = _head(family, table, set_name)
    items = []
    for ip, chain, comment in elements:
        verdict = nest(
            DATA_VERDICT,
            attr(VERDICT_CODE, struct.pack(">i", NFT_JUMP)),
            string(VERDICT_CHAIN, chain),
        )
        parts = [_key(ip), nest(ELEM_DATA, verdict)]
        if comment:
            parts.append(attr(ELEM_USERDATA, comment_userdata(comment)))
        items.append(nest(LIST_ELEM, *parts))
    return NFT_MSG_NEWSETELEM, NLM_F_CREATE, fam, head + nest(LIST_ELEMENTS, *items)


def delete_message(family, table, set_name, ips):
    fam, head = _head(family, table, set_name)
    items = [nest(LIST_ELEM, _key(ip)) for ip in ips]
    return NFT_MSG_DELSETELEM, 0, fam, head + nest(LIST_ELEMENTS, *items)


def _nlmsg(mtype, flags, seq, family, res_id, body):
    nfgen = struct.pack("=BBH", family, 0, socket.htons(res_id))
    return _HDR.pack(16 + len(nfgen) + len(body), mtype, flags, seq, 0) + nfgen + body


def batch(messages, seq):
    """The bytes of one transaction; every message asks for an ACK. Returns
    (data, [seq of each message])."""
    out = [_nlmsg(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, seq, socket.AF_UNSPEC, NFNL_SUBSYS_NFTABLES, b"")]
    seqs = []
    for i, (kind, flags, family, body) in enumerate(messages, start=1):
        mtype = (NFNL_SUBSYS_NFTABLES << 8) | kind
        out.append(_nlmsg(mtype, NLM_F_REQUEST | NLM_F_ACK | flags, seq + i, family, 0, body))
        seqs.append(seq + i)
    out.append(
        _nlmsg(NFNL_MSG_BATCH_END, NLM_F_REQUEST, seq + len(messages) + 1, socket.AF_UNSPEC, NFNL_SUBSYS_NFTABLES, b"")
    )
    return b"".join(out), seqs


def acks(data):
    """{seq: errno (0 = ok)} of the NLMSG_ERROR messages in one datagram."""
    out = {}
    pos = 0
    while pos + 16 <= len(data):
        length, mtype, _, seq, _ = _HDR.unpack_from(data, pos)
        if length < 16:
            break
        if mtype == NLMSG_ERROR and pos + 20 <= len(data):
            out[seq] = -struct.unpack_from("=i", data, pos + 16)[0]
        pos += (length + 3) & ~3
    return out


def _open(ns):
    with entered(ns):
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    try:
        # The kernel answers within the call; the timeout only guards a lost ACK.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("@ll", 5, 0))
        sock.bind((0, 0))
    except OSError:
        sock.close()
        raise
    return sock


class _Kept:
    """Sockets kept open, one per namespace, for callers in their own thread's
    namespace (ns=None: the CNI daemon's case). Why: closing an nf_tables
    socket after a delete waits for the kernel to finish destroying what was
    deleted (an RCU grace period, 10-25 ms measured here), while the delete
    itself takes ~0.02 ms. A socket pins its namespace, so only a few are
    kept; past that a call opens and closes its own."""

    LIMIT = 4

    def __init__(self):
        self.lock = threading.Lock()
        self.socks = {}  # (st_dev, st_ino) of the netns -> (socket, its lock)

    def get(self):
        st = os.stat("/proc/thread-self/ns/net")
        key = (st.st_dev, st.st_ino)
        with self.lock:
            entry = self.socks.get(key)
            if entry is None and len(self.socks) < self.LIMIT:
                entry = self.socks[key] = (_open(None), threading.Lock())
            return key, entry

    def close_all(self):
        """Close every kept socket (each pins its namespace)."""
        with self.lock:
            socks, self.socks = self.socks, {}
        for sock, _ in socks.values():
            sock.close()

    def drop(self, key, sock):
        with self.lock:
            if self.socks.get(key, (None,))[0] is sock:
                del self.socks[key]
        sock.close()


KEPT = _Kept()


def _transact(sock, messages, what):
    seq = int.from_bytes(os.urandom(2), "big") << 8  # any start; ACKs are matched by it
    data, seqs = batch(messages, seq)
    sock.send(data)
    waiting, first = set(seqs), 0
    while waiting:
        got = acks(sock.recv(65536))  # older ACKs (another seq) are skipped
        for s, code in got.items():
            if s in waiting:
                waiting.discard(s)
                first = first or code
    if first:
        raise ElementError(first, "%s: %s" % (what, os.strerror(first)))


def apply(messages, ns=None, what="nftables elements"):
    """Send messages as one transaction in `ns`; raise ElementError on refusal."""
    if not messages:
        return
    key, entry = KEPT.get() if ns is None else (None, None)
    try:
        if entry is not None:
            sock, lock = entry
            with lock:
                try:
                    _transact(sock, messages, what)
                except ElementError:
                    raise
                except OSError:
                    KEPT.drop(key, sock)  # a socket in doubt is not reused
                    raise
            return
        sock = _open(ns)
        try:
            _transact(sock, messages, what)
        finally:
            sock.close()
    except ElementError:
        raise
    except OSError as exc:
        raise ElementError(exc.errno or E.EIO, "%s: %s" % (what, exc)) from None
