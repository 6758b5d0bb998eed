"""The agent's flow collector: two reader threads (conntrack events, NFLOG
packets of group NFLOG_GROUP) in the node's namespace feeding a FlowLog,
names from the agent's informers, Prometheus counters, and the HTTP server
(podnet.flows.http) that serves the ring.

Started by the agent (podnet/agent/agent.py); PODNET_FLOWS=0 in the agent's
environment leaves it off (bench/flows.py measures the difference).
"""

import logging
import os
import threading

from prometheus_client import Counter

from podnet.flows import http, model, netlink
from podnet.kernel import flowsrc

log = logging.getLogger("podnet.flows")
FLOWS_PORT = 10262


class Metrics:
    """Counters with bounded label sets: verdicts (3), reasons (a handful),
    policies (as many as NetworkPolicies drop packets), pods of this node."""

    def __init__(self, registry):
        self.flows = Counter("podnet_flows", "Flow records by verdict", ["verdict"], registry=registry)
        self.drops = Counter(
            "podnet_flow_drops",
            "Dropped or rejected connection attempts by reason and NetworkPolicy",
            ["verdict", "reason", "policy"],
            registry=registry,
        )
        self.pod_bytes = Counter(
            "podnet_flow_pod_bytes",
            "Bytes of ended connections of this node's pods (conntrack accounting), by direction",
            ["namespace", "pod", "direction"],
            registry=registry,
        )
        self.pod_packets = Counter(
            "podnet_flow_pod_packets",
            "Packets of ended connections of this node's pods (conntrack accounting), by direction",
            ["namespace", "pod", "direction"],
            registry=registry,
        )
        self.lost = Counter(
            "podnet_flow_events_lost", "Kernel events lost (socket buffer overrun)", ["source"], registry=registry
        )

        self.pods = set()  # (namespace, pod) with series, pruned when the pod is gone

    def prune(self, live):
        """Drop the series of pods that no longer exist: the label set stays
        the size of the cluster's pods, not of every pod there ever was."""
        for ns, pod in self.pods - live:
            for direction in ("sent", "received"):
                for c in (self.pod_bytes, self.pod_packets):
                    try:
                        c.remove(ns, pod, direction)
                    except KeyError:
                        pass
        self.pods &= live

    def on_record(self, rec, new):
        if new:
            self.flows.labels(rec["verdict"]).inc()
            if rec["verdict"] != "forwarded":
                reason = rec["reason"].split(" ", 1)[0] if rec["verdict"] == "dropped" else rec["reason"]
                for pol in rec.get("policies") or [""]:
                    self.drops.labels(rec["verdict"], reason, pol).inc()
            return
        if rec.get("state") != "ended" or rec["verdict"] != "forwarded" or not rec.get("bytes"):
            return
        # the source pod (always of this node: model.recorded_here) sent the
        # original direction; the destination pod, wherever it runs, received
        # it: sum a pod's series over all agents for its total
        for end, sent, received in (("src", "orig", "reply"), ("dst", "reply", "orig")):
            e = rec.get("endpoint") or rec["dst"] if end == "dst" else rec["src"]
            if not e.get("pod"):
                continue
            self.pods.add((e["namespace"], e["pod"]))
            for direction, key in (("sent", sent), ("received", received)):
                self.pod_bytes.labels(e["namespace"], e["pod"], direction).inc(rec["bytes"][key])
                self.pod_packets.labels(e["namespace"], e["pod"], direction).inc(rec["packets"][key])


class Collector:
    def __init__(self, node, ns_name, objects, registry, addr, port=FLOWS_PORT):
        self.node, self.ns_name, self.objects = node, ns_name, objects
        self.flowlog = model.FlowLog(node)
        self.metrics = Metrics(registry)
        self.flowlog.listeners.append(self.metrics.on_record)
        self.addr, self.port = addr, port
        from podnet.agent.metrics import METRICS_PORT

        self.flowlog.ignore = {(addr, port), (addr, METRICS_PORT)}
        self.names_dirty = threading.Event()

    def start(self, stop):
        if os.environ.get("PODNET_FLOWS", "1") == "0":
            log.info("flow log off (PODNET_FLOWS=0)")
            return False
        try:
            flowsrc.enable_acct(self.ns_name)
            ct = flowsrc.open_conntrack(self.ns_name)
            nfl = flowsrc.open_nflog(self.ns_name, flowsrc.NFLOG_GROUP)
        except OSError as exc:
            log.warning("flow log off: %s", exc)
            return False
        for target, name in (
            (self._names, "flow-names"),
            (self._read_ct, "flow-conntrack"),
            (self._read_nflog, "flow-nflog"),
        ):
            args = (stop, ct) if target == self._read_ct else (stop, nfl) if target == self._read_nflog else (stop,)
            threading.Thread(target=target, args=args, daemon=True, name=name).start()
        http.serve(self.flowlog, self.addr, self.port)
        return True

    def _names(self, stop):
        kinds = ("Pod", "Service", "Node")
        for kind in kinds:
            while not stop.is_set():
                try:
                    self.objects.informer(kind).add(dirty=self.names_dirty)
                    break
                except Exception as exc:  # noqa: BLE001 - retried until the API server answers
                    log.warning("flows: waiting for %s: %s", kind, exc)
                    stop.wait(1.0)
        while not stop.is_set():
            if not self.names_dirty.wait(1.0):
                continue
            self.names_dirty.clear()
            self.flowlog.names.update(*(self.objects.informer(k).values() for k in kinds))
            self.metrics.prune({(p["namespace"], p["pod"]) for p in self.flowlog.names.pods.values()})

    def _read(self, stop, sock, what, handle):
        while not stop.is_set():
            try:
                data = flowsrc.receive(sock)
            except OSError as exc:
                log.warning("flows: reading %s: %s", what, exc)
                stop.wait(1.0)
                continue
            if data is None:
                self.metrics.lost.labels(what).inc()
                continue
            for mtype, flags, payload in netlink.messages(data):
                try:
                    handle(mtype, flags, payload)
                except Exception:  # one bad message must not end the log
                    log.exception("flows: %s message", what)

    def _read_ct(self, stop, sock):
        def handle(mtype, flags, payload):
            ev = netlink.conntrack_event(mtype, flags, payload)
            if ev is not None:
                self.flowlog.conntrack(ev)

        self._read(stop, sock, "conntrack", handle)

    def _read_nflog(self, stop, sock):
        def handle(mtype, _flags, payload):
            pkt = netlink.nflog_packet(mtype, payload)
            if pkt is not None:
                self.flowlog.nflog(pkt)

        self._read(stop, sock, "nflog", handle)
