"""podnet-ipam: the host-local compatible IPAM plugin, plus GC and STATUS.

Reads the `ipam` section of the network config (ranges or the older
single-subnet form, routes, dataDir) and answers with addresses from a
FileStore that the Go host-local can share. A requested address comes from
CNI_ARGS `IP=` (comma-separated for dual stack) or runtimeConfig `ips`.
"""

import ipaddress
import os

from podnet.cni.errors import (
    ADDRESS_IN_USE,
    INTERNAL,
    INVALID_CONFIG,
    INVALID_ENV,
    IO_FAILURE,
    NOT_AVAILABLE,
    RANGE_EXHAUSTED,
    CNIError,
)
from podnet.cni.spec import route_attrs, valid_attachments
from podnet.ipam.allocator import AddressInUse, Allocator, Exhausted, NotInRange
from podnet.ipam.ranges import RangeError, parse_range_sets
from podnet.ipam.store import FileStore


def _ipam_section(conf):
    ipam = conf.get("ipam")
    if not isinstance(ipam, dict):
        raise CNIError(INVALID_CONFIG, "ipam: missing or not an object")
    return ipam


def _network_name(conf):
    name = conf.get("name")
    if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
        raise CNIError(INVALID_CONFIG, "name: missing or not a valid network name")
    return name


def parse_routes(ipam):
    routes = ipam.get("routes", [])
    if not isinstance(routes, list):
        raise CNIError(INVALID_CONFIG, "ipam.routes: must be a list")
    out = []
    for i, r in enumerate(routes):
        if not isinstance(r, dict) or not isinstance(r.get("dst"), str):
            raise CNIError(INVALID_CONFIG, "ipam.routes[%d].dst: missing" % i)
        try:
            dst = ipaddress.ip_network(r["dst"], strict=False)
            gw = ipaddress.ip_address(r["gw"]) if r.get("gw") else None
        except ValueError as exc:
            raise CNIError(INVALID_CONFIG, "ipam.routes[%d]: %s" % (i, exc)) from None
        route = {"dst": str(dst)}
        if gw:
            route["gw"] = str(gw)
        route.update(route_attrs(r, "ipam.routes[%d]" % i, strict=True))
        out.append(route)
    return out


def allocator_for(conf):
    ipam = _ipam_section(conf)
    try:
        sets = parse_range_sets(ipam)
    except RangeError as exc:
        raise CNIError(INVALID_CONFIG, str(exc)) from None
    data_dir = ipam.get("dataDir")
    if data_dir is not None and not isinstance(data_dir, str):
        raise CNIError(INVALID_CONFIG, "ipam.dataDir: must be a string")
    try:
        store = FileStore(_network_name(conf), data_dir)
    except OSError as exc:
        raise CNIError(
            IO_FAILURE, "ipam.dataDir: cannot use %s" % (data_dir or "/var/lib/cni/networks"), exc.strerror or str(exc)
        ) from None
    return Allocator(sets, store)


def requested_ips(args):
    wanted = []
    text = args.args.get("IP", "")
    for part in filter(None, text.split(",")):
        try:
            wanted.append(ipaddress.ip_interface(part.strip()).ip)
        except ValueError:
            raise CNIError(INVALID_ENV, "CNI_ARGS IP: invalid address %r" % part) from None
    ips = args.runtime_config.get("ips", [])
    if not isinstance(ips, list):
        raise CNIError(INVALID_CONFIG, "runtimeConfig.ips: must be a list")
    for i, part in enumerate(ips):
        try:
            wanted.append(ipaddress.ip_interface(part).ip)
        except (ValueError, TypeError):
            raise CNIError(INVALID_CONFIG, "runtimeConfig.ips[%d]: invalid address %r" % (i, part)) from None
    return wanted


def add(args):
    alloc = allocator_for(args.conf)
    routes = parse_routes(args.conf["ipam"])
    wanted = requested_ips(args)
    try:
        got = alloc.allocate(args.container_id, args.ifname, wanted)
    except Exhausted as exc:
        raise CNIError(RANGE_EXHAUSTED, "no free address", str(exc)) from None
    except AddressInUse as exc:
        raise CNIError(ADDRESS_IN_USE, "address unavailable", str(exc)) from None
    except NotInRange as exc:
        code = INVALID_ENV if args.args.get("IP") else INVALID_CONFIG
        raise CNIError(code, "requested address outside the ranges", str(exc)) from None
    except OSError as exc:
        raise CNIError(IO_FAILURE, "ipam: store I/O failed", str(exc)) from None
    ips = []
    for ip, rng in got:
        entry = {"address": "%s/%d" % (ip, rng.subnet.prefixlen)}
        if rng.gateway is not None:
            entry["gateway"] = str(rng.gateway)
        ips.append(entry)
    return {"cniVersion": args.version, "ips": ips, "routes": routes, "dns": {}}


def delete(args):
    try:
        alloc = allocator_for(args.conf)
    except CNIError as exc:
        if exc.code == IO_FAILURE:
            return None  # no dataDir: nothing was ever allocated
        raise
    hint = []
    prev = args.conf.get("prevResult")
    if isinstance(prev, dict):
        for ip in prev.get("ips") or []:
            try:
                hint.append(ipaddress.ip_interface(ip["address"]).ip)
            except (KeyError, TypeError, ValueError):
                hint = []
                break
    try:
        alloc.release(args.container_id, args.ifname, hint)
    except OSError as exc:
        raise CNIError(IO_FAILURE, "ipam: release failed", str(exc)) from None
    return None


def check(args):
    alloc = allocator_for(args.conf)
    held = alloc.held(args.container_id, args.ifname)
    if len(held) < len(alloc.sets):
        raise CNIError(
            INTERNAL,
            "ipam: container %s/%s holds no address in every range set" % (args.container_id, args.ifname),
            "holds: %s" % (", ".join(map(str, held)) or "nothing"),
        )
    return None


def gc(args):
    alloc = allocator_for(args.conf)
    valid = valid_attachments(args.conf)
    released = alloc.gc(valid)
    if released:
        os.write(2, ("podnet-ipam: gc released %s\n" % ", ".join(map(str, released))).encode())
    return None


def status(args):
    alloc = allocator_for(args.conf)
    if not os.access(alloc.store.dir, os.W_OK):
        raise CNIError(NOT_AVAILABLE, "ipam: dataDir %s is not writable" % alloc.store.dir)
    for rset, free in zip(alloc.sets, alloc.free_counts(), strict=True):
        if free <= 0:
            raise CNIError(
                NOT_AVAILABLE, "ipam: no free address", "range %s is exhausted" % ", ".join(str(r.subnet) for r in rset)
            )
    return None


HANDLERS = {"ADD": add, "DEL": delete, "CHECK": check, "GC": gc, "STATUS": status}
