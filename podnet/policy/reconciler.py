"""NetworkPolicy in the node agent: policies, pods and namespaces in, one nft table out.

Level-triggered like the routing loop (podnet.client.loop): watches on
networkpolicies, pods and namespaces only mark work pending; each pass reads
the full state, plans the node's `inet podnet-policy` table (pure, see
planner.py) and applies it in one `nft -f` transaction, but only when the
script differs from the one in the kernel. A pass runs at least every RESYNC
seconds, and every DRIFT_CHECK seconds one also lists the table (stateless,
so counters moving is not drift) and re-applies when it is missing or someone
changed it. A failed pass forgets what the
kernel holds, so the next pass re-applies in full.

The table stays when the agent stops: pods keep their isolation while the
agent restarts (as kube-proxy keeps its rules), and `lab down` removes the
node's namespace with it.
"""

import json
import logging
import threading
import time

from podnet.client import loop
from podnet.kernel import nft
from podnet.policy import nftscript
from podnet.policy.planner import node_addresses, plan

log = logging.getLogger("podnet.policy")
RESYNC = 5.0
DRIFT_CHECK = 30.0  # listing the table costs ~0.5 s of nft at 1,000 policies (bench/policy.py)


class PolicyReconciler:
    def __init__(self, node, objects, cluster_cidr, ns=None):
        self.node, self.objects, self.cluster_cidr = node, objects, cluster_cidr
        self.ns = ns  # None: the agent already runs in the node's netns
        self.dirty = threading.Event()
        self.script = None  # what we last applied (None: unknown, apply in full)
        self.listing = None  # digest of the stateless listing right after that
        self.last_check = 0.0
        self.passes = self.applies = 0
        self.last_sync_ms = 0.0

    def desired(self):
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
        t0 = time.monotonic()
        p, npol = self.desired()
        script = nftscript.render(p)
        drift = False
        if self.script is not None and time.monotonic() - self.last_check > DRIFT_CHECK:
            self.last_check = time.monotonic()
            drift = self._listing() != self.listing
            if drift:
                log.warning(
                    "policy: table %s %s changed outside podnet (or vanished); re-applying",
                    nftscript.FAMILY,
                    nftscript.TABLE,
                )
        if script != self.script or drift:
            self.script = None  # a failure below leaves "unknown": the next pass applies in full
            nft.apply(
                script,
                ns=self.ns,
                what="NetworkPolicy table %s %s (%d policies)" % (nftscript.FAMILY, nftscript.TABLE, npol),
            )
            self.script, self.listing = script, self._listing()
            self.last_check = time.monotonic()
            self.applies += 1
            self.last_sync_ms = (time.monotonic() - t0) * 1000
            log.info(
                "policy: plan %s: %d policies, %d local pods isolated for ingress, %d for egress; applied in %.1f ms",
                nftscript.applied_plan(script),
                npol,
                len(p.ingress_pods),
                len(p.egress_pods),
                self.last_sync_ms,
            )
        self.passes += 1

    def run(self, stop):
        for kind in ("NetworkPolicy", "Pod", "Namespace"):
            self.objects.watch_dirty(kind, self.dirty)
        loop.run(self.sync, self.dirty, stop, RESYNC, log, "policy pass")
