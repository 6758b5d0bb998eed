"""The cluster's DNS records, as a pure function of Services and EndpointSlices.

Follows the Kubernetes DNS-based service discovery specification 1.1.0
(kubernetes/dns docs/specification.md), zone `cluster.local` by default:

    dns-version.<zone>                      TXT  "1.1.0"
    <svc>.<ns>.svc.<zone>                   A/AAAA <clusterIP>        (ClusterIP services)
                                            A/AAAA <each ready endpoint> (headless)
                                            CNAME <externalName>     (ExternalName)
    <host>.<svc>.<ns>.svc.<zone>            A/AAAA <endpoint>        (headless; host = the
                                            endpoint's hostname, else its address with
                                            dashes, as CoreDNS names them)
    _<port>._<proto>.<svc>.<ns>.svc.<zone>  SRV 0 <weight> <port> <target>  (named ports)
    <reverse of clusterIP / endpoint>       PTR <svc or host name>

An endpoint's hostname is what its EndpointSlice says: the controller
(controllers/planners.py should_set_hostname) sets it only when the pod's
spec.subdomain is the Service's name, so `<hostname>.<svc>` is NXDOMAIN in any
other Service that selects the pod (that one has the dashed name only).

A headless service without ready endpoints has no records at all, so its
name is NXDOMAIN (not NODATA), as the issue asks. Endpoints count when
`conditions.ready` is not false, or always with publishNotReadyAddresses.

Nothing here does I/O or imports a DNS library: the output is plain text
records that answers.py turns into wire format, so every rule is unit-tested
on its own.
"""

import ipaddress

ZONE = "cluster.local"
SPEC_VERSION = "1.1.0"
TTL = 5  # CoreDNS' kubernetes plugin default: names follow the store quickly
SERVICE_LABEL = "kubernetes.io/service-name"


def absolute(name):
    name = name.lower()
    return name if name.endswith(".") else name + "."


def reverse_name(ip):
    return ipaddress.ip_address(ip).reverse_pointer + "."


def _rr_type(ip):
    return "AAAA" if ipaddress.ip_address(ip).version == 6 else "A"


def _endpoint_host(ep, ip):
    if ep.get("hostname"):
        return ep["hostname"].lower()
    # 10.244.1.5 -> 10-244-1-5; fd00::5 -> fd00--5 (CoreDNS' endpoint names)
    return ip.replace(".", "-").replace(":", "-")


def _ready(ep, publish_not_ready):
    return publish_not_ready or (ep.get("conditions") or {}).get("ready") is not False


class Records:
    """owner name (absolute, lower case) -> list of (type, rdata text)."""

    def __init__(self, zone=ZONE, reverse=()):
        self.zone = absolute(zone) if zone else ""
        self.zones = [self.zone] if zone else []  # apexes we answer for (SOA in negative answers)
        # address ranges whose reverse names we answer for (NXDOMAIN when unknown);
        # other reverse names are forwarded, as CoreDNS' fallthrough does
        self.reverse = [ipaddress.ip_network(c) for c in reverse]
        self.ttl = TTL if zone else 300
        self.names = {}

    def add(self, owner, rtype, rdata):
        entries = self.names.setdefault(absolute(owner), [])
        if (rtype, rdata) not in entries:
            entries.append((rtype, rdata))

    def get(self, owner, rtype=None):
        return [r for t, r in self.names.get(absolute(owner), []) if rtype is None or t == rtype]


def soa(zone, serial=1):
    """The zone's SOA rdata; the last field (negative TTL) is the TTL too."""
    zone = absolute(zone)
    return "ns.dns.%s hostmaster.%s %d 7200 1800 86400 %d" % (zone, zone, serial % (1 << 32), TTL)


def _slices_by_service(slices):
    out = {}
    for s in slices:
        svc = (s.get("metadata", {}).get("labels") or {}).get(SERVICE_LABEL)
        if svc:
            out.setdefault((s["metadata"].get("namespace", "default"), svc), []).append(s)
    return out


def _srv_weight(n):
    return max(1, 100 // max(1, n))


SERVICE_CIDR = "10.96.0.0/12"
CLUSTER_CIDR = "10.244.0.0/16"


def build(services, slices, zone=ZONE, serial=1, reverse=(SERVICE_CIDR, CLUSTER_CIDR)):
    """-> Records for the whole cluster. Services with unusable addresses are
    skipped rather than failing the rest (the API validated them already)."""
    rec = Records(zone, reverse)
    z = rec.zone
    rec.add(z, "SOA", soa(z, serial))
    rec.add("dns-version." + z, "TXT", '"%s"' % SPEC_VERSION)
    by_svc = _slices_by_service(slices)
    for svc in sorted(services, key=lambda s: (s["metadata"].get("namespace", ""), s["metadata"]["name"])):
        meta, spec = svc["metadata"], svc.get("spec") or {}
        ns = meta.get("namespace", "default")
        base = "%s.%s.svc.%s" % (meta["name"].lower(), ns.lower(), z)
        if spec.get("type") == "ExternalName":
            if spec.get("externalName"):
                rec.add(base, "CNAME", absolute(spec["externalName"]))
            continue
        cluster_ips = [ip for ip in (spec.get("clusterIPs") or [spec.get("clusterIP")]) if ip and ip != "None"]
        if cluster_ips:
            _cluster_ip_service(rec, base, spec, cluster_ips)
        elif spec.get("clusterIP") == "None":
            _headless_service(rec, base, spec, by_svc.get((ns, meta["name"]), []))
    return rec


def _cluster_ip_service(rec, base, spec, ips):
    for ip in ips:
        try:
            rec.add(base, _rr_type(ip), ip)
            rec.add(reverse_name(ip), "PTR", base)
        except ValueError:
            continue
    for p in spec.get("ports") or []:
        if p.get("name"):
            owner = "_%s._%s.%s" % (p["name"].lower(), p.get("protocol", "TCP").lower(), base)
            rec.add(owner, "SRV", "0 100 %d %s" % (p["port"], base))


def _headless_service(rec, base, spec, slices):
    publish = bool(spec.get("publishNotReadyAddresses"))
    ready = []  # (ip, host, slice ports)
    for s in sorted(slices, key=lambda s: s["metadata"]["name"]):
        if s.get("addressType", "IPv4") not in ("IPv4", "IPv6"):
            continue
        for ep in s.get("endpoints") or []:
            if not _ready(ep, publish):
                continue
            for ip in ep.get("addresses") or []:
                try:
                    ipaddress.ip_address(ip)
                except ValueError:
                    continue
                ready.append((ip, _endpoint_host(ep, ip), s.get("ports") or []))
    srv = {}
    for ip, host, ports in ready:
        target = "%s.%s" % (host, base)
        rec.add(base, _rr_type(ip), ip)
        rec.add(target, _rr_type(ip), ip)
        rec.add(reverse_name(ip), "PTR", target)
        for p in ports:
            if p.get("name") and p.get("port"):
                owner = "_%s._%s.%s" % (p["name"].lower(), p.get("protocol", "TCP").lower(), base)
                srv.setdefault(owner, []).append((p["port"], target))
    for owner, targets in srv.items():
        w = _srv_weight(len(targets))
        for port, target in targets:
            rec.add(owner, "SRV", "0 %d %d %s" % (w, port, target))


def static(lines, default_ttl=300):
    """Records from text lines `NAME [TTL] [IN] TYPE RDATA` (the external
    resolver's "internet"); the zones are the owners of SOA lines."""
    rec = Records("")
    rec.ttl = default_ttl
    for n, line in enumerate(lines, 1):
        line = line.split(";", 1)[0].strip()
        if not line:
            continue
        parts = line.split(None, 1)
        if len(parts) < 2:
            raise ValueError("line %d: %r: need NAME TYPE RDATA" % (n, line))
        owner, rest = parts[0], parts[1].split()
        if rest and rest[0].isdigit():
            rest = rest[1:]
        if rest and rest[0].upper() == "IN":
            rest = rest[1:]
        if len(rest) < 2:
            raise ValueError("line %d: %r: need NAME TYPE RDATA" % (n, line))
        rtype = rest[0].upper()
        rec.add(owner, rtype, " ".join(rest[1:]))
        if rtype == "SOA":
            rec.zones.append(absolute(owner))
    if not rec.zones:
        raise ValueError("static records need at least one SOA line (the zones served)")
    return rec
