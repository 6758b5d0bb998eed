"""Pure: Deployments own ReplicaSets, ReplicaSets own pods, rollouts keep
their bounds. A small simulated cluster applies what the planners decide,
pass by pass, with a model of pods that become Ready a few passes after
they are created and that take a pass to terminate."""

import copy
import random
import re

import pytest

from podnet.controllers import deployutil as U
from podnet.controllers import planners as P
from podnet.controllers import replicaset as R
from podnet.controllers import rollout as D
from podnet.controllers.replicaset import rfc3339


def deployment(replicas=3, strategy=None, **spec):
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "uid": "dep-1", "generation": 1, "annotations": {}},
        "spec": dict(
            {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "agnhost", "env": [{"name": "V", "value": "1"}]}]},
                },
                "strategy": strategy or {"type": "RollingUpdate"},
                "revisionHistoryLimit": 10,
                "progressDeadlineSeconds": 600,
            },
            **spec,
        ),
    }


class Sim:
    """The API server, the garbage collector and the pods' nodes, in memory."""

    def __init__(self, dep, ready_after=2, seed=1):
        self.dep, self.rss, self.pods = dep, [], []
        self.now, self.n, self.ready_after = 1_000_000.0, 0, ready_after
        self.rng = random.Random(seed)
        self.events = []
        self.history = []  # (active pods, available pods, old-template pods, new-template pods) after each pass

    def uid(self, what):
        self.n += 1
        return "%s-%d" % (what, self.n)

    def change(self, fn):
        fn(self.dep["spec"])
        self.dep["metadata"]["generation"] += 1

    def step(self):
        plan = D.plan_deployment(self.dep, copy.deepcopy(self.rss), copy.deepcopy(self.pods), self.now)
        for rs in plan.adopt:
            mine = next(r for r in self.rss if r["metadata"]["uid"] == rs["metadata"]["uid"])
            mine["metadata"]["ownerReferences"] = [
                {"kind": "Deployment", "uid": self.dep["metadata"]["uid"], "controller": True}
            ]
        for rs in plan.create:
            rs = copy.deepcopy(rs)
            assert all(r["metadata"]["name"] != rs["metadata"]["name"] for r in self.rss)
            rs["metadata"].update(uid=self.uid("rs"), generation=1, creationTimestamp=rfc3339(self.now + self.n))
            self.rss.append(rs)
        for rs in plan.update:
            i = next(i for i, r in enumerate(self.rss) if r["metadata"]["name"] == rs["metadata"]["name"])
            self.rss[i] = copy.deepcopy(rs)
        gone = {r["metadata"]["uid"] for r in plan.delete}
        self.rss = [r for r in self.rss if r["metadata"]["uid"] not in gone]
        self.pods = [p for p in self.pods if R.controller_uid(p) not in gone]  # the garbage collector
        self.dep["metadata"]["annotations"].update(plan.annotations)
        self.dep["status"] = plan.status
        self.events += [m for _, m in plan.events]
        # pods that were terminating are gone now
        self.pods = [p for p in self.pods if not p["metadata"].get("deletionTimestamp")]
        for rs in self.rss:
            rp = R.plan_replicaset(rs, self.pods, self.now, self.rng)
            rs["status"] = rp.status
            for p in rp.create:
                p = copy.deepcopy(p)
                p["metadata"].update(uid=self.uid("pod"), creationTimestamp=rfc3339(self.now))
                p["spec"]["nodeName"] = "n1"
                p["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}]}
                p["born"] = self.now
                self.pods.append(p)
            for p in rp.delete:
                next(q for q in self.pods if q["metadata"]["uid"] == p["metadata"]["uid"])["metadata"][
                    "deletionTimestamp"
                ] = rfc3339(self.now)
        self.now += 1
        for p in self.pods:  # the readiness model
            if p["born"] + self.ready_after <= self.now and not R.pod_ready(p):
                p["status"]["conditions"] = [
                    {"type": "Ready", "status": "True", "lastTransitionTime": rfc3339(self.now)}
                ]
        live = [p for p in self.pods if R.active(p)]
        mrs = int(self.dep["spec"].get("minReadySeconds") or 0)
        h = U.template_hash(self.dep["spec"]["template"])
        new = sum(1 for p in live if p["metadata"]["labels"].get(U.HASH) == h)
        self.history.append((len(live), sum(R.pod_available(p, mrs, self.now) for p in live), len(live) - new, new))

    def run_until_complete(self, limit=200):
        for _ in range(limit):
            self.step()
            if self.complete():
                return
        raise AssertionError("no completion in %d passes: %s" % (limit, self.dep["status"]))

    def complete(self):
        st, want = self.dep.get("status") or {}, self.dep["spec"]["replicas"]
        prog = [c for c in st.get("conditions", []) if c["type"] == "Progressing"]
        return (
            st.get("observedGeneration") == self.dep["metadata"]["generation"]
            and st.get("updatedReplicas") == want
            and st.get("replicas") == want
            and st.get("availableReplicas") == want
            and prog
            and prog[0]["reason"] == "NewReplicaSetAvailable"
            and len([p for p in self.pods if R.active(p)]) == want
        )

    def rs_replicas(self):
        return {r["metadata"]["name"]: r["spec"]["replicas"] for r in self.rss}


def bump_env(value):
    def fn(spec):
        spec["template"]["spec"]["containers"][0]["env"] = [{"name": "V", "value": value}]

    return fn


@pytest.mark.parametrize("replicas", [1, 3, 10])
@pytest.mark.parametrize(
    "surge, unavailable",
    [(1, 0), (0, 1), (2, 2), ("25%", "25%"), ("50%", "0%"), ("0%", "30%"), (None, None)],
)
def test_rolling_update_keeps_its_bounds_and_completes(replicas, surge, unavailable):
    ru = {k: v for k, v in (("maxSurge", surge), ("maxUnavailable", unavailable)) if v is not None}
    sim = Sim(deployment(replicas, {"type": "RollingUpdate", "rollingUpdate": ru}, minReadySeconds=1))
    sim.run_until_complete()
    s, u = U.fenceposts(sim.dep)
    sim.history.clear()
    sim.change(bump_env("2"))
    sim.run_until_complete()
    for total, available, _old, _new in sim.history:
        assert total <= replicas + s, (total, sim.history)
        assert available >= replicas - u, (available, sim.history)
    assert sim.history[-1][2:] == (0, replicas)
    names = sorted(
        sim.rs_replicas().items(), key=lambda kv: U.revision(next(r for r in sim.rss if r["metadata"]["name"] == kv[0]))
    )
    assert [n for _, n in names] == [0, replicas]
    assert sim.dep["metadata"]["annotations"][U.REVISION] == "2"


def test_fenceposts_round_surge_up_and_unavailable_down():
    ru = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}
    assert U.fenceposts(deployment(10, ru)) == (3, 2)
    assert U.fenceposts(deployment(1, ru)) == (1, 0)
    zero = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "0%", "maxUnavailable": "10%"}}
    assert U.fenceposts(deployment(3, zero)) == (0, 1)  # both 0: one may be unavailable
    assert U.fenceposts(deployment(3, {"type": "Recreate"})) == (0, 0)


def test_recreate_never_overlaps_old_and_new_pods():
    sim = Sim(deployment(3, {"type": "Recreate"}))
    sim.run_until_complete()
    sim.history.clear()
    sim.change(bump_env("2"))
    sim.run_until_complete()
    assert all(old == 0 or new == 0 for _, _, old, new in sim.history), sim.history
    assert any(old == 0 and new == 0 for _, _, old, new in sim.history)  # a moment with nothing
    ups = [e for e in sim.events if e.startswith("Scaled up")]
    assert ups[-1].endswith("to 3"), sim.events


def test_recreate_scales_every_old_replicaset_down_at_once():
    sim = Sim(deployment(10))
    sim.run_until_complete()
    sim.change(bump_env("2"))
    sim.step()
    assert len([n for n in sim.rs_replicas().values() if n]) == 2  # mid-rollout: two active
    sim.change(lambda s: s.update(strategy={"type": "Recreate"}))
    sim.change(bump_env("3"))
    sim.step()
    assert sorted(sim.rs_replicas().values()) == [0, 0]  # no new one until the old pods are gone
    sim.run_until_complete()
    assert sorted(sim.rs_replicas().values()) == [0, 0, 10]


def test_a_rollback_long_after_the_last_rollout_is_not_past_its_deadline():
    sim = Sim(deployment(3, progressDeadlineSeconds=10), ready_after=3)
    sim.run_until_complete()
    first = sim.rss[0]["metadata"]["name"]
    sim.change(bump_env("2"))
    sim.run_until_complete()
    sim.now += 3600
    sim.change(bump_env("1"))
    for _ in range(30):
        sim.step()
        prog = next(c for c in sim.dep["status"]["conditions"] if c["type"] == "Progressing")
        assert prog["reason"] != "ProgressDeadlineExceeded", prog
    assert sim.complete() and sim.rs_replicas()[first] == 3


def test_ownership_names_labels_annotations_and_events():
    sim = Sim(deployment(3))
    sim.run_until_complete()
    (rs,) = sim.rss
    h = U.template_hash(sim.dep["spec"]["template"])
    assert rs["metadata"]["name"] == "web-" + h and set(h) <= set(R.ALNUM)
    assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", U.HASH: h}
    assert rs["spec"]["template"]["metadata"]["labels"][U.HASH] == h
    ref = rs["metadata"]["ownerReferences"][0]
    assert (ref["kind"], ref["uid"], ref["controller"], ref["blockOwnerDeletion"]) == (
        "Deployment",
        "dep-1",
        True,
        True,
    )
    ann = rs["metadata"]["annotations"]
    assert (ann[U.REVISION], ann[U.DESIRED], ann[U.MAX]) == ("1", "3", "4")
    for p in sim.pods:
        assert (
            p["metadata"]["name"].startswith(rs["metadata"]["name"] + "-")
            and len(p["metadata"]["name"]) == len(rs["metadata"]["name"]) + 6
        )
        assert p["metadata"]["labels"][U.HASH] == h
        assert p["metadata"]["ownerReferences"][0]["uid"] == rs["metadata"]["uid"]
    assert sim.events[0] == "Scaled up replica set %s to 3" % rs["metadata"]["name"]
    conds = {c["type"]: c["reason"] for c in sim.dep["status"]["conditions"]}
    assert conds == {"Available": "MinimumReplicasAvailable", "Progressing": "NewReplicaSetAvailable"}


def test_rollback_reuses_the_old_replicaset_and_bumps_its_revision():
    sim = Sim(deployment(3))
    sim.run_until_complete()
    first = sim.rss[0]["metadata"]["name"]
    sim.change(bump_env("2"))
    sim.run_until_complete()
    sim.change(bump_env("1"))  # as `kubectl rollout undo` patches the old template back
    sim.run_until_complete()
    assert len(sim.rss) == 2
    back = next(r for r in sim.rss if r["metadata"]["name"] == first)
    assert back["spec"]["replicas"] == 3 and U.revision(back) == 3
    assert sim.dep["metadata"]["annotations"][U.REVISION] == "3"


def test_paused():
    """paused: no rollout (not even the first), but scaling applies."""
    sim = Sim(deployment(3, paused=True))
    for _ in range(5):
        sim.step()
    assert sim.rss == []  # paused from the start: nothing to roll out
    sim.change(lambda s: s.update(paused=False))
    sim.run_until_complete()
    sim.change(lambda s: s.update(paused=True))
    sim.change(bump_env("2"))
    for _ in range(10):
        sim.step()
    assert len(sim.rss) == 1 and all(
        p["metadata"]["labels"]["pod-template-hash"] == sim.rss[0]["metadata"]["labels"]["pod-template-hash"]
        for p in sim.pods
    )
    prog = next(c for c in sim.dep["status"]["conditions"] if c["type"] == "Progressing")
    assert (prog["status"], prog["reason"]) == ("Unknown", "DeploymentPaused")
    sim.change(lambda s: s.update(replicas=5))  # scaling applies while paused
    for _ in range(10):
        sim.step()
    assert sim.rs_replicas() == {sim.rss[0]["metadata"]["name"]: 5} and len(sim.pods) == 5
    sim.change(lambda s: s.update(paused=False))
    sim.run_until_complete()
    assert len(sim.rss) == 2


def test_scaling_in_the_middle_of_a_rollout_is_proportional():
    """dc.scale: replicas + maxSurge shared by the active ReplicaSets in
    proportion to their size (the max-replicas annotation says what they
    were sized for), also while paused; the rollout then completes."""
    sim = Sim(deployment(10))
    sim.run_until_complete()
    old = sim.rss[0]["metadata"]["name"]
    sim.change(bump_env("2"))
    sim.step()
    sim.step()
    new = next(n for n in sim.rs_replicas() if n != old)
    assert sim.rs_replicas() == {old: 8, new: 5}  # 13 = 10 + 25% surge
    sim.change(lambda s: s.update(paused=True, replicas=20))
    sim.step()
    assert sim.rs_replicas() == {old: 15, new: 10}  # 8*25/13, 5*25/13: 25 = 20 + 5
    assert {r["metadata"]["annotations"][U.MAX] for r in sim.rss} == {"25"}
    sim.change(lambda s: s.update(paused=False))
    sim.run_until_complete()
    assert sim.rs_replicas() == {old: 0, new: 20}
    sim.change(bump_env("3"))
    sim.step()
    sim.change(lambda s: s.update(replicas=4))  # down, not paused
    sim.run_until_complete()
    assert sorted(sim.rs_replicas().values()) == [0, 0, 4]


def test_a_new_deployment_adopts_the_orphaned_replicaset_and_keeps_its_pods():
    sim = Sim(deployment(3))
    sim.run_until_complete()
    (rs,) = sim.rss
    pods = sorted(p["metadata"]["name"] for p in sim.pods)
    # kubectl delete deployment --cascade=orphan, then apply it again: a new uid
    rs["metadata"]["ownerReferences"] = []
    sim.dep["metadata"].update(uid="dep-2", annotations={})
    sim.dep.pop("status")
    sim.run_until_complete()
    assert [r["metadata"]["name"] for r in sim.rss] == [rs["metadata"]["name"]]
    assert sim.rss[0]["metadata"]["ownerReferences"][0]["uid"] == "dep-2"
    assert sorted(p["metadata"]["name"] for p in sim.pods) == pods
    assert sim.dep["metadata"]["annotations"][U.REVISION] == "1"


def test_a_name_collision_changes_the_hash():
    d = deployment(3)
    first = U.new_replicaset(d, 1, 3)["metadata"]["name"]
    d["status"] = {"collisionCount": 1}
    second = U.new_replicaset(d, 1, 3)
    assert second["metadata"]["name"] != first and second["metadata"]["name"].startswith("web-")
    h = second["metadata"]["labels"][U.HASH]
    assert second["spec"]["selector"]["matchLabels"][U.HASH] == h == second["metadata"]["name"][4:]
    # the status keeps counting: the planner does not drop it
    assert D.plan_deployment(d, [], [], 0.0).status["collisionCount"] == 1


def test_revision_history_limit():
    """Old ReplicaSets at 0 beyond the limit go, the oldest revisions first."""
    sim = Sim(deployment(2, revisionHistoryLimit=1))
    for v in "12345":
        sim.change(bump_env(v))
        sim.run_until_complete()
    revs = sorted(U.revision(r) for r in sim.rss)
    assert revs == [4, 5], revs


def test_progress_deadline():
    """Pods that never become Ready: ProgressDeadlineExceeded after the deadline."""
    sim = Sim(deployment(2, progressDeadlineSeconds=10), ready_after=10_000)
    for _ in range(30):
        sim.step()
    prog = next(c for c in sim.dep["status"]["conditions"] if c["type"] == "Progressing")
    assert (prog["status"], prog["reason"]) == ("False", "ProgressDeadlineExceeded")
    assert "has timed out progressing" in prog["message"]
    avail = next(c for c in sim.dep["status"]["conditions"] if c["type"] == "Available")
    assert avail["status"] == "False"


def test_min_ready_seconds():
    """A pod counts as available only minReadySeconds after it became Ready:
    the rollout waits that long before it scales the old ReplicaSet down,
    and the ReplicaSet (which gets the Deployment's minReadySeconds) counts
    availableReplicas the same way."""
    drops = {}
    for mrs in (0, 5):
        ru = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
        sim = Sim(deployment(2, ru, minReadySeconds=mrs), ready_after=1)
        sim.run_until_complete()
        assert sim.rss[0]["spec"]["minReadySeconds"] == mrs
        sim.history.clear()
        sim.change(bump_env("2"))
        sim.run_until_complete()
        drops[mrs] = next(i for i, (_, _, old, _) in enumerate(sim.history) if old < 2)
        if mrs:
            sim.change(bump_env("3"))
            for _ in range(3):  # the new pods are Ready but not yet available
                sim.step()
            new = next(r for r in sim.rss if U.revision(r) == 3)
            assert new["status"]["readyReplicas"] == 1 and new["status"]["availableReplicas"] == 0
    assert drops[0] <= 2 and drops[5] >= drops[0] + 5, drops


def rs_obj(replicas, uid="rs-1"):
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": "front", "namespace": "default", "uid": uid, "generation": 4},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "front"}},
            "template": {"metadata": {"labels": {"app": "front"}}, "spec": {"containers": [{"name": "c"}]}},
        },
    }


def pod(name, rs_uid=None, node=None, ready=False, phase="Running", since=0, labels=None):
    p = {
        "metadata": {"name": name, "namespace": "default", "uid": "u-" + name, "labels": labels or {"app": "front"}},
        "spec": {"containers": [{"name": "c"}]},
        "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }
    if ready:
        p["status"]["conditions"][0]["lastTransitionTime"] = rfc3339(since)
    if node:
        p["spec"]["nodeName"] = node
    if rs_uid:
        p["metadata"]["ownerReferences"] = [{"kind": "ReplicaSet", "uid": rs_uid, "controller": True}]
    return p


def test_replicaset_creates_adopts_and_deletes_the_least_useful_first():
    rng = random.Random(3)
    plan = R.plan_replicaset(rs_obj(3), [], 100.0, rng)
    assert len(plan.create) == 3 and not plan.delete
    assert all(p["metadata"]["ownerReferences"][0]["uid"] == "rs-1" for p in plan.create)
    assert plan.status == {
        "replicas": 0,
        "fullyLabeledReplicas": 0,
        "readyReplicas": 0,
        "availableReplicas": 0,
        "observedGeneration": 4,
    }
    # an orphan with matching labels is adopted and counts; another controller's pod does not
    pods = [pod("orphan", node="n1", ready=True), pod("theirs", rs_uid="other", node="n1", ready=True)]
    plan = R.plan_replicaset(rs_obj(3), pods, 100.0, rng)
    assert [p["metadata"]["name"] for p in plan.adopt] == ["orphan"] and len(plan.create) == 2
    pods = [
        pod("old-ready", "rs-1", "n1", True, since=10),
        pod("new-ready", "rs-1", "n1", True, since=90),
        pod("not-ready", "rs-1", "n1"),
        pod("unscheduled", "rs-1", phase="Pending"),
        pod("done", "rs-1", "n1", phase="Succeeded"),
    ]
    plan = R.plan_replicaset(rs_obj(1), pods, 100.0, rng)
    assert [p["metadata"]["name"] for p in plan.delete] == ["unscheduled", "not-ready", "new-ready"]
    assert plan.status["replicas"] == 4 and plan.status["readyReplicas"] == 2
    rs = dict(rs_obj(1), spec=dict(rs_obj(1)["spec"], minReadySeconds=30))
    assert R.plan_replicaset(rs, pods, 100.0, rng).status["availableReplicas"] == 1  # new-ready: only 10s


# ---- the scheduler's NodePorts filter ------------------------------------------


def node(name):
    return {
        "metadata": {"name": name, "labels": {}},
        "spec": {"podCIDR": "10.244.%d.0/24" % int(name[1:])},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }


def hp_pod(name, node_name=None, port=8080, proto="TCP", ip=None, phase="Running"):
    cp = {"containerPort": 80, "hostPort": port, "protocol": proto}
    if ip:
        cp["hostIP"] = ip
    p = {
        "metadata": {"name": name, "namespace": "default", "uid": "u-" + name},
        "spec": {"containers": [{"name": "c", "ports": [cp]}]},
        "status": {"phase": phase},
    }
    if node_name:
        p["spec"]["nodeName"] = node_name
    return p


def test_a_pod_with_a_host_port_goes_where_the_port_is_free():
    nodes = [node("n1"), node("n2")]
    assert P.place(hp_pod("a"), nodes, [hp_pod("x", "n1")]) == ("n2", "")
    # another protocol, another port or another specific hostIP do not conflict
    assert P.choose_node(hp_pod("a", proto="UDP"), nodes, [hp_pod("x", "n1"), hp_pod("y", "n2", port=9)]) == "n1"
    taken = [hp_pod("x", "n1", ip="10.0.0.1"), hp_pod("y", "n2", ip="10.0.0.1")]
    assert P.choose_node(hp_pod("a", ip="10.0.0.2"), nodes, taken) in ("n1", "n2")
    assert P.choose_node(hp_pod("a"), nodes, taken) is None  # 0.0.0.0 conflicts with any address
    # a finished pod holds no port
    assert P.choose_node(hp_pod("a"), nodes, [hp_pod("x", "n1", phase="Succeeded"), hp_pod("y", "n2")]) == "n1"


def test_failed_scheduling_says_why():
    nodes = [node("n1"), node("n2")]
    pods = [hp_pod("x", "n1"), hp_pod("y", "n2")]
    assert P.place(hp_pod("a"), nodes, pods) == (
        None,
        "0/2 nodes are available: 2 node(s) didn't have free ports for the requested pod ports",
    )
    sel = hp_pod("b")
    sel["spec"]["nodeSelector"] = {"disk": "ssd"}
    assert P.place(sel, nodes, []) == (
        None,
        "0/2 nodes are available: no Ready node with a podCIDR matches the pod's nodeSelector",
    )


# ---- podnet describe deployment --------------------------------------------------


def test_describe_deployment_names_the_new_and_the_old_replicasets():
    from podnet.cli.describe import render_describe

    sim = Sim(deployment(3))
    sim.run_until_complete()
    first = sim.rss[0]["metadata"]["name"]
    sim.change(bump_env("2"))
    sim.run_until_complete()
    # back to the first template as `kubectl rollout undo` writes it (Go's zero values spelled out)
    sim.change(bump_env("1"))
    sim.dep["spec"]["template"]["metadata"]["creationTimestamp"] = None
    sim.dep["spec"]["template"]["spec"]["containers"][0]["resources"] = {}
    sim.run_until_complete()
    assert len(sim.rss) == 2
    second = next(r["metadata"]["name"] for r in sim.rss if r["metadata"]["name"] != first)
    other = dict(rs_obj(2, uid="not-ours"), metadata=dict(rs_obj(2)["metadata"], name="front", uid="not-ours"))
    text = render_describe(sim.dep, events=[], related={"replicasets": [*sim.rss, other]})
    assert re.search(r"^NewReplicaSet:\s+%s \(3/3 replicas created\)$" % first, text, re.M), text
    assert re.search(r"^OldReplicaSets:\s+%s \(0/0 replicas created\)$" % second, text, re.M), text
