"""Flow records, the bounded ring that keeps them, and the pure rules that
turn kernel events (podnet.flows.netlink) into records.

A record is a dict (JSON as served):
  id (node/n, stable), seq (changes with the record), time, node, proto, verdict (forwarded|dropped|rejected), reason,
  src {ip, port, pod?, namespace?, node?}, dst {...}, service {namespace,
  name}?, endpoint {ip, port}?, packets, bytes ({"orig": n, "reply": n} once
  the connection ended), state (open|closed|ended).
One record per connection (made at conntrack NEW, updated at DESTROY) and
one per dropped or rejected connection attempt (NFLOG; the retransmissions
of the same 5-tuple within DROP_DEDUP seconds add to its packet count).
"""

import collections
import ipaddress
import threading

RING = 10000
DROP_DEDUP = 30.0  # seconds: a SYN retried is the same refused connection
LIVE_MAX = 65536  # open connections remembered (conntrack id -> record)


def reason_of(prefix):
    """(verdict, reason, policies) from an NFLOG prefix podnet's rules write:
    "pn:np:ingress:ns/a,ns/b" (a NetworkPolicy drop), "pn:rej:no-endpoints",
    "pn:rej:unknown-port"; None for prefixes that are not ours."""
    parts = prefix.split(":", 3)
    if len(parts) >= 3 and parts[0] == "pn" and parts[1] == "np":
        pols = [p for p in (parts[3].split(",") if len(parts) > 3 else []) if p]
        return "dropped", "NetworkPolicy %s %s" % (parts[2], ",".join(pols)), pols
    if len(parts) == 3 and parts[0] == "pn" and parts[1] == "rej":
        return "rejected", parts[2].replace("-", " "), []
    return None


class Names:
    """Addresses to names, from the agent's informers: pod IPs, Service
    ClusterIPs (and their ports), node IPs. Rebuilt whole by `update`
    (cheap: a few dicts), read by the collector thread."""

    def __init__(self):
        self.pods = {}  # ip -> {pod, namespace, node}
        self.services = {}  # ip -> {namespace, name}
        self.nodes = {}  # ip -> node name

    def update(self, pods=(), services=(), nodes=()):
        p, s, n = {}, {}, {}
        for pod in pods:
            st, meta = pod.get("status") or {}, pod["metadata"]
            if st.get("podIP") and not pod["spec"].get("hostNetwork"):
                p[st["podIP"]] = {
                    "pod": meta["name"],
                    "namespace": meta.get("namespace"),
                    "node": pod["spec"].get("nodeName"),
                }
        for svc in services:
            meta = svc["metadata"]
            for ip in (svc.get("spec") or {}).get("clusterIPs") or [(svc.get("spec") or {}).get("clusterIP")]:
                if ip and ip != "None":
                    s[ip] = {"namespace": meta.get("namespace"), "name": meta["name"]}
        for node in nodes:
            for a in (node.get("status") or {}).get("addresses") or []:
                if a.get("type") == "InternalIP":
                    n[a["address"]] = node["metadata"]["name"]
            cidr = (node.get("spec") or {}).get("podCIDR")
            if cidr:  # the bridge's gateway address: the node's own probes come from it
                n[str(ipaddress.ip_network(cidr, strict=False).network_address + 1)] = node["metadata"]["name"]
        self.pods, self.services, self.nodes = p, s, n

    def end(self, ip, port):
        out = {"ip": ip, "port": port}
        if ip in self.pods:
            out.update(self.pods[ip])
        elif ip in self.nodes:
            out["node"] = self.nodes[ip]
        elif ip in self.services:
            out["service"] = "%s/%s" % (self.services[ip]["namespace"], self.services[ip]["name"])
        return out


def recorded_here(src_ip, names, node):
    """A connection between nodes passes two nodes' conntrack; only one of
    them records it: the source pod's node, or for any other source (a node,
    the external host) the node that sees it."""
    pod = names.pods.get(src_ip)
    return pod is None or pod.get("node") == node


class FlowLog:
    """The ring of records of one node and the connections still open."""

    def __init__(self, node, size=RING, clock=None):
        import time

        self.node = node
        self.clock = clock or time.time
        self.ring = collections.deque(maxlen=size)
        self.live = collections.OrderedDict()  # conntrack id -> record
        self.drops = collections.OrderedDict()  # 5-tuple -> record
        self.seq = 0
        self.cond = threading.Condition()
        self.names = Names()
        self.listeners = []  # callables(record, is_new): the metrics
        # (ip, port) of the agent's own endpoints: the flow log's and the
        # metrics' readers are not the lab's traffic, and recording them would
        # wake a long poll with the record of its own connection, for ever
        self.ignore: set[tuple[str, int]] = set()

    def _add(self, rec):
        with self.cond:
            self.seq += 1
            rec["seq"] = self.seq
            rec["id"] = "%s/%d" % (self.node, self.seq)  # stays when the record changes (seq does not)
            self.ring.append(rec)
            self.cond.notify_all()
        for fn in self.listeners:
            fn(rec, True)

    def _touch(self, rec):
        with self.cond:
            self.seq += 1
            rec["seq"] = self.seq  # a changed record is new again for followers
            self.cond.notify_all()
        for fn in self.listeners:
            fn(rec, False)

    def conntrack(self, ev):
        """A conntrack event (netlink.conntrack_event)."""
        o, r = ev["orig"], ev["reply"]
        if (o["dst"], o["dport"]) in self.ignore:
            return None
        if ev["event"] == "new":
            if not recorded_here(o["src"], self.names, self.node):
                return None
            rec = {
                "time": self.clock(),
                "node": self.node,
                "proto": o["proto"],
                "verdict": "forwarded",
                "reason": "",
                "src": self.names.end(o["src"], o["sport"]),
                "dst": self.names.end(o["dst"], o["dport"]),
                "packets": None,
                "bytes": None,
                "state": "open",
            }
            if r is not None and (r["src"], r["sport"]) != (o["dst"], o["dport"]):  # DNAT: the endpoint chosen
                rec["endpoint"] = self.names.end(r["src"], r["sport"])
                svc = self.names.services.get(o["dst"])
                if svc:
                    rec["service"] = dict(svc)
            elif o["dst"] in self.names.services:
                rec["service"] = dict(self.names.services[o["dst"]])
            self.live[ev["id"]] = rec
            while len(self.live) > LIVE_MAX:
                self.live.popitem(last=False)
            self._add(rec)
            return rec
        rec = self.live.get(ev["id"])
        if rec is None:
            return None
        if ev["event"] == "update":
            if ev["tcp_state"] in ("time_wait", "close") and rec["state"] == "open":
                rec["state"] = "closed"
                self._touch(rec)
            return rec
        del self.live[ev["id"]]
        rec["state"] = "ended"
        rec["ended"] = self.clock()
        if ev["orig_counters"]:
            rec["packets"] = {"orig": ev["orig_counters"][0], "reply": (ev["reply_counters"] or (0, 0))[0]}
            rec["bytes"] = {"orig": ev["orig_counters"][1], "reply": (ev["reply_counters"] or (0, 0))[1]}
        self._touch(rec)
        return rec

    def nflog(self, pkt):
        """An NFLOG packet (netlink.nflog_packet) of podnet's drop and reject rules."""
        why = reason_of(pkt["prefix"])
        if why is None:
            return None
        verdict, reason, pols = why
        p = pkt["packet"]
        now = self.clock()
        key = (p["proto"], p["src"], p["sport"], p["dst"], p["dport"], verdict)
        rec = self.drops.get(key)
        if rec is not None and now - rec["last"] < DROP_DEDUP:
            rec["packets"]["orig"] += 1
            rec["bytes"]["orig"] += p["length"]
            rec["last"] = now
            self._touch(rec)
            return rec
        rec = {
            "time": now,
            "last": now,
            "node": self.node,
            "proto": p["proto"],
            "verdict": verdict,
            "reason": reason,
            "policies": pols,
            "src": self.names.end(p["src"], p["sport"]),
            "dst": self.names.end(p["dst"], p["dport"]),
            "packets": {"orig": 1, "reply": 0},
            "bytes": {"orig": p["length"], "reply": 0},
            "state": "ended",
        }
        if p["dst"] in self.names.services:
            rec["service"] = dict(self.names.services[p["dst"]])
        self.drops[key] = rec
        while len(self.drops) > 4096:
            self.drops.popitem(last=False)
        self._add(rec)
        return rec

    def query(self, since=0, wait=0.0, **filters):
        """Records whose seq is above `since` that match `filters`
        (matches()), oldest first; waits up to `wait` seconds for one."""
        with self.cond:
            if wait > 0 and self.seq <= since:
                self.cond.wait(wait)
            recs = [r for r in self.ring if r["seq"] > since]
            last = self.seq
        return last, sorted((dict(r) for r in recs if matches(r, **filters)), key=lambda r: r["seq"])


def matches(rec, pod=None, namespace=None, verdict=None, node=None):
    """The CLI's filters: pod (name or ns/name) on either end, namespace of
    either end or of the Service, verdict, node."""
    ends = (rec["src"], rec["dst"])
    if verdict and rec["verdict"] != verdict:
        return False
    if node and rec["node"] != node:
        return False
    if namespace and not (
        any(e.get("namespace") == namespace for e in ends) or (rec.get("service") or {}).get("namespace") == namespace
    ):
        return False
    if pod:
        ns, _, name = pod.rpartition("/")
        if not any(e.get("pod") == name and (not ns or e.get("namespace") == ns) for e in ends):
            return False
    return True


def _wire_key(rec):
    """The 5-tuple as the destination node sees it: after the source node's DNAT."""
    dst = rec.get("endpoint") or rec["dst"]
    return rec["proto"], rec["src"]["ip"], rec["src"]["port"], dst["ip"], dst["port"]


def merge(recs):
    """Every node's records as one list by time. A connection the source
    node forwarded and another node's policy dropped (its SYN crossed the
    source node's conntrack first) is shown once, as the drop, which names
    the forwarding node in `via`."""
    drops = {_wire_key(r): r for r in recs if r["verdict"] != "forwarded"}
    out = []
    for r in recs:
        d = drops.get(_wire_key(r)) if r["verdict"] == "forwarded" else None
        if d is not None and d["node"] != r["node"]:
            d["via"] = r["node"]
            if r.get("service"):
                d.setdefault("service", r["service"])
            continue
        out.append(r)
    return sorted(out, key=lambda r: (r["time"], r["node"], r["seq"]))
