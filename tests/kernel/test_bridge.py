"""The podnet bridge plugin on the real kernel: what a user of the network sees."""

import ipaddress
import json
import os

import pytest

from tests.conftest import bridge_conf, sh
from tests.helpers import connect, ping, server, wire

pytestmark = pytest.mark.kernel


@pytest.fixture(params=["in-process", "daemon"])
def mode_conf(request, data_dir):
    """A bridge config in each execution mode."""

    def make(**kw):
        conf = bridge_conf(data_dir, **kw)
        if request.param == "daemon":
            conf["daemonSocket"] = request.getfixturevalue("daemon").sock
        return conf

    make.mode = request.param
    return make


def addr_of(result, version=4):
    for ip in result["ips"]:
        iface = ipaddress.ip_interface(ip["address"])
        if iface.version == version:
            return str(iface.ip)
    raise AssertionError("no IPv%d in %s" % (version, result))


def test_add_check_del_and_pods_talk(plugin, namespaces, mode_conf):
    conf = mode_conf()
    pods = [namespaces.new("pod"), namespaces.new("pod")]
    results = []
    for i, pod in enumerate(pods):
        rc, out, err = plugin("podnet", "ADD", conf, cid="ctr%d" % i, netns=pod)
        assert rc == 0, (out, err)
        results.append(out)
    a, b = (addr_of(r) for r in results)
    assert a != b and all(ipaddress.ip_address(x) in ipaddress.ip_network("10.22.0.0/24") for x in (a, b))
    r = results[0]
    assert [i["name"] for i in r["interfaces"]] == ["pnbr0", r["interfaces"][1]["name"], "eth0"]
    assert r["interfaces"][2]["sandbox"].endswith(pods[0]) and r["ips"][0]["interface"] == 2
    assert ping(pods[0], b) and ping(pods[0], "10.22.0.1")  # pod to pod, pod to gateway
    with server(pods[1]) as _:
        assert connect(pods[0], b) == a  # no NAT between pods
    for i, pod in enumerate(pods):
        rc, out, err = plugin("podnet", "CHECK", dict(conf, prevResult=results[i]), cid="ctr%d" % i, netns=pod)
        assert rc == 0, (out, err)
    # CHECK notices a removed address
    sh(pods[1], "ip", "addr", "flush", "dev", "eth0")
    rc, out, _ = plugin("podnet", "CHECK", dict(conf, prevResult=results[1]), cid="ctr1", netns=pods[1])
    assert rc != 0 and "lacks address" in out["msg"]
    for i, pod in enumerate(pods):
        for _ in range(2):  # DEL twice: both succeed
            rc, out, err = plugin("podnet", "DEL", dict(conf, prevResult=results[i]), cid="ctr%d" % i, netns=pod)
            assert rc == 0, (out, err)
        assert "eth0" not in sh(pod, "ip", "-o", "link").stdout
    assert "pn-" not in sh(plugin.node, "ip", "-o", "link").stdout
    assert not [f for f in os.listdir(os.path.join(conf["ipam"]["dataDir"], "testnet")) if f[0].isdigit()]


@pytest.mark.parametrize("version", ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
def test_result_in_the_version_asked_for(plugin, namespaces, data_dir, version):
    pod = namespaces.new("pod")
    conf = bridge_conf(data_dir, version=version)
    rc, out, err = plugin("podnet", "ADD", conf, netns=pod)
    assert rc == 0, (out, err)
    assert out["cniVersion"] == version
    assert ("version" in out["ips"][0]) == version.startswith("0.")
    assert plugin("podnet", "DEL", conf, netns=pod)[0] == 0


def test_del_after_netns_is_gone_releases_everything(plugin, namespaces, mode_conf):
    conf = mode_conf(ipMasq=True)
    pod = namespaces.new("pod")
    rc, out, err = plugin("podnet", "ADD", conf, cid="gone", netns=pod)
    assert rc == 0, (out, err)
    path = "/run/netns/" + pod
    namespaces.remove(pod)  # the runtime removed the netns before DEL
    rc, out, err = plugin("podnet", "DEL", conf, cid="gone", netns=path)  # no prevResult either
    assert rc == 0, (out, err)
    assert not [f for f in os.listdir(os.path.join(conf["ipam"]["dataDir"], "testnet")) if f[0].isdigit()]
    assert "pn-" not in sh(plugin.node, "ip", "-o", "link").stdout
    assert "comment" not in sh(plugin.node, "nft", "list", "map", "inet", "podnet-bridge", "masq4").stdout
    # and DEL with no netns at all
    rc, out, err = plugin("podnet", "DEL", conf, cid="never-added", drop=("CNI_NETNS",))
    assert rc == 0, (out, err)


def test_ipmasq_snats_to_the_outside_but_not_between_pods(plugin, namespaces, mode_conf):
    outside = namespaces.new("ext")
    wire(plugin.node, "192.0.2.1/24", outside, "192.0.2.2/24")
    conf = mode_conf(ipMasq=True, isDefaultGateway=True)
    pods = [namespaces.new("pod"), namespaces.new("pod")]
    ips = []
    for i, pod in enumerate(pods):
        rc, out, err = plugin("podnet", "ADD", conf, cid="m%d" % i, netns=pod)
        assert rc == 0, (out, err)
        ips.append(addr_of(out))
    with server(outside):
        # the outside host has no route to 10.22.0.0/24: only SNAT makes this work
        assert connect(pods[0], "192.0.2.2") == "192.0.2.1"
    with server(pods[1]):
        assert connect(pods[0], ips[1]) == ips[0]
    for i, pod in enumerate(pods):
        assert plugin("podnet", "DEL", conf, cid="m%d" % i, netns=pod)[0] == 0
    with server(outside):
        assert connect(pods[0], "192.0.2.2") is None  # pod detached: no path left


def test_ipv6_and_dual_stack(plugin, namespaces, mode_conf):
    conf = mode_conf(ranges=[[{"subnet": "10.22.0.0/24"}], [{"subnet": "fd00:22::/64"}]], isDefaultGateway=True)
    pods = [namespaces.new("pod"), namespaces.new("pod")]
    results = []
    for i, pod in enumerate(pods):
        rc, out, err = plugin("podnet", "ADD", conf, cid="d%d" % i, netns=pod)
        assert rc == 0, (out, err)
        assert sorted(ipaddress.ip_interface(ip["address"]).version for ip in out["ips"]) == [4, 6]
        results.append(out)
    v6 = addr_of(results[1], 6)
    assert "tentative" not in sh(pods[1], "ip", "-6", "addr", "show", "eth0").stdout  # usable at once
    assert ping(pods[0], v6) and ping(pods[0], addr_of(results[1], 4))
    with server(pods[1], family="6"):
        assert connect(pods[0], v6) == addr_of(results[0], 6)
    assert "default via fd00:22::1" in sh(pods[0], "ip", "-6", "route").stdout
    for i, pod in enumerate(pods):
        assert plugin("podnet", "DEL", conf, cid="d%d" % i, netns=pod)[0] == 0


def test_mtu_promisc_and_reference_field_names(plugin, namespaces, data_dir):
    pod = namespaces.new("pod")
    conf = bridge_conf(data_dir, mtu=1400, promiscMode=True, hairpinMode=True)
    rc, out, err = plugin("podnet", "ADD", conf, netns=pod)
    assert rc == 0, (out, err)
    assert "mtu 1400" in sh(pod, "ip", "link", "show", "eth0").stdout
    assert "PROMISC" in sh(plugin.node, "ip", "link", "show", "pnbr0").stdout
    host = out["interfaces"][1]["name"]
    assert "hairpin on" in sh(plugin.node, "bridge", "-d", "link", "show", "dev", host).stdout
    assert plugin("podnet", "DEL", conf, netns=pod)[0] == 0


@pytest.mark.parametrize("version", ["1.0.0", "1.1.0"])
def test_route_mtu_and_the_other_cni_1_1_route_fields(plugin, namespaces, data_dir, version):
    """podnet's own clusters put the tunnel's MTU on the pods' default route
    only: eth0 stays at the bridge's, so pods on one bridge talk at full
    size while DF packets through the gateway stop at the route's MTU."""
    pods = [namespaces.new("pod"), namespaces.new("pod")]
    conf = bridge_conf(data_dir, version=version, mtu=1500)
    conf["ipam"]["routes"] = [
        {"dst": "0.0.0.0/0", "mtu": 1400, "advmss": 1300},
        {"dst": "10.60.0.0/16", "priority": 20, "table": 1000},
        {"dst": "10.61.0.0/16", "gw": "10.22.0.1", "scope": 0},
    ]
    outs = []
    for i, pod in enumerate(pods):
        rc, out, err = plugin("podnet", "ADD", conf, cid="ctr%d" % i, netns=pod)
        assert rc == 0, (out, err)
        outs.append(out)
    routes = sh(pods[0], "ip", "route").stdout
    assert "default via 10.22.0.1 dev eth0 proto static mtu 1400 advmss 1300" in routes, routes
    assert "10.61.0.0/16 via 10.22.0.1 dev eth0" in routes, routes
    assert (
        "10.60.0.0/16 via 10.22.0.1 dev eth0 proto static metric 20"
        in sh(pods[0], "ip", "route", "show", "table", "1000").stdout
    )
    assert "mtu 1500" in sh(pods[0], "ip", "link", "show", "eth0").stdout
    peer = addr_of(outs[1])
    sh(pods[0], "ping", "-c1", "-W2", "-M", "do", "-s", "1472", peer)  # on the bridge: eth0's 1500, DF
    res = sh(pods[0], "ping", "-c1", "-W1", "-M", "do", "-s", "1390", "10.99.0.1", check=False)
    assert "mtu=1400" in res.stdout + res.stderr  # through the gateway: the route's 1400, refused locally
    # the result carries the fields in 1.1 only (1.0 has no such route fields)
    want = {"mtu": 1400, "advmss": 1300} if version == "1.1.0" else {}
    assert {k: v for k, v in outs[0]["routes"][0].items() if k not in ("dst", "gw")} == want
    for i, pod in enumerate(pods):
        assert plugin("podnet", "DEL", conf, cid="ctr%d" % i, netns=pod)[0] == 0


@pytest.mark.parametrize(
    "route, says",
    [
        ({"dst": "0.0.0.0/0", "mtu": 40}, "ipam.routes[0].mtu: must be an integer 68-65535"),
        ({"dst": "0.0.0.0/0", "mtu": "1450"}, "ipam.routes[0].mtu: must be an integer"),
        ({"dst": "0.0.0.0/0", "scope": 300}, "ipam.routes[0].scope: must be an integer 0-255"),
        ({"dst": "0.0.0.0/0", "mtuu": 1450}, "ipam.routes[0].mtuu: unknown route field"),
    ],
)
def test_bad_route_fields_are_refused_and_change_nothing(plugin, namespaces, data_dir, route, says):
    pod = namespaces.new("pod")
    conf = bridge_conf(data_dir, bridge="pnbr7")
    conf["ipam"]["routes"] = [route]
    rc, out, _ = plugin("podnet", "ADD", conf, netns=pod)
    assert rc == 1 and out["code"] == 7 and says in out["msg"], out
    assert "eth0" not in sh(pod, "ip", "-o", "link").stdout
    assert "pnbr7" not in sh(plugin.node, "ip", "-o", "link").stdout
    assert not [f for f in os.listdir(os.path.join(data_dir, "testnet")) if f[0].isdigit()]


def test_bridge_mac_is_stable_while_ports_come_and_go(plugin, namespaces, data_dir):
    conf = bridge_conf(data_dir)
    pods = [namespaces.new("pod") for _ in range(3)]
    macs = []
    for i, pod in enumerate(pods):
        assert plugin("podnet", "ADD", conf, cid="s%d" % i, netns=pod)[0] == 0
        macs.append(
            sh(plugin.node, "cat", "/sys/class/net/pnbr0/address", check=False).stdout
            or json.loads(sh(plugin.node, "ip", "-j", "link", "show", "pnbr0").stdout)[0]["address"]
        )
    assert plugin("podnet", "DEL", conf, cid="s0", netns=pods[0])[0] == 0
    after = json.loads(sh(plugin.node, "ip", "-j", "link", "show", "pnbr0").stdout)[0]["address"]
    assert after == macs[0] and after != "00:00:00:00:00:00"
    for i, pod in enumerate(pods[1:], 1):
        assert plugin("podnet", "DEL", conf, cid="s%d" % i, netns=pod)[0] == 0


def test_requested_ip_through_cni_args_and_runtime_config(plugin, namespaces, data_dir):
    conf = bridge_conf(data_dir)
    pods = [namespaces.new("pod"), namespaces.new("pod")]
    rc, out, err = plugin(
        "podnet",
        "ADD",
        conf,
        cid="r0",
        netns=pods[0],
        args="IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p;IP=10.22.0.77",
    )
    assert rc == 0 and addr_of(out) == "10.22.0.77", (out, err)
    rc, out, err = plugin(
        "podnet", "ADD", dict(conf, runtimeConfig={"ips": ["10.22.0.77/24"]}), cid="r1", netns=pods[1]
    )
    assert rc == 1 and out["code"] == 101  # address in use: nothing attached
    assert "eth0" not in sh(pods[1], "ip", "-o", "link").stdout
    rc, out, err = plugin(
        "podnet", "ADD", dict(conf, runtimeConfig={"ips": ["10.22.0.78/24"]}), cid="r1", netns=pods[1]
    )
    assert rc == 0 and addr_of(out) == "10.22.0.78", (out, err)
    for i, pod in enumerate(pods):
        assert plugin("podnet", "DEL", conf, cid="r%d" % i, netns=pod)[0] == 0


def test_status_and_gc(plugin, namespaces, data_dir, daemon):
    conf = bridge_conf(data_dir, version="1.1.0", ipMasq=True, daemonSocket=daemon.sock)
    pods = [namespaces.new("pod"), namespaces.new("pod")]
    for i, pod in enumerate(pods):
        assert plugin("podnet", "ADD", conf, cid="g%d" % i, netns=pod)[0] == 0
    assert plugin("podnet", "STATUS", conf, drop=("CNI_CONTAINERID", "CNI_IFNAME"))[0] == 0
    gc = dict(conf, **{"cni.dev/valid-attachments": [{"containerID": "g1", "ifname": "eth0"}]})
    rc, out, err = plugin("podnet", "GC", gc, drop=("CNI_CONTAINERID", "CNI_IFNAME"))
    assert rc == 0, (out, err)
    files = [f for f in os.listdir(os.path.join(data_dir, "testnet")) if f[0].isdigit()]
    assert len(files) == 1 and open(os.path.join(data_dir, "testnet", files[0]), "rb").read() == b"g1\r\neth0"
    masq4 = sh(plugin.node, "nft", "list", "map", "inet", "podnet-bridge", "masq4").stdout
    assert "/g1/" in masq4 and "/g0/" not in masq4
    daemon.stop()
    rc, out, err = plugin("podnet", "STATUS", conf, drop=("CNI_CONTAINERID", "CNI_IFNAME"))
    assert rc == 1 and out["code"] == 50 and "podnet cni serve" in out["details"]
    for i, pod in enumerate(pods):  # DEL still works with the daemon down (in-process fallback)
        assert plugin("podnet", "DEL", conf, cid="g%d" % i, netns=pod)[0] == 0


def test_status_reports_an_exhausted_range(plugin, namespaces, data_dir):
    conf = bridge_conf(data_dir, version="1.1.0", subnet="10.22.0.0/30")  # one usable address
    pod = namespaces.new("pod")
    assert plugin("podnet", "ADD", conf, netns=pod)[0] == 0
    rc, out, _ = plugin("podnet", "STATUS", conf, drop=("CNI_CONTAINERID", "CNI_IFNAME"))
    assert rc == 1 and out["code"] == 50 and "exhausted" in out["details"]
    assert plugin("podnet", "DEL", conf, netns=pod)[0] == 0
