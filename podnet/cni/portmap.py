"""podnet-portmap: hostPort mappings with nftables (`docker run -p`).

Table `inet podnet-portmap`:
  map hostports   { inet_proto . inet_service : verdict }  one element per published port
  chain prerouting (dstnat) / output (-100): fib daddr type local -> vmap @hostports
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

One host port is owned by one attachment: the map key is (protocol, port),
so publishing a port twice fails at the kernel and is reported as error 103
naming the current owner. A mapping with a hostIP adds `daddr` to its rule.
Every change is one `nft -f` transaction; removal uses add-then-delete.
"""

import hashlib
import ipaddress

from podnet.cni.errors import INVALID_CONFIG, PORT_IN_USE, CNIError
from podnet.cni.spec import from_any_version, valid_attachments
from podnet.kernel import conntrack, nft

TABLE = "podnet-portmap"
MARK = "0x2000"


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
    keys = [(p, hp) for p, hp, _, _ in out]
    if len(set(keys)) != len(keys):
        raise CNIError(INVALID_CONFIG, "runtimeConfig.portMappings: a host port is listed twice")
    return out


def skeleton():
    t = "inet " + TABLE
    return (
        "\n".join(
            [
                "add table %s" % t,
                "add map %s hostports { type inet_proto . inet_service : verdict; }" % t,
                "add chain %s prerouting { type nat hook prerouting priority dstnat; policy accept; }" % t,
                "add chain %s output { type nat hook output priority -100; policy accept; }" % t,
                "add chain %s postrouting { type nat hook postrouting priority srcnat; policy accept; }" % t,
                "flush chain %s prerouting" % t,
                "flush chain %s output" % t,
                "flush chain %s postrouting" % t,
                "add rule %s prerouting fib daddr type local meta l4proto . th dport vmap @hostports" % t,
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
            "add element %s hostports { %s . %d comment %s : goto %s }" % (t, proto, hport, nft.quote(tag), chain)
        )
    return "\n".join(lines) + "\n"


def del_script(chain, keys):
    t = "inet " + TABLE
    lines = [skeleton(), "add chain %s %s" % (t, chain)]
    for proto, port in keys:
        lines.append("add element %s hostports { %s . %d : goto %s }" % (t, proto, port, chain))
        lines.append("delete element %s hostports { %s . %d }" % (t, proto, port))
    lines.append("delete chain %s %s" % (t, chain))
    return "\n".join(lines) + "\n"


def observed(ns):
    """-> ({chain: owner tag}, {(proto, port): chain}) from the live table."""
    items = nft.list_table("inet", TABLE, ns=ns) or []
    chains, owners = {}, {}
    for item in items:
        if "chain" in item and item["chain"]["name"].startswith("pm-"):
            chains.setdefault(item["chain"]["name"], "")
        if "map" in item and item["map"]["name"] == "hostports":
            for key, verdict in item["map"].get("elem", []):
                tag = ""
                if "elem" in key:
                    tag = key["elem"].get("comment", "")
                    key = key["elem"]["val"]
                proto, port = key["concat"]
                chain = verdict["goto"]["target"]
                owners[(proto, int(port))] = chain
                if tag:
                    chains[chain] = tag
    return chains, owners


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
        try:
            nft.apply(add_script(tag, chain, mappings, ips), ns=args.host_ns, what="publish ports")
        except nft.NftError:
            _, owners = observed(args.host_ns)
            for proto, hport, _, _ in mappings:
                owner = owners.get((proto, hport))
                if owner and owner != chain:
                    chains, _ = observed(args.host_ns)
                    raise CNIError(
                        PORT_IN_USE,
                        "host port %d/%s is already published" % (hport, proto),
                        "owned by %s" % (chains.get(owner) or owner),
                    ) from None
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
    for proto, hport, _, _ in mappings:
        if owners.get((proto, hport)) != chain:
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
