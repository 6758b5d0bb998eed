"""The WireGuard planner (podnet/routing/wireguard.py) and the routing plan
with encryption: pure functions of Node objects."""

import base64
import shutil
import subprocess

import pytest

from podnet.kernel.wireguard import parse_dump
from podnet.routing import planner
from podnet.routing import wireguard as wgp

UNDERLAY = "192.168.200.0/24"


def key(i):
    return wgp.public_key(base64.b64encode(bytes([i + 1]) * 32).decode())


def node(name, ip, cidr, pub=None, cidrs=None):
    n = {
        "metadata": {"name": name, "annotations": {}},
        "spec": {"podCIDR": cidr} if cidr else {},
        "status": {"addresses": [{"type": "InternalIP", "address": ip}] if ip else []},
    }
    if cidrs:
        n["spec"]["podCIDRs"] = cidrs
    if pub:
        n["metadata"]["annotations"][wgp.ANN_KEY] = pub
    return n


def three():
    return [
        node("node1", "192.168.200.11", "10.244.0.0/24", key(1)),
        node("node2", "192.168.200.12", "10.244.1.0/24", key(2)),
        node("node3", "192.168.200.13", "10.244.2.0/24", key(3)),
    ]


def test_one_peer_per_other_node_with_its_endpoint_and_podcidr():
    want = wgp.plan("node1", three())
    assert want.name == "podnet.wg" and want.port == 51820
    assert want.mtu == 1440 and want.address == "10.244.0.0/32"
    assert sorted(want.peers.values(), key=lambda p: p.node) == [
        wgp.WgPeer("node2", key(2), "192.168.200.12:51820", ("10.244.1.0/24",)),
        wgp.WgPeer("node3", key(3), "192.168.200.13:51820", ("10.244.2.0/24",)),
    ]


def test_nodes_without_key_ip_or_cidr_are_no_peers_and_duplicate_keys_are_refused():
    nodes = three() + [
        node("nokey", "192.168.200.14", "10.244.3.0/24"),
        node("badkey", "192.168.200.15", "10.244.4.0/24", "not-a-key"),
        node("nocidr", "192.168.200.16", None, key(6)),
        node("noip", None, "10.244.5.0/24", key(7)),
        node("copy", "192.168.200.17", "10.244.6.0/24", key(3)),  # node3's key: neither may have it
    ]
    assert sorted(p.node for p in wgp.plan("node1", nodes).peers.values()) == ["node2"]


def test_several_pod_cidrs_are_all_allowed():
    nodes = three()
    nodes[1]["spec"]["podCIDRs"] = ["10.244.1.0/24", "10.245.1.0/24"]
    assert wgp.plan("node1", nodes).peers[key(2)].allowed_ips == ("10.244.1.0/24", "10.245.1.0/24")


def test_before_the_node_has_a_podcidr_there_is_no_address():
    nodes = three()
    del nodes[0]["spec"]["podCIDR"]
    assert wgp.plan("node1", nodes).address is None


@pytest.mark.parametrize("mode", planner.MODES)
def test_encrypted_routes_go_through_podnet_wg_in_every_mode(mode):
    want = planner.plan(mode, "node1", three(), UNDERLAY, encryption="wireguard")
    assert want.device is None and not want.neighs and not want.fdbs  # no VXLAN under WireGuard
    assert want.routes == {
        planner.Route("10.96.0.0/12", None, "eth0"),
        planner.Route("10.244.1.0/24", None, "podnet.wg"),
        planner.Route("10.244.2.0/24", None, "podnet.wg"),
    }
    assert planner.pod_mtu(mode, encryption="wireguard") == 1440


def test_encrypted_host_gw_needs_no_shared_segment_and_a_keyless_node_is_still_routed_into_the_tunnel():
    nodes = three() + [node("far", "10.9.0.5", "10.244.7.0/24")]  # off the segment, no key yet
    want = planner.plan("host-gw", "node1", nodes, UNDERLAY, encryption="wireguard")
    # fails closed: into podnet.wg, where no peer takes it, never in clear via eth0
    assert planner.Route("10.244.7.0/24", None, "podnet.wg") in want.routes
    with pytest.raises(planner.RoutingError):
        planner.plan("host-gw", "node1", nodes, UNDERLAY)


def test_unencrypted_plans_are_unchanged():
    assert planner.plan("vxlan", "node1", three(), UNDERLAY).device is not None
    assert planner.pod_mtu("vxlan") == 1450 and planner.pod_mtu("host-gw") == 1500


DUMP = (
    "cHJpdmF0ZQ==\tcHVibGlj\t51820\toff\n"
    "%s\t(none)\t192.168.200.12:51820\t10.244.1.0/24\t1733100000\t1000\t2000\t25\n"
    "%s\t(none)\t(none)\t(none)\t0\t0\t0\toff\n"
)


def test_parse_dump():
    dev = parse_dump(DUMP % (key(2), key(9)))
    assert (dev.private_key, dev.public_key, dev.listen_port) == ("cHJpdmF0ZQ==", "cHVibGlj", 51820)
    p = dev.peers[key(2)]
    assert (p.endpoint, p.allowed_ips, p.latest_handshake, p.rx, p.tx, p.keepalive) == (
        "192.168.200.12:51820",
        ("10.244.1.0/24",),
        1733100000,
        1000,
        2000,
        25,
    )
    q = dev.peers[key(9)]
    assert (q.endpoint, q.allowed_ips, q.latest_handshake, q.keepalive) == (None, (), 0, 0)


def seen(dev):
    return {k: wgp.SeenPeer(p.endpoint, p.allowed_ips, p.keepalive) for k, p in dev.peers.items()}


def test_set_args_add_change_and_remove_and_nothing_when_equal():
    want = wgp.plan("node1", three())
    dev = parse_dump(DUMP % (key(2), key(9)))  # node2 right, a stranger, node3 missing
    assert wgp.set_args(want, dev.listen_port, seen(dev)) == [
        "peer",
        key(9),
        "remove",
        "peer",
        key(3),
        "endpoint",
        "192.168.200.13:51820",
        "allowed-ips",
        "10.244.2.0/24",
        "persistent-keepalive",
        "25",
    ]
    same = {k: wgp.SeenPeer(p.endpoint, p.allowed_ips, wgp.KEEPALIVE) for k, p in want.peers.items()}
    assert wgp.set_args(want, 51820, same) == []
    assert wgp.set_args(want, 0, same) == ["listen-port", "51820"]
    moved = dict(same)
    moved[key(2)] = wgp.SeenPeer("192.168.200.99:51820", ("10.244.1.0/24",), 25)  # roamed, or set by hand
    assert wgp.set_args(want, 51820, moved)[:4] == ["peer", key(2), "endpoint", "192.168.200.12:51820"]


def test_a_changed_key_replaces_the_peer():
    nodes = three()
    want = wgp.plan("node1", nodes)
    have = {k: wgp.SeenPeer(p.endpoint, p.allowed_ips, 25) for k, p in want.peers.items()}
    nodes[1]["metadata"]["annotations"][wgp.ANN_KEY] = key(20)
    args = wgp.set_args(wgp.plan("node1", nodes), 51820, have)
    assert args[:3] == ["peer", key(2), "remove"] and args[3:5] == ["peer", key(20)]


def test_handshakes_annotation_by_node_name():
    want = wgp.plan("node1", three())
    assert wgp.handshakes_annotation(want, {key(2): 1733100000}) == "node2=1733100000,node3=0"


def test_keys_are_x25519_as_wg_makes_them():
    priv = wgp.generate_private_key()
    raw = base64.b64decode(priv)
    assert len(raw) == 32 and raw[0] & 7 == 0 and raw[31] & 0x80 == 0 and raw[31] & 0x40
    assert wgp.valid_public_key(wgp.public_key(priv))
    with pytest.raises(ValueError):
        wgp.public_key("c2hvcnQ=")
    if shutil.which("wg"):  # the reference: wireguard-tools' own pubkey
        out = subprocess.run(["wg", "pubkey"], input=priv + "\n", capture_output=True, text=True, check=True)
        assert out.stdout.strip() == wgp.public_key(priv)


def test_encryption_values():
    assert wgp.check_encryption(None) == "none" and wgp.check_encryption("wireguard") == "wireguard"
    with pytest.raises(ValueError):
        wgp.check_encryption("ipsec")
