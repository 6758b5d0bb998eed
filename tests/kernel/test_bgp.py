"""Real BIRD daemons in three node namespaces on a shared underlay: the mesh
and a route reflector converge, routes land as `proto bird`, pods on
different nodes reach each other, and reloads, stops and a lost node take
their routes away again.

    switch netns: bridge br0, one veth port per node
    node N netns: eth0 192.168.210.1N/24, bridge cni0 10.246.N.1/24, ip_forward=1
    pod N netns:  eth0 10.246.N.10/24, default via 10.246.N.1
"""

import os
import re
import shutil
import signal
import time

import pytest

from podnet.kernel import netns
from podnet.routing.bgp import BgpError, Bird, render_config
from tests.conftest import sh

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(not shutil.which("bird"), reason="bird (BIRD 2) is not installed")]

N = 3
HOLD = 9  # render_config's hold time


def node_ip(i):
    return "192.168.210.%d" % (10 + i)


def pod_cidr(i):
    return "10.246.%d.0/24" % i


def pod_ip(i):
    return "10.246.%d.10" % i


class Cluster:
    def __init__(self, namespaces, tmp_path):
        self.namespaces = namespaces
        self.switch = namespaces.new("sw")
        sh(self.switch, "ip", "link", "add", "br0", "type", "bridge")
        sh(self.switch, "ip", "link", "set", "br0", "up")
        self.nodes, self.pods, self.birds = {}, {}, {}
        for i in range(1, N + 1):
            node, pod = namespaces.new("n%d" % i), namespaces.new("p%d" % i)
            self.nodes[i], self.pods[i] = node, pod
            sh(self.switch, "ip", "link", "add", "port%d" % i, "type", "veth", "peer", "name", "eth0", "netns", node)
            sh(self.switch, "ip", "link", "set", "port%d" % i, "master", "br0", "up")
            sh(node, "ip", "addr", "add", node_ip(i) + "/24", "dev", "eth0")
            sh(node, "ip", "link", "set", "eth0", "up")
            sh(node, "ip", "link", "add", "cni0", "type", "bridge")
            sh(node, "ip", "addr", "add", "10.246.%d.1/24" % i, "dev", "cni0")
            sh(node, "ip", "link", "set", "cni0", "up")
            sh(node, "sysctl", "-qw", "net.ipv4.ip_forward=1")  # this node namespace only
            sh(node, "ip", "link", "add", "veth0", "type", "veth", "peer", "name", "eth0", "netns", pod)
            sh(node, "ip", "link", "set", "veth0", "master", "cni0", "up")
            sh(pod, "ip", "addr", "add", pod_ip(i) + "/24", "dev", "eth0")
            sh(pod, "ip", "link", "set", "eth0", "up")
            sh(pod, "ip", "route", "add", "default", "via", "10.246.%d.1" % i)
            self.birds[i] = Bird(namespaces.path(node), str(tmp_path / ("bird%d" % i)))

    def config(self, i, peers=None, **kw):
        peers = [j for j in range(1, N + 1) if j != i] if peers is None else peers
        return render_config("node%d" % i, node_ip(i), pod_cidr(i), [("node%d" % j, node_ip(j)) for j in peers], **kw)

    def bird_routes(self, i):
        """{prefix: line} of the `proto bird` routes in node i's kernel."""
        out = sh(self.nodes[i], "ip", "-4", "route", "show").stdout
        return {line.split()[0]: line for line in out.splitlines() if " proto bird " in line + " "}

    def has_routes_to(self, i, others):
        routes = self.bird_routes(i)
        return all(pod_cidr(j) in routes and ("via %s " % node_ip(j)) in routes[pod_cidr(j)] + " " for j in others)

    def established(self, i, peers):
        states = {s["peer"]: s["state"] for s in self.birds[i].sessions()}
        return all(states.get("node%d" % j) == "Established" for j in peers)

    def ping(self, src, dst):
        return sh(self.pods[src], "ping", "-c", "1", "-W", "2", pod_ip(dst), check=False).returncode == 0

    def stop_all(self):
        errors = []
        for bird in self.birds.values():
            try:
                bird.stop()
            except Exception as e:  # keep stopping the others
                errors.append(e)
        # belt and braces: nothing of ours may outlive the namespaces
        netns.kill_processes_in(list(self.nodes.values()))
        if errors:
            raise errors[0]


def wait(what, fn, timeout=10.0):
    start = time.time()
    last = None
    while time.time() - start < timeout:
        last = fn()
        if last:
            return time.time() - start
        time.sleep(0.1)
    raise AssertionError("timed out after %.0f s waiting for %s (last: %r)" % (timeout, what, last))


@pytest.fixture
def cluster(namespaces, tmp_path):
    c = Cluster(namespaces, tmp_path)
    try:
        yield c
    finally:
        c.stop_all()


def _root_forwarding():
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        return f.read().strip()


def start_mesh(cluster):
    t0 = time.time()
    for i in range(1, N + 1):
        assert cluster.birds[i].ensure(cluster.config(i)) == "started"
        assert cluster.birds[i].running
    for i in range(1, N + 1):
        others = [j for j in range(1, N + 1) if j != i]
        wait("node%d routes to %s" % (i, others), lambda i=i, others=others: cluster.has_routes_to(i, others))
    return time.time() - t0


def test_full_mesh_converges_routes_are_proto_bird_and_pods_reach_each_other(cluster):
    forwarding = _root_forwarding()
    took = start_mesh(cluster)
    print("\nBGP full mesh of %d nodes converged in %.2f s" % (N, took))
    for i in range(1, N + 1):
        others = [j for j in range(1, N + 1) if j != i]
        wait("node%d sessions up" % i, lambda i=i, others=others: cluster.established(i, others))
        sessions = cluster.birds[i].sessions()
        assert sorted(s["name"] for s in sessions) == sorted("peer_node%d" % j for j in others)
        assert all(s["address"] == node_ip(int(s["peer"][-1])) and s["since"] for s in sessions)
        routes = cluster.bird_routes(i)
        # exactly the other nodes' blocks: our own blackhole never reaches the kernel
        assert sorted(routes) == sorted(pod_cidr(j) for j in others), routes
        for j in others:
            assert re.search(r"via %s dev eth0 proto bird" % re.escape(node_ip(j)), routes[pod_cidr(j)])
        assert pod_cidr(i) in cluster.birds[i].routes()
    assert cluster.ping(1, 3) and cluster.ping(3, 2) and cluster.ping(2, 1)
    assert _root_forwarding() == forwarding


def test_route_reflector_converges_with_originator_next_hops(cluster):
    rr = node_ip(1)
    assert cluster.birds[1].ensure(cluster.config(1, route_reflector=True)) == "started"
    for i in (2, 3):
        conf = cluster.config(i, reflector_ips=[rr])
        assert "192.168.210.1%d" % (5 - i) not in conf  # clients do not peer with each other
        assert cluster.birds[i].ensure(conf) == "started"
    took = 0.0
    for i in range(1, N + 1):
        others = [j for j in range(1, N + 1) if j != i]
        took = max(took, wait("node%d routes" % i, lambda i=i, others=others: cluster.has_routes_to(i, others)))
    print("\nBGP route reflector topology converged in %.2f s" % took)
    wait("reflector sessions", lambda: cluster.established(1, [2, 3]))
    for i in (2, 3):
        assert [s["name"] for s in cluster.birds[i].sessions()] == ["peer_node1"]
    assert cluster.ping(2, 3) and cluster.ping(3, 2) and cluster.ping(1, 2)


def test_reload_without_a_peer_removes_its_routes(cluster):
    start_mesh(cluster)
    pid = cluster.birds[1]._pid()
    for i in (1, 2):
        assert cluster.birds[i].ensure(cluster.config(i, peers=[1, 2][: i - 1] + [1, 2][i:])) == "reloaded"
    for i in (1, 2):
        wait("node3 routes gone from node%d" % i, lambda i=i: pod_cidr(3) not in cluster.bird_routes(i))
        assert [s["peer"] for s in cluster.birds[i].sessions()] == ["node%d" % (3 - i)]
    assert cluster.birds[1]._pid() == pid  # reloaded in place, not restarted
    assert cluster.has_routes_to(1, [2]) and cluster.has_routes_to(2, [1])
    assert not cluster.ping(1, 3)
    # and node3 comes back with a reload too
    for i in (1, 2):
        assert cluster.birds[i].ensure(cluster.config(i)) == "reloaded"
    wait("node3 routes back", lambda: cluster.has_routes_to(1, [3]) and cluster.has_routes_to(2, [3]))


def test_stop_withdraws_the_nodes_routes_from_the_others(cluster):
    start_mesh(cluster)
    t0 = time.time()
    cluster.birds[3].stop()
    assert not cluster.birds[3].running
    for i in (1, 2):
        wait("node3 routes gone from node%d" % i, lambda i=i: pod_cidr(3) not in cluster.bird_routes(i), timeout=HOLD)
    print("\nstopped BIRD's routes withdrawn in %.2f s" % (time.time() - t0))
    assert cluster.bird_routes(3) == {}  # it cleaned its own kernel up too
    assert not os.path.exists(cluster.birds[3].ctl) and not os.path.exists(cluster.birds[3].pidfile)
    cluster.birds[3].stop()  # idempotent
    assert cluster.birds[3].ensure(cluster.config(3)) == "started"
    wait("node3 back", lambda: cluster.has_routes_to(1, [3]) and cluster.has_routes_to(3, [1, 2]))


def test_a_node_lost_from_the_network_expires_after_the_hold_time(cluster):
    start_mesh(cluster)
    t0 = time.time()
    sh(cluster.switch, "ip", "link", "set", "port3", "down")  # pull node3's cable
    for i in (1, 2):
        wait(
            "node3 routes expire on node%d" % i, lambda i=i: pod_cidr(3) not in cluster.bird_routes(i), timeout=HOLD + 3
        )
    took = time.time() - t0
    print("\nlost node's routes expired in %.2f s (hold time %d s)" % (took, HOLD))
    assert took > 2  # it was the hold timer, not a notification
    sh(cluster.switch, "ip", "link", "set", "port3", "up")
    wait("node3 back", lambda: cluster.has_routes_to(1, [3]) and cluster.has_routes_to(2, [3]), timeout=20)


def test_ensure_is_idempotent_and_a_bad_config_leaves_the_daemon_alone(cluster):
    start_mesh(cluster)
    bird = cluster.birds[1]
    pid = bird._pid()
    with open(bird.conf) as f:
        before = f.read()
    assert bird.ensure(cluster.config(1)) == "unchanged"
    with pytest.raises(BgpError, match="Hold time"):
        bird.ensure(cluster.config(1).replace("hold time 9;", "hold time 1;"))
    with pytest.raises(BgpError, match="syntax error"):
        bird.ensure(cluster.config(1) + "protocol nonsense {\n")
    assert bird.running and bird._pid() == pid
    with open(bird.conf) as f:
        assert f.read() == before
    assert bird.ensure(cluster.config(1)) == "unchanged"
    assert cluster.established(1, [2, 3]) and cluster.has_routes_to(1, [2, 3])
    assert os.path.exists(os.path.join(bird.state_dir, "bird.log"))


def test_a_hung_daemon_is_killed_by_pid_and_its_routes_flushed(cluster):
    start_mesh(cluster)
    bird = cluster.birds[2]
    pid = bird._pid()
    os.kill(pid, signal.SIGSTOP)  # hung: ignores SIGTERM until it is too late
    try:
        bird.stop(timeout=0.5)
    finally:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
    assert not bird.running
    assert cluster.bird_routes(2) == {}  # a killed BIRD leaves routes; stop() flushed them
    wait("node2 routes expire on node1", lambda: pod_cidr(2) not in cluster.bird_routes(1), timeout=HOLD + 3)
