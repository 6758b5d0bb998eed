"""The `podnet` command as a person uses it: the cnitool workflow and the demo."""

import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from podnet.cli.demo import PREFIX as DEMO
from tests.conftest import sh

pytestmark = pytest.mark.kernel


def podnet(node, *args, check=True):
    res = subprocess.run(
        ["nsenter", "--net=/run/netns/" + node, "--", sys.executable, "-m", "podnet.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check and res.returncode != 0:
        raise AssertionError("podnet %s: %s%s" % (" ".join(args), res.stdout, res.stderr))
    return res


@pytest.fixture(params=["0.4.0"])
def netconf(request, tmp_path, cni_bin, ref_bin):
    conf_dir = tmp_path / "net.d"
    conf_dir.mkdir()
    # the seed article's config, with "type": "podnet" and podnet-ipam
    (conf_dir / "10-mynet.conf").write_text(
        json.dumps(
            {
                "cniVersion": request.param,
                "name": "mynet",
                "type": "podnet",
                "bridge": "pnbr9",
                "isGateway": True,
                "ipMasq": True,
                "ipam": {
                    "type": "podnet-ipam",
                    "subnet": "10.22.0.0/16",
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(tmp_path / "ipam"),
                },
            }
        )
    )
    return [
        "--conf-dir",
        str(conf_dir),
        "--bin-dir",
        "%s:%s" % (cni_bin, ref_bin),
        "--cache-dir",
        str(tmp_path / "cache"),
    ]


def test_cnitool_workflow(node, namespaces, netconf, tmp_path):
    pod = namespaces.new("test-ns")
    out = json.loads(podnet(node, "cni", "add", "mynet", "/var/run/netns/" + pod, *netconf).stdout)
    ip = out["ips"][0]["address"].split("/")[0]
    assert ip in sh(pod, "ip", "addr", "show").stdout
    assert "default via 10.22.0.1" in sh(pod, "ip", "route").stdout
    assert "is as ADD left it" in podnet(node, "cni", "check", "mynet", pod, *netconf).stdout
    cached = os.listdir(tmp_path / "cache" / "results")
    assert len(cached) == 1 and cached[0].startswith("mynet-")
    res = podnet(node, "cni", "add", "mynet", pod, *netconf, check=False)  # same netns again
    assert res.returncode == 1 and "already exists" in res.stderr
    assert "predates STATUS" in podnet(node, "cni", "status", "mynet", *netconf).stdout
    podnet(node, "cni", "del", "mynet", "/var/run/netns/" + pod, *netconf)
    assert "eth0" not in sh(pod, "ip", "-o", "link").stdout
    assert os.listdir(tmp_path / "cache" / "results") == []
    podnet(node, "cni", "del", "mynet", pod, *netconf)  # again: still fine
    res = podnet(node, "cni", "add", "nosuchnet", pod, *netconf, check=False)
    assert res.returncode == 1 and "no network named 'nosuchnet'" in res.stderr


@pytest.mark.parametrize("netconf", ["1.1.0"], indirect=True)
def test_gc_through_the_cli_keeps_cached_attachments(node, namespaces, netconf, tmp_path):
    pods = [namespaces.new("pod"), namespaces.new("pod")]
    for pod in pods:
        podnet(node, "cni", "add", "mynet", pod, *netconf)
    # the runtime lost track of pod 0 (its cache entry is gone, as after a crash)
    cache = tmp_path / "cache" / "results"
    first = [f for f in os.listdir(cache) if json.load(open(cache / f))["netns"].endswith(pods[0])][0]
    os.unlink(cache / first)
    assert "ready" in podnet(node, "cni", "status", "mynet", *netconf).stdout
    assert "kept 1 attachment" in podnet(node, "cni", "gc", "mynet", *netconf).stdout
    files = [f for f in os.listdir(tmp_path / "ipam" / "mynet") if f[0].isdigit()]
    assert len(files) == 1
    podnet(node, "cni", "del", "mynet", pods[1], *netconf)


def test_install_writes_thin_executables(tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "podnet.cli.main", "cni", "install", "--bin-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    paths = res.stdout.split()
    assert [os.path.basename(p) for p in paths] == ["podnet", "podnet-ipam", "podnet-portmap"]
    for p in paths:  # the compiled forwarder, its Python fallback beside it
        assert os.access(p, os.X_OK) and open(p, "rb").read(4) == b"\x7fELF"
        thin = os.path.join(os.path.dirname(p), ".podnet-thin", os.path.basename(p))
        assert os.access(thin, os.X_OK) and open(thin).readline().endswith(" -IS\n")
    ver = subprocess.run(
        [paths[0]], input=b'{"cniVersion": "1.1.0"}', env={"CNI_COMMAND": "VERSION"}, capture_output=True, check=True
    )
    assert json.loads(ver.stdout)["supportedVersions"][-1] == "1.1.0"


def test_the_demo_runs_and_cleans_up():
    res = subprocess.run([sys.executable, "-m", "podnet.cli.main", "demo"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "hello from external, you are 192.0.2.1" in res.stdout  # masqueraded to the node
    assert "hello from pod2, you are 10.22.0.2" in res.stdout  # pod to pod, no NAT
    assert "hello from pod2, you are 192.0.2.2" in res.stdout  # host port, client kept
    assert "addresses still allocated: none" in res.stdout
    assert not [n for n in os.listdir("/run/netns") if n.startswith(DEMO)]


def demo(*args):
    return subprocess.run(
        [sys.executable, "-m", "podnet.cli.main", "demo", *args], capture_output=True, text=True, timeout=300
    )


def netns_names(prefix):
    return sorted(n for n in os.listdir("/run/netns") if n.startswith(prefix)) if os.path.isdir("/run/netns") else []


def lab_hosts(lab):
    """A lab's own namespaces without its pods' (pods come and go: the DNS
    addon's may start after `lab up` returns)."""
    return [n for n in netns_names("pn-%s-" % lab) if not n.startswith("pn-%s-p-" % lab)]


def test_the_demo_and_a_lab_named_demo_coexist(tmp_path):
    """A lab named demo owns every pn-demo-* name; the demo's names are out
    of its reach: the demo runs beside the lab, `lab down` leaves the
    demo's (kept) namespaces alone, and the demo's start-up cleanup removes
    those and nothing of the lab's."""
    from tests.kernel.test_lab import Lab, leftovers, ready

    if netns_names("pn-demo-") or netns_names(DEMO):
        pytest.skip("a lab named demo or a demo is already running on this machine")
    root = str(tmp_path / "labs")
    lab = Lab("demo", root)
    kept = None
    try:
        lab.run("lab", "up", "--name", "demo", "--nodes", "1", "--timeout", "90", timeout=150)
        lab_ns = lab_hosts("demo")
        assert "pn-demo-node1" in lab_ns and "pn-demo-ext" in lab_ns

        res = demo("--keep")  # the demo while the lab is up; its namespaces kept for the lab's down
        out = res.stdout + res.stderr
        kept = out.split("files in ", 1)[1].split()[0] if "files in " in out else None
        assert res.returncode == 0, out
        assert "hello from external, you are 192.0.2.1" in res.stdout
        assert "hello from pod2, you are 192.0.2.2" in res.stdout
        assert netns_names(DEMO) == sorted(DEMO + n for n in ("node", "pod1", "pod2", "ext"))
        assert lab_hosts("demo") == lab_ns  # the lab's untouched
        # and it still works: its node is Ready through its API, its external host in place
        lab.wait("node1 Ready", lambda: [n["metadata"]["name"] for n in lab.get("nodes") if ready(n)] == ["node1"])
        assert "192.168.200.100/" in sh("pn-demo-ext", "ip", "-br", "addr", "show", "eth0").stdout

        lab.run("lab", "down", "--name", "demo")
        assert leftovers("demo", root) == []
        assert len(netns_names(DEMO)) == 4  # the lab's down took none of the demo's

        res = demo()  # removes what an earlier demo left, runs, cleans up
        assert res.returncode == 0, res.stdout + res.stderr
        assert "addresses still allocated: none" in res.stdout
        assert netns_names(DEMO) == []
    finally:
        lab.run("lab", "down", "--name", "demo", check=False)
        for name in netns_names(DEMO):
            subprocess.run(["ip", "netns", "del", name], check=False)
        if kept and kept.startswith(tempfile.gettempdir() + "/podnet-demo-"):
            shutil.rmtree(kept, ignore_errors=True)
    assert leftovers("demo", root) == []
