"""Pure: every truth-table case of tests/netpol_cases.py through the planner and
the packet tracer (the fake of the kernel side). The kernel tier runs the
same cases in a lab: tests/kernel/test_netpol.py."""

import copy

import pytest

from podnet.api import parse_manifests
from podnet.policy.planner import plan
from podnet.policy.trace import cluster_verdict
from tests import netpol_cases as nc


def node_obj(i, name):
    return {
        "kind": "Node",
        "metadata": {"name": name},
        "spec": {"podCIDR": "10.244.%d.0/24" % i},
        "status": {"addresses": [{"type": "InternalIP", "address": "192.168.200.%d" % (11 + i)}]},
    }


class Cluster:
    """The store as the agents see it, in memory: apply/delete like `podnet apply`."""

    def __init__(self):
        self.objs = {}
        self.nodes = [node_obj(i, n) for i, n in enumerate(nc.NODES)]
        self.ips = {}
        self.apply(nc.lab_manifests())
        for i, key in enumerate(nc.PODS):
            ip = "10.244.%d.%d" % (nc.NODES.index(nc.node_of(key)), 10 + i)
            self.objs[("Pod",) + tuple(key.split("/"))]["status"] = {"podIP": ip, "phase": "Running"}
            self.ips[key] = ip

    def apply(self, docs):
        for obj in parse_manifests(nc.to_yaml(docs), "case"):
            k = (obj["kind"], obj["metadata"].get("namespace"), obj["metadata"]["name"])
            old = self.objs.get(k)
            if old is not None and "status" in old:
                obj["status"] = copy.deepcopy(old["status"])
            self.objs[k] = obj

    def delete(self, kind, ns, name):
        del self.objs[(kind, ns, name)]

    def of(self, kind):
        return [o for (k, _, _), o in sorted(self.objs.items()) if k == kind]

    def table(self):
        plans = {
            n["metadata"]["name"]: plan(
                self.of("NetworkPolicy"),
                self.of("Pod"),
                self.of("Namespace"),
                n["metadata"]["name"],
                ["192.168.200.%d" % (11 + i)],
            )
            for i, n in enumerate(self.nodes)
        }
        return {
            (s, d, port, proto): cluster_verdict(
                plans, nc.node_of(s), nc.node_of(d), self.ips[s], self.ips[d], proto, port
            )
            == "accept"
            for s in nc.PODS
            for d in nc.PODS
            for port, proto in nc.PORTS
        }


@pytest.mark.parametrize("name", sorted(nc.CASES))
def test_case(name):
    cluster = Cluster()
    for i, step in enumerate(nc.CASES[name](cluster.ips)):
        cluster.apply(step.apply)
        for kind, ns, obj in step.delete:
            cluster.delete(kind, ns, obj)
        expected, observed = nc.expected_table(step.expect), cluster.table()
        assert observed == expected, "case %s step %d %s\n%s" % (
            name,
            i,
            step.note,
            nc.render_tables(expected, observed),
        )


def test_there_are_at_least_thirty_cases():
    assert len(nc.CASES) >= 30
