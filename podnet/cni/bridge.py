"""podnet: the main plugin, bridge mode.

Field names follow the reference bridge plugin, so its configs work with
`"type": "podnet"`: bridge (default cni0), isGateway, isDefaultGateway,
forceAddress, ipMasq, mtu, hairpinMode, promiscMode, plus podnet's own
daemonSocket (read by the thin executable).

ADD order matters for "nothing half-applied": we refuse an existing interface
name before IPAM runs; everything after IPAM is undone (link removed, masq
element removed, IPAM released) when any step fails.
"""

import hashlib
import ipaddress
import sys

from podnet.cni import delegate, masq
from podnet.cni.errors import INTERFACE_EXISTS, INTERNAL, INVALID_CONFIG, UNKNOWN_CONTAINER, CNIError
from podnet.cni.spec import from_any_version, route_attrs, valid_attachments

BOOL_FIELDS = ("isGateway", "isDefaultGateway", "forceAddress", "ipMasq", "hairpinMode", "promiscMode")
UNSUPPORTED = ("vlan", "vlanTrunk", "macspoofchk", "enabledad", "disableContainerInterface")


class BridgeConf:
    def __init__(self, conf):
        self.network = conf.get("name")
        if not isinstance(self.network, str) or not self.network:
            raise CNIError(INVALID_CONFIG, "name: missing")
        self.bridge = conf.get("bridge", "cni0")
        if not isinstance(self.bridge, str) or not (0 < len(self.bridge) <= 15) or "/" in self.bridge:
            raise CNIError(INVALID_CONFIG, "bridge: invalid bridge name %r" % self.bridge)
        for key in BOOL_FIELDS:
            if key in conf and not isinstance(conf[key], bool):
                raise CNIError(INVALID_CONFIG, "%s: must be true or false" % key)
        for key in UNSUPPORTED:
            if conf.get(key):
                raise CNIError(
                    2, "%s: not supported by podnet" % key, "remove the field or use the reference bridge plugin"
                )
        self.is_default_gateway = conf.get("isDefaultGateway", False)
        self.is_gateway = conf.get("isGateway", False) or self.is_default_gateway
        self.force_address = conf.get("forceAddress", False)
        self.ip_masq = conf.get("ipMasq", False)
        self.hairpin = conf.get("hairpinMode", False)
        self.promisc = conf.get("promiscMode", False)
        self.mtu = conf.get("mtu")
        if self.mtu is not None and (
            not isinstance(self.mtu, int) or isinstance(self.mtu, bool) or not 68 <= self.mtu <= 65535
        ):
            raise CNIError(INVALID_CONFIG, "mtu: must be an integer 68-65535")
        self.dns = conf.get("dns") if isinstance(conf.get("dns"), dict) else None


def host_veth_name(cid, ifname):
    """Deterministic, recognisably ours, 14 characters."""
    return "pn-" + hashlib.sha1(("%s/%s" % (cid, ifname)).encode()).hexdigest()[:11]


def _kernel():
    # pyroute2 is imported only when kernel work is needed (not for VERSION).
    from podnet.kernel import links, netns, rtnl

    return links, netns, rtnl


def _open_netns(path):
    from podnet.kernel import netns

    try:
        return netns.Netns(path)
    except netns.NetnsError:
        return None


def stable_mac(*parts):
    """A locally administered unicast MAC derived from `parts`.

    The bridge gets one so its address never changes as ports come and go
    (a bridge otherwise takes its lowest port's MAC, and every pod's ARP entry
    for the gateway goes stale when that port leaves)."""
    digest = hashlib.sha1("/".join(parts).encode()).digest()
    return ":".join("%02x" % b for b in bytes([(digest[0] & 0xFC) | 0x02]) + digest[1:6])


def add(args):
    c = BridgeConf(args.conf)
    _, _, rtnl = _kernel()
    pod_ns = _open_netns(args.netns)
    if pod_ns is None:
        raise CNIError(UNKNOWN_CONTAINER, "netns %s does not exist" % args.netns)
    try:
        with rtnl.Rtnl(pod_ns) as pod:
            if pod.get_link(args.ifname) is not None:
                raise CNIError(
                    INTERFACE_EXISTS,
                    "interface %s already exists in %s" % (args.ifname, args.netns),
                    "choose another CNI_IFNAME or DEL the attachment first",
                )
            result = delegate.ipam("ADD", args)
            if not result or not result.get("ips"):
                raise CNIError(INTERNAL, "ipam %s returned no address" % args.conf["ipam"].get("type"))
            try:
                with rtnl.Rtnl(args.host_ns) as host:
                    return _add_links(c, args, result, host, pod, pod_ns)
            except BaseException:
                _undo(c, args, result)
                raise
    finally:
        pod_ns.close()


def _ensure_bridge(c, args, host):
    br = host.get_link(c.bridge)
    if br is None:
        host.link_add_bridge(c.bridge, stable_mac("bridge", c.bridge), c.mtu)
        host.commit()
        br = host.get_link(c.bridge)
    if br.kind != "bridge":
        raise CNIError(
            INVALID_CONFIG,
            "bridge: a link named %s exists and is a %s, not a bridge" % (c.bridge, br.kind or "plain device"),
        )
    if not br.flags & 1 or (c.promisc and not br.flags & 0x100):
        host.link_set(br.index, c.bridge, up=True, promisc=True if c.promisc else None)
    return br


def _add_links(c, args, result, host, pod, pod_ns):
    links, _, _ = _kernel()
    addrs = [ipaddress.ip_interface(ip["address"]) for ip in result["ips"]]
    gateways = {}
    for ip in result["ips"]:
        if ip.get("gateway"):
            gateways[ipaddress.ip_interface(ip["address"]).version] = ipaddress.ip_address(ip["gateway"])
    br = _ensure_bridge(c, args, host)
    if c.is_gateway:
        for iface in addrs:
            gw = gateways.get(iface.version)
            if gw is None:
                raise CNIError(INVALID_CONFIG, "isGateway: ipam gave %s no gateway" % iface)
            cidr = ipaddress.ip_interface("%s/%d" % (gw, iface.network.prefixlen))
            if c.force_address:
                _replace_gateway(c, args, br, cidr)
            host.addr_add(br.index, cidr, "bridge " + c.bridge)
        links.write_sysctl(args.host_ns, "net.ipv4.ip_forward", 1)
        if any(a.version == 6 for a in addrs):
            links.write_sysctl(args.host_ns, "net.ipv6.conf.all.forwarding", 1)
    hname = host_veth_name(args.container_id, args.ifname)
    host.link_del(hname)  # a leftover of a killed ADD for this very attachment
    host.link_add_veth(
        hname,
        args.ifname,
        pod_ns.fd,
        master=br.index,
        mac=stable_mac("host", args.container_id, args.ifname),
        mtu=c.mtu,
    )
    if c.hairpin:
        host.bridge_port_hairpin(hname)
    host.commit()
    plink = pod.get_link(args.ifname)
    if any(a.version == 6 for a in addrs):
        # Without this the address stays "tentative" for ~2 s and cannot be used.
        links.write_sysctl(pod_ns, "net.ipv6.conf.%s.accept_dad" % args.ifname, 0)
    pod.link_set(plink.index, args.ifname, up=True)
    for iface in addrs:
        pod.addr_add(plink.index, iface, args.ifname)
    routes = list(result.get("routes") or [])
    if c.is_default_gateway:
        for version, gw in gateways.items():
            default = "0.0.0.0/0" if version == 4 else "::/0"
            if not any(r["dst"] == default for r in routes):
                routes.append({"dst": default, "gw": str(gw)})
    for i, r in enumerate(routes):
        dst = ipaddress.ip_network(r["dst"], strict=False)
        gw = r.get("gw") or gateways.get(dst.version)
        extra = route_attrs(r, "routes[%d]" % i, strict=False)
        pod.route_add(dst, ipaddress.ip_address(gw) if gw else None, plink.index, args.ifname, **extra)
    pod.commit()
    if c.ip_masq:
        masq.apply_add(masq.owner_tag(c.network, args.container_id, args.ifname), addrs, args.host_ns)
    out = {
        "cniVersion": args.version,
        "interfaces": [
            {"name": c.bridge, "mac": br.mac},
            {"name": hname, "mac": stable_mac("host", args.container_id, args.ifname)},
            {"name": args.ifname, "mac": plink.mac, "sandbox": args.netns},
        ],
        "ips": [dict(ip, interface=2) for ip in result["ips"]],
        "routes": result.get("routes") or [],
        "dns": c.dns or result.get("dns") or {},
    }
    if c.mtu:
        for iface in out["interfaces"][1:]:
            iface["mtu"] = c.mtu
    return out


def _replace_gateway(c, args, br, want):
    """forceAddress: drop other addresses of the same family in an
    overlapping subnet from the bridge (as the reference plugin does)."""
    links, _, _ = _kernel()
    links.delete_overlapping_addresses(args.host_ns, c.bridge, want, index=br.index)


def _undo(c, args, result):
    _, _, rtnl = _kernel()
    try:
        with rtnl.Rtnl(args.host_ns) as host:
            host.link_del(host_veth_name(args.container_id, args.ifname))
            host.commit()
        if c.ip_masq:
            ips = [ipaddress.ip_interface(ip["address"]).ip for ip in result["ips"]]
            masq.apply_delete(ips, args.host_ns)
    except Exception as exc:  # keep the original error; say what could not be undone
        print("podnet: cleanup after failed ADD: %s" % exc, file=sys.stderr)
    try:
        delegate.ipam("DEL", args)
    except CNIError as exc:
        print("podnet: releasing address after failed ADD: %s" % exc, file=sys.stderr)


def delete(args):
    """Best effort and idempotent: a missing netns, link or allocation is
    success; IPAM is always released, even when link removal failed."""
    c = BridgeConf(args.conf)
    links, _, rtnl = _kernel()
    ips = []
    prev = args.conf.get("prevResult")
    if isinstance(prev, dict):
        ips = [ipaddress.ip_interface(ip["address"]).ip for ip in from_any_version(prev).get("ips", [])]
    failure = None
    try:
        pod_ns = _open_netns(args.netns) if args.netns else None
        pair_gone = False
        if pod_ns is not None:
            try:
                if c.ip_masq and not ips:
                    have = links.link_addresses(pod_ns, args.ifname) or []
                    ips = [a.ip for a in have if not a.ip.is_link_local]
                with rtnl.Rtnl(pod_ns) as pod:
                    pod.link_del(args.ifname)  # takes the host end of the pair with it
                    pair_gone = not pod.commit()  # {} unless ENODEV: it was there, and is gone
            finally:
                pod_ns.close()
        if not pair_gone:  # no netns or no eth0 any more: the host end may still be there
            with rtnl.Rtnl(args.host_ns) as host:
                host.link_del(host_veth_name(args.container_id, args.ifname))
                host.commit()
        if c.ip_masq:
            tag = masq.owner_tag(c.network, args.container_id, args.ifname)
            if not ips:  # no prevResult and the netns is gone: find ours by the element comment
                ips = [ip for ip, t in masq.elements(args.host_ns) if t == tag]
            if ips:
                masq.apply_delete(ips, args.host_ns)
    except Exception as exc:
        failure = exc
    delegate.ipam("DEL", args)
    if failure is not None:
        raise failure
    return None


def check(args):
    c = BridgeConf(args.conf)
    links, _, rtnl = _kernel()
    prev = args.conf.get("prevResult")
    if not isinstance(prev, dict):
        raise CNIError(INVALID_CONFIG, "prevResult: CHECK needs the result of ADD")
    prev = from_any_version(prev)
    delegate.ipam("CHECK", args)
    pod_ns = _open_netns(args.netns)
    if pod_ns is None:
        raise CNIError(UNKNOWN_CONTAINER, "netns %s does not exist" % args.netns)
    try:
        found = links.link_addresses(pod_ns, args.ifname)
        if found is None:
            raise CNIError(INTERNAL, "CHECK: interface %s is missing in %s" % (args.ifname, args.netns))
        have = set(found)
        for ip in prev.get("ips", []):
            if ipaddress.ip_interface(ip["address"]) not in have:
                raise CNIError(INTERNAL, "CHECK: %s lacks address %s" % (args.ifname, ip["address"]))
        with rtnl.Rtnl(args.host_ns) as host:
            hname = host_veth_name(args.container_id, args.ifname)
            hlink = host.get_link(hname)
            br = host.get_link(c.bridge)
        if br is None:
            raise CNIError(INTERNAL, "CHECK: bridge %s is missing" % c.bridge)
        if hlink is None or hlink.master != br.index:
            raise CNIError(INTERNAL, "CHECK: host veth %s is missing or not on bridge %s" % (hname, c.bridge))
    finally:
        pod_ns.close()
    return None


def gc(args):
    c = BridgeConf(args.conf)
    valid = valid_attachments(args.conf)
    delegate.ipam("GC", args)
    _gc_links(c, args, valid)
    if c.ip_masq:
        stale = []
        for ip, tag in masq.elements(args.host_ns):
            net, _, rest = tag.partition("/")
            cid, _, ifname = rest.partition("/")
            if net == c.network and (cid, ifname) not in valid:
                stale.append(ip)
        if stale:
            masq.apply_delete(stale, args.host_ns)
    return None


def _gc_links(c, args, valid):
    """Host veths of ours on this bridge that no valid attachment owns (left
    by an ADD killed after the veth was made, while its netns lives on)."""
    _, _, rtnl = _kernel()
    keep = {host_veth_name(cid, ifname) for cid, ifname in valid}
    with rtnl.Rtnl(args.host_ns) as host:
        br = host.get_link(c.bridge)
        if br is None:
            return
        for link in host.dump_links():
            if (
                link.name.startswith("pn-")
                and link.name not in keep
                and link.master == br.index
                and link.kind == "veth"
            ):
                host.link_del(link.name)
        host.commit()


def status(args):
    BridgeConf(args.conf)
    delegate.ipam("STATUS", args)
    return None


HANDLERS = {"ADD": add, "DEL": delete, "CHECK": check, "GC": gc, "STATUS": status}
