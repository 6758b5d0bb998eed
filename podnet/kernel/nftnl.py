"""A small `nft -f` script as one nf_tables netlink batch, without `nft`.

Why: nft 1.0.6 reads the whole ruleset's chains and sets before any command
(about 70 ms at 10,000 Services, most of a one-Service change); the kernel
itself needs well under a millisecond for the same transaction. The proxy
writes full syncs with `nft -f` and its partial syncs through here.

`apply(script)` compiles each line (nftexpr.py for rule bodies) into a
netlink message, wraps them in BATCH_BEGIN/BATCH_END (one transaction: all
or nothing, as `nft -f`), sends the batch and reads the kernel's answer
(an error for each failing message, an ACK for the last).
A script it cannot compile is handed to `nft -f` whole; a batch the kernel
refuses changed nothing, and is also handed to `nft -f` (which reports the
error in nft's words if it is a real one). `apply` returns how it went so
the caller can count and, after a refused batch, distrust its own state.

Lines understood: add|flush|delete chain, add rule, add|delete element,
delete set, and add set of the one declaration a partial sync creates (the
affinity sets: `{ type ipv4_addr; flags dynamic,timeout; timeout Ns; }`,
sent with the user data nft 1.0.6 attaches, so it lists the same); `ip`
family only.

The framing (encode, read_acks) and the sockets (Channel: one per
namespace; Kept: kept per namespace) also carry nftelem.py's element
batches for the CNI daemon: one nf_tables netlink layer for both.
"""

import errno
import os
import re
import socket
import struct
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from podnet.kernel import nft
from podnet.kernel.netns import entered
from podnet.kernel.nftexpr import Unsupported, attr, compile_rule, element_key, nest, string, u32, verdict

NETLINK_NETFILTER = 12
SOL_NETLINK, NETLINK_CAP_ACK = 270, 10
NFNL_SUBSYS_NFTABLES = 10
NFNL_MSG_BATCH_BEGIN, NFNL_MSG_BATCH_END = 0x10, 0x11
NLMSG_ERROR = 2
NLM_F_REQUEST, NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE = 0x1, 0x4, 0x800, 0x400
NEWCHAIN, DELCHAIN, NEWRULE, DELRULE, NEWSET, DELSET, NEWSETELEM, DELSETELEM = 3, 5, 6, 8, 9, 11, 12, 14
AFFINITY_SET = re.compile(r"\{ type ipv4_addr; flags dynamic,timeout; timeout (\d+)s; \}")
NFT_SET_TIMEOUT, NFT_SET_EVAL = 0x10, 0x20  # `timeout`, `dynamic`
TYPE_IPADDR = 7  # nft's datatype number for ipv4_addr
# nft's set user data: NFTNL_UDATA_SET_KEYBYTEORDER = big endian (TLV: type 0, length 4, host-order u32 2)
KEY_BIG_ENDIAN = struct.pack("=BBI", 0, 4, 2)
FAMILIES = {"ip": socket.AF_INET}


@dataclass(frozen=True)
class Message:
    """One nf_tables request: its type, extra netlink flags, family, the
    attributes after nfgenmsg, and the script line it came from (for errors)."""

    kind: int
    flags: int
    family: int
    body: bytes
    line: str


class Transport(Protocol):
    """Where batches go: the kernel (NetlinkTransport) or a FakeTransport."""

    def send(self, messages: Sequence[Message]) -> None:
        """Commit the messages as one transaction or raise BatchError."""


class BatchError(OSError):
    """The kernel refused a batch (nothing of it was applied)."""

    def __init__(self, err: int, line: str):
        super().__init__(err, "nf_tables batch refused at %r: %s" % (line, os.strerror(err)))
        self.line = line


def _split(line: str) -> tuple[str, str, int, str, str, str]:
    """`add rule ip T C body` -> (verb, object, family, table, name, rest)."""
    w = line.split(None, 5)
    if len(w) < 5 or w[2] not in FAMILIES:
        raise Unsupported("line %r" % line)
    return w[0], w[1], FAMILIES[w[2]], w[3], w[4], w[5] if len(w) > 5 else ""


def _element(rest: str, with_value: bool) -> bytes:
    """`{ key : verdict }` -> one NFTA_LIST_ELEM of a set element list."""
    text = rest.strip()
    if not (text.startswith("{") and text.endswith("}")):
        raise Unsupported("element %r" % rest)
    key, sep, val = text[1:-1].strip().partition(" : ")
    parts = nest(1, attr(1, element_key(key)))  # NFTA_SET_ELEM_KEY > NFTA_DATA_VALUE
    if sep and with_value:
        parts += verdict(2, val.strip())  # NFTA_SET_ELEM_DATA
    return nest(1, parts)


def compile_script(script: str) -> list[Message]:
    """The script's lines as messages, in order; Unsupported for a line
    outside the forms listed at the top."""
    out = []
    for line in script.splitlines():
        if not line.strip():
            continue
        verb, obj, fam, table, name, rest = _split(line)
        if obj == "chain" and not rest:
            head = string(1, table) + string(3, name)  # NFTA_CHAIN_TABLE, NFTA_CHAIN_NAME
            if verb == "add":
                out.append(Message(NEWCHAIN, NLM_F_CREATE, fam, head, line))
            elif verb == "delete":
                out.append(Message(DELCHAIN, 0, fam, head, line))
            elif verb == "flush":  # DELRULE without a handle: every rule of the chain
                out.append(Message(DELRULE, 0, fam, string(1, table) + string(2, name), line))
            else:
                raise Unsupported("line %r" % line)
        elif obj == "rule" and verb == "add" and rest:
            exprs = nest(4, *compile_rule(rest))  # NFTA_RULE_EXPRESSIONS
            out.append(
                Message(NEWRULE, NLM_F_CREATE | NLM_F_APPEND, fam, string(1, table) + string(2, name) + exprs, line)
            )
        elif obj == "element" and verb in ("add", "delete"):
            els = nest(3, _element(rest, verb == "add"))  # NFTA_SET_ELEM_LIST_ELEMENTS
            head = string(1, table) + string(2, name)  # NFTA_SET_ELEM_LIST_TABLE, _SET
            kind, flags = (NEWSETELEM, NLM_F_CREATE) if verb == "add" else (DELSETELEM, 0)
            out.append(Message(kind, flags, fam, head + els, line))
        elif obj == "set" and verb == "add" and (decl := AFFINITY_SET.fullmatch(rest.strip())):
            timeout_ms = int(decl.group(1)) * 1000
            body = string(1, table) + string(2, name)  # NFTA_SET_TABLE, NFTA_SET_NAME
            body += u32(3, NFT_SET_TIMEOUT | NFT_SET_EVAL) + u32(4, TYPE_IPADDR) + u32(5, 4)  # flags, key type, len
            body += u32(10, len(out) + 1) + attr(11, struct.pack(">Q", timeout_ms)) + attr(13, KEY_BIG_ENDIAN)
            out.append(Message(NEWSET, NLM_F_CREATE, fam, body, line))  # (ID, TIMEOUT, USERDATA above)
        elif obj == "set" and verb == "delete" and not rest:
            out.append(Message(DELSET, 0, fam, string(1, table) + string(2, name), line))
        else:
            raise Unsupported("line %r" % line)
    return out


def encode(messages: Sequence[Message], seq: int, ack_each: bool = False) -> bytes:
    """BATCH_BEGIN, the messages, BATCH_END. Only the last message asks for
    an ACK: the kernel reports every failing message anyway, and one ACK per
    message (an skb each) would overflow the socket's receive buffer at a
    few hundred messages. ack_each: every message asks (nftelem's few
    messages, framed as before)."""

    def msg(kind: int, flags: int, family: int, res_id: int, body: bytes, n: int) -> bytes:
        nfgen = struct.pack("=BBH", family, 0, socket.htons(res_id))
        return struct.pack("=IHHII", 16 + 4 + len(body), kind, flags, n, 0) + nfgen + body

    parts = [msg(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, 0, NFNL_SUBSYS_NFTABLES, b"", seq)]
    for i, m in enumerate(messages):
        kind = NFNL_SUBSYS_NFTABLES << 8 | m.kind
        ack = NLM_F_ACK if ack_each or i == len(messages) - 1 else 0
        parts.append(msg(kind, NLM_F_REQUEST | ack | m.flags, m.family, 0, m.body, seq + 1 + i))
    parts.append(msg(NFNL_MSG_BATCH_END, NLM_F_REQUEST, 0, NFNL_SUBSYS_NFTABLES, b"", seq + 1 + len(messages)))
    return b"".join(parts)


def read_acks(data: bytes) -> dict[int, int]:
    """NLMSG_ERROR replies in `data` -> {seq: errno (0 = ACK)}."""
    out, off = {}, 0
    while off + 16 <= len(data):
        length, kind, _flags, seq, _pid = struct.unpack_from("=IHHII", data, off)
        if length < 16:
            break
        if kind == NLMSG_ERROR and off + 20 <= len(data):
            out[seq] = -struct.unpack_from("=i", data, off + 16)[0]
        off += (length + 3) & ~3
    return out


def _netns_key() -> tuple[int, int]:
    st = os.stat("/proc/thread-self/ns/net")
    return st.st_dev, st.st_ino


class Channel:
    """One NETLINK_NETFILTER socket, opened in `ns` (None: the calling
    thread's namespace, which it stays bound to), one batch at a time.
    A socket error marks it `broken`: a socket in doubt is not reused."""

    def __init__(self, ns: object = None) -> None:
        with entered(ns):
            s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            s.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)  # errors without a copy of the request
            s.bind((0, 0))
        except OSError:
            s.close()
            raise
        self.sock, self.lock, self.seq, self.broken = s, threading.Lock(), 1, False

    def close(self) -> None:
        with self.lock:  # after a batch in flight on another thread
            self.sock.close()

    def send(self, messages: Sequence[Message], ack_each: bool = False) -> None:
        """Commit the messages as one transaction or raise BatchError (the
        kernel refused it: nothing changed) or OSError (the socket failed)."""
        if not messages:
            return
        replies: dict[int, int] = {}
        with self.lock:
            seq, self.seq = self.seq, self.seq + len(messages) + 2
            last = seq + len(messages)
            try:
                self.sock.sendall(encode(messages, seq, ack_each))
                # nfnetlink handles the batch inside sendmsg: every reply is queued by now
                while last not in replies:
                    try:
                        data = self.sock.recv(1 << 20, socket.MSG_DONTWAIT)
                    except BlockingIOError:
                        break
                    # (a reply to an earlier batch, left unread after its error, is not ours)
                    replies.update((k, v) for k, v in read_acks(data).items() if seq < k <= last)
            except OSError:
                self.broken = True
                raise
        for i, m in enumerate(messages):
            err = replies.get(seq + 1 + i)
            if err:
                raise BatchError(err, m.line)
        if last not in replies:
            raise BatchError(errno.EPROTO, "no acknowledgement for the batch ending %r" % messages[-1].line)


class Kept:
    """Channels kept open, one per network namespace of the calling threads.
    Why: closing an nf_tables socket costs the kernel 10-25 ms (it waits for
    an RCU grace period to destroy what the batches deleted), more than the
    batch itself. A socket pins its namespace, so at most `limit` are kept;
    a thread from one more namespace either evicts the oldest (evict: an
    open socket would keep a deleted namespace alive) or uses a socket of
    its own for the one batch."""

    def __init__(self, limit: int, evict: bool) -> None:
        self.limit, self.evict = limit, evict
        self.lock = threading.Lock()
        self.channels: dict[tuple[int, int], Channel] = {}

    def send(self, messages: Sequence[Message], ack_each: bool = False) -> None:
        if not messages:
            return
        key, stale, own = _netns_key(), [], None
        with self.lock:
            chan = self.channels.get(key)
            if chan is None:
                if self.evict and len(self.channels) >= self.limit:
                    stale.append(self.channels.pop(next(iter(self.channels))))  # the oldest
                if len(self.channels) < self.limit:
                    chan = self.channels[key] = Channel()
                else:
                    chan = own = Channel()
        for old in stale:
            old.close()
        try:
            chan.send(messages, ack_each)
        finally:
            if own is not None:
                own.close()
            elif chan.broken:
                with self.lock:
                    if self.channels.get(key) is chan:
                        del self.channels[key]
                chan.close()

    def close_all(self) -> None:
        """Close every kept socket (each pins its namespace)."""
        with self.lock:
            channels, self.channels = self.channels, {}
        for chan in channels.values():
            chan.close()

    def __len__(self) -> int:
        return len(self.channels)


class NetlinkTransport:
    """The kernel, through a NETLINK_NETFILTER socket in the calling
    thread's network namespace, kept between batches (see Kept). One is
    kept: a thread that comes from another namespace gets a new one and the
    old one is closed."""

    def __init__(self) -> None:
        self.kept = Kept(limit=1, evict=True)

    def close(self) -> None:
        self.kept.close_all()

    def send(self, messages: Sequence[Message]) -> None:
        self.kept.send(messages)


class FakeTransport:
    """In-memory stand-in: keeps every batch; `fail` makes the next send refuse."""

    def __init__(self) -> None:
        self.batches: list[list[Message]] = []
        self.fail: int | None = None

    def send(self, messages: Sequence[Message]) -> None:
        if self.fail is not None:
            err, self.fail = self.fail, None
            raise BatchError(err, messages[0].line if messages else "")
        self.batches.append(list(messages))


FAST, UNSUPPORTED, LARGE, REFUSED = "netlink", "nft (unsupported)", "nft (large)", "nft (netlink refused)"
# a netlink datagram must fit the socket's send buffer (net.core.wmem_default,
# 208 KiB); a change this large is not the one-Service case nftnl is for
MAX_BATCH = 128 << 10


def apply(
    script: str,
    what: str,
    transport: Transport,
    fallback: Callable[[str, str], None] | None = None,
    on_refused: Callable[[BatchError], None] | None = None,
) -> str:
    """Apply `script` through netlink, else through `nft -f` -> FAST,
    UNSUPPORTED, LARGE or REFUSED. Raises nft.NftError when nft fails too.
    on_refused hears of a batch the kernel (or the socket) refused: the
    caller's idea of the table may be wrong."""
    fallback = fallback or (lambda s, w: nft.apply(s, what=w))
    try:
        messages = compile_script(script)
    except Unsupported:
        fallback(script, what)
        return UNSUPPORTED
    if sum(20 + len(m.body) for m in messages) > MAX_BATCH:
        fallback(script, what)
        return LARGE
    try:
        transport.send(messages)
        return FAST
    except OSError as exc:  # a refused batch changed nothing; nft gets the same script
        if on_refused is not None:
            on_refused(exc if isinstance(exc, BatchError) else BatchError(exc.errno or errno.EIO, "(socket) " + what))
        fallback(script, what)
        return REFUSED
