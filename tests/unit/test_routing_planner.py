"""Pure: what each routing mode programs for a set of nodes."""

import pytest

from podnet.routing.planner import (
    SERVICE_CIDR,
    VXLAN_DEV,
    Fdb,
    Neigh,
    Route,
    RoutingError,
    peers,
    plan,
    pod_mtu,
    vtep_mac,
)

UNDERLAY = "192.168.200.0/24"
SERVICES = Route(SERVICE_CIDR, None, "eth0")  # every mode: the node reaches ClusterIPs


def node(name, ip, cidr=None, **ann):
    n = {
        "metadata": {"name": name, "annotations": ann},
        "spec": {},
        "status": {"addresses": [{"type": "InternalIP", "address": ip}]},
    }
    if cidr:
        n["spec"]["podCIDR"] = cidr
    return n


NODES = [
    node("n1", "192.168.200.11", "10.244.0.0/24"),
    node("n2", "192.168.200.12", "10.244.1.0/24"),
    node("n3", "192.168.200.13", "10.244.2.0/24"),
    node("late", "192.168.200.14"),
]


def test_vxlan_is_three_entries_per_peer_and_linear():
    d = plan("vxlan", "n1", NODES, UNDERLAY)
    assert d.device["name"] == VXLAN_DEV and d.device["mtu"] == 1450 and d.device["address"] == "10.244.0.0/32"
    assert d.device["mac"] == vtep_mac("n1") and vtep_mac("n1") == vtep_mac("n1") != vtep_mac("n2")
    assert d.routes == {
        Route("10.244.1.0/24", "10.244.1.0", VXLAN_DEV, True),
        Route("10.244.2.0/24", "10.244.2.0", VXLAN_DEV, True),
        SERVICES,
    }
    assert Neigh("10.244.2.0", vtep_mac("n3"), VXLAN_DEV) in d.neighs
    assert Fdb(vtep_mac("n3"), "192.168.200.13", VXLAN_DEV) in d.fdbs
    assert len(d.neighs) == len(d.fdbs) == 2  # "late" has no podCIDR yet: nothing for it


def test_published_vtep_mac_wins_and_direct_routing_uses_plain_routes():
    nodes = NODES[:1] + [
        node("n2", "192.168.200.12", "10.244.1.0/24", **{"podnet.io/vtep-mac": "02:00:00:00:00:02"}),
        node("far", "10.9.0.5", "10.244.3.0/24"),
    ]
    d = plan("vxlan", "n1", nodes, UNDERLAY, direct_routing=True)
    assert Route("10.244.1.0/24", "192.168.200.12", "eth0") in d.routes  # same subnet: direct
    assert Route("10.244.3.0/24", "10.244.3.0", VXLAN_DEV, True) in d.routes  # behind a router: overlay
    assert {f.mac for f in d.fdbs} == {vtep_mac("far")}
    assert {p.vtep_mac for p in peers("n1", nodes) if p.name == "n2"} == {"02:00:00:00:00:02"}


def test_host_gw_and_bgp():
    d = plan("host-gw", "n2", NODES, UNDERLAY)
    assert d.device is None and d.routes == {
        Route("10.244.0.0/24", "192.168.200.11", "eth0"),
        Route("10.244.2.0/24", "192.168.200.13", "eth0"),
        SERVICES,
    }
    assert plan("bgp", "n1", NODES, UNDERLAY).routes == {SERVICES}  # BIRD installs the peers' routes
    with pytest.raises(RoutingError):
        plan("ipip", "n1", NODES, UNDERLAY)
    assert pod_mtu("vxlan") == 1450 and pod_mtu("host-gw") == 1500


def test_an_unregistered_node_programs_nothing():
    assert plan("vxlan", "late", NODES, UNDERLAY).device is None
    assert plan("vxlan", "ghost", NODES, UNDERLAY).routes == set()


def test_the_service_cidr_route_is_a_device_route_on_the_uplink_and_can_be_left_out():
    assert SERVICE_CIDR == "10.96.0.0/12"
    d = plan("vxlan", "n1", NODES, UNDERLAY, service_cidr="10.100.0.0/16")
    assert Route("10.100.0.0/16", None, "eth0") in d.routes and SERVICES not in d.routes
    assert SERVICES not in plan("host-gw", "n1", NODES, UNDERLAY, service_cidr=None).routes
    assert plan("vxlan", "late", NODES, UNDERLAY).routes == set()  # not registered yet: nothing at all
