"""Links, addresses, routes and per-netns sysctls, through pyroute2.

Every function takes an IPRoute already bound to the right namespace (see
netns.iproute) and asks the kernel each time instead of trusting a cached
copy. `ensure_*` accepts "already there" after checking it is what we want;
`delete_*` accepts "already gone" (ENODEV/ENOENT/ESRCH/EADDRNOTAVAIL).
"""

import errno
import ipaddress
import os

from pyroute2.netlink.exceptions import NetlinkError

from podnet.kernel.netns import entered

GONE = (errno.ENODEV, errno.ENOENT, errno.ESRCH, errno.EADDRNOTAVAIL)


class LinkError(Exception):
    """A kernel operation failed; the message names operation and object."""

    def __init__(self, msg, errno_=None):
        super().__init__(msg)
        self.errno = errno_


def _fail(op, obj, exc):
    return LinkError("%s %s: %s" % (op, obj, getattr(exc, "args", [None, exc])[-1]),
                     getattr(exc, "code", None))


def get_link(ipr, name):
    """The link message for `name`, or None."""
    try:
        return ipr.link("get", ifname=name)[0]
    except NetlinkError as exc:
        if exc.code in GONE:
            return None
        raise _fail("get link", name, exc)


def link_kind(msg):
    info = msg.get_attr("IFLA_LINKINFO")
    return info.get_attr("IFLA_INFO_KIND") if info is not None else None


def mac_of(msg):
    return msg.get_attr("IFLA_ADDRESS")


def ensure_bridge(ipr, name, mtu=None, promisc=False):
    """Create (or find) bridge `name`, up; returns its link message."""
    link = get_link(ipr, name)
    if link is None:
        kwargs = {"ifname": name, "kind": "bridge"}
        if mtu:
            kwargs["mtu"] = mtu
        try:
            ipr.link("add", **kwargs)
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:  # a concurrent ADD made it first
                raise _fail("create bridge", name, exc)
        link = get_link(ipr, name)
    elif link_kind(link) != "bridge":
        raise LinkError("bridge %s: a link of that name exists and is a %s, not a bridge"
                        % (name, link_kind(link) or "plain device"))
    flags = {"state": "up"}
    if promisc:
        flags["promisc"] = 1
    try:
        if link.get("flags", 0) & 1 == 0 or promisc:
            ipr.link("set", index=link["index"], **flags)
    except NetlinkError as exc:
        raise _fail("bring up bridge", name, exc)
    return get_link(ipr, name)


def ensure_address(ipr, index, cidr, what):
    iface = ipaddress.ip_interface(cidr)
    try:
        ipr.addr("add", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen)
    except NetlinkError as exc:
        if exc.code != errno.EEXIST:
            raise _fail("add address %s to" % cidr, what, exc)


def addresses(ipr, index):
    """Addresses on a link as ip_interface objects."""
    out = []
    for msg in ipr.addr("dump", index=index):
        out.append(ipaddress.ip_interface("%s/%d" % (msg.get_attr("IFA_ADDRESS"), msg["prefixlen"])))
    return out


def create_veth(ipr, host_name, peer_name, peer_ns, mtu=None):
    """A veth pair whose peer is born inside `peer_ns` (one netlink call;
    creating it here and moving it costs ~20x more and sets it DOWN)."""
    kwargs = {"ifname": host_name, "kind": "veth",
              "peer": {"ifname": peer_name, "net_ns_fd": peer_ns.fd}}
    if mtu:
        kwargs["mtu"] = mtu
        kwargs["peer"]["mtu"] = mtu
    try:
        ipr.link("add", **kwargs)
    except NetlinkError as exc:
        raise _fail("create veth %s/%s in" % (host_name, peer_name), peer_ns.path, exc)


def delete_link(ipr, name):
    try:
        ipr.link("del", ifname=name)
        return True
    except NetlinkError as exc:
        if exc.code in GONE:
            return False
        raise _fail("delete link", name, exc)


def set_up(ipr, index, what, **extra):
    try:
        ipr.link("set", index=index, state="up", **extra)
    except NetlinkError as exc:
        raise _fail("bring up", what, exc)


def set_hairpin(ipr, index, what, on=True):
    try:
        ipr.brport("set", index=index, hairpin_mode=1 if on else 0)
    except NetlinkError as exc:
        raise _fail("set hairpin mode on", what, exc)


def add_route(ipr, dst, gw, index, what, onlink=False):
    net = ipaddress.ip_network(dst, strict=False)
    kwargs = {"dst": str(net), "oif": index}
    if gw:
        kwargs["gateway"] = str(gw)
    if onlink:
        kwargs["flags"] = 4  # RTNH_F_ONLINK
    try:
        ipr.route("add", **kwargs)
    except NetlinkError as exc:
        if exc.code != errno.EEXIST:
            raise _fail("add route %s via %s on" % (net, gw), what, exc)


def routes(ipr, index, family):
    out = []
    for msg in ipr.route("dump", family=family, oif=index):
        dst = msg.get_attr("RTA_DST")
        dst = "%s/%d" % (dst, msg["dst_len"]) if dst else ("0.0.0.0/0" if family == 2 else "::/0")
        out.append((str(ipaddress.ip_network(dst, strict=False)), msg.get_attr("RTA_GATEWAY")))
    return out


def write_sysctl(ns, key, value):
    """Write a net.* sysctl inside `ns` (the thread enters it to open the
    file: /proc/sys/net shows the opener's namespace)."""
    path = "/proc/sys/" + key.replace(".", "/")
    with entered(ns):
        try:
            with open(path, "w") as f:
                f.write(str(value))
        except OSError as exc:
            raise LinkError("write sysctl %s=%s: %s" % (key, value, exc.strerror), exc.errno)


def read_sysctl(ns, key):
    path = "/proc/sys/" + key.replace(".", "/")
    with entered(ns):
        with open(path) as f:
            return f.read().strip()


def ipv6_enabled(ns):
    try:
        return os.path.exists("/proc/sys/net/ipv6") and read_sysctl(ns, "net.ipv6.conf.all.disable_ipv6") == "0"
    except OSError:
        return False
