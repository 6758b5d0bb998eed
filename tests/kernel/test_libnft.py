"""kernel/libnft.py on the real kernel, in namespaces of the test's own: a
script applied in-process lands in the namespace asked for (an explicit
one, or the thread's own) and nowhere else, deletes included; a refused
script raises NftError naming the operation with nft's message and changes
nothing (one transaction); the next script after a refusal works; forget()
frees the kept context."""

import pytest

from podnet.kernel import libnft, netns, nft

pytestmark = pytest.mark.kernel

T = "inet pe-libnft"


def _set(ns):
    items = nft.list_table("inet", "pe-libnft", ns=ns) or []
    got = {}
    for item in items:
        if "set" in item:
            got[item["set"]["name"]] = sorted(str(e) for e in item["set"].get("elem", []))
        if "rule" in item:
            got.setdefault("rules " + item["rule"]["chain"], []).append(item["rule"].get("comment"))
    return got


@pytest.fixture
def two_ns(namespaces):
    a = netns.Netns(netns.path_of(namespaces.new("libnft-a")))
    b = netns.Netns(netns.path_of(namespaces.new("libnft-b")))
    try:
        yield a, b
    finally:
        for ns in (a, b):
            libnft.forget(ns)  # a kept context would pin the namespace past its deletion
            ns.close()


def test_applies_in_the_namespace_asked_for_and_refusals_change_nothing(two_ns):
    a, b = two_ns
    script = "add table %s\nadd set %s s { type ipv4_addr; }\nadd chain %s c\n" % (T, T, T)
    libnft.apply(script + "add element %s s { 10.0.0.1, 10.0.0.2 }\n" % T, ns=a, what="test a")
    assert _set(a) == {"s": ["10.0.0.1", "10.0.0.2"]}
    assert nft.list_table("inet", "pe-libnft", ns=b) is None  # only where it was asked
    # deletes and adds in one transaction, on the kept context
    libnft.apply(
        'delete element %s s { 10.0.0.1 }\nadd rule %s c accept comment "one"\nflush chain %s c\n'
        'add rule %s c accept comment "two"\n' % (T, T, T, T),
        ns=a,
        what="test a again",
    )
    assert _set(a) == {"s": ["10.0.0.2"], "rules c": ["two"]}
    # refused (the second element is not there): nothing of it happens
    with pytest.raises(nft.NftError) as err:
        libnft.apply(
            "add element %s s { 10.0.0.9 }\ndelete element %s s { 10.0.0.7 }\n" % (T, T), ns=a, what="test refusal"
        )
    assert "test refusal" in str(err.value) and "No such file or directory" in str(err.value)
    assert _set(a) == {"s": ["10.0.0.2"], "rules c": ["two"]}
    # the thread's own namespace (ns=None), as the agent calls it
    with netns.entered(b):
        libnft.apply(script, what="test b")
    assert _set(b) == {"s": []}
    libnft.apply("add element %s s { 10.0.0.3 }\n" % T, ns=a, what="after the refusal")
    assert _set(a)["s"] == ["10.0.0.2", "10.0.0.3"]
    libnft.forget(a)
    libnft.apply("delete table %s\n" % T, ns=a, what="a new context")
    assert nft.list_table("inet", "pe-libnft", ns=a) is None
