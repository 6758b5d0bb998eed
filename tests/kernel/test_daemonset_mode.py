"""Acceptance, DaemonSet mode: one host runs its agent exactly as
deploy/kubernetes/03-daemonset.yaml would -- the command and arguments read
from that file, the in-cluster service-account token and CA files,
KUBERNETES_SERVICE_HOST/_PORT, kubelet role off -- with the identity bound
to deploy/kubernetes's ClusterRole and nothing else. The test plays kubelet:
it creates each pod's netns, calls CNI ADD through libcni with the K8S_POD_*
args as containerd does, and writes the pod's status. The pod is then
reached through a Service and held by a NetworkPolicy. Every verb the agent
needs has to be in the ClusterRole: without one, the agent cannot program
the Service or the policy and this test fails (and its log names the 403).

Hosts are tests/kernel/hosts_sim.py's (netns + private mount namespace).
"""

from __future__ import annotations

import json
import os
import sys
import time

import pytest
import yaml

from tests.kernel.hosts_sim import Underlay

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces)")
DATA = "/var/lib/podnet-server"
ADMIN = DATA + "/admin.kubeconfig"
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
SA_USER = "system:serviceaccount:kube-system:podnet-agent"
DEPLOY = os.path.abspath("deploy/kubernetes")
PY = sys.executable

# CNI ADD as containerd does it: libcni over the conflist the agent wrote.
CNI_ADD = r"""
import json, sys
from podnet.cni import libcni
net = libcni.find_network("podnet", "/etc/cni/net.d")
rt = libcni.Runtime(bin_dirs=["/opt/cni/bin"], cache_dir="/var/lib/cni")
ns, name, uid, cid = sys.argv[1:5]
args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=%s;K8S_POD_NAME=%s;K8S_POD_INFRA_CONTAINER_ID=%s;K8S_POD_UID=%s" % (
    ns, name, cid, uid)
print(json.dumps(rt.add(net, cid, "/run/netns/" + cid, "eth0", args)))
"""
SERVE = "import http.server as h; h.test(HandlerClass=h.SimpleHTTPRequestHandler, port=8080, bind='0.0.0.0')"


def wait(what, fn, timeout=90.0):  # type: ignore[no-untyped-def]
    deadline = time.time() + timeout
    while True:
        got = fn()
        if got:
            return got
        assert time.time() < deadline, "no %s within %d s" % (what, timeout)
        time.sleep(0.5)


def daemonset_command(node: str, ip: str) -> str:
    """The agent's command line from the DaemonSet, with the downward-API env filled in."""
    with open(os.path.join(DEPLOY, "03-daemonset.yaml")) as f:
        ds = yaml.safe_load(f)
    c = ds["spec"]["template"]["spec"]["containers"][0]
    assert ds["spec"]["template"]["spec"]["hostNetwork"] is True
    argv = [a.replace("$(NODE_NAME)", node).replace("$(NODE_IP)", ip) for a in c["command"] + c.get("args", [])]
    assert "--no-kubelet" in argv and "--in-cluster" in argv, argv
    return " ".join(argv)


def test_agent_as_the_daemonset_runs_it(tmp_path):
    net = Underlay("ixd", "192.168.213")
    try:
        net.create()
        srv, h1 = net.host("srv", 1), net.host("h1", 11)
        kubectl = "kubectl --kubeconfig %s " % ADMIN
        srv.start(
            "podnet server --store sqlite:%s/store.db --bind %s:6443" % (DATA, srv.ip), str(tmp_path / "server.log")
        )
        wait("API server", lambda: srv.run("curl -sk https://%s:6443/healthz" % srv.ip, check=False).stdout == "ok")
        wait("admin kubeconfig", lambda: srv.run(kubectl + "get ns default", check=False).returncode == 0)
        # the operator's manifests, checked in full, applied but for the DaemonSet the test plays
        r = srv.run(kubectl + "apply --dry-run=server -f " + DEPLOY)
        assert r.stdout.count("(server dry run)") == 4, r.stdout
        for f in ("00-serviceaccount.yaml", "01-clusterrole.yaml", "02-clusterrolebinding.yaml"):
            srv.run(kubectl + "apply -f %s/%s" % (DEPLOY, f))

        # the service account's token and the CA where the kubelet mounts them in the agent's pod
        token = srv.run(
            '%s -c \'from podnet.apiserver.certs import Pki; print(Pki("%s/pki").token_for("%s", '
            '("system:serviceaccounts", "system:serviceaccounts:kube-system")))\'' % (PY, DATA, SA_USER)
        ).stdout.strip()
        ca = srv.run("cat %s/pki/ca.crt" % DATA).stdout
        (tmp_path / "token").write_text(token)
        (tmp_path / "ca.crt").write_text(ca)
        h1.run("mkdir -p %s && cp %s/token %s/ca.crt %s/" % (SA_DIR, tmp_path, tmp_path, SA_DIR))
        agent = daemonset_command("h1", h1.ip)
        h1.start(
            "KUBERNETES_SERVICE_HOST=%s KUBERNETES_SERVICE_PORT=6443 %s" % (srv.ip, agent), str(tmp_path / "agent.log")
        )
        wait("node h1 Ready", lambda: " Ready" in srv.run(kubectl + "get node h1", check=False).stdout)
        wait("the conflist", lambda: h1.run("test -s /etc/cni/net.d/10-podnet.conflist", check=False).returncode == 0)
        assert h1.run("test -x /opt/cni/bin/podnet", check=False).returncode == 0

        # play kubelet for two pods: the objects, their netns, CNI ADD, their status
        for name, app in (("dsweb", "dsweb"), ("dsclient", "dsclient")):
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "labels": {"app": app}},
                "spec": {
                    "nodeName": "h1",
                    "containers": [{"name": "c", "image": "registry.k8s.io/e2e-test-images/agnhost:2.45"}],
                },
            }
            (tmp_path / (name + ".json")).write_text(json.dumps(pod))
            srv.run(kubectl + "apply -f %s/%s.json" % (tmp_path, name))
        ips = {}
        for name in ("dsweb", "dsclient"):
            uid = json.loads(srv.run(kubectl + "get pod %s -o json" % name).stdout)["metadata"]["uid"]
            cid = "ix" + uid.replace("-", "")[:12]
            h1.run("ip netns add %s" % cid)
            (tmp_path / "cni_add.py").write_text(CNI_ADD)
            res = json.loads(
                h1.run("cd /work/main && %s %s/cni_add.py default %s %s %s" % (PY, tmp_path, name, uid, cid)).stdout
            )
            ip = res["ips"][0]["address"].split("/")[0]
            ips[name] = (ip, cid)
            status = {
                "status": {
                    "phase": "Running",
                    "podIP": ip,
                    "podIPs": [{"ip": ip}],
                    "hostIP": h1.ip,
                    "conditions": [{"type": "Ready", "status": "True"}, {"type": "ContainersReady", "status": "True"}],
                }
            }
            srv.run(kubectl + "patch pod %s --subresource=status --type=merge -p '%s'" % (name, json.dumps(status)))
        web_ip, web_ns = ips["dsweb"]
        _, client_ns = ips["dsclient"]
        h1.start('ip netns exec %s %s -c "%s"' % (web_ns, PY, SERVE), str(tmp_path / "web.log"))

        svc = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "dsweb"},
            "spec": {"selector": {"app": "dsweb"}, "ports": [{"port": 80, "targetPort": 8080}]},
        }
        (tmp_path / "svc.json").write_text(json.dumps(svc))
        srv.run(kubectl + "apply -f %s/svc.json" % tmp_path)
        cluster_ip = json.loads(srv.run(kubectl + "get svc dsweb -o json").stdout)["spec"]["clusterIP"]

        def fetch():  # type: ignore[no-untyped-def]
            r = h1.run(
                "ip netns exec %s curl -s -o /dev/null -w %%{http_code} -m 3 http://%s/" % (client_ns, cluster_ip),
                check=False,
            )
            return r.stdout == "200"

        wait("the pod through its Service", fetch, 60)

        pol = {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "dsweb-from-nobody"},
            "spec": {"podSelector": {"matchLabels": {"app": "dsweb"}}, "policyTypes": ["Ingress"]},
        }
        (tmp_path / "pol.json").write_text(json.dumps(pol))
        srv.run(kubectl + "apply -f %s/pol.json" % tmp_path)
        wait("the policy to hold the pod", lambda: not fetch(), 60)
        srv.run(kubectl + "delete networkpolicy dsweb-from-nobody")
        wait("the pod reachable again", fetch, 60)
        log = (tmp_path / "agent.log").read_text()
        assert "forbidden" not in log.lower(), log[-3000:]
    finally:
        net.destroy()
