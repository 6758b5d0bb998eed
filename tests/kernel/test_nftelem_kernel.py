"""kernel/nftelem.py on the real kernel, in a namespace of the test's own:
elements written by netlink read back as nft wrote them (comment included),
a refused batch raises ElementError and changes nothing, and the kept socket
(a caller in its own namespace) carries on after a refusal."""

import ipaddress

import pytest

from podnet.cni import masq
from podnet.kernel import netns, nft, nftelem

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
