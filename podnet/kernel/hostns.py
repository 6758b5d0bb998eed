"""What the agent reads and names of the host it runs on (`podnet agent
--kubeconfig` outside a lab): the network namespace it runs in, given a name
under /run/netns so the code that finds a node's namespace by name (hostNetwork
pods, BIRD, the reaper) finds this one; the address and prefix of the
interface that carries a given address."""

from __future__ import annotations

import ipaddress
import os

from podnet.kernel import netns


class HostError(OSError):
    pass


def _same(path_a: str, path_b: str) -> bool:
    try:
        a, b = os.stat(path_a), os.stat(path_b)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def name_current(name: str) -> str:
    """/run/netns/NAME for the namespace this process is in (as `ip netns
    attach NAME self`); a stale name pointing elsewhere is replaced."""
    path = netns.path_of(name)
    here = "/proc/%d/ns/net" % os.getpid()
    if _same(path, here):
        return path
    if os.path.exists(path):
        netns.run(["ip", "netns", "delete", name], check=False)
    import subprocess

    try:
        netns.run(["ip", "netns", "attach", name, str(os.getpid())])
    except subprocess.CalledProcessError as exc:
        raise HostError("name this host's network namespace %s: %s" % (name, (exc.stderr or "").strip())) from None
    if not _same(path, here):
        raise HostError("name this host's network namespace %s: %s is another namespace" % (name, path))
    return path


def prefix_of(ip: str) -> str:
    """The network of the interface holding `ip` in this namespace (the
    underlay segment), e.g. 192.168.200.0/24."""
    with netns.iproute() as ipr:
        for msg in ipr.get_addr():
            addr = msg.get_attr("IFA_ADDRESS")
            if addr == ip:
                return str(ipaddress.ip_interface("%s/%d" % (addr, msg["prefixlen"])).network)
    raise HostError("no interface of this host holds %s (give --node-ip an address of this host)" % ip)
