"""The inputs `podnet trace` explains from (pure): the probe, what each
namespace is, the lab's facts, and the kernel lookups (`Look`, injected so
unit tests answer from recordings); plus the hop record every module emits.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Protocol


class Look(Protocol):
    def route(self, ns: str, dst: str) -> dict[str, Any]: ...
    def neighbour(self, ns: str, dev: str, ip: str) -> str | None: ...
    def fdb(self, ns: str, dev: str) -> dict[str, str]: ...
    def sysctl(self, ns: str, key: str) -> str | None: ...


@dataclass
class Probe:
    proto: str
    sport: int
    src_ip: str
    dst_ip: str
    dport: int | None
    outcome: str  # reply | refused | timeout | unreachable | frag-needed | msgsize | error
    detail: str = ""
    size: int | None = None


@dataclass
class Place:
    where: str  # "pod default/client", "node node2", "external"
    node: str | None = None  # the node's name for a node netns
    kind: str = "pod"  # pod | node | external


@dataclass
class Context:
    source_ns: str
    places: dict[str, Place]  # netns -> what it is
    node_ips: dict[str, str] = field(default_factory=dict)  # node IP -> node name
    pod_cidrs: dict[str, str] = field(default_factory=dict)  # podCIDR -> node name
    services: dict[str, str] = field(default_factory=dict)  # "ip:port" -> ns/name
    routing: str = "vxlan"
    bird_down: list[str] = field(default_factory=list)  # nodes where BIRD should run and does not
    stale_conntrack: str | None = None  # a conntrack entry DNATed to a non-endpoint
    ready_endpoints: int | None = None  # of the Service traced to, when TO is one
    dest_ns: str | None = None  # the destination's namespace when it is a node or the external host


def where_short(place):
    """A culprit's "where": the node's name, else "pod ns/name" or "external"."""
    return place.node if place.kind == "node" else place.where


def hop(place, ns, step, what, obj="", verdict="continue"):
    return {"where": place.where, "netns": ns, "step": step, "what": what, "object": obj, "verdict": verdict}


def owner(ctx, ip):
    """(podCIDR, node) of a pod address, or (None, None)."""
    for cidr, node in ctx.pod_cidrs.items():
        if ipaddress.ip_address(ip) in ipaddress.ip_network(cidr):
            return cidr, node
    return None, None
