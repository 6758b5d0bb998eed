"""The embedded DNS's answers (pure: dnspython messages in and out)."""

import dns.message
import dns.rcode
import dns.rdatatype

from podnet.docker import dns as edns


class Names:
    def __init__(self, table):
        self.table = table

    def __call__(self, name):
        return self.table.get(name, [])

    def by_ip(self, ip):
        return [n for n, ips in self.table.items() if ip in ips]


NAMES = Names({"web": ["172.18.0.2"], "db": ["172.18.0.3"]})


def ask(name, rdtype="A"):
    return edns.answer(dns.message.make_query(name, rdtype), "red", NAMES)


def test_a_record_of_a_container():
    resp = ask("web")
    assert resp.rcode() == dns.rcode.NOERROR
    assert [r.address for r in resp.answer[0]] == ["172.18.0.2"] and resp.answer[0].ttl == 0


def test_network_qualified_and_case_insensitive():
    assert [r.address for r in ask("DB.red.").answer[0]] == ["172.18.0.3"]


def test_unknown_names():
    assert ask("nosuch").rcode() == dns.rcode.NXDOMAIN
    assert ask("example.com").rcode() == dns.rcode.REFUSED  # not a recursive resolver


def test_aaaa_of_a_known_name_is_no_data():
    resp = ask("web", "AAAA")
    assert resp.rcode() == dns.rcode.NOERROR and resp.answer == []


def test_ptr():
    resp = ask("2.0.18.172.in-addr.arpa", "PTR")
    assert [r.target.to_text() for r in resp.answer[0]] == ["web.red."]
    assert ask("9.0.18.172.in-addr.arpa", "PTR").rcode() == dns.rcode.NXDOMAIN


def test_clients_outside_the_subnet_are_refused():
    import ipaddress

    wire = dns.message.make_query("web", "A").to_wire()
    subnet = ipaddress.ip_network("172.18.0.0/16")
    inside = dns.message.from_wire(edns.handle(wire, "172.18.0.9", subnet, "red", NAMES))
    outside = dns.message.from_wire(edns.handle(wire, "10.50.0.2", subnet, "red", NAMES))
    assert inside.rcode() == dns.rcode.NOERROR and outside.rcode() == dns.rcode.REFUSED
    assert edns.handle(b"garbage", "172.18.0.9", subnet, "red", NAMES) is None
