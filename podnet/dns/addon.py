"""What `podnet lab up` adds for DNS: the kube-dns addon and the lab's "internet".

* kube-dns, as every Kubernetes cluster has it: a Deployment in kube-system
  running podnet's DNS server as pods (image podnet/dns, see
  podnet.workload), a client of the lab's API server (its kubeconfig, with
  the coredns token, is a file in the lab's state; pods are host
  processes), and the Service kube-dns with ClusterIP 10.96.0.10, ports
  53/UDP `dns` and 53/TCP `dns-tcp`. The DNS pods have dnsPolicy Default,
  so their /etc/resolv.conf is the node's and names outside cluster.local go
  to the external resolver.
* the Service `kubernetes` in default (10.96.0.1, 443/TCP `https`), so
  `kubernetes.default` resolves as in any cluster, with the lab's API server
  (192.168.200.1:6443 on the underlay) as its endpoint.
* the external host's resolver: podnet's server with static records
  (`--static`), standing for the internet: example.com and www.example.com
  point at the external host itself; every other name is NXDOMAIN.
"""

import json

from podnet.dns.resolvconf import CLUSTER_DNS

DNS_IMAGE = "podnet/dns"
API_IP, API_PORT = "192.168.200.1", 6443  # podnet.lab.control
REPLICAS = 1  # labs share a small machine; kube-dns runs 2 in a real cluster

EXTERNAL_ZONE = """\
; the lab's "internet", served by podnet's DNS server on the external host
. 60 IN SOA ns.lab-internet. hostmaster.lab-internet. 1 7200 1800 86400 60
example.com. 60 IN A {ip}
www.example.com. 60 IN CNAME example.com.
example.com. 60 IN TXT "the podnet lab's external host"
"""


def manifests(kubeconfig, replicas=REPLICAS):
    """-> the addon's objects (apply them in order)."""
    labels = {"k8s-app": "kube-dns"}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-system"}},
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver"}},
            "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443, "protocol": "TCP"}]},
        },
        {
            # the API server behind it: the control plane host on the underlay
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "kubernetes",
                "namespace": "default",
                "labels": {"kubernetes.io/service-name": "kubernetes"},
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": [API_IP], "conditions": {"ready": True}}],
            "ports": [{"name": "https", "port": API_PORT, "protocol": "TCP"}],
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "coredns", "namespace": "kube-system", "labels": labels},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "dnsPolicy": "Default",
                        "containers": [
                            {
                                "name": "dns",
                                "image": DNS_IMAGE,
                                "args": ["serve", "--kubeconfig", kubeconfig, "--workers", "1"],
                                "ports": [
                                    {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                                    {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
                                ],
                                "readinessProbe": {"tcpSocket": {"port": 53}, "periodSeconds": 1},
                            }
                        ],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": labels},
            "spec": {
                "clusterIP": CLUSTER_DNS,
                "selector": labels,
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                ],
            },
        },
    ]


def manifest_text(kubeconfig, replicas=REPLICAS):
    return "\n---\n".join(json.dumps(d) for d in manifests(kubeconfig, replicas))


def external_zone(ip):
    return EXTERNAL_ZONE.format(ip=ip)


def node_resolv_conf(external_ip):
    """The lab nodes' own resolver config (what dnsPolicy Default gives)."""
    return "# the lab node's resolver: the external host (the lab's internet)\nnameserver %s\n" % external_ip
