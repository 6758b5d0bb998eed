"""Deleting conntrack entries with the `conntrack` tool (conntrack-tools).

UDP has no connection end, so an entry that was DNATed to a backend stays
and keeps steering a client's packets to that backend after it is gone
(a DNS client keeps asking a deleted pod). The proxy deletes such entries
when an endpoint goes away, as kube-proxy does. Exit code 1 with "0 flow
entries" means nothing matched, which is fine.
"""

from podnet.kernel.netns import run


class ConntrackError(Exception):
    pass


def _delete(args, what, ns=None):
    res = run(["conntrack", "-D"] + args, ns=ns, check=False)
    if res.returncode not in (0, 1):
        raise ConntrackError("conntrack delete %s: %s" % (what, (res.stderr or res.stdout).strip()))
    return res.returncode == 0


def delete_udp_to_endpoint(ip, port, ns=None):
    """Entries whose reply comes from ip:port (the DNAT target)."""
    return _delete(
        ["-p", "udp", "--reply-src", ip, "--reply-port-src", str(port)], "udp endpoint %s:%d" % (ip, port), ns
    )


def delete_udp_to_front(ip, port, ns=None):
    """Entries a client opened to ip:port (a ClusterIP, external IP or, with
    ip None, a nodePort on any address) before it had endpoints."""
    args = ["-p", "udp"] + (["--orig-dst", ip] if ip else []) + ["--orig-port-dst", str(port)]
    return _delete(args, "udp front %s:%d" % (ip or "*", port), ns)
