"""The real kubectl's typed commands against a real podnet API server.

`kubectl create namespace|deployment|service` encode the object as
Kubernetes protobuf (and do not fall back to JSON on a 415), so these pass
only if the server decodes those bodies (podnet.apiserver.protobuf) into
what the flags asked for. `kubectl run` and `kubectl expose` send JSON; they
are here because they are the other half of the same workflow. Every object
is read back with `kubectl get -o json`, the way a user would check it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.apiserver import ApiServer

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (CI runs as root)"),
    pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed"),
]


class Kubectl:
    def __init__(self, api: ApiServer, cache: Path):
        self.env = dict(os.environ, KUBECONFIG=api.kubeconfig)
        self.cache = str(cache)

    def __call__(self, *args: str) -> str:
        argv = ["kubectl", "--cache-dir", self.cache, *args]
        p = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert p.returncode == 0, "%s failed (%d):\n%s%s" % (" ".join(args), p.returncode, p.stdout, p.stderr)
        return p.stdout

    def get(self, *args: str) -> Any:
        return json.loads(self("get", "-o", "json", *args))


@pytest.fixture
def kubectl(tmp_path: Path) -> Iterator[Kubectl]:
    api = ApiServer(tmp_path)  # started; stopped by its PID below, also when the test fails
    try:
        k = Kubectl(api, tmp_path / "kube-cache")
        k("create", "namespace", "default")  # itself a protobuf body
        yield k
    finally:
        api.stop()


def test_create_namespace(kubectl: Kubectl) -> None:
    assert kubectl("create", "namespace", "team-a").strip() == "namespace/team-a created"
    ns = kubectl.get("namespace", "team-a")
    assert ns["metadata"]["name"] == "team-a"
    assert kubectl.get("namespace", "default")["metadata"]["name"] == "default"


def test_create_deployment_with_replicas_and_port(kubectl: Kubectl) -> None:
    out = kubectl("create", "deployment", "web", "--image=agnhost", "--replicas=3", "--port=8080")
    assert out.strip() == "deployment.apps/web created"
    d = kubectl.get("deployment", "web")
    assert d["metadata"]["labels"] == {"app": "web"}
    spec = d["spec"]
    assert spec["replicas"] == 3
    assert spec["selector"] == {"matchLabels": {"app": "web"}}
    assert spec["template"]["metadata"]["labels"] == {"app": "web"}
    (c,) = spec["template"]["spec"]["containers"]
    assert (c["name"], c["image"]) == ("agnhost", "agnhost")
    assert [p["containerPort"] for p in c["ports"]] == [8080]


def test_create_deployment_with_a_command_and_zero_replicas(kubectl: Kubectl) -> None:
    kubectl("create", "deployment", "one", "--image=agnhost", "--", "netexec", "--http-port=8080")
    (c,) = kubectl.get("deployment", "one")["spec"]["template"]["spec"]["containers"]
    assert c["command"] == ["netexec", "--http-port=8080"]
    # replicas is a pointer in Go: 0 is sent, and must not become the default 1
    kubectl("create", "deployment", "zero", "--image=agnhost", "--replicas=0")
    assert kubectl.get("deployment", "zero")["spec"]["replicas"] == 0


def test_create_services(kubectl: Kubectl) -> None:
    kubectl("create", "service", "clusterip", "web", "--tcp=80:8080")
    svc = kubectl.get("service", "web")
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["selector"] == {"app": "web"}
    assert [(p["name"], p["protocol"], p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [
        ("80-8080", "TCP", 80, 8080)
    ]
    assert svc["spec"]["clusterIP"] not in ("", "None")

    kubectl("create", "service", "nodeport", "np", "--tcp=80:8080", "--node-port=30080")
    (port,) = kubectl.get("service", "np")["spec"]["ports"]
    assert (port["port"], port["targetPort"], port["nodePort"]) == (80, 8080, 30080)

    kubectl("create", "service", "clusterip", "headless", "--clusterip=None")
    assert kubectl.get("service", "headless")["spec"]["clusterIP"] == "None"


def test_expose_a_deployment_and_run_a_pod(kubectl: Kubectl) -> None:
    kubectl("create", "deployment", "web", "--image=agnhost", "--port=8080")
    assert kubectl("expose", "deployment", "web", "--port", "80").strip() == "service/web exposed"
    svc = kubectl.get("service", "web")
    assert svc["spec"]["selector"] == {"app": "web"}
    assert [(p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [(80, 80)]

    kubectl("run", "client", "--image=agnhost", "--labels=app=client", "--", "pause")
    pod = kubectl.get("pod", "client")
    assert pod["metadata"]["labels"] == {"app": "client"}
    (c,) = pod["spec"]["containers"]
    assert (c["image"], c["args"]) == ("agnhost", ["pause"])


def test_a_kind_podnet_does_not_serve_is_refused(kubectl: Kubectl) -> None:
    p = subprocess.run(
        ["kubectl", "--cache-dir", kubectl.cache, "create", "configmap", "cm", "--from-literal=a=b"],
        env=kubectl.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode != 0
    assert "could not find the requested resource" in p.stderr
