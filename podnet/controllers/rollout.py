"""The Deployment controller's decisions, pure (the manager applies them).

As kube-controller-manager's deployment controller (pkg/controller/
deployment): a Deployment owns ReplicaSets named `<deploy>-<pod-template-
hash>`, one per pod template it has had; the one whose template equals the
Deployment's (ignoring the hash label) is the new one, the rest are old.
Each pass:
- paused, or replicas changed (a "scaling event"): only scale, old and new
  ReplicaSets in proportion (`sync`), no rollout;
- Recreate: old ReplicaSets to 0, wait until their pods are gone, then the
  new one (created only then) to spec.replicas;
- RollingUpdate: the new ReplicaSet up while all ReplicaSets' replicas stay
  <= replicas + maxSurge, old ones down while available pods stay >=
  replicas - maxUnavailable (unhealthy old pods go first);
- old ReplicaSets at 0 beyond revisionHistoryLimit are deleted once the
  rollout is complete;
- status and the Available / Progressing conditions, with
  ProgressDeadlineExceeded after progressDeadlineSeconds without progress.
Availability is counted from the pods themselves (replicaset.count), not
from ReplicaSet statuses written a pass earlier.
"""

import copy
import math
from dataclasses import dataclass, field

from podnet.api import Obj
from podnet.controllers.deployutil import (
    DESIRED,
    MAX,
    REVISION,
    created,
    fenceposts,
    new_replicaset,
    orphans,
    revision,
    set_condition,
    strip_hash,
)
from podnet.controllers.replicaset import (
    Counts,
    count,
    owned,
    owner_ref,
    parse_time,
    rfc3339,
)


@dataclass
class DeploymentPlan:
    create: list[Obj] = field(default_factory=list)  # new ReplicaSets
    update: list[Obj] = field(default_factory=list)  # ReplicaSets with changed replicas/annotations
    delete: list[Obj] = field(default_factory=list)  # old ReplicaSets beyond revisionHistoryLimit
    adopt: list[Obj] = field(default_factory=list)  # orphan ReplicaSets the selector matches, to own
    annotations: dict[str, str] = field(default_factory=dict)  # the Deployment's, when they change
    status: Obj = field(default_factory=dict)
    events: list[tuple[str, str]] = field(default_factory=list)  # Normal (reason, message)


class _Pass:
    """One pass over one Deployment: the ReplicaSets as they will be written."""

    def __init__(self, dep: Obj, rss: list[Obj], pods: list[Obj], now: float):
        self.dep, self.pods, self.now = dep, pods, now
        self.spec = dep["spec"]
        self.replicas = int(self.spec.get("replicas", 1))
        self.surge, self.unavailable = fenceposts(dep)
        self.plan = DeploymentPlan()
        self.orig = {r["metadata"]["name"]: r for r in rss if owned(r, dep)}
        ref = owner_ref(dict(dep, apiVersion="apps/v1", kind="Deployment"))
        for r in orphans(dep, rss):  # ClaimReplicaSets: adopted, and from now on ours
            self.plan.adopt.append(r)
            m = r["metadata"]
            self.orig[m["name"]] = dict(r, metadata=dict(m, ownerReferences=[*(m.get("ownerReferences") or []), ref]))
        mine = sorted((copy.deepcopy(r) for r in self.orig.values()), key=created)
        want = strip_hash(self.spec.get("template"))
        self.new: Obj | None = next((r for r in mine if strip_hash(r["spec"].get("template")) == want), None)
        self.old = [r for r in mine if r is not self.new]
        self.counts = {id(r): count(r, pods, now) for r in mine}
        self.conditions: list[Obj] = copy.deepcopy((dep.get("status") or {}).get("conditions") or [])

    # ---- ReplicaSets ---------------------------------------------------------

    def all(self) -> list[Obj]:
        return ([self.new] if self.new is not None else []) + self.old

    def c(self, rs: Obj) -> Counts:
        return self.counts.get(id(rs)) or Counts()

    def annotate(self, rs: Obj) -> None:
        ann = rs["metadata"].setdefault("annotations", {})
        ann[DESIRED] = str(self.replicas)
        ann[MAX] = str(self.replicas + self.surge)

    def scale(self, rs: Obj, to: int) -> bool:
        cur = int(rs["spec"].get("replicas", 1))
        if cur == to:
            return False
        rs["spec"]["replicas"] = to
        self.annotate(rs)
        self.plan.events.append(
            (
                "ScalingReplicaSet",
                # dc.scaleReplicaSet's wording (Kubernetes >= 1.28): "to N from M"
                "Scaled %s replica set %s to %d from %d"
                % ("up" if to > cur else "down", rs["metadata"]["name"], to, cur),
            )
        )
        return True

    def sync_revision(self, create: bool, replicas: int) -> None:
        """getAllReplicaSetsAndSyncRevision: the new ReplicaSet's revision is
        above every old one's (a template back to an older one reuses that
        ReplicaSet and bumps its revision); created when asked."""
        rev = max((revision(r) for r in self.old), default=0) + 1
        if self.new is not None:
            ann = self.new["metadata"].setdefault("annotations", {})
            if revision(self.new) < rev:
                ann[REVISION] = str(rev)
            mrs = int(self.spec.get("minReadySeconds") or 0)
            if int(self.new["spec"].get("minReadySeconds") or 0) != mrs:
                self.new["spec"]["minReadySeconds"] = mrs
            if not self.cond("Progressing") and self.spec.get("progressDeadlineSeconds") is not None:
                self.set_cond(
                    "Progressing",
                    "True",
                    "FoundNewReplicaSet",
                    'Found new replica set "%s"' % self.new["metadata"]["name"],
                )
        elif create:
            self.new = new_replicaset(self.dep, rev, replicas)
            rsname = self.new["metadata"]["name"]
            self.annotate(self.new)
            self.plan.create.append(self.new)
            if replicas > 0:
                self.plan.events.append(("ScalingReplicaSet", "Scaled up replica set %s to %d" % (rsname, replicas)))
            self.set_cond("Progressing", "True", "NewReplicaSetCreated", 'Created new replica set "%s"' % rsname)
        if self.new is not None:
            want = revision(self.new)
            if (self.dep["metadata"].get("annotations") or {}).get(REVISION) != str(want):
                self.plan.annotations[REVISION] = str(want)

    # ---- conditions ------------------------------------------------------------

    def cond(self, ctype: str) -> Obj | None:
        return next((c for c in self.conditions if c.get("type") == ctype), None)

    def set_cond(self, ctype: str, status: str, reason: str, message: str, touch: bool = False) -> None:
        self.conditions = set_condition(self.conditions, ctype, status, reason, message, rfc3339(self.now), touch)

    # ---- the strategies ------------------------------------------------------

    def scaling_event(self) -> bool:
        """isScalingEvent: an active ReplicaSet was sized for other replicas."""
        for rs in self.all():
            if int(rs["spec"].get("replicas", 1)) > 0:
                want = (rs["metadata"].get("annotations") or {}).get(DESIRED)
                if want is not None and want != str(self.replicas):
                    return True
        return False

    def proportional(self) -> None:
        """dc.scale: one active (or the latest) ReplicaSet takes all; else
        replicas + maxSurge shared in proportion to each one's size."""
        act = [r for r in self.all() if int(r["spec"].get("replicas", 1)) > 0]
        if len(act) <= 1:
            target = act[0] if act else (self.new or (self.old[-1] if self.old else None))
            if target is not None:
                self.scale(target, self.replicas)
            return
        if (
            self.new is not None
            and int(self.new["spec"].get("replicas", 1)) == self.replicas
            and self.c(self.new).available == self.replicas
        ):
            for r in self.old:
                self.scale(r, 0)
            return
        allowed = self.replicas + self.surge if self.replicas > 0 else 0
        total = sum(int(r["spec"]["replicas"]) for r in act)
        to_add = allowed - total
        # the largest first; ties: the newest first when adding, the oldest when removing
        act.sort(key=lambda r: created(r), reverse=to_add > 0)
        act.sort(key=lambda r: -int(r["spec"]["replicas"]))
        added = 0
        sizes = {}
        for r in act:  # GetProportion
            cur = int(r["spec"]["replicas"])
            share = 0
            if to_add != 0 and added != to_add:
                ann = (r["metadata"].get("annotations") or {}).get(MAX)
                before = int(ann) if ann and ann.isdigit() and int(ann) > 0 else int(self.status_replicas())
                if self.replicas == 0:
                    share = -cur
                elif before > 0:
                    share = int(math.floor(cur * allowed / before + 0.5)) - cur
                share = min(share, to_add - added) if to_add > 0 else max(share, to_add - added)
            sizes[id(r)] = cur + share
            added += share
        if to_add != 0:  # leftovers to the largest
            sizes[id(act[0])] = max(0, sizes[id(act[0])] + to_add - added)
        for r in act:  # sizes and the desired/max annotations of every active one
            if not self.scale(r, sizes[id(r)]):
                self.annotate(r)

    def status_replicas(self) -> int:
        return int((self.dep.get("status") or {}).get("replicas") or 0)

    def recreate(self) -> None:
        self.sync_revision(False, 0)
        if [self.scale(r, 0) for r in self.old].count(True):  # every one, not just the first
            return
        # old pods still running, terminating ones too: wait (oldPodsRunning)
        if any(
            p
            for r in self.old
            for p in self.pods
            if owned(p, r) and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
        ):
            return
        if self.new is None:
            self.sync_revision(True, self.replicas)
        elif self.new is not None:
            self.scale(self.new, self.replicas)

    def rolling(self) -> None:
        if self.new is None:
            self.sync_revision(True, self._new_rs_replicas())
        else:
            self.sync_revision(False, 0)
        assert self.new is not None
        cur = int(self.new["spec"].get("replicas", 1))
        if cur > self.replicas:
            self.scale(self.new, self.replicas)
        elif cur < self.replicas and self.scale(self.new, self._new_rs_replicas()):
            return  # scaled up: the next pass looks again
        self._scale_down_old()

    def _new_rs_replicas(self) -> int:
        """NewRSNewReplicas for RollingUpdate."""
        new = int(self.new["spec"].get("replicas", 1)) if self.new is not None else 0
        total = sum(int(r["spec"].get("replicas", 1)) for r in self.all())
        room = self.replicas + self.surge - total
        if room <= 0:
            return new
        return new + min(room, self.replicas - new)

    def _scale_down_old(self) -> None:
        """reconcileOldReplicaSets: unhealthy old pods first, then old
        ReplicaSets oldest first while availability stays above the floor."""
        assert self.new is not None
        if not any(int(r["spec"].get("replicas", 1)) for r in self.old):
            return
        total = sum(int(r["spec"].get("replicas", 1)) for r in self.all())
        min_available = self.replicas - self.unavailable
        new_unavailable = int(self.new["spec"].get("replicas", 1)) - self.c(self.new).available
        budget = total - min_available - max(new_unavailable, 0)
        if budget <= 0:
            return
        cleaned = 0
        for r in self.old:  # cleanupUnhealthyReplicas
            cur = int(r["spec"].get("replicas", 1))
            unhealthy = cur - self.c(r).available
            if cleaned >= budget or cur == 0 or unhealthy <= 0:
                continue
            down = min(budget - cleaned, unhealthy)
            self.scale(r, cur - down)
            cleaned += down
        available = sum(self.c(r).available for r in self.all())
        # a scaled-down old ReplicaSet deletes its unavailable pods first: they cost nothing
        left = available - min_available
        for r in self.old:  # scaleDownOldReplicaSetsForRollingUpdate
            cur = int(r["spec"].get("replicas", 1))
            if left <= 0:
                break
            if cur == 0:
                continue
            down = min(cur, left)
            self.scale(r, cur - down)
            left -= down

    def cleanup(self) -> None:
        """cleanupDeployment: old ReplicaSets with no pods beyond revisionHistoryLimit, oldest revision first."""
        limit = int(self.spec.get("revisionHistoryLimit", 10))
        gone = [r for r in self.old if not int(r["spec"].get("replicas", 1)) and not self.c(r).replicas]
        gone = sorted(
            (r for r in gone if not r["metadata"].get("deletionTimestamp")), key=lambda r: (revision(r), created(r))
        )
        self.plan.delete = gone[: max(0, len(gone) - limit)]

    # ---- status --------------------------------------------------------------

    def status(self, rollout: bool) -> Obj:
        """calculateStatus and, when the pass did a rollout, syncRolloutStatus's Progressing."""
        old_status = self.dep.get("status") or {}
        rss = self.all()
        avail = sum(self.c(r).available for r in rss)
        st: Obj = {
            "observedGeneration": self.dep["metadata"].get("generation", 1),
            "replicas": sum(self.c(r).replicas for r in rss),
            "updatedReplicas": self.c(self.new).replicas if self.new is not None else 0,
            "readyReplicas": sum(self.c(r).ready for r in rss),
            "availableReplicas": avail,
            "unavailableReplicas": max(sum(int(r["spec"].get("replicas", 1)) for r in rss) - avail, 0),
        }
        if avail >= self.replicas - self.unavailable:
            self.set_cond("Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
        else:
            self.set_cond(
                "Available", "False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability."
            )
        deadline = self.spec.get("progressDeadlineSeconds", 600)
        prog = self.cond("Progressing")
        if rollout and deadline is not None:
            name = self.new["metadata"]["name"] if self.new is not None else None
            what = 'ReplicaSet "%s"' % name if name else 'Deployment "%s"' % self.dep["metadata"]["name"]
            complete = (
                st["updatedReplicas"] == self.replicas and st["replicas"] == self.replicas and avail == self.replicas
            )
            progressing = (
                st["updatedReplicas"] > int(old_status.get("updatedReplicas") or 0)
                or st["replicas"] - st["updatedReplicas"]
                < int(old_status.get("replicas") or 0) - int(old_status.get("updatedReplicas") or 0)
                or st["readyReplicas"] > int(old_status.get("readyReplicas") or 0)
                or avail > int(old_status.get("availableReplicas") or 0)
            )
            if prog is not None and prog.get("reason") == "NewReplicaSetAvailable" and complete:
                pass  # isCompleteDeployment: nothing more to say
            elif complete:
                self.set_cond("Progressing", "True", "NewReplicaSetAvailable", "%s has successfully progressed." % what)
            elif progressing:
                self.set_cond("Progressing", "True", "ReplicaSetUpdated", "%s is progressing." % what, touch=True)
            elif prog is not None and (  # DeploymentTimedOut; a finished rollout is no base to estimate from
                prog.get("reason") == "ProgressDeadlineExceeded"
                or (
                    prog.get("status") != "Unknown"
                    and prog.get("reason") != "NewReplicaSetAvailable"
                    and (parse_time(prog.get("lastUpdateTime")) or self.now) + int(deadline) < self.now
                )
            ):
                self.set_cond(
                    "Progressing", "False", "ProgressDeadlineExceeded", "%s has timed out progressing." % what
                )
            elif prog is not None and prog.get("status") == "Unknown":
                self.set_cond("Progressing", "True", "ReplicaSetUpdated", "%s is progressing." % what)
        if old_status.get("collisionCount"):
            st["collisionCount"] = old_status["collisionCount"]
        if self.conditions:
            st["conditions"] = self.conditions
        return st

    def result(self) -> DeploymentPlan:
        for rs in self.all():
            orig = self.orig.get(rs["metadata"]["name"])
            if orig is not None and (
                orig.get("spec") != rs.get("spec")
                or (orig["metadata"].get("annotations") or {}) != (rs["metadata"].get("annotations") or {})
            ):
                self.plan.update.append(rs)
        return self.plan


def plan_deployment(dep: Obj, rss: list[Obj], pods: list[Obj], now: float) -> DeploymentPlan:
    """-> what the Deployment controller does for one Deployment this pass.
    rss, pods: the cluster's ReplicaSets and pods (any owner; those the
    Deployment controls are picked here); now: epoch seconds."""
    p = _Pass(dep, rss, pods, now)
    if dep["metadata"].get("deletionTimestamp"):
        return p.plan
    paused = bool(dep["spec"].get("paused"))
    rollout = False
    if paused:
        p.sync_revision(False, 0)
        p.proportional()
        p.cleanup()
        p.set_cond("Progressing", "Unknown", "DeploymentPaused", "Deployment is paused")
    elif p.scaling_event():
        p.sync_revision(False, 0)
        p.proportional()
    else:
        prog = p.cond("Progressing")
        if prog is not None and prog.get("reason") == "DeploymentPaused":
            p.set_cond("Progressing", "Unknown", "DeploymentResumed", "Deployment is resumed")
        rollout = True
        if (dep["spec"].get("strategy") or {}).get("type") == "Recreate":
            p.recreate()
        else:
            p.rolling()
        new = p.new
        if new is not None and (
            int(new["spec"].get("replicas", 1)) == p.replicas
            and p.c(new).available == p.replicas
            and not any(int(r["spec"].get("replicas", 1)) for r in p.old)
            and not any(p.c(r).replicas for r in p.old)
        ):
            p.cleanup()
    p.plan.status = p.status(rollout)
    return p.result()
