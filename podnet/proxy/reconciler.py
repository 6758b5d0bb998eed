"""The node agent's Services loop: Services + EndpointSlices + Nodes in,
the `ip podnet-proxy` table (and LoadBalancer announcements, health-check
ports, UDP conntrack cleanup) out.

Level-triggered: informers keep local copies of the objects and only mark
work pending; each pass plans from the full copies (re-planning only the
Services whose objects changed: planner.Planner) and applies the difference
from the last applied plan as one transaction. A failed apply, or a
change a difference cannot express, makes that pass (and the next) a full
one that replaces the whole table; a periodic full sync repairs drift.

Full syncs go through `nft -f`; a difference goes as one nf_tables netlink
batch (podnet/kernel/nftnl.py), because nft 1.0.6 re-reads the whole
ruleset before any command (most of a one-Service change at 10,000
Services). What that path cannot compile, or a batch the kernel refuses, is
written by `nft -f` of the same script; after a refusal the next pass is
full, since the refusal means our picture of the table may be wrong.
"""

import logging
import threading
import time

from prometheus_client import Counter, Gauge, Histogram

from podnet.agent.metrics import REGISTRY
from podnet.client import loop
from podnet.kernel import conntrack, nft, nftnl
from podnet.proxy import announce, healthcheck, render
from podnet.proxy.inputs import SERVICE_NAME_LABEL
from podnet.proxy.planner import Planner

log = logging.getLogger("podnet.proxy")
TABLE = "podnet-proxy"
SVC_PREFIX = "/registry/services/"
RESYNC = 5.0  # re-evaluate node liveness (LB election) this often
FULL_EVERY = 60.0  # and replace the whole table this often (drift repair)

SYNC_SECONDS = Histogram(
    "podnet_proxy_sync_duration_seconds",
    "Time to plan and apply the Services table",
    ["type"],
    registry=REGISTRY,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
SYNC_PHASE = Gauge(
    "podnet_proxy_last_sync_seconds", "Planner and nft apply time of the last sync", ["phase"], registry=REGISTRY
)
SYNCS = Counter("podnet_proxy_syncs", "Syncs of the Services table", ["type"], registry=REGISTRY)
FAILURES = Counter("podnet_proxy_sync_failures", "Failed syncs (the next one is full)", registry=REGISTRY)
RULES = Gauge("podnet_proxy_rules", "nft rules in the Services table", registry=REGISTRY)
CHAINS = Gauge("podnet_proxy_chains", "nft chains in the Services table", registry=REGISTRY)
ELEMENTS = Gauge("podnet_proxy_map_elements", "Map and set elements in the Services table", registry=REGISTRY)
ENDPOINTS = Gauge("podnet_proxy_endpoints", "Endpoints the Services table sends traffic to", registry=REGISTRY)
SERVICES = Gauge("podnet_proxy_services", "Services with rules on this node", registry=REGISTRY)
PARTIAL_PATH = Counter(
    "podnet_proxy_partial_applies",
    "Partial syncs by how they reached the kernel (netlink, or nft when netlink could not)",
    ["path"],
    registry=REGISTRY,
)
CONNTRACK = Counter(
    "podnet_proxy_conntrack_cleanups", "UDP conntrack deletions for removed endpoints", registry=REGISTRY
)


def _external(svc):
    """Could this (changed) Service move a LoadBalancer IP or a health port?
    A deleted one (None) might have had one."""
    if svc is None:
        return True
    spec = svc.get("spec") or {}
    return spec.get("type") == "LoadBalancer" or spec.get("externalTrafficPolicy") == "Local"


class ProxyReconciler:
    def __init__(self, node, objects, cluster_cidr, state_dir, mode="vxlan", uplink="eth0", table=TABLE):
        self.node, self.objects, self.cluster_cidr = node, objects, cluster_cidr
        self.state_dir, self.mode, self.table = state_dir, mode, table
        self.dirty = threading.Event()
        self.planner = Planner(node, cluster_cidr)
        self.applied = None  # the plan the kernel has, None = unknown -> full sync
        self.full_next = False  # a netlink batch was refused: replace the table on the next pass
        self.transport: nftnl.Transport = nftnl.NetlinkTransport()  # partial syncs (a fake in tests)
        self.last_full = 0.0
        self.announcer = announce.L2Announcer(uplink)
        self.health = healthcheck.HealthServers()
        self.lb_owned = set()
        # the node's lease renewer says whether this node may answer for
        # LoadBalancer IPs (not while it is fencing after a heartbeat gap)
        self.may_announce = lambda: True
        self._node_sig = None
        self._counts = None
        for i, gauge in enumerate((RULES, CHAINS, ELEMENTS, ENDPOINTS, SERVICES)):
            gauge.set_function(lambda i=i: self._count(i))
        self.syncs = {"full": 0, "partial": 0}
        self.lock = threading.Lock()
        self.pending = set()  # service keys ("ns/name") whose objects changed
        self.slice_index = {}  # (ns, service name) -> {store key: EndpointSlice}
        self.services = self.slices = self.nodes = None  # informers, subscribed to in run()

    # informer callbacks (watch threads): remember what changed, nothing more
    def _service_changed(self, key, old, new):
        with self.lock:
            self.pending.add(key[len(SVC_PREFIX) :])

    def _slice_changed(self, key, old, new):
        with self.lock:
            for obj, keep in ((old, False), (new, True)):
                if obj is None:
                    continue
                m = obj.get("metadata", {})
                owner = (m.get("namespace"), (m.get("labels") or {}).get(SERVICE_NAME_LABEL))
                if owner[1] is None:
                    continue
                bucket = self.slice_index.setdefault(owner, {})
                if keep:
                    bucket[key] = obj
                else:
                    bucket.pop(key, None)
                self.pending.add("%s/%s" % owner)

    def node_ips(self, nodes):
        for n in nodes:
            if n["metadata"]["name"] == self.node:
                return [
                    a["address"]
                    for a in (n.get("status") or {}).get("addresses") or []
                    if a.get("type") == "InternalIP"
                ]
        return []

    def sync(self, force_full=False):
        try:
            self._sync(force_full)
        except Exception:
            # the pending keys are taken and the planner may have moved past
            # what the kernel has: only a full pass is sure to repair that
            self.full_next = True
            raise

    def _sync(self, force_full):
        nodes = self.nodes.values()
        t0 = time.perf_counter()
        with self.lock:
            keys, self.pending = self.pending, set()
        full = force_full or self.full_next or self.applied is None or time.monotonic() - self.last_full > FULL_EVERY
        if full:  # from the full copies: nothing a missed callback did can survive this
            self.planner.replan_all(self.services.values(), self.slices.values())
        else:
            for key in keys:
                ns, name = key.split("/", 1)
                with self.lock:
                    mine = list(self.slice_index.get((ns, name), {}).values())
                self.planner.update(key, self.services.get(SVC_PREFIX + key), mine)
        ips = self.node_ips(nodes)
        # only the pending Services and the skeleton can differ, unless the
        # node's addresses moved (the planner then re-plans the Services using them)
        hint = keys | {""} if tuple(sorted(ips)) == self.planner.node_ips else None
        plan = self.planner.plan(ips)
        script = None
        if not full:
            script = render.diff(self.applied, plan, self.table, hint)
            full = script is None
        if full:
            script = render.full(plan, self.table)
        t1 = time.perf_counter()
        path = "nft"
        if script:
            try:
                if full:
                    nft.apply(script, what="services table (full sync)")
                else:
                    path = nftnl.apply(
                        script, "services table (partial sync)", self.transport, on_refused=self._refused
                    )
                    PARTIAL_PATH.labels(path).inc()
            except Exception:
                self.applied = None  # unknown state: the next pass replaces the table
                FAILURES.inc()
                raise
        t2 = time.perf_counter()
        old, self.applied = self.applied, plan
        if full:
            self.last_full, self.full_next = time.monotonic(), False
        kind = "full" if full else "partial"
        if script:
            self.syncs[kind] += 1
            SYNCS.labels(kind).inc()
            SYNC_SECONDS.labels(kind).observe(t2 - t0)
            SYNC_PHASE.labels("plan").set(t1 - t0)
            SYNC_PHASE.labels("apply").set(t2 - t1)
            self._counts = None  # counted when scraped: O(table), not on every small sync
            log.info(
                "services: %s sync, %d services, plan %.1f ms, %s %.1f ms",
                kind,
                len(plan) - 1,
                (t1 - t0) * 1e3,
                path,
                (t2 - t1) * 1e3,
            )
        self._conntrack(old, plan)
        # LoadBalancer owners and health-check ports look at every Service:
        # only when one that can matter changed, or the live nodes did
        # (and when this node may answer again after a fence: the periodic pass sees it)
        node_sig = (tuple(sorted((n["metadata"]["name"], announce.node_alive(n)) for n in nodes)), self.may_announce())
        if full or node_sig != self._node_sig or any(_external(self.services.get(SVC_PREFIX + k)) for k in keys):
            self._node_sig = node_sig
            services, slices = self.services.values(), self.slices.values()
            self._announce(services, slices, nodes)
            self.health.ensure(healthcheck.wanted(services, slices, self.node))

    def _refused(self, exc):
        log.warning("services: netlink batch refused (%s), written by nft; the next sync is full", exc)
        self.full_next = True

    def _count(self, i):
        plan = self.applied
        if plan is None:
            return 0
        if self._counts is None:
            self._counts = render.counts(plan) + (len(plan) - 1,)
        return self._counts[i]

    def _conntrack(self, old, new):
        """UDP entries DNATed to endpoints that left, and entries to fronts
        that just got endpoints (opened while nothing answered)."""
        if old is None:
            return
        gone, fresh = set(), set()
        for k in set(old) | set(new):
            a, b = old.get(k), new.get(k)
            if a is b:
                continue
            gone |= (a.udp_endpoints if a else frozenset()) - (b.udp_endpoints if b else frozenset())
            fresh |= (b.udp_fronts if b else frozenset()) - (a.udp_fronts if a else frozenset())
        for ip, port in sorted(gone):
            if conntrack.delete_udp_to_endpoint(ip, port):
                CONNTRACK.inc()
        for ip, port in sorted(fresh, key=str):
            if conntrack.delete_udp_to_front(ip, port):
                CONNTRACK.inc()

    def _announce(self, services, slices, nodes):
        if self.mode == "bgp":
            return  # BIRD announces LoadBalancer IPs (routing reconciler)
        owners = announce.elect(services, slices, nodes)
        mine = {ip for ip, n in owners.items() if n == self.node} if self.may_announce() else set()
        if mine != self.lb_owned:
            added, removed = self.announcer.ensure(mine)
            for ip in added:
                log.info("loadbalancer: answering for %s on the underlay", ip)
            for ip in removed:
                log.info("loadbalancer: no longer answering for %s", ip)
            self.lb_owned = mine

    def fence(self):
        """After a heartbeat gap (podnet/agent/lease.py): drop every
        LoadBalancer IP now and elect again on the next pass."""
        self.announcer.release()
        self.lb_owned = set()
        self._node_sig = None
        self.dirty.set()

    def run(self, stop):
        o = self.objects
        # The first lists, however long the API server takes to answer: a
        # reconciler thread must not end because it started first (informer()
        # gives up after its timeout; the informer itself keeps trying).
        while not stop.is_set():
            try:
                for kind in ("Service", "EndpointSlice", "Node"):
                    o.informer(kind)
                break
            except Exception as exc:  # noqa: BLE001 - retried until the API server answers
                log.warning("services: waiting for the API server: %s", exc)
                loop.THREAD_ERRORS.note("services sync")
                stop.wait(1.0)
        if stop.is_set():
            return
        self.services = o.informer("Service").add(self.dirty, self._service_changed)
        self.slices = o.informer("EndpointSlice").add(self.dirty, self._slice_changed)
        self.nodes = o.informer("Node").add(self.dirty)
        try:
            loop.run(self.sync, self.dirty, stop, RESYNC, log, "services sync")
        finally:
            # Rules stay (traffic keeps flowing while the agent restarts, as with
            # kube-proxy); LoadBalancer IPs go, so another node takes them over.
            try:
                self.announcer.release()
            except Exception as exc:
                log.warning("releasing LoadBalancer IPs: %s", exc)
            self.health.close()
