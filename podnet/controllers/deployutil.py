"""What the Deployment planner (rollout.py) shares with its tests and
readers, as kube-controller-manager's deploymentutil: the annotation names,
the pod-template-hash, template equality, the maxSurge / maxUnavailable
fenceposts, revisions, and a new ReplicaSet made from a Deployment."""

import copy
import json
import math

from podnet.api import Obj, matches
from podnet.controllers.replicaset import ALNUM, controller_uid, owner_ref

HASH = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
DESIRED = "deployment.kubernetes.io/desired-replicas"
MAX = "deployment.kubernetes.io/max-replicas"
# annotations a ReplicaSet does not copy from its Deployment (skipCopyAnnotation)
_NOT_COPIED = {
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    "deployment.kubernetes.io/revision-history",
    DESIRED,
    MAX,
    "deprecated.deployment.rollback.to",
}


def template_hash(template: Obj, collisions: int = 0) -> str:
    """FNV-32a of the template (and of status.collisionCount, when a name was
    taken), its decimal digits spelled in rand's safe alphabet, as
    controller.ComputeHash + rand.SafeEncodeString ("7d4b9c6f5")."""
    h = 0x811C9DC5
    data = json.dumps(strip_hash(template), sort_keys=True) + (str(collisions) if collisions else "")
    for b in data.encode():
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return "".join(ALNUM[ord(ch) % len(ALNUM)] for ch in str(h))


def strip_hash(template: Obj | None) -> Obj:
    """The template without the hash label, compared as Go's
    Semantic.DeepEqual compares structs: a null, {} or [] is the same as an
    absent field (`kubectl rollout undo` patches back "creationTimestamp":
    null and "resources": {})."""
    t = copy.deepcopy(template or {})
    labels = (t.get("metadata") or {}).get("labels")
    if labels and HASH in labels:
        del labels[HASH]
    return _pruned(t)


def _pruned(v: Obj) -> Obj:
    out: Obj = {}
    for k, x in v.items():
        if isinstance(x, dict):
            x = _pruned(x)
        elif isinstance(x, list):
            x = [_pruned(i) if isinstance(i, dict) else i for i in x]
        if x is not None and x != {} and x != []:
            out[k] = x
    return out


def scaled(value: object, total: int, round_up: bool) -> int:
    """intstr.GetScaledValueFromIntOrPercent."""
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.endswith("%"):
        v = total * int(value[:-1]) / 100
        return math.ceil(v) if round_up else math.floor(v)
    return int(str(value))


def fenceposts(dep: Obj) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) as ResolveFenceposts: surge rounds up,
    unavailable down, both 0 -> unavailable 1; Recreate: (0, 0)."""
    spec = dep["spec"]
    strategy = spec.get("strategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        return 0, 0
    ru = strategy.get("rollingUpdate") or {}
    replicas = int(spec.get("replicas", 1))
    surge = scaled(ru.get("maxSurge", "25%"), replicas, True)
    unavailable = scaled(ru.get("maxUnavailable", "25%"), replicas, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, min(unavailable, replicas)


def revision(rs: Obj) -> int:
    try:
        return int((rs["metadata"].get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


def created(rs: Obj) -> tuple[str, str]:
    return (str(rs["metadata"].get("creationTimestamp") or "~"), rs["metadata"]["name"])


def new_replicaset(dep: Obj, rev: int, replicas: int) -> Obj:
    """The ReplicaSet `<deploy>-<hash>` for the Deployment's current template:
    the hash in its labels, selector and template labels, the Deployment's
    annotations (but not kubectl's or the controller's own) and `rev`."""
    spec = dep["spec"]
    tmpl = copy.deepcopy(spec.get("template") or {})
    h = template_hash(tmpl, int((dep.get("status") or {}).get("collisionCount") or 0))
    tmeta = tmpl.setdefault("metadata", {})
    tmeta["labels"] = dict(tmeta.get("labels") or {}, **{HASH: h})
    sel = copy.deepcopy(spec.get("selector") or {})
    sel["matchLabels"] = dict(sel.get("matchLabels") or {}, **{HASH: h})
    ann = {k: v for k, v in (dep["metadata"].get("annotations") or {}).items() if k not in _NOT_COPIED}
    ann[REVISION] = str(rev)
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": "%s-%s" % (dep["metadata"]["name"], h),
            "namespace": dep["metadata"].get("namespace", "default"),
            "labels": dict(tmeta["labels"]),
            "annotations": ann,
            "ownerReferences": [owner_ref(dict(dep, apiVersion="apps/v1", kind="Deployment"))],
        },
        "spec": {
            "replicas": replicas,
            "minReadySeconds": int(spec.get("minReadySeconds") or 0),
            "selector": sel,
            "template": tmpl,
        },
    }


def orphans(dep: Obj, rss: list[Obj]) -> list[Obj]:
    """ReplicaSets the Deployment adopts: in its namespace, with no
    controller, matching its selector (ClaimReplicaSets; e.g. left by a
    `kubectl delete --cascade=orphan` of an earlier Deployment)."""
    dm = dep["metadata"]
    if dm.get("deletionTimestamp"):
        return []
    sel = dep["spec"].get("selector") or {}
    return [
        r
        for r in rss
        if r["metadata"].get("namespace") == dm.get("namespace")
        and controller_uid(r) is None
        and not r["metadata"].get("deletionTimestamp")
        and matches(sel, r["metadata"].get("labels") or {})
    ]


def set_condition(
    conds: list[Obj], ctype: str, status: str, reason: str, message: str, now: str, touch: bool = False
) -> list[Obj]:
    """SetDeploymentCondition: the same status and reason keep the condition
    (touch: with a fresh lastUpdateTime and message, a rollout that keeps
    progressing); a new status gets a new lastTransitionTime."""
    cur = next((c for c in conds if c.get("type") == ctype), None)
    if cur is not None and cur.get("status") == status and cur.get("reason") == reason:
        if touch:
            cur["lastUpdateTime"], cur["message"] = now, message
        return conds
    new = {
        "type": ctype,
        "status": status,
        "lastUpdateTime": now,
        "lastTransitionTime": cur["lastTransitionTime"] if cur and cur.get("status") == status else now,
        "reason": reason,
        "message": message,
    }
    return [c for c in conds if c.get("type") != ctype] + [new]
