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

The builders (`add_message`, `delete_message`) are pure and return
nftnl.Message; `apply` is the only function that reaches the kernel, through
nftnl's batch framing and sockets. A caller in its own namespace reuses a
kept socket (KEPT: closing one after a delete costs 10-25 ms).
"""

import errno as E
import ipaddress
import os
import struct
from contextlib import closing

from podnet.kernel import nftnl
from podnet.kernel.nftexpr import attr, nest, string, value, verdict

NFPROTO = {"inet": 1, "ip": 2, "ip6": 10}
# nf_tables attribute numbers (linux/netfilter/nf_tables.h)
LIST_TABLE, LIST_SET, LIST_ELEMENTS, LIST_ELEM = 1, 2, 3, 1
ELEM_KEY, ELEM_DATA, ELEM_USERDATA = 1, 2, 6
UDATA_ELEM_COMMENT = 0  # libnftnl's NFTNL_UDATA_SET_ELEM_COMMENT, as nft writes it


class ElementError(OSError):
    """The kernel refused the batch (nothing changed); errno says why."""


def comment_userdata(text):
    """nft's element comment: a libnftnl udata TLV (type, length, NUL-ended
    string); nft refuses comments over 128 bytes, so one length byte holds it."""
    raw = text.encode() + b"\0"
    if len(raw) > 255:
        raise ValueError("element comment too long (%d bytes): %r" % (len(raw), text))
    return struct.pack("=BB", UDATA_ELEM_COMMENT, len(raw)) + raw


def _key(ip):
    return value(ELEM_KEY, ipaddress.ip_address(ip).packed)


def _head(family, table, set_name):
    if family not in NFPROTO:
        raise ValueError("nftables family %r: expected one of %s" % (family, ", ".join(sorted(NFPROTO))))
    return NFPROTO[family], string(LIST_TABLE, table) + string(LIST_SET, set_name)


def add_message(family, table, set_name, elements):
    """elements: [(ip, chain, comment or None)] -> one nftnl.Message.

    NLM_F_CREATE without EXCL, as nft's `add element`: re-adding an identical
    element is no error."""
    fam, head = _head(family, table, set_name)
    items = []
    for ip, chain, comment in elements:
        parts = [_key(ip), verdict(ELEM_DATA, "jump " + chain)]
        if comment:
            parts.append(attr(ELEM_USERDATA, comment_userdata(comment)))
        items.append(nest(LIST_ELEM, *parts))
    body = head + nest(LIST_ELEMENTS, *items)
    return nftnl.Message(
        nftnl.NEWSETELEM, nftnl.NLM_F_CREATE, fam, body, "add element %s %s %s" % (family, table, set_name)
    )


def delete_message(family, table, set_name, ips):
    fam, head = _head(family, table, set_name)
    body = head + nest(LIST_ELEMENTS, *[nest(LIST_ELEM, _key(ip)) for ip in ips])
    return nftnl.Message(nftnl.DELSETELEM, 0, fam, body, "delete element %s %s %s" % (family, table, set_name))


# One socket kept per namespace of a caller in its own thread's namespace
# (ns=None: the CNI daemon's case); past four, a call opens and closes its own.
KEPT = nftnl.Kept(limit=4, evict=False)


def apply(messages, ns=None, what="nftables elements"):
    """Send messages as one transaction in `ns`; raise ElementError on refusal.
    Every message asks for an ACK (as nft does for a few elements)."""
    if not messages:
        return
    try:
        if ns is None:
            KEPT.send(messages, ack_each=True)
        else:
            with closing(nftnl.Channel(ns)) as chan:
                chan.send(messages, ack_each=True)
    except nftnl.BatchError as exc:
        raise ElementError(exc.errno, "%s: %s" % (what, os.strerror(exc.errno))) from None
    except OSError as exc:
        raise ElementError(exc.errno or E.EIO, "%s: %s" % (what, exc)) from None
