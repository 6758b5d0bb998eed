"""Address ranges as host-local understands them, parsed and checked.

Pure: no I/O. A config has one or more *range sets* (one address is handed out
per set, so a v4 set plus a v6 set gives dual stack); a set holds one or more
ranges of the same family. Defaults follow host-local so an existing config
means the same thing here: rangeStart = network + 1, rangeEnd = the last
address (IPv4: the one before broadcast), gateway = network + 1, and the
gateway is never handed out.
"""

import ipaddress
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

Address = ipaddress._BaseAddress
"""An IPv4Address or IPv6Address. Their common base class rather than the
union: the type checker refuses `a <= b` across the union's members even
where the code has made sure both are of one family."""

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class RangeError(ValueError):
    """Bad range config; the message starts with the field path."""


@dataclass(frozen=True)
class Range:
    subnet: Network
    start: Address
    end: Address
    gateway: Address

    def __contains__(self, ip: Address) -> bool:
        return ip.version == self.subnet.version and self.start <= ip <= self.end

    def overlaps(self, other: "Range") -> bool:
        return self.subnet.version == other.subnet.version and self.start <= other.end and other.start <= self.end

    @property
    def size(self) -> int:
        return int(self.end) - int(self.start) + 1


def _addr(value: object, path: str) -> Address:
    if not isinstance(value, str):
        raise RangeError("%s: must be a string" % path)
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        raise RangeError("%s: invalid IP address %r" % (path, value)) from None


def parse_range(doc: object, path: str) -> Range:
    if not isinstance(doc, dict):
        raise RangeError("%s: must be an object" % path)
    raw = doc.get("subnet")
    if not isinstance(raw, str):
        raise RangeError("%s.subnet: missing" % path)
    try:
        iface = ipaddress.ip_interface(raw)
    except ValueError:
        raise RangeError("%s.subnet: invalid CIDR %r" % (path, raw)) from None
    subnet = iface.network
    last_usable = subnet.broadcast_address - 1 if subnet.version == 4 else subnet.broadcast_address
    if subnet.num_addresses < (4 if subnet.version == 4 else 2):
        raise RangeError("%s.subnet: %s is too small to hold addresses" % (path, subnet))
    start = _addr(doc["rangeStart"], path + ".rangeStart") if "rangeStart" in doc else subnet.network_address + 1
    end = _addr(doc["rangeEnd"], path + ".rangeEnd") if "rangeEnd" in doc else last_usable
    gateway = _addr(doc["gateway"], path + ".gateway") if "gateway" in doc else subnet.network_address + 1
    for name, ip in (("rangeStart", start), ("rangeEnd", end), ("gateway", gateway)):
        if ip.version != subnet.version or ip not in subnet:
            raise RangeError("%s.%s: %s is not in subnet %s" % (path, name, ip, subnet))
    if start > end:
        raise RangeError("%s.rangeStart: %s is after rangeEnd %s" % (path, start, end))
    if start == subnet.network_address:
        raise RangeError("%s.rangeStart: %s is the network address" % (path, start))
    return Range(subnet, start, end, gateway)


def parse_range_sets(ipam: dict[str, Any]) -> list[list[Range]]:
    """ipam config -> list of range sets (each a list of Range).

    Accepts `ranges` or the older single-range form with a top-level
    `subnet` (the form in most tutorials)."""
    if "ranges" in ipam:
        sets = ipam["ranges"]
        if not isinstance(sets, list) or not sets:
            raise RangeError("ipam.ranges: must be a non-empty list of range sets")
        parsed: list[list[Range]] = []
        for i, rset in enumerate(sets):
            if not isinstance(rset, list) or not rset:
                raise RangeError("ipam.ranges[%d]: must be a non-empty list of ranges" % i)
            parsed.append([parse_range(r, "ipam.ranges[%d][%d]" % (i, j)) for j, r in enumerate(rset)])
    elif "subnet" in ipam:
        legacy = {k: ipam[k] for k in ("subnet", "rangeStart", "rangeEnd", "gateway") if k in ipam}
        parsed = [[parse_range(legacy, "ipam")]]
    else:
        raise RangeError("ipam.ranges: missing (or give ipam.subnet)")
    for i, rset in enumerate(parsed):
        family = rset[0].subnet.version
        for j, r in enumerate(rset):
            if r.subnet.version != family:
                raise RangeError(
                    "ipam.ranges[%d][%d].subnet: mixes IPv%d into an IPv%d range set" % (i, j, r.subnet.version, family)
                )
    everything = [(i, j, r) for i, rset in enumerate(parsed) for j, r in enumerate(rset)]
    for n, (i, j, r) in enumerate(everything):
        for i2, j2, r2 in everything[n + 1 :]:
            if r.overlaps(r2):
                raise RangeError("ipam.ranges[%d][%d]: overlaps ipam.ranges[%d][%d]" % (i2, j2, i, j))
    return parsed


def set_contains(rset: Iterable[Range], ip: Address) -> bool:
    return any(ip in r for r in rset)


def range_for(rset: Iterable[Range], ip: Address) -> Range | None:
    for r in rset:
        if ip in r:
            return r
    return None


def candidates(rset: Sequence[Range], last: Address | None) -> Iterator[tuple[Address, Range]]:
    """Every assignable address of a range set, starting after `last`.

    host-local hands addresses out round-robin from the last one reserved, so
    a freed address is not reused at once (a stale client would reach the new
    pod); the gateway and network addresses are skipped."""
    flat: list[Range] = []
    for r in rset:
        flat.append(r)
    start_index, start_ip = 0, None
    ip: Address | None
    if last is not None:
        for idx, r in enumerate(flat):
            if last in r:
                start_index, start_ip = idx, last
                break
    order = flat[start_index:] + flat[:start_index]
    first = True
    for r in order:
        ip = r.start
        if first and start_ip is not None:
            ip = start_ip + 1 if start_ip < r.end else None
        first = False
        while ip is not None and ip <= r.end:
            if ip != r.gateway:
                yield ip, r
            ip = ip + 1
    if start_ip is not None:
        # wrap around: the part of the first range up to and including `last`
        r = order[0]
        ip = r.start
        while ip <= start_ip:
            if ip != r.gateway:
                yield ip, r
            ip = ip + 1
