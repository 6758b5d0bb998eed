"""podnet-portmap chained after podnet: published ports as `docker run -p` does."""

import pytest

from tests.conftest import bridge_conf, sh
from tests.helpers import connect, server, wire

pytestmark = pytest.mark.kernel

NODE_IP = "192.0.2.1"


@pytest.fixture
def world(plugin, namespaces):
    outside = namespaces.new("ext")
    wire(plugin.node, NODE_IP + "/24", outside, "192.0.2.2/24")
    return outside


def attach(plugin, pod, data_dir, cid, mappings, ipmasq=True):
    """ADD podnet then podnet-portmap with its prevResult, as libcni does."""
    conf = bridge_conf(data_dir, ipMasq=ipmasq, isDefaultGateway=True, hairpinMode=True)
    rc, res, err = plugin("podnet", "ADD", conf, cid=cid, netns=pod)
    assert rc == 0, (res, err)
    pm = {
        "cniVersion": "1.0.0",
        "name": "testnet",
        "type": "podnet-portmap",
        "runtimeConfig": {"portMappings": mappings},
        "prevResult": res,
    }
    rc, out, err = plugin("podnet-portmap", "ADD", pm, cid=cid, netns=pod)
    return conf, pm, res, rc, out, err


def detach(plugin, pod, cid, conf, pm):
    assert plugin("podnet-portmap", "DEL", pm, cid=cid, netns=pod)[0] == 0
    assert plugin("podnet", "DEL", conf, cid=cid, netns=pod)[0] == 0


def test_published_tcp_and_udp_ports_reach_the_pod_with_the_client_address(plugin, namespaces, data_dir, world):
    pod = namespaces.new("pod")
    conf, pm, res, rc, out, err = attach(
        plugin,
        pod,
        data_dir,
        "web",
        [
            {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
            {"hostPort": 5353, "containerPort": 53, "protocol": "udp"},
        ],
    )
    assert rc == 0, (out, err)
    assert out["ips"] == res["ips"]  # portmap passes the result through
    with server(pod, port=80), server(pod, port=53, proto="udp"):
        assert connect(world, NODE_IP, 8080) == "192.0.2.2"  # the client's own address
        assert connect(world, NODE_IP, 5353, proto="udp") == "192.0.2.2"
        assert connect(plugin.node, NODE_IP, 8080) is not None  # from the node itself
        assert connect(world, NODE_IP, 8081) is None  # nothing else published
        rc, out, err = plugin("podnet-portmap", "CHECK", pm, cid="web", netns=pod)
        assert rc == 0, (out, err)
        assert plugin("podnet-portmap", "DEL", pm, cid="web", netns=pod)[0] == 0
        assert connect(world, NODE_IP, 8080) is None  # unpublished
        assert plugin("podnet-portmap", "DEL", pm, cid="web", netns=pod)[0] == 0  # DEL twice
    assert plugin("podnet", "DEL", conf, cid="web", netns=pod)[0] == 0
    assert "pm-" not in sh(plugin.node, "nft", "list", "table", "inet", "podnet-portmap").stdout


def test_hairpin_a_pod_reaches_itself_through_its_host_port(plugin, namespaces, data_dir, world):
    pod = namespaces.new("pod")
    conf, pm, res, rc, out, err = attach(plugin, pod, data_dir, "hp", [{"hostPort": 9090, "containerPort": 80}])
    assert rc == 0, (out, err)
    with server(pod, port=80):
        # pod -> node IP:9090 -> DNAT back to the same pod through the same bridge port
        assert connect(pod, NODE_IP, 9090) is not None
    detach(plugin, pod, "hp", conf, pm)


def test_a_port_published_twice_is_refused_and_changes_nothing(plugin, namespaces, data_dir, world):
    pods = [namespaces.new("pod"), namespaces.new("pod")]
    conf, pm, _, rc, out, err = attach(plugin, pods[0], data_dir, "first", [{"hostPort": 8080, "containerPort": 80}])
    assert rc == 0, (out, err)
    before = sh(plugin.node, "nft", "list", "table", "inet", "podnet-portmap").stdout
    conf2, pm2, _, rc, out, err = attach(plugin, pods[1], data_dir, "second", [{"hostPort": 8080, "containerPort": 80}])
    assert rc == 1 and out["code"] == 103 and "8080" in out["msg"] and "first" in out["details"]
    assert sh(plugin.node, "nft", "list", "table", "inet", "podnet-portmap").stdout == before
    with server(pods[0], port=80):
        assert connect(world, NODE_IP, 8080) == "192.0.2.2"  # the first owner still serves
    assert plugin("podnet", "DEL", conf2, cid="second", netns=pods[1])[0] == 0
    detach(plugin, pods[0], "first", conf, pm)


def test_gc_unpublishes_ports_of_attachments_that_are_gone(plugin, namespaces, data_dir, world):
    pods = [namespaces.new("pod"), namespaces.new("pod")]
    made = []
    for i, pod in enumerate(pods):
        conf, pm, _, rc, out, err = attach(
            plugin, pod, data_dir, "g%d" % i, [{"hostPort": 7000 + i, "containerPort": 80}]
        )
        assert rc == 0, (out, err)
        made.append((conf, pm))
    gc = {
        "cniVersion": "1.1.0",
        "name": "testnet",
        "type": "podnet-portmap",
        "cni.dev/valid-attachments": [{"containerID": "g1", "ifname": "eth0"}],
    }
    rc, out, err = plugin("podnet-portmap", "GC", gc, drop=("CNI_CONTAINERID", "CNI_IFNAME"))
    assert rc == 0, (out, err)
    table = sh(plugin.node, "nft", "list", "table", "inet", "podnet-portmap").stdout
    assert "7001" in table and "7000" not in table
    for i, pod in enumerate(pods):
        detach(plugin, pod, "g%d" % i, *made[i])
