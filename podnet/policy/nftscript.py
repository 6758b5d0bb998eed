"""A policy Plan as ONE `nft -f` script that replaces the table atomically.

Why `inet` (not `ip` as the proxy's table): the forward hook of an inet table
sees IPv4 (routed, and bridged through br_netfilter) and IPv6 alike, so the
day pods get IPv6 addresses the same table and chains take `ip6` rules; and
it is the family of the node's other filter-ish table (`inet podnet-node`).
The table is deleted and rebuilt in the same transaction ("add, delete, add",
see podnet.kernel.nft): the kernel never shows a half-written policy, and the
conntrack entries of established connections (which live outside the table)
keep their connections going across the swap. Output is deterministic (sorted),
so "did the policy change?" is a string comparison.
"""

import hashlib
import re

from podnet.kernel.flowsrc import NFLOG_GROUP
from podnet.kernel.nft import quote

TABLE = "podnet-policy"
FAMILY = "inet"
COMMENT_MAX = 120  # the kernel keeps 128 bytes of comment
LOG_PREFIX, LOG_PREFIX_MAX = "pn:np:", 63  # NFLOG prefixes: 64 bytes with the NUL


def _c(text):
    return quote(text[:COMMENT_MAX])


def _set(items):
    items = list(items)
    return items[0] if len(items) == 1 else "{ %s }" % ", ".join(items)


def _range(lo, hi):
    return str(lo) if lo == hi else "%d-%d" % (lo, hi)


def _addrs(ref):
    if isinstance(ref, str):
        return "@" + ref
    return _set(str(n) if n.prefixlen < 32 else str(n.network_address) for n in ref)


def _pairs(ref):
    return "@" + ref if isinstance(ref, str) else _set("%s . %d" % pair for pair in ref)


def drop_log_prefix(chain_name, chain):
    """The NFLOG prefix of a pod chain's final drop, for the flow log
    (podnet.flows): "pn:np:<direction>:" and the policies that isolate the
    pod (its chain's jumps, "ns/name"), cut to the kernel's 64 bytes."""
    direction = "ingress" if chain_name.startswith("ingress-") else "egress"
    pols = [r.verdict.split(" ", 1)[1].split("-", 3)[-1] for r in chain.rules if r.verdict.startswith("jump policy-")]
    return (LOG_PREFIX + "%s:%s" % (direction, ",".join(pols)))[:LOG_PREFIX_MAX]


def rule_text(rule, log_prefix=None):
    # cheap compares first: a packet for another port or protocol leaves the
    # rule before the set lookup (bench/policy.py: connection latency)
    parts = []
    if rule.proto:
        parts.append("meta l4proto %s" % rule.proto)
    if rule.dports is not None:
        parts.append("th dport %s" % _set(_range(lo, hi) for lo, hi in rule.dports))
    if rule.saddr is not None:
        parts.append("ip saddr %s" % _addrs(rule.saddr))
    if rule.daddr is not None:
        parts.append("ip daddr %s" % _addrs(rule.daddr))
    if isinstance(rule.daddr_dport, tuple) and len(rule.daddr_dport) == 1:
        parts.append("ip daddr %s th dport %d" % rule.daddr_dport[0])  # nft: no singleton concatenation
    elif rule.daddr_dport is not None:
        parts.append("ip daddr . th dport %s" % _pairs(rule.daddr_dport))
    if rule.counter:
        parts.append("counter")
    if log_prefix is not None:  # a copy of the dropped packet to the agent's flow log
        parts.append("log prefix %s group %d" % (quote(log_prefix), NFLOG_GROUP))
    parts.append(rule.verdict)
    if rule.comment:
        parts.append("comment %s" % _c(rule.comment))
    return " ".join(parts)


def set_lines(T, name, s):
    if s.type == "ipv4_addr":
        elems = ", ".join(str(n) if n.prefixlen < 32 else str(n.network_address) for n in s.elements)
        decl = "type ipv4_addr; flags interval;"
    else:
        elems = ", ".join("%s . %d" % pair for pair in s.elements)
        decl = "type %s;" % s.type
    return [
        "add set %s %s { %s comment %s; }" % (T, name, decl, _c(s.comment)),
        "add element %s %s { %s }" % (T, name, elems),
    ]


def render(plan, table=TABLE):
    T = "%s %s" % (FAMILY, table)
    out = [
        "add chain %s egress { type filter hook forward priority filter - 1; policy accept; comment %s; }"
        % (T, _c("pods' egress: sender side")),
        "add chain %s ingress { type filter hook forward priority filter; policy accept; comment %s; }"
        % (T, _c("pods' ingress: receiver side")),
    ]
    for name, chain in plan.chains.items():
        out.append(
            "add chain %s %s { comment %s; }" % (T, name, _c(chain.comment))
            if chain.comment
            else "add chain %s %s" % (T, name)
        )
    for name, st in plan.sets.items():
        out += set_lines(T, name, st)
    out.append("add set %s node-ips { type ipv4_addr; comment %s; }" % (T, _c("this node: probes are always allowed")))
    for m, what in (
        ("ingress-pods", "local pods isolated for ingress"),
        ("egress-pods", "local pods isolated for egress"),
    ):
        out.append("add map %s %s { type ipv4_addr : verdict; comment %s; }" % (T, m, _c(what)))
    if plan.node_ips:
        out.append("add element %s node-ips { %s }" % (T, ", ".join(str(ip) for ip in plan.node_ips)))
    for m, pods in (("ingress-pods", plan.ingress_pods), ("egress-pods", plan.egress_pods)):
        if pods:
            out.append(
                "add element %s %s { %s }"
                % (T, m, ", ".join("%s : goto %s" % (ip, name) for ip, name in sorted(pods.items())))
            )
    out += [
        "add rule %s egress ct state established,related accept comment %s" % (T, _c("replies and open connections")),
        "add rule %s egress ip saddr vmap @egress-pods" % T,
        "add rule %s ingress ct state established,related accept comment %s" % (T, _c("replies and open connections")),
        "add rule %s ingress ip saddr @node-ips accept comment %s" % (T, _c("from this node (probes)")),
        "add rule %s ingress ip daddr vmap @ingress-pods" % T,
    ]
    for name, chain in plan.chains.items():
        prefix = drop_log_prefix(name, chain) if name.startswith(("ingress-", "egress-")) else None
        out += [
            "add rule %s %s %s" % (T, name, rule_text(r, prefix if r.verdict == "drop" else None)) for r in chain.rules
        ]
    body = "\n".join(out) + "\n"
    # the table's comment names the plan, for people reading `nft list table`;
    # nft -j (1.0.6) leaves a table's comment out, so an empty set carries it
    # too, where the JSON listing shows it (the agent and the lab tests read it)
    named = _c("podnet NetworkPolicy plan %s (owned by the node agent; do not edit)" % digest(body))
    head = [
        "add table %s" % T,
        "delete table %s" % T,
        "add table %s { comment %s; }" % (T, named),
        "add set %s %s { type ipv4_addr; comment %s; }" % (T, PLAN_SET, named),
    ]
    return "\n".join(head) + "\n" + body


_PLAN = re.compile(r"podnet NetworkPolicy plan ([0-9a-f]+)")
PLAN_SET = "plan-id"
HEAD_LINES = 4


def applied_plan(script):
    """The plan digest a script of render()'s names, or None."""
    m = _PLAN.search(script or "")
    return m.group(1) if m else None


def plan_in_table(items):
    """The plan digest a table holds, from nft's JSON listing
    (podnet.kernel.nft.list_table), or None (no table, or not ours)."""
    for item in items or []:
        s = item.get("set")
        if s and s.get("name") == PLAN_SET:
            m = _PLAN.search(s.get("comment") or "")
            return m.group(1) if m else None
    return None


def digest(script):
    return hashlib.sha256(script.encode()).hexdigest()[:16]
