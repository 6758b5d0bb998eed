"""Make the node's kernel match a routing plan, touching only what is ours.

Ours is recognisable: routes carry the route protocol number PROTO (shown by
`ip route` as `proto 44`), and the VXLAN device podnet.1 with its neighbour
and FDB entries belongs to podnet alone. Each call reads the kernel afresh,
adds what is missing, replaces what differs and deletes what no longer should
be there, so a route deleted by hand is back after the next resync and a
removed node's route, neighbour and FDB entry disappear. Applying the same
plan twice changes nothing (the second call reports zero changes).

This module decides; podnet.kernel (links, routes, neigh) does the kernel
calls, with the IPRoute handle the caller opened in the node's namespace.
"""

from podnet.kernel import links, neigh, routes
from podnet.kernel.links import LinkError
from podnet.routing.planner import Route

PROTO = 44  # rtnetlink route protocol podnet's routes carry


class ApplyError(Exception):
    pass


def ensure_vxlan(ipr, dev):
    """The VXLAN device exists as planned, is up and holds its /32. -> number of changes."""
    return links.ensure_vxlan(
        ipr, dev["name"], dev["vni"], dev["local"], dev["port"], dev["mac"], dev["mtu"], dev["address"]
    )


def remove_vxlan(ipr, name):
    return links.delete_link(ipr, name)


def observed_routes(ipr):
    return {dst: Route(r.dst, r.gw, r.dev, r.onlink) for dst, r in routes.routes(ipr, PROTO).items()}


def sync_routes(ipr, want):
    have = observed_routes(ipr)
    wanted = {r.dst: r for r in want}
    changes = 0
    for dst, r in wanted.items():
        if have.get(dst) == r:
            continue
        try:
            routes.replace_route(ipr, dst, r.dev, r.gw, proto=PROTO, onlink=r.onlink)
        except LinkError as exc:
            raise ApplyError(str(exc)) from None
        changes += 1
    for dst in set(have) - set(wanted):
        routes.delete_route(ipr, dst, PROTO, have[dst].gw)
        changes += 1
    return changes


def sync_neighbours(ipr, dev, want):
    have = neigh.permanent_neighbours(ipr, dev)
    wanted = {n.ip: n.mac for n in want}
    changes = 0
    for ip, mac in wanted.items():
        if have.get(ip) != mac:
            neigh.replace_neighbour(ipr, dev, ip, mac)
            changes += 1
    for ip in set(have) - set(wanted):
        neigh.delete_neighbour(ipr, dev, ip)
        changes += 1
    return changes


def sync_fdb(ipr, dev, want):
    have = neigh.fdb_entries(ipr, dev)
    if not have and links.link_index(ipr, dev) is None:
        return 0
    wanted = {f.mac: f.dst for f in want}
    changes = 0
    for mac, dst in wanted.items():
        if have.get(mac) != dst:
            if mac in have:
                neigh.delete_fdb(ipr, dev, mac, have[mac])
            neigh.append_fdb(ipr, dev, mac, dst)
            changes += 1
    for mac in set(have) - set(wanted):
        neigh.delete_fdb(ipr, dev, mac, have[mac])
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
