"""Pure decisions of the Docker modes: names, `--network`, `-p`, subnets, the
CNI conflist of a network, a container's resolv.conf. No I/O here, so all of
it is unit-tested without root.

Names follow Docker's rules ([a-zA-Z0-9][a-zA-Z0-9_.-]*). A user-defined
network's bridge gets a name we recognise as ours within the kernel's 15
characters: "pnd-" plus the network name when it fits, else a cut of the
name and a short hash, so two long names never share a bridge.
"""

import hashlib
import ipaddress
import re

DEFAULT_NETWORK = "bridge"
DEFAULT_BRIDGE = "docker0"
DEFAULT_SUBNET = "172.17.0.0/16"
BRIDGE_PREFIX = "pnd-"
# Docker's own pool for user-defined networks: 172.18.0.0/16 ... 172.31.0.0/16.
POOL = [ipaddress.ip_network("172.%d.0.0/16" % i) for i in range(18, 32)]
# Ranges the lab already uses: a container subnet overlapping them would
# shadow the underlay, the pods or the Services.
LAB_RANGES = {
    "the lab underlay": ipaddress.ip_network("192.168.200.0/24"),
    "the cluster's pod CIDR": ipaddress.ip_network("10.244.0.0/16"),
    "the Service CIDR": ipaddress.ip_network("10.96.0.0/12"),
}
MODES = ("bridge", "host", "none")
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$")


class DockerError(Exception):
    """Bad input or a conflict; the message names the object (the CLI prints it)."""


def check_container_name(name):
    if not _NAME.match(name or ""):
        raise DockerError("container name %r: use 1-63 of [a-zA-Z0-9_.-], starting with a letter or digit" % name)
    return name


def check_network_name(name):
    if not _NAME.match(name or ""):
        raise DockerError("network name %r: use 1-63 of [a-zA-Z0-9_.-], starting with a letter or digit" % name)
    if name in MODES:
        raise DockerError("network name %r is predefined (bridge, host, none): choose another" % name)
    return name


def parse_network(value):
    """--network value -> (kind, target): ("bridge", "bridge"), ("host", None),
    ("none", None), ("container", NAME) or ("user", NETWORK)."""
    value = value or DEFAULT_NETWORK
    if value == "bridge":
        return "bridge", DEFAULT_NETWORK
    if value in ("host", "none"):
        return value, None
    if value.startswith("container:"):
        target = value[len("container:") :]
        if not target:
            raise DockerError("--network container:NAME: the container name is missing")
        return "container", check_container_name(target)
    return "user", check_network_name(value)


def parse_publish(value):
    """-p [HOSTIP:]HOSTPORT:PORT[/tcp|/udp] -> a CNI portMappings entry."""
    text, _, proto = str(value).partition("/")
    proto = (proto or "tcp").lower()
    if proto not in ("tcp", "udp"):
        raise DockerError("-p %s: protocol %r is not tcp or udp" % (value, proto))
    parts = text.rsplit(":", 2)
    if len(parts) == 3:
        host_ip, host_port, port = parts
        try:
            ipaddress.ip_address(host_ip)
        except ValueError:
            raise DockerError("-p %s: %r is not an IP address" % (value, host_ip)) from None
    elif len(parts) == 2:
        host_ip, (host_port, port) = None, parts
    else:
        raise DockerError("-p %s: expected HOSTPORT:PORT[/udp] (podnet does not pick host ports)" % value)
    out = {}
    for key, text_port in (("hostPort", host_port), ("containerPort", port)):
        if not text_port.isdigit() or not 1 <= int(text_port) <= 65535:
            raise DockerError("-p %s: %s %r must be 1-65535" % (value, key, text_port))
        out[key] = int(text_port)
    out["protocol"] = proto
    if host_ip:
        out["hostIP"] = host_ip
    return out


def check_publish(mappings):
    seen = set()
    for m in mappings:
        key = (m["hostPort"], m["protocol"])
        if key in seen:
            raise DockerError("-p: host port %d/%s is listed twice" % key)
        seen.add(key)
    return mappings


def port_text(m):
    return "%s%d->%d/%s" % (
        m["hostIP"] + ":" if m.get("hostIP") else "0.0.0.0:",
        m["hostPort"],
        m["containerPort"],
        m["protocol"],
    )


def bridge_name(network):
    if network == DEFAULT_NETWORK:
        return DEFAULT_BRIDGE
    if len(BRIDGE_PREFIX + network) <= 15 and re.match(r"^[a-zA-Z0-9_.-]+$", network):
        return BRIDGE_PREFIX + network
    return BRIDGE_PREFIX + network[:5] + "-" + hashlib.sha1(network.encode()).hexdigest()[:5]


def netns_name(lab, cid):
    """Under the lab's prefix, so `podnet lab down` finds and removes it."""
    return "pn-%s-d-%s" % (lab, cid[:10])


def check_subnet(text, taken, network=None):
    """A user's --subnet -> ip_network. taken: {network name: subnet} on the
    node. Overlaps are errors naming what is overlapped."""
    try:
        net = ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        raise DockerError("--subnet %s: %s" % (text, exc)) from None
    if net.version != 4:
        raise DockerError("--subnet %s: only IPv4 subnets are supported" % text)
    if net.prefixlen > 29:
        raise DockerError("--subnet %s: too small (at most /29: gateway, containers, broadcast)" % text)
    for what, rng in LAB_RANGES.items():
        if net.overlaps(rng):
            raise DockerError("--subnet %s overlaps %s (%s)" % (text, what, rng))
    for name, other in sorted(taken.items()):
        if name != network and net.overlaps(ipaddress.ip_network(other)):
            raise DockerError("--subnet %s overlaps network %s (%s)" % (text, name, other))
    return net


def pick_subnet(taken):
    """The first /16 of Docker's pool that overlaps nothing on the node."""
    used = [ipaddress.ip_network(s) for s in taken.values()]
    for net in POOL:
        if not any(net.overlaps(u) for u in used):
            return net
    raise DockerError("no free subnet left in 172.18.0.0/16-172.31.0.0/16: give one with --subnet")


def gateway(subnet):
    return ipaddress.ip_network(subnet).network_address + 1


def conflist(network, bridge, subnet, ipam_dir, daemon_socket=None):
    """The CNI config list of a network: podnet (bridge, gateway, masquerade,
    hairpin for a container reaching its own published port) chained with
    podnet-portmap for -p, as Docker's bridge driver does with iptables."""
    main = {
        "type": "podnet",
        "bridge": bridge,
        "isGateway": True,
        "isDefaultGateway": True,
        "ipMasq": True,
        "hairpinMode": True,
        "ipam": {
            "type": "podnet-ipam",
            "dataDir": ipam_dir,
            "ranges": [[{"subnet": str(subnet), "gateway": str(gateway(subnet))}]],
        },
    }
    portmap = {"type": "podnet-portmap", "capabilities": {"portMappings": True}}
    if daemon_socket:
        main["daemonSocket"] = portmap["daemonSocket"] = daemon_socket
    return {"cniVersion": "1.1.0", "name": network, "plugins": [main, portmap]}


def resolv_conf(nameserver):
    """A user-defined network's resolv.conf: only the embedded DNS. ndots:0
    as Docker's, so a bare container name is asked as it is."""
    return (
        "# written by podnet for a container on a user-defined network:\n"
        "# the network's embedded DNS answers container names\n"
        "nameserver %s\noptions ndots:0\n" % nameserver
    )


def short_command(argv, width=30):
    text = " ".join(argv)
    return '"%s"' % (text if len(text) <= width else text[: width - 3] + "...")
