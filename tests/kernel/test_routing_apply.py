"""The routing applier on the real kernel, two nodes on one underlay."""

import pytest

from podnet.kernel import netns as nsmod
from podnet.routing import apply as ap
from podnet.routing.planner import RoutingError, plan
from tests.conftest import sh
from tests.helpers import ping

pytestmark = pytest.mark.kernel
UNDERLAY = "192.168.230.0/24"


def node_obj(name, ip, cidr):
    return {
        "metadata": {"name": name},
        "spec": {"podCIDR": cidr},
        "status": {"addresses": [{"type": "InternalIP", "address": ip}]},
    }


@pytest.fixture
def two_nodes(namespaces):
    sw = namespaces.new("sw")
    sh(sw, "ip", "link", "add", "br0", "type", "bridge")
    sh(sw, "ip", "link", "set", "br0", "up")
    nodes = []
    for i, name in enumerate(("a", "b")):
        ns = namespaces.new(name)
        ip, cidr = "192.168.230.%d" % (11 + i), "10.248.%d.0/24" % i
        sh(sw, "ip", "link", "add", "p" + name, "type", "veth", "peer", "name", "eth0", "netns", ns)
        sh(sw, "ip", "link", "set", "p" + name, "master", "br0", "up")
        sh(ns, "ip", "addr", "add", ip + "/24", "dev", "eth0")
        sh(ns, "ip", "link", "set", "eth0", "up")
        # the node's pod gateway, as the bridge plugin would put it on cni0
        sh(ns, "ip", "link", "add", "cni0", "type", "bridge")
        sh(ns, "ip", "addr", "add", "10.248.%d.1/24" % i, "dev", "cni0")
        sh(ns, "ip", "link", "set", "cni0", "up")
        nodes.append((ns, node_obj(name, ip, cidr)))
    return nodes


def apply_in(ns, desired):
    with nsmod.Netns(ns) as handle:
        ipr = nsmod.iproute(handle)
        try:
            return ap.apply(ipr, desired)
        finally:
            ipr.close()


@pytest.mark.parametrize("mode", ["vxlan", "host-gw"])
def test_plan_applied_on_both_nodes_carries_traffic_and_is_level_triggered(two_nodes, mode):
    objs = [o for _, o in two_nodes]
    for ns, o in two_nodes:
        assert apply_in(ns, plan(mode, o["metadata"]["name"], objs, UNDERLAY)) > 0
    a, b = two_nodes[0][0], two_nodes[1][0]
    # node a -> node b's pod gateway, across the overlay / the plain route
    assert ping(a, "10.248.1.1") and ping(b, "10.248.0.1")
    if mode == "vxlan":
        assert ping(a, "10.248.1.1", size=1400)  # fits the 1450 overlay MTU
        assert "podnet.1" in sh(a, "ip", "-d", "link", "show", "podnet.1").stdout
        assert "dst 192.168.230.12" in sh(a, "bridge", "fdb", "show", "dev", "podnet.1").stdout
        assert "10.248.1.0/24 via 10.248.1.0 dev podnet.1 proto 44 onlink" in sh(a, "ip", "route").stdout
    else:
        assert "10.248.1.0/24 via 192.168.230.12 dev eth0 proto 44" in sh(a, "ip", "route").stdout
    desired = plan(mode, "a", objs, UNDERLAY)
    assert apply_in(a, desired) == 0  # nothing to do twice
    sh(a, "ip", "route", "del", "10.248.1.0/24")  # drift by hand
    assert apply_in(a, desired) == 1 and ping(a, "10.248.1.1")
    # node b goes away: its route (and neighbour and FDB entry) go too
    assert apply_in(a, plan(mode, "a", objs[:1], UNDERLAY)) >= 1
    assert "10.248.1.0" not in sh(a, "ip", "route").stdout
    if mode == "vxlan":
        assert "192.168.230.12" not in sh(a, "bridge", "fdb", "show", "dev", "podnet.1").stdout
        assert "10.248.1.0" not in sh(a, "ip", "neigh", "show", "dev", "podnet.1").stdout


def test_host_gw_refuses_a_peer_off_the_segment():
    objs = [node_obj("a", "192.168.230.11", "10.248.0.0/24"), node_obj("far", "172.30.0.5", "10.248.9.0/24")]
    with pytest.raises(RoutingError) as e:
        plan("host-gw", "a", objs, UNDERLAY)
    assert "far" in str(e.value) and "not on this node's L2 segment" in str(e.value)
