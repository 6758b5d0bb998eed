"""Rule checks: network-policy, conntrack, nft-tables, foreign-rules.

network-policy decides from the API's NetworkPolicies whether they allow a
path (`doctor A --to B`), with the Kubernetes semantics: a pod selected by
some policy of a direction is isolated in it, and then only what one of those
policies' rules allows passes; both ends must allow. It names the policy that
selects the pod and lacks an allowing rule, which is what a person edits.
"""

from __future__ import annotations

import ipaddress
import re

from podnet.api.selectors import format_labels, format_selector, matches
from podnet.diag.checks_base import Facts, Finding, Obj, key_of
from podnet.diag.checks_workload import target_port
from podnet.policy.planner import policy_types

OURS = ("ip podnet-proxy", "inet podnet-policy", "inet podnet-node")
_VERDICT = re.compile(r"\b(drop|reject)\b")


# ---- network-policy ------------------------------------------------------------


def _ns_labels(f: Facts, ns: str) -> dict:
    for n in f.namespaces:
        if n["metadata"]["name"] == ns:
            return dict(n["metadata"].get("labels") or {}, **{"kubernetes.io/metadata.name": ns})
    return {"kubernetes.io/metadata.name": ns}


def _peer_matches(f: Facts, pol_ns: str, peer: Obj, pod: Obj) -> bool:
    if "ipBlock" in peer:
        ip = pod.get("status", {}).get("podIP")
        block = peer["ipBlock"]
        try:
            addr = ipaddress.ip_address(ip or "")
            if addr not in ipaddress.ip_network(block["cidr"], strict=False):
                return False
            return not any(addr in ipaddress.ip_network(x, strict=False) for x in block.get("except") or [])
        except ValueError:
            return False
    pns = pod["metadata"].get("namespace", "default")
    if "namespaceSelector" in peer:
        if not matches(peer["namespaceSelector"], _ns_labels(f, pns)):
            return False
    elif pns != pol_ns:
        return False
    if "podSelector" in peer:
        return matches(peer["podSelector"], pod["metadata"].get("labels"))
    return True


def _port_matches(rule_ports: list, dst: Obj, port: int | None, proto: str) -> bool:
    if not rule_ports:
        return True
    for rp in rule_ports:
        if rp.get("protocol", "TCP") != proto:
            continue
        want = rp.get("port")
        if want is None or port is None:
            return True
        if isinstance(want, str) and not want.isdigit():
            want = target_port(dst, {"targetPort": want, "protocol": proto})
        if want is not None and int(want) <= port <= int(rp.get("endPort") or want):
            return True
    return False


def _direction(f: Facts, pod: Obj, peer: Obj, dst: Obj, port: int | None, proto: str, ingress: bool):
    """(isolating policies, allowed?) for `pod` in one direction."""
    d = "Ingress" if ingress else "Egress"
    ns = pod["metadata"].get("namespace", "default")
    isolating = [
        p
        for p in f.policies
        if p["metadata"].get("namespace", "default") == ns
        and d in policy_types(p["spec"])
        and matches(p["spec"].get("podSelector") or {}, pod["metadata"].get("labels"))
    ]
    for pol in isolating:
        for rule in pol["spec"].get("ingress" if ingress else "egress") or []:
            peers = rule.get("from" if ingress else "to") or []
            if (not peers or any(_peer_matches(f, ns, x, peer) for x in peers)) and _port_matches(
                rule.get("ports") or [], dst, port, proto
            ):
                return isolating, True
    return isolating, not isolating


def check_network_policy(f: Facts) -> list[Finding]:
    if f.path is None:
        return []
    src = f.pod(f.path.src)
    if src is None:
        return []
    out = []
    for dkey in f.path.dst_pods:
        dst = f.pod(dkey)
        if dst is None:
            continue
        port, proto = f.path.port, f.path.protocol
        what = "%s -> %s port %s/%s" % (f.path.src, dkey, port if port is not None else "any", proto)
        for ingress, end, endkey, peer in ((False, src, f.path.src, dst), (True, dst, dkey, src)):
            pols, ok = _direction(f, end, peer, dst, port, proto, ingress)
            if ok:
                continue
            names = ", ".join(key_of(p) for p in pols)
            d = "ingress" if ingress else "egress"
            out.append(
                Finding(
                    "network-policy",
                    "error",
                    "NetworkPolicy %s selects pod %s and allows no %s for %s" % (key_of(pols[0]), endkey, d, what),
                    [
                        "policy %s: podSelector %s, policyTypes %s, %d %s rules"
                        % (
                            key_of(p),
                            # {} selects every pod of the namespace
                            format_selector(p["spec"].get("podSelector")).replace("<none>", "{} (all pods)"),
                            ",".join(policy_types(p["spec"])),
                            len(p["spec"].get(d) or []),
                            d,
                        )
                        for p in pols
                    ]
                    + ["pod %s labels %s" % (endkey, format_labels(end["metadata"].get("labels")))],
                    "podnet describe networkpolicy %s -n %s" % (pols[0]["metadata"]["name"], names.split("/")[0]),
                    end["spec"].get("nodeName"),
                )
            )
    unique: dict[str, Finding] = {}
    for x in out:
        unique.setdefault(x.summary, x)
    return list(unique.values())


# ---- conntrack -------------------------------------------------------------------


def parse_conntrack(line: str) -> Obj | None:
    """One `conntrack -L -o extended` line -> {proto, orig: {src,dst,sport,dport}, reply: {...}}."""
    words = line.split()
    if len(words) < 4:
        return None
    proto = words[2]
    orig: dict = {}
    reply: dict = {}
    for w in words:
        k, eq, v = w.partition("=")
        if not eq or k not in ("src", "dst", "sport", "dport"):
            continue
        (orig if k not in orig else reply)[k] = v
    if "dst" not in orig or "src" not in reply:
        return None
    return {"proto": proto, "orig": orig, "reply": reply, "line": line.strip()}


def check_conntrack(f: Facts) -> list[Finding]:
    fronts: dict[tuple[str, str, str], str] = {}
    for s in f.services:
        ip = s["spec"].get("clusterIP")
        if not ip or ip == "None":
            continue
        for p in s["spec"].get("ports") or []:
            fronts[(ip, str(p["port"]), p.get("protocol", "TCP").lower())] = key_of(s)
    src_ip = None
    if f.path is not None:
        src = f.pod(f.path.src)
        src_ip = src and src.get("status", {}).get("podIP")
    out = []
    for node, k in sorted(f.kernel.items()):
        if not f.in_scope_node(node):
            continue
        for line in k.get("conntrack") or []:
            e = parse_conntrack(line)
            if e is None:
                continue
            o, r = e["orig"], e["reply"]
            svc = fronts.get((o["dst"], o.get("dport", ""), e["proto"]))
            if not svc or r["src"] == o["dst"]:
                continue
            if src_ip and o["src"] != src_ip:
                continue
            if f.scope_services is not None and svc not in f.scope_services and f.path is None:
                continue
            eps = {a for ep in f.ready_endpoints(svc) for a in ep.get("addresses") or []}
            if r["src"] in eps:
                continue
            out.append(
                Finding(
                    "conntrack",
                    "error",
                    "conntrack entry on %s sends %s %s:%s -> %s:%s to %s:%s, "
                    "which is no endpoint of Service %s any more"
                    % (
                        node,
                        e["proto"],
                        o["src"],
                        o.get("sport"),
                        o["dst"],
                        o.get("dport"),
                        r["src"],
                        r.get("sport"),
                        svc,
                    ),
                    [e["line"], "ready endpoints of %s: %s" % (svc, ", ".join(sorted(eps)) or "none")],
                    "podnet lab exec --lab %s %s -- conntrack -D -p %s --orig-src %s --orig-dst %s"
                    % (f.lab, node, e["proto"], o["src"], o["dst"]),
                    node,
                )
            )
    return out


# ---- nft-tables and foreign-rules --------------------------------------------------


def check_nft_tables(f: Facts) -> list[Finding]:
    out = []
    for node, k in sorted(f.kernel.items()):
        if not f.in_scope_node(node) or "tables" not in k:
            continue
        for t in OURS:
            if t not in k["tables"]:
                out.append(
                    Finding(
                        "nft-tables",
                        "error",
                        "nftables table %s is missing on %s" % (t, node),
                        ["%s tables: %s" % (node, ", ".join(k["tables"]) or "none")],
                        "podnet lab exec --lab %s %s -- nft list tables" % (f.lab, node),
                        node,
                    )
                )
    return out


def foreign_drops(table: str, text: str) -> list[str]:
    """'family table chain: rule' for each drop/reject rule or drop policy in `nft list table` text."""
    out = []
    chain = None
    for raw in text.splitlines():
        line = raw.strip()
        m = re.match(r"chain (\S+) \{", line)
        if m:
            chain = m.group(1)
            continue
        if chain is None or not line or line.startswith(("}", "table ")):
            continue
        if line.startswith("type ") and "policy drop" in line:
            out.append("%s %s: policy drop" % (table, chain))
        elif not line.startswith("type ") and _VERDICT.search(re.sub(r'comment ".*?"', "", line)):
            out.append("%s %s: %s" % (table, chain, line))
    return out


def iptables_drops(text: str) -> list[str]:
    out = []
    table = ""
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith("-A ") and re.search(r"-j (DROP|REJECT)\b", line):
            out.append("iptables -t %s %s" % (table, line))
        elif line.startswith(":") and line.split()[1:2] == ["DROP"]:
            out.append("iptables -t %s chain %s policy DROP" % (table, line.split()[0][1:]))
    return out


def check_foreign_rules(f: Facts) -> list[Finding]:
    out = []
    for node, k in sorted(f.kernel.items()):
        if not f.in_scope_node(node):
            continue
        rules = []
        for table, text in sorted((k.get("foreign_tables") or {}).items()):
            rules += foreign_drops(table, text)
        rules += iptables_drops(k.get("iptables") or "")
        for rule in rules:
            out.append(
                Finding(
                    "foreign-rules",
                    "error",
                    "a rule podnet does not own drops or rejects traffic on %s: %s" % (node, rule),
                    [rule],
                    "podnet lab exec --lab %s %s -- nft list ruleset" % (f.lab, node),
                    node,
                )
            )
    return out
