"""`nft monitor` trace lines -> events, and which of them are the probe's.

nf_trace ids are not stable along a path (the kernel derives them from the
skb, which changes at a forward), so events are tied to the probe by the
packet's own fields: ports (or the ICMP id) say the direction, the IP id
says which transmission (a TCP SYN may be retransmitted, and a retransmit
can be DNATed to another endpoint).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

TRACE_TABLE = "podnet-trace"  # podnet/kernel/nfttrace.py: podnet-trace-<sport>


def is_trace_table(name):
    return name == TRACE_TABLE or name.startswith(TRACE_TABLE + "-")


_LINE = re.compile(r"^trace id (\S+) (\S+) (\S+) (\S+) (.*)$")


_VERDICT = re.compile(r"^rule (.*) \(verdict ([^)]*)\)\s*$")


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
            if not is_trace_table(e.table) and forward(e.pkt):
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
