"""Service ClusterIPs and NodePorts: unique across namespaces, under
concurrent writes, and with several API servers on one store.

kube-apiserver keeps each range as a bitmap object (RangeAllocation) that
it updates with compare-and-swap, and a repair loop that frees what a
crash between the bitmap write and the Service write leaked; since 1.27
its ClusterIPs can instead be one IPAddress object per address. podnet
takes the second shape and drops the leak: one record per allocated value,

    /allocations/serviceips/<ip>         /allocations/servicenodeports/<port>

written in the SAME store txn as the Service that holds it (a new value:
the record must be absent) and deleted in the txn that deletes the Service
or stops using the value. So a record exists exactly when a stored Service
holds its value: a create that fails leaves nothing allocated, and when two
API servers pick the same free value at once, the second txn fails on the
record's key and the registry picks again (an explicitly requested value
gets 422 "provided IP/port is already allocated" instead). A record per
value, not one bitmap, also keeps concurrent creates of different values
from conflicting with each other.

The records live outside /registry/: the watch cache sees only Services,
one event per revision (each txn has exactly one /registry/ write).

What is free: what has no record (the store's, not a cache's view, so
another API server's last write counts). A Service stored by a podnet from
before the records gets them when an API server starts (Registry.
record_allocations, kube-apiserver's repair loop in one pass). The first
pick scans the range from its start (deterministic with one server); a
pick after a lost race starts at a random offset, so racing servers
spread out.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Callable, Iterable
from typing import Any

from podnet.store.base import Op, Store

Obj = dict[str, Any]
IPS = "/allocations/serviceips/"
PORTS = "/allocations/servicenodeports/"
ATTEMPTS = 20  # txns per write before giving up (each lost race costs one)


class Refused(Exception):
    """The Service asks for a value it cannot have: .path, .reason (a 422)."""

    def __init__(self, path: str, reason: str):
        super().__init__("%s: %s" % (path, reason))
        self.path, self.reason = path, reason


def node_ports_on(spec: Obj) -> bool:
    return spec.get("type") in ("NodePort", "LoadBalancer")


def claims(svc: Obj | None) -> dict[str, str]:
    """The record keys of the values a Service holds -> the field path of each."""
    if svc is None:
        return {}
    spec = svc.get("spec") or {}
    out: dict[str, str] = {}
    ip = spec.get("clusterIP")
    if ip and ip != "None" and spec.get("type") != "ExternalName":
        out[IPS + ip] = "spec.clusterIPs"
    if node_ports_on(spec):
        for i, p in enumerate(spec.get("ports") or []):
            if p.get("nodePort"):
                out.setdefault(PORTS + str(p["nodePort"]), "spec.ports[%d].nodePort" % i)
        if spec.get("healthCheckNodePort"):
            out.setdefault(PORTS + str(spec["healthCheckNodePort"]), "spec.healthCheckNodePort")
    return out


def _record(svc: Obj, value: str) -> Obj:
    meta = svc["metadata"]
    return {
        "kind": "ServiceAllocation",
        "metadata": {"name": value},
        "owner": {"namespace": meta.get("namespace"), "name": meta["name"], "uid": meta.get("uid")},
    }


class Allocator:
    def __init__(self, store: Store):
        self.store = store

    def _taken(self, svc: Obj) -> tuple[set[str], set[int]]:
        """(ClusterIPs, NodePorts) recorded for any Service but `svc`: read
        from the store, not a cache, so another API server's last write counts."""
        uid = svc["metadata"].get("uid")
        ips = {k[len(IPS) :] for k, rec, _ in self.store.list(IPS)[0] if _owner_uid(rec) != uid}
        ports = {int(k[len(PORTS) :]) for k, rec, _ in self.store.list(PORTS)[0] if _owner_uid(rec) != uid}
        return ips, ports

    def recorded(self) -> dict[str, Any]:
        """Every record key -> the uid of the Service that holds it."""
        return {k: _owner_uid(rec) for prefix in (IPS, PORTS) for k, rec, _ in self.store.list(prefix)[0]}

    def unrecorded(self, svc: Obj, recorded: dict[str, Any]) -> list[Op]:
        """Record ops for what a stored Service holds without a record (one
        stored by a podnet from before the records); [] when all are there."""
        uid = svc["metadata"].get("uid")
        return [Op(k, _record(svc, k.rsplit("/", 1)[1]), 0) for k in claims(svc) if recorded.get(k) != uid]

    def assign(
        self, svc: Obj, old: Obj | None, cidr: Any, node_ports: range, spread: bool = False
    ) -> tuple[list[Op], set[str]]:
        """Fill in the values `svc` lacks and check the ones it names (old: the
        stored Service an update replaces, whose values it may keep).
        -> (the ops that record new values and free dropped ones, the record
        keys of values picked here rather than asked for). Raises Refused."""
        spec = svc["spec"]
        if spec.get("type") == "ExternalName":
            spec.pop("clusterIP", None)
            spec.pop("clusterIPs", None)
            return self._ops(svc, old), set()
        mine = claims(old)
        ips, ports = self._taken(svc)
        picked: set[str] = set()
        net = ipaddress.ip_network(cidr)
        ip = spec.get("clusterIP")
        if ip in (None, ""):
            # .1 is the kubernetes Service, .10 the cluster DNS
            reserved = {str(net.network_address + 1), str(net.network_address + 10)}
            got = _first_free(
                (str(a) for a in _cycle(net, spread)),
                lambda a: a not in ips and a not in reserved and IPS + a not in mine,
            )
            if got is None:
                raise Refused("spec.clusterIP", "no free address left in the service range %s" % net)
            spec["clusterIP"] = got
            picked.add(IPS + got)
        elif ip != "None":
            if ipaddress.ip_address(ip) not in net:
                raise Refused(
                    "spec.clusterIPs",
                    'Invalid value: []string{"%s"}: failed to allocate IP %s: the provided IP (%s) is not in the '
                    "valid range. The range of valid IPs is %s" % (ip, ip, ip, net),
                )
            if ip in ips:
                raise Refused(
                    "spec.clusterIPs",
                    'Invalid value: []string{"%s"}: failed to allocate IP %s: provided IP is already allocated'
                    % (ip, ip),
                )
        if spec.get("clusterIP") and spec["clusterIP"] != "None":
            spec["clusterIPs"] = [spec["clusterIP"]]
        if node_ports_on(spec):
            picked |= self._node_ports(spec, ports, node_ports, spread)
        else:
            for p in spec.get("ports") or []:
                p.pop("nodePort", None)
            spec.pop("healthCheckNodePort", None)
        return self._ops(svc, old), picked

    def _node_ports(self, spec: Obj, taken: set[int], rng: range, spread: bool) -> set[str]:
        picked: set[str] = set()
        span = "%d-%d" % (rng[0], rng[-1])
        asked = {p["nodePort"] for p in spec.get("ports") or [] if p.get("nodePort")}
        for i, p in enumerate(spec.get("ports") or []):
            n = p.get("nodePort")
            if n:
                _check_port(n, "spec.ports[%d].nodePort" % i, taken, rng)
                continue
            got = _first_free(_cycle(rng, spread), lambda n: n not in taken and n not in asked)
            if got is None:
                raise Refused("spec.ports[%d].nodePort" % i, "no free port left in %s" % span)
            p["nodePort"] = got
            asked.add(got)
            picked.add(PORTS + str(got))
        # a LoadBalancer with externalTrafficPolicy Local: the port each node
        # answers health checks on (200 with a local endpoint, 503 without)
        local_lb = spec.get("type") == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local"
        hc = spec.get("healthCheckNodePort")
        if not local_lb:
            spec.pop("healthCheckNodePort", None)
        elif hc:
            if hc in asked:
                raise Refused("spec.healthCheckNodePort", "Invalid value: %d: is also a nodePort of this Service" % hc)
            _check_port(hc, "spec.healthCheckNodePort", taken, rng)
        else:
            got = _first_free(_cycle(rng, spread), lambda n: n not in taken and n not in asked)
            if got is None:
                raise Refused("spec.healthCheckNodePort", "no free port left in %s" % span)
            spec["healthCheckNodePort"] = got
            picked.add(PORTS + str(got))
        return picked

    @staticmethod
    def _ops(svc: Obj, old: Obj | None) -> list[Op]:
        want, have = claims(svc), claims(old)
        ops = [Op(k, _record(svc, k.rsplit("/", 1)[1]), 0) for k in want if k not in have]
        # a dropped value's record is this Service's: the txn also checks the
        # Service's own revision, so it still holds what `old` says
        return ops + [Op(k) for k in have if k not in want]

    @staticmethod
    def release(svc: Obj) -> list[Op]:
        """The ops that free everything a Service being deleted holds."""
        return [Op(k) for k in claims(svc)]


def _owner_uid(rec: Obj) -> Any:
    return (rec.get("owner") or {}).get("uid")


def _check_port(n: int, path: str, taken: set[int], rng: range) -> None:
    if n not in rng:
        raise Refused(
            path,
            "Invalid value: %d: provided port is not in the valid range. The range of valid ports is %d-%d"
            % (n, rng[0], rng[-1]),
        )
    if n in taken:
        raise Refused(path, "Invalid value: %d: provided port is already allocated" % n)


def _cycle(values: Any, spread: bool) -> Iterable[Any]:
    """Every value of a port range, or every host address of a network (not
    its network or broadcast address), from the start or (spread) from a
    random offset, wrapping around."""
    if isinstance(values, range):
        first, count, make = values[0] if values else 0, len(values), int
    else:
        n = values.num_addresses
        lo, hi = (1, n - 1) if values.version == 4 and n > 2 else ((1, n) if n > 1 else (0, n))
        first, count = int(values.network_address) + lo, hi - lo
        make = type(values.network_address)
    start = random.randrange(count) if spread and count else 0
    for i in range(count):
        yield make(first + (start + i) % count)


def _first_free(values: Iterable[Any], free: Callable[[Any], bool]) -> Any:
    for v in values:
        if free(v):
            return v
    return None
