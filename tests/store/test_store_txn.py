"""The store's multi-key txn (all or nothing, one revision), on sqlite and a
real etcd: what the API server's Service allocations are built on."""

import threading

import pytest

from podnet.store.base import Conflict, Op
from tests.store.helpers import obj, plain


def test_a_txn_is_one_revision_and_its_events_share_it(store, prefix, watch):
    _, rev0 = store.list(prefix)
    w = watch(store, prefix, rev0)
    store.put(prefix + "gone", obj("gone"))
    rev = store.txn(
        [Op(prefix + "a", obj("a"), 0), Op(prefix + "b", obj("b"), 0), Op(prefix + "gone", None), Op(prefix + "x")]
    )
    items, now = store.list(prefix)
    assert now == rev and [(k, r) for k, _, r in items] == [(prefix + "a", rev), (prefix + "b", rev)]
    events = w.wait_for(4)
    assert [(e.type, e.key, e.rev) for e in events[1:]] == [
        ("PUT", prefix + "a", rev),
        ("PUT", prefix + "b", rev),
        ("DELETE", prefix + "gone", rev),
    ]
    assert plain(events[3].value) == obj("gone")  # a delete carries the last value
    # a watch of part of the keys sees only its part of the txn
    w2 = watch(store, prefix + "b", rev0)
    assert [(e.key, e.rev) for e in w2.wait_for(1)] == [(prefix + "b", rev)]


def test_a_failed_txn_changes_nothing_and_names_the_key(store, prefix):
    rev_a = store.put(prefix + "a", obj("a"))
    before = store.list(prefix)
    with pytest.raises(Conflict) as e:
        store.txn([Op(prefix + "new", obj("n"), 0), Op(prefix + "a", obj("a2"), 0)])
    assert e.value.key == prefix + "a" and e.value.found == rev_a
    with pytest.raises(Conflict) as e:
        store.txn([Op(prefix + "a", None, rev_a + 100), Op(prefix + "new", obj("n"), 0)])
    assert e.value.key == prefix + "a" and e.value.found == rev_a
    with pytest.raises(Conflict) as e:
        store.txn([Op(prefix + "new", obj("n"), 0), Op(prefix + "absent", obj("x"), 5)])
    assert e.value.key == prefix + "absent" and e.value.found == 0
    assert store.list(prefix) == before
    rev = store.txn([Op(prefix + "a", None, rev_a), Op(prefix + "new", obj("n"), 0)])
    assert [(k, r) for k, _, r in store.list(prefix)[0]] == [(prefix + "new", rev)]


def test_concurrent_txns_claim_each_key_once(open_new, prefix):
    """8 threads, each with its own store object, race to claim 20 slots
    with an object of their own in the same txn: every slot goes once, and
    each claim's object exists."""
    won: dict[str, list[int]] = {}
    lock = threading.Lock()

    def worker(n):
        s = open_new()
        for slot in range(20):
            try:
                s.txn(
                    [
                        Op("%sslot/%d" % (prefix, slot), obj("w%d" % n), 0),
                        Op("%sobj/%d-%d" % (prefix, n, slot), obj("o"), 0),
                    ]
                )
            except Conflict as exc:
                assert exc.key == "%sslot/%d" % (prefix, slot)
                continue
            with lock:
                won.setdefault(str(slot), []).append(n)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(won, key=int) == [str(i) for i in range(20)] and all(len(v) == 1 for v in won.values())
    store = open_new()
    objs = {k for k, _, _ in store.list(prefix + "obj/")[0]}
    assert objs == {"%sobj/%d-%s" % (prefix, v[0], slot) for slot, v in won.items()}
