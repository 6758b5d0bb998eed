"""ipMasq for the bridge plugin: one nftables table, `inet podnet-bridge`.

Design: the table's shape is fixed (two sets of pod addresses that want
masquerading, two interval sets of destinations that must keep the pod's
source address, one postrouting chain with one rule per family), so every ADD
can re-declare it and rewrite the chain inside the same transaction that adds
the pod's address: idempotent, atomic, and linear only in set elements, which
the kernel looks up in O(1). Destinations kept: the network's own subnets and
multicast, as the reference plugin does; a pod reaching another pod network
on the same node is not masqueraded either, which keeps the no-NAT rule of
the Kubernetes model.

Each pod element carries a comment "<network>/<containerID>/<ifname>", so
DEL without a prevResult and GC can find what belongs to whom.

The builders are pure (script text in, nothing touched); `apply` and
`elements` are the only calls that reach the kernel.
"""

import ipaddress

from podnet.kernel import nft

TABLE = "podnet-bridge"


def _family(ip):
    return ("masq4", "nomasq4") if ip.version == 4 else ("masq6", "nomasq6")


def owner_tag(network, cid, ifname):
    return "%s/%s/%s" % (network, cid, ifname)


def skeleton():
    return "\n".join([
        "add table inet %s" % TABLE,
        "add set inet %s masq4 { type ipv4_addr; }" % TABLE,
        "add set inet %s masq6 { type ipv6_addr; }" % TABLE,
        "add set inet %s nomasq4 { type ipv4_addr; flags interval; auto-merge; }" % TABLE,
        "add set inet %s nomasq6 { type ipv6_addr; flags interval; auto-merge; }" % TABLE,
        "add element inet %s nomasq4 { 224.0.0.0/4 }" % TABLE,
        "add element inet %s nomasq6 { ff00::/8 }" % TABLE,
        "add chain inet %s postrouting { type nat hook postrouting priority srcnat; policy accept; }" % TABLE,
        "flush chain inet %s postrouting" % TABLE,
        "add rule inet %s postrouting ip saddr @masq4 ip daddr != @nomasq4 masquerade" % TABLE,
        "add rule inet %s postrouting ip6 saddr @masq6 ip6 daddr != @nomasq6 masquerade" % TABLE,
    ]) + "\n"


def add_script(tag, addresses):
    """addresses: ip_interface objects of one pod."""
    lines = [skeleton()]
    for iface in addresses:
        pods, keep = _family(iface.ip)
        lines.append("add element inet %s %s { %s }" % (TABLE, keep, iface.network))
        lines.append("add element inet %s %s { %s comment %s }" % (TABLE, pods, iface.ip, nft.quote(tag)))
    return "\n".join(lines) + "\n"


def del_script(ips):
    lines = [skeleton()]
    for ip in ips:
        pods, _ = _family(ip)
        lines.append("add element inet %s %s { %s }" % (TABLE, pods, ip))
        lines.append("delete element inet %s %s { %s }" % (TABLE, pods, ip))
    return "\n".join(lines) + "\n"


def apply(script, ns, what):
    nft.apply(script, ns=ns, what=what)


def elements(ns):
    """[(ip, tag)] of every pod address in the table (empty when absent)."""
    items = nft.list_table("inet", TABLE, ns=ns) or []
    out = []
    for item in items:
        s = item.get("set")
        if not s or s.get("name") not in ("masq4", "masq6"):
            continue
        for elem in s.get("elem", []):
            if isinstance(elem, dict) and "elem" in elem:
                val = elem["elem"].get("val")
                tag = elem["elem"].get("comment", "")
            else:
                val, tag = elem, ""
            out.append((ipaddress.ip_address(val), tag))
    return out
