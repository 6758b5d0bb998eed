"""The embedded DNS of a user-defined network, as Docker's 127.0.0.11.

One small server per network, a process in the node's netns listening on
the network's gateway address, UDP port 53 (what glibc's stub resolver and
`getent hosts` use). It answers:

  NAME, NAME.NETWORK    A: the address of the running container NAME
                        attached to this network; AAAA: no data (IPv4 only)
  d.c.b.a.in-addr.arpa  PTR: the container holding that address
  anything else         NXDOMAIN for a single label, REFUSED otherwise: this
                        is not a recursive resolver, it forwards nothing

Queries from outside the network's subnet are REFUSED, so a container on
another network cannot list this one's names by asking its gateway. Answers
are read from the container records on every query (a handful of small
files), so a container is resolvable as soon as `podnet run` recorded it and
stops being so when it exits or is removed. TTL 0: nobody caches a name
that may move.

answer() is pure (dnspython messages in and out); serve() is the socket loop.
"""

import argparse
import ipaddress
import os
import socket
import sys

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

IP_FREEBIND = 15  # bind before the gateway address is on the bridge


def answer(query, network, lookup):
    """query: dns.message.Message; lookup(name) -> [ip] of the running
    containers called `name` on this network (lower-case, no dots), and
    lookup.by_ip(ip) -> [their names]. -> the response message."""
    resp = dns.message.make_response(query)
    resp.flags |= dns.flags.AA
    resp.flags &= ~dns.flags.RA
    if query.opcode() != dns.opcode.QUERY or len(query.question) != 1:
        resp.set_rcode(dns.rcode.NOTIMP)
        return resp
    q = query.question[0]
    labels = [label.decode(errors="replace").lower() for label in q.name.relativize(dns.name.root).labels]
    if q.rdtype == dns.rdatatype.PTR and labels[-2:] == ["in-addr", "arpa"] and len(labels) == 6:
        ip = ".".join(reversed(labels[:4]))
        names = lookup.by_ip(ip)
        if not names:
            resp.set_rcode(dns.rcode.NXDOMAIN)
            return resp
        resp.answer.append(
            dns.rrset.from_text(
                q.name, 0, dns.rdataclass.IN, dns.rdatatype.PTR, *["%s.%s." % (n, network) for n in names]
            )
        )
        return resp
    if len(labels) == 2 and labels[1] == network.lower():
        labels = labels[:1]
    if len(labels) != 1:
        resp.set_rcode(dns.rcode.REFUSED)
        return resp
    ips = lookup(labels[0])
    if not ips:
        resp.set_rcode(dns.rcode.NXDOMAIN)
        return resp
    if q.rdtype in (dns.rdatatype.A, dns.rdatatype.ANY):
        resp.answer.append(dns.rrset.from_text(q.name, 0, dns.rdataclass.IN, dns.rdatatype.A, *sorted(ips)))
    return resp  # AAAA and others: NOERROR without data (the name exists)


class RecordLookup:
    """Names from the container records of one network on one node."""

    def __init__(self, lab, node, network):
        from podnet.docker.store import Store

        self.store, self.node, self.network = Store(lab), node, network

    def _attached(self):
        from podnet.docker import proc

        for c in self.store.containers():
            if (
                c.get("node") == self.node
                and c.get("network") == self.network
                and c.get("ip")
                and c.get("state") == "running"
                and proc.alive(c)
            ):
                yield c

    def __call__(self, name):
        return [c["ip"] for c in self._attached() if c["name"].lower() == name]

    def by_ip(self, ip):
        return [c["name"] for c in self._attached() if c["ip"] == ip]


def handle(data, client_ip, subnet, network, lookup):
    """One datagram -> the reply bytes, or None (undecodable: drop it, as servers do)."""
    try:
        query = dns.message.from_wire(data)
    except Exception:  # noqa: BLE001 - anything undecodable is dropped
        return None
    if ipaddress.ip_address(client_ip) not in subnet:
        resp = dns.message.make_response(query)
        resp.set_rcode(dns.rcode.REFUSED)
        return resp.to_wire()
    return answer(query, network, lookup).to_wire()


def serve(listen, subnet, network, lookup):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)
    sock.bind((listen, 53))
    print("podnet embedded DNS for network %s on %s:53" % (network, listen), flush=True)
    while True:
        data, (host, port) = sock.recvfrom(4096)
        try:
            out = handle(data, host, subnet, network, lookup)
        except Exception as exc:  # noqa: BLE001 - one bad query must not stop the server
            print("query from %s: %s" % (host, exc), file=sys.stderr, flush=True)
            continue
        if out is not None:
            sock.sendto(out, (host, port))


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m podnet.docker.dns")
    p.add_argument("--lab", required=True)
    p.add_argument("--node", required=True)
    p.add_argument("--network", required=True)
    p.add_argument("--subnet", required=True)
    a = p.parse_args(argv)
    subnet = ipaddress.ip_network(a.subnet)
    os.environ.pop("PODNET_LAB", None)
    serve(str(subnet.network_address + 1), subnet, a.network, RecordLookup(a.lab, a.node, a.network))


if __name__ == "__main__":
    main()
