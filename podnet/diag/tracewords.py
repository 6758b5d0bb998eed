"""From the kernel's trace events to a story in words (pure: no I/O).

`parse(ns, lines)` turns `nft monitor` trace lines into Events. `explain`
walks the namespaces the probe crossed, in the order it crossed them (the
TTL falls by one per routing hop, so a higher TTL came first), and turns
each namespace's chain visits, plus the routing lookups a `Look` answers
(route get, neighbour, FDB, sysctl: injected so tests use a fake), into
hops, then a verdict, a reason and a culprit (see the contract in
podnet/diag/trace.py).

nf_trace ids are not stable along a path (the kernel derives them from the
skb, which changes at a forward), so events are tied to the probe by the
packet's own fields: ports (or the ICMP id) say the direction, the IP id
says which transmission (a TCP SYN may be retransmitted, and a retransmit
can be DNATed to another endpoint).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Protocol

TRACE_TABLE = "podnet-trace"
_LINE = re.compile(r"^trace id (\S+) (\S+) (\S+) (\S+) (.*)$")
_VERDICT = re.compile(r"^rule (.*) \(verdict ([^)]*)\)\s*$")
_NAMED = re.compile(r"-[A-Z0-9]{6,}-([^/\s]+/[^/\s]+)")


@dataclass
class Event:
    ns: str
    id: str
    family: str
    table: str
    chain: str
    kind: str  # packet | rule | policy
    text: str = ""
    verdict: str = ""
    pkt: dict[str, Any] = field(default_factory=dict)


def packet_fields(text):
    f: dict[str, Any] = {}
    for k, v in re.findall(r'\b(iif|oif) "([^"]+)"', text):
        f[k] = v
    for k, v in re.findall(r"\bip (saddr|daddr|ttl|id|length) (\S+)", text):
        f[k] = int(v) if k in ("ttl", "id", "length") else v
    for p, k, v in re.findall(r"\b(tcp|udp) (sport|dport) (\d+)", text):
        f["proto"], f[k] = p, int(v)
    m = re.search(r"\btcp flags == (\S+)", text)
    if m:
        f["flags"] = m.group(1)
    for k, v in re.findall(r"\bicmp (type|code|id) (\S+)", text):
        f["icmp_" + k] = v
        f.setdefault("proto", "icmp")
    return f


def parse(ns, lines):
    """Events of one namespace in the order the monitor printed them."""
    out, last = [], {}
    for line in lines:
        m = _LINE.match(line.strip())
        if not m:
            continue
        tid, family, table, chain, rest = m.groups()
        if rest.startswith("packet:"):
            last[tid] = packet_fields(rest)
            out.append(Event(ns, tid, family, table, chain, "packet", rest[7:].strip(), "", last[tid]))
        elif rest.startswith("rule "):
            v = _VERDICT.match(rest)
            text, verdict = (v.group(1), v.group(2)) if v else (rest[5:], "")
            out.append(Event(ns, tid, family, table, chain, "rule", text, verdict, last.get(tid, {})))
        elif rest.startswith("policy ") or rest.startswith("verdict "):
            out.append(Event(ns, tid, family, table, chain, "policy", "", rest.split()[1], last.get(tid, {})))
    return out


# ---- the context explain needs ---------------------------------------------


class Look(Protocol):
    def route(self, ns: str, dst: str) -> dict[str, Any]: ...
    def neighbour(self, ns: str, dev: str, ip: str) -> str | None: ...
    def fdb(self, ns: str, dev: str) -> dict[str, str]: ...
    def sysctl(self, ns: str, key: str) -> str | None: ...


@dataclass
class Probe:
    proto: str
    sport: int
    src_ip: str
    dst_ip: str
    dport: int | None
    outcome: str  # reply | refused | timeout | unreachable | frag-needed | msgsize | error
    detail: str = ""
    size: int | None = None


@dataclass
class Place:
    where: str  # "pod default/client", "node node2", "external"
    node: str | None = None  # the node's name for a node netns
    kind: str = "pod"  # pod | node | external


@dataclass
class Context:
    source_ns: str
    places: dict[str, Place]  # netns -> what it is
    node_ips: dict[str, str] = field(default_factory=dict)  # node IP -> node name
    pod_cidrs: dict[str, str] = field(default_factory=dict)  # podCIDR -> node name
    services: dict[str, str] = field(default_factory=dict)  # "ip:port" -> ns/name
    routing: str = "vxlan"
    bird_down: list[str] = field(default_factory=list)  # nodes where BIRD should run and does not
    stale_conntrack: str | None = None  # a conntrack entry DNATed to a non-endpoint
    ready_endpoints: int | None = None  # of the Service traced to, when TO is one


def _where_short(place):
    return place.node if place.kind == "node" else place.where


def _is_forward(probe, pkt):
    if probe.proto == "icmp":
        return pkt.get("icmp_type") == "echo-request"
    return pkt.get("sport") == probe.sport and pkt.get("proto") == probe.proto


def _is_answer(probe, pkt):
    if probe.proto == "icmp":
        return pkt.get("icmp_type") == "echo-reply"
    return pkt.get("dport") == probe.sport and pkt.get("proto") == probe.proto


def probe_events(probe, by_ns, source_ns):
    """Forward events of the first transmission, per namespace, in order of
    the path; and the answer events per namespace. The probe's packets are
    known by the IP id of the first one FROM sent (a masquerade may change
    the source port, never the id); answers by going back to an address
    and port a forward packet came from."""
    first_id = None
    for e in by_ns.get(source_ns, []):
        if e.kind == "packet" and _is_forward(probe, e.pkt):
            first_id = e.pkt.get("id")
            break

    def forward(pkt):
        if first_id is None:
            return _is_forward(probe, pkt)
        if pkt.get("id") != first_id or pkt.get("proto") != probe.proto:
            return False
        return probe.proto != "icmp" or pkt.get("icmp_type") == "echo-request"

    fwd: dict[str, list[Event]] = {}
    senders = set()
    for ns, events in by_ns.items():
        for e in events:
            if e.table != TRACE_TABLE and forward(e.pkt):
                fwd.setdefault(ns, []).append(e)
                senders.add((e.pkt.get("saddr"), e.pkt.get("sport")))
        # a namespace with only the trace table's own events was still crossed
        if ns not in fwd:
            seen = [e for e in events if e.kind == "packet" and forward(e.pkt)]
            if seen:
                fwd[ns] = seen[:1]
                senders.add((seen[0].pkt.get("saddr"), seen[0].pkt.get("sport")))
    ans: dict[str, list[Event]] = {}
    for ns, events in by_ns.items():
        for e in events:
            if forward(e.pkt):
                continue
            back = probe.proto != "icmp" and (e.pkt.get("daddr"), e.pkt.get("dport")) in senders
            if back or _is_answer(probe, e.pkt) or e.pkt.get("icmp_type") == "destination-unreachable":
                ans.setdefault(ns, []).append(e)

    def ttl(ns):
        return max((e.pkt.get("ttl", 0) for e in fwd[ns]), default=0)

    order = sorted(fwd, key=lambda ns: (ns != source_ns, -ttl(ns)))
    if source_ns not in order:
        order.insert(0, source_ns)
    return order, fwd, ans


def _hop(place, ns, step, what, obj="", verdict="continue"):
    return {"where": place.where, "netns": ns, "step": step, "what": what, "object": obj, "verdict": verdict}


def _route_hops(ctx, look, ns, place, dst, out_dev=None):
    """The routing decision of this namespace for dst, in words; with the
    VXLAN neighbour/FDB entries or the BGP origin behind it."""
    r = look.route(ns, dst)
    if r.get("error"):
        return [_hop(place, ns, "route", "no route to %s: %s" % (dst, r["error"]), "ip route get %s" % dst, "drop")], r
    dev, gw = r.get("dev"), r.get("gateway")
    line = r.get("line") or ""
    if dev == "podnet.1":
        mac = look.neighbour(ns, dev, gw) if gw else None
        outer = look.fdb(ns, dev).get(mac or "", None)
        node = ctx.node_ips.get(outer or "", outer or "?")
        what = "encapsulated in VXLAN (VNI 1, UDP 8472) to %s (outer %s -> %s)" % (node, _own_ip(ctx, place), outer)
        obj = "%s; neigh %s lladdr %s; fdb %s dst %s" % (line, gw, mac, mac, outer)
        return [_hop(place, ns, "vxlan", what, obj)], r
    if dev == "cni0":
        return [_hop(place, ns, "bridge", "out on bridge cni0 to the pod's veth (%s is local)" % dst, line)], r
    if dev == "podnet.wg":
        return [_hop(place, ns, "wireguard", "encrypted by WireGuard podnet.wg", line)], r
    if place.kind == "pod" and gw:
        return [_hop(place, ns, "route", "leaves on %s via %s, its node's bridge cni0" % (dev, gw), line)], r
    if gw and r.get("proto") == "bird":
        what = "next hop %s (%s), a route BIRD learned over BGP (proto bird)" % (ctx.node_ips.get(gw, gw), gw)
        return [_hop(place, ns, "bgp", what, line)], r
    if gw:
        return [_hop(place, ns, "route", "next hop %s (%s) on %s" % (ctx.node_ips.get(gw, gw), gw, dev), line)], r
    return [_hop(place, ns, "route", "out on %s (%s is on that link)" % (dev, dst), line)], r


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
        return _hop(place, e.ns, "nft", "DNAT to endpoint %s, %s" % (target, why), full, "dnat")
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
        return _hop(place, e.ns, "nft", "the Service has no usable endpoints here (%s)" % v, full, "reject")
    if v.startswith("goto") and named and e.table == "podnet-proxy":
        state.setdefault("service", named.group(1))
        what = "Service %s matched %s:%s (chain %s)" % (named.group(1), e.pkt.get("daddr"), e.pkt.get("dport"), e.chain)
        return _hop(place, e.ns, "nft", what, full)
    if v.startswith("jump") and "policy-" in v and named:
        state.setdefault("policies", []).append(named.group(1))
        return _hop(place, e.ns, "nft", "NetworkPolicy %s applies (%s)" % (named.group(1), e.chain), full)
    if v.startswith("goto") and e.table == "podnet-policy" and named:
        return _hop(place, e.ns, "nft", "pod %s is isolated by NetworkPolicy (%s)" % (named.group(1), e.chain), full)
    if "masquerade" in e.text:
        return _hop(place, e.ns, "nft", "masquerade: source NAT to the node's address", full, "snat")
    if v == "accept" and e.table == "podnet-policy" and "comment" in e.text:
        comment = e.text.split("comment", 1)[1].strip().strip('"')
        return _hop(place, e.ns, "nft", "NetworkPolicy allows it: %s" % comment, full, "accept")
    if v in ("drop", "reject") or e.text.startswith("reject"):
        return _hop(place, e.ns, "nft", "%s by %s %s %s" % (_drop_word(e), e.family, e.table, e.chain), full, v)
    if not e.table.startswith("podnet-") and v in ("accept",):
        return _hop(place, e.ns, "nft", "accepted by table %s %s chain %s" % (e.family, e.table, e.chain), full, v)
    return None


def _drop_word(e):
    return "rejected" if e.text.startswith("reject") or " reject" in e.text else "dropped"


def _stopper(events):
    """The first rule (or chain policy) that ended the packet."""
    for e in events:
        if e.table == TRACE_TABLE:
            continue
        if (e.kind == "rule" and (e.verdict in ("drop", "reject") or e.text.startswith("reject"))) or (
            e.kind == "policy" and e.verdict == "drop"
        ):
            return e
    return None


def _culprit_for(ctx, place, e, events, state, probe):
    where = _where_short(place)
    # counters change with every packet: leave their values out of the object
    rule = re.sub(r"counter packets \d+ bytes \d+", "counter", e.text) if e.text else "policy " + e.verdict
    full = "%s %s %s: %s" % (e.family, e.table, e.chain, rule)
    if e.table == "podnet-lab-router" and "fib daddr oif missing" in e.text:
        return _no_route(ctx, place, probe.dst_ip, {"error": "the external host has no route (%s)" % full})
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
    if e.text.startswith("reject") or no_ep:
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


def explain(probe, by_ns, ctx, look):
    """{"verdict", "reason", "culprit", "endpoint", "hops"} for the contract."""
    order, fwd, ans = probe_events(probe, by_ns, ctx.source_ns)
    hops: list[dict[str, Any]] = []
    state: dict[str, Any] = {}
    verdict = reason = None
    culprit = None
    last_place, last_ns, last_route = None, None, None
    for ns in order:
        place = ctx.places.get(ns, Place(ns))
        events = fwd.get(ns, [])
        last_place, last_ns = place, ns
        source = ns == ctx.source_ns
        pk = next((e.pkt for e in events if e.kind == "packet"), {})
        if not source and place.kind == "pod":
            hops.append(
                _hop(
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
            hops.append(_hop(place, ns, arrive[0], arrive[1], ""))
        for e in events:
            if e.kind == "rule":
                h = _nft_hop(ctx, place, e, state)
                if h:
                    hops.append(h)
        stop = _stopper(events)
        if stop is not None:
            if stop.kind == "policy":
                what = "dropped by the policy of %s %s %s" % (stop.family, stop.table, stop.chain)
                hops.append(
                    _hop(
                        place, ns, "nft", what, "%s %s %s: policy drop" % (stop.family, stop.table, stop.chain), "drop"
                    )
                )
            verdict, reason, culprit = _culprit_for(ctx, place, stop, events, state, probe)
            break
        routed = next((e.pkt.get("daddr") for e in reversed(events) if e.pkt.get("oif")), None)
        dst = routed or (state.get("endpoint") or probe.dst_ip).split(":")[0]
        if source:
            dst = probe.dst_ip if not state.get("endpoint") else dst
        elif routed is None and look.sysctl(ns, "net.ipv4.ip_forward") == "0":
            where = _where_short(place)
            verdict = "dropped"
            reason = "dropped on %s: net.ipv4.ip_forward is 0, the node does not forward" % where
            culprit = {"where": where, "kind": "sysctl", "object": "net.ipv4.ip_forward"}
            hops.append(
                _hop(place, ns, "route", "not forwarded: net.ipv4.ip_forward = 0", "net.ipv4.ip_forward = 0", "drop")
            )
            break
        hs, r = _route_hops(ctx, look, ns, place, dst)
        hops += hs
        last_route = r
        if r.get("error"):
            verdict, reason, culprit = _no_route(ctx, place, dst, r)
            break
        cidr, owner = _owner(ctx, dst)
        if place.kind == "node" and owner and owner != place.node and r.get("prefix") == "default":
            # a pod address left to the default route: this node lacks the route to its owner's podCIDR
            r = dict(
                r,
                error="only the default route (%s) matches, no route to %s's podCIDR %s" % (r.get("line"), owner, cidr),
            )
            hops[-1]["verdict"] = "drop"
            verdict, reason, culprit = _no_route(ctx, place, dst, r)
            break
    if verdict is None:
        verdict, reason, culprit = _outcome(probe, ctx, look, state, ans, last_place, last_ns, last_route, hops)
    return {"verdict": verdict, "reason": reason, "culprit": culprit, "endpoint": state.get("endpoint"), "hops": hops}


def _owner(ctx, ip):
    import ipaddress

    for cidr, node in ctx.pod_cidrs.items():
        if ipaddress.ip_address(ip) in ipaddress.ip_network(cidr):
            return cidr, node
    return None, None


def _no_route(ctx, place, dst, r):
    where = _where_short(place)
    cidr, owner = _owner(ctx, dst)
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


def _outcome(probe, ctx, look, state, ans, place, ns, route, hops):
    """No rule stopped the probe: the socket's answer decides."""
    target = state.get("endpoint") or ("%s:%s" % (probe.dst_ip, probe.dport) if probe.dport else probe.dst_ip)
    where = _where_short(place) if place else "?"
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
        # the entry lives in the conntrack table of FROM's node (read there before the probe)
        src = ctx.places.get(ctx.source_ns, Place(ctx.source_ns))
        node = src.node or _where_short(src)
        node_ns = next((ns for ns, p in ctx.places.items() if p.kind == "node" and p.node == node), ctx.source_ns)
        what = "an existing conntrack entry for this 5-tuple sends it to an address that is no endpoint any more"
        hops.append(_hop(ctx.places.get(node_ns, src), node_ns, "conntrack", what, ctx.stale_conntrack, "dnat"))
        return (
            "dropped",
            "dropped after %s: a stale conntrack entry steers the probe to a former endpoint: %s"
            % (node, ctx.stale_conntrack),
            {"where": node, "kind": "conntrack", "object": ctx.stale_conntrack},
        )
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
    """A DF probe bigger than a device on its way: FROM's own route, then
    its node's route onward (a pod's eth0 MTU above the overlay's is
    dropped where the veth enters the node, before any hook: no event)."""
    dst = (state.get("endpoint") or probe.dst_ip).split(":")[0]
    src = ctx.places.get(ctx.source_ns, Place(ctx.source_ns))
    steps = [(ctx.source_ns, src)]
    if src.kind == "pod":
        steps += [(ns, p) for ns, p in ctx.places.items() if p.kind == "node" and p.node == src.node]
    first_mtu = None
    for ns, place in steps:
        r = look.route(ns, dst)
        mtu = r.get("mtu")
        first_mtu = first_mtu or mtu
        if mtu and probe.size > mtu:
            where = _where_short(place)
            more = "" if ns == ctx.source_ns else " (FROM's own %s allows %s)" % (steps[0][1].where, first_mtu)
            reason = "dropped on %s: the %d-byte probe with DF does not fit %s (MTU %d)%s" % (
                where,
                probe.size,
                r.get("dev"),
                mtu,
                more,
            )
            return "dropped", reason, {"where": where, "kind": "mtu", "object": r.get("dev")}
    return None


def _fdb_mismatch(ctx, hops, state, probe):
    dst = (state.get("endpoint") or probe.dst_ip).split(":")[0]
    cidr, owner = _owner(ctx, dst)
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
    for ns, events in ans.items():
        place = ctx.places.get(ns, Place(ns))
        if place.kind == "pod" and ns != ctx.source_ns:
            pk = next((e.pkt for e in events if e.kind == "packet"), {})
            flags = pk.get("flags") or pk.get("icmp_type") or pk.get("proto") or ""
            # nft prints TCP flags it has no single name for as hex
            flags = {"0x12": "SYN-ACK", "0x14": "RST-ACK", "rst": "RST"}.get(flags, flags)
            if pk.get("sport"):
                flags = "port %s -> %s %s" % (pk["sport"], pk.get("dport"), flags)
            return _hop(
                place, ns, "deliver", what, "reply %s -> %s %s" % (pk.get("saddr"), pk.get("daddr"), flags), verdict
            )
    return {"where": "?", "netns": "", "step": "deliver", "what": what, "object": probe.detail, "verdict": verdict}
