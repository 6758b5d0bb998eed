"""Cluster DNS on the real kernel.

First the server alone, in namespaces the test creates: a sqlite store in a
temp dir, `python -m podnet.dns serve` in one namespace, a static upstream
(the same server with --static records) in another, queried with dig.
Then a 2-node lab, driven through the `podnet` command, where pods resolve
through the kube-dns Service 10.96.0.10 with dig, nslookup and glibc, as
users do.
"""

import json
import os
import signal
import subprocess
import sys

import pytest

from tests.conftest import sh
from tests.helpers import wait_for
from tests.kernel.test_lab import Lab, leftovers

pytestmark = pytest.mark.kernel

SERVER, UPSTREAM = "10.53.7.2", "10.53.7.3"


class Proc:
    """A server started in a namespace, stopped by the PID we started."""

    def __init__(self, ns, argv, log, env=None):
        self.log = log
        with open(log, "wb") as out:
            self.p = subprocess.Popen(
                ["nsenter", "--net=/run/netns/" + ns, "--"] + argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
            )

    def serving(self, workers=1):
        if self.p.poll() is not None:
            raise AssertionError("server exited: %s" % open(self.log).read())
        return open(self.log).read().count(" serving ") >= workers

    def stop(self):
        if self.p.poll() is None:
            os.killpg(self.p.pid, signal.SIGTERM)
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait()


@pytest.fixture
def net(namespaces):
    """Namespace `dns` (10.53.7.2, the server and the client) and `up`
    (10.53.7.3, the upstream), joined by a veth pair."""
    dns_ns, up = namespaces.new("dns"), namespaces.new("up")
    sh(None, "ip", "-n", dns_ns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", up)
    for ns, ip in ((dns_ns, SERVER), (up, UPSTREAM)):
        sh(None, "ip", "-n", ns, "addr", "add", ip + "/24", "dev", "eth0")
        sh(None, "ip", "-n", ns, "link", "set", "eth0", "up")
        sh(None, "ip", "-n", ns, "link", "set", "lo", "up")
    return dns_ns, up


@pytest.fixture
def cluster(net, tmp_path):
    """An API server, the static upstream and the cluster DNS server reading
    the API (the server also listens on 127.0.0.1 inside the DNS's namespace)."""
    from tests.apiserver import ApiServer

    dns_ns, up = net
    api = ApiServer(tmp_path / "api", netns=[dns_ns])
    zone = tmp_path / "internet.zone"
    zone.write_text(". SOA ns. host. 1 2 3 4 60\nexample.com. 60 A 192.0.2.80\n")
    procs, objects = [], None
    try:
        objects = api.cluster()
        objects.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})
        # the upstream answers one query per system call pair, the cluster DNS
        # in batches (recvmmsg): forwarding tests go through both loops
        procs.append(
            Proc(
                up,
                [
                    sys.executable,
                    "-m",
                    "podnet.dns",
                    "serve",
                    "--static",
                    str(zone),
                    "--listen",
                    UPSTREAM,
                    "--workers",
                    "1",
                ],
                str(tmp_path / "up.log"),
                env=dict(os.environ, PODNET_DNS_NO_MMSG="1"),
            )
        )
        procs.append(
            Proc(
                dns_ns,
                [
                    sys.executable,
                    "-m",
                    "podnet.dns",
                    "serve",
                    "--kubeconfig",
                    api.token_kubeconfig("system:serviceaccount:kube-system:coredns"),
                    "--listen",
                    SERVER,
                    "--upstream",
                    UPSTREAM,
                    "--workers",
                    "2",
                ],
                str(tmp_path / "dns.log"),
            )
        )
        wait_for("the upstream", procs[0].serving)
        wait_for("both workers", lambda: procs[1].serving(2))
        yield objects, dns_ns, procs
    finally:
        for p in procs:
            p.stop()
        if objects is not None:
            objects.stop.set()
        api.stop()


def dig(ns, *args):
    # no check: a timeout (exit 9) is an answer a test may wait through
    return sh(ns, "dig", "@" + SERVER, "+time=2", "+tries=2", *args, check=False).stdout


def short(ns, *args):
    return sorted(dig(ns, "+short", *args).split())


def status(ns, *args):
    out = dig(ns, *args)
    return out.split("status: ", 1)[1].split(",", 1)[0] if "status: " in out else out


def service(name, **spec):
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "shop"}, "spec": spec}


def test_answers_follow_the_store(cluster):
    objects, ns, _ = cluster
    assert status(ns, "web.shop.svc.cluster.local") == "NXDOMAIN"
    svc, _ = objects.apply(service("web", ports=[{"name": "http", "port": 80}]))
    ip = svc["spec"]["clusterIP"]
    wait_for("web to resolve", lambda: short(ns, "web.shop.svc.cluster.local") == [ip], timeout=10)
    assert short(ns, "SRV", "_http._tcp.web.shop.svc.cluster.local") == [
        "0",
        "100",
        "80",
        "web.shop.svc.cluster.local.",
    ]
    assert short(ns, "-x", ip) == ["web.shop.svc.cluster.local."]
    assert status(ns, "AAAA", "web.shop.svc.cluster.local") == "NOERROR"  # NODATA
    objects.delete("Service", "shop", "web")
    wait_for("web to stop resolving", lambda: status(ns, "web.shop.svc.cluster.local") == "NXDOMAIN", timeout=10)


def test_other_names_are_forwarded_and_cached(cluster):
    _, ns, procs = cluster
    assert short(ns, "example.com") == ["192.0.2.80"]
    assert status(ns, "nosuch.example.com") == "NXDOMAIN"
    assert short(ns, "+tcp", "example.com") == ["192.0.2.80"]
    # as glibc asks (no EDNS): cached, per worker; each dig has a new source
    # port, so 20 of them reach both SO_REUSEPORT workers (all but surely)
    for _ in range(20):
        assert short(ns, "+noedns", "example.com") == ["192.0.2.80"]
    procs[0].stop()  # the upstream goes away: the cached answer is still served
    assert short(ns, "+noedns", "example.com") == ["192.0.2.80"]
    assert status(ns, "+time=8", "+tries=1", "other.example.net") == "SERVFAIL"


def test_a_large_headless_service_is_truncated_over_udp_and_served_over_tcp(cluster):
    objects, ns, _ = cluster
    objects.apply(service("big", clusterIP="None"))
    objects.apply(
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {"name": "big-1", "namespace": "shop", "labels": {"kubernetes.io/service-name": "big"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.244.3.%d" % i]} for i in range(1, 121)],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        }
    )
    wait_for("big to resolve", lambda: status(ns, "+tcp", "big.shop.svc.cluster.local") == "NOERROR", timeout=10)
    udp = dig(ns, "+ignore", "+noedns", "big.shop.svc.cluster.local")
    assert " tc" in udp.split("flags:", 1)[1].split(";", 1)[0]
    assert len(short(ns, "big.shop.svc.cluster.local")) == 120  # dig retries over TCP itself
    assert len(short(ns, "+tcp", "SRV", "_http._tcp.big.shop.svc.cluster.local")) == 4 * 120


# ---- the lab ------------------------------------------------------------------------

MANIFEST = """
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Namespace
metadata: {name: other}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: web, image: agnhost, args: [netexec, --http-port=8080], ports: [{name: http, containerPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: db-0, namespace: shop, labels: {app: db}}
spec:
  hostname: db-0
  subdomain: db
  containers: [{name: db, image: agnhost, args: [pause]}]
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{name: pg, port: 5432}]
---
apiVersion: v1
kind: Service
metadata: {name: ext, namespace: shop}
spec: {type: ExternalName, externalName: example.com}
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: other}
spec:
  ports: [{port: 443}]
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: shop}
spec:
  containers: [{name: c, image: agnhost, args: [pause]}]
---
apiVersion: v1
kind: Pod
metadata: {name: plain, namespace: shop}
spec:
  dnsPolicy: Default
  containers: [{name: c, image: agnhost, args: [pause]}]
---
apiVersion: v1
kind: Pod
metadata: {name: custom, namespace: shop}
spec:
  dnsPolicy: None
  dnsConfig:
    nameservers: [10.96.0.10]
    searches: [other.svc.cluster.local]
    options: [{name: ndots, value: "2"}]
  containers: [{name: c, image: agnhost, args: [pause]}]
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("labs"))
    lab = Lab("dn%d" % (os.getpid() % 100000), root)
    try:
        lab.run(
            "lab", "up", "--name", lab.name, "--nodes", "2", "-f", "-", "--timeout", "90", input=MANIFEST, timeout=150
        )
        yield lab
    finally:
        lab.run("lab", "down", "--name", lab.name, check=False)
        assert leftovers(lab.name, root) == []


def in_pod(lab, pod, *argv, check=True):
    return lab.run("exec", "-n", "shop", pod, "--", *argv, check=check)


def pod_dig(lab, pod, *args):
    return in_pod(lab, pod, "dig", "+time=2", "+tries=2", *args, check=False).stdout


def pod_short(lab, pod, *args):
    return sorted(pod_dig(lab, pod, "+short", *args).split())


def pod_status(lab, pod, *args):
    out = pod_dig(lab, pod, *args)
    return out.split("status: ", 1)[1].split(",", 1)[0] if "status: " in out else out


def svc_ip(lab, ns, name):
    return json.loads(lab.run("get", "svc", name, "-n", ns, "-o", "json").stdout)["spec"]["clusterIP"]


@pytest.fixture(scope="module")
def dns_ready(lab):
    """kube-dns answers through its Service (needs the Services proxy)."""
    wait_for(
        "kube-dns through 10.96.0.10",
        lambda: "10.96.0.1" in pod_dig(lab, "client", "+short", "kubernetes.default.svc.cluster.local"),
        timeout=60,
    )
    return lab


def test_every_pod_gets_a_resolv_conf_by_its_dns_policy(lab):
    conf = in_pod(lab, "client", "cat", "/etc/resolv.conf").stdout.splitlines()
    assert "nameserver 10.96.0.10" in conf and "options ndots:5" in conf
    assert "search shop.svc.cluster.local svc.cluster.local cluster.local" in conf
    assert "nameserver 192.168.200.100" in in_pod(lab, "plain", "cat", "/etc/resolv.conf").stdout  # the node's
    custom = in_pod(lab, "custom", "cat", "/etc/resolv.conf").stdout.splitlines()
    assert "search other.svc.cluster.local" in custom and "options ndots:2" in custom
    # the host's own file is untouched
    assert "podnet" not in open("/etc/resolv.conf").read()


def test_services_resolve_by_short_name_namespace_and_fqdn(dns_ready):
    lab = dns_ready
    web = svc_ip(lab, "shop", "web")
    assert pod_short(lab, "client", "+search", "web") == [web]
    assert pod_short(lab, "client", "+search", "web.shop") == [web]
    assert pod_short(lab, "client", "web.shop.svc.cluster.local") == [web]
    assert pod_short(lab, "client", "+search", "api.other") == [svc_ip(lab, "other", "api")]
    assert pod_short(lab, "client", "+search", "kubernetes.default") == ["10.96.0.1"]
    assert pod_short(lab, "custom", "+search", "api") == [svc_ip(lab, "other", "api")]
    # glibc through the search path, then HTTP through the Service: what `curl http://web` does
    code = "import urllib.request as u; print(u.urlopen('http://web/hostname', timeout=5).read().decode())"
    assert in_pod(lab, "client", "python3", "-c", code).stdout.strip().startswith("web-")
    out = in_pod(lab, "client", "nslookup", "web").stdout
    assert "web.shop.svc.cluster.local" in out and web in out


def test_every_record_kind_from_a_pod(dns_ready):
    lab = dns_ready
    db_ip = json.loads(lab.run("get", "pod", "db-0", "-n", "shop", "-o", "json").stdout)["status"]["podIP"]
    assert pod_short(lab, "client", "db.shop.svc.cluster.local") == [db_ip]
    assert pod_short(lab, "client", "db-0.db.shop.svc.cluster.local") == [db_ip]
    assert pod_short(lab, "client", "SRV", "_pg._tcp.db.shop.svc.cluster.local") == sorted(
        ["0", "100", "5432", "db-0.db.shop.svc.cluster.local."]
    )
    assert pod_short(lab, "client", "SRV", "_http._tcp.web.shop.svc.cluster.local") == sorted(
        ["0", "100", "80", "web.shop.svc.cluster.local."]
    )
    assert pod_short(lab, "client", "-x", svc_ip(lab, "shop", "web")) == ["web.shop.svc.cluster.local."]
    assert pod_short(lab, "client", "-x", db_ip) == ["db-0.db.shop.svc.cluster.local."]
    assert pod_short(lab, "client", "TXT", "dns-version.cluster.local") == ['"1.1.0"']
    assert pod_short(lab, "client", "ext.shop.svc.cluster.local") == ["192.168.200.100", "example.com."]
    assert pod_status(lab, "client", "nosuch.shop.svc.cluster.local") == "NXDOMAIN"
    assert "SOA" in pod_dig(lab, "client", "nosuch.shop.svc.cluster.local")
    out = in_pod(lab, "client", "nslookup", "-type=SRV", "_pg._tcp.db.shop.svc.cluster.local").stdout
    assert "db-0.db.shop.svc.cluster.local" in out


def test_external_names_are_forwarded_to_the_internet(dns_ready):
    lab = dns_ready
    assert pod_short(lab, "client", "example.com") == ["192.168.200.100"]
    assert pod_short(lab, "client", "+search", "www.example.com") == ["192.168.200.100", "example.com."]
    assert pod_status(lab, "client", "nosuch.example.org") == "NXDOMAIN"
    code = "import socket; print(socket.gethostbyname('example.com'))"
    assert in_pod(lab, "client", "python3", "-c", code).stdout.strip() == "192.168.200.100"
    # dnsPolicy Default asks the node's resolver: the internet, which has no cluster names
    assert pod_short(lab, "plain", "example.com") == ["192.168.200.100"]
    assert pod_status(lab, "plain", "web.shop.svc.cluster.local") == "NXDOMAIN"


def test_a_new_service_resolves_and_a_deleted_one_stops(dns_ready):
    lab = dns_ready
    lab.run(
        "apply",
        "-f",
        "-",
        input="apiVersion: v1\nkind: Service\nmetadata: {name: late, namespace: shop}\nspec: {ports: [{port: 80}]}\n",
    )
    ip = svc_ip(lab, "shop", "late")
    wait_for("late to resolve", lambda: pod_short(lab, "client", "late.shop.svc.cluster.local") == [ip], timeout=10)
    lab.run("delete", "svc", "late", "-n", "shop")
    wait_for("late to go", lambda: pod_status(lab, "client", "late.shop.svc.cluster.local") == "NXDOMAIN", timeout=10)


def test_a_large_headless_service_over_tcp(dns_ready):
    lab = dns_ready
    docs = [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "big", "namespace": "shop"},
            "spec": {"clusterIP": "None", "ports": [{"name": "http", "port": 8080}]},
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {"name": "big-1", "namespace": "shop", "labels": {"kubernetes.io/service-name": "big"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.244.9.%d" % i]} for i in range(1, 121)],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        },
    ]
    lab.run("apply", "-f", "-", input="\n---\n".join(json.dumps(d) for d in docs))
    try:
        wait_for(
            "big over TCP",
            lambda: len(pod_short(lab, "client", "+tcp", "big.shop.svc.cluster.local")) == 120,
            timeout=10,
        )
        udp = pod_dig(lab, "client", "+ignore", "+noedns", "big.shop.svc.cluster.local")
        assert " tc" in udp.split("flags:", 1)[1].split(";", 1)[0]
        assert len(pod_short(lab, "client", "big.shop.svc.cluster.local")) == 120  # dig falls back to TCP
    finally:
        lab.run("delete", "-f", "-", input="\n---\n".join(json.dumps(d) for d in docs), check=False)


def test_names_resolve_with_a_policy_that_denies_all_egress_but_dns(dns_ready):
    """Needs NetworkPolicy (issue 6) in the agents."""
    lab = dns_ready
    policy = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: dns-only, namespace: shop}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress:
  - ports: [{port: 53, protocol: UDP}, {port: 53, protocol: TCP}]
"""
    lab.run("apply", "-f", "-", input=policy)
    try:
        code = "import urllib.request as u; u.urlopen('http://web/hostname', timeout=2)"
        wait_for(
            "HTTP to be denied",
            lambda: in_pod(lab, "client", "python3", "-c", code, check=False).returncode,
            timeout=20,
        )
        assert pod_short(lab, "client", "+search", "web") == [svc_ip(lab, "shop", "web")]
        assert pod_short(lab, "client", "example.com") == ["192.168.200.100"]
    finally:
        lab.run("delete", "netpol", "dns-only", "-n", "shop", check=False)
