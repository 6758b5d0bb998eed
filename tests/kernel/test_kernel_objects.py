"""podnet/kernel's ensure_/delete_ functions on the real kernel, in
namespaces the test makes: a second ensure changes nothing, a delete of what
is not there is fine, and an error names the operation and the object."""

import ipaddress
import json

import pytest

from podnet.kernel import links, neigh, netns, routes
from tests.conftest import sh

pytestmark = pytest.mark.kernel


def test_veth_bridge_address_and_default_route_are_idempotent(namespaces):
    a, b = namespaces.new("sw"), namespaces.new("host")
    links.ensure_bridge(a, "br0")
    links.ensure_bridge(a, "br0")
    assert links.ensure_veth(a, "port1", b, "eth0", master="br0") is True
    assert links.ensure_veth(a, "port1", b, "eth0", master="br0") is False
    assert "master br0" in sh(a, "ip", "-o", "link", "show", "port1").stdout
    assert ",UP" in sh(b, "ip", "-o", "link", "show", "eth0").stdout
    links.ensure_addr(b, "eth0", "10.9.0.2/24")
    links.ensure_addr(b, "eth0", "10.9.0.2/24")
    assert sh(b, "ip", "-o", "-4", "addr", "show", "eth0").stdout.count("10.9.0.2/24") == 1
    assert routes.ensure_default_route(b, "10.9.0.1", "eth0") is True
    assert routes.ensure_default_route(b, "10.9.0.1", "eth0") is False
    assert routes.get_route(b, "1.1.1.1") == {"gateway": "10.9.0.1", "dev": "eth0", "prefsrc": "10.9.0.2"}
    with pytest.raises(links.LinkError, match="add address 10.9.0.3/24 to nosuch in .*: no such link"):
        links.ensure_addr(b, "nosuch", "10.9.0.3/24")
    with pytest.raises(links.LinkError, match="route get 203.0.113.1") as e:
        routes.get_route(a, "203.0.113.1")  # the switch has no address, no route
    assert e.value.errno is not None


def test_routes_neighbours_fdb_and_labelled_addresses(namespaces):
    n = namespaces.new("node")
    sh(n, "ip", "link", "add", "d0", "type", "veth", "peer", "name", "d1")  # no dummy module here
    sh(n, "ip", "link", "set", "d0", "up")
    sh(n, "ip", "link", "set", "d1", "up")
    sh(n, "ip", "link", "add", "vx0", "type", "vxlan", "id", "7", "dstport", "4789", "nolearning")
    with netns.Netns(namespaces.path(n)) as ns:
        ipr = netns.iproute(ns)
        try:
            routes.replace_route(ipr, "10.50.0.0/24", "d0", proto=44)
            routes.replace_route(ipr, "10.50.0.0/24", "d0", proto=44)
            assert list(routes.routes(ipr, 44)) == ["10.50.0.0/24"]
            assert routes.delete_route(ipr, "10.50.0.0/24", 44) is True
            assert routes.delete_route(ipr, "10.50.0.0/24", 44) is False
            with pytest.raises(links.LinkError, match="replace route 10.51.0.0/24 dev nosuch: device nosuch"):
                routes.replace_route(ipr, "10.51.0.0/24", "nosuch", proto=44)
            routes.replace_route(ipr, "10.52.0.0/24", "d0", proto=44)
            assert routes.flush_routes(namespaces.path(n), 44) == 1
            assert routes.routes(ipr, 44) == {}

            neigh.replace_neighbour(ipr, "d0", "10.50.0.9", "02:00:00:00:00:09")
            neigh.replace_neighbour(ipr, "d0", "10.50.0.9", "02:00:00:00:00:09")
            assert neigh.permanent_neighbours(ipr, "d0") == {"10.50.0.9": "02:00:00:00:00:09"}
            assert neigh.delete_neighbour(ipr, "d0", "10.50.0.9") is True
            assert neigh.delete_neighbour(ipr, "d0", "10.50.0.9") is False
            assert neigh.permanent_neighbours(ipr, "nosuch") == {}

            neigh.append_fdb(ipr, "vx0", "02:00:00:00:00:0a", "192.0.2.10")
            neigh.append_fdb(ipr, "vx0", "02:00:00:00:00:0a", "192.0.2.10")
            assert neigh.fdb_entries(ipr, "vx0") == {"02:00:00:00:00:0a": "192.0.2.10"}
            assert neigh.delete_fdb(ipr, "vx0", "02:00:00:00:00:0a", "192.0.2.10") is True
            assert neigh.delete_fdb(ipr, "vx0", "02:00:00:00:00:0a", "192.0.2.10") is False

            assert links.ensure_address(ipr, "lo", "192.0.2.77/32", label="lo:pnlb") == 1
            assert links.ensure_address(ipr, "lo", "192.0.2.77/32", label="lo:pnlb") == 0
            links.ensure_address(ipr, "lo", "192.0.2.78/32")  # no label: not ours
            assert links.labelled_addresses(ipr, "lo", "lo:pnlb") == {"192.0.2.77"}
            assert links.delete_address(ipr, "lo", "192.0.2.77/32") == 1
            assert links.delete_address(ipr, "lo", "192.0.2.77/32") == 0
            assert links.delete_link(ipr, "vx0") == 1 and links.delete_link(ipr, "vx0") == 0
            assert links.link_index(ipr, "vx0") is None
        finally:
            ipr.close()


def test_vxlan_device_is_made_once_and_rebuilt_when_it_differs(namespaces):
    n = namespaces.new("node")
    sh(n, "ip", "link", "add", "d0", "type", "veth", "peer", "name", "d1")
    sh(n, "ip", "addr", "add", "192.0.2.11/24", "dev", "d0")
    want = dict(name="pn.vx", vni=1, local="192.0.2.11", port=8472, mac="02:aa:00:00:00:01", mtu=1450)
    with netns.Netns(namespaces.path(n)) as ns:
        ipr = netns.iproute(ns)
        try:
            assert links.ensure_vxlan(ipr, address="10.244.1.0/32", **want) > 0
            assert links.ensure_vxlan(ipr, address="10.244.1.0/32", **want) == 0
            assert links.ensure_vxlan(ipr, address="10.244.1.0/32", **dict(want, vni=2)) > 0  # rebuilt
            idx = links.link_index(ipr, "pn.vx")
            assert [a for a in links.addresses(ipr, idx) if a.version == 4] == [ipaddress.ip_interface("10.244.1.0/32")]
        finally:
            ipr.close()
    assert "vxlan id 2 " in sh(n, "ip", "-d", "link", "show", "pn.vx").stdout


def test_a_namespace_made_for_a_short_command_has_lo_up(namespaces):
    name = namespaces.new("probe") + "-x"
    try:
        path = links.create_namespace(name)
        assert links.create_namespace(name) == path
        assert ",UP" in sh(name, "ip", "-o", "link", "show", "lo").stdout
        assert links.show_json(path, "addr")[0]["ifname"] == "lo"
    finally:
        netns.delete(name)
    assert links.show_json(path, "addr") is None  # gone: nothing to show


def test_a_links_addresses_are_read_and_overlapping_ones_deleted(namespaces):
    """The CNI bridge plugin's address work: a pod interface's addresses read
    by name (None without such a link), and forceAddress's delete of the
    addresses whose subnet overlaps the new gateway's (other families and
    subnets stay); a second delete finds nothing, errors name the namespace."""
    n = namespaces.new("node")
    path = namespaces.path(n)
    sh(n, "ip", "link", "add", "br9", "type", "bridge")
    for a in ("10.60.0.1/16", "10.60.5.1/24", "10.61.0.1/24", "fd00:60::1/64"):
        sh(n, "ip", "addr", "add", a, "dev", "br9")
    want = {ipaddress.ip_interface(a) for a in ("10.60.0.1/16", "10.60.5.1/24", "10.61.0.1/24", "fd00:60::1/64")}
    assert set(links.link_addresses(path, "br9")) == want
    assert links.link_addresses(path, "nosuch") is None
    with netns.Netns(path) as ns:
        idx = json.loads(sh(n, "ip", "-j", "link", "show", "br9").stdout)[0]["ifindex"]
        assert links.delete_overlapping_addresses(ns, "br9", "10.60.0.1/16", index=idx) == 1
        assert links.delete_overlapping_addresses(ns, "br9", "10.60.0.1/16", index=idx) == 0
        assert links.delete_overlapping_addresses(ns, "br9", "10.61.0.1/16") == 1  # by name: the other /24 goes
        assert set(links.link_addresses(ns, "br9")) == {
            ipaddress.ip_interface("10.60.0.1/16"),
            ipaddress.ip_interface("fd00:60::1/64"),
        }
    assert links.delete_overlapping_addresses(path, "nosuch", "10.60.0.1/16") == 0
    with pytest.raises(netns.NetnsError, match="network namespace .*%s-gone does not exist" % n):
        links.link_addresses(path + "-gone", "br9")
