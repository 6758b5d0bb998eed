"""The node lifecycle planner and the lease renewer's fencing, with fakes."""

import pytest

from podnet.agent.lease import LeaseRenewer
from podnet.api.lease import micro_time, parse_micro_time
from podnet.controllers import nodelifecycle as nl


def node(name, ready="True", taint=False):
    n = {"metadata": {"name": name}, "spec": {}, "status": {"conditions": [{"type": "Ready", "status": ready}]}}
    if taint:
        n["spec"]["taints"] = [{"key": nl.UNREACHABLE, "effect": "NoExecute"}]
    return n


def pod(name, node, ready=True, tolerations=None):
    p = {
        "metadata": {"namespace": "default", "name": name, "uid": "u-" + name},
        "spec": {"nodeName": node},
        "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }
    if tolerations is not None:
        p["spec"]["tolerations"] = tolerations
    return p


def test_a_silent_node_is_marked_and_its_ready_pods_not_ready():
    p = nl.plan(
        [node("a"), node("b")],
        [pod("x", "a"), pod("y", "b"), pod("z", "a", ready=False)],
        {"a": 0.0, "b": 9.0},
        {},
        now=10.0,
        grace=6,
        toleration=12,
    )
    assert p.unreachable == ["a"] and p.recovered == []
    assert p.not_ready_pods == [("default", "x")] and p.evict == []


def test_a_node_within_its_grace_is_left_alone():
    p = nl.plan([node("a")], [pod("x", "a")], {"a": 5.0}, {}, now=10.0, grace=6, toleration=12)
    assert p.unreachable == [] and p.not_ready_pods == [] and p.evict == []


def test_an_already_marked_node_is_not_written_again():
    p = nl.plan([node("a", "Unknown", taint=True)], [], {"a": 0.0}, {"a": 4.0}, now=10.0, grace=6, toleration=12)
    assert p.unreachable == []


def test_pods_are_evicted_after_their_toleration_only():
    pods = [
        pod("default-tol", "a"),
        pod("short", "a", tolerations=[{"key": nl.UNREACHABLE, "effect": "NoExecute", "tolerationSeconds": 2}]),
        pod("forever", "a", tolerations=[{"key": nl.UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}]),
    ]
    early = nl.plan([node("a", "Unknown", True)], pods, {"a": 0.0}, {"a": 7.0}, now=10.0, grace=6, toleration=12)
    assert [e[1] for e in early.evict] == ["short"]
    late = nl.plan([node("a", "Unknown", True)], pods, {"a": 0.0}, {"a": 7.0}, now=19.0, grace=6, toleration=12)
    assert sorted(e[1] for e in late.evict) == ["default-tol", "short"]


def test_a_renewing_node_loses_its_taint():
    p = nl.plan([node("a", "Unknown", True)], [pod("x", "a")], {"a": 9.0}, {"a": 1.0}, 10.0, 6, 12)
    assert p.recovered == ["a"] and p.unreachable == [] and p.evict == []


class FakeClient:
    def __init__(self):
        self.leases = {}
        self.down = False

    def mutate(self, kind, ns, name, fn, status=False):
        if self.down:
            raise OSError("connection refused")
        obj = self.leases.get(name)
        if obj is None:
            return None
        fn(obj)
        return obj

    def create(self, obj):
        self.leases[obj["metadata"]["name"]] = obj
        return obj


def test_the_renewer_creates_then_renews_and_fences_after_a_gap():
    clock = [100.0]
    fenced = []
    c = FakeClient()
    r = LeaseRenewer(c, "node1", duration=8, fence=lambda: fenced.append(clock[0]), clock=lambda: clock[0])
    assert r.interval == 2
    r.renew_once()
    assert c.leases["node1"]["spec"]["holderIdentity"] == "node1"
    assert c.leases["node1"]["spec"]["leaseDurationSeconds"] == 8
    clock[0] += 2
    r.renew_once()
    assert fenced == [] and r.may_announce() and r.renewals == 2
    clock[0] += 9  # stopped for longer than the lease
    assert not r.may_announce()
    r.renew_once()
    assert fenced == [111.0] and not r.may_announce()  # held until the watches caught up
    clock[0] += 3.5
    assert r.may_announce()


def test_a_failed_renewal_names_the_lease():
    c = FakeClient()
    c.down = True
    with pytest.raises(RuntimeError, match="renewing lease kube-node-lease/node1: connection refused"):
        LeaseRenewer(c, "node1").renew_once()


def test_micro_time_round_trips():
    assert abs(parse_micro_time(micro_time(1700000000.25)) - 1700000000.25) < 1e-5
    assert parse_micro_time("2026-01-02T03:04:05Z") == parse_micro_time("2026-01-02T03:04:05.000000Z")


class FakeCluster:
    def __init__(self, nodes, leases):
        self.nodes, self.leases = nodes, leases
        self.client = None

    def list(self, kind, namespace=None):
        return {"Node": self.nodes, "Lease": self.leases}[kind]


def test_either_heartbeat_counts_a_lease_or_the_node_status():
    beat = {"type": "Ready", "status": "True", "lastHeartbeatTime": "2026-01-01T00:00:00Z"}
    n = {"metadata": {"name": "a"}, "spec": {}, "status": {"conditions": [beat]}}
    lease = {"metadata": {"name": "a"}, "spec": {"renewTime": micro_time(1.0)}}
    c = FakeCluster([n], [lease])
    life = nl.NodeLifecycle(c, grace=6)
    assert life.observe(100.0) == {"a": 100.0}
    assert life.observe(110.0) == {"a": 100.0}  # nothing beat: the probe stays
    beat["lastHeartbeatTime"] = "2026-01-01T00:00:10Z"  # an agent without a Lease still posts its status
    assert life.observe(111.0) == {"a": 111.0}
    lease["spec"]["renewTime"] = micro_time(2.0)
    assert life.observe(112.0) == {"a": 112.0}
