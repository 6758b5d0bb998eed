"""A pod's /etc/hosts, as kubelet writes it (its "managed hosts file"), and
its /etc/resolv.conf (write_resolv_conf; the plan is podnet.dns.resolvconf).

    plan(pod, ip, node_hosts="") -> text        (pure)
    write(pod, ip, pod_dir, node_hosts_path)    -> <pod dir>/etc-hosts

A pod with its own network namespace gets the localhost lines, its IP with
its hostname (`<hostname>.<subdomain>.<ns>.svc.<zone>` first when it has a
subdomain) and then, under "# Entries added by HostAliases.", a line per
spec.hostAliases entry. A hostNetwork pod gets the node's own hosts file,
then the aliases (kubelet does the same since 1.x: the node's names must keep
resolving on the node's stack).

The file is bind-mounted over /etc/hosts in every container of the pod and
in `podnet exec` (containers.wrap finds it next to the pod's resolv.conf), so
the host's own /etc/hosts is never touched.
"""

import os

from podnet.dns.resolvconf import CLUSTER_DOMAIN

FILE_NAME = "etc-hosts"  # kubelet's name for it in the pod directory
HEADER = "# Kubernetes-managed hosts file.\n"
HEADER_HOST_NETWORK = "# Kubernetes-managed hosts file (host network).\n"
LOCALHOST = (
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "fe00::0\tip6-mcastprefix\n"
    "fe00::1\tip6-allnodes\n"
    "fe00::2\tip6-allrouters\n"
)


def _aliases(spec):
    aliases = spec.get("hostAliases") or []
    if not aliases:
        return ""
    lines = ["# Entries added by HostAliases.\n"]
    for a in aliases:
        lines.append("%s\t%s\n" % (a["ip"], "\t".join(a.get("hostnames") or [])))
    return "".join(lines)


def plan(pod, ip, node_hosts="", domain=CLUSTER_DOMAIN):
    """-> the /etc/hosts text for `pod` (a Pod dict) whose IP is `ip`."""
    spec = pod.get("spec") or {}
    meta = pod.get("metadata") or {}
    if spec.get("hostNetwork"):
        base = node_hosts if not node_hosts or node_hosts.endswith("\n") else node_hosts + "\n"
        return HEADER_HOST_NETWORK + base + _aliases(spec)
    hostname = spec.get("hostname") or meta.get("name") or ""
    if spec.get("subdomain"):
        fqdn = "%s.%s.%s.svc.%s" % (hostname, spec["subdomain"], meta.get("namespace") or "default", domain)
        own = "%s\t%s\t%s\n" % (ip, fqdn, hostname)
    else:
        own = "%s\t%s\n" % (ip, hostname)
    return HEADER + LOCALHOST + own + _aliases(spec)


def write(pod, ip, pod_dir, node_hosts_path="/etc/hosts"):
    """Write <pod_dir>/etc-hosts for `pod` -> its path."""
    node_hosts = ""
    if (pod.get("spec") or {}).get("hostNetwork"):
        try:
            with open(node_hosts_path) as f:
                node_hosts = f.read()
        except OSError:
            node_hosts = LOCALHOST
    path = os.path.join(pod_dir, FILE_NAME)
    with open(path + ".tmp", "w") as f:
        f.write(plan(pod, ip, node_hosts))
    os.replace(path + ".tmp", path)
    return path


def write_resolv_conf(pod, log_dir, node_dir):
    """<pod dir>/resolv.conf by dnsPolicy (podnet.dns.resolvconf); every
    container of the pod (and `podnet exec`) sees it as /etc/resolv.conf.
    The node's own resolver config ("Default") is <node dir>/resolv.conf,
    which the lab writes, else this host's."""
    from podnet.dns import resolvconf

    node_conf = ""
    for candidate in (os.path.join(node_dir, "resolv.conf"), "/etc/resolv.conf"):
        try:
            with open(candidate) as f:
                node_conf = f.read()
            break
        except OSError:
            continue
    path = os.path.join(log_dir, "resolv.conf")
    with open(path + ".tmp", "w") as f:
        f.write(resolvconf.plan(pod, node_conf))
    os.replace(path + ".tmp", path)
    return path
