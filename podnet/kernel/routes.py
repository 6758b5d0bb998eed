"""Routes: read, replace and delete them, by the protocol number that marks
whose they are.

Two ways in, for two kinds of caller:

- with a pyroute2 IPRoute handle (`netns.iproute(ns)`), for a reconciler that
  reads and writes many routes in one pass (the routing applier);
- with a namespace (a Netns or a named one's path), for one-off setup (the
  lab's default route, flushing a killed BIRD's routes).

Every failure raises LinkError naming the operation, the route and the
namespace; deletes accept "not there" (ESRCH, ENOENT) so they are idempotent.
"""

import errno
import socket
from collections import namedtuple
from contextlib import contextmanager

from podnet.kernel.links import LinkError, link_index, link_name
from podnet.kernel.netns import Netns, iproute

RTNH_F_ONLINK = 4
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK = 0, 253
PROTO_STATIC = 4  # what `ip route add` marks a route with
PROTO_BIRD = 12  # BIRD's routes (`proto bird`)
MAIN = 254


# (dst, gw, dev, onlink) as the kernel holds it; dst is "a.b.c.d/n", gw None for a device route
Route = namedtuple("Route", "dst gw dev onlink")


def _show(dst, gw, dev):
    return "route %s %sdev %s" % (dst, "via %s " % gw if gw else "", dev)


def routes(ipr, proto, table=MAIN):
    """IPv4 routes of `table` that carry `proto` -> {dst: Route}."""
    out = {}
    for r in ipr.route("dump", family=socket.AF_INET, table=table, proto=proto):
        if r["proto"] != proto:
            continue
        dst = "%s/%d" % (r.get_attr("RTA_DST") or "0.0.0.0", r["dst_len"])
        idx = r.get_attr("RTA_OIF")
        out[dst] = Route(
            dst, r.get_attr("RTA_GATEWAY"), link_name(ipr, idx) if idx else "", bool(r["flags"] & RTNH_F_ONLINK)
        )
    return out


def scope_of(gw):
    """A route without a gateway is a device route: scope link, as `ip route
    add DST dev DEV` makes it. The kernel matches a delete on the scope too
    (scope universe does not find a link route: ESRCH), so both use this."""
    return RT_SCOPE_UNIVERSE if gw else RT_SCOPE_LINK


def replace_route(ipr, dst, dev, gw=None, proto=PROTO_STATIC, onlink=False, table=MAIN):
    """Add the route or replace the one to the same dst (ip route replace)."""
    from pyroute2.netlink.exceptions import NetlinkError

    idx = link_index(ipr, dev)
    if idx is None:
        raise LinkError("replace %s: device %s does not exist" % (_show(dst, gw, dev), dev), errno.ENODEV)
    kw = {"gateway": gw} if gw else {}
    try:
        ipr.route(
            "replace",
            dst=dst,
            oif=idx,
            proto=proto,
            table=table,
            scope=scope_of(gw),
            flags=RTNH_F_ONLINK if onlink else 0,
            **kw,
        )
    except NetlinkError as exc:
        raise LinkError("replace %s: %s" % (_show(dst, gw, dev), exc.args[-1]), exc.code) from None


def delete_route(ipr, dst, proto, gw=None, table=MAIN):
    """Delete our route to dst; absent is fine. -> True when one was deleted."""
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        ipr.route("del", dst=dst, proto=proto, table=table, scope=scope_of(gw))
    except NetlinkError as exc:
        if exc.code in (errno.ESRCH, errno.ENOENT):
            return False
        raise LinkError("delete route %s (proto %d): %s" % (dst, proto, exc.args[-1]), exc.code) from None
    return True


@contextmanager
def _in(ns):
    """An IPRoute in `ns`: a Netns, a named namespace or path, or None (ours)."""
    handle = Netns(ns) if isinstance(ns, str) else None
    ipr = iproute(handle if handle is not None else ns)
    try:
        yield ipr
    finally:
        ipr.close()
        if handle is not None:
            handle.close()


def ensure_default_route(ns, gw, dev, proto=PROTO_STATIC):
    """The namespace's default route goes via `gw` on `dev`. -> True when changed."""
    where = getattr(ns, "path", ns) or "the current namespace"
    with _in(ns) as ipr:
        have = [r for r in ipr.route("dump", family=socket.AF_INET, table=MAIN) if r["dst_len"] == 0]
        idx = link_index(ipr, dev)
        if any(r.get_attr("RTA_GATEWAY") == gw and r.get_attr("RTA_OIF") == idx for r in have) and len(have) == 1:
            return False
        try:
            replace_route(ipr, "0.0.0.0/0", dev, gw, proto=proto)
        except LinkError as exc:
            raise LinkError("in %s: %s" % (where, exc), exc.errno) from None
        return True


def flush_routes(ns, proto, table=MAIN):
    """Delete every IPv4 route of `table` that carries `proto` (`ip route
    flush proto N`). -> how many."""
    n = 0
    with _in(ns) as ipr:
        for dst, r in routes(ipr, proto, table).items():
            n += delete_route(ipr, dst, proto, r.gw, table)
    return n


def get_route(ns, dst):
    """What the kernel would do with a packet to `dst` (`ip route get`):
    {"gateway": ip or None, "dev": name, "prefsrc": ip or None}; raises
    LinkError (ENETUNREACH) when there is no route."""
    from pyroute2.netlink.exceptions import NetlinkError

    with _in(ns) as ipr:
        try:
            r = ipr.route("get", dst=dst)[0]
        except NetlinkError as exc:
            raise LinkError("route get %s: %s" % (dst, exc.args[-1]), exc.code) from None
        idx = r.get_attr("RTA_OIF")
        return {
            "gateway": r.get_attr("RTA_GATEWAY"),
            "dev": link_name(ipr, idx) if idx else None,
            "prefsrc": r.get_attr("RTA_PREFSRC"),
        }
