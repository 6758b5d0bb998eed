"""kernel/nftelem.py on the real kernel, in a namespace of the test's own:
elements written by netlink read back as nft wrote them (comment included),
a refused batch raises ElementError and changes nothing, and the kept socket
(a caller in its own namespace) carries on after a refusal."""

import ipaddress
import os

import pytest

from podnet.cni import masq
from podnet.kernel import netns, nft, nftelem, nftnl

pytestmark = pytest.mark.kernel

SUBNET = ipaddress.ip_network("10.77.0.0/24")


@pytest.fixture
def table_ns(namespaces):
    name = namespaces.new("nftelem")
    ns = netns.Netns(netns.path_of(name))
    try:
        nft.apply(masq.skeleton({SUBNET}), ns=ns, what="test skeleton")
        yield ns
    finally:
        nftelem.KEPT.close_all()  # a kept socket would pin the namespace past its deletion
        ns.close()


def _ip(n):
    return ipaddress.ip_interface("10.77.0.%d/24" % n)


def test_kept_socket_add_delete_and_refusal(table_ns):
    with netns.entered(table_ns):  # the daemon's case: its own namespace, ns=None
        nftelem.apply(masq.element_messages("net/c1/eth0", [_ip(5), _ip(6)]))
        assert sorted(masq.elements(None)) == [(_ip(5).ip, "net/c1/eth0"), (_ip(6).ip, "net/c1/eth0")]
        assert len(nftelem.KEPT) == 1
        nftelem.apply(masq.delete_messages([_ip(5).ip]))
        with pytest.raises(nftelem.ElementError) as err:  # one of two already gone: nothing changes
            nftelem.apply(masq.delete_messages([_ip(5).ip, _ip(6).ip]))
        assert err.value.errno == 2
        assert masq.elements(None) == [(_ip(6).ip, "net/c1/eth0")]
        nftelem.apply(masq.delete_messages([_ip(6).ip]))  # the same socket, after the refusal
        assert masq.elements(None) == [] and len(nftelem.KEPT) == 1


def test_explicit_namespace_and_missing_chain(table_ns):
    nftelem.apply(masq.element_messages("net/c2/eth0", [_ip(9)]), ns=table_ns)
    assert masq.elements(table_ns) == [(_ip(9).ip, "net/c2/eth0")]
    other = ipaddress.ip_interface("10.78.0.3/24")  # its subnet's chain does not exist
    with pytest.raises(nftelem.ElementError):
        nftelem.apply(masq.element_messages("net/c3/eth0", [other]), ns=table_ns)
    masq.apply_add("net/c3/eth0", [other], table_ns)  # masq's fallback writes the skeleton, then the element
    assert sorted(masq.elements(table_ns)) == [(_ip(9).ip, "net/c2/eth0"), (other.ip, "net/c3/eth0")]
    masq.apply_delete([_ip(9).ip, other.ip], table_ns)
    masq.apply_delete([_ip(9).ip], table_ns)  # already gone: fine, as before
    assert masq.elements(table_ns) == []


def test_kept_sockets_per_namespace_evict_or_own(namespaces):
    """nftnl.Kept, shared by the proxy (limit 1, evict) and the CNI daemon
    (nftelem.KEPT: limit 4, then a socket of the call's own): a thread from
    another namespace either replaces the kept socket or borrows none."""
    names = [namespaces.new("kept%d" % i) for i in range(2)]
    nss = [netns.Netns(netns.path_of(n)) for n in names]
    evicting, owning = nftnl.Kept(limit=1, evict=True), nftnl.Kept(limit=1, evict=False)
    try:
        for n, ns in enumerate(nss):
            nft.apply("add table ip t\nadd chain ip t c\n", ns=ns, what="test table")
            with netns.entered(ns):
                for kept in (evicting, owning):
                    kept.send(nftnl.compile_script("add rule ip t c accept\n"), ack_each=n == 1)
            assert nft.list_table_text("ip", "t", ns=ns).count("accept") == 2  # one rule through each
        keys = [(os.stat(ns.path).st_dev, os.stat(ns.path).st_ino) for ns in nss]
        # the evicting one holds the second namespace's socket, the other still the first's
        assert list(evicting.channels) == [keys[1]] and list(owning.channels) == [keys[0]]
        with netns.entered(nss[0]), pytest.raises(nftnl.BatchError) as refused:
            owning.send(nftnl.compile_script("add rule ip t missing drop\n"))
        assert refused.value.errno == 2 and len(owning) == 1  # a refusal keeps the socket
    finally:
        evicting.close_all()
        owning.close_all()
        for ns in nss:
            ns.close()
