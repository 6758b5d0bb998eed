"""What `podnet lab up` adds for HTTP from outside: the ingress-nginx addon.

* namespace podnet-ingress;
* IngressClass `podnet` (controller podnet.io/ingress-nginx), the default
  class, so an Ingress without a class is ours, as in a cluster where
  ingress-nginx is the default;
* GatewayClass `podnet` (controllerName podnet.io/gateway-nginx);
* Deployment ingress-nginx (one replica: labs share a small machine) of the
  built-in image podnet/ingress-nginx: podnet's controller, which renders
  the configuration and runs a real nginx as its child, in the pod; its
  kubeconfig (a token of its own) is a file in the lab's state, as the
  kube-dns addon's is, and nginx's files go under the lab's state too;
* Service ingress-nginx, type LoadBalancer, ports 80 `http` and 443
  `https`: the external host reaches nginx at an address from the lab's
  pool, which the controller writes into each Ingress's status.loadBalancer
  and each Gateway's status.addresses.
"""

from __future__ import annotations

import json
from typing import Any

from podnet.ingress.gateway import GATEWAY_CONTROLLER
from podnet.ingress.model import DEFAULT_CLASS_ANNOTATION, INGRESS_CONTROLLER

NAMESPACE = "podnet-ingress"
NAME = "ingress-nginx"
IMAGE = "podnet/ingress-nginx"
USER = "system:serviceaccount:podnet-ingress:ingress-nginx"
CLASS = "podnet"
REPLICAS = 1


def manifests(kubeconfig: str, run_dir: str, replicas: int = REPLICAS) -> list[dict[str, Any]]:
    """-> the addon's objects (apply them in order)."""
    labels = {"app.kubernetes.io/name": NAME}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "IngressClass",
            "metadata": {"name": CLASS, "annotations": {DEFAULT_CLASS_ANNOTATION: "true"}},
            "spec": {"controller": INGRESS_CONTROLLER},
        },
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "GatewayClass",
            "metadata": {"name": CLASS},
            "spec": {"controllerName": GATEWAY_CONTROLLER},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": labels},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [
                            {
                                "name": "controller",
                                "image": IMAGE,
                                "args": ["--kubeconfig", kubeconfig, "--run-dir", run_dir],
                                "ports": [
                                    {"name": "http", "containerPort": 80, "protocol": "TCP"},
                                    {"name": "https", "containerPort": 443, "protocol": "TCP"},
                                ],
                                "readinessProbe": {"tcpSocket": {"port": 80}, "periodSeconds": 1},
                            }
                        ],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": labels},
            "spec": {
                "type": "LoadBalancer",
                "selector": labels,
                "ports": [
                    {"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"},
                    {"name": "https", "port": 443, "protocol": "TCP", "targetPort": "https"},
                ],
            },
        },
    ]


def manifest_text(kubeconfig: str, run_dir: str, replicas: int = REPLICAS) -> str:
    return "\n---\n".join(json.dumps(d) for d in manifests(kubeconfig, run_dir, replicas))


def install(lab: str, apply_text: Any, objects: Any, say: Any) -> None:
    """The lab's hook (podnet.lab.lab.up calls it after the kube-dns addon)."""
    import os

    from podnet.lab import control, topology

    say("ingress-nginx addon (IngressClass and GatewayClass %s, Service %s/%s)" % (CLASS, NAMESPACE, NAME))
    run_dir = os.path.join(topology.state_dir(lab), "ingress")
    apply_text(objects, manifest_text(control.token_kubeconfig(lab, NAME, USER), run_dir), "ingress-nginx addon")
