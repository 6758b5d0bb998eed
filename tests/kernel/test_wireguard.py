"""Pod traffic between nodes inside WireGuard (`lab up --encryption
wireguard`): a 3-node lab per routing mode, on the real kernel, with
whichever implementation this machine has (wireguard-go without the module)."""

import base64
import json
import os
import shutil
import stat
import subprocess
import sys
import time

import pytest

from tests.helpers import connect, nsenter, ping, server
from tests.kernel.test_lab import Lab, leftovers, ready
from tests.kernel.test_routing_lab import ECHO, EXTERNAL, HOLD

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(not (shutil.which("wg") and shutil.which("wireguard-go")), reason="wireguard-tools/-go missing"),
]


def _pod(name, node):
    return (
        "apiVersion: v1\nkind: Pod\nmetadata: {name: %s}\nspec:\n  nodeName: %s\n"
        "  containers:\n  - name: netexec\n    image: registry.k8s.io/e2e-test-images/agnhost:2.45\n"
        "    args: [netexec, --http-port=8080]\n    readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}\n"
        % (name, node)
    )


PODS = "\n---\n".join(_pod(*p) for p in (("p1", "node1"), ("p1b", "node1"), ("p2", "node2"), ("p3", "node3")))

# Reads everything a connection sends and answers with the byte count.
SINK = (
    "import socket; srv=socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
    "srv.bind(('0.0.0.0',7200)); srv.listen(1); print('ready',flush=True); c,_=srv.accept(); n=0\n"
    "while True:\n d=c.recv(1<<16)\n if not d: break\n n+=len(d)\nc.sendall(str(n).encode())"
)
SEND = (
    "import socket,sys; s=socket.create_connection((sys.argv[1],7200),timeout=10); "
    "s.sendall(b'x'*int(sys.argv[2])); s.shutdown(1); print(s.recv(100).decode())"
)


@pytest.fixture(scope="module", params=["vxlan", "host-gw", "bgp"])
def lab(request, tmp_path_factory):
    root = str(tmp_path_factory.mktemp("labs"))
    lab = Lab("w%s%d" % (request.param[0], os.getpid() % 10000), root)
    lab.mode = request.param
    lab.root = root
    wg_pids = []
    machine_run_wg = os.path.exists("/run/wireguard")  # the machine's; the lab must not make it
    try:
        lab.run(
            "lab",
            "up",
            "--name",
            lab.name,
            "--nodes",
            "3",
            "--routing",
            request.param,
            "--encryption",
            "wireguard",
            "-f",
            "-",
            "--timeout",
            "90",
            input=PODS,
            timeout=150,
        )
        lab.doc = json.load(open(os.path.join(root, lab.name, "lab.json")))
        lab.ns = {n["name"]: n["netns"] for n in lab.doc["nodes"]}
        lab.keys = {}
        wg_pids += [wg_pid(lab, n) for n in lab.ns]
        yield lab
    finally:
        wg_pids += [p for p in (wg_pid(lab, n) for n in ("node1", "node2", "node3")) if p]
        lab.run("lab", "down", "--name", lab.name, check=False)
        assert leftovers(lab.name, root) == []
        # every wireguard-go the lab ran is gone (lab down finds them in the node namespaces)
        wait_gone = time.time() + 5
        while any(p and alive(p) for p in wg_pids) and time.time() < wait_gone:
            time.sleep(0.1)
        assert not [p for p in wg_pids if p and alive(p)]
        assert os.path.exists("/run/wireguard") == machine_run_wg, "the lab changed the machine's /run/wireguard"


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def node_dir(lab, node):
    return os.path.join(lab.root, lab.name, "nodes", node)


def wg_pid(lab, node):
    try:
        with open(os.path.join(node_dir(lab, node), "wireguard", "wireguard-go.pid")) as f:
            return int(f.read().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None


def pods(lab):
    return {p["metadata"]["name"]: p for p in lab.get("pods")}


def pod_ns(lab, pod):
    from podnet.agent.agent import pod_netns

    return pod_netns(lab.name, pod["metadata"]["uid"])


def ip_of(lab, name):
    return pods(lab)[name]["status"]["podIP"]


def wg_dump(lab, node):
    """{public key: (endpoint, allowed ips, latest handshake, rx, tx)} and the node's own public key."""
    lines = lab.run("lab", "exec", node, "--", "wg", "show", "podnet.wg", "dump").stdout.splitlines()
    peers = {}
    for ln in lines[1:]:
        f = ln.split("\t")
        peers[f[0]] = (f[2], f[3], int(f[4]), int(f[5]), int(f[6]))
    return lines[0].split("\t")[1], peers


def node_key(lab, node):
    n = next(n for n in lab.get("nodes") if n["metadata"]["name"] == node)
    return n["metadata"]["annotations"]["podnet.io/wireguard-public-key"]


def curl(lab, src, dst_ip, timeout=3):
    return lab.run(
        "exec", src, "--", "curl", "-s", "-m", str(timeout), "http://%s:8080/clientip" % dst_ip, check=False
    ).stdout


def send(lab, src, dst, nbytes):
    """nbytes over one TCP connection from pod src to pod dst -> bytes the sink counted."""
    ps = pods(lab)
    sink = subprocess.Popen(
        nsenter(pod_ns(lab, ps[dst])) + [sys.executable, "-c", SINK], stdout=subprocess.PIPE, text=True
    )
    try:
        assert sink.stdout.readline().strip() == "ready"
        out = subprocess.run(
            nsenter(pod_ns(lab, ps[src])) + [sys.executable, "-c", SEND, ps[dst]["status"]["podIP"], str(nbytes)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        return int(out.stdout.strip() or 0)
    finally:
        sink.kill()
        sink.wait()
        sink.stdout.close()


def test_pods_on_different_nodes_talk_through_wireguard(lab):
    ps = pods(lab)
    assert all(ready(p) for p in ps.values())
    # the whole matrix: every pod to every other pod (ping and TCP, no NAT)
    for a in ps:
        for b in ps:
            if a == b:
                continue
            # the first packet to a peer starts its handshake: on a loaded machine
            # that can outlast one ping's 2 s, so the first answer is waited for
            lab.wait("%s pings %s" % (a, b), lambda a=a, b=b: ping(pod_ns(lab, ps[a]), ip_of(lab, b)), 20)
            got = lab.wait("%s's curl to %s" % (a, b), lambda a=a, b=b: curl(lab, a, ip_of(lab, b)), 20)
            assert got.startswith(ip_of(lab, a) + ":"), (a, b, got)  # no NAT
    # every node to every pod and back; the outside sees a pod as its node
    nodes = {n["name"]: n["ip"] for n in lab.doc["nodes"]}
    ext = lab.doc["external"]["netns"]
    for p in ps.values():
        for node, ip in nodes.items():
            assert ping(lab.ns[node], p["status"]["podIP"]), (node, p["metadata"]["name"])
            assert ping(pod_ns(lab, p), ip), (p["metadata"]["name"], node)
    with server(ext, port=9000):
        for p in ps.values():
            assert connect(pod_ns(lab, p), EXTERNAL, 9000) == nodes[p["spec"]["nodeName"]]
    # routes to other nodes' podCIDRs go into the tunnel, in every mode
    cidrs = {n["metadata"]["name"]: n["spec"]["podCIDR"] for n in lab.get("nodes")}
    routes = lab.run("lab", "exec", "node1", "--", "ip", "route").stdout
    for node in ("node2", "node3"):
        assert "%s dev podnet.wg proto 44" % cidrs[node] in routes, routes
    # no plain route to them (bgp: BIRD's stay out of the kernel), and a guard under the /24s
    assert "proto bird" not in routes and "via 192.168.200" not in routes.replace("default via", ""), routes
    assert "unreachable 10.244.0.0/16 proto 45" in routes, routes
    # WireGuard's 60 bytes on the pods' default route; eth0 keeps 1500 for pods on the same node
    assert "mtu 1440" in lab.run("exec", "p1", "--", "ip", "route", "show", "default").stdout
    assert "mtu 1500" in lab.run("exec", "p1", "--", "ip", "link", "show", "eth0").stdout
    # each node: 2 peers (endpoint the node's InternalIP:51820, allowed IPs its podCIDR) with a recent handshake
    ips = {n["name"]: n["ip"] for n in lab.doc["nodes"]}
    for node in ("node1", "node2", "node3"):
        own, peers = wg_dump(lab, node)
        assert own == node_key(lab, node)
        others = [n for n in ips if n != node]
        assert {node_key(lab, n): ("%s:51820" % ips[n], cidrs[n]) for n in others} == {
            k: v[:2] for k, v in peers.items()
        }
        assert all(time.time() - v[2] < 180 for v in peers.values()), peers
    # the counters grow with the traffic: 2 MB from p1 to p2 pass node1's peer node2
    k2 = node_key(lab, "node2")
    before = wg_dump(lab, "node1")[1][k2]
    assert send(lab, "p1", "p2", 2_000_000) == 2_000_000
    after = wg_dump(lab, "node1")[1][k2]
    assert after[4] - before[4] > 2_000_000 and after[3] > before[3]


def test_pods_on_one_node_do_not_use_the_tunnel(lab):
    ps = pods(lab)
    assert ping(pod_ns(lab, ps["p1"]), ip_of(lab, "p1b"))
    assert curl(lab, "p1", ip_of(lab, "p1b")).startswith(ip_of(lab, "p1") + ":")
    tx = lambda: sum(v[4] for v in wg_dump(lab, "node1")[1].values())  # noqa: E731
    before = tx()
    assert send(lab, "p1", "p1b", 2_000_000) == 2_000_000
    assert tx() - before < 100_000  # keepalives at most, not the 2 MB


def test_get_nodes_shows_the_encryption_and_the_key_stays_private(lab):
    rows = lab.run("get", "nodes", "-o", "wide").stdout.splitlines()
    head = rows[0].split()
    assert head[-2:] == ["ENCRYPTION", "ROUTING"]
    for row in rows[1:]:
        assert " wireguard-go node" in row or " kernel node" in row, row
    # each peer's handshake age (the agent publishes the handshake times it reads every 5 s)
    lab.wait(
        "a handshake with every peer in get nodes",
        lambda: all("never" not in r for r in lab.run("get", "nodes", "-o", "wide").stdout.splitlines()[1:]),
        15,
    )
    n1 = next(n for n in lab.get("nodes") if n["metadata"]["name"] == "node1")
    assert n1["metadata"]["annotations"]["podnet.io/wireguard-implementation"] in ("wireguard-go", "kernel")
    path = os.path.join(node_dir(lab, "node1"), "wireguard.key")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    priv = open(path).read().strip()
    assert len(base64.b64decode(priv)) == 32
    assert priv not in json.dumps(n1)


def hold_open(lab, client, server):
    ps = pods(lab)
    srv = subprocess.Popen(
        nsenter(pod_ns(lab, ps[server])) + [sys.executable, "-c", ECHO, "7100"], stdout=subprocess.PIPE, text=True
    )
    assert srv.stdout.readline().strip() == "ready"
    cli = subprocess.Popen(
        nsenter(pod_ns(lab, ps[client])) + [sys.executable, "-c", HOLD, ip_of(lab, server), "7100"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    return srv, cli


def echo(cli, word):
    cli.stdin.write(word + "\n")
    cli.stdin.flush()
    return cli.stdout.readline().strip()


def stop(*procs):
    for p in procs:
        if p:
            p.kill()
            p.wait()
            for f in (p.stdin, p.stdout):
                if f:
                    f.close()


def test_rotating_a_key_keeps_a_connection_and_the_old_key_goes(lab):
    srv, cli = hold_open(lab, "p1", "p2")
    try:
        assert echo(cli, "one") == "echo one"
        old = node_key(lab, "node2")
        lab.run("lab", "rotate-keys", "node2")
        new = node_key(lab, "node2")
        assert new != old
        lab.wait("node1's peer node2 has the new key", lambda: new in wg_dump(lab, "node1")[1], 15)
        assert old not in wg_dump(lab, "node1")[1] and old not in wg_dump(lab, "node3")[1]
        assert echo(cli, "two") == "echo two"  # the same connection
        assert wg_dump(lab, "node2")[0] == new
    finally:
        stop(cli, srv)


def test_a_peer_with_a_wrong_key_passes_nothing_until_the_resync_repairs_it(lab):
    k2, cidr2 = node_key(lab, "node2"), next(n for n in lab.get("nodes") if n["metadata"]["name"] == "node2")
    cidr2 = cidr2["spec"]["podCIDR"]
    wrong = subprocess.run(["wg", "genkey"], capture_output=True, text=True, check=True).stdout
    wrong = subprocess.run(["wg", "pubkey"], input=wrong, capture_output=True, text=True, check=True).stdout.strip()
    ep = "%s:51820" % next(n["ip"] for n in lab.doc["nodes"] if n["name"] == "node2")
    p1, p2 = pods(lab)["p1"], ip_of(lab, "p2")
    for _attempt in range(3):  # the agent's check may repair it between our set and our ping: again
        lab.run(
            "lab", "exec", "node1", "--", "wg", "set", "podnet.wg", "peer", k2, "remove",
            "peer", wrong, "endpoint", ep, "allowed-ips", cidr2,
        )  # fmt: skip
        passed = ping(pod_ns(lab, p1), p2)
        peers = wg_dump(lab, "node1")[1]
        if wrong in peers:  # still the wrong key after the ping: the ping was its test
            assert not passed
            assert peers[wrong][2] == 0  # no handshake with it, ever
            break
    else:
        pytest.fail("the wrong key never stayed long enough to be tried")
    lab.wait(
        "node1's peer node2 repaired", lambda: k2 in (peers := wg_dump(lab, "node1")[1]) and wrong not in peers, 15
    )
    lab.wait("traffic back", lambda: ping(pod_ns(lab, p1), p2), 15)


def test_a_killed_wireguard_go_is_restarted_and_traffic_returns(lab):
    pid = wg_pid(lab, "node2")
    assert pid and alive(pid)
    os.kill(pid, 9)  # by the PID the agent recorded
    t0 = time.time()
    lab.wait("a new wireguard-go on node2", lambda: (p := wg_pid(lab, "node2")) != pid and p and alive(p), 10)
    lab.wait("p1 reaches p2 again", lambda: curl(lab, "p1", ip_of(lab, "p2"), 2).startswith(ip_of(lab, "p1")), 15)
    assert time.time() - t0 < 10  # within the resync (5 s), with room for a loaded machine


def test_an_agent_restart_keeps_wireguard_go_and_the_connection(lab):
    srv, cli = hold_open(lab, "p1", "p2")
    try:
        assert echo(cli, "one") == "echo one"
        pid = wg_pid(lab, "node2")
        key = node_key(lab, "node2")
        procs = json.load(open(os.path.join(lab.root, lab.name, "procs.json")))
        os.kill(procs["agent-node2"]["pid"], 9)
        time.sleep(0.5)
        lab.run("lab", "up", "--name", lab.name)  # restarts the dead agent
        time.sleep(2)  # a few passes
        assert wg_pid(lab, "node2") == pid and alive(pid)  # adopted, not restarted
        assert node_key(lab, "node2") == key
        assert echo(cli, "two") == "echo two"
    finally:
        stop(cli, srv)


def test_a_joining_and_a_leaving_node_update_the_peers(lab):
    lab.run("lab", "add-node", timeout=120)
    key4 = lab.wait(
        "node4's key on its Node",
        lambda: (lambda n: n and node_key(lab, "node4"))(
            [n for n in lab.get("nodes") if n["metadata"]["name"] == "node4"]
        ),
        30,
    )
    lab.wait("node1 has node4 as a peer", lambda: key4 in wg_dump(lab, "node1")[1], 20)
    assert len(wg_dump(lab, "node4")[1]) == 3
    pid4 = wg_pid(lab, "node4")
    lab.run("lab", "remove-node", "node4")
    lab.wait("node4's peer gone from node1", lambda: key4 not in wg_dump(lab, "node1")[1], 20)
    assert len(wg_dump(lab, "node1")[1]) == 2
    lab.wait("node4's wireguard-go gone with it", lambda: not alive(pid4), 5)
