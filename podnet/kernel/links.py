"""Addresses and per-netns sysctls: the slower, non-hot-path kernel calls.

The CNI hot path (links, addresses, routes) goes through kernel.rtnl in one
batch per namespace; this module holds what is left: reading a link's
addresses through pyroute2 and writing net.* sysctls inside a namespace.
"""

import ipaddress

from podnet.kernel.netns import entered


class LinkError(Exception):
    """A kernel operation failed; the message names operation and object."""

    def __init__(self, msg, errno_=None):
        super().__init__(msg)
        self.errno = errno_


def addresses(ipr, index):
    """Addresses on a link as ip_interface objects (ipr: a pyroute2 IPRoute)."""
    out = []
    for msg in ipr.addr("dump", index=index):
        out.append(ipaddress.ip_interface("%s/%d" % (msg.get_attr("IFA_ADDRESS"), msg["prefixlen"])))
    return out


def write_sysctl(ns, key, value):
    """Write a net.* sysctl inside `ns` (the thread enters it to open the
    file: /proc/sys/net shows the opener's namespace)."""
    path = "/proc/sys/" + key.replace(".", "/")
    with entered(ns):
        try:
            with open(path, "w") as f:
                f.write(str(value))
        except OSError as exc:
            raise LinkError("write sysctl %s=%s: %s" % (key, value, exc.strerror), exc.errno) from exc


def read_sysctl(ns, key):
    path = "/proc/sys/" + key.replace(".", "/")
    with entered(ns):
        with open(path) as f:
            return f.read().strip()
