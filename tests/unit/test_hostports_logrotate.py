"""Issue 11, the pure parts: which host ports a pod asks for and when two
pods collide on a node (podnet.agent.hostports), and size-based rotation of
a log file (podnet.agent.logrotate) on a temporary directory."""

import os

import pytest

from podnet.agent import hostports, logrotate


def pod(name, *ports, uid=None, host_network=False):
    return {
        "metadata": {"name": name, "namespace": "default", "uid": uid or "uid-" + name},
        "spec": {"hostNetwork": host_network, "containers": [{"name": "c", "ports": list(ports)}]},
    }


def test_port_mappings_are_the_cni_capability_kubelet_passes():
    p = pod(
        "a",
        {"containerPort": 80, "hostPort": 8080},
        {"containerPort": 53, "hostPort": 5353, "protocol": "UDP", "hostIP": "10.0.0.1"},
        {"containerPort": 9000},  # no hostPort: not published
    )
    assert hostports.port_mappings(p) == {
        "portMappings": [
            {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
            {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "10.0.0.1"},
        ]
    }
    assert hostports.port_mappings(pod("b", {"containerPort": 80})) is None
    # hostNetwork: the node's own ports, nothing for CNI to publish
    assert hostports.port_mappings(pod("h", {"containerPort": 80, "hostPort": 80}, host_network=True)) is None


@pytest.mark.parametrize(
    "first, second, clash",
    [
        ({"hostPort": 8080}, {"hostPort": 8080}, True),
        ({"hostPort": 8080}, {"hostPort": 8080, "protocol": "UDP"}, False),
        ({"hostPort": 8080}, {"hostPort": 8081}, False),
        ({"hostPort": 8080, "hostIP": "10.0.0.1"}, {"hostPort": 8080}, True),  # unspecified overlaps all
        ({"hostPort": 8080, "hostIP": "0.0.0.0"}, {"hostPort": 8080, "hostIP": "10.0.0.2"}, True),
        ({"hostPort": 8080, "hostIP": "10.0.0.1"}, {"hostPort": 8080, "hostIP": "10.0.0.2"}, False),
        ({"hostPort": 8080, "hostIP": "10.0.0.1"}, {"hostPort": 8080, "hostIP": "10.0.0.1"}, True),
    ],
)
def test_a_host_port_is_taken_by_the_same_protocol_on_an_overlapping_address(first, second, clash):
    reg = hostports.Registry()
    assert reg.claim(pod("a", dict(first, containerPort=80))) is None
    why = reg.claim(pod("b", dict(second, containerPort=80)))
    if clash:
        assert why is not None and "is already used by pod default/a on this node" in why
        assert why.startswith("hostPort 8080/%s" % second.get("protocol", "TCP"))
    else:
        assert why is None


def test_a_released_or_gone_pod_frees_its_ports_and_a_pod_may_claim_again():
    reg = hostports.Registry()
    a = pod("a", {"containerPort": 80, "hostPort": 8080})
    assert reg.claim(a) is None
    assert reg.claim(a) is None  # its own claim again (a retried start)
    assert reg.claim(pod("b", {"containerPort": 80, "hostPort": 8080})) is not None
    reg.release("uid-a")
    assert reg.claim(pod("b", {"containerPort": 80, "hostPort": 8080})) is None
    # a claim whose pod the node no longer runs or starts is dropped
    assert reg.claim(pod("c", {"containerPort": 80, "hostPort": 8080}), live={"uid-c"}) is None
    # hostNetwork pods' hostPorts count too
    assert reg.claim(pod("h", {"containerPort": 9, "hostPort": 9}, host_network=True)) is None
    assert "hostPort 9/TCP" in reg.claim(pod("d", {"containerPort": 1, "hostPort": 9}))


def test_rejected_is_kubelets_nodeports_rejection():
    assert hostports.rejected({"status": {"phase": "Failed", "reason": "NodePorts"}})
    assert not hostports.rejected({"status": {"phase": "Pending", "reason": "NodePorts"}})
    assert not hostports.rejected({})


# ---- log rotation -------------------------------------------------------------------


def test_limits_default_to_kubelets_and_read_the_environment():
    assert logrotate.limits(env={}) == (10 * 1024 * 1024, 5, 10.0)
    env = {
        "PODNET_CONTAINER_LOG_MAX_SIZE": "200Ki",
        "PODNET_CONTAINER_LOG_MAX_FILES": "3",
        "PODNET_CONTAINER_LOG_MONITOR_INTERVAL": "0.5",
    }
    assert logrotate.limits(env=env) == (200 * 1024, 3, 0.5)
    assert logrotate.parse_size("1M") == 1000000 and logrotate.parse_size("4096") == 4096
    with pytest.raises(ValueError, match="10 MB"):
        logrotate.parse_size("10 MB please")
    with pytest.raises(ValueError, match="at least 2"):
        logrotate.limits(env={"PODNET_CONTAINER_LOG_MAX_FILES": "1"})


def test_copy_truncate_keeps_at_most_max_files_and_the_writer_appends_to_the_live_file(tmp_path):
    path = str(tmp_path / "c.log")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)  # as a container's stdout
    try:
        for n in range(8):
            os.write(fd, ("round %d\n" % n).encode() * 100)
            rotated = logrotate.rotate(path, 500, 5)
            assert rotated  # every round writes 800 bytes > 500
        os.write(fd, b"last line\n")
    finally:
        os.close(fd)
    names = sorted(os.listdir(tmp_path))
    assert names == ["c.log", "c.log.1", "c.log.2", "c.log.3", "c.log.4"]
    assert open(path).read() == "last line\n"  # the live file: written at its new end, no hole
    assert open(path + ".1").read().startswith("round 7\n")  # newest rotated first
    assert open(path + ".4").read().startswith("round 4\n")
    assert not logrotate.rotate(path, 500, 5)  # small: left alone
    # a lower limit removes what is beyond it
    with open(path, "a") as f:
        f.write("x" * 600)
    assert logrotate.rotate(path, 500, 3)
    assert sorted(os.listdir(tmp_path)) == ["c.log", "c.log.1", "c.log.2"]


def test_tail_reads_on_into_the_rotated_file_after_a_truncation(tmp_path):
    path = str(tmp_path / "agent.log")
    with open(path + ".1", "w") as f:
        f.write("".join("old %d\n" % i for i in range(20)))
    with open(path, "w") as f:
        f.write("new 0\nnew 1\n")
    assert logrotate.tail(path, 3) == "old 19\nnew 0\nnew 1\n"
    assert logrotate.tail(path, 2) == "new 0\nnew 1\n"
    assert logrotate.tail(str(tmp_path / "none.log"), 5) == ""
