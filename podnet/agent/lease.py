"""The node's heartbeat: the Lease kube-node-lease/<node>, renewed as
kubelet renews it (every quarter of the lease duration, 10 s of 40 s).

Fencing: an agent that could not renew for longer than the lease duration
(SIGSTOPped, cut off from the API server, its host suspended) must assume
the cluster declared its node unreachable and gave its LoadBalancer IPs to
another node. Before its first renewal after such a gap it runs `fence`
(the proxy reconciler drops the LoadBalancer addresses on lo), so that the
moment the node is seen alive again it does not answer ARP for an IP
another node now owns; the next election hands back what is still its own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from podnet.api.lease import NODE_LEASE_NAMESPACE, micro_time

log = logging.getLogger("podnet.agent")
DURATION = 40.0


class LeaseRenewer:
    def __init__(
        self,
        objects: Any,
        node: str,
        duration: float = DURATION,
        fence: Callable[[], object] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.objects = objects  # a podnet.client.Cluster (or anything with find/create/mutate)
        self.node = node
        self.duration = duration
        self.interval = max(0.5, duration / 4)
        self.fence = fence
        self.clock = clock
        self.last_ok: float | None = None
        self.hold_until = 0.0  # after a fence: no LoadBalancer IPs until the informers caught up
        self.renewals = 0
        self.fenced = 0

    def body(self, now: float) -> dict[str, Any]:
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.node, "namespace": NODE_LEASE_NAMESPACE},
            "spec": {
                "holderIdentity": self.node,
                "leaseDurationSeconds": max(1, int(round(self.duration))),
                "renewTime": micro_time(now),
            },
        }

    def due_fence(self) -> bool:
        """True when the last renewal is older than the lease: our node may
        have been declared unreachable meanwhile."""
        return self.last_ok is not None and self.clock() - self.last_ok > self.duration

    def may_announce(self) -> bool:
        """False while the lease is older than its duration, and for a moment
        after a fence (the watches deliver what happened while we were gone)."""
        return not self.due_fence() and self.clock() >= self.hold_until

    def renew_once(self) -> None:
        if self.due_fence() and self.fence is not None:
            log.warning(
                "lease %s: not renewed for %.1f s (more than %.0f s): dropping LoadBalancer IPs before renewing",
                self.node,
                self.clock() - self.last_ok if self.last_ok is not None else 0.0,
                self.duration,
            )
            self.hold_until = self.clock() + self.interval + 1.0
            self.fence()
            self.fenced += 1
        now = time.time()
        want = self.body(now)

        def renew(le: dict[str, Any]) -> None:
            le["spec"] = dict(le.get("spec") or {}, **want["spec"])

        # the REST client: a renewal must reach the API server, not a cache
        client = getattr(self.objects, "client", self.objects)
        try:
            got = client.mutate("Lease", NODE_LEASE_NAMESPACE, self.node, renew)
            if got is None:
                client.create(want)
        except Exception as exc:
            raise RuntimeError("renewing lease %s/%s: %s" % (NODE_LEASE_NAMESPACE, self.node, exc)) from exc
        self.last_ok = self.clock()
        self.renewals += 1

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.renew_once()
            except Exception as exc:  # the next interval retries
                log.warning("%s", exc)
            stop.wait(self.interval)
