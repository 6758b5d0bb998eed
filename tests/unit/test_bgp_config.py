"""render_config is pure: what it writes, and that BIRD's own parser
(`bird -p`, no root, no daemon) accepts every shape of it."""

import re
import shutil

import pytest

from podnet.routing.bgp import BgpError, Bird, check_config, protocol_name, render_config

NODES = [("node1", "192.168.210.11"), ("node2", "192.168.210.12"), ("node3", "192.168.210.13")]
needs_bird = pytest.mark.skipif(not shutil.which("bird"), reason="bird (BIRD 2) is not installed")


def mesh(i, **kw):
    name, ip = NODES[i - 1]
    return render_config(name, ip, "10.246.%d.0/24" % i, [n for n in NODES if n[0] != name], **kw)


def sessions(conf):
    """{protocol name: body} of every `protocol bgp` in the config."""
    return {
        m.group(1): m.group(3) for m in re.finditer(r"^protocol bgp (\w+) from (\w+) \{\n(.*?)^\}", conf, re.M | re.S)
    }


def block(conf, head):
    m = re.search(r"^%s \{\n(.*?)^\}" % re.escape(head), conf, re.M | re.S)
    assert m, "no block %r in\n%s" % (head, conf)
    return m.group(1)


def test_full_mesh_has_one_direct_ibgp_session_per_other_node():
    conf = mesh(1)
    assert "router id 192.168.210.11;" in conf
    s = sessions(conf)
    assert sorted(s) == ["peer_node2", "peer_node3"]
    assert "neighbor 192.168.210.12 as 64512;" in s["peer_node2"]
    assert "neighbor 192.168.210.13 as 64512;" in s["peer_node3"]
    assert 'description "node3";' in s["peer_node3"]
    assert not any("rr client" in body for body in s.values())
    tmpl = block(conf, "template bgp podnet_peer")
    assert re.search(r"^\s*direct;$", tmpl, re.M) and "gateway" not in tmpl and "multihop" not in tmpl
    assert "local as 64512;" in tmpl and "hold time 9;" in tmpl and "connect retry time 1;" in tmpl
    assert "import all; export where source = RTS_STATIC; next hop self;" in tmpl


def test_self_and_duplicate_peers_are_skipped_and_asn_is_used():
    conf = render_config(
        "node1", "192.168.210.11", "10.246.1.0/24", NODES + [("node2-again", "192.168.210.12")], asn=65001
    )
    assert sorted(sessions(conf)) == ["peer_node2", "peer_node3"]
    assert "neighbor 192.168.210.12 as 65001;" in conf and "local as 65001;" in conf


def test_kernel_gets_only_bgp_routes_and_static_is_only_for_bgp():
    conf = mesh(2, announce=["203.0.113.7", "203.0.113.0/28"])
    kernel = block(conf, "protocol kernel kernel4")
    assert "import none; export where source = RTS_BGP;" in kernel
    assert "learn off;" in kernel and "merge paths on;" in kernel
    static = block(conf, "protocol static podnet_static")
    assert re.findall(r"route (\S+) blackhole;", static) == ["10.246.2.0/24", "203.0.113.7/32", "203.0.113.0/28"]
    assert "protocol device" in conf and "protocol direct" not in conf


def test_route_reflector_and_its_clients():
    rr = mesh(1, route_reflector=True)
    s = sessions(rr)
    assert sorted(s) == ["peer_node2", "peer_node3"] and all("rr client;" in b for b in s.values())
    assert all(" from podnet_reflector " in line for line in rr.splitlines() if line.startswith("protocol bgp"))
    refl = block(rr, "template bgp podnet_reflector from podnet_peer")
    assert "export where source ~ [ RTS_STATIC, RTS_BGP ];" in refl and "next hop self off;" in refl
    client = mesh(2, reflector_ips=["192.168.210.11"])
    assert list(sessions(client)) == ["peer_node1"]
    assert "rr client" not in client and "192.168.210.13" not in client
    # a reflector IP nobody named still gets a session, named after its address
    other = mesh(3, reflector_ips=["192.168.210.50"])
    assert list(sessions(other)) == ["peer_192_168_210_50"]
    # two reflectors: clients for the nodes, plain iBGP between the reflectors
    two = render_config(
        "rr1",
        "192.168.210.11",
        "10.246.1.0/24",
        NODES[1:] + [("rr2", "192.168.210.14")],
        route_reflector=True,
        reflector_ips=["192.168.210.14", "192.168.210.11"],
    )
    s = sessions(two)
    assert sorted(s) == ["peer_node2", "peer_node3", "peer_rr2"]
    assert "rr client" not in s["peer_rr2"] and "rr client;" in s["peer_node2"]


def test_protocol_names_are_valid_unique_bird_identifiers():
    assert protocol_name("node2") == "peer_node2"
    assert protocol_name("ip-10-0-0-1.ec2.internal") == "peer_ip_10_0_0_1_ec2_internal"
    long = protocol_name("n" * 200)
    assert len(long) <= 64 and long.startswith("peer_nnn")
    assert protocol_name("a-b", {"peer_a_b"}) != "peer_a_b"
    conf = render_config(
        "n1",
        "192.168.210.11",
        "10.246.1.0/24",
        [("a-b", "192.168.210.12"), ("a.b", "192.168.210.13"), ('we"ird\\', "192.168.210.14")],
    )
    names = list(sessions(conf))
    assert len(set(names)) == 3 and all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", n) for n in names)
    assert 'description "a.b";' in conf and 'description "we_ird_";' in conf


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(node_ip="fd00::1"), "IPv4"),
        (dict(node_ip="nope"), "not an IP"),
        (dict(pod_cidr="10.246.1.1/24"), "host bits"),
        (dict(peers=[("x", "300.1.1.1")]), "not an IP"),
        (dict(announce=["1.2.3.4/33"]), "announce"),
        (dict(asn=0), "asn"),
    ],
)
def test_bad_input_is_a_bgp_error(kw, match):
    args = dict(node="n1", node_ip="192.168.210.11", pod_cidr="10.246.1.0/24", peers=NODES[1:])
    args.update(kw)
    with pytest.raises(BgpError, match=match):
        render_config(**args)


@needs_bird
@pytest.mark.parametrize(
    "conf",
    [
        mesh(1),
        mesh(2, announce=["203.0.113.7"]),
        mesh(1, route_reflector=True),
        mesh(3, reflector_ips=["192.168.210.11"]),
        render_config("lonely", "192.168.210.11", "10.246.1.0/24", []),
        render_config("n1", "192.168.210.11", "10.246.1.0/24", [("a-b", "192.168.210.12"), ("a.b", "192.168.210.13")]),
    ],
    ids=["mesh", "announce", "reflector", "client", "no-peers", "sanitised"],
)
def test_bird_parses_the_rendered_config(conf, tmp_path):
    path = tmp_path / "bird.conf"
    path.write_text(conf)
    check_config(str(path))
    # and with the log line Bird adds
    path.write_text(Bird(None, str(tmp_path))._effective(conf))
    check_config(str(path))


@needs_bird
def test_bird_rejects_a_bad_config_with_its_message(tmp_path):
    path = tmp_path / "bird.conf"
    path.write_text(mesh(1).replace("hold time 9;", "hold time 1;"))
    with pytest.raises(BgpError, match=r"bird.conf:\d+:\d+ Hold time must be"):
        check_config(str(path))


@needs_bird
def test_bird_without_a_daemon(tmp_path):
    bird = Bird("/run/netns/does-not-matter", str(tmp_path / "b"))
    assert not bird.running
    bird.stop()
    bird.stop()  # idempotent, nothing to stop
    with pytest.raises(BgpError):
        bird.ensure("this is not a bird config")
    assert not bird.running and not (tmp_path / "b" / "bird.conf").exists()
    with pytest.raises(BgpError, match="control socket"):
        bird.sessions()


def test_a_pidfile_naming_someone_else_is_not_our_daemon(tmp_path):
    bird = Bird(None, str(tmp_path))
    with open(bird.pidfile, "w") as f:
        f.write("1\n")  # PID 1 is alive, but not a BIRD with our control socket
    assert not bird.running
    bird.stop()  # must not signal PID 1
    assert not (tmp_path / "bird.pid").exists()


SHOW = """\
Name       Proto      Table      State  Since         Info
device1    Device     ---        up     2026-01-02T10:00:00
kernel4    Kernel     master4    up     2026-01-02T10:00:00
peer_node2 BGP        ---        up     2026-01-02T10:00:01  Established
  Description:    node2
  BGP state:          Established
    Neighbor address: 192.168.210.12
    Neighbor AS:      64512
  Channel ipv4
    State:          UP
    Routes:         1 imported, 1 exported, 1 preferred

peer_ip_10_0_0_9 BGP        ---        start  2026-01-02 10:00:00  Active        Socket: Connection refused
  Description:    ip-10.0.0.9
  BGP state:          Active
    Neighbor address: 10.0.0.9
    Connect delay:    0.412/1
"""


def test_sessions_parses_show_protocols_all(monkeypatch, tmp_path):
    bird = Bird(None, str(tmp_path))
    monkeypatch.setattr(bird, "_birdc", lambda *a, **k: SHOW)
    assert bird.sessions() == [
        {
            "name": "peer_node2",
            "peer": "node2",
            "address": "192.168.210.12",
            "state": "Established",
            "since": "2026-01-02T10:00:01",
            "info": "Established",
        },
        {
            "name": "peer_ip_10_0_0_9",
            "peer": "ip-10.0.0.9",
            "address": "10.0.0.9",
            "state": "Active",
            "since": "2026-01-02 10:00:00",
            "info": "Active Socket: Connection refused",
        },
    ]


def test_routes_parses_show_route(monkeypatch, tmp_path):
    bird = Bird(None, str(tmp_path))
    monkeypatch.setattr(
        bird,
        "_birdc",
        lambda *a, **k: (
            "Table master4:\n"
            "10.246.1.0/24        blackhole [podnet_static 10:00:00.000] * (200)\n"
            "10.246.2.0/24        unicast [peer_node2 10:00:01.000] * (100) [i]\n"
            "\tvia 192.168.210.12 on eth0\n"
            "                     unicast [peer_node3 10:00:01.000] (100) [i]\n"
            "\tvia 192.168.210.13 on eth0\n"
        ),
    )
    assert bird.routes() == ["10.246.1.0/24", "10.246.2.0/24"]
