"""The flow log and its metrics on a 2-node lab: an allowed TCP connection
through a Service, one denied by a named NetworkPolicy, one refused for want
of endpoints and a UDP exchange each show up once, on the right node, with
names, verdict, reason and bytes; the policy's drop counter equals the
probes dropped; a pod's byte counters match an iperf3 transfer."""

import json
import os
import re
import subprocess
import sys

import pytest

from podnet.agent.agent import pod_netns
from podnet.kernel import flowsrc
from tests.helpers import nsenter
from tests.kernel.test_lab import EXAMPLE, Lab, leftovers, ready

pytestmark = pytest.mark.kernel

EXTRA = """
apiVersion: v1
kind: Pod
metadata: {name: prober, labels: {app: prober}}
spec:
  nodeName: node2
  containers:
  - {name: c, image: registry.k8s.io/e2e-test-images/agnhost:2.45, args: [pause]}
---
apiVersion: v1
kind: Pod
metadata: {name: secret, labels: {app: secret}}
spec:
  nodeName: node1
  containers:
  - name: c
    image: registry.k8s.io/e2e-test-images/agnhost:2.45
    args: [netexec, --http-port=8080, --udp-port=8081]
    readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-secret}
spec:
  podSelector: {matchLabels: {app: secret}}
  policyTypes: [Ingress]
---
apiVersion: v1
kind: Service
metadata: {name: nothing}
spec:
  selector: {app: none}
  ports: [{port: 80, targetPort: 8080}]
"""

# tcp HOST PORT N: send an N-byte HTTP request, read the answer, print "ok LOCALPORT"
# udp HOST PORT: send "hostname" (8 bytes), print the answer
# probe HOST PORT: a connect with a 1 s timeout, print "open LOCALPORT" or "closed LOCALPORT ERR"
PROBE = r"""
import socket, sys
kind, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
if kind == "tcp":
    s = socket.create_connection((host, port), timeout=5)
    path = "/echo?msg=" + "x" * 100
    req = ("GET %s HTTP/1.0\r\nHost: w\r\n" % path).encode()
    req += b"X-Pad: " + b"p" * (int(sys.argv[4]) - len(req) - 11) + b"\r\n\r\n"
    assert len(req) == int(sys.argv[4]), len(req)
    s.sendall(req)
    while s.recv(4096):
        pass
    print("ok", s.getsockname()[1])
elif kind == "udp":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5)
    s.sendto(b"hostname", (host, port))
    print("ok", s.getsockname()[1], s.recvfrom(200)[0].decode())
else:
    s = socket.socket(); s.settimeout(1)
    s.bind(("0.0.0.0", 0))
    try:
        s.connect((host, port)); print("open", s.getsockname()[1])
    except OSError as e:
        print("closed", s.getsockname()[1], e)
"""
REQUEST = 1000
DROPPED_PROBES = 3


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("labs"))
    lab = Lab("fl%d" % (os.getpid() % 100000), root)
    try:
        lab.run("lab", "up", "--name", lab.name, "-f", EXAMPLE, "--timeout", "90", timeout=150)
        lab.run("apply", "-f", "-", input=EXTRA)
        lab.wait("prober and secret ready", lambda: all(ready(lab.pod(p)) for p in ("prober", "secret")), 90)
        lab.doc = json.load(open(os.path.join(root, lab.name, "lab.json")))
        yield lab
    finally:
        lab.run("lab", "down", "--name", lab.name, check=False)
        assert leftovers(lab.name, root) == []


def in_pod(lab, pod, *args, timeout=30):
    ns = pod_netns(lab.name, lab.pod(pod)["metadata"]["uid"])
    res = subprocess.run(
        nsenter(ns) + [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=timeout
    )
    assert res.returncode == 0, res.stderr
    return res.stdout.split()


def flows(lab, *args):
    out = lab.run("flows", "-o", "json", *args).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def node_ns(lab, node):
    return next(n["netns"] for n in lab.doc["nodes"] if n["name"] == node)


def metrics(lab, node):
    ip = next(n["ip"] for n in lab.doc["nodes"] if n["name"] == node)
    res = lab.run("lab", "exec", node, "--", "curl", "-sS", "-m", "5", "http://%s:10249/metrics" % ip, check=False)
    return res.stdout if res.returncode == 0 else None  # the waits below ask again


def sample(page, name, **labels):
    for line in page.splitlines():
        m = re.match(r"^%s\{(.*)\} (\S+)$" % re.escape(name), line)
        if m and all('%s="%s"' % kv in m.group(1) for kv in labels.items()):
            return float(m.group(2))
    return 0.0


def test_each_connection_is_one_record_with_names_verdict_reason_and_bytes(lab):
    svc = {s["metadata"]["name"]: s["spec"]["clusterIP"] for s in lab.get("services")}
    secret_ip = lab.pod("secret")["status"]["podIP"]
    prober_ip = lab.pod("prober")["status"]["podIP"]
    web = lab.get("pods", "-l", "app=web")
    web_ip = web[0]["status"]["podIP"]

    ok = in_pod(lab, "prober", "tcp", svc["web"], "80", str(REQUEST))
    tcp_port = int(ok[1])
    udp = in_pod(lab, "prober", "udp", web_ip, "8081")
    assert udp[2] == web[0]["metadata"]["name"]
    udp_port = int(udp[1])
    refused = in_pod(lab, "prober", "probe", svc["nothing"], "80")
    assert refused[0] == "closed" and "refused" in " ".join(refused).lower()
    denied = [in_pod(lab, "prober", "probe", secret_ip, "8080") for _ in range(DROPPED_PROBES)]
    assert all(d[0] == "closed" and "timed out" in " ".join(d) for d in denied)
    # the connections end now (not after TIME_WAIT or the UDP timeout): DESTROY events with counters
    flowsrc.end_entries(node_ns(lab, "node2"), prober_ip)

    def mine():
        return [r for r in flows(lab, "--pod", "default/prober") if r["src"].get("pod") == "prober"]

    def ended(port, proto):
        got = [r for r in mine() if r["src"]["port"] == port and r["proto"] == proto]
        return got if got and all(r["state"] == "ended" for r in got) else None

    tcp = lab.wait("the TCP flow ended", lambda: ended(tcp_port, "tcp"), 30)
    assert len(tcp) == 1
    t = tcp[0]
    assert (
        t["node"] == "node2" and t["verdict"] == "forwarded" and t["service"] == {"namespace": "default", "name": "web"}
    )
    assert t["dst"] == {"ip": svc["web"], "port": 80, "service": "default/web"}
    assert t["endpoint"]["pod"].startswith("web-") and t["endpoint"]["port"] == 8080
    # IP bytes: the request plus 40 to 60 bytes of IPv4 and TCP headers a packet
    pk = t["packets"]["orig"]
    assert REQUEST + 40 * pk <= t["bytes"]["orig"] <= REQUEST + 60 * pk, t

    udp_recs = lab.wait("the UDP flow ended", lambda: ended(udp_port, "udp"), 30)
    assert len(udp_recs) == 1
    u = udp_recs[0]
    assert u["node"] == "node2" and u["dst"]["pod"] == web[0]["metadata"]["name"] and "service" not in u
    assert u["packets"] == {"orig": 1, "reply": 1} and u["bytes"]["orig"] == 8 + 28  # "hostname" + IPv4 + UDP

    rej = [r for r in mine() if r["verdict"] == "rejected" and r["src"]["port"] == int(refused[1])]
    assert len(rej) == 1 and rej[0]["reason"] == "no endpoints" and rej[0]["node"] == "node2"
    assert rej[0]["service"] == {"namespace": "default", "name": "nothing"}

    drops = [r for r in flows(lab, "--verdict", "dropped", "--pod", "secret") if r["src"].get("pod") == "prober"]
    assert sorted(r["src"]["port"] for r in drops) == sorted(int(d[1]) for d in denied)
    assert all(r["node"] == "node1" and r["policies"] == ["default/deny-secret"] for r in drops), drops
    assert all(r["reason"] == "NetworkPolicy ingress default/deny-secret" for r in drops)
    # the denied and refused attempts made no conntrack connection
    assert not [r for r in mine() if r["verdict"] == "forwarded" and r["dst"]["ip"] in (secret_ip, svc["nothing"])]

    page = lab.wait("node1's metrics", lambda: metrics(lab, "node1"), 30)
    drop_count = sample(page, "podnet_flow_drops_total", reason="NetworkPolicy", policy="default/deny-secret")
    assert drop_count == DROPPED_PROBES


def test_a_pods_byte_counters_match_an_iperf3_transfer(lab):
    target = lab.get("pods", "-l", "app=web")[0]
    ns = pod_netns(lab.name, target["metadata"]["uid"])
    prober_ns = pod_netns(lab.name, lab.pod("prober")["metadata"]["uid"])
    prober_ip = lab.pod("prober")["status"]["podIP"]
    before = sum(
        sample(
            lab.wait("%s's metrics" % n, lambda n=n: metrics(lab, n), 30),
            "podnet_flow_pod_bytes_total",
            pod="prober",
            direction="sent",
        )
        for n in ("node1", "node2")
    )
    srv = subprocess.Popen(
        nsenter(ns) + ["iperf3", "-s", "-1", "-p", "5201"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:

        def transfer():  # the server may not listen yet: iperf3 -J then answers {"error": ...}
            out = subprocess.run(
                nsenter(prober_ns) + ["iperf3", "-c", target["status"]["podIP"], "-p", "5201", "-n", "20M", "-J"],
                capture_output=True,
                text=True,
                timeout=60,
            ).stdout
            doc = json.loads(out or "{}")
            return None if doc.get("error") or not doc else doc

        res = lab.wait("an iperf3 transfer", transfer, 60)
    finally:
        srv.kill()  # our own child, by PID
        srv.wait(5)
    # iperf3 -n counts what the client wrote; when the server ends the test it
    # closes the data socket, and a reset drops what was still in flight, so
    # the wire carried at least what the server read and at most what was sent
    sent, received = res["end"]["sum_sent"]["bytes"], res["end"]["sum_received"]["bytes"]
    assert 0.5 * sent < received <= sent, res["end"]
    flowsrc.end_entries(node_ns(lab, "node2"), prober_ip)

    def counted():
        pages = [metrics(lab, n) for n in ("node1", "node2")]
        if None in pages:
            return None
        got = sum(sample(p, "podnet_flow_pod_bytes_total", pod="prober", direction="sent") for p in pages) - before
        seen.append(got)
        return got if got >= received else None

    seen = []

    try:
        got = lab.wait("the transfer counted", counted, 60)
    except AssertionError as exc:
        raise AssertionError("%s: counted %s of %d bytes received" % (exc, seen[-3:], received)) from None
    # IP bytes: the payload plus headers, well under 1% with GRO/TSO segments
    assert received <= got <= sent * 1.01, (got, received, sent)
