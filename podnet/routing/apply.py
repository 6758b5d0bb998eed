"""Make the node's kernel match a routing plan, touching only what is ours.

Ours is recognisable: routes carry the route protocol number PROTO (shown by
`ip route` as `proto 44`), and the VXLAN device podnet.1 with its neighbour
and FDB entries belongs to podnet alone. Each call reads the kernel afresh,
adds what is missing, replaces what differs and deletes what no longer should
be there, so a route deleted by hand is back after the next resync and a
removed node's route, neighbour and FDB entry disappear. Applying the same
plan twice changes nothing (the second call reports zero changes).
"""

import errno
import ipaddress
import socket

from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl.ndmsg import NUD_PERMANENT

from podnet.routing.planner import Fdb, Neigh, Route

PROTO = 44  # rtnetlink route protocol podnet's routes carry
RTNH_F_ONLINK = 4
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK = 0, 253


class ApplyError(Exception):
    pass


def _idx(ipr, name):
    """The link's index, asked of the kernel by name (link_lookup would dump
    and parse every link of the node, pods' veths included, on each pass)."""
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        return ipr.link("get", ifname=name)[0]["index"]
    except NetlinkError as exc:
        if exc.code == 19:  # ENODEV
            return None
        raise


def ensure_vxlan(ipr, dev):
    """The VXLAN device exists with the planned VNI, local IP, port, MAC and
    MTU, is up, and holds its /32. -> number of changes."""
    changes = 0
    idx = _idx(ipr, dev["name"])
    if idx is not None:
        link = ipr.link("get", index=idx)[0]
        info = link.get_attr("IFLA_LINKINFO")
        data = info.get_attr("IFLA_INFO_DATA") if info else None
        same = (
            info
            and info.get_attr("IFLA_INFO_KIND") == "vxlan"
            and data
            and data.get_attr("IFLA_VXLAN_ID") == dev["vni"]
            and data.get_attr("IFLA_VXLAN_LOCAL") == dev["local"]
            and data.get_attr("IFLA_VXLAN_PORT") == dev["port"]
        )
        if not same:  # a device of that name that is not what we want: rebuild it
            ipr.link("del", index=idx)
            idx, changes = None, changes + 1
    if idx is None:
        ipr.link(
            "add",
            ifname=dev["name"],
            kind="vxlan",
            vxlan_id=dev["vni"],
            vxlan_local=dev["local"],
            vxlan_port=dev["port"],
            vxlan_learning=0,
            address=dev["mac"],
            mtu=dev["mtu"],
        )
        idx = _idx(ipr, dev["name"])
        changes += 1
    link = ipr.link("get", index=idx)[0]
    if link.get_attr("IFLA_ADDRESS") != dev["mac"] or link.get_attr("IFLA_MTU") != dev["mtu"] or not link["flags"] & 1:
        ipr.link("set", index=idx, address=dev["mac"], mtu=dev["mtu"], state="up")
        changes += 1
    want = ipaddress.ip_interface(dev["address"])
    have = {
        ipaddress.ip_interface("%s/%d" % (a.get_attr("IFA_ADDRESS"), a["prefixlen"]))
        for a in ipr.addr("dump", index=idx)
    }
    for extra in have - {want}:
        if extra.version == 4:
            ipr.addr("del", index=idx, address=str(extra.ip), prefixlen=extra.network.prefixlen)
            changes += 1
    if want not in have:
        ipr.addr("add", index=idx, address=str(want.ip), prefixlen=want.network.prefixlen)
        changes += 1
    return changes


def remove_vxlan(ipr, name):
    idx = _idx(ipr, name)
    if idx is not None:
        ipr.link("del", index=idx)
        return 1
    return 0


def observed_routes(ipr):
    out = {}
    for r in ipr.route("dump", family=socket.AF_INET, table=254, proto=PROTO):
        if r["proto"] != PROTO:
            continue
        dst = "%s/%d" % (r.get_attr("RTA_DST") or "0.0.0.0", r["dst_len"])
        idx = r.get_attr("RTA_OIF")
        name = ipr.link("get", index=idx)[0].get_attr("IFLA_IFNAME") if idx else ""
        out[dst] = Route(dst, r.get_attr("RTA_GATEWAY"), name, bool(r["flags"] & RTNH_F_ONLINK))
    return out


def _scope(r):
    """A route without a gateway is a device route: scope link, as `ip route
    add DST dev DEV` makes it. The kernel matches a delete on the scope too
    (scope universe does not find a link route: ESRCH), so both use this."""
    return RT_SCOPE_UNIVERSE if r.gw else RT_SCOPE_LINK


def _show(r):
    return "route %s %sdev %s" % (r.dst, "via %s " % r.gw if r.gw else "", r.dev)


def sync_routes(ipr, want):
    have = observed_routes(ipr)
    wanted = {r.dst: r for r in want}
    changes = 0
    for dst, r in wanted.items():
        if have.get(dst) == r:
            continue
        idx = _idx(ipr, r.dev)
        if idx is None:
            raise ApplyError("%s: device %s does not exist" % (_show(r), r.dev))
        kw = {"gateway": r.gw} if r.gw else {}
        try:
            ipr.route(
                "replace",
                dst=dst,
                oif=idx,
                proto=PROTO,
                scope=_scope(r),
                flags=RTNH_F_ONLINK if r.onlink else 0,
                **kw,
            )
        except NetlinkError as exc:
            raise ApplyError("%s: %s" % (_show(r), exc.args[-1])) from None
        changes += 1
    for dst in set(have) - set(wanted):
        try:
            ipr.route("del", dst=dst, proto=PROTO, table=254, scope=_scope(have[dst]))
        except NetlinkError as exc:
            if exc.code not in (errno.ESRCH, errno.ENOENT):
                raise
        changes += 1
    return changes


def sync_neighbours(ipr, dev, want):
    idx = _idx(ipr, dev)
    if idx is None:
        return 0
    have = {}
    for n in ipr.neigh("dump", ifindex=idx, family=socket.AF_INET):
        if n["state"] & NUD_PERMANENT:
            have[n.get_attr("NDA_DST")] = Neigh(n.get_attr("NDA_DST"), n.get_attr("NDA_LLADDR"), dev)
    changes = 0
    wanted = {n.ip: n for n in want}
    for ip, n in wanted.items():
        if have.get(ip) != n:
            ipr.neigh("replace", dst=ip, lladdr=n.mac, ifindex=idx, state=NUD_PERMANENT)
            changes += 1
    for ip in set(have) - set(wanted):
        ipr.neigh("del", dst=ip, ifindex=idx)
        changes += 1
    return changes


def sync_fdb(ipr, dev, want):
    idx = _idx(ipr, dev)
    if idx is None:
        return 0
    have = {}
    for e in ipr.fdb("dump", ifindex=idx):
        if e["ifindex"] != idx or not e.get_attr("NDA_DST"):
            continue
        have[e.get_attr("NDA_LLADDR")] = Fdb(e.get_attr("NDA_LLADDR"), e.get_attr("NDA_DST"), dev)
    changes = 0
    wanted = {f.mac: f for f in want}
    for mac, f in wanted.items():
        if have.get(mac) != f:
            if mac in have:
                ipr.fdb("del", ifindex=idx, lladdr=mac, dst=have[mac].dst)
            ipr.fdb("append", ifindex=idx, lladdr=mac, dst=f.dst, state=NUD_PERMANENT)
            changes += 1
    for mac in set(have) - set(wanted):
        ipr.fdb("del", ifindex=idx, lladdr=mac, dst=have[mac].dst)
        changes += 1
    return changes


def apply(ipr, desired, vxlan_name="podnet.1"):
    """-> number of kernel changes made (0 when the kernel already matches)."""
    changes = 0
    if desired.device:
        changes += ensure_vxlan(ipr, desired.device)
        changes += sync_fdb(ipr, desired.device["name"], desired.fdbs)
        changes += sync_neighbours(ipr, desired.device["name"], desired.neighs)
    else:
        changes += remove_vxlan(ipr, vxlan_name)
    changes += sync_routes(ipr, desired.routes)
    return changes
