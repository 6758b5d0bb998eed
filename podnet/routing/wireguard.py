"""Encryption between nodes with WireGuard: what a node's WireGuard interface
should hold, as a pure function of the Node objects, and the `wg set`
arguments that take the interface from what it holds to that.

With `--encryption wireguard` every node has one interface, podnet.wg (UDP
51820), and one peer per other node that publishes a key:
    public key  the Node's annotation podnet.io/wireguard-public-key
    endpoint    the Node's InternalIP:51820 (the underlay)
    allowed IPs the Node's podCIDR(s)
and its routes to other nodes' podCIDRs go `dev podnet.wg` in every routing
mode (routing/planner.py), so WireGuard carries the pod packets itself: it
is an L3 overlay of its own, and VXLAN inside it would only cost 50 more
bytes per packet. vxlan: no VXLAN device; host-gw: the routes go through the
tunnel instead of via the peer (so nodes need only IP reachability); bgp:
BIRD still runs (LoadBalancer announcements, the sessions in `get nodes`)
and learns the podCIDRs, but keeps them out of the kernel (a plain route via
eth0 would carry pod traffic in clear whenever podnet.wg is down). A guard
route, `unreachable <cluster CIDR>` (routing/wgapply.py), under the /24s
makes a packet for another node's pod fail while podnet.wg is down rather
than take the default route. Traffic inside a node never leaves cni0.

The interface holds <own podCIDR network>/32 (as podnet.1 does with vxlan):
the kernel takes a source address from the outgoing device, so the node's
own traffic to remote pods leaves from an address inside its podCIDR, which
is what the peer's allowed IPs accept (cryptokey routing drops any other
source), and the answer comes back through the tunnel.

A node that has not published a key yet still gets its route through
podnet.wg, with no peer behind it: pod traffic to it fails (ENOKEY) rather
than leave in clear.

The pod MTU is the underlay's minus 60 (IPv4 20 + UDP 8 + WireGuard's
header 16 and tag 16; WireGuard's padding stops at the MTU).
"""

import base64
import ipaddress
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from podnet.api.types import Obj

DEV = "podnet.wg"
PORT = 51820
OVERHEAD = 60
ENCRYPTIONS = ("none", "wireguard")
ANN_KEY = "podnet.io/wireguard-public-key"
ANN_IMPL = "podnet.io/wireguard-implementation"
ANN_HANDSHAKES = "podnet.io/wireguard-handshakes"  # "node2=<unix s>,node3=0": the latest handshake per peer
KEY_FILE = "wireguard.key"
# Every peer gets a keepalive: setting it sends one at once, so a restarted
# wireguard-go (or a new key) handshakes with every peer right away instead
# of waiting for the other side's 15 s "no answer" timer; and handshakes stay
# fresh (one per 2 minutes), so their age in `get nodes` says the tunnel works.
KEEPALIVE = 25


class KeyError_(ValueError):
    pass


@dataclass(frozen=True)
class WgPeer:
    node: str
    public_key: str
    endpoint: str  # ip:port
    allowed_ips: tuple[str, ...]  # sorted


@dataclass
class WgDesired:
    name: str
    port: int
    mtu: int
    address: str | None  # <own podCIDR network>/32, None before the node has one
    peers: dict[str, WgPeer]  # by public key


# ---- keys (X25519, as `wg genkey` / `wg pubkey`) -----------------------------------


def generate_private_key() -> str:
    """32 random bytes, clamped as Curve25519 wants them (what `wg genkey` prints), base64."""
    raw = bytearray(os.urandom(32))
    raw[0] &= 248
    raw[31] = (raw[31] & 127) | 64
    return base64.b64encode(bytes(raw)).decode()


def public_key(private_b64: str) -> str:
    """`wg pubkey`: the X25519 public key of a base64 private key."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    try:
        raw = base64.b64decode(private_b64.strip(), validate=True)
    except ValueError:
        raise KeyError_("WireGuard private key: not base64") from None
    if len(raw) != 32:
        raise KeyError_("WireGuard private key: %d bytes, want 32" % len(raw))
    pub = X25519PrivateKey.from_private_bytes(raw).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(pub).decode()


def valid_public_key(key: object) -> bool:
    if not isinstance(key, str):
        return False
    try:
        return len(base64.b64decode(key, validate=True)) == 32
    except ValueError:
        return False


# ---- the plan ----------------------------------------------------------------------


def _internal_ip(node: Obj) -> str | None:
    for a in node.get("status", {}).get("addresses", []):
        if a.get("type") == "InternalIP":
            address: str | None = a.get("address")
            return address
    return None


def pod_cidrs(node: Obj) -> tuple[str, ...]:
    spec = node.get("spec") or {}
    cidrs = spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else [])
    return tuple(sorted(str(ipaddress.ip_network(c)) for c in cidrs))


def plan(self_node: str, nodes: Iterable[Obj], underlay_mtu: int = 1500) -> WgDesired:
    """The interface of node `self_node`: one peer per other node with a
    podCIDR, an InternalIP and a valid public key. Two nodes publishing the
    same key (a copied state dir) are both left out: WireGuard keys a peer
    by its key, and either node's pods could then claim the other's range."""
    nodes = list(nodes)
    me = next((n for n in nodes if n["metadata"]["name"] == self_node), None)
    own = pod_cidrs(me) if me is not None else ()
    address = "%s/32" % ipaddress.ip_network(own[0]).network_address if own else None
    cands: list[WgPeer] = []
    for n in nodes:
        name = n["metadata"]["name"]
        key = (n["metadata"].get("annotations") or {}).get(ANN_KEY)
        ip, cidrs = _internal_ip(n), pod_cidrs(n)
        if name == self_node or not ip or not cidrs or not valid_public_key(key):
            continue
        cands.append(WgPeer(name, str(key), "%s:%d" % (ip, PORT), cidrs))
    count: dict[str, int] = {}
    for p in cands:
        count[p.public_key] = count.get(p.public_key, 0) + 1
    peers = {p.public_key: p for p in cands if count[p.public_key] == 1}
    return WgDesired(DEV, PORT, underlay_mtu - OVERHEAD, address, peers)


@dataclass(frozen=True)
class SeenPeer:
    """A peer as `wg show dump` reports it (the fields the plan decides)."""

    endpoint: str | None
    allowed_ips: tuple[str, ...]
    keepalive: int = 0


def set_args(want: WgDesired, listen_port: int, peers: dict[str, SeenPeer]) -> list[str]:
    """The `wg set NAME ...` arguments that make the interface hold exactly
    the planned peers (by key: endpoint, allowed IPs, the keepalive; allowed
    IPs are replaced as a whole) and listen on the planned port; [] when it does."""
    args: list[str] = []
    if listen_port != want.port:
        args += ["listen-port", str(want.port)]
    for key in sorted(set(peers) - set(want.peers)):
        args += ["peer", key, "remove"]
    for key, p in sorted(want.peers.items()):
        seen = peers.get(key)
        if (
            seen is not None
            and seen.endpoint == p.endpoint
            and tuple(sorted(seen.allowed_ips)) == p.allowed_ips
            and seen.keepalive == KEEPALIVE
        ):
            continue
        args += ["peer", key, "endpoint", p.endpoint, "allowed-ips", ",".join(p.allowed_ips)]
        args += ["persistent-keepalive", str(KEEPALIVE)]
    return args


def handshakes_annotation(want: WgDesired, latest: dict[str, int]) -> str:
    """ "node2=1733100000,node3=0": each planned peer's latest handshake
    (unix seconds, 0: none yet), by node name. `latest` is by public key."""
    by_node = sorted((p.node, latest.get(k, 0)) for k, p in want.peers.items())
    return ",".join("%s=%d" % nv for nv in by_node)


def pod_mtu(underlay_mtu: int = 1500) -> int:
    return underlay_mtu - OVERHEAD


def check_encryption(value: str | None) -> str:
    v = value or "none"
    if v not in ENCRYPTIONS:
        raise ValueError("encryption %r: one of %s" % (value, ", ".join(ENCRYPTIONS)))
    return v


def peer_routes(self_node: str, nodes: Sequence[Obj]) -> list[tuple[str, str]]:
    """(podCIDR, node) of every other node with a podCIDR: routed via podnet.wg."""
    out = []
    for n in nodes:
        if n["metadata"]["name"] == self_node:
            continue
        for c in pod_cidrs(n):
            out.append((c, n["metadata"]["name"]))
    return sorted(out)
