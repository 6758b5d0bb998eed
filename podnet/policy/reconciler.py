"""NetworkPolicy in the node agent: policies, pods and namespaces in, one nft table out.

Per change, as the proxy's Services loop: informer callbacks only note which
object changed (the newest copy) and mark work pending; a pass feeds those
changes to the per-change planner (podnet.policy.incremental: it re-plans
only the policies and pod chains they touch) and writes the difference from
the plan the kernel holds as one small `nft -f` transaction
(nftscript.diff). A full sync (the whole state from the informers' lists,
planned from scratch, the table replaced in one transaction) runs at the
start, after a failure (a failed apply leaves the kernel's state unknown),
when a change cannot be written as a difference, and every DRIFT_CHECK
seconds; that one also lists the table (stateless, so counters moving is
not drift) and re-applies when it is missing, someone changed it, or
partial syncs ran since the last listing (their result was never listed).
A pass runs at least every RESYNC seconds.

The table stays when the agent stops: pods keep their isolation while the
agent restarts (as kube-proxy keeps its rules), and `lab down` removes the
node's namespace with it.
"""

import json
import logging
import threading
import time

from podnet.client import loop
from podnet.kernel import libnft, nft
from podnet.policy import nftscript
from podnet.policy.cluster import node_addresses
from podnet.policy.incremental import Incremental
from podnet.policy.planner import plan

log = logging.getLogger("podnet.policy")
RESYNC = 5.0
DRIFT_CHECK = 30.0  # listing the table costs ~0.5 s of nft at 1,000 policies (bench/policy.py)


KINDS = ("NetworkPolicy", "Pod", "Namespace")


def _key(kind, obj):
    m = obj.get("metadata") or {}
    return m.get("name", "") if kind == "Namespace" else "%s/%s" % (m.get("namespace") or "default", m.get("name", ""))


class PolicyReconciler:
    def __init__(self, node, objects, cluster_cidr, ns=None):
        self.node, self.objects, self.cluster_cidr = node, objects, cluster_cidr
        self.ns = ns  # None: the agent already runs in the node's netns
        self.dirty = threading.Event()
        self.lock = threading.Lock()
        self.pending = {kind: {} for kind in KINDS}  # kind -> key -> newest object (None: deleted)
        self.subscribed = False
        self.inc = None  # the per-change planner, fed since the last full sync
        self.seen = {kind: {} for kind in KINDS}  # what it was fed: the informers' objects
        self.applied = None  # the Plan the kernel holds (None: unknown, apply in full)
        self.hashes = None  # its pieces' digests (nftscript.render_full / diff)
        self.listing = None  # digest of the stateless listing after the last full apply (None: partials since)
        self.last_check = 0.0
        self.passes = self.applies = 0
        self.syncs = {"full": 0, "partial": 0}
        self.last_sync_ms = 0.0
        self.last_phases = {"plan": 0.0, "nft": 0.0}  # ms of the last sync that wrote to the kernel

    # informer callbacks (watch threads): remember what changed, nothing more
    def _on_change(self, kind):
        def changed(key, old, new):
            with self.lock:
                self.pending[kind][_key(kind, new if new is not None else old)] = new

        return changed

    def _subscribe(self):
        if not self.subscribed:
            self.subscribed = True
            for kind in KINDS:
                self.objects.watch_dirty(kind, self.dirty, self._on_change(kind))

    def desired(self):
        """The full plan of the state the informers hold now, and the number of policies."""
        policies = self.objects.list("NetworkPolicy")
        pods = self.objects.list("Pod")
        namespaces = self.objects.list("Namespace")
        me = self.objects.find("Node", None, self.node)
        return plan(policies, pods, namespaces, self.node, node_addresses(me)), len(policies)

    def _listing(self):
        """A digest of the table as the kernel holds it (nft's JSON, stateless,
        so counters moving is not drift), or None when it is gone."""
        items = nft.list_table(nftscript.FAMILY, nftscript.TABLE, ns=self.ns, stateless=True)
        return None if items is None else nftscript.digest(json.dumps(items, sort_keys=True))

    def sync(self):
        self._subscribe()
        t0 = time.monotonic()
        node_ips = node_addresses(self.objects.find("Node", None, self.node))
        try:
            if self.applied is None or time.monotonic() - self.last_check > DRIFT_CHECK:
                self._full(node_ips, t0)
            elif self._partial(node_ips, t0) is None:
                self._full(node_ips, t0)  # a change a difference cannot express
        except Exception:
            # the kernel's state or the per-change planner's (changes taken,
            # half planned) is unknown: the next pass starts from the lists
            self.applied = None
            raise
        self.passes += 1

    def _apply(self, script, kind, p, t0):
        self.applied = None  # a failure below leaves "unknown": the next pass applies in full
        t1 = time.monotonic()
        # a partial sync through libnftables on a kept socket (podnet.kernel.libnft:
        # no exec, and no wait for the kernel to free what it deleted, which
        # `nft -f` pays on exit); a full one, rare and big, through `nft -f`
        (libnft.apply if kind == "partial" else nft.apply)(
            script,
            ns=self.ns,
            what="NetworkPolicy table %s %s (%s sync, %d policies)"
            % (nftscript.FAMILY, nftscript.TABLE, kind, len(self.inc.policies)),
        )
        self.applies += 1
        self.syncs[kind] += 1
        t2 = time.monotonic()
        self.last_sync_ms = (t2 - t0) * 1000
        self.last_phases = {"plan": (t1 - t0) * 1000, "nft": (t2 - t1) * 1000}
        log.info(
            "policy: %s sync, plan %s: %d policies, %d local pods isolated for ingress, %d for egress;"
            " plan %.1f ms, nft %.1f ms",
            kind,
            nftscript.applied_plan(script),
            len(self.inc.policies),
            len(p.ingress_pods),
            len(p.egress_pods),
            self.last_phases["plan"],
            self.last_phases["nft"],
        )

    def _partial(self, node_ips, t0):
        """Only what changed since the last pass -> False (nothing to write), True, or None (needs a full sync)."""
        with self.lock:
            pending, self.pending = self.pending, {kind: {} for kind in KINDS}
        feed = {"NetworkPolicy": self.inc.policy, "Pod": self.inc.pod, "Namespace": self.inc.namespace}
        for kind, changes in pending.items():
            seen = self.seen[kind]
            for key, obj in changes.items():
                if seen.get(key) is obj:
                    continue  # noted before the last full sync read it (the informers' first lists)
                if obj is None:
                    seen.pop(key, None)
                else:
                    seen[key] = obj
                feed[kind](key, obj)
        self.inc.set_node_ips(node_ips)
        p = self.inc.plan()
        script, hashes = nftscript.diff(self.applied, p, self.hashes)
        if script is None:
            return None
        if script:
            self._apply(script, "partial", p, t0)
            self.listing = None  # the table holds what no listing has seen yet
        self.applied, self.hashes = p, hashes
        return bool(script)

    def _full(self, node_ips, t0):
        prev, prev_hashes = self.applied, self.hashes
        self.applied = None  # until this pass is through
        with self.lock:  # the lists below hold every change noted so far
            self.pending = {kind: {} for kind in KINDS}
        self.inc = inc = Incremental(self.node)
        feed = {"NetworkPolicy": inc.policy, "Pod": inc.pod, "Namespace": inc.namespace}
        self.seen = {kind: {} for kind in KINDS}
        for kind in KINDS:
            for obj in self.objects.list(kind):
                self.seen[kind][_key(kind, obj)] = obj
                feed[kind](_key(kind, obj), obj)
        inc.set_node_ips(node_ips)
        p = inc.plan()
        script, hashes = nftscript.render_full(p)
        replace = prev is None or self.listing is None
        # changes since the last pass are in the lists (their notes were dropped above)
        replace = replace or nftscript.plan_digest(hashes) != nftscript.plan_digest(prev_hashes)
        if not replace:
            self.last_check = time.monotonic()
            if self._listing() != self.listing:
                log.warning(
                    "policy: table %s %s changed outside podnet (or vanished); re-applying",
                    nftscript.FAMILY,
                    nftscript.TABLE,
                )
                replace = True
        if replace:
            self._apply(script, "full", p, t0)
            self.listing = self._listing()
            self.last_check = time.monotonic()
        self.applied, self.hashes = p, hashes

    def close(self):
        """Free the partial syncs' kept nf_tables context (podnet.kernel.libnft)
        for self.ns: a caller about to delete that namespace calls this, as a
        kept socket would keep the namespace alive. The table stays."""
        libnft.forget(self.ns)

    def run(self, stop):
        self._subscribe()
        loop.run(self.sync, self.dirty, stop, RESYNC, log, "policy pass")
