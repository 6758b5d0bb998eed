"""What a node's kernel should hold so its pods reach every other node's pods
without NAT: a pure function of the Node objects.

vxlan (as flannel): one VXLAN device `podnet.1` (VNI 1, UDP 8472, no
learning, MTU = underlay MTU - 50) holding <own podCIDR>.0/32, and per remote
node exactly three entries, so state is linear in nodes:
    route  <remote podCIDR> via <remote podCIDR>.0 dev podnet.1 onlink
    neigh  <remote podCIDR>.0 lladdr <remote VTEP MAC> dev podnet.1 (permanent)
    fdb    <remote VTEP MAC> dst <remote node IP> dev podnet.1 (permanent)
The VTEP MAC is derived from the node name, so it survives agent restarts and
every node can compute it; it is also published on the Node. With
direct_routing, a peer on the same underlay subnet gets a plain route instead.

host-gw: route <remote podCIDR> via <remote node IP> dev eth0; every peer must
share the underlay subnet (the next hop must be on-link), otherwise a clear
error names the peer.

bgp: nothing per peer here: BIRD (routing/bgp.py) learns and installs them.

encryption "wireguard" (routing/wireguard.py), in every mode: per remote node
only `route <remote podCIDR> dev podnet.wg` (WireGuard carries the pod
packets itself; no VXLAN device, no host-gw next hop; in bgp mode BIRD's own
routes stay, behind ours by their metric).

Every mode: route <service CIDR> dev eth0 (scope link), so the node's own
processes and hostNetwork pods reach ClusterIPs (the cluster DNS among them)
instead of "Network is unreachable": the route only has to get the packet
past the routing decision to the proxy's nat output chain, which DNATs it to
an endpoint; the kernel then routes it again to the endpoint (cni0, the
overlay or eth0), and the proxy masquerades it because its source, the
node's address, is outside the cluster CIDR. eth0 rather than cni0 because
cni0 exists only once the node runs a pod, and because a real node reaches the
service range through its uplink's default route too.
"""

import hashlib
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypedDict

from podnet.api.types import Obj

VXLAN_DEV = "podnet.1"
VNI = 1
VXLAN_PORT = 8472
VXLAN_OVERHEAD = 50
UPLINK = "eth0"
SERVICE_CIDR = "10.96.0.0/12"
MODES = ("vxlan", "host-gw", "bgp")
ANN_BACKEND = "podnet.io/backend-type"
ANN_VTEP = "podnet.io/vtep-mac"


class RoutingError(Exception):
    pass


@dataclass(frozen=True)
class Route:
    dst: str
    gw: str | None  # None: a device route (scope link)
    dev: str
    onlink: bool = False


@dataclass(frozen=True)
class Neigh:
    ip: str
    mac: str
    dev: str


@dataclass(frozen=True)
class Fdb:
    mac: str
    dst: str
    dev: str


@dataclass(frozen=True)
class Peer:
    name: str
    ip: str
    cidr: str
    vtep_mac: str


class VxlanDevice(TypedDict):
    name: str
    vni: int
    port: int
    local: str  # the node's InternalIP
    mac: str
    mtu: int
    address: str  # <own podCIDR network>/32


@dataclass
class Desired:
    mode: str
    device: VxlanDevice | None = None  # the VXLAN device, or None
    routes: set[Route] = field(default_factory=set)
    neighs: set[Neigh] = field(default_factory=set)
    fdbs: set[Fdb] = field(default_factory=set)


def vtep_mac(node_name: str) -> str:
    """Locally administered unicast, stable per node name."""
    d = hashlib.sha1(("vtep/" + node_name).encode()).digest()
    return ":".join("%02x" % b for b in bytes([(d[0] & 0xFC) | 0x02]) + d[1:6])


def internal_ip(node: Obj) -> str | None:
    for a in node.get("status", {}).get("addresses", []):
        if a.get("type") == "InternalIP":
            address: str | None = a.get("address")
            return address
    return None


def peers(self_name: str, nodes: Iterable[Obj]) -> list[Peer]:
    """Other nodes that can be routed to: a podCIDR and an InternalIP."""
    out: list[Peer] = []
    for n in nodes:
        name = n["metadata"]["name"]
        cidr, ip = n.get("spec", {}).get("podCIDR"), internal_ip(n)
        if name == self_name or not cidr or not ip:
            continue
        mac = n["metadata"].get("annotations", {}).get(ANN_VTEP) or vtep_mac(name)
        out.append(Peer(name, ip, cidr, mac))
    return sorted(out, key=lambda p: p.name)


def plan(
    mode: str,
    self_node: str,
    nodes: Sequence[Obj],
    underlay: str,
    direct_routing: bool = False,
    underlay_mtu: int = 1500,
    service_cidr: str | None = SERVICE_CIDR,
    encryption: str = "none",
) -> Desired:
    """-> Desired for the node named self_node (its own Node object must be in
    nodes). service_cidr: the Services' range, routed to the uplink (None: no
    such route). encryption "wireguard": peers are reached through podnet.wg."""
    if mode not in MODES:
        raise RoutingError("routing mode %r: one of %s" % (mode, ", ".join(MODES)))
    me = next((n for n in nodes if n["metadata"]["name"] == self_node), None)
    local = internal_ip(me) if me is not None else None
    if me is None or not me.get("spec", {}).get("podCIDR") or not local:
        return Desired(mode)  # not registered yet: nothing to program
    segment = ipaddress.ip_network(underlay)
    want = Desired(mode)
    if service_cidr:
        want.routes.add(Route(str(ipaddress.ip_network(service_cidr)), None, UPLINK))
    if encryption == "wireguard":
        from podnet.routing import wireguard

        for cidr, _node in wireguard.peer_routes(self_node, nodes):
            want.routes.add(Route(cidr, None, wireguard.DEV))
        return want
    others = peers(self_node, nodes)
    if mode == "bgp":
        return want
    if mode == "host-gw":
        for p in others:
            if ipaddress.ip_address(p.ip) not in segment:
                raise RoutingError(
                    "host-gw: node %s (%s) is not on this node's L2 segment %s; "
                    "use vxlan or bgp for nodes behind a router" % (p.name, p.ip, segment)
                )
            want.routes.add(Route(p.cidr, p.ip, UPLINK))
        return want
    own = ipaddress.ip_network(me["spec"]["podCIDR"])
    want.device = {
        "name": VXLAN_DEV,
        "vni": VNI,
        "port": VXLAN_PORT,
        "local": local,
        "mac": vtep_mac(self_node),
        "mtu": underlay_mtu - VXLAN_OVERHEAD,
        "address": "%s/32" % own.network_address,
    }
    for p in others:
        if direct_routing and ipaddress.ip_address(p.ip) in segment:
            want.routes.add(Route(p.cidr, p.ip, UPLINK))
            continue
        gw = str(ipaddress.ip_network(p.cidr).network_address)
        want.routes.add(Route(p.cidr, gw, VXLAN_DEV, onlink=True))
        want.neighs.add(Neigh(gw, p.vtep_mac, VXLAN_DEV))
        want.fdbs.add(Fdb(p.vtep_mac, p.ip, VXLAN_DEV))
    return want


def pod_mtu(mode: str, underlay_mtu: int = 1500, encryption: str = "none") -> int:
    """The MTU pods should use: the overlay costs 50 bytes of every packet,
    WireGuard 60 (it replaces the overlay: see routing/wireguard.py)."""
    if encryption == "wireguard":
        from podnet.routing import wireguard

        return wireguard.pod_mtu(underlay_mtu)
    return underlay_mtu - VXLAN_OVERHEAD if mode == "vxlan" else underlay_mtu
