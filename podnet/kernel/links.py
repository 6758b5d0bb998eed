"""Links and addresses outside the CNI hot path, and per-netns sysctls.

The CNI hot path (links, addresses, routes) goes through kernel.rtnl in one
batch per namespace; this module holds the rest:

- with a pyroute2 IPRoute handle (`netns.iproute(ns)`), for reconcilers that
  read and write several objects in one pass: link lookups, the VXLAN device,
  addresses (also labelled ones, as the LoadBalancer announcer keeps them);
- with a namespace (a Netns or a named one's path), for one-off setup: a veth
  pair across two namespaces, a bridge and its ports, an address, a link up
  (the lab's underlay, Docker-mode namespaces, `podnet demo`), and `ip -j` reads;
- with a namespace, one IPRoute socket per call, for the CNI bridge plugin's
  address work outside its batches: reading a pod interface's addresses (DEL,
  CHECK) and forceAddress's delete of a bridge's old gateway address;
- net.* sysctls inside a namespace.

Every ensure_* is idempotent (what is already there is left alone), every
delete_* accepts "not there", and failures raise LinkError naming the
operation, the object and the namespace.
"""

import errno
import fcntl
import ipaddress
import json
import os
import socket
import struct
import subprocess
from contextlib import contextmanager, nullcontext

from podnet.kernel.netns import Netns, entered, run

IFF_UP = 0x1
SIOCGIFFLAGS, SIOCSIFFLAGS = 0x8913, 0x8914


class LinkError(Exception):
    """A kernel operation failed; the message names operation and object."""

    def __init__(self, msg, errno_=None):
        super().__init__(msg)
        self.errno = errno_


def _nl(exc):
    """A pyroute2 NetlinkError -> (errno, text)."""
    return getattr(exc, "code", None), exc.args[-1] if exc.args else str(exc)


# ---- with an IPRoute handle ------------------------------------------------------


def link_index(ipr, name):
    """The link's index, asked of the kernel by name, or None (a lookup by
    name does not dump and parse every link of the node, pods' veths included)."""
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        return ipr.link("get", ifname=name)[0]["index"]
    except NetlinkError as exc:
        if exc.code in (errno.ENODEV, errno.ENOENT):
            return None
        raise LinkError("get link %s: %s" % (name, exc.args[-1]), exc.code) from None


def link_name(ipr, index):
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        return ipr.link("get", index=index)[0].get_attr("IFLA_IFNAME")
    except NetlinkError as exc:
        if exc.code in (errno.ENODEV, errno.ENOENT):
            return None
        raise LinkError("get link #%d: %s" % (index, exc.args[-1]), exc.code) from None


def link_mac(ipr, name):
    """The link's MAC address, or None when there is no such link."""
    idx = link_index(ipr, name)
    return ipr.link("get", index=idx)[0].get_attr("IFLA_ADDRESS") if idx is not None else None


def delete_link(ipr, name):
    """-> 1 when a link was deleted, 0 when there was none."""
    from pyroute2.netlink.exceptions import NetlinkError

    idx = link_index(ipr, name)
    if idx is None:
        return 0
    try:
        ipr.link("del", index=idx)
    except NetlinkError as exc:
        if exc.code in (errno.ENODEV, errno.ENOENT):
            return 0
        raise LinkError("delete link %s: %s" % (name, exc.args[-1]), exc.code) from None
    return 1


def ensure_vxlan(ipr, name, vni, local, port, mac, mtu, address):
    """The VXLAN device `name` exists with this VNI, local IP, UDP port, MAC
    and MTU, learning off, is up, and holds `address` (its only IPv4 one).
    A device of that name that differs in kind, VNI, local IP or port is
    rebuilt. -> number of changes."""
    from pyroute2.netlink.exceptions import NetlinkError

    changes = 0
    what = "vxlan %s (vni %s)" % (name, vni)
    try:
        idx = link_index(ipr, name)
        if idx is not None:
            link = ipr.link("get", index=idx)[0]
            info = link.get_attr("IFLA_LINKINFO")
            data = info.get_attr("IFLA_INFO_DATA") if info else None
            same = (
                info
                and info.get_attr("IFLA_INFO_KIND") == "vxlan"
                and data
                and data.get_attr("IFLA_VXLAN_ID") == vni
                and data.get_attr("IFLA_VXLAN_LOCAL") == local
                and data.get_attr("IFLA_VXLAN_PORT") == port
            )
            if not same:  # a device of that name that is not what we want: rebuild it
                ipr.link("del", index=idx)
                idx, changes = None, changes + 1
        if idx is None:
            ipr.link(
                "add",
                ifname=name,
                kind="vxlan",
                vxlan_id=vni,
                vxlan_local=local,
                vxlan_port=port,
                vxlan_learning=0,
                address=mac,
                mtu=mtu,
            )
            idx = link_index(ipr, name)
            changes += 1
        link = ipr.link("get", index=idx)[0]
        if link.get_attr("IFLA_ADDRESS") != mac or link.get_attr("IFLA_MTU") != mtu or not link["flags"] & IFF_UP:
            ipr.link("set", index=idx, address=mac, mtu=mtu, state="up")
            changes += 1
    except NetlinkError as exc:
        code, text = _nl(exc)
        raise LinkError("ensure %s: %s" % (what, text), code) from None
    want = ipaddress.ip_interface(address)
    have = set(addresses(ipr, idx))
    for extra in have - {want}:
        if extra.version == 4:
            changes += delete_address(ipr, name, extra, index=idx)
    changes += ensure_address(ipr, name, want, index=idx)
    return changes


def addresses(ipr, index):
    """Addresses on a link as ip_interface objects."""
    out = []
    for msg in ipr.addr("dump", index=index):
        out.append(ipaddress.ip_interface("%s/%d" % (msg.get_attr("IFA_ADDRESS"), msg["prefixlen"])))
    return out


def labelled_addresses(ipr, dev, label):
    """The addresses on `dev` carrying `label` (`ip addr add ... label L`) -> {ip}."""
    idx = link_index(ipr, dev)
    if idx is None:
        raise LinkError("list addresses of %s: no such link" % dev, errno.ENODEV)
    return {m.get_attr("IFA_ADDRESS") for m in ipr.addr("dump", index=idx) if m.get_attr("IFA_LABEL") == label}


def ensure_address(ipr, dev, iface, label=None, index=None):
    """`iface` (an ip_interface or "a.b.c.d/n") is on `dev`. -> 1 if added, 0 if there."""
    from pyroute2.netlink.exceptions import NetlinkError

    iface = ipaddress.ip_interface(iface)
    idx = index if index is not None else link_index(ipr, dev)
    if idx is None:
        raise LinkError("add address %s to %s: no such link" % (iface, dev), errno.ENODEV)
    kw = {"label": label} if label else {}
    try:
        ipr.addr("add", index=idx, address=str(iface.ip), prefixlen=iface.network.prefixlen, **kw)
    except NetlinkError as exc:
        if exc.code == errno.EEXIST:
            return 0
        raise LinkError("add address %s to %s: %s" % (iface, dev, exc.args[-1]), exc.code) from None
    return 1


def delete_address(ipr, dev, iface, index=None):
    """-> 1 if deleted, 0 if it was not there."""
    from pyroute2.netlink.exceptions import NetlinkError

    iface = ipaddress.ip_interface(iface)
    idx = index if index is not None else link_index(ipr, dev)
    if idx is None:
        return 0
    try:
        ipr.addr("del", index=idx, address=str(iface.ip), prefixlen=iface.network.prefixlen)
    except NetlinkError as exc:
        if exc.code in (errno.EADDRNOTAVAIL, errno.ENOENT, errno.ESRCH, errno.ENODEV):
            return 0
        raise LinkError("delete address %s from %s: %s" % (iface, dev, exc.args[-1]), exc.code) from None
    return 1


# ---- with a namespace (one-off setup) --------------------------------------------


@contextmanager
def _opened(ns):
    """A Netns for a Netns, a name or a path."""
    if isinstance(ns, Netns):
        yield ns
        return
    with Netns(ns) as handle:
        yield handle


def ensure_veth(ns, name, peer_ns, peer, master=None):
    """A veth pair: `name` in `ns` (on bridge `master` when given), `peer` in
    `peer_ns`, both up. Present peer: nothing is made; a stray `name` without
    its peer (left by a half-done earlier call) is replaced. -> True if made."""
    from podnet.kernel.rtnl import Rtnl

    with _opened(ns) as a, _opened(peer_ns) as b, Rtnl(a) as ra, Rtnl(b) as rb:
        made = False
        if rb.get_link(peer) is None:
            if ra.get_link(name) is not None:
                ra.link_del(name)
                ra.commit()
            ra.link_add_veth(name, peer, b.fd)
            ra.commit()
            made = True
        link = ra.get_link(name)
        if link is None:
            raise LinkError("ensure veth %s in %s: its peer %s is in %s, it is not" % (name, a.path, peer, b.path))
        master_idx = None
        if master:
            br = ra.get_link(master)
            if br is None:
                raise LinkError("put %s on bridge %s in %s: no such bridge" % (name, master, a.path), errno.ENODEV)
            master_idx = br.index
        if not link.flags & IFF_UP or (master_idx is not None and link.master != master_idx):
            ra.link_set(link.index, name, up=True, master=master_idx)
            ra.commit()
        plink = rb.get_link(peer)
        if plink is not None and not plink.flags & IFF_UP:
            rb.link_set(plink.index, peer, up=True)
            rb.commit()
        return made


def ensure_bridge(ns, name):
    """A bridge `name` in `ns`, up."""
    from podnet.kernel.rtnl import Rtnl

    with _opened(ns) as h, Rtnl(h) as r:
        r.link_add_bridge(name)
        r.commit()
        link = r.get_link(name)
        if link is None or link.kind != "bridge":
            raise LinkError("ensure bridge %s in %s: a link of that name is a %s" % (name, h.path, link and link.kind))
        if not link.flags & IFF_UP:
            r.link_set(link.index, name, up=True)
            r.commit()


def ensure_addr(ns, dev, iface):
    """Address `iface` on `dev` in `ns` (present: fine)."""
    from podnet.kernel.rtnl import Rtnl

    iface = ipaddress.ip_interface(iface)
    with _opened(ns) as h, Rtnl(h) as r:
        link = r.get_link(dev)
        if link is None:
            raise LinkError("add address %s to %s in %s: no such link" % (iface, dev, h.path), errno.ENODEV)
        r.addr_add(link.index, iface, dev)
        r.commit()


@contextmanager
def _iproute_in(ns):
    """One pyroute2 IPRoute socket in `ns` (a Netns, a name or path, or None:
    the thread's own namespace), closed afterwards."""
    from podnet.kernel.netns import iproute

    with _opened(ns) if ns is not None else nullcontext() as h:
        ipr = iproute(h)
        try:
            yield ipr
        finally:
            ipr.close()


def _err(exc):
    """(errno, text) of a LinkError or a pyroute2 NetlinkError."""
    return (exc.errno, str(exc)) if isinstance(exc, LinkError) else _nl(exc)


def _where(ns):
    return getattr(ns, "path", None) or ns or "the current namespace"


def link_addresses(ns, dev):
    """The addresses on `dev` in `ns` -> [ip_interface], or None when there
    is no such link. One socket, two requests (the link by name, then its
    addresses): what CNI DEL and CHECK read of a pod's interface."""
    from pyroute2.netlink.exceptions import NetlinkError

    with _iproute_in(ns) as ipr:
        try:
            idx = link_index(ipr, dev)
            return None if idx is None else addresses(ipr, idx)
        except (LinkError, NetlinkError) as exc:
            code, text = _err(exc)
            raise LinkError("list addresses of %s in %s: %s" % (dev, _where(ns), text), code) from None


def delete_overlapping_addresses(ns, dev, want, index=None):
    """Delete from `dev` in `ns` every address of `want`'s family whose
    subnet overlaps `want`'s, `want` itself excepted: the bridge plugin's
    forceAddress, where the gateway address moves to a new subnet (as the
    reference plugin does). `index` saves the lookup when the caller holds
    the link. -> how many were deleted; no such link, or one already gone: 0
    for it. One socket: the address dump, then one request per delete."""
    from pyroute2.netlink.exceptions import NetlinkError

    want = ipaddress.ip_interface(want)
    where = _where(ns)
    n = 0
    with _iproute_in(ns) as ipr:
        try:
            idx = index if index is not None else link_index(ipr, dev)
            have = [] if idx is None else addresses(ipr, idx)
        except (LinkError, NetlinkError) as exc:
            code, text = _err(exc)
            raise LinkError("list addresses of %s in %s: %s" % (dev, where, text), code) from None
        for old in have:
            if old == want or old.version != want.version or not old.network.overlaps(want.network):
                continue
            try:
                ipr.addr("del", index=idx, address=str(old.ip), prefixlen=old.network.prefixlen)
            except NetlinkError as exc:
                if exc.code in (errno.EADDRNOTAVAIL, errno.ENOENT, errno.ESRCH, errno.ENODEV):
                    continue  # gone meanwhile: what we wanted
                code, text = _nl(exc)
                raise LinkError("delete address %s from %s in %s: %s" % (old, dev, where, text), code) from None
            n += 1
    return n


def link_exists(ns, name):
    from podnet.kernel.rtnl import Rtnl

    with _opened(ns) as h, Rtnl(h) as r:
        return r.get_link(name) is not None


def set_up(ns, name):
    """Bring a link up with one ioctl: no netlink library to import, which
    matters to a short-lived command (pyroute2's import alone is ~0.3 s)."""
    with _opened(ns) as h, entered(h):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            req = struct.pack("16sH14x", name.encode(), 0)
            flags = struct.unpack("16sH14x", fcntl.ioctl(s, SIOCGIFFLAGS, req))[1]
            if not flags & IFF_UP:
                fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH14x", name.encode(), flags | IFF_UP))
        except OSError as exc:
            raise LinkError("set link %s up in %s: %s" % (name, h.path, exc.strerror), exc.errno) from None
        finally:
            s.close()


def create_namespace(name):
    """A named namespace with `lo` up, like netns.create, but `lo` comes up
    by ioctl: a short command (`podnet run`) does not pay pyroute2's import.
    -> its path. Idempotent; a namespace half made here is deleted again."""
    from podnet.kernel import netns

    path = netns.path_of(name)
    if not os.path.exists(path):
        res = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
        if res.returncode != 0 and not os.path.exists(path):
            raise LinkError("create netns %s: %s" % (name, res.stderr.strip()))
    try:
        set_up(path, "lo")
    except (LinkError, OSError):
        netns.delete(name)
        raise
    return path


def route_mtu(route):
    """The MTU an `ip -j route` entry carries (`ip route ... mtu 1450`), or None."""
    for m in route.get("metrics") or []:
        if isinstance(m, dict) and m.get("mtu"):
            return m["mtu"]
    return None


def show_json(ns, what):
    """`ip -j <what>` (addr, route, link) read inside `ns` -> parsed JSON, or
    None when the namespace is gone or ip fails (a read for display)."""
    try:
        with _opened(ns) as h:
            res = run(["ip", "-j", what], ns=h, check=False)
    except OSError:
        return None
    try:
        return json.loads(res.stdout) if res.returncode == 0 else None
    except ValueError:
        return None


# ---- sysctls ---------------------------------------------------------------------


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
