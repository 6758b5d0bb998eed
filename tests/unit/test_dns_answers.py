"""Answers from the precomputed table, checked by decoding them with
dnspython as a client would: the fast path (question bytes -> wire), the slow
path (EDNS, TCP, unknown names), negative answers, truncation, rebuilds."""

import copy

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype

from podnet.dns import answers, records

SERVICES = [
    {
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"clusterIP": "10.96.0.20", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
    },
    {"metadata": {"name": "db", "namespace": "shop"}, "spec": {"clusterIP": "None"}},
    {"metadata": {"name": "big", "namespace": "shop"}, "spec": {"clusterIP": "None"}},
    {
        "metadata": {"name": "alias", "namespace": "shop"},
        "spec": {"type": "ExternalName", "externalName": "web.shop.svc.cluster.local"},
    },
    {"metadata": {"name": "ext", "namespace": "shop"}, "spec": {"type": "ExternalName", "externalName": "example.com"}},
]
SLICES = [
    {
        "metadata": {"name": "db-1", "namespace": "shop", "labels": {"kubernetes.io/service-name": "db"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.244.1.5"], "hostname": "db-0"}],
        "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}],
    },
    {
        "metadata": {"name": "big-1", "namespace": "shop", "labels": {"kubernetes.io/service-name": "big"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.244.3.%d" % i]} for i in range(1, 101)],
    },
]


def table(services=SERVICES, slices=SLICES, previous=None):
    return answers.Table(records.build(services, slices), previous)


def fast(t, name, rdtype="A", tcp=False, qid=0x1234, rd=True):
    """What the server's UDP (or TCP) loop sends for a plain query."""
    q = dns.message.make_query(name, rdtype)
    q.id = qid
    if not rd:
        q.flags &= ~dns.flags.RD
    data = q.to_wire()
    v = (t.tcp if tcp else t.udp).get(data[12:-4].lower() + data[-4:])
    assert v is not None, "no precomputed answer for %s %s" % (name, rdtype)
    return dns.message.from_wire(data[:2] + v[data[2] & 1] + data[12:] + v[2])


def slow(t, name, rdtype="A", tcp=False, **edns):
    q = dns.message.make_query(name, rdtype, **edns)
    res = t.respond(q.to_wire(), tcp=tcp)
    return dns.message.from_wire(res) if isinstance(res, bytes) else res


def texts(msg, section="answer"):
    return sorted(rd.to_text() for rr in getattr(msg, section) for rd in rr)


def test_fast_path_answers_a_query_with_its_id_rd_bit_and_spelling():
    t = table()
    r = fast(t, "WeB.Shop.svc.cluster.local", qid=4242)
    assert r.id == 4242 and r.flags & dns.flags.RD and r.flags & dns.flags.AA
    assert texts(r) == ["10.96.0.20"] and r.question[0].name.to_text() == "WeB.Shop.svc.cluster.local."
    assert not fast(t, "web.shop.svc.cluster.local", rd=False).flags & dns.flags.RD
    srv = fast(t, "_http._tcp.web.shop.svc.cluster.local", "SRV")
    assert texts(srv) == ["0 100 80 web.shop.svc.cluster.local."] and texts(srv, "additional") == ["10.96.0.20"]
    assert texts(fast(t, "20.0.96.10.in-addr.arpa", "PTR")) == ["web.shop.svc.cluster.local."]
    assert texts(fast(t, "dns-version.cluster.local", "TXT")) == ['"1.1.0"']


def test_nodata_nxdomain_and_empty_non_terminals_carry_the_soa():
    t = table()
    nodata = fast(t, "web.shop.svc.cluster.local", "AAAA")
    assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer
    assert nodata.authority[0].rdtype == dns.rdatatype.SOA
    nx = slow(t, "nosuch.shop.svc.cluster.local")
    assert nx.rcode() == dns.rcode.NXDOMAIN and nx.authority[0].rdtype == dns.rdatatype.SOA
    ent = slow(t, "shop.svc.cluster.local")
    assert ent.rcode() == dns.rcode.NOERROR and not ent.answer
    # the slow answer was remembered for the fast path
    assert fast(t, "nosuch.shop.svc.cluster.local").rcode() == dns.rcode.NXDOMAIN
    rev = slow(t, "99.0.96.10.in-addr.arpa", "PTR")
    assert rev.rcode() == dns.rcode.NXDOMAIN


def test_cname_is_followed_inside_the_zone_and_left_to_chase_outside():
    t = table()
    r = fast(t, "alias.shop.svc.cluster.local")
    assert [rr.rdtype for rr in r.answer] == [dns.rdatatype.CNAME, dns.rdatatype.A] and texts(r)[0] == "10.96.0.20"
    chase = slow(t, "ext.shop.svc.cluster.local")
    assert isinstance(chase, answers.Chase) and chase.target == "example.com."
    up = dns.message.make_response(dns.message.make_query("example.com", "A"))
    up.answer.append(dns.rrset.from_text("example.com.", 60, "IN", "A", "192.168.200.100"))
    done = dns.message.from_wire(chase.finish(up.to_wire()))
    assert texts(done) == ["192.168.200.100", "example.com."]
    assert slow(t, "example.org") is answers.FORWARD


def test_a_large_headless_answer_is_truncated_over_udp_and_whole_over_tcp():
    t = table()
    udp = fast(t, "big.shop.svc.cluster.local")
    assert udp.flags & dns.flags.TC and not udp.answer
    assert len(texts(fast(t, "big.shop.svc.cluster.local", tcp=True))) == 100
    assert slow(t, "big.shop.svc.cluster.local", use_edns=0, payload=1232).flags & dns.flags.TC
    assert len(texts(slow(t, "big.shop.svc.cluster.local", tcp=True, use_edns=0))) == 100


def test_edns_queries_get_edns_answers():
    r = slow(table(), "web.shop.svc.cluster.local", use_edns=0, payload=4096)
    assert r.edns == 0 and r.payload == answers.EDNS_PAYLOAD and texts(r) == ["10.96.0.20"]


def test_bad_queries_get_errors_not_silence():
    t = table()
    assert (
        dns.message.from_wire(t.respond(b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x05")).rcode()
        == dns.rcode.FORMERR
    )
    q = dns.message.make_query("web.shop.svc.cluster.local", "A", rdclass="CH")
    assert dns.message.from_wire(t.respond(q.to_wire())).rcode() == dns.rcode.REFUSED
    assert t.respond(b"\x00") is None


def test_an_incremental_rebuild_equals_a_full_one():
    first = table()
    services = copy.deepcopy(SERVICES)
    services[0]["spec"]["clusterIP"] = "10.96.0.21"  # web changes: alias (CNAME into it) must follow
    services.append({"metadata": {"name": "new", "namespace": "shop"}, "spec": {"clusterIP": "10.96.0.22"}})
    del services[1]  # db goes away
    again = table(services, SLICES, previous=first)
    full = table(services, SLICES)
    assert again.udp == full.udp and again.tcp == full.tcp
    assert texts(fast(again, "alias.shop.svc.cluster.local"))[0] == "10.96.0.21"
    assert slow(again, "db.shop.svc.cluster.local").rcode() == dns.rcode.NXDOMAIN
