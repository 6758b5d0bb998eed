"""Docker's network modes on a 1-node lab, driven through the `podnet` command:
what `ip addr`, `ip route` and a connection attempt see inside a container
in each mode, -p from the external host (TCP and UDP, the client's own
address seen by the container), container:NAME sharing localhost, name
resolution on a user-defined network (and not on the default bridge),
isolation between networks, clear errors that change nothing, and rm (and
lab down) leaving nothing behind."""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.kernel

PY = sys.executable
NODE_IP = "192.168.200.11"
EXT_IP = "192.168.200.100"


class Lab:
    def __init__(self, name, state_root):
        self.name = name
        self.root = state_root
        self.env = dict(os.environ, PODNET_STATE_ROOT=state_root, PODNET_LAB=name)

    def run(self, *args, check=True, timeout=120):
        res = subprocess.run(
            [PY, "-m", "podnet.cli.main", *args], capture_output=True, text=True, env=self.env, timeout=timeout
        )
        if check and res.returncode != 0:
            raise AssertionError("podnet %s -> %d\n%s%s" % (" ".join(args), res.returncode, res.stdout, res.stderr))
        return res

    def fail(self, *args):
        res = self.run(*args, check=False)
        assert res.returncode != 0, "podnet %s succeeded: %s" % (" ".join(args), res.stdout)
        return res.stderr

    def container(self, *args):
        """`podnet run --rm ... -- CMD` in the foreground -> CompletedProcess."""
        return self.run("run", "--rm", *args, check=False)

    def inspect(self, name):
        return json.loads(self.run("inspect", name).stdout)[0]

    def node(self, *argv):
        return self.run("lab", "exec", "node1", "--", *argv, check=False)

    def external(self, *argv):
        return self.run("lab", "exec", "external", "--", *argv, check=False)

    def netns_names(self):
        return sorted(n for n in os.listdir("/run/netns") if n.startswith("pn-%s-" % self.name))


def netexec(http=8080, udp=8081):
    return [PY, "-m", "podnet.workload", "netexec", "--http-port", str(http), "--udp-port", str(udp)]


def connect(target, timeout=2, protocol="tcp"):
    return [PY, "-m", "podnet.workload", "connect", target, "--timeout", str(timeout), "--protocol", protocol]


def udp_ask(ip, port, what="clientip"):
    return [
        PY,
        "-c",
        "import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5); "
        "s.sendto(b'%s', ('%s', %d)); print(s.recv(200).decode())" % (what, ip, port),
    ]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("labs"))
    lab = Lab("dk%d" % (os.getpid() % 100000), root)
    server = None
    try:
        lab.run("lab", "up", "--name", lab.name, "--nodes", "1", "--timeout", "90", timeout=150)
        # the lab's own pods (the kube-dns addon) settle first: their veths and
        # cni0 are not what these tests look at
        import time

        deadline = time.time() + 60
        while time.time() < deadline:
            pods = json.loads(lab.run("get", "pods", "-A", "-o", "json").stdout)["items"]
            if all(
                any(c["type"] == "Ready" and c["status"] == "True" for c in p.get("status", {}).get("conditions", []))
                for p in pods
            ):
                break
            time.sleep(0.2)
        # a server on the external host ("the internet") to see whose address arrives there
        server = subprocess.Popen(
            ["nsenter", "--net=/run/netns/pn-%s-ext" % lab.name, "--", *netexec(80, 81)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        lab.server = server
        yield lab
    finally:
        if server is not None and server.poll() is None:
            server.kill()  # by the PID we started
            server.wait()
        lab.run("lab", "down", "--name", lab.name, check=False)
        left = [n for n in os.listdir("/run/netns") if n.startswith("pn-%s-" % lab.name)]
        assert left == [] and not os.path.exists(os.path.join(root, lab.name))


def wait_http(lab, url, where="external"):
    import time

    deadline = time.time() + 20
    while time.time() < deadline:
        res = (lab.external if where == "external" else lab.node)("curl", "-s", "-m", "2", url)
        if res.returncode == 0 and res.stdout:
            return res.stdout
        time.sleep(0.2)
    raise AssertionError("%s did not answer" % url)


# ---- bridge ------------------------------------------------------------------------


def test_bridge_mode_addr_route_and_masquerade(lab):
    addr = lab.container("--", "ip", "-4", "-o", "addr")
    assert addr.returncode == 0, addr.stderr
    lines = addr.stdout.splitlines()
    assert [ln.split()[1] for ln in lines] == ["lo", "eth0"]
    assert " 172.17." in lines[1] and "/16" in lines[1]
    route = lab.container("--", "ip", "route").stdout
    assert "default via 172.17.0.1 dev eth0" in route
    assert "172.17.0.0/16 dev eth0" in route
    wait_http(lab, "http://%s:80/healthz" % EXT_IP, where="node")
    # the outside sees the node's address: masqueraded, as Docker's bridge does
    seen = lab.container("--", "curl", "-s", "-m", "5", "http://%s:80/clientip" % EXT_IP)
    assert seen.returncode == 0 and seen.stdout.startswith(NODE_IP + ":"), seen


def test_publish_tcp_and_udp_from_external_keeps_client_address(lab):
    lab.run("run", "-d", "--name", "web", "-p", "8080:8080", "-p", "8081:8081/udp", "--", *netexec())
    try:
        out = wait_http(lab, "http://%s:8080/clientip" % NODE_IP)
        assert out.startswith(EXT_IP + ":"), out  # DNAT only: the container sees the real client
        udp = lab.external(*udp_ask(NODE_IP, 8081))
        assert udp.returncode == 0 and udp.stdout.startswith(EXT_IP + ":"), udp
        doc = lab.inspect("web")
        assert doc["HostConfig"]["PortBindings"] == {
            "8080/tcp": [{"HostIp": "", "HostPort": "8080"}],
            "8081/udp": [{"HostIp": "", "HostPort": "8081"}],
        }
        assert doc["NetworkSettings"]["SandboxKey"].startswith("/run/netns/pn-%s-d-" % lab.name)
        assert doc["NetworkSettings"]["Gateway"] == "172.17.0.1"
        ifaces = {i["ifname"]: i for i in doc["NetworkSettings"]["Interfaces"]}
        assert sorted(ifaces) == ["eth0", "lo"]
        assert any(a["local"] == doc["NetworkSettings"]["IPAddress"] for a in ifaces["eth0"]["addr_info"])
        # the same host port again: a clear error, and nothing created
        before, names = lab.netns_names(), lab.run("ps", "-a", "-q").stdout
        err = lab.fail("run", "-d", "--name", "web2", "-p", "8080:80", "--", "sleep", "30")
        assert "8080/tcp" in err and "already allocated" in err and "web" in err
        assert lab.netns_names() == before and lab.run("ps", "-a", "-q").stdout == names
        # the default bridge reaches others by IP, not by name (no embedded DNS there)
        ip = doc["NetworkSettings"]["IPAddress"]
        assert lab.container("--", *connect("%s:8080" % ip)).returncode == 0
        assert lab.container("--", "getent", "hosts", "web").returncode != 0
        # stop: the container exits, its record stays; ps -a shows it
        assert lab.run("stop", "web").stdout.strip() == "web"
        assert "web" not in lab.run("ps", "-q").stdout.split()
        assert "Exited (0)" in lab.run("ps", "-a").stdout
    finally:
        lab.run("rm", "-f", "web", check=False)
    assert lab.external("curl", "-s", "-m", "2", "http://%s:8080/" % NODE_IP).returncode != 0


# ---- host, none, container: ---------------------------------------------------------


def test_host_mode_shares_the_node_stack(lab):
    addr = lab.container("--network", "host", "--", "ip", "-4", "-o", "addr", "show", "eth0")
    assert " %s/24 " % NODE_IP in addr.stdout, addr

    # the same table; docker0's carrier may come or go between the two reads
    # (a container of another test leaving it), which only flips "linkdown"
    def routes(out):
        return out.replace(" linkdown", "")

    assert routes(lab.container("--network", "host", "--", "ip", "route").stdout) == routes(
        lab.node("ip", "route").stdout
    )
    lab.run("run", "-d", "--name", "hostweb", "--network", "host", "--", *netexec(9090, 9091))
    try:
        assert wait_http(lab, "http://%s:9090/hostname" % NODE_IP)  # the node's own address and port
        clash = lab.container("--network", "host", "--", *netexec(9090, 9092))
        assert clash.returncode != 0 and "in use" in (clash.stdout + clash.stderr).lower()
        assert "conflicting options" in lab.fail("run", "--network", "host", "-p", "1:1", "--", "true")
    finally:
        lab.run("rm", "-f", "hostweb", check=False)


def test_none_mode_has_only_loopback(lab):
    addr = lab.container("--network", "none", "--", "ip", "-o", "addr")
    assert [ln.split()[1] for ln in addr.stdout.splitlines()] == ["lo", "lo"]  # 127.0.0.1 and ::1
    assert lab.container("--network", "none", "--", "ip", "route").stdout.strip() == ""
    res = lab.container("--network", "none", "--", *connect("%s:80" % EXT_IP))
    assert res.returncode == 1 and "unreachable" in (res.stdout + res.stderr).lower()


def test_container_mode_shares_interfaces_and_localhost(lab):
    lab.run("run", "-d", "--name", "first", "--", *netexec(7070, 7071))
    try:
        mine = lab.inspect("first")["NetworkSettings"]["IPAddress"]
        addr = lab.container("--network", "container:first", "--", "ip", "-4", "-o", "addr", "show", "eth0")
        assert " %s/16 " % mine in addr.stdout, addr
        got = lab.container(
            "--network", "container:first", "--", "curl", "-s", "-m", "5", "http://127.0.0.1:7070/hostname"
        )
        assert got.returncode == 0 and got.stdout == "first"
        lab.run("run", "-d", "--name", "second", "--network", "container:first", "--", "sleep", "60")
        assert "shares its network namespace with second" in lab.fail("rm", "-f", "first")
        assert lab.run("exec", "second", "--", "hostname").stdout.strip() == "first"
    finally:
        lab.run("rm", "-f", "second", check=False)
        lab.run("rm", "-f", "first", check=False)
    assert "no such container" in lab.fail("run", "--network", "container:nosuch", "--", "true")


# ---- user-defined networks ------------------------------------------------------------


def test_user_networks_resolve_names_and_are_isolated(lab):
    lab.run("network", "create", "red")
    lab.run("network", "create", "blue", "--subnet", "10.50.0.0/24")
    try:
        assert "overlaps network red" in lab.fail("network", "create", "pink", "--subnet", "172.18.1.0/24")
        assert "overlaps the lab underlay" in lab.fail("network", "create", "pink", "--subnet", "192.168.0.0/16")
        nets = lab.run("network", "ls").stdout
        assert "pnd-red" in nets and "10.50.0.0/24" in nets
        lab.run("run", "-d", "--name", "r1", "--network", "red", "--", *netexec())
        lab.run("run", "-d", "--name", "b1", "--network", "blue", "--", *netexec())
        r1, b1 = lab.inspect("r1")["NetworkSettings"], lab.inspect("b1")["NetworkSettings"]
        assert r1["IPAddress"].startswith("172.18.") and b1["IPAddress"].startswith("10.50.0.")
        # on red: r1 by name (the embedded DNS at red's gateway), not b1 of blue
        res = lab.container("--network", "red", "--", "getent", "hosts", "r1")
        assert res.returncode == 0 and res.stdout.split()[0] == r1["IPAddress"], res
        assert lab.container("--network", "red", "--", "getent", "hosts", "b1").returncode == 2  # not found
        assert (
            lab.container("--network", "red", "--", "cat", "/etc/resolv.conf").stdout.count("nameserver 172.18.0.1")
            == 1
        )
        assert lab.container("--network", "red", "--", *connect("r1:8080")).returncode == 0
        # red and blue are isolated; both still reach the outside
        cross = lab.container("--network", "red", "--", *connect("%s:8080" % b1["IPAddress"]))
        assert cross.returncode == 1 and "TIMEOUT" in cross.stdout + cross.stderr
        cross = lab.container("--", *connect("%s:8080" % r1["IPAddress"]))  # from the default bridge too
        assert cross.returncode == 1 and "TIMEOUT" in cross.stdout + cross.stderr
        assert lab.container("--network", "blue", "--", *connect("%s:80" % EXT_IP)).returncode == 0
        assert "active endpoints" in lab.fail("network", "rm", "red")
        assert lab.run("exec", "r1", "--", "cat", "/etc/resolv.conf").stdout.startswith("# written by podnet")
    finally:
        lab.run("rm", "-f", "r1", "b1", check=False)
        lab.run("network", "rm", "red", "blue", check=False)


def test_rm_leaves_nothing_behind(lab):
    def links():
        return sorted(ln.split()[0].split("@")[0] for ln in lab.node("ip", "-br", "link").stdout.splitlines())

    before = sorted(set(links()) | {"docker0"})  # docker0 stays once made, as Docker's does
    lab.run("network", "create", "tmpnet")
    lab.run("run", "-d", "--name", "gone", "--network", "tmpnet", "-p", "6060:6060", "--", *netexec(6060, 6061))
    lab.run("run", "-d", "--name", "gone2", "-p", "6062:6062/udp", "--", "sleep", "60")
    doc = lab.inspect("gone")
    pids = [doc["State"]["Pid"], lab.inspect("gone2")["State"]["Pid"]]
    assert "cannot remove container gone" in lab.fail("rm", "gone")
    lab.run("rm", "-f", "gone", "gone2")
    lab.run("network", "rm", "tmpnet")
    assert lab.run("ps", "-a", "-q").stdout == ""
    assert [n for n in lab.netns_names() if "-d-" in n] == []
    assert links() == before  # no bridge of tmpnet, no veth left
    assert "6060" not in lab.node("nft", "list", "table", "inet", "podnet-portmap").stdout
    assert "6062" not in lab.node("nft", "list", "table", "inet", "podnet-portmap").stdout
    assert lab.node("nft", "list", "table", "inet", "podnet-docker").returncode != 0
    assert "elements" not in lab.node("nft", "list", "table", "inet", "podnet-bridge").stdout
    docker = os.path.join(lab.root, lab.name, "docker")
    assert os.listdir(os.path.join(docker, "cni-cache", "results")) == []
    assert os.listdir(os.path.join(docker, "containers")) == [] and os.listdir(os.path.join(docker, "run")) == []
    assert sorted(os.listdir(os.path.join(docker, "ipam", "node1", "bridge"))) == ["last_reserved_ip.0", "lock"]
    assert not os.path.exists(os.path.join(docker, "ipam", "node1", "tmpnet"))
    for pid in pids:
        assert not os.path.exists("/proc/%d" % pid) or open("/proc/%d/stat" % pid).read().split(") ")[1][0] == "Z"


def test_lab_down_stops_containers(tmp_path):
    """A second, throwaway lab: running containers, a shim, a DNS server; lab down removes them all."""
    lab = Lab("dq%d" % (os.getpid() % 100000), str(tmp_path))
    try:
        lab.run("lab", "up", "--name", lab.name, "--nodes", "1", "--timeout", "90", timeout=150)
        lab.run("network", "create", "n1")
        lab.run("run", "-d", "--name", "a", "--network", "n1", "--", "sleep", "300")
        lab.run("run", "-d", "--name", "h", "--network", "host", "--", "sleep", "300")
        pids = [lab.inspect(n)["State"]["Pid"] for n in ("a", "h")]
        store = os.path.join(str(tmp_path), lab.name, "docker")
        shims = [json.load(open(os.path.join(store, "containers", n + ".json")))["shim"]["pid"] for n in ("a", "h")]
        dns = json.load(open(os.path.join(store, "networks", "node1", "n1.json")))["dnsServer"]["pid"]
    finally:
        lab.run("lab", "down", "--name", lab.name, check=False)
    assert [n for n in os.listdir("/run/netns") if n.startswith("pn-%s-" % lab.name)] == []
    for pid in pids + shims + [dns]:
        assert not os.path.exists("/proc/%d" % pid) or open("/proc/%d/stat" % pid).read().split(") ")[1][0] == "Z"
