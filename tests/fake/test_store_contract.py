"""One suite, two stores: the in-memory fake and the host-local compatible
FileStore must behave alike under the Allocator (the fake is only trusted
because the same assertions pass on the real thing)."""

import ipaddress as ia
import os
import threading

import pytest

from podnet.ipam.allocator import AddressInUse, Allocator, Exhausted, NotInRange
from podnet.ipam.ranges import parse_range_sets
from podnet.ipam.store import FileStore, MemoryStore


@pytest.fixture(params=["memory", "file"])
def make(request, tmp_path):
    def _make(ranges):
        store = MemoryStore() if request.param == "memory" else FileStore("net", str(tmp_path))
        return Allocator(parse_range_sets({"ranges": ranges}), store)

    return _make


def ip(s):
    return ia.ip_address(s)


def test_allocates_distinct_until_exhausted_then_frees(make):
    a = make([[{"subnet": "10.0.0.0/29"}]])  # 5 usable: .2-.6 (gateway .1)
    got = [a.allocate("c%d" % i, "eth0")[0][0] for i in range(5)]
    assert len(set(got)) == 5 and ip("10.0.0.1") not in got
    with pytest.raises(Exhausted):
        a.allocate("c9", "eth0")
    assert a.release("c2", "eth0") == [got[2]]
    assert a.allocate("c9", "eth0")[0][0] == got[2]


def test_freed_address_is_not_reused_at_once(make):
    a = make([[{"subnet": "10.0.0.0/24"}]])
    first = a.allocate("a", "eth0")[0][0]
    a.release("a", "eth0")
    assert a.allocate("b", "eth0")[0][0] != first


def test_requested_address(make):
    a = make([[{"subnet": "10.0.0.0/24"}]])
    assert a.allocate("a", "eth0", [ip("10.0.0.50")])[0][0] == ip("10.0.0.50")
    with pytest.raises(AddressInUse):
        a.allocate("b", "eth0", [ip("10.0.0.50")])
    with pytest.raises(AddressInUse):
        a.allocate("b", "eth0", [ip("10.0.0.1")])  # the gateway
    with pytest.raises(NotInRange):
        a.allocate("b", "eth0", [ip("192.168.9.9")])


def test_dual_stack_one_per_set_all_or_nothing(make):
    a = make([[{"subnet": "10.0.0.0/30"}], [{"subnet": "fd00::/126"}]])
    got = a.allocate("a", "eth0")
    assert [g[0].version for g in got] == [4, 6]
    # the v4 set (one usable address) is full: b gets nothing, not even its v6 address
    with pytest.raises(Exhausted):
        a.allocate("b", "eth0", [ip("fd00::3")])
    assert sorted(map(str, a.store.allocations())) == sorted(str(g[0]) for g in got)
    assert a.free_counts() == [0, 1]


def test_gc_keeps_valid_releases_others(make):
    a = make([[{"subnet": "10.0.0.0/24"}]])
    keep = a.allocate("keep", "eth0")[0][0]
    a.allocate("gone", "eth0")
    a.allocate("keep", "net1")
    assert a.gc({("keep", "eth0")}) != []
    assert a.store.allocations() == {keep: ("keep", "eth0")}


def test_file_store_format_is_host_locals(tmp_path):
    a = Allocator(parse_range_sets({"ranges": [[{"subnet": "10.9.0.0/24"}]]}), FileStore("mynet", str(tmp_path)))
    got = a.allocate("ctr1", "eth0")[0][0]
    d = tmp_path / "mynet"
    assert (d / str(got)).read_bytes() == b"ctr1\r\neth0"
    assert (d / "last_reserved_ip.0").read_text() == str(got)
    # a file written by old host-local (ID only) still belongs to the container
    (d / "10.9.0.77").write_bytes(b"old\n")
    assert a.release("old", "eth0") == [ip("10.9.0.77")]


def test_file_store_threads_never_share_an_address(tmp_path):
    a = Allocator(parse_range_sets({"ranges": [[{"subnet": "10.8.0.0/24"}]]}), FileStore("n", str(tmp_path)))
    results, errors = [], []

    def worker(i):
        try:
            # every thread builds its own store, as separate plugin calls do
            b = Allocator(a.sets, FileStore("n", str(tmp_path)))
            results.append(b.allocate("c%d" % i, "eth0")[0][0])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 100 and len(set(results)) == 100
    assert len([n for n in os.listdir(tmp_path / "n") if n[0].isdigit()]) == 100


def test_release_with_a_hint_and_with_a_wrong_hint(make):
    a = make([[{"subnet": "10.0.0.0/24"}]])
    mine = a.allocate("me", "eth0")[0][0]
    other = a.allocate("other", "eth0")[0][0]
    assert a.release("me", "eth0", [mine]) == [mine]
    mine = a.allocate("me", "eth0")[0][0]
    # a stale hint naming someone else's address: that address stays, ours goes
    assert a.release("me", "eth0", [other]) == [mine]
    assert a.store.owner(other) == ("other", "eth0")
