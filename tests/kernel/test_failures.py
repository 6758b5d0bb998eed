"""Bad input gets the right CNI code and changes nothing; concurrency and
crashes never hand out an address twice or leak one past GC."""

import json
import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import bridge_conf, sh
from tests.helpers import snapshot

pytestmark = pytest.mark.kernel


def _cases(data_dir):
    good = bridge_conf(data_dir)
    return [
        ("malformed JSON", b'{"cniVersion": "1.0.0", "name": ', {}, 6),
        ("unsupported cniVersion", dict(good, cniVersion="0.2.0"), {}, 1),
        ("missing CNI_NETNS", good, {"drop": ("CNI_NETNS",)}, 4),
        ("missing CNI_CONTAINERID", good, {"drop": ("CNI_CONTAINERID",)}, 4),
        ("missing CNI_COMMAND", good, {"drop": ("CNI_COMMAND",)}, 4),
        ("container ID with a path", good, {"cid": "../../etc/passwd"}, 4),
        ("bad CIDR", bridge_conf(data_dir, subnet="10.22.0.0/33"), {}, 7),
        ("not a CIDR", bridge_conf(data_dir, subnet="ten.twentytwo"), {}, 7),
        ("bad mtu", dict(good, mtu="big"), {}, 7),
        ("bool field as string", dict(good, ipMasq="yes"), {}, 7),
        ("unknown ipam plugin", dict(good, ipam=dict(good["ipam"], type="nosuch-ipam")), {}, 7),
        ("bad CNI_ARGS IP", good, {"args": "IP=999.1.1.1"}, 4),
        ("requested IP outside the range", good, {"args": "IP=192.168.50.5"}, 4),
        ("netns that does not exist", good, {"netns": "/run/netns/pnt-does-not-exist"}, 3),
    ]


def test_bad_inputs_get_the_right_code_and_change_nothing(plugin, namespaces, data_dir):
    pod = namespaces.new("pod")
    # a first healthy pod so the bridge, masq table and IPAM dir already exist
    other = namespaces.new("pod")
    assert plugin("podnet", "ADD", bridge_conf(data_dir, ipMasq=True), cid="ok", netns=other)[0] == 0
    for label, conf, kw, code in _cases(data_dir):
        before = snapshot(plugin.node, [pod, other], data_dir)
        kw = dict(kw)
        netns = kw.pop("netns", pod)
        rc, out, err = plugin("podnet", "ADD", conf, netns=netns, **kw)
        assert rc != 0 and out is not None, label
        assert out["code"] == code, "%s: expected code %d, got %s" % (label, code, out)
        assert out["msg"], label
        assert snapshot(plugin.node, [pod, other], data_dir) == before, "%s changed state" % label
    assert plugin("podnet", "DEL", bridge_conf(data_dir, ipMasq=True), cid="ok", netns=other)[0] == 0


def test_existing_interface_and_exhausted_range_leave_nothing(plugin, namespaces, data_dir):
    conf = bridge_conf(data_dir, subnet="10.22.0.0/30", ipMasq=True)  # exactly one usable address
    pods = [namespaces.new("pod"), namespaces.new("pod")]
    sh(pods[0], "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p")  # no dummy module here
    before = snapshot(plugin.node, pods, data_dir)
    rc, out, _ = plugin("podnet", "ADD", conf, cid="x0", netns=pods[0])
    assert rc == 1 and out["code"] == 102 and "eth0" in out["msg"]
    assert snapshot(plugin.node, pods, data_dir) == before
    assert plugin("podnet", "ADD", conf, cid="x1", netns=pods[1])[0] == 0
    before = snapshot(plugin.node, pods, data_dir)
    rc, out, _ = plugin("podnet", "ADD", conf, cid="x2", netns=pods[0], ifname="net1")
    assert rc == 1 and out["code"] == 100 and "10.22.0.2" in out["details"]
    assert snapshot(plugin.node, pods, data_dir) == before
    assert plugin("podnet", "DEL", conf, cid="x1", netns=pods[1])[0] == 0


def test_a_failure_after_ipam_releases_the_address(plugin, namespaces, data_dir):
    """The bridge name is taken by a non-bridge link: IPAM ran, then the
    bridge step fails; the address must be released and no veth left."""
    sh(plugin.node, "ip", "link", "add", "pnbr0", "type", "veth", "peer", "name", "pnbr0p")
    pod = namespaces.new("pod")
    rc, out, _ = plugin("podnet", "ADD", bridge_conf(data_dir), netns=pod)
    assert rc == 1 and out["code"] == 7 and "not a bridge" in out["msg"]
    assert not [f for f in os.listdir(os.path.join(data_dir, "testnet")) if f[0].isdigit()]
    assert "eth0" not in sh(pod, "ip", "-o", "link").stdout
    assert "pn-" not in sh(plugin.node, "ip", "-o", "link").stdout


def test_100_parallel_adds_get_100_distinct_addresses(plugin, namespaces, data_dir, daemon):
    conf = bridge_conf(data_dir, subnet="10.22.0.0/24", daemonSocket=daemon.sock)
    pods = [namespaces.new("p") for _ in range(100)]

    def add(i):
        return plugin("podnet", "ADD", conf, cid="par%d" % i, netns=pods[i])

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(add, range(100)))
    bad = [(rc, out, err) for rc, out, err in results if rc != 0]
    assert not bad, bad[:3]
    ips = [out["ips"][0]["address"] for _, out, _ in results]
    assert len(set(ips)) == 100
    for i in (0, 57, 99):  # the address really is on the pod's interface
        assert ips[i] in sh(pods[i], "ip", "-4", "-o", "addr", "show", "eth0").stdout
    with ThreadPoolExecutor(16) as pool:
        dels = list(pool.map(lambda i: plugin("podnet", "DEL", conf, cid="par%d" % i, netns=pods[i]), range(100)))
    assert all(rc == 0 for rc, _, _ in dels)
    assert not [f for f in os.listdir(os.path.join(data_dir, "testnet")) if f[0].isdigit()]


def test_100_parallel_ipam_processes_never_share_an_address(plugin, data_dir):
    """podnet-ipam alone, 100 processes at once on one dataDir."""
    conf = {
        "cniVersion": "1.0.0",
        "name": "ipamonly",
        "type": "podnet-ipam",
        "ipam": {"type": "podnet-ipam", "ranges": [[{"subnet": "10.40.0.0/24"}]], "dataDir": data_dir},
    }
    with ThreadPoolExecutor(100) as pool:
        results = list(pool.map(lambda i: plugin("podnet-ipam", "ADD", conf, cid="i%d" % i, netns="/x"), range(100)))
    assert all(rc == 0 for rc, _, _ in results), [r for r in results if r[0]][:2]
    ips = [out["ips"][0]["address"] for _, out, _ in results]
    assert len(set(ips)) == 100


def test_a_plugin_killed_during_add_leaves_nothing_gc_does_not_remove(cni_bin, plugin, namespaces, data_dir):
    """Kill in-process ADDs at many points of their run; after GC (and the
    runtime removing the netns) nothing of theirs remains."""
    conf = bridge_conf(data_dir, version="1.1.0", ipMasq=True)
    env_base = {"PATH": os.environ["PATH"], "CNI_COMMAND": "ADD", "CNI_IFNAME": "eth0", "CNI_PATH": cni_bin}
    # how long one ADD takes, to spread the kills over it
    probe = namespaces.new("probe")
    t0 = time.monotonic()
    assert plugin("podnet", "ADD", conf, cid="probe", netns=probe)[0] == 0
    duration = time.monotonic() - t0
    assert plugin("podnet", "DEL", conf, cid="probe", netns=probe)[0] == 0
    killed = []
    for k, frac in enumerate((0.5, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98, 1.0)):
        pod = namespaces.new("kill")
        env = dict(env_base, CNI_CONTAINERID="k%d" % k, CNI_NETNS="/run/netns/" + pod)
        proc = subprocess.Popen(
            ["nsenter", "--net=/run/netns/" + plugin.node, "--", os.path.join(cni_bin, "podnet")],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        proc.stdin.write(json.dumps(conf).encode())
        proc.stdin.close()
        time.sleep(duration * frac)
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the group we started: nsenter and the plugin
        except ProcessLookupError:
            pass
        proc.wait(10)
        killed.append(pod)
    rc, out, err = plugin(
        "podnet", "GC", dict(conf, **{"cni.dev/valid-attachments": []}), drop=("CNI_CONTAINERID", "CNI_IFNAME")
    )
    assert rc == 0, (out, err)
    # GC alone, with the dead sandboxes still there, removed every host veth
    assert "pn-" not in sh(plugin.node, "ip", "-o", "link").stdout
    for pod in killed:
        namespaces.remove(pod)  # what the runtime does with a dead sandbox
    assert not [f for f in os.listdir(os.path.join(data_dir, "testnet")) if f != "lock" and not f.startswith("last_")]
    assert "comment" not in sh(plugin.node, "nft", "list", "map", "inet", "podnet-bridge", "masq4", check=False).stdout
