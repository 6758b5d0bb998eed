"""The controller manager: one process, level-triggered.

A watch on the whole registry only marks the state dirty; one worker then
syncs from a full read of the cluster (never from the event itself), so a
missed or merged event cannot leave anything stale, and a periodic resync
repairs what a failed write left behind. Each step's decision is a pure
function in planners.py; this module only reads and writes.
"""

import copy
import logging
import threading
import time

from podnet.controllers import planners
from podnet.store import loop
from podnet.store.base import Conflict
from podnet.store.objects import NotFound

log = logging.getLogger("podnet.controllers")
RESYNC = 5.0


def now_rfc3339():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def request_delete(objects, pod):
    """A scheduled pod is only marked: its node's agent stops it, tears its
    network down and then removes the object (as kubelet confirms a delete).
    An unscheduled pod has nobody to do that and goes at once."""
    ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
    if not pod["spec"].get("nodeName"):
        try:
            objects.delete("Pod", ns, name)
        except NotFound:
            pass
        return

    def mark(obj):
        if obj["metadata"].get("deletionTimestamp"):
            return False
        obj["metadata"]["deletionTimestamp"] = now_rfc3339()

    objects.mutate("Pod", ns, name, mark)


class Manager:
    def __init__(
        self, objects, cluster_cidr=planners.CLUSTER_CIDR, node_prefix=planners.NODE_PREFIX, lb_pool=planners.LB_POOL
    ):
        self.objects = objects
        self.lb_pool = lb_pool
        self.cluster_cidr = cluster_cidr
        self.node_prefix = node_prefix
        self.dirty = threading.Event()
        self.syncs = 0

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
        self._deployments()
        self._schedule(nodes)
        self._endpointslices()
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
                self.objects.mutate("Service", ns, name, put)
                log.info("service %s/%s: LoadBalancer ingress %s", ns, name, ip or "released")
            except NotFound:
                pass

    def _deployments(self):
        o = self.objects
        pods = o.list("Pod")
        deps = o.list("Deployment")
        uids = {d["metadata"].get("uid") for d in deps}
        for dep in deps:
            create, delete, status = planners.plan_deployment(dep, pods)
            for pod in create:
                o.create(pod)
            by_name = {p["metadata"]["name"]: p for p in pods}
            for name in delete:
                request_delete(o, by_name[name])
            if dep.get("status") != dict(dep.get("status", {}), **status):
                o.mutate(
                    "Deployment",
                    dep["metadata"]["namespace"],
                    dep["metadata"]["name"],
                    lambda d, s=status: d.__setitem__("status", dict(d.get("status", {}), **s)),
                )
        for pod in pods:  # pods whose Deployment is gone go with it
            refs = [r for r in pod["metadata"].get("ownerReferences", []) if r.get("kind") == "Deployment"]
            if refs and refs[0].get("uid") not in uids and not pod["metadata"].get("deletionTimestamp"):
                request_delete(o, pod)

    def _schedule(self, nodes):
        o = self.objects
        pods = o.list("Pod")
        for pod in pods:
            if pod["spec"].get("nodeName") or pod["metadata"].get("deletionTimestamp"):
                continue
            node = planners.choose_node(pod, nodes, pods)
            ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
            if node is None:

                def unschedulable(p):
                    cond = {
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": "Unschedulable",
                        "message": "no Ready node with a podCIDR matches the pod's nodeSelector",
                    }
                    if p.get("status", {}).get("conditions") == [cond]:
                        return False
                    p["status"] = {"phase": "Pending", "conditions": [cond]}

                o.mutate("Pod", ns, name, unschedulable)
                continue

            def bind(p, n=node):
                if p["spec"].get("nodeName"):
                    return False
                p["spec"]["nodeName"] = n
                p["status"] = {
                    "phase": "Pending",
                    "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": now_rfc3339()}],
                }

            o.mutate("Pod", ns, name, bind)
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

    # ---- the loop ------------------------------------------------------------

    def run(self, stop):
        threading.Thread(
            target=loop.watch_dirty,
            args=(self.objects.store, "/registry/", self.dirty, stop, log),
            daemon=True,
            name="watch",
        ).start()
        loop.run(self.sync, self.dirty, stop, RESYNC, log, "controller sync")
