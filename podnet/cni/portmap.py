"""podnet-portmap: hostPort mappings with nftables (`docker run -p`).

Table `inet podnet-portmap`:
  map hostports   { inet_proto . inet_service : verdict }  one element per port
                  published on every local address
  map hostports4 / hostports6 { ipv4_addr|ipv6_addr . inet_proto . inet_service : verdict }
                  one element per port published on one address (a hostIP)
  chain prerouting (dstnat) / output (-100): fib daddr type local -> vmap
                  @hostports4/6 by the destination address first, then @hostports
  chain pm-<hash> per attachment: the DNAT rules for its mappings; each of its
                  hostports elements carries the comment
                  "<network>/<containerID>/<ifname>" so errors and GC can name
                  the owner (nft 1.0.6's JSON shows element comments, not
                  chain comments)
  chain postrouting: masquerade connections marked 0x2000 (hairpin: a pod
                  reaching itself through its host port, which would otherwise
                  see its own address as the source and drop the reply). The
                  bridge must also let the frame out the port it came in on:
                  set "hairpinMode": true on podnet (br_netfilter DNATs at the
                  bridge, so without it the bridge drops the frame).

A UDP mapping deletes the node's conntrack entries to its host port when it
is published (see _forget_udp_flows).

One host port is owned by one attachment where the addresses overlap, as
Kubernetes has it: the same protocol and port on the same hostIP, or on any
address when either mapping has none. Two attachments may publish a port on
two different hostIPs. A conflict is error 103 naming the current owner:
checked against the table under a lock before the change, and the map keys
make the kernel refuse an exact duplicate a racing ADD would add. A mapping
with a hostIP also matches `daddr` in its rules. Every change is one
`nft -f` transaction; removal uses add-then-delete.
"""

import hashlib
import ipaddress
import threading

from podnet.cni.errors import INVALID_CONFIG, PORT_IN_USE, CNIError
from podnet.cni.spec import from_any_version, valid_attachments
from podnet.kernel import conntrack, nft

TABLE = "podnet-portmap"
MARK = "0x2000"
_publish = threading.Lock()  # check-then-add, for the ADDs one daemon serves at once


def chain_name(cid, ifname):
    return "pm-" + hashlib.sha1(("%s/%s" % (cid, ifname)).encode()).hexdigest()[:16]


def parse_mappings(conf):
    rc = conf.get("runtimeConfig") if isinstance(conf.get("runtimeConfig"), dict) else {}
    raw = rc.get("portMappings", [])
    if not isinstance(raw, list):
        raise CNIError(INVALID_CONFIG, "runtimeConfig.portMappings: must be a list")
    out = []
    for i, m in enumerate(raw):
        path = "runtimeConfig.portMappings[%d]" % i
        if not isinstance(m, dict):
            raise CNIError(INVALID_CONFIG, "%s: must be an object" % path)
        for key in ("hostPort", "containerPort"):
            v = m.get(key)
            if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= 65535:
                raise CNIError(INVALID_CONFIG, "%s.%s: must be 1-65535" % (path, key))
        proto = str(m.get("protocol", "tcp")).lower()
        if proto not in ("tcp", "udp"):
            raise CNIError(INVALID_CONFIG, "%s.protocol: %r is not tcp or udp" % (path, proto))
        host_ip = m.get("hostIP") or None
        if host_ip:
            try:
                host_ip = ipaddress.ip_address(host_ip)
            except ValueError:
                raise CNIError(INVALID_CONFIG, "%s.hostIP: invalid address %r" % (path, host_ip)) from None
            if host_ip.is_unspecified:
                host_ip = None
        out.append((proto, m["hostPort"], m["containerPort"], host_ip))
    for i, (p, hp, _, ip) in enumerate(out):
        if any((p, hp) == (p2, hp2) and overlap(ip, ip2) for p2, hp2, _, ip2 in out[:i]):
            raise CNIError(INVALID_CONFIG, "runtimeConfig.portMappings: a host port is listed twice")
    return out


def overlap(a, b):
    """Do two hostIPs (None: every address) share an address?"""
    return a is None or b is None or a == b


def map_of(host_ip):
    if host_ip is None:
        return "hostports"
    return "hostports4" if host_ip.version == 4 else "hostports6"


def element_key(proto, port, host_ip):
    return "%s . %d" % (proto, port) if host_ip is None else "%s . %s . %d" % (host_ip, proto, port)


def skeleton():
    t = "inet " + TABLE
    return (
        "\n".join(
            [
                "add table %s" % t,
                "add map %s hostports { type inet_proto . inet_service : verdict; }" % t,
                "add map %s hostports4 { type ipv4_addr . inet_proto . inet_service : verdict; }" % t,
                "add map %s hostports6 { type ipv6_addr . inet_proto . inet_service : verdict; }" % t,
                "add chain %s prerouting { type nat hook prerouting priority dstnat; policy accept; }" % t,
                "add chain %s output { type nat hook output priority -100; policy accept; }" % t,
                "add chain %s postrouting { type nat hook postrouting priority srcnat; policy accept; }" % t,
                "flush chain %s prerouting" % t,
                "flush chain %s output" % t,
                "flush chain %s postrouting" % t,
                # a port published on the destination address wins over one on every address
                "add rule %s prerouting fib daddr type local ip daddr . meta l4proto . th dport vmap @hostports4" % t,
                "add rule %s prerouting fib daddr type local ip6 daddr . meta l4proto . th dport vmap @hostports6" % t,
                "add rule %s prerouting fib daddr type local meta l4proto . th dport vmap @hostports" % t,
                "add rule %s output fib daddr type local ip daddr . meta l4proto . th dport vmap @hostports4" % t,
                "add rule %s output fib daddr type local ip6 daddr . meta l4proto . th dport vmap @hostports6" % t,
                # 127.0.0.0/8 would need route_localnet on the host: not ours to flip.
                "add rule %s output ip daddr != 127.0.0.0/8 fib daddr type local "
                "meta l4proto . th dport vmap @hostports" % t,
                "add rule %s output ip6 daddr != ::1 fib daddr type local meta l4proto . th dport vmap @hostports" % t,
                "add rule %s postrouting meta mark & %s == %s masquerade" % (t, MARK, MARK),
            ]
        )
        + "\n"
    )


def add_script(tag, chain, mappings, pod_ips):
    t = "inet " + TABLE
    lines = [skeleton(), "add chain %s %s" % (t, chain), "flush chain %s %s" % (t, chain)]
    for proto, hport, cport, host_ip in mappings:
        for ip in pod_ips:
            fam = "ip" if ip.version == 4 else "ip6"
            if host_ip is not None and host_ip.version != ip.version:
                continue
            match = (
                "%s daddr %s " % (fam, host_ip)
                if host_ip
                else "meta nfproto %s " % ("ipv4" if ip.version == 4 else "ipv6")
            )
            target = "%s:%d" % (ip, cport) if ip.version == 4 else "[%s]:%d" % (ip, cport)
            lines.append(
                "add rule %s %s %s%s saddr %s %s dport %d meta mark set mark | %s"
                % (t, chain, match, fam, ip, proto, hport, MARK)
            )
            lines.append("add rule %s %s %s%s dport %d dnat %s to %s" % (t, chain, match, proto, hport, fam, target))
        lines.append(
            "add element %s %s { %s comment %s : goto %s }"
            % (t, map_of(host_ip), element_key(proto, hport, host_ip), nft.quote(tag), chain)
        )
    return "\n".join(lines) + "\n"


def del_script(chain, keys):
    t = "inet " + TABLE
    lines = [skeleton(), "add chain %s %s" % (t, chain)]
    for host_ip, proto, port in keys:
        m, key = map_of(host_ip), element_key(proto, port, host_ip)
        lines.append("add element %s %s { %s : goto %s }" % (t, m, key, chain))
        lines.append("delete element %s %s { %s }" % (t, m, key))
    lines.append("delete chain %s %s" % (t, chain))
    return "\n".join(lines) + "\n"


def observed(ns):
    """-> ({chain: owner tag}, {(hostIP or None, proto, port): chain}) from the live table."""
    items = nft.list_table("inet", TABLE, ns=ns) or []
    chains, owners = {}, {}
    for item in items:
        if "chain" in item and item["chain"]["name"].startswith("pm-"):
            chains.setdefault(item["chain"]["name"], "")
        if "map" in item and item["map"]["name"] in ("hostports", "hostports4", "hostports6"):
            for key, verdict in item["map"].get("elem", []):
                tag = ""
                if "elem" in key:
                    tag = key["elem"].get("comment", "")
                    key = key["elem"]["val"]
                parts = key["concat"]
                host_ip = ipaddress.ip_address(parts[0]) if len(parts) == 3 else None
                proto, port = parts[-2:]
                chain = verdict["goto"]["target"]
                owners[(host_ip, proto, int(port))] = chain
                if tag:
                    chains[chain] = tag
    return chains, owners


def _conflict(mappings, chain, chains, owners):
    """The CNIError for the first mapping another attachment holds, or None."""
    for proto, hport, _, host_ip in mappings:
        for (o_ip, o_proto, o_port), owner in sorted(owners.items(), key=str):
            if (o_proto, o_port) == (proto, hport) and owner != chain and overlap(host_ip, o_ip):
                where = " on %s" % o_ip if o_ip else ""
                return CNIError(
                    PORT_IN_USE,
                    "host port %d/%s is already published%s" % (hport, proto, where),
                    "owned by %s" % (chains.get(owner) or owner),
                )
    return None


def _pod_ips(conf):
    prev = conf.get("prevResult")
    if not isinstance(prev, dict):
        raise CNIError(INVALID_CONFIG, "prevResult: podnet-portmap must be chained after a plugin that gives addresses")
    prev = from_any_version(prev)
    return prev, [ipaddress.ip_interface(ip["address"]).ip for ip in prev.get("ips", [])]


def add(args):
    mappings = parse_mappings(args.conf)
    prev, ips = _pod_ips(args.conf)
    if mappings:
        chain = chain_name(args.container_id, args.ifname)
        tag = "%s/%s/%s" % (args.conf.get("name", ""), args.container_id, args.ifname)
        with _publish:
            err = _conflict(mappings, chain, *observed(args.host_ns))
            if err is not None:
                raise err
            try:
                nft.apply(add_script(tag, chain, mappings, ips), ns=args.host_ns, what="publish ports")
            except nft.NftError:
                err = _conflict(mappings, chain, *observed(args.host_ns))  # an ADD of another process won
                if err is not None:
                    raise err from None
                raise
        _forget_udp_flows(mappings, args.host_ns)
    return dict(prev, cniVersion=args.version)


def _forget_udp_flows(mappings, ns):
    """UDP has no connection end: a client that sent to the host port before
    it was published (refused, or answered by an earlier pod) keeps its
    conntrack entry as long as it keeps sending, and an existing entry is
    never NATed again, so it would never reach this pod. Delete those
    entries, as the Go portmap plugin and kubelet's hostport manager do."""
    for proto, hport, _, host_ip in mappings:
        if proto == "udp":
            conntrack.delete_udp_to_front(str(host_ip) if host_ip else None, hport, ns=ns)


def _remove(ns, chain, owners):
    keys = [k for k, c in owners.items() if c == chain]
    nft.apply(del_script(chain, keys), ns=ns, what="unpublish ports of %s" % chain)


def delete(args):
    chain = chain_name(args.container_id, args.ifname)
    chains, owners = observed(args.host_ns)
    if chain in chains:
        _remove(args.host_ns, chain, owners)
    return None


def check(args):
    mappings = parse_mappings(args.conf)
    _pod_ips(args.conf)
    chain = chain_name(args.container_id, args.ifname)
    _, owners = observed(args.host_ns)
    for proto, hport, _, host_ip in mappings:
        if owners.get((host_ip, proto, hport)) != chain:
            raise CNIError(999, "CHECK: host port %d/%s is not mapped to %s" % (hport, proto, args.container_id))
    return None


def gc(args):
    valid = valid_attachments(args.conf)
    keep = {chain_name(cid, ifname) for cid, ifname in valid}
    network = args.conf.get("name", "")
    chains, owners = observed(args.host_ns)
    for chain, tag in chains.items():
        if chain not in keep and tag.startswith(network + "/"):
            _remove(args.host_ns, chain, owners)
    return None


def status(args):
    return None


HANDLERS = {"ADD": add, "DEL": delete, "CHECK": check, "GC": gc, "STATUS": status}
