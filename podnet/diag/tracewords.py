"""The hops of a trace in words (pure: no I/O).

`explain` walks the namespaces the probe crossed, in the order it crossed
them (the TTL falls by one per routing hop, so a higher TTL came first),
and turns each namespace's chain visits (podnet/diag/traceparse.py), plus
the routing lookups a `Look` answers (route get, neighbour, FDB, sysctl),
into hops; podnet/diag/tracecause.py then gives the verdict, the reason and
the culprit (the JSON contract: podnet/cli/trace_cmd.py).
"""

from __future__ import annotations

import re
from typing import Any

from podnet.diag import tracecause as tc
from podnet.diag import tracemodel as tm
from podnet.diag import traceparse as tp
from podnet.diag.tracemodel import Context, Look, Place, Probe
from podnet.diag.traceparse import Event, parse

__all__ = ["Context", "Event", "Look", "Place", "Probe", "explain", "parse"]


_NAMED = re.compile(r"-[A-Z0-9]{6,}-([^/\s]+/[^/\s]+)")


def _route_hops(ctx, look, ns, place, dst, out_dev=None):
    """The routing decision of this namespace for dst, in words; with the
    VXLAN neighbour/FDB entries or the BGP origin behind it."""
    r = look.route(ns, dst)
    if r.get("error"):
        return [
            tm.hop(place, ns, "route", "no route to %s: %s" % (dst, r["error"]), "ip route get %s" % dst, "drop")
        ], r
    dev, gw = r.get("dev"), r.get("gateway")
    line = r.get("line") or ""
    if r.get("type") == "local":
        return [tm.hop(place, ns, "deliver", "for this host: %s is one of its own addresses" % dst, line)], r
    if dev == "podnet.1":
        mac = look.neighbour(ns, dev, gw) if gw else None
        outer = look.fdb(ns, dev).get(mac or "", None)
        node = ctx.node_ips.get(outer or "", outer or "?")
        what = "encapsulated in VXLAN (VNI 1, UDP 8472) to %s (outer %s -> %s)" % (node, _own_ip(ctx, place), outer)
        obj = "%s; neigh %s lladdr %s; fdb %s dst %s" % (line, gw, mac, mac, outer)
        return [tm.hop(place, ns, "vxlan", what, obj)], r
    if dev == "cni0":
        return [tm.hop(place, ns, "bridge", "out on bridge cni0 to the pod's veth (%s is local)" % dst, line)], r
    if dev == "podnet.wg":
        return [tm.hop(place, ns, "wireguard", "encrypted by WireGuard podnet.wg", line)], r
    if place.kind == "pod" and gw:
        return [tm.hop(place, ns, "route", "leaves on %s via %s, its node's bridge cni0" % (dev, gw), line)], r
    if gw and r.get("proto") == "bird":
        what = "next hop %s (%s), a route BIRD learned over BGP (proto bird)" % (ctx.node_ips.get(gw, gw), gw)
        return [tm.hop(place, ns, "bgp", what, line)], r
    if gw:
        return [tm.hop(place, ns, "route", "next hop %s (%s) on %s" % (ctx.node_ips.get(gw, gw), gw, dev), line)], r
    return [tm.hop(place, ns, "route", "out on %s (%s is on that link)" % (dev, dst), line)], r


def _own_ip(ctx, place):
    for ip, n in ctx.node_ips.items():
        if n == place.node:
            return ip
    return "?"


def _nft_hop(ctx, place, e, state):
    """A rule event in words, or None for plumbing (jumps to check chains)."""
    full = "%s %s %s: %s" % (e.family, e.table, e.chain, e.text)
    v = e.verdict
    named = _NAMED.search(v) or _NAMED.search(e.chain)
    if "dnat to" in e.text:
        target = e.text.split("dnat to", 1)[1].split()[0]
        state["endpoint"] = target
        m = re.search(r"numgen random mod (\d+) (\d+)", e.text)
        if state.get("why"):  # the rule that sent it to this endpoint's chain (ep-...)
            why = state.pop("why")
        elif e.chain.startswith("ext-"):
            why = "externalTrafficPolicy Local: an endpoint on this node, the client's address kept"
        elif m:
            why = "a random pick (numgen random mod %s == %s: 1 in %s of the endpoints left)" % (
                m.group(1),
                m.group(2),
                m.group(1),
            )
        elif ctx.ready_endpoints == 1:
            why = "the Service's only ready endpoint"
        else:
            why = "picked at random: the numgen rules before this last one passed it on"
        return tm.hop(place, e.ns, "nft", "DNAT to endpoint %s, %s" % (target, why), full, "dnat")
    if v.startswith("goto ep-"):  # affinity or the random pick, the dnat follows in ep-...
        if "@affinity" in e.text:
            state["why"] = (
                "session affinity (ClientIP): this client's earlier choice, remembered in @%s"
                % (e.text.split("@", 1)[1].split()[0])
            )
        else:
            m = re.search(r"numgen random mod (\d+)", e.text)
            n = m.group(1) if m else "N"
            state["why"] = "a random pick (numgen random mod %s: 1 in %s of the endpoints left)" % (n, n)
        return None
    if "no-endpoint" in e.text:
        return tm.hop(place, e.ns, "nft", "the Service has no usable endpoints here (%s)" % v, full, "reject")
    if v.startswith("goto") and named and e.table == "podnet-proxy":
        state.setdefault("service", named.group(1))
        what = "Service %s matched %s:%s (chain %s)" % (named.group(1), e.pkt.get("daddr"), e.pkt.get("dport"), e.chain)
        return tm.hop(place, e.ns, "nft", what, full)
    if v.startswith("jump") and "policy-" in v and named:
        state.setdefault("policies", []).append(named.group(1))
        return tm.hop(place, e.ns, "nft", "NetworkPolicy %s applies (%s)" % (named.group(1), e.chain), full)
    if v.startswith("goto") and e.table == "podnet-policy" and named:
        return tm.hop(place, e.ns, "nft", "pod %s is isolated by NetworkPolicy (%s)" % (named.group(1), e.chain), full)
    if "masquerade" in e.text:
        return tm.hop(place, e.ns, "nft", "masquerade: source NAT to the node's address", full, "snat")
    if v == "accept" and e.table == "podnet-policy" and "comment" in e.text:
        comment = e.text.split("comment", 1)[1].strip().strip('"')
        return tm.hop(place, e.ns, "nft", "NetworkPolicy allows it: %s" % comment, full, "accept")
    if v in ("drop", "reject") or e.text.startswith("reject"):
        word = _drop_word(e)
        # nft reports a reject rule's verdict as drop; the hop says what the rule does
        verdict = "reject" if word == "rejected" else v
        return tm.hop(place, e.ns, "nft", "%s by %s %s %s" % (word, e.family, e.table, e.chain), full, verdict)
    if not e.table.startswith("podnet-") and v in ("accept",):
        return tm.hop(place, e.ns, "nft", "accepted by table %s %s chain %s" % (e.family, e.table, e.chain), full, v)
    return None


def _drop_word(e):
    return "rejected" if e.text.startswith("reject") or " reject" in e.text else "dropped"


def explain(probe, by_ns, ctx, look):
    """{"verdict", "reason", "culprit", "endpoint", "hops"} for the contract."""
    order, fwd, ans = tp.probe_events(probe, by_ns, ctx.source_ns)
    hops: list[dict[str, Any]] = []
    state: dict[str, Any] = {}
    verdict = reason = None
    culprit = None
    last_place, last_ns, last_route = None, None, None
    for ns in order:
        place = ctx.places.get(ns, tm.Place(ns))
        events = fwd.get(ns, [])
        last_place, last_ns = place, ns
        source = ns == ctx.source_ns
        pk = next((e.pkt for e in events if e.kind == "packet"), {})
        if not source and place.kind == "pod":
            hops.append(
                tm.hop(
                    place,
                    ns,
                    "deliver",
                    "arrives on %s of %s (%s)" % (pk.get("iif", "eth0"), place.where, pk.get("daddr")),
                    "",
                )
            )
            continue
        if not source:
            iif = pk.get("iif", "?")
            arrive = {
                "podnet.1": ("vxlan", "decapsulated from VXLAN VNI 1 on podnet.1"),
                "cni0": ("bridge", "arrives on bridge cni0 from the pod's veth"),
                "podnet.wg": ("wireguard", "decrypted by WireGuard on podnet.wg"),
            }.get(iif, ("route", "arrives on %s from the underlay" % iif))
            hops.append(tm.hop(place, ns, arrive[0], arrive[1], ""))
        for e in events:
            if e.kind == "rule":
                h = _nft_hop(ctx, place, e, state)
                if h:
                    hops.append(h)
        stop = tc.stopper(events)
        if stop is not None:
            if stop.kind == "policy":
                what = "dropped by the policy of %s %s %s" % (stop.family, stop.table, stop.chain)
                hops.append(
                    tm.hop(
                        place, ns, "nft", what, "%s %s %s: policy drop" % (stop.family, stop.table, stop.chain), "drop"
                    )
                )
            verdict, reason, culprit = tc.culprit_for(ctx, place, stop, events, state, probe)
            if state.get("suspect") and verdict == "no-route":  # the node that sent it astray comes first
                verdict, reason, culprit = tc.no_route(ctx, *state["suspect"])
            break
        routed = next((e.pkt.get("daddr") for e in reversed(events) if e.pkt.get("oif")), None)
        dst = routed or (state.get("endpoint") or probe.dst_ip).split(":")[0]
        if source:
            dst = probe.dst_ip if not state.get("endpoint") else dst
        elif routed is None and look.sysctl(ns, "net.ipv4.ip_forward") == "0":
            where = tm.where_short(place)
            verdict = "dropped"
            reason = "dropped on %s: net.ipv4.ip_forward is 0, the node does not forward" % where
            culprit = {"where": where, "kind": "sysctl", "object": "net.ipv4.ip_forward"}
            hops.append(
                tm.hop(place, ns, "route", "not forwarded: net.ipv4.ip_forward = 0", "net.ipv4.ip_forward = 0", "drop")
            )
            break
        hs, r = _route_hops(ctx, look, ns, place, dst)
        hops += hs
        last_route = r
        if r.get("error"):
            verdict, reason, culprit = tc.no_route(ctx, place, dst, r)
            break
        cidr, owner = tm.owner(ctx, dst)
        if place.kind == "node" and owner and owner != place.node and r.get("prefix") == "default":
            # a pod address left to the default route: this node lacks the route to its owner's
            # podCIDR. The default router may still know the way (a BGP lab's external host),
            # so this is the cause only if the probe fails.
            why = "only the default route (%s) matches, no route to %s's podCIDR %s" % (r.get("line"), owner, cidr)
            hops[-1]["what"] += "; %s" % why
            state.setdefault("suspect", (place, dst, dict(r, error=why)))
    if verdict is not None and ctx.stale_conntrack:  # the stale entry sent it there
        verdict, reason, culprit = tc.stale_conntrack(ctx, hops)
    if verdict is None and state.get("suspect") and probe.outcome != "reply":
        verdict, reason, culprit = tc.no_route(ctx, *state["suspect"])
    if verdict is None:
        verdict, reason, culprit = tc.outcome(probe, ctx, look, state, ans, last_place, last_ns, last_route, hops)
    return {"verdict": verdict, "reason": reason, "culprit": culprit, "endpoint": state.get("endpoint"), "hops": hops}
