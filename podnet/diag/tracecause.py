"""Verdict, reason and culprit of a trace (pure): from the rule that
stopped the probe, or, when none did, from the socket's answer and the
kernel's own answers about the hop where the probe was last seen (routes,
MTUs, the VXLAN FDB, a stale conntrack entry).
"""

from __future__ import annotations

import re

from podnet.diag import tracemodel as tm
from podnet.diag.traceparse import is_trace_table


def stopper(events):
    """The first rule (or chain policy) that ended the packet."""
    for e in events:
        if is_trace_table(e.table):
            continue
        if (e.kind == "rule" and (e.verdict in ("drop", "reject") or e.text.startswith("reject"))) or (
            e.kind == "policy" and e.verdict == "drop"
        ):
            return e
    return None


def culprit_for(ctx, place, e, events, state, probe):
    where = tm.where_short(place)
    # counters change with every packet: leave their values out of the object
    rule = re.sub(r"counter packets \d+ bytes \d+", "counter", e.text) if e.text else "policy " + e.verdict
    full = "%s %s %s: %s" % (e.family, e.table, e.chain, rule)
    if e.table == "podnet-lab-router" and "fib daddr oif missing" in e.text:
        return no_route(ctx, place, probe.dst_ip, {"error": "the external host has no route (%s)" % full})
    if not e.table.startswith("podnet-"):
        return (
            "dropped",
            "dropped on %s by the foreign rule %s" % (where, full),
            {
                "where": where,
                "kind": "foreign-rule",
                "object": full,
            },
        )
    if e.table == "podnet-policy":
        pols = state.get("policies") or []
        comment = e.text.split("comment", 1)[1].strip().strip('"') if "comment" in e.text else ""
        obj = pols[-1] if pols else comment.split(":")[0]
        return (
            "dropped",
            "dropped on %s by NetworkPolicy %s (%s)" % (where, ", ".join(pols) or obj, comment),
            {
                "where": where,
                "kind": "policy",
                "object": obj,
            },
        )
    svc = state.get("service") or ctx.services.get("%s:%s" % (probe.dst_ip, probe.dport)) or "?"
    no_ep = any("no-endpoint" in x.text for x in events)
    if e.chain.startswith("ext-") and e.text.startswith("drop"):
        reason = "dropped on %s: Service %s has externalTrafficPolicy Local and no ready endpoint on this node" % (
            where,
            svc,
        )
        return "dropped", reason, {"where": where, "kind": "service", "object": svc}
    if e.chain == "cluster-ips-check":
        owner_svc = next((v for k, v in ctx.services.items() if k.startswith("%s:" % probe.dst_ip)), "?")
        ports = ", ".join(sorted(k.split(":")[1] for k, v in ctx.services.items() if k.startswith(probe.dst_ip + ":")))
        if probe.proto == "icmp":
            # kube-proxy's semantics: a ClusterIP is no host, it answers only its ports
            reason = "rejected on %s: %s is Service %s's ClusterIP, which answers only on its ports (%s), not ping" % (
                where,
                probe.dst_ip,
                owner_svc,
                ports,
            )
            return "rejected", reason, {"where": where, "kind": "service", "object": owner_svc}
        reason = "rejected on %s: Service %s has no port %s/%s (only %s)" % (
            where,
            owner_svc,
            probe.dport,
            probe.proto,
            ", ".join(sorted(k.split(":")[1] for k, v in ctx.services.items() if k.startswith(probe.dst_ip + ":"))),
        )
        return "rejected", reason, {"where": where, "kind": "service", "object": owner_svc}
    if re.search(r"(^|\s)reject\b", e.text) or no_ep:
        return (
            "rejected",
            "rejected on %s: Service %s has no ready endpoints" % (where, svc),
            {
                "where": where,
                "kind": "service",
                "object": svc,
            },
        )
    return (
        "dropped",
        "dropped on %s by %s (Service %s)" % (where, full, svc),
        {
            "where": where,
            "kind": "service",
            "object": svc,
        },
    )


def no_route(ctx, place, dst, r):
    where = tm.where_short(place)
    cidr, owner = tm.owner(ctx, dst)
    if ctx.routing == "bgp" and owner in ctx.bird_down:
        return (
            "no-route",
            "no route to %s on %s: BIRD is not running on %s, which announces %s" % (dst, where, owner, cidr),
            {"where": where, "kind": "bgp", "object": "bird on %s" % owner},
        )
    if ctx.routing == "bgp" and where in ctx.bird_down:
        return (
            "no-route",
            "no route to %s on %s: BIRD is not running there" % (dst, where),
            {"where": where, "kind": "bgp", "object": "bird on %s" % where},
        )
    return (
        "no-route",
        "no route to %s on %s (%s)" % (dst, where, r.get("error")),
        {"where": where, "kind": "route", "object": cidr or dst},
    )


def outcome(probe, ctx, look, state, ans, place, ns, route, hops):
    """No rule stopped the probe: the socket's answer decides."""
    target = state.get("endpoint") or ("%s:%s" % (probe.dst_ip, probe.dport) if probe.dport else probe.dst_ip)
    where = tm.where_short(place) if place else "?"
    if probe.outcome == "reply":
        said = "its kernel answered the echo" if probe.proto == "icmp" else "a socket listens there and answered"
        hops.append(_answer_hop(probe, ctx, ans, "%s: %s" % (target, said), "accept"))
        return "delivered", "delivered to %s; %s" % (target, _answer_word(probe)), None
    if probe.outcome == "refused":
        hops.append(_answer_hop(probe, ctx, ans, "nothing listens on %s: %s" % (target, probe.detail), "reject"))
        return (
            "refused",
            "refused: nothing listens on %s (%s)" % (target, probe.detail),
            {"where": where, "kind": "listen", "object": target},
        )
    if probe.size and probe.outcome != "reply":
        too_big = _mtu_culprit(probe, ctx, look, state)
        if too_big:
            return too_big
    if ctx.stale_conntrack:
        return stale_conntrack(ctx, hops)
    if probe.outcome == "unreachable":
        return (
            "no-route",
            "unreachable: %s (last seen on %s)" % (probe.detail, where),
            {"where": where, "kind": "route", "object": probe.dst_ip},
        )
    bad = _fdb_mismatch(ctx, hops, state, probe)
    if bad:
        return "dropped", bad[0], bad[1]
    return "lost", "lost after %s: no answer within the timeout and no rule dropped it" % where, None


def _mtu_culprit(probe, ctx, look, state):
    """A DF probe bigger than a route or device on its way: FROM's own
    route (a pod's default route carries the tunnel's MTU), then its node's
    route onward (a pod allowed more than the overlay takes is dropped at
    the node's tunnel device, or where a smaller veth enters the node)."""
    dst = (state.get("endpoint") or probe.dst_ip).split(":")[0]
    src = ctx.places.get(ctx.source_ns, tm.Place(ctx.source_ns))
    steps = [(ctx.source_ns, src)]
    if src.kind == "pod":
        steps += [(ns, p) for ns, p in ctx.places.items() if p.kind == "node" and p.node == src.node]
    first_mtu = None
    for ns, place in steps:
        r = look.route(ns, dst)
        mtu = r.get("mtu")
        first_mtu = first_mtu or mtu
        if mtu and probe.size > mtu:
            where = tm.where_short(place)
            more = "" if ns == ctx.source_ns else " (FROM's own %s allows %s)" % (steps[0][1].where, first_mtu)
            reason = "dropped on %s: the %d-byte probe with DF does not fit %s (MTU %d)%s" % (
                where,
                probe.size,
                "the route via %s" % r.get("dev") if r.get("mtu_of") == "route" else r.get("dev"),
                mtu,
                more,
            )
            return "dropped", reason, {"where": where, "kind": "mtu", "object": r.get("dev")}
    return None


def _fdb_mismatch(ctx, hops, state, probe):
    dst = (state.get("endpoint") or probe.dst_ip).split(":")[0]
    cidr, owner = tm.owner(ctx, dst)
    for h in hops:
        if h["step"] == "vxlan" and h["what"].startswith("encapsulated"):
            m = re.search(r"fdb (\S+) dst (\S+)", h["object"])
            if m and owner and ctx.node_ips.get(m.group(2)) != owner:
                where = h["where"].replace("node ", "")
                return (
                    "dropped on %s: the VXLAN FDB entry %s sends %s (%s's podCIDR %s) to %s"
                    % (where, "%s dst %s" % m.groups(), dst, owner, cidr, ctx.node_ips.get(m.group(2), m.group(2))),
                    {"where": where, "kind": "fdb", "object": "%s dst %s dev podnet.1" % m.groups()},
                )
    return None


def _answer_word(probe):
    return {"tcp": "a SYN-ACK came back", "udp": "an answer came back", "icmp": "an echo reply came back"}[probe.proto]


def _answer_hop(probe, ctx, ans, what, verdict):
    # the destination pod's view first; a node or the external host answers
    # for itself when it is the destination
    order = sorted(ans.items(), key=lambda kv: ctx.places.get(kv[0], tm.Place(kv[0])).kind != "pod")
    for ns, events in order:
        place = ctx.places.get(ns, tm.Place(ns))
        if ns != ctx.source_ns and (place.kind == "pod" or ns == ctx.dest_ns):
            pk = next((e.pkt for e in events if e.kind == "packet"), {})
            flags = pk.get("flags") or pk.get("icmp_type") or pk.get("proto") or ""
            # nft prints TCP flags it has no single name for as hex
            flags = {"0x12": "SYN-ACK", "0x14": "RST-ACK", "rst": "RST"}.get(flags, flags)
            if pk.get("sport"):
                flags = "port %s -> %s %s" % (pk["sport"], pk.get("dport"), flags)
            return tm.hop(
                place, ns, "deliver", what, "reply %s -> %s %s" % (pk.get("saddr"), pk.get("daddr"), flags), verdict
            )
    return {"where": "?", "netns": "", "step": "deliver", "what": what, "object": probe.detail, "verdict": verdict}


def stale_conntrack(ctx, hops):
    """The probe followed an existing conntrack entry DNATed to an address
    that is no endpoint any more: whatever happened after is its consequence."""
    # the entry lives in the conntrack table of FROM's node (read there before the probe)
    src = ctx.places.get(ctx.source_ns, tm.Place(ctx.source_ns))
    node = src.node or tm.where_short(src)
    node_ns = next((ns for ns, p in ctx.places.items() if p.kind == "node" and p.node == node), ctx.source_ns)
    what = "an existing conntrack entry for this 5-tuple sends it to an address that is no endpoint any more"
    hops.append(tm.hop(ctx.places.get(node_ns, src), node_ns, "conntrack", what, ctx.stale_conntrack, "dnat"))
    return (
        "dropped",
        "dropped after %s: a stale conntrack entry steers the probe to a former endpoint: %s"
        % (node, ctx.stale_conntrack),
        {"where": node, "kind": "conntrack", "object": ctx.stale_conntrack},
    )
