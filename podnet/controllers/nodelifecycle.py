"""Node lifecycle: a node whose heartbeat stops is noticed, as the node
lifecycle controller of kube-controller-manager does.

Each agent renews the Lease kube-node-lease/<node> (podnet/agent/lease.py).
Liveness is judged by when *this controller* saw the Lease's renewTime
change (its probe time), never by comparing the timestamp with our clock:
a skewed node clock cannot make a node look alive or dead, and a controller
that restarts gives every node a fresh grace period.

A node silent for the grace period (40 s by default, node-monitor-grace-
period) gets Ready=Unknown ("Kubelet stopped posting node status.") and the
NoExecute taint node.kubernetes.io/unreachable; its pods get Ready=False,
so the EndpointSlices mark them not ready and no Service sends to them; the
LoadBalancer election (podnet/proxy/announce.py) skips nodes not Ready, so
its IPs move at once. When the taint has been there longer than a pod
tolerates it (the pod's own toleration, else 300 s, as the
DefaultTolerationSeconds admission adds), the pod is deleted for good
(grace 0: the node cannot confirm), and its ReplicaSet places a new one on
a live node. A node whose Lease is renewed again loses the taint; its agent
writes Ready=True itself.

plan() is pure; NodeLifecycle only reads the informers and writes.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from podnet.api.lease import NODE_LEASE_NAMESPACE

log = logging.getLogger("podnet.controllers.nodelifecycle")

Obj = dict[str, Any]
GRACE = 40.0  # kube-controller-manager --node-monitor-grace-period
TOLERATION = 300.0  # DefaultTolerationSeconds for not-ready/unreachable
UNREACHABLE = "node.kubernetes.io/unreachable"
STATUS_UNKNOWN_MESSAGE = "Kubelet stopped posting node status."


@dataclass
class Plan:
    unreachable: list[str] = field(default_factory=list)  # nodes to mark Unknown + taint
    recovered: list[str] = field(default_factory=list)  # nodes whose taint goes
    not_ready_pods: list[tuple[str, str]] = field(default_factory=list)  # (ns, name): Ready=False
    evict: list[tuple[str, str, str]] = field(default_factory=list)  # (ns, name, uid): delete


def ready_status(node: Obj) -> str | None:
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            s: str | None = c.get("status")
            return s
    return None


def tainted(node: Obj) -> bool:
    return any(t.get("key") == UNREACHABLE for t in (node.get("spec") or {}).get("taints") or [])


def toleration_seconds(pod: Obj, default: float) -> float | None:
    """How long the pod stays on an unreachable node (None: forever), as the
    taint manager reads its tolerations."""
    for t in (pod.get("spec") or {}).get("tolerations") or []:
        if t.get("effect") not in (None, "", "NoExecute"):
            continue
        if t.get("key") == UNREACHABLE or (not t.get("key") and t.get("operator") == "Exists"):
            secs = t.get("tolerationSeconds")
            return None if secs is None else float(secs)
    return default


def pod_ready(pod: Obj) -> bool:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return bool(c.get("status") == "True")
    return False


def plan(
    nodes: list[Obj],
    pods: list[Obj],
    probe: dict[str, float],
    tainted_since: dict[str, float],
    now: float,
    grace: float,
    toleration: float,
) -> Plan:
    """probe: node -> when its Lease was last seen renewed (controller clock);
    tainted_since: node -> when this controller saw the taint first."""
    out = Plan()
    silent = set()
    for n in nodes:
        name = n["metadata"]["name"]
        seen = probe.get(name)
        if seen is not None and now - seen > grace:
            silent.add(name)
            if ready_status(n) != "Unknown" or not tainted(n):
                out.unreachable.append(name)
        elif seen is not None and tainted(n):
            out.recovered.append(name)
    for p in pods:
        node = str((p.get("spec") or {}).get("nodeName") or "")
        if node not in silent:
            continue
        if pod_ready(p):
            out.not_ready_pods.append((p["metadata"]["namespace"], p["metadata"]["name"]))
        since = tainted_since.get(node)
        secs = toleration_seconds(p, toleration)
        if since is not None and secs is not None and now - since >= secs:
            out.evict.append((p["metadata"]["namespace"], p["metadata"]["name"], p["metadata"].get("uid", "")))
    return out


def _rfc3339(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


class NodeLifecycle:
    """cluster: a podnet.client.Cluster (informers for reads, REST for writes)."""

    def __init__(self, cluster: Any, grace: float = GRACE, toleration: float = TOLERATION, recorder: Any = None):
        self.cluster = cluster
        self.objects = cluster.client
        self.grace = grace
        self.toleration = toleration
        self.recorder = recorder
        self.renewals: dict[str, tuple[str, float]] = {}  # node -> (heartbeats seen, when seen)
        self.tainted_since: dict[str, float] = {}
        self.evicted = 0

    def observe(self, now: float) -> dict[str, float]:
        """Heartbeats -> probe times: a change of the Lease's renewTime or of
        the Node's Ready lastHeartbeatTime (as the node lifecycle controller
        takes either: an agent that renews no Lease still posts its status
        every 10 s). A node never seen beating is probed from when we first
        saw it."""
        leases = {
            le["metadata"]["name"]: (le.get("spec") or {}).get("renewTime") or ""
            for le in self.cluster.list("Lease", NODE_LEASE_NAMESPACE)
        }
        probe = {}
        for n in self.cluster.list("Node"):
            name = n["metadata"]["name"]
            beat = next(
                (
                    c.get("lastHeartbeatTime")
                    for c in (n.get("status") or {}).get("conditions") or []
                    if c.get("type") == "Ready"
                ),
                None,
            )
            renew = "%s|%s" % (leases.get(name, ""), beat or "")
            seen = self.renewals.get(name)
            if seen is None or seen[0] != renew:
                seen = (renew, now)
                self.renewals[name] = seen
            probe[name] = seen[1]
        return probe

    def sync(self) -> Plan:
        now = time.monotonic()
        probe = self.observe(now)
        nodes = self.cluster.list("Node")
        for n in nodes:
            name = n["metadata"]["name"]
            if tainted(n):
                self.tainted_since.setdefault(name, now)
            else:
                self.tainted_since.pop(name, None)
        p = plan(nodes, self.cluster.list("Pod"), probe, self.tainted_since, now, self.grace, self.toleration)
        for name in p.unreachable:
            self._mark_unreachable(name)
            self.tainted_since.setdefault(name, now)
        for name in p.recovered:
            self._untaint(name)
        for ns, name in p.not_ready_pods:
            self._pod_not_ready(ns, name)
        for ns, name, uid in p.evict:
            log.info("node lifecycle: deleting pod %s/%s (its node is unreachable past its toleration)", ns, name)
            try:
                self.objects.delete("Pod", ns, name, grace=0, uid=uid or None)
                self.evicted += 1
            except Exception as exc:  # NotFound or Conflict: already gone or replaced
                log.info("node lifecycle: deleting pod %s/%s: %s", ns, name, exc)
        return p

    def _mark_unreachable(self, name: str) -> None:
        stamp = _rfc3339(time.time())

        def status(n: Obj) -> bool | None:
            conds = n.setdefault("status", {}).setdefault("conditions", [])
            ready = next((c for c in conds if c.get("type") == "Ready"), None)
            if ready is not None and ready.get("status") == "Unknown":
                return False
            if ready is None:
                ready = {"type": "Ready"}
                conds.append(ready)
            ready.update(
                status="Unknown",
                reason="NodeStatusUnknown",
                message=STATUS_UNKNOWN_MESSAGE,
                lastTransitionTime=stamp,
            )
            return None

        def taint(n: Obj) -> bool | None:
            taints = n.setdefault("spec", {}).setdefault("taints", [])
            if any(t.get("key") == UNREACHABLE for t in taints):
                return False
            taints.append({"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": stamp})
            return None

        log.info("node lifecycle: node %s stopped renewing its lease for %.0f s: unreachable", name, self.grace)
        self.objects.mutate("Node", None, name, status, status=True)
        node = self.objects.mutate("Node", None, name, taint)
        if node is not None and self.recorder is not None:
            self.recorder.event(node, "Normal", "NodeNotReady", "Node %s status is now: NodeNotReady" % name)

    def _untaint(self, name: str) -> None:
        def untaint(n: Obj) -> bool | None:
            taints = (n.get("spec") or {}).get("taints") or []
            keep = [t for t in taints if t.get("key") != UNREACHABLE]
            if len(keep) == len(taints):
                return False
            n["spec"]["taints"] = keep
            return None

        log.info("node lifecycle: node %s renews its lease again", name)
        self.objects.mutate("Node", None, name, untaint)

    def _pod_not_ready(self, ns: str, name: str) -> None:
        """MarkPodsNotReady: the pod's Ready condition False, so its
        endpoints become not ready."""
        stamp = _rfc3339(time.time())

        def status(p: Obj) -> bool | None:
            conds = p.setdefault("status", {}).setdefault("conditions", [])
            ready = next((c for c in conds if c.get("type") == "Ready"), None)
            if ready is None or ready.get("status") == "False":
                return False
            ready.update(status="False", reason="NodeUnreachable", lastTransitionTime=stamp)
            return None

        try:
            self.objects.mutate("Pod", ns, name, status, status=True)
        except Exception as exc:  # gone meanwhile: nothing to mark
            log.info("node lifecycle: marking pod %s/%s not ready: %s", ns, name, exc)

    def run(self, stop: threading.Event, period: float | None = None) -> None:
        """Check every quarter of the grace period (at most 5 s), so a node is
        noticed soon after its grace runs out."""
        wait = period or max(0.5, min(5.0, self.grace / 4))
        for kind in ("Lease", "Node", "Pod"):
            self.cluster.watch_dirty(kind, threading.Event())
        while not stop.is_set():
            try:
                self.sync()
            except Exception as exc:  # retried on the next pass
                log.warning("node lifecycle sync failed: %s", exc)
            stop.wait(wait)
