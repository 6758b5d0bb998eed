"""podnet-portmap with hostIPs, as Kubernetes has them: one port may be
published by two attachments on two different addresses of the node; on
overlapping addresses (the same one, or any address) the second is refused."""

import pytest

from tests.conftest import sh
from tests.helpers import connect, server
from tests.kernel.test_portmap import NODE_IP, attach, detach, world  # noqa: F401 - world is a fixture

pytestmark = pytest.mark.kernel

SECOND_IP = "192.0.2.3"  # a second address of the node, on the link to the outside


def test_one_port_on_two_host_ips_reaches_two_pods_and_any_address_conflicts(plugin, namespaces, data_dir, world):  # noqa: F811
    sh(plugin.node, "ip", "addr", "add", SECOND_IP + "/24", "dev", "up0")
    pods = [namespaces.new("pod") for _ in range(3)]
    a = attach(plugin, pods[0], data_dir, "on-first", [{"hostPort": 8080, "containerPort": 80, "hostIP": NODE_IP}])
    assert a[3] == 0, a[4:]
    b = attach(plugin, pods[1], data_dir, "on-second", [{"hostPort": 8080, "containerPort": 81, "hostIP": SECOND_IP}])
    assert b[3] == 0, b[4:]
    # every address overlaps both: refused, naming an owner, and nothing changed
    before = sh(plugin.node, "nft", "list", "table", "inet", "podnet-portmap").stdout
    c = attach(plugin, pods[2], data_dir, "anywhere", [{"hostPort": 8080, "containerPort": 80}])
    assert c[3] == 1 and c[4]["code"] == 103 and "8080/tcp is already published on" in c[4]["msg"], c[4:]
    assert "on-first" in c[4]["details"] or "on-second" in c[4]["details"]
    assert sh(plugin.node, "nft", "list", "table", "inet", "podnet-portmap").stdout == before
    assert plugin("podnet", "DEL", c[0], cid="anywhere", netns=pods[2])[0] == 0
    # the same address again: refused too
    d = attach(plugin, pods[2], data_dir, "same", [{"hostPort": 8080, "containerPort": 80, "hostIP": SECOND_IP}])
    assert d[3] == 1 and d[4]["code"] == 103 and "on-second" in d[4]["details"], d[4:]
    assert plugin("podnet", "DEL", d[0], cid="same", netns=pods[2])[0] == 0
    # a pod answers on 80, the other on 81: each address reaches its own pod
    with server(pods[0], port=80), server(pods[1], port=81):
        assert connect(world, NODE_IP, 8080) == "192.0.2.2"
        assert connect(world, SECOND_IP, 8080) == "192.0.2.2"
        detach(plugin, pods[0], "on-first", a[0], a[1])
        assert connect(world, NODE_IP, 8080) is None  # unpublished there
        assert connect(world, SECOND_IP, 8080) == "192.0.2.2"  # still published here
        rc, out, err = plugin("podnet-portmap", "CHECK", b[1], cid="on-second", netns=pods[1])
        assert rc == 0, (out, err)
    detach(plugin, pods[1], "on-second", b[0], b[1])
    listing = sh(plugin.node, "nft", "list", "table", "inet", "podnet-portmap").stdout
    assert "pm-" not in listing and "8080" not in listing
