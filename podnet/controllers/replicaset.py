"""The ReplicaSet controller's decisions, pure (the manager applies them).

A ReplicaSet keeps spec.replicas active pods that match its selector and
name it as their controller: it adopts matching orphans, creates pods named
`<rs>-<5 chars>` from its template and deletes the extra ones, the least
useful first (kube-controller-manager's ActivePodsWithRanks order:
unscheduled, then pending, then not ready, then ready for the shortest
time, then the most restarts, then the newest). Its status counts what it
observed: replicas, fullyLabeledReplicas, readyReplicas, availableReplicas
(Ready for spec.minReadySeconds; the time a pod became Ready is its Ready
condition's lastTransitionTime).

The counting helpers here are shared with the Deployment planner
(rollout.py), which reads availability the same way.
"""

import calendar
import copy
import time
from dataclasses import dataclass, field
from typing import Protocol

from podnet.api import Obj, controller_of, matches, owner_reference

# rand.String's alphabet in apimachinery (no vowels, no 0/1/3): generateName suffixes
ALNUM = "bcdfghjklmnpqrstvwxz2456789"


class Chooser(Protocol):
    """What a planner needs of a random source: `random` or a seeded random.Random."""

    def choice(self, seq: str) -> str: ...


def suffix(rng: Chooser, n: int = 5) -> str:
    return "".join(rng.choice(ALNUM) for _ in range(n))


def parse_time(ts: object) -> float | None:
    if not isinstance(ts, str):
        return None
    try:
        return float(calendar.timegm(time.strptime(ts, "%Y-%m-%dT%H:%M:%SZ")))
    except ValueError:
        return None


def rfc3339(now: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))


def _ready_cond(pod: Obj) -> Obj | None:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            cond: Obj = c
            return cond
    return None


def pod_ready(pod: Obj) -> bool:
    c = _ready_cond(pod)
    return c is not None and c.get("status") == "True"


def ready_since(pod: Obj) -> float | None:
    """When the pod became Ready (its Ready condition's lastTransitionTime); None if not Ready or unknown."""
    c = _ready_cond(pod)
    if c is None or c.get("status") != "True":
        return None
    return parse_time(c.get("lastTransitionTime"))


def pod_available(pod: Obj, min_ready: int, now: float) -> bool:
    """Ready, and for minReadySeconds already (podutil.IsPodAvailable)."""
    if not pod_ready(pod):
        return False
    if min_ready <= 0:
        return True
    since = ready_since(pod)
    return since is not None and since + min_ready <= now


def active(pod: Obj) -> bool:
    """controller.IsPodActive: not terminating, not finished."""
    return not pod["metadata"].get("deletionTimestamp") and (pod.get("status") or {}).get("phase") not in (
        "Succeeded",
        "Failed",
    )


def controller_uid(obj: Obj) -> str | None:
    uid: str | None = (controller_of(obj) or {}).get("uid")
    return uid


def owned(obj: Obj, owner: Obj) -> bool:
    return (
        obj["metadata"].get("namespace") == owner["metadata"].get("namespace")
        and controller_uid(obj) is not None
        and controller_uid(obj) == owner["metadata"].get("uid")
    )


def owner_ref(owner: Obj) -> Obj:
    """controller: true, blockOwnerDeletion: true (the owner must have a uid)."""
    return owner_reference(owner)


@dataclass
class Counts:
    replicas: int = 0
    labeled: int = 0
    ready: int = 0
    available: int = 0


def rs_pods(rs: Obj, pods: list[Obj]) -> list[Obj]:
    """The active pods this ReplicaSet controls."""
    return [p for p in pods if owned(p, rs) and active(p)]


def count(rs: Obj, pods: list[Obj], now: float) -> Counts:
    spec = rs.get("spec") or {}
    min_ready = int(spec.get("minReadySeconds") or 0)
    tlabels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    c = Counts()
    for p in rs_pods(rs, pods):
        c.replicas += 1
        labels = p["metadata"].get("labels") or {}
        c.labeled += all(labels.get(k) == v for k, v in tlabels.items())
        c.ready += pod_ready(p)
        c.available += pod_available(p, min_ready, now)
    return c


def _delete_rank(pod: Obj) -> tuple[int, int, int, float, int, float]:
    """Ascending: the pod to delete first comes first (ActivePodsWithRanks, without the co-location rank)."""
    status = pod.get("status") or {}
    phase = {"Pending": 0, "Unknown": 1, "Running": 2}.get(status.get("phase") or "Pending", 0)
    ready = pod_ready(pod)
    restarts = max((int(s.get("restartCount") or 0) for s in status.get("containerStatuses") or []), default=0)
    return (
        1 if pod["spec"].get("nodeName") else 0,
        phase,
        1 if ready else 0,
        -(ready_since(pod) or 0.0) if ready else 0.0,  # ready for less time goes first
        -restarts,
        -(parse_time(pod["metadata"].get("creationTimestamp")) or 0.0),  # the newest first
    )


def new_pod(rs: Obj, rng: Chooser) -> Obj:
    tmpl = (rs.get("spec") or {}).get("template") or {}
    tmeta = tmpl.get("metadata") or {}
    meta: Obj = {
        "name": "%s-%s" % (rs["metadata"]["name"], suffix(rng)),
        "namespace": rs["metadata"].get("namespace", "default"),
        "labels": dict(tmeta.get("labels") or {}),
        "ownerReferences": [owner_ref(rs)],
    }
    if tmeta.get("annotations"):
        meta["annotations"] = dict(tmeta["annotations"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": copy.deepcopy(tmpl.get("spec") or {})}


@dataclass
class RSPlan:
    create: list[Obj] = field(default_factory=list)
    delete: list[Obj] = field(default_factory=list)
    adopt: list[Obj] = field(default_factory=list)  # orphan pods to take ownerReferences
    status: Obj = field(default_factory=dict)


def plan_replicaset(rs: Obj, pods: list[Obj], now: float, rng: Chooser) -> RSPlan:
    """-> what the ReplicaSet controller does for one ReplicaSet this pass."""
    plan = RSPlan()
    ns = rs["metadata"].get("namespace")
    spec = rs.get("spec") or {}
    sel = spec.get("selector") or {}
    if not rs["metadata"].get("deletionTimestamp"):
        for p in pods:  # orphans that match the selector are adopted (ClaimPods)
            if (
                p["metadata"].get("namespace") == ns
                and controller_uid(p) is None
                and active(p)
                and matches(sel, p["metadata"].get("labels") or {})
            ):
                plan.adopt.append(p)
    adopted = {id(p) for p in plan.adopt}
    view = [
        dict(p, metadata=dict(p["metadata"], ownerReferences=[owner_ref(rs)])) if id(p) in adopted else p for p in pods
    ]
    mine = rs_pods(rs, view)
    c = count(rs, view, now)
    want = int(spec.get("replicas", 1))
    if rs["metadata"].get("deletionTimestamp"):
        want = len(mine)  # being deleted: leave the pods to the garbage collector
    if len(mine) < want:
        plan.create = [new_pod(rs, rng) for _ in range(want - len(mine))]
    elif len(mine) > want:
        plan.delete = sorted(mine, key=_delete_rank)[: len(mine) - want]
    plan.status = {
        "replicas": c.replicas,
        "fullyLabeledReplicas": c.labeled,
        "readyReplicas": c.ready,
        "availableReplicas": c.available,
        "observedGeneration": rs["metadata"].get("generation", 1),
    }
    return plan
