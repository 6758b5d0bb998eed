"""Neighbours (ARP entries) and bridge FDB entries, with a pyroute2 IPRoute
handle (`netns.iproute(ns)`).

The VXLAN routing mode programs both by hand: a permanent neighbour maps a
peer's VTEP address to its MAC, an FDB entry on the VXLAN device sends that
MAC to the peer's underlay IP. Reads return only permanent entries (what we
program; learned ones come and go), replaces are idempotent, deletes accept
"not there", and failures raise LinkError naming the operation and entry.

gratuitous_arp() tells a link's neighbours that an address moved here (the
LoadBalancer announcer, after it puts an IP on the node).
"""

import errno
import ipaddress
import socket
import struct

from podnet.kernel.links import LinkError, link_index

NUD_PERMANENT = 0x80
_GONE = (errno.ENOENT, errno.ESRCH, errno.ENODEV)


def _index(ipr, dev, what):
    idx = link_index(ipr, dev)
    if idx is None:
        raise LinkError("%s: device %s does not exist" % (what, dev), errno.ENODEV)
    return idx


def permanent_neighbours(ipr, dev):
    """IPv4 permanent neighbours on `dev` -> {ip: mac}; {} when dev is absent."""
    idx = link_index(ipr, dev)
    if idx is None:
        return {}
    return {
        n.get_attr("NDA_DST"): n.get_attr("NDA_LLADDR")
        for n in ipr.neigh("dump", ifindex=idx, family=socket.AF_INET)
        if n["state"] & NUD_PERMANENT
    }


def replace_neighbour(ipr, dev, ip, mac):
    from pyroute2.netlink.exceptions import NetlinkError

    what = "replace neighbour %s lladdr %s dev %s" % (ip, mac, dev)
    try:
        ipr.neigh("replace", dst=ip, lladdr=mac, ifindex=_index(ipr, dev, what), state=NUD_PERMANENT)
    except NetlinkError as exc:
        raise LinkError("%s: %s" % (what, exc.args[-1]), exc.code) from None


def delete_neighbour(ipr, dev, ip):
    """-> True when an entry was deleted."""
    from pyroute2.netlink.exceptions import NetlinkError

    idx = link_index(ipr, dev)
    if idx is None:
        return False
    try:
        ipr.neigh("del", dst=ip, ifindex=idx)
    except NetlinkError as exc:
        if exc.code in _GONE:
            return False
        raise LinkError("delete neighbour %s dev %s: %s" % (ip, dev, exc.args[-1]), exc.code) from None
    return True


def fdb_entries(ipr, dev):
    """FDB entries of `dev` that carry a remote (VXLAN: `dst IP`) -> {mac: dst};
    {} when dev is absent."""
    idx = link_index(ipr, dev)
    if idx is None:
        return {}
    out = {}
    for e in ipr.fdb("dump", ifindex=idx):
        if e["ifindex"] != idx or not e.get_attr("NDA_DST"):
            continue
        out[e.get_attr("NDA_LLADDR")] = e.get_attr("NDA_DST")
    return out


def append_fdb(ipr, dev, mac, dst):
    """`bridge fdb append MAC dev DEV dst DST` (permanent)."""
    from pyroute2.netlink.exceptions import NetlinkError

    what = "append fdb %s dst %s dev %s" % (mac, dst, dev)
    try:
        ipr.fdb("append", ifindex=_index(ipr, dev, what), lladdr=mac, dst=dst, state=NUD_PERMANENT)
    except NetlinkError as exc:
        if exc.code == errno.EEXIST:
            return
        raise LinkError("%s: %s" % (what, exc.args[-1]), exc.code) from None


def delete_fdb(ipr, dev, mac, dst):
    """-> True when an entry was deleted."""
    from pyroute2.netlink.exceptions import NetlinkError

    idx = link_index(ipr, dev)
    if idx is None:
        return False
    try:
        ipr.fdb("del", ifindex=idx, lladdr=mac, dst=dst)
    except NetlinkError as exc:
        if exc.code in _GONE:
            return False
        raise LinkError("delete fdb %s dst %s dev %s: %s" % (mac, dst, dev, exc.args[-1]), exc.code) from None
    return True


def gratuitous_arp(ifname, mac, ip):
    """Broadcast 'ip is at mac' (an ARP request for itself, RFC 5227). The
    MAC comes from netlink: /sys/class/net shows the root namespace's links."""
    mac = bytes.fromhex(mac.replace(":", ""))
    addr = ipaddress.IPv4Address(ip).packed
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, mac, addr, b"\xff" * 6, addr)
    frame = b"\xff" * 6 + mac + struct.pack("!H", 0x0806) + arp
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    try:
        s.bind((ifname, 0))
        s.send(frame)
    finally:
        s.close()
