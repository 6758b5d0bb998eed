"""Authorization against a real lab, through the real kubectl: a node's
credential may not change another node (nothing changes), nor the status of
a pod bound elsewhere; a read-only user can read once bound to `view` and
cannot write; the default policy is served as RBAC objects; 403s speak
kube-apiserver's words."""

import json
import os
import subprocess
import sys

import pytest
import yaml

from tests.kernel.test_lab import Lab, leftovers, ready

pytestmark = pytest.mark.kernel
KUBECTL = "/usr/bin/kubectl"
PODS = "\n---\n".join(
    "apiVersion: v1\nkind: Pod\nmetadata: {name: p%d}\nspec:\n  nodeName: node%d\n"
    "  containers:\n  - name: c\n    image: registry.k8s.io/e2e-test-images/agnhost:2.45\n"
    "    args: [netexec, --http-port=8080]\n" % (i, i)
    for i in (1, 2)
)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("labs"))
    lab = Lab("ixa%d" % (os.getpid() % 10000), root)
    lab.root = root
    try:
        lab.run("lab", "up", "--name", lab.name, "--nodes", "2", timeout=150)
        lab.run("apply", "-f", "-", input=PODS)
        lab.wait("pods ready", lambda: all(ready(lab.pod(n)) for n in ("p1", "p2")), timeout=90)
        yield lab
    finally:
        lab.run("lab", "down", "--name", lab.name, check=False)
        assert not leftovers(lab.name, root)


def _kubeconfig(lab, tmp_path, who, token):
    """A kubeconfig for `who` with the lab's server and CA and a bearer token."""
    admin = yaml.safe_load(open(os.path.join(lab.root, lab.name, "kubeconfig")))
    cluster = admin["clusters"][0]
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": who, "user": {"token": token}}],
        "contexts": [{"name": who, "context": {"cluster": cluster["name"], "user": who}}],
        "current-context": who,
    }
    path = tmp_path / ("%s.kubeconfig" % who.replace(":", "-"))
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def _token(lab, user, groups=()):
    code = "from podnet.apiserver.certs import Pki; import sys; print(Pki(sys.argv[1]).token_for(sys.argv[2], %r))" % (
        tuple(groups),
    )
    pki = os.path.join(lab.root, lab.name, "pki")
    return subprocess.run(
        [sys.executable, "-c", code, pki, user], capture_output=True, text=True, check=True, env=lab.env
    ).stdout.strip()


def kubectl(kubeconfig, *args, input=None):
    return subprocess.run(
        [KUBECTL, "--kubeconfig", kubeconfig, *args], capture_output=True, text=True, input=input, timeout=60
    )


def _admin(lab):
    return os.path.join(lab.root, lab.name, "kubeconfig")


def test_node_credential_cannot_change_another_node(lab, tmp_path):
    kc = _kubeconfig(lab, tmp_path, "system:node:node1", _token(lab, "system:node:node1", ("system:nodes",)))
    before = json.loads(kubectl(_admin(lab), "get", "node", "node2", "-o", "json").stdout)
    res = kubectl(kc, "label", "node", "node2", "stolen=yes")
    assert res.returncode != 0
    assert (
        'Error from server (Forbidden): nodes "node2" is forbidden: User "system:node:node1" cannot patch '
        "resource \"nodes\" in API group \"\" at the cluster scope: node 'node1' cannot modify node 'node2'"
    ) in res.stderr
    res = kubectl(kc, "delete", "node", "node2", "--wait=false")
    assert res.returncode != 0 and "Forbidden" in res.stderr
    after = json.loads(kubectl(_admin(lab), "get", "node", "node2", "-o", "json").stdout)
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert "stolen" not in after["metadata"].get("labels", {})
    # its own Node it may change; and it reads what an agent reads
    assert kubectl(kc, "label", "node", "node1", "ixmark=yes").returncode == 0
    assert kubectl(kc, "label", "node", "node1", "ixmark-").returncode == 0
    assert kubectl(kc, "get", "services,endpointslices,networkpolicies", "-A").returncode == 0


def test_node_credential_writes_only_status_of_its_own_pods(lab, tmp_path):
    kc = _kubeconfig(lab, tmp_path, "system:node:node1", _token(lab, "system:node:node1", ("system:nodes",)))
    patch = json.dumps({"status": {"conditions": [{"type": "IxTest", "status": "True"}]}})
    before = json.loads(kubectl(_admin(lab), "get", "pod", "p2", "-o", "json").stdout)
    res = kubectl(kc, "patch", "pod", "p2", "--subresource=status", "--type=merge", "-p", patch)
    assert res.returncode != 0
    assert 'pods "p2" is forbidden: User "system:node:node1" cannot patch resource "pods/status"' in res.stderr
    after = json.loads(kubectl(_admin(lab), "get", "pod", "p2", "-o", "json").stdout)
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    res = kubectl(kc, "label", "pod", "p1", "x=y")  # the spec/metadata of a pod is not the node's to change
    assert res.returncode != 0 and "Forbidden" in res.stderr
    res = kubectl(kc, "create", "namespace", "ix-node-made")
    assert res.returncode != 0 and "Forbidden" in res.stderr


def test_read_only_user(lab, tmp_path):
    kc = _kubeconfig(lab, tmp_path, "alice", _token(lab, "alice"))
    res = kubectl(kc, "get", "pods")
    assert res.returncode != 0
    assert 'pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "default"' in (
        res.stderr
    )
    binding = "ix-alice-view"
    made = kubectl(_admin(lab), "create", "clusterrolebinding", binding, "--clusterrole=view", "--user=alice")
    assert made.returncode == 0, made.stderr
    try:
        lab.wait("alice can read", lambda: kubectl(kc, "get", "pods").returncode == 0, timeout=30)
        assert "p1" in kubectl(kc, "get", "pods", "-o", "name").stdout
        res = kubectl(kc, "delete", "pod", "p1", "--wait=false")
        assert res.returncode != 0
        assert 'User "alice" cannot delete resource "pods" in API group "" in the namespace "default"' in res.stderr
        res = kubectl(kc, "create", "deployment", "ix-nope", "--image=registry.k8s.io/e2e-test-images/agnhost:2.45")
        assert res.returncode != 0
        assert 'User "alice" cannot create resource "deployments" in API group "apps"' in res.stderr
        assert kubectl(kc, "get", "secrets").returncode != 0  # view leaves Secrets out, as kube's does
        assert ready(lab.pod("p1"))
        assert kubectl(_admin(lab), "get", "deployment", "ix-nope").returncode != 0
    finally:
        kubectl(_admin(lab), "delete", "clusterrolebinding", binding)


def test_default_policy_is_served(lab):
    out = kubectl(_admin(lab), "get", "clusterroles", "-o", "json")
    assert out.returncode == 0, out.stderr
    names = {o["metadata"]["name"] for o in json.loads(out.stdout)["items"]}
    assert {"cluster-admin", "view", "system:kube-controller-manager", "system:coredns"} <= names
    out = kubectl(_admin(lab), "get", "clusterrolebinding", "system:coredns", "-o", "json")
    subjects = json.loads(out.stdout)["subjects"]
    assert subjects == [{"kind": "ServiceAccount", "name": "coredns", "namespace": "kube-system", "apiGroup": ""}]
