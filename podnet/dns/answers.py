"""Records -> answers: the lookup rules and the precomputed wire responses.

A `Table` is built once per change of the cluster (never per query). It holds
the records as dnspython RRsets and, for every (name, type) a client is likely
to ask (each type a name has, plus A and AAAA), the whole response already in
wire format, split around the question:

    response = query ID + pre[RD bit] + the query's own question bytes + tail

`pre` is the 10 header bytes after the ID (flags with RD copied, counts) and
`tail` the answer, authority and additional sections. The answers' owner
names are compressed to a pointer at the question (offset 12), so a client
asking in MiXeD case (0x20 randomisation) gets its own spelling back, and the
tail fits any spelling because the question's length does not change.
The server looks the question bytes up in `udp` (or `tcp`) and concatenates:
no parsing, no encoding per query. Anything unusual (EDNS, several
questions, another class, a name we have no precomputed answer for) goes
through `respond`, which parses with dnspython; its plain-query answers are
added to the table so the next identical question is fast too (bounded, and
dropped with the table at the next change).

DNS rules: NXDOMAIN and NODATA carry the zone's SOA in the authority section
(RFC 2308); a name that only exists as a parent of others (svc.cluster.local)
is NODATA, not NXDOMAIN; CNAMEs are followed inside our zones, and a target
outside them is left to the caller (`Chase`) to resolve upstream.
"""

import ipaddress
import struct

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.renderer
import dns.rrset

UDP_PLAIN = 512  # RFC 1035 limit without EDNS
EDNS_PAYLOAD = 1232  # what we offer with EDNS (DNS flag day 2020)
EXTRA_MAX = 20000  # slow-path answers remembered per table
ONE_QUESTION = b"\x00\x01\x00\x00\x00\x00\x00\x00"
IN = dns.rdataclass.IN
A, AAAA, CNAME, SRV, SOA, ANY = (
    dns.rdatatype.A,
    dns.rdatatype.AAAA,
    dns.rdatatype.CNAME,
    dns.rdatatype.SRV,
    dns.rdatatype.SOA,
    dns.rdatatype.ANY,
)
REVERSE_TEXT = ("in-addr.arpa.", "ip6.arpa.")
FORWARD = object()  # respond(): not ours, send upstream


class Chase:
    """respond(): the answer so far ends in a CNAME to a name outside our
    zones; the caller resolves (target, rdtype) upstream and calls finish()."""

    def __init__(self, table, response, target, rdtype, size):
        self.table, self.response, self.target, self.rdtype, self.size = table, response, target, rdtype, size

    def finish(self, upstream_wire):
        r = self.response
        if upstream_wire is not None:
            try:
                up = dns.message.from_wire(upstream_wire)
                r.answer += up.answer
                if not up.answer:
                    r.set_rcode(up.rcode())
            except dns.exception.DNSException:
                pass
        return render(r, self.size)


def render(r, size):
    """to_wire within `size` bytes; too large -> TC with empty sections, so
    the client retries over TCP (RFC 7766)."""
    try:
        return r.to_wire(max_size=size)
    except dns.exception.TooBig:
        r.answer, r.authority, r.additional = [], [], []
        r.flags |= dns.flags.TC
        return r.to_wire(max_size=size)


def _reverse_ip(name):
    """'5.1.244.10.in-addr.arpa.' -> IPv4Address; None for partial names."""
    labels = name.split(".")
    try:
        if name.endswith(".in-addr.arpa.") and len(labels) == 7:
            return ipaddress.IPv4Address(".".join(reversed(labels[:4])))
        if name.endswith(".ip6.arpa.") and len(labels) == 35:
            nib = "".join(reversed(labels[:32]))
            return ipaddress.IPv6Address(":".join(nib[i : i + 4] for i in range(0, 32, 4)))
    except ValueError:
        return None
    return None


def question_key(name, rdtype, rdclass=IN):
    """The bytes of a question for `name` (a Name or text) in lower case."""
    if isinstance(name, str):
        name = dns.name.from_text(name)
    return name.canonicalize().to_wire() + struct.pack("!HH", rdtype, rdclass)


def split(wire, qlen):
    """A response's wire -> (pre without RD, pre with RD, tail) around a
    question of qlen bytes."""
    flags = wire[2] & 0xFE
    pre0 = bytes((flags,)) + wire[3:12]
    pre1 = bytes((flags | 1,)) + wire[3:12]
    return pre0, pre1, wire[12 + qlen :]


class Table:
    """The answers of one version of the records.

    previous: the last Table. Only owners whose records changed are turned
    into RRsets and rendered again, plus the answers that used them (a CNAME
    chain into them, SRV additionals); everything else is taken over, so a
    rebuild costs in proportion to the change: dnspython renders about one
    answer per millisecond here, far too slow to redo a whole cluster per
    change. Names are kept as lower-case absolute text (hashing dnspython
    Names is the other big cost); dnspython objects are made only to render.
    """

    def __init__(self, records, previous=None):
        self.records = records
        self.zones = list(records.zones)
        self.reverse = list(records.reverse)
        old = previous if previous is not None and previous.zones == self.zones else None
        names = records.names
        changed = (
            set(names)
            if old is None
            else {o for o in set(names) | set(old.records.names) if names.get(o) != old.records.names.get(o)}
        )
        self.rrsets = {}
        for owner in names:
            self.rrsets[owner] = old.rrsets[owner] if owner not in changed else self._node(owner, names[owner])
        soa_text = next((r for t, r in names.get(self.zones[0], []) if t == "SOA"), None) if self.zones else None
        self.soa = {z: self.rrsets[z][SOA] for z in self.zones if SOA in self.rrsets.get(z, {})}
        if soa_text is not None:  # the reverse names we are authoritative for
            for r in REVERSE_TEXT:
                self.soa[r] = (
                    old.soa[r]
                    if old is not None and r in old.soa
                    else dns.rrset.from_text_list(r, records.ttl, IN, "SOA", [soa_text])
                )
        # empty non-terminals: parents of names we have, inside our zones
        self.exists = set(names)
        for owner in names:
            zone = self._zone_of(owner)
            parent = owner
            while zone is not None and parent != zone and "." in parent[:-1]:
                parent = parent.split(".", 1)[1]
                self.exists.add(parent)
        self.udp, self.tcp = {}, {}
        self.made = {}  # question key -> (owner, rdtype) of the precomputed answers
        self.deps = {}  # owner -> question keys whose answer read that owner's records
        self.extra = 0  # slow-path answers added (dropped at the next rebuild)
        todo = set()
        if old is not None:
            stale = set()
            for owner in changed:
                stale |= old.deps.get(owner, set())
            for key, (owner, rdtype) in old.made.items():
                if key in stale:
                    if owner in names:
                        todo.add((owner, rdtype))
                    continue
                self.udp[key], self.tcp[key] = old.udp[key], old.tcp[key]
                self.made[key] = (owner, rdtype)
            for owner, keys in old.deps.items():
                keep = keys - stale
                if keep:
                    self.deps[owner] = keep
        for owner in changed:
            if owner in names:
                todo |= {(owner, t) for t in set(self.rrsets[owner]) | {A, AAAA}}
        for owner, rdtype in todo:
            self._precompute(owner, rdtype)

    def _node(self, owner, entries):
        grouped = {}
        for rtype, rdata in entries:
            grouped.setdefault(rtype, []).append(rdata)
        node = {}
        for rtype, datas in grouped.items():
            ttl = int(datas[0].split()[-1]) if rtype == "SOA" else self.records.ttl
            rrset = dns.rrset.from_text_list(owner, ttl, IN, rtype, datas)
            node[rrset.rdtype] = rrset
        return node

    # ---- lookup --------------------------------------------------------------

    def _zone_of(self, name):
        """name: lower-case absolute text -> the zone (apex text) we answer
        it from, or None."""
        best = None
        for z in self.zones:
            if (name == z or name.endswith("." + z) or z == ".") and (best is None or len(z) > len(best)):
                best = z
        if best is None and (name in self.rrsets or self._reverse_ours(name)):
            best = next((r for r in REVERSE_TEXT if name.endswith("." + r)), None)
        return best

    def _reverse_ours(self, name):
        ip = _reverse_ip(name)
        return ip is not None and any(ip in net for net in self.reverse if net.version == ip.version)

    def lookup(self, qname, rdtype, visited=None):
        """-> (rcode, answer, authority, additional, outside) for a name in our
        zones, None otherwise. `outside` is a CNAME target to chase upstream;
        `visited` (a set) collects the owners the answer depends on."""
        zone = self._zone_of(qname)
        if zone is None:
            return None
        seen = visited if visited is not None else set()
        answer, name = [], qname
        for _ in range(8):  # CNAME chain inside our zones
            seen.add(name)
            node = self.rrsets.get(name)
            if node is None:
                rcode = dns.rcode.NOERROR if name in self.exists else dns.rcode.NXDOMAIN
                return rcode, answer, self._negative(name, seen), [], None
            if rdtype == ANY:
                return dns.rcode.NOERROR, answer + list(node.values()), [], [], None
            if rdtype in node:
                answer.append(node[rdtype])
                return dns.rcode.NOERROR, answer, [], self._additional(node[rdtype], seen), None
            if CNAME in node and rdtype != CNAME:
                answer.append(node[CNAME])
                name = node[CNAME][0].target.to_text().lower()
                if self._zone_of(name) is None:
                    return dns.rcode.NOERROR, answer, [], [], name
                continue
            return dns.rcode.NOERROR, answer, self._negative(name, seen), [], None
        return dns.rcode.SERVFAIL, [], [], [], None

    def _negative(self, name, seen):
        zone = self._zone_of(name)
        seen.add(zone)
        return [self.soa[zone]] if zone in self.soa else []

    def _additional(self, rrset, seen):
        if rrset.rdtype != SRV:
            return []
        out = []
        for rd in rrset:
            target = rd.target.to_text().lower()
            seen.add(target)
            node = self.rrsets.get(target, {})
            out += [node[t] for t in (A, AAAA) if t in node and node[t] not in out]
        return out

    # ---- wire ----------------------------------------------------------------

    def _precompute(self, owner, rdtype):
        seen = set()
        found = self.lookup(owner, rdtype, seen)
        if found is None or found[4] is not None:
            return  # a CNAME out of our zones: resolved per query (Chase)
        name = dns.name.from_text(owner)
        key = question_key(name, rdtype)
        self.tcp[key], self.udp[key] = _render_both(name, rdtype, *found[:4])
        self.made[key] = (owner, rdtype)
        for o in seen:
            self.deps.setdefault(o, set()).add(key)

    def _message(self, query, found):
        r = dns.message.make_response(query, our_payload=EDNS_PAYLOAD)
        rcode, r.answer, r.authority, r.additional, _ = found
        r.set_rcode(rcode)
        r.flags |= dns.flags.AA | dns.flags.RA
        return r

    def respond(self, data, tcp=False):
        """The slow path: any query -> response wire, FORWARD, a Chase, or
        None (not worth an answer: too short to carry an ID)."""
        try:
            q = dns.message.from_wire(data)
        except dns.message.ShortHeader:
            return None
        except dns.exception.DNSException:
            return _error(data, dns.rcode.FORMERR)
        if q.flags & dns.flags.QR:
            return None
        if q.opcode() != dns.opcode.QUERY:
            return _error(data, dns.rcode.NOTIMP)
        if len(q.question) != 1:
            return _error(data, dns.rcode.FORMERR)
        qrr = q.question[0]
        if qrr.rdclass != IN:
            return _error(data, dns.rcode.REFUSED)
        qname = qrr.name.canonicalize().to_text()
        found = self.lookup(qname, qrr.rdtype)
        if found is None:
            return FORWARD
        size = 65535 if tcp else (max(UDP_PLAIN, min(q.payload, EDNS_PAYLOAD)) if q.edns >= 0 else UDP_PLAIN)
        r = self._message(q, found)
        if found[4] is not None:
            return Chase(self, r, found[4], qrr.rdtype, size)
        wire = render(r, size)
        if data[4:12] == ONE_QUESTION and self.extra < EXTRA_MAX and data[12:-4].lower() + data[-4:] not in self.udp:
            # remember plain questions (e.g. NXDOMAIN names) for the fast path
            self.extra += 1
            name = qrr.name.canonicalize()
            key = question_key(name, qrr.rdtype)
            self.tcp[key], self.udp[key] = _render_both(name, qrr.rdtype, *found[:4])
        return wire


def _render_both(qname, rdtype, rcode, answer, authority, additional):
    """-> (tcp split, udp split) of an authoritative answer, rendered with
    dnspython's Renderer (no Message objects: this runs per answer per change)."""
    flags = dns.flags.QR | dns.flags.AA | dns.flags.RA | rcode
    r = dns.renderer.Renderer(id=0, flags=flags)
    r.add_question(qname, rdtype, IN)
    for section, rrsets in (
        (dns.renderer.ANSWER, answer),
        (dns.renderer.AUTHORITY, authority),
        (dns.renderer.ADDITIONAL, additional),
    ):
        for rr in rrsets:
            r.add_rrset(section, rr, want_shuffle=False)  # deterministic: rebuilds compare equal
    r.write_header()
    full = r.get_wire()
    qlen = len(qname.to_wire()) + 4
    if len(full) <= UDP_PLAIN:
        return split(full, qlen), split(full, qlen)
    tc = dns.renderer.Renderer(id=0, flags=flags | dns.flags.TC)
    tc.add_question(qname, rdtype, IN)
    tc.write_header()
    return split(full, qlen), split(tc.get_wire(), qlen)


def _ttl_of(records, rtype, rdata):
    if rtype == "SOA":
        return int(rdata.split()[-1])
    return records.ttl


def _error(data, rcode):
    """A header-only response with rcode (the question is echoed when present)."""
    try:
        q = dns.message.from_wire(data, question_only=True)
        r = dns.message.make_response(q)
        r.set_rcode(rcode)
        return r.to_wire()
    except dns.exception.DNSException:
        flags = 0x80 | (data[2] & 0x79)
        return data[:2] + bytes((flags, rcode & 0xF)) + b"\x00" * 8
