"""podnet next to the Go reference plugins (containernetworking-plugins in /usr/lib/cni).

1. podnet chained with their portmap and tuning, driven by podnet's libcni runtime:
   the pod gets its address and tuning's changes, a client in another namespace
   reaches a server in the pod through the host port, DEL leaves nothing behind.
2. Their bridge delegating IPAM to podnet-ipam: two pods ping each other.
3. podnet-ipam and their host-local share one dataDir: one round-robin, no
   address handed out twice, each releases what the other allocated; while
   one holds the network's lock (<dataDir>/<net>/lock) the other waits.
4. Every podnet result is accepted by the next Go plugin (ADD, CHECK, DEL) at
   cniVersion 0.4.0 and 1.0.0.
"""

import fcntl
import ipaddress
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT, bridge_conf, sh

pytestmark = pytest.mark.interop

NODE_IP, OUTSIDE_IP = "192.168.77.1", "192.168.77.2"
TUNED_MAC = "c2:00:00:0a:0b:0c"
VERSIONS = ["0.4.0", "1.0.0"]

SERVER = r"""
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(16)
print("ready", flush=True)
while True:
    c, peer = s.accept()
    c.sendall(("hello %s\n" % peer[0]).encode())
    c.close()
"""

CLIENT = r"""
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
print(c.recv(100).decode().strip())
"""


# ---- helpers -----------------------------------------------------------------


@pytest.fixture
def servers(namespaces):
    """Start a TCP server inside a pod netns; every one is stopped by its PID
    (this fixture depends on `namespaces`, so it is torn down first)."""
    procs = []

    def start(pod, port=80):
        p = subprocess.Popen(
            ["nsenter", "--net=/run/netns/" + pod, "--", sys.executable, "-c", SERVER, str(port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append(p)
        line = p.stdout.readline()
        assert line.strip() == "ready", "pod server did not start: %s%s" % (line, p.stderr.read())
        return p

    try:
        yield start
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
            p.stdout.close()
            p.stderr.close()


def connect_outside(namespaces, node):
    """An 'outside' netns wired to the node with a veth pair: OUTSIDE_IP -> NODE_IP."""
    out = namespaces.new("outside")
    sh(out, "ip", "link", "add", "o0", "type", "veth", "peer", "name", "n0", "netns", node)
    sh(out, "ip", "addr", "add", OUTSIDE_IP + "/24", "dev", "o0")
    sh(node, "ip", "addr", "add", NODE_IP + "/24", "dev", "n0")
    for ns, dev in ((out, "o0"), (out, "lo"), (node, "n0"), (node, "lo")):
        sh(ns, "ip", "link", "set", dev, "up")
    return out


def fetch(ns, host, port):
    res = sh(ns, sys.executable, "-c", CLIENT, host, str(port), check=False, timeout=15)
    assert res.returncode == 0, "no answer from %s:%s seen from %s: %s" % (host, port, ns, res.stderr)
    return res.stdout.strip()


def held_ips(data_dir, net):
    """Addresses with a reservation file in <dataDir>/<net>."""
    out = {}
    d = os.path.join(data_dir, net)
    for name in os.listdir(d) if os.path.isdir(d) else []:
        try:
            ip = ipaddress.ip_address(name)
        except ValueError:
            continue
        with open(os.path.join(d, name), "rb") as f:
            out[str(ip)] = f.read()
    return out


def pod_ip(result):
    return result["ips"][0]["address"].split("/")[0]


def link_names(ns):
    return [line.split(":")[1].strip().split("@")[0] for line in sh(ns, "ip", "-o", "link", "show").stdout.splitlines()]


def tuning_conf(tmp_path):
    return {
        "type": "tuning",
        "mac": TUNED_MAC,
        "dataDir": str(tmp_path / "tuning"),
        "sysctl": {"net.ipv4.conf.eth0.rp_filter": "2"},
    }


def assert_tuned(pod):
    assert TUNED_MAC in sh(pod, "ip", "link", "show", "eth0").stdout, "tuning's MAC is not on eth0"
    rp = sh(pod, "cat", "/proc/sys/net/ipv4/conf/eth0/rp_filter").stdout.strip()
    assert rp == "2", "tuning's sysctl is not visible in the pod (rp_filter=%s)" % rp


# ---- 1. podnet + their portmap + their tuning, through libcni ----------------


def test_libcni_chain_with_reference_portmap_and_tuning(
    namespaces, node, cni_bin, ref_bin, servers, data_dir, tmp_path
):
    net, cid = "chainnet", "chain-c1"
    pod = namespaces.new("pod")
    outside = connect_outside(namespaces, node)
    main = bridge_conf(data_dir, name=net, subnet="10.31.0.0/24", bridge="pnbr31", isDefaultGateway=True)
    conflist = {
        "cniVersion": "1.0.0",
        "name": net,
        "plugins": [
            main,
            {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True},
            tuning_conf(tmp_path),
        ],
    }
    conf_dir = tmp_path / "net.d"
    conf_dir.mkdir()
    (conf_dir / "10-chain.conflist").write_text(json.dumps(conflist))

    def cnitool(verb, *extra):
        cmd = [
            "nsenter",
            "--net=/run/netns/" + node,
            "--",
            sys.executable,
            "-m",
            "podnet.cli.main",
            "cni",
            verb,
            net,
            pod,
            "--id",
            cid,
            "--conf-dir",
            str(conf_dir),
            "--bin-dir",
            os.pathsep.join([cni_bin, ref_bin]),
            "--cache-dir",
            str(tmp_path / "cache"),
        ]
        res = subprocess.run(cmd + list(extra), capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert res.returncode == 0, "podnet cni %s failed: %s%s" % (verb, res.stdout, res.stderr)
        return res.stdout

    result = json.loads(cnitool("add", "-p", "8080:80"))
    ip = pod_ip(result)
    assert ip + "/" in sh(pod, "ip", "-4", "addr", "show", "eth0").stdout, "the pod did not get %s" % ip
    assert_tuned(pod)
    eth0 = [i for i in result["interfaces"] if i["name"] == "eth0" and i.get("sandbox")]
    assert eth0 and eth0[0]["mac"] == TUNED_MAC, "tuning did not update podnet's result: %s" % result
    host_veth = [i["name"] for i in result["interfaces"] if i["name"].startswith("pn-")]
    assert host_veth and host_veth[0] in link_names(node)

    servers(pod, 80)
    assert fetch(outside, NODE_IP, 8080) == "hello " + OUTSIDE_IP, "wrong answer through the host port"
    assert cid in sh(node, "iptables-save").stdout, "their portmap's rules do not name the container"

    cnitool("del")
    assert "eth0" not in link_names(pod), "DEL left eth0 in the pod"
    assert host_veth[0] not in link_names(node), "DEL left the host veth on the node"
    rules = sh(node, "iptables-save").stdout
    assert cid not in rules and "CNI-DN-" not in rules, "their portmap left rules for %s:\n%s" % (cid, rules)
    assert held_ips(data_dir, net) == {}, "DEL left IPAM reservations"
    assert not os.listdir(tmp_path / "cache" / "results"), "DEL left the cached result"


# ---- 2. their bridge, podnet-ipam ---------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_reference_bridge_with_podnet_ipam(version, namespaces, plugin, node, data_dir):
    net = "refbr"
    conf = {
        "cniVersion": version,
        "name": net,
        "type": "bridge",
        "bridge": "pnbr32",
        "isGateway": True,
        "ipam": {"type": "podnet-ipam", "dataDir": data_dir, "ranges": [[{"subnet": "10.32.0.0/24"}]]},
    }
    pods, ips = [namespaces.new("pod-a"), namespaces.new("pod-b")], []
    for i, pod in enumerate(pods):
        rc, out, err = plugin("bridge", "ADD", conf, cid="ref-%d" % i, netns=pod)
        assert rc == 0, "their bridge ADD with podnet-ipam failed: %s %s" % (out, err)
        ips.append(pod_ip(out))
        assert ips[-1] + "/" in sh(pod, "ip", "-4", "addr", "show", "eth0").stdout
    assert len(set(ips)) == 2, "podnet-ipam handed out %s twice" % ips[0]
    assert sorted(held_ips(data_dir, net)) == sorted(ips)
    sh(pods[0], "ping", "-c1", "-W2", ips[1])
    sh(pods[1], "ping", "-c1", "-W2", ips[0])
    for i, pod in enumerate(pods):
        rc, out, err = plugin("bridge", "DEL", conf, cid="ref-%d" % i, netns=pod)
        assert rc == 0, "their bridge DEL failed: %s %s" % (out, err)
    assert held_ips(data_dir, net) == {}, "addresses still reserved after DEL"
    assert "veth" not in sh(node, "ip", "-o", "link", "show", "type", "veth").stdout


# ---- 3. podnet-ipam and host-local share one dataDir ---------------------------


def _ipam_conf(kind, data_dir, net="sharednet"):
    return {
        "cniVersion": "1.0.0",
        "name": net,
        "type": kind,
        "ipam": {"type": kind, "dataDir": data_dir, "ranges": [[{"subnet": "10.33.0.0/24"}]]},
    }


def test_podnet_ipam_and_host_local_share_a_data_dir(plugin, node, data_dir):
    kinds = ["podnet-ipam", "host-local"]
    given = {}  # cid -> ip
    for i in range(8):
        kind = kinds[i % 2]
        rc, out, err = plugin(kind, "ADD", _ipam_conf(kind, data_dir), cid="alt-%d" % i, netns=node)
        assert rc == 0, "%s ADD failed: %s %s" % (kind, out, err)
        ip = pod_ip(out)
        assert ip not in given.values(), "%s handed out %s, already given to %s" % (kind, ip, given)
        given["alt-%d" % i] = ip
    # One round-robin: each plugin continues where the other stopped.
    assert list(given.values()) == ["10.33.0.%d" % n for n in range(2, 10)], given
    assert held_ips(data_dir, "sharednet")[given["alt-1"]] == b"alt-1\r\neth0"
    assert held_ips(data_dir, "sharednet")[given["alt-0"]] == b"alt-0\r\neth0"

    # host-local releases what podnet-ipam gave, and the other way round.
    for kind, cid in (("host-local", "alt-0"), ("podnet-ipam", "alt-1")):
        rc, out, err = plugin(kind, "DEL", _ipam_conf(kind, data_dir), cid=cid, netns=node)
        assert rc == 0, "%s DEL of %s failed: %s %s" % (kind, cid, out, err)
        assert given[cid] not in held_ips(data_dir, "sharednet"), "%s did not release %s" % (kind, given[cid])
    # ... and the freed address can be asked for again, by the other plugin.
    for kind, cid, ip in (("podnet-ipam", "again-0", given["alt-0"]), ("host-local", "again-1", given["alt-1"])):
        rc, out, err = plugin(kind, "ADD", _ipam_conf(kind, data_dir), cid=cid, netns=node, args="IP=" + ip)
        assert rc == 0 and pod_ip(out) == ip, "%s could not reuse freed %s: %s %s" % (kind, ip, out, err)
    # A held address is refused to the other plugin.
    for kind, ip in (("podnet-ipam", given["alt-3"]), ("host-local", given["alt-2"])):
        rc, out, err = plugin(kind, "ADD", _ipam_conf(kind, data_dir), cid="thief", netns=node, args="IP=" + ip)
        assert rc != 0, "%s handed out %s, which the other plugin holds" % (kind, ip)

    # Both at once, many times: still never the same address twice.
    procs = [start_ipam(plugin, kinds[i % 2], data_dir, "par-%d" % i, node) for i in range(16)]
    results = []
    for p in procs:  # wait for every one before judging any
        try:
            results.append(finish(p, 60))
        except AssertionError as exc:
            results.append(exc)
    assert not [r for r in results if isinstance(r, Exception)], results
    got = [pod_ip(r) for r in results]
    assert len(set(got)) == len(got), "an address was handed out twice: %s" % sorted(got)
    assert not set(got) & {given[c] for c in given if c not in ("alt-0", "alt-1")}, "a held address was reused"
    assert len(held_ips(data_dir, "sharednet")) == 8 + len(got), "reservations went missing"


def start_ipam(plugin, kind, data_dir, cid, node):
    """Exec an IPAM plugin for ADD without waiting (in the node netns)."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": cid,
        "CNI_IFNAME": "eth0",
        "CNI_NETNS": "/run/netns/" + node,
        "CNI_PATH": os.pathsep.join(plugin.bin_dirs),
    }
    binary = [os.path.join(d, kind) for d in plugin.bin_dirs if os.path.exists(os.path.join(d, kind))][0]
    p = subprocess.Popen(
        ["nsenter", "--net=/run/netns/" + node, "--", binary],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    p.stdin.write(json.dumps(_ipam_conf(kind, data_dir)).encode())
    p.stdin.close()
    return p


def finish(p, timeout):
    """-> the plugin's result; raises subprocess.TimeoutExpired when it is still running."""
    p.wait(timeout)
    out, err = p.stdout.read(), p.stderr.read()
    p.stdout.close()
    p.stderr.close()
    assert p.returncode == 0, "IPAM ADD failed: %s %s" % (out, err)
    return json.loads(out)


@pytest.mark.parametrize("holder", ["host-local", "podnet-ipam"])
def test_a_plugin_waits_while_the_other_holds_the_store_lock(holder, plugin, node, data_dir):
    """While one plugin allocates (holds the network's lock), the other must wait.

    Without that, podnet-ipam's GC can read host-local's reservation file in the
    instant between its O_EXCL create and its write, find no owner in it, delete
    it, and the address is later handed out a second time."""
    from podnet.ipam.store import FileStore

    other = "podnet-ipam" if holder == "host-local" else "host-local"
    store = FileStore("sharednet", data_dir)
    if holder == "host-local":  # exactly what host-local v1.1.1 locks: the file "lock" in the network dir
        fd = os.open(os.path.join(store.dir, "lock"), os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        release = lambda: os.close(fd)  # noqa: E731 - one of two ways to let go, chosen here
    else:  # podnet-ipam's own lock
        ctx = store.lock()
        ctx.__enter__()
        release = lambda: ctx.__exit__(None, None, None)  # noqa: E731 - the other one
    p = None
    try:
        p = start_ipam(plugin, other, data_dir, "racer", node)
        try:
            result = finish(p, 3)
        except subprocess.TimeoutExpired:
            result = None
        assert result is None, "%s allocated %s while %s held the store lock" % (other, result["ips"], holder)
    finally:
        release()
        if p is not None and p.poll() is None:
            try:
                finish(p, 30)  # it may go on once the lock is free
            finally:
                if p.poll() is None:
                    p.kill()
                    p.wait(5)


# ---- 4. every podnet result is accepted by the next Go plugin ------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_go_plugins_accept_podnet_results(version, namespaces, node, plugin, servers, data_dir, tmp_path):
    net, cid = "acceptnet", "accept-c1"
    pod = namespaces.new("pod")
    outside = connect_outside(namespaces, node)
    chain = [
        bridge_conf(data_dir, version, net, "10.34.0.0/24", "pnbr34", isDefaultGateway=True),
        {
            "type": "podnet-portmap",
            "runtimeConfig": {"portMappings": [{"hostPort": 8081, "containerPort": 80, "protocol": "tcp"}]},
        },
        {
            "type": "portmap",
            "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]},
        },
        tuning_conf(tmp_path),
        {"type": "bandwidth", "ingressRate": 100000000, "ingressBurst": 1000000},
    ]

    def call(p, command, prev):
        conf = dict(p, name=net, cniVersion=version)
        if prev is not None:
            conf["prevResult"] = prev
        return plugin(p["type"], command, conf, cid=cid, netns=pod)

    prev, prev_type = None, None
    for p in chain:
        rc, out, err = call(p, "ADD", prev)
        assert rc == 0, "%s ADD did not accept the %s result of %s: %s %s\nprevResult: %s" % (
            p["type"],
            version,
            prev_type,
            out,
            err,
            json.dumps(prev),
        )
        assert out["cniVersion"] == version, out
        prev, prev_type = out, p["type"]
    assert pod_ip(prev) + "/" in sh(pod, "ip", "-4", "addr", "show", "eth0").stdout
    assert_tuned(pod)
    servers(pod, 80)
    for port in (8080, 8081):  # their portmap and ours, both in front of the same pod
        assert fetch(outside, NODE_IP, port) == "hello " + OUTSIDE_IP

    for p in chain:
        if p["type"] == "portmap":
            continue  # v1.1.1 bug: its CHECK looks for ip6tables rules of an IPv4-only pod (fixed upstream fb5d195f)
        rc, out, err = call(p, "CHECK", prev)
        assert rc == 0, "%s CHECK rejected the chain's result: %s %s" % (p["type"], out, err)
    for p in reversed(chain):
        rc, out, err = call(p, "DEL", prev)
        assert rc == 0, "%s DEL rejected the chain's result: %s %s" % (p["type"], out, err)
    assert "eth0" not in link_names(pod)
    assert held_ips(data_dir, net) == {}
    assert cid not in sh(node, "iptables-save").stdout
