"""Pure decisions of the Docker modes: names, --network, -p, subnets, conflists, isolation rules."""

import ipaddress

import pytest

from podnet.docker import isolation, spec
from podnet.docker.spec import DockerError


def test_network_modes():
    assert spec.parse_network(None) == ("bridge", "bridge")
    assert spec.parse_network("bridge") == ("bridge", "bridge")
    assert spec.parse_network("host") == ("host", None)
    assert spec.parse_network("none") == ("none", None)
    assert spec.parse_network("container:web") == ("container", "web")
    assert spec.parse_network("red") == ("user", "red")
    with pytest.raises(DockerError, match="container name is missing"):
        spec.parse_network("container:")
    with pytest.raises(DockerError, match="network name"):
        spec.parse_network("bad name")


@pytest.mark.parametrize(
    "text,want",
    [
        ("8080:80", {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}),
        ("53:5353/udp", {"hostPort": 53, "containerPort": 5353, "protocol": "udp"}),
        (
            "192.168.200.11:80:8080/TCP",
            {"hostPort": 80, "containerPort": 8080, "protocol": "tcp", "hostIP": "192.168.200.11"},
        ),
    ],
)
def test_publish(text, want):
    assert spec.parse_publish(text) == want


@pytest.mark.parametrize(
    "text,msg",
    [
        ("80", "expected HOSTPORT:PORT"),
        ("0:80", "hostPort '0' must be 1-65535"),
        ("80:70000", "containerPort '70000' must be 1-65535"),
        ("80:80/sctp", "protocol 'sctp'"),
        ("nothost:80:80", "not an IP address"),
    ],
)
def test_publish_errors_name_the_flag(text, msg):
    with pytest.raises(DockerError, match=msg):
        spec.parse_publish(text)


def test_publish_twice_is_an_error():
    with pytest.raises(DockerError, match="8080/tcp is listed twice"):
        spec.check_publish([spec.parse_publish("8080:80"), spec.parse_publish("8080:81")])
    spec.check_publish([spec.parse_publish("8080:80"), spec.parse_publish("8080:80/udp")])


def test_names():
    spec.check_container_name("web-1.a_b")
    for bad in ("", "-x", "a b", "x" * 64):
        with pytest.raises(DockerError):
            spec.check_container_name(bad)
    for reserved in ("bridge", "host", "none"):
        with pytest.raises(DockerError, match="predefined"):
            spec.check_network_name(reserved)


def test_bridge_names_fit_and_are_ours():
    assert spec.bridge_name("bridge") == "docker0"
    assert spec.bridge_name("red") == "pnd-red"
    long1, long2 = spec.bridge_name("frontend-net"), spec.bridge_name("frontend-other")
    assert long1 != long2 and all(len(b) <= 15 and b.startswith("pnd-") for b in (long1, long2))
    assert spec.netns_name("lab1", "abcdef0123456789") == "pn-lab1-d-abcdef0123"


def test_subnets():
    taken = {"bridge": spec.DEFAULT_SUBNET}
    assert spec.pick_subnet(taken) == ipaddress.ip_network("172.18.0.0/16")
    taken["red"] = "172.18.0.0/16"
    assert spec.pick_subnet(taken) == ipaddress.ip_network("172.19.0.0/16")
    assert spec.check_subnet("10.50.0.0/24", taken) == ipaddress.ip_network("10.50.0.0/24")
    with pytest.raises(DockerError, match=r"overlaps network red \(172.18.0.0/16\)"):
        spec.check_subnet("172.18.3.0/24", taken)
    with pytest.raises(DockerError, match="overlaps network bridge"):
        spec.check_subnet("172.16.0.0/12", taken)
    with pytest.raises(DockerError, match="overlaps the cluster's pod CIDR"):
        spec.check_subnet("10.244.5.0/24", taken)
    with pytest.raises(DockerError, match="host bits set|--subnet 10.0.0.1/24"):
        spec.check_subnet("10.0.0.1/24", taken)
    with pytest.raises(DockerError, match="too small"):
        spec.check_subnet("10.0.0.0/30", taken)
    full = {"n%d" % i: str(n) for i, n in enumerate(spec.POOL)}
    with pytest.raises(DockerError, match="no free subnet"):
        spec.pick_subnet(full)


def test_conflist_is_podnet_chained_with_portmap():
    conf = spec.conflist("red", "pnd-red", "172.18.0.0/16", "/ipam", "/sock")
    main, portmap = conf["plugins"]
    assert conf["name"] == "red" and main["type"] == "podnet" and portmap["type"] == "podnet-portmap"
    assert main["bridge"] == "pnd-red" and main["ipMasq"] and main["isDefaultGateway"]
    assert main["ipam"]["ranges"] == [[{"subnet": "172.18.0.0/16", "gateway": "172.18.0.1"}]]
    assert portmap["capabilities"] == {"portMappings": True} and portmap["daemonSocket"] == "/sock"


def test_resolv_conf_points_at_the_gateway():
    assert "nameserver 172.18.0.1\n" in spec.resolv_conf("172.18.0.1")


def test_isolation_rules_one_per_bridge():
    script = isolation.script(["pnd-red", "docker0", "pnd-blue"])
    assert 'elements = { "docker0", "pnd-blue", "pnd-red" }' in script
    for b in ("docker0", "pnd-blue", "pnd-red"):
        assert 'iifname "%s" oifname @bridges oifname != "%s" drop' % (b, b) in script
    assert script.startswith("add table inet podnet-docker\ndelete table inet podnet-docker\n")


def test_isolation_table_goes_away_with_one_bridge():
    assert isolation.script(["docker0"]) == "add table inet podnet-docker\ndelete table inet podnet-docker\n"
