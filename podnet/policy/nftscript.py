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


def _elements(s, elements):
    if s.type == "ipv4_addr . inet_service":
        return ", ".join("%s . %d" % pair for pair in elements)
    return ", ".join(str(n) if n.prefixlen < 32 else str(n.network_address) for n in elements)


def set_lines(T, name, s):
    elems = _elements(s, s.elements)
    decl = "type ipv4_addr; flags interval;" if s.type == "ipv4_addr interval" else "type %s;" % s.type
    head = "add set %s %s { %s comment %s; }" % (T, name, decl, _c(s.comment))
    # a set may be empty (a peer naming nobody now): nft rejects `{ }`
    return [head, "add element %s %s { %s }" % (T, name, elems)] if s.elements else [head]


def _chain_piece(T, name, chain):
    """A chain's declaration and its rules, as render() writes them."""
    decl = (
        "add chain %s %s { comment %s; }" % (T, name, _c(chain.comment))
        if chain.comment
        else "add chain %s %s" % (T, name)
    )
    prefix = drop_log_prefix(name, chain) if name.startswith(("ingress-", "egress-")) else None
    rules = [
        "add rule %s %s %s" % (T, name, rule_text(r, prefix if r.verdict == "drop" else None)) for r in chain.rules
    ]
    return decl, rules


def _map_line(T, m, pods):
    if not pods:
        return ""
    return "add element %s %s { %s }" % (
        T,
        m,
        ", ".join("%s : goto %s" % (ip, name) for ip, name in sorted(pods.items())),
    )


def _node_ips_line(T, ips):
    return "add element %s node-ips { %s }" % (T, ", ".join(str(ip) for ip in ips)) if ips else ""


def _h(lines):
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


def plan_digest(hashes):
    """The plan's name: a digest of its pieces' digests (chains, sets, map
    elements, the fixed part), so a partial sync names the plan it leaves
    exactly as a full render of that plan does."""
    return digest("\n".join(sorted("%s %s" % kv for kv in hashes.items())))


def render(plan, table=TABLE):
    return render_full(plan, table)[0]


def render_full(plan, table=TABLE):
    """-> (the script replacing the whole table, the digests of its pieces for diff())."""
    T = "%s %s" % (FAMILY, table)
    hashes = {}
    pieces = {name: _chain_piece(T, name, chain) for name, chain in plan.chains.items()}
    out = [
        "add chain %s egress { type filter hook forward priority filter - 1; policy accept; comment %s; }"
        % (T, _c("pods' egress: sender side")),
        "add chain %s ingress { type filter hook forward priority filter; policy accept; comment %s; }"
        % (T, _c("pods' ingress: receiver side")),
    ]
    fixed = list(out)
    out += [decl for decl, _ in pieces.values()]
    for name, st in plan.sets.items():
        lines = set_lines(T, name, st)
        hashes["set " + name] = _h(lines)
        out += lines
    out.append("add set %s node-ips { type ipv4_addr; comment %s; }" % (T, _c("this node: probes are always allowed")))
    for m, what in (
        ("ingress-pods", "local pods isolated for ingress"),
        ("egress-pods", "local pods isolated for egress"),
    ):
        out.append("add map %s %s { type ipv4_addr : verdict; comment %s; }" % (T, m, _c(what)))
    fixed += out[-3:]
    hashes["node-ips"] = _h([_node_ips_line(T, plan.node_ips)])
    if plan.node_ips:
        out.append(_node_ips_line(T, plan.node_ips))
    for m, pods in (("ingress-pods", plan.ingress_pods), ("egress-pods", plan.egress_pods)):
        hashes["map " + m] = _h([_map_line(T, m, pods)])
        if pods:
            out.append(_map_line(T, m, pods))
    base = [
        "add rule %s egress ct state established,related accept comment %s" % (T, _c("replies and open connections")),
        "add rule %s egress ip saddr vmap @egress-pods" % T,
        "add rule %s ingress ct state established,related accept comment %s" % (T, _c("replies and open connections")),
        "add rule %s ingress ip saddr @node-ips accept comment %s" % (T, _c("from this node (probes)")),
        "add rule %s ingress ip daddr vmap @ingress-pods" % T,
    ]
    out += base
    hashes["fixed"] = _h(fixed + base)
    for name, (decl, rules) in pieces.items():
        hashes["chain " + name] = _h([decl] + rules)
        out += rules
    return _head(T, plan_digest(hashes)) + "\n".join(out) + "\n", hashes


def _head(T, plan_id):
    # the table's comment says where the plan's name is (a partial sync
    # cannot change a table's comment: the kernel keeps the first one); nft
    # -j (1.0.6) leaves a table's comment out anyway, so the plan's digest
    # sits in an empty set's comment, where the JSON listing shows it (the
    # agent and the lab tests read it), and a partial sync replaces that set
    named = _c("podnet NetworkPolicy plan %s (owned by the node agent; do not edit)" % plan_id)
    head = [
        "add table %s" % T,
        "delete table %s" % T,
        "add table %s { comment %s; }"
        % (T, _c("podnet NetworkPolicy (owned by the node agent; do not edit; plan: set %s)" % PLAN_SET)),
        "add set %s %s { type ipv4_addr; comment %s; }" % (T, PLAN_SET, named),
    ]
    return "\n".join(head) + "\n"


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


def diff(old, new, hashes, table=TABLE):
    """The transaction taking the table from Plan `old` (whose pieces'
    digests are `hashes`, from render_full or an earlier diff) to Plan `new`
    -> (script, new hashes); script "" when nothing changed, None when the
    change cannot be written as a difference (a set's declaration changed):
    then render a full one. Unchanged chains and sets are found by identity
    first (podnet.policy.incremental shares them between plans).

    Order, so every reference is valid at each step: new chains and sets;
    changed chains flushed, and map elements that change deleted; chains whose
    comment changed (the kernel keeps a chain's first comment) deleted and
    added again, after the chains that jump to them were flushed; rules of
    new and changed chains; set and map elements; chains and sets nobody uses
    any more deleted; the plan's name replaced."""
    T = "%s %s" % (FAMILY, table)
    h = dict(hashes)
    oc, nc = old.chains, new.chains
    changed = [n for n, c in nc.items() if n in oc and oc[n] is not c and oc[n] != c]
    added = [n for n in nc if n not in oc]
    removed = [n for n in oc if n not in nc]
    recreated = {n for n in changed if nc[n].comment != oc[n].comment}
    refill = set(changed)
    if recreated:  # chains that jump to a recreated one are flushed first and refilled
        for plan in (old, new):
            for n, c in plan.chains.items():
                if (
                    n in nc
                    and n in oc
                    and any(r.verdict[5:] in recreated for r in c.rules if r.verdict.startswith("jump "))
                ):
                    refill.add(n)
    os_, ns_ = old.sets, new.sets
    for name in set(os_) & set(ns_):
        if os_[name] is not ns_[name] and (os_[name].type, os_[name].comment) != (ns_[name].type, ns_[name].comment):
            return None, hashes  # nft cannot change a set's declaration in place
    head, flush, remake, fill, elements, tail = [], [], [], [], [], []
    for name in added:
        decl, rules = _chain_piece(T, name, nc[name])
        head.append(decl)
        fill += rules
        h["chain " + name] = _h([decl] + rules)
    for name in sorted(set(ns_) - set(os_)):
        lines = set_lines(T, name, ns_[name])
        head += lines
        h["set " + name] = _h(lines)
    for name in sorted(refill | recreated) + removed:
        flush.append("flush chain %s %s" % (T, name))
    for name in sorted(recreated):
        remake.append("delete chain %s %s" % (T, name))
    for name in sorted(refill | recreated):
        decl, rules = _chain_piece(T, name, nc[name])
        if name in recreated:
            remake.append(decl)
        fill += rules
        h["chain " + name] = _h([decl] + rules)
    for name in sorted(set(ns_) & set(os_)):
        a, b = os_[name], ns_[name]
        if a is b or a == b:
            continue
        lines = set_lines(T, name, b)
        h["set " + name] = _h(lines)
        if b.type == "ipv4_addr interval":  # nft checks overlaps before it deletes, so refill
            elements += ["flush set %s %s" % (T, name)] + lines[1:]
        else:  # one element per pod address or pair: only what changed
            gone, fresh = set(a.elements) - set(b.elements), set(b.elements) - set(a.elements)
            if gone:
                elements.append("delete element %s %s { %s }" % (T, name, _elements(b, sorted(gone))))
            if fresh:
                elements.append("add element %s %s { %s }" % (T, name, _elements(b, sorted(fresh))))
    for m, a, b in (
        ("ingress-pods", old.ingress_pods, new.ingress_pods),
        ("egress-pods", old.egress_pods, new.egress_pods),
    ):
        gone = sorted(ip for ip in a if ip not in b or b[ip] != a[ip] or a[ip] in recreated)
        fresh = sorted(ip for ip in b if ip not in a or b[ip] != a[ip] or b[ip] in recreated)
        if gone:
            flush.append("delete element %s %s { %s }" % (T, m, ", ".join(str(ip) for ip in gone)))
        if fresh:
            elements.append(
                "add element %s %s { %s }" % (T, m, ", ".join("%s : goto %s" % (ip, b[ip]) for ip in fresh))
            )
        h["map " + m] = _h([_map_line(T, m, b)])
    if old.node_ips != new.node_ips:
        gone, fresh = set(old.node_ips) - set(new.node_ips), set(new.node_ips) - set(old.node_ips)
        if gone:
            elements.append("delete element %s node-ips { %s }" % (T, ", ".join(str(ip) for ip in sorted(gone))))
        if fresh:
            elements.append("add element %s node-ips { %s }" % (T, ", ".join(str(ip) for ip in sorted(fresh))))
        h["node-ips"] = _h([_node_ips_line(T, new.node_ips)])
    for name in removed:
        tail.append("delete chain %s %s" % (T, name))
        h.pop("chain " + name, None)
    for name in sorted(set(os_) - set(ns_)):
        tail.append("delete set %s %s" % (T, name))
        h.pop("set " + name, None)
    out = head + flush + remake + fill + elements + tail
    if not out:
        return "", h
    named = _c("podnet NetworkPolicy plan %s (owned by the node agent; do not edit)" % plan_digest(h))
    out += ["delete set %s %s" % (T, PLAN_SET), "add set %s %s { type ipv4_addr; comment %s; }" % (T, PLAN_SET, named)]
    return "\n".join(out) + "\n", h
