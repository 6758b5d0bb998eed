"""The controller manager: one process, level-triggered.

A watch on the whole registry only marks the state dirty; one worker then
syncs from a full read of the cluster (never from the event itself), so a
missed or merged event cannot leave anything stale, and a periodic resync
repairs what a failed write left behind. Each step's decision is a pure
function: planners.py (podCIDRs, placement, EndpointSlices, LoadBalancer
IPs), rollout.py (Deployments -> ReplicaSets), replicaset.py (ReplicaSets
-> pods); this module only reads and writes.
"""

import copy
import logging
import random
import threading
import time

from podnet.client import AlreadyExists, Conflict, NotFound, events, loop
from podnet.controllers import nodelifecycle, planners, replicaset, rollout

log = logging.getLogger("podnet.controllers")
RESYNC = 5.0


def now_rfc3339(t=None):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def request_delete(objects, pod):
    """The API server marks a scheduled pod (its node's agent stops it, tears
    its network down and then removes the object, as kubelet confirms a
    delete) and removes an unscheduled one at once."""
    ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
    try:
        objects.delete("Pod", ns, name, uid=pod["metadata"].get("uid"))
    except (NotFound, Conflict):
        pass


class Manager:
    """cluster: a podnet.client.Cluster. Each sync reads the cluster fresh from
    the API server (its own writes of the pass before must count: from a
    lagging copy the Deployment step would create a pod twice); the
    informers only wake the loop."""

    def __init__(
        self,
        cluster,
        cluster_cidr=planners.CLUSTER_CIDR,
        node_prefix=planners.NODE_PREFIX,
        lb_pool=planners.LB_POOL,
        node_grace=nodelifecycle.GRACE,
        node_toleration=nodelifecycle.TOLERATION,
    ):
        self.cluster = cluster
        # its own loop: liveness is a matter of time, not of watch events
        self.lifecycle = nodelifecycle.NodeLifecycle(
            cluster, node_grace, node_toleration, events.Recorder(cluster.client, "node-controller")
        )
        self.objects = cluster.client
        self.recorder = events.Recorder(cluster.client, "podnet-controllers")
        # the sources kubectl describe shows for these events in Kubernetes
        self.deployment_events = events.Recorder(cluster.client, "deployment-controller")
        self.replicaset_events = events.Recorder(cluster.client, "replicaset-controller")
        self.lb_pool = lb_pool
        self.cluster_cidr = cluster_cidr
        self.node_prefix = node_prefix
        self.dirty = threading.Event()
        self.syncs = 0
        self._ready_seen = {}  # pod uid -> when a pass first saw it Ready

    # ---- one full sync -------------------------------------------------------

    def sync(self):
        o = self.objects
        nodes = o.list("Node")
        try:
            for name, cidr in planners.plan_pod_cidrs(nodes, self.cluster_cidr, self.node_prefix).items():
                o.mutate(
                    "Node",
                    None,
                    name,
                    lambda n, c=cidr: n["spec"].__setitem__("podCIDR", c) if not n["spec"].get("podCIDR") else False,
                )
                log.info("node %s: podCIDR %s", name, cidr)
        except planners.Exhausted as exc:
            log.error("%s", exc)
        nodes = o.list("Node")
        self._workloads()
        self._schedule(nodes)
        self._endpointslices()
        self._endpoints()
        self._loadbalancers()
        self.syncs += 1

    def _loadbalancers(self):
        """status.loadBalancer.ingress from the lab's pool (the cloud's job)."""
        try:
            changes = planners.plan_lb_ips(self.objects.list("Service"), self.lb_pool)
        except planners.Exhausted as exc:
            log.error("%s", exc)
            return
        for (ns, name), ip in changes.items():

            def put(s, ip=ip):
                s.setdefault("status", {})["loadBalancer"] = {"ingress": [{"ip": ip, "ipMode": "VIP"}]} if ip else {}

            try:
                svc = self.objects.mutate("Service", ns, name, put, status=True)
                if svc is not None:
                    self.recorder.event(
                        svc,
                        "Normal",
                        "IPAllocated" if ip else "IPReleased",
                        "LoadBalancer IP %s %s" % (ip, "assigned") if ip else "LoadBalancer IP released",
                    )
                log.info("service %s/%s: LoadBalancer ingress %s", ns, name, ip or "released")
            except NotFound:
                pass

    def _ready_times(self, pods, now):
        """The time each pod became Ready, for minReadySeconds: its Ready
        condition's lastTransitionTime, or (when the agent writes none) the
        pass that first saw it Ready, kept here and filled into our copy."""
        seen = {}
        for p in pods:
            for c in (p.get("status") or {}).get("conditions") or []:
                if c.get("type") == "Ready" and c.get("status") == "True":
                    uid = p["metadata"].get("uid")
                    seen[uid] = self._ready_seen.get(uid, now)
                    c.setdefault("lastTransitionTime", now_rfc3339(seen[uid]))
        self._ready_seen = seen

    def _workloads(self):
        """Deployments -> ReplicaSets (rollout.py), ReplicaSets -> pods
        (replicaset.py); objects whose owner is gone are the API server's
        garbage collector's."""
        o = self.objects
        now = time.time()
        pods = o.list("Pod")
        self._ready_times(pods, now)
        rss = o.list("ReplicaSet")  # each Deployment plans only its own (and orphans it adopts)
        for dep in o.list("Deployment"):
            self._deployment(dep, rss, pods, now)
        for rs in o.list("ReplicaSet"):  # again: as the Deployments left them
            self._replicaset(rs, pods, now)

    def _deployment(self, dep, rss, pods, now):
        o = self.objects
        ns, name = dep["metadata"]["namespace"], dep["metadata"]["name"]
        plan = rollout.plan_deployment(dep, rss, pods, now)
        if plan.adopt:  # own them first; the next pass plans with them
            ref = replicaset.owner_ref(dict(dep, apiVersion="apps/v1", kind="Deployment"))
            for rs in plan.adopt:

                def adopt(r, ref=ref):
                    if replicaset.controller_uid(r) is not None:
                        return False
                    r["metadata"]["ownerReferences"] = [*(r["metadata"].get("ownerReferences") or []), ref]

                o.mutate("ReplicaSet", ns, rs["metadata"]["name"], adopt)
            self.dirty.set()
            return
        try:
            for rs in plan.create:
                try:
                    o.create(rs)
                except AlreadyExists:
                    self._collision(dep, rs)
                    return
            for rs in plan.update:
                o.update(rs)
            for rs in plan.delete:
                o.delete("ReplicaSet", ns, rs["metadata"]["name"], uid=rs["metadata"].get("uid"))
        except (Conflict, NotFound) as exc:  # decided on a copy that changed since: decide again
            log.info("deployment %s/%s: %s; next pass", ns, name, exc)
            self.dirty.set()
            return
        for reason, message in plan.events:
            self.deployment_events.event(dep, "Normal", reason, message)
        if plan.annotations:

            def annotate(d, a=plan.annotations):
                d["metadata"].setdefault("annotations", {}).update(a)

            o.mutate("Deployment", ns, name, annotate)
        if dep.get("status") != plan.status:
            o.mutate("Deployment", ns, name, lambda d, s=plan.status: d.__setitem__("status", s), status=True)
        if plan.create or plan.update:
            self.dirty.set()  # the ReplicaSets' pods next, then this Deployment's status again

    def _collision(self, dep, rs):
        """The new ReplicaSet's name is taken: unless by this Deployment's own
        (a pass that raced with ours), count a collision in the status, which
        goes into the hash, so the next pass tries another name."""
        ns, name = dep["metadata"]["namespace"], dep["metadata"]["name"]
        have = self.objects.find("ReplicaSet", ns, rs["metadata"]["name"])
        if have is None or replicaset.controller_uid(have) != dep["metadata"].get("uid"):

            def bump(d):
                st = d.setdefault("status", {})
                st["collisionCount"] = int(st.get("collisionCount") or 0) + 1

            self.objects.mutate("Deployment", ns, name, bump, status=True)
            log.warning("deployment %s/%s: replica set %s exists; collisionCount up", ns, name, rs["metadata"]["name"])
        self.dirty.set()

    def _replicaset(self, rs, pods, now):
        o = self.objects
        ns, name = rs["metadata"]["namespace"], rs["metadata"]["name"]
        plan = replicaset.plan_replicaset(rs, pods, now, random)
        for pod in plan.adopt:

            def adopt(p, rs=rs):
                if replicaset.controller_uid(p) is not None:
                    return False
                p["metadata"]["ownerReferences"] = [
                    *(p["metadata"].get("ownerReferences") or []),
                    replicaset.owner_ref(rs),
                ]

            o.mutate("Pod", ns, pod["metadata"]["name"], adopt)
        for pod in plan.create:
            try:
                o.create(pod)
            except (AlreadyExists, Conflict):  # the name is taken: another suffix next pass
                self.dirty.set()
                continue
            self.replicaset_events.event(rs, "Normal", "SuccessfulCreate", "Created pod: %s" % pod["metadata"]["name"])
        for pod in plan.delete:
            request_delete(o, pod)
            self.replicaset_events.event(rs, "Normal", "SuccessfulDelete", "Deleted pod: %s" % pod["metadata"]["name"])
        if plan.create or plan.delete or plan.adopt:
            self.dirty.set()
        if {k: (rs.get("status") or {}).get(k) for k in plan.status} != plan.status:
            o.mutate(
                "ReplicaSet",
                ns,
                name,
                lambda r, s=plan.status: r.__setitem__("status", dict(r.get("status") or {}, **s)),
                status=True,
            )

    def _schedule(self, nodes):
        o = self.objects
        pods = o.list("Pod")
        for pod in pods:
            if pod["spec"].get("nodeName") or pod["metadata"].get("deletionTimestamp"):
                continue
            node, why = planners.place(pod, nodes, pods)
            ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
            if node is None:

                def unschedulable(p, why=why):
                    cond = {
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": "Unschedulable",
                        "message": why,
                    }
                    if p.get("status", {}).get("conditions") == [cond]:
                        return False
                    p["status"] = {"phase": "Pending", "conditions": [cond]}

                o.mutate("Pod", ns, name, unschedulable, status=True)
                self.recorder.event(pod, "Warning", "FailedScheduling", why)
                continue

            try:  # the binding subresource, as kube-scheduler binds (it sets PodScheduled too)
                o.request(
                    "POST",
                    "/api/v1/namespaces/%s/pods/%s/binding" % (ns, name),
                    {
                        "apiVersion": "v1",
                        "kind": "Binding",
                        "metadata": {"name": name},
                        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
                    },
                )
            except (NotFound, Conflict):
                continue
            self.recorder.event(pod, "Normal", "Scheduled", "Successfully assigned %s/%s to %s" % (ns, name, node))
            pod["spec"]["nodeName"] = node  # counts for the next pod's placement
            log.info("pod %s/%s -> %s", ns, name, node)

    def _endpointslices(self):
        o = self.objects
        pods = o.list("Pod")
        services = o.list("Service")
        existing = {}
        for s in o.list("EndpointSlice"):
            owner = s["metadata"].get("labels", {}).get("kubernetes.io/service-name")
            if s["metadata"].get("labels", {}).get("endpointslice.kubernetes.io/managed-by") == "podnet":
                existing[(s["metadata"]["namespace"], s["metadata"]["name"])] = (owner, s)
        wanted = set()
        for svc in services:
            for want in planners.plan_endpointslices(svc, pods):
                key = (want["metadata"]["namespace"], want["metadata"]["name"])
                wanted.add(key)
                have = existing.get(key, (None, None))[1]
                if have is None:
                    o.create(want)
                elif (have.get("endpoints"), have.get("ports")) != (want["endpoints"], want["ports"]):
                    new = copy.deepcopy(have)
                    new["endpoints"], new["ports"] = want["endpoints"], want["ports"]
                    try:
                        o.update(new)
                    except Conflict:
                        self.dirty.set()
        for key in existing:
            if key not in wanted:
                try:
                    o.delete("EndpointSlice", *key)
                except NotFound:
                    pass

    def _endpoints(self):
        """Endpoints mirror each Service's EndpointSlices (kubectl get
        endpoints); those of Services that are gone go too."""
        o = self.objects
        svcs = o.list("Service")
        services = {(s["metadata"]["namespace"], s["metadata"]["name"]) for s in svcs}
        want = {
            (e["metadata"]["namespace"], e["metadata"]["name"]): e
            for e in planners.plan_endpoints(o.list("EndpointSlice"))
        }
        for s in svcs:  # a Service with a selector has Endpoints, empty or not
            key = (s["metadata"]["namespace"], s["metadata"]["name"])
            if s["spec"].get("selector") and key not in want:
                want[key] = {
                    "apiVersion": "v1",
                    "kind": "Endpoints",
                    "metadata": {"name": key[1], "namespace": key[0]},
                    "subsets": [],
                }
        have = {(e["metadata"]["namespace"], e["metadata"]["name"]): e for e in o.list("Endpoints")}
        for key, ep in want.items():
            if key not in services:
                continue
            cur = have.get(key)
            try:
                if cur is None:
                    o.create(ep)
                elif cur.get("subsets") != ep["subsets"]:
                    new = copy.deepcopy(cur)
                    new["subsets"] = ep["subsets"]
                    o.update(new)
            except (Conflict, NotFound):
                self.dirty.set()
        for key, cur in have.items():
            if key not in services or (key not in want and cur.get("subsets")):
                try:
                    if key not in services:
                        o.delete("Endpoints", *key)
                    else:  # no endpoint left: an empty subset list, as Kubernetes keeps it
                        new = copy.deepcopy(cur)
                        new["subsets"] = []
                        o.update(new)
                except (Conflict, NotFound):
                    self.dirty.set()

    # ---- the loop ------------------------------------------------------------

    def run(self, stop):
        for kind in ("Node", "Pod", "Deployment", "ReplicaSet", "Service", "EndpointSlice", "Endpoints"):
            self.cluster.watch_dirty(kind, self.dirty)
        threading.Thread(target=self.lifecycle.run, args=(stop,), daemon=True, name="node-lifecycle").start()
        loop.run(self.sync, self.dirty, stop, RESYNC, log, "controller sync")
