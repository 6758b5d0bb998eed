"""Cluster DNS and the `kubernetes` Service for `podnet server`.

In a lab the DNS server runs as pods that read a kubeconfig file from the
lab's state. Hosts share no files, so here the server's host runs podnet's
DNS server itself (a child process, the coredns identity's token), and the
Services point at it as a control plane's do: `kube-dns` (10.96.0.10,
53/UDP `dns`, 53/TCP `dns-tcp`) and `kubernetes` (10.96.0.1:443) without a
selector, each with an EndpointSlice naming the server's advertised
address. Pods' resolv.conf (nameserver 10.96.0.10) then reaches it through
their node's Service rules.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from podnet.dns.resolvconf import CLUSTER_DNS

COREDNS_USER = "system:serviceaccount:kube-system:coredns"
KUBERNETES_IP = "10.96.0.1"


def _service(ns: str, name: str, ip: str, ports: list[dict[str, Any]], labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"clusterIP": ip, "ports": ports},
    }


def _slice(ns: str, name: str, addr: str, ports: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": ns, "labels": {"kubernetes.io/service-name": name}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [addr], "conditions": {"ready": True}}],
        "ports": [{"name": p["name"], "port": p["targetPort"], "protocol": p["protocol"]} for p in ports],
    }


def manifests(addr: str, api_port: int) -> list[dict[str, Any]]:
    """-> the objects, in order: `kubernetes` and `kube-dns`, selector-less, at addr."""
    api = [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": api_port}]
    dns = [
        {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
        {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
    ]
    return [
        _service("default", "kubernetes", KUBERNETES_IP, api, {"component": "apiserver"}),
        _slice("default", "kubernetes", addr, api),
        _service("kube-system", "kube-dns", CLUSTER_DNS, dns, {"k8s-app": "kube-dns"}),
        _slice("kube-system", "kube-dns", addr, dns),
    ]


def install(objects: Any, addr: str, api_port: int) -> None:
    for obj in manifests(addr, api_port):
        objects.apply(obj)


def start_server(kubeconfig: str, addr: str, log_path: str) -> subprocess.Popen[bytes]:
    """podnet's DNS server on addr:53, a child of `podnet server` (ended with it)."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "podnet.dns", "serve", "--kubeconfig", kubeconfig]
            + ["--listen", addr, "--port", "53", "--workers", "1"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
