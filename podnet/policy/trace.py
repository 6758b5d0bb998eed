"""A packet tracer over a policy Plan: the in-memory fake of the kernel side.

It walks a Plan the way nftables walks the rendered table (two base chains on
the forward hook, vmap goto, jump and fall-through, accept ending only its own
base chain), so the NetworkPolicy semantics can be unit-tested in
milliseconds over whole truth tables. tests/kernel/test_netpol.py runs the
same cases (tests/netpol_cases.py) on the real kernel.
"""

import ipaddress


def _elements(plan, ref):
    return plan.sets[ref].elements if isinstance(ref, str) else ref


def rule_matches(plan, rule, src, dst, proto, dport):
    for ip, ref in ((src, rule.saddr), (dst, rule.daddr)):
        if ref is not None and not any(ip in n for n in _elements(plan, ref)):
            return False
    if rule.proto is not None and rule.proto != proto:
        return False
    if rule.dports is not None and not any(lo <= dport <= hi for lo, hi in rule.dports):
        return False
    if rule.daddr_dport is not None and (dst, dport) not in _elements(plan, rule.daddr_dport):
        return False
    return True


def _chain(plan, name, pkt, path, depth=0):
    """-> "accept" | "drop" | None (fell off the end: back to the caller)."""
    if depth > 16:
        raise RuntimeError("chain loop at %s" % name)
    path.append(name)
    for rule in plan.chains[name].rules:
        if not rule_matches(plan, rule, *pkt):
            continue
        if rule.verdict.startswith("jump "):
            v = _chain(plan, rule.verdict[5:], pkt, path, depth + 1)
            if v is not None:
                return v
            continue
        if rule.verdict in ("accept", "drop"):
            return rule.verdict
        if rule.verdict == "return":
            return None
        raise ValueError("tracer does not know verdict %r" % rule.verdict)
    return None


def node_verdict(plan, src, dst, proto, dport, path=None):
    """What one node's table does to a NEW connection it forwards."""
    src, dst = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    pkt = (src, dst, proto, dport)
    path = [] if path is None else path
    # base chain egress (priority filter - 1), then ingress (filter)
    if src in plan.egress_pods:
        if _chain(plan, plan.egress_pods[src], pkt, path) == "drop":
            return "drop"
    if src in plan.node_ips:
        return "accept"
    if dst in plan.ingress_pods:
        if _chain(plan, plan.ingress_pods[dst], pkt, path) == "drop":
            return "drop"
    return "accept"


def cluster_verdict(plans, src_node, dst_node, src, dst, proto, dport):
    """A connection between pods: the sender's node forwards it, then the
    receiver's node (once when they are the same). A pod talking to itself
    never leaves its namespace: always allowed."""
    if src == dst:
        return "accept"
    for node in dict.fromkeys(n for n in (src_node, dst_node) if n in plans):
        if node_verdict(plans[node], src, dst, proto, dport) == "drop":
            return "drop"
    return "accept"
