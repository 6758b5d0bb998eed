"""The Store contract (podnet/store/base.py), run against every backend.

Each test gets `store` for one backend (sqlite file, or the session's real
etcd) and a key prefix of its own. Backend-specific parts are only the means
to an end the contract names: how a second process writes (both: a Python
subprocess with open_store(url)), how a connection drops (etcd: the server
is stopped by PID and restarted on its data dir; sqlite: the watch's
connection fails the way a broken one does), how history is compacted
(compact(rev), which both backends offer with etcd's meaning).
"""

import itertools
import json
import logging
import sqlite3
import statistics
import subprocess
import sys
import threading
import time

import pytest

from podnet.store.base import Compacted, Conflict
from tests.store.helpers import WRITER, FlakyConnections, Recorder, as_tuples, obj, plain

ROOT = __file__.rsplit("/tests/", 1)[0]


# ---- basic operations ------------------------------------------------------


def test_get_put_list_delete(store, prefix):
    assert store.get(prefix + "a") == (None, 0)
    assert store.list(prefix)[0] == []
    ra = store.put(prefix + "a", obj("a", n=1))
    rb = store.put(prefix + "b", obj("b", n=2))
    store.put(prefix[:-1] + "-sibling/x", obj("x"))  # shares the string prefix minus "/"
    value, rev = store.get(prefix + "a")
    assert rev == ra and plain(value) == obj("a", n=1)
    items, _ = store.list(prefix)
    assert [(k, plain(v), r) for k, v, r in items] == [
        (prefix + "a", obj("a", n=1), ra),
        (prefix + "b", obj("b", n=2), rb),
    ]
    rd = store.delete(prefix + "a")
    assert rd > rb
    assert store.get(prefix + "a") == (None, 0)
    assert store.delete(prefix + "a") is None
    assert [k for k, _, _ in store.list(prefix)[0]] == [prefix + "b"]
    assert prefix + "b" in [k for k, _, _ in store.list("")[0]]  # "": every key
    ru = store.put(prefix + "b", obj("b", n=3))
    assert store.get(prefix + "b")[1] == ru and plain(store.get(prefix + "b")[0]) == obj("b", n=3)


def test_list_is_sorted_by_key(store, prefix, monkeypatch):
    from podnet.store import etcd

    monkeypatch.setattr(etcd, "PAGE", 2)  # etcd lists in pages
    names = ["m", "a", "z", "b/c", "b", "aa", "b\u00e9", "b\u00ff"]
    for n in names:
        store.put(prefix + n, obj(n))
    assert [k for k, _, _ in store.list(prefix)[0]] == sorted(prefix + n for n in names)


def test_expect_rev(store, prefix):
    k = prefix + "k"
    r1 = store.put(k, obj("k", v=1), expect_rev=0)  # 0: create only
    with pytest.raises(Conflict):
        store.put(k, obj("k", v=99), expect_rev=0)
    with pytest.raises(Conflict):
        store.put(k, obj("k", v=99), expect_rev=r1 + 1000)  # not at that revision
    r2 = store.put(k, obj("k", v=2), expect_rev=r1)
    with pytest.raises(Conflict):
        store.put(k, obj("k", v=99), expect_rev=r1)  # stale
    assert store.get(k) == ({"metadata": {"name": "k", "resourceVersion": str(r2)}, "spec": {"v": 2}}, r2)
    with pytest.raises(Conflict):
        store.put(prefix + "missing", obj("m"), expect_rev=r2)  # must exist at r2
    assert store.get(prefix + "missing") == (None, 0)

    with pytest.raises(Conflict):
        store.delete(k, expect_rev=r1)
    with pytest.raises(Conflict):
        store.delete(k, expect_rev=0)  # it does exist
    assert store.get(k)[1] == r2
    rd = store.delete(k, expect_rev=r2)
    assert rd is not None and rd > r2
    assert store.get(k) == (None, 0)
    assert store.delete(k, expect_rev=r2) is None  # absent: None, whatever expected
    assert store.delete(k, expect_rev=0) is None
    assert store.put(k, obj("k", v=3), expect_rev=0) > rd  # re-create after delete


def test_resource_version_on_read(store, prefix):
    mine = {"metadata": {"name": "x", "resourceVersion": "12345"}, "spec": {"a": 1}}
    rev = store.put(prefix + "x", mine)
    assert mine == {"metadata": {"name": "x", "resourceVersion": "12345"}, "spec": {"a": 1}}  # not mutated
    value, r = store.get(prefix + "x")
    assert r == rev and value["metadata"]["resourceVersion"] == str(rev)
    bare = store.put(prefix + "y", {"spec": {"b": 2}})  # no metadata: created on read
    assert store.get(prefix + "y")[0] == {"spec": {"b": 2}, "metadata": {"resourceVersion": str(bare)}}
    items, _ = store.list(prefix)
    assert [(v["metadata"]["resourceVersion"], r) for _, v, r in items] == [(str(rev), rev), (str(bare), bare)]
    value["metadata"]["resourceVersion"] = "mutated"  # reads are copies
    assert store.get(prefix + "x")[0]["metadata"]["resourceVersion"] == str(rev)


def test_revisions_global_and_strictly_increasing(open_new, prefix):
    a, b = open_new(), open_new()  # two clients, one revision sequence
    revs = []
    for i in range(10):
        s = a if i % 2 else b
        revs.append(s.put(prefix + "k%d" % (i % 3), obj("k", i=i)))
        revs.append(s.put(prefix + "other/%d" % i, obj("o")))
        if i % 4 == 3:
            revs.append(s.delete(prefix + "other/%d" % i))
    assert all(x < y for x, y in itertools.pairwise(revs)), revs
    for s in (a, b):
        assert s.list(prefix)[1] == revs[-1]  # the current revision
        assert s.list(prefix + "nothing-here/")[1] == revs[-1]
    assert a.get(prefix + "k0") == b.get(prefix + "k0")  # both clients read the same state
    items, _ = a.list(prefix)
    assert sorted(r for _, _, r in items) == sorted(r for _, _, r in b.list(prefix)[0])


def test_list_returns_current_revision(store, prefix):
    r1 = store.put(prefix + "a", obj("a"))
    assert store.list(prefix)[1] == r1
    r2 = store.delete(prefix + "a")
    items, rev = store.list(prefix)
    assert items == [] and rev == r2


def test_concurrent_read_modify_write_from_threads(store, prefix):
    """expect_rev makes a counter exact under contention (threads share one store)."""
    k = prefix + "counter"
    store.put(k, {"n": 0})
    conflicts, errors = [], []

    def bump(times):
        try:
            for _ in range(times):
                while True:
                    value, rev = store.get(k)
                    try:
                        store.put(k, {"n": value["n"] + 1}, expect_rev=rev)
                        break
                    except Conflict:
                        conflicts.append(1)
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=bump, args=(25,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and not any(t.is_alive() for t in threads)
    assert store.get(k)[0]["n"] == 100


# ---- watch -----------------------------------------------------------------


def test_watch_sees_every_change_once_in_order(store, prefix, watch):
    _, start = store.list(prefix)
    w = watch(store, prefix, start)
    rec = Recorder(store)
    rec.put(prefix + "a", obj("a", v=1))
    rec.put(prefix + "b", obj("b", v=1))
    rec.put(prefix + "a", obj("a", v=2))
    store.put(prefix[:-1] + "-outside/x", obj("outside"))  # not under the prefix
    rec.delete(prefix + "a")
    rec.put(prefix + "a", obj("a", v=3), expect_rev=0)
    rec.delete(prefix + "b")
    rec.put(prefix + "z-end", obj("end"))
    got = w.wait_for_key(prefix + "z-end")
    assert as_tuples(got) == rec.expected
    deleted = [e for e in got if e.type == "DELETE"]
    assert deleted[0].value["spec"] == {"v": 2}  # the old value
    assert deleted[0].value["metadata"]["resourceVersion"] == str(rec.expected[2][2])  # its last mod rev
    for e in got:
        if e.type == "PUT":
            assert e.value["metadata"]["resourceVersion"] == str(e.rev)
    assert w.events == got  # nothing after the last write


def test_watch_from_old_revision_replays_history(store, prefix, watch):
    rec = Recorder(store)
    _, start = store.list(prefix)
    for i in range(10):
        rec.put(prefix + "k%d" % (i % 4), obj("k", i=i))
        if i % 3 == 2:
            rec.delete(prefix + "k%d" % (i % 4))
    w = watch(store, prefix, start)
    assert as_tuples(w.wait_for(len(rec.expected))) == rec.expected
    mid = rec.expected[4][2]
    w2 = watch(store, prefix, mid)  # from the middle: rev > mid only
    assert as_tuples(w2.wait_for(len(rec.expected) - 5)) == rec.expected[5:]
    rec.put(prefix + "live", obj("live"))  # then blocks for live ones
    assert as_tuples(w.wait_for_key(prefix + "live")) == rec.expected
    assert as_tuples(w2.wait_for_key(prefix + "live")) == rec.expected[5:]


def test_watch_with_writer_in_another_process(store, store_url, prefix, watch):
    """Another process writes N changes while this one writes too: the watch
    sees every one of them, once, in revision order."""
    n = 200
    _, start = store.list(prefix)
    w = watch(store, prefix, start)
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, store_url, prefix, str(n)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        rec = Recorder(store)
        for i in range(50):
            rec.put(prefix + "main/%d" % (i % 7), obj("m", i=i))
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()  # by its PID
            proc.communicate()
    assert proc.returncode == 0, err
    theirs = [tuple(x) for x in json.loads(out)]
    expected = sorted(rec.expected + theirs, key=lambda e: e[2])
    assert len({e[2] for e in expected}) == n + 50  # one revision per change
    got = w.wait_for(n + 50, timeout=60)
    assert as_tuples(got) == expected
    rec.put(prefix + "sentinel", obj("s"))  # no duplicates after the last one
    assert as_tuples(w.wait_for_key(prefix + "sentinel")) == expected + rec.expected[-1:]


def test_watch_across_reconnect(backend, store, prefix, watch, request, caplog):
    """The connection under a watch breaks mid-stream, more than once; writes
    go on before it is back; still every change once, in order."""
    caplog.set_level(logging.WARNING, logger="podnet.store")
    if backend == "sqlite":
        flaky = FlakyConnections(store)
        drops = [lambda at=at: flaky.drop(at) for at in (None, "BEGIN", "name='rev'", "FROM log")]
    else:
        server = request.getfixturevalue("etcd_server")
        drops = [server.restart] * 2  # stop by PID, start on the same data dir
    writer = Recorder(store)
    _, start = store.list(prefix)
    w = watch(store, prefix, start)
    for phase in range(len(drops) + 1):
        for i in range(40):
            writer.put(prefix + "k%d" % (i % 9), obj("k", phase=phase, i=i))
            if i % 10 == 9:
                writer.delete(prefix + "k%d" % (i % 9))
        if phase < len(drops):
            w.wait_for(len(writer.expected))
            drops[phase]()
    got = w.wait_for(len(writer.expected), timeout=60)
    assert as_tuples(got) == writer.expected
    writer.put(prefix + "sentinel", obj("s"))
    assert as_tuples(w.wait_for_key(prefix + "sentinel")) == writer.expected
    if backend == "sqlite":
        assert flaky.failures == len(drops)  # the watch did hit every break
    else:
        assert caplog.text.count("resuming after rev") >= 2


def test_watch_resumes_on_a_new_store_object(open_new, prefix, watch):
    """A consumer that stops and reopens resumes from the last rev it saw."""
    a = open_new()
    rec = Recorder(a)
    _, start = a.list(prefix)
    w = watch(a, prefix, start)
    for i in range(20):
        rec.put(prefix + "k%d" % (i % 5), obj("k", i=i))
    first = w.wait_for(20)
    a.close()  # ends the watch
    w.thread.join(5)
    assert not w.thread.is_alive() and w.error is None
    b = open_new()
    rec.store = b
    for i in range(20, 40):
        rec.put(prefix + "k%d" % (i % 5), obj("k", i=i))
    w2 = watch(b, prefix, first[-1].rev)
    assert as_tuples(first + w2.wait_for(20)) == rec.expected


def test_compacted_history(store, prefix, watch):
    rec = Recorder(store)
    revs = [rec.put(prefix + "k%d" % i, obj("k", i=i)) for i in range(5)]
    store.compact(revs[3])  # history before revs[3] is gone
    with pytest.raises(Compacted):
        next(iter(store.watch(prefix, revs[0], threading.Event())))
    w = watch(store, prefix, revs[3] - 1)  # still available: revs[3], revs[4]
    assert as_tuples(w.wait_for(2)) == rec.expected[3:]
    w.close()
    items, _ = store.list(prefix)  # the state is all still there
    assert [r for _, _, r in items] == revs


def test_stop_ends_a_blocked_watch_promptly(store, prefix, watch):
    _, start = store.list(prefix)
    w = watch(store, prefix, start)
    time.sleep(0.3)  # let it block
    assert w.thread.is_alive() and w.events == []
    t0 = time.monotonic()
    w.close(timeout=5)
    assert time.monotonic() - t0 < 0.5
    assert w.error is None


def test_close_ends_a_running_watch(open_new, prefix, watch):
    s = open_new()
    w = watch(s, prefix, s.list(prefix)[1])
    time.sleep(0.2)
    t0 = time.monotonic()
    s.close()
    w.thread.join(5)
    assert not w.thread.is_alive() and time.monotonic() - t0 < 0.5


def test_watch_latency(store, prefix, watch):
    """A change reaches a blocked watcher in well under 100 ms."""
    w = watch(store, prefix, store.list(prefix)[1])
    time.sleep(0.1)
    delays = []
    for i in range(20):
        t0 = time.monotonic()
        store.put(prefix + "k", obj("k", i=i))
        w.wait_for(i + 1, timeout=5)
        delays.append(w.arrived[i] - t0)
        time.sleep(0.01)
    assert statistics.median(delays) < 0.1 and max(delays) < 0.5, delays


# ---- backend specifics -----------------------------------------------------


def test_sqlite_history_is_bounded(tmp_path, monkeypatch):
    from podnet.store import sqlite as mod

    monkeypatch.setattr(mod, "COMPACT_EVERY", 10)
    s = mod.SqliteStore(str(tmp_path / "b.db"), history=30)
    try:
        revs = [s.put("/registry/x/k%d" % (i % 3), {"i": i}) for i in range(100)]
        with sqlite3.connect(str(tmp_path / "b.db")) as c:
            kept = c.execute("SELECT count(*), min(rev) FROM log").fetchone()
        assert 30 <= kept[0] <= 40 and kept[1] == revs[-1] - kept[0] + 1
        with pytest.raises(Compacted):
            next(iter(s.watch("/registry/", 0, threading.Event())))
        evs = s.watch("/registry/", kept[1] - 1, threading.Event())
        assert [next(evs).rev for _ in range(kept[0])] == revs[-kept[0] :]
        evs.close()
    finally:
        s.close()


def test_etcd_skips_a_dead_endpoint(etcd_server, prefix):
    from podnet.store.etcd import EtcdStore

    etcd_server.ensure_running()
    s = EtcdStore(["127.0.0.1:1", etcd_server.endpoint], timeout=5)
    try:
        rev = s.put(prefix + "a", obj("a"))
        assert s.get(prefix + "a")[1] == rev
    finally:
        s.close()


def test_etcd_watch_stream_decoding_at_every_split():
    """The watch stream's chunked decoding, whatever way TCP cuts the bytes."""
    import random
    import socket

    from podnet.store.etcd import _Stream

    msgs = [{"result": {"i": i, "pad": "x" * (i * 37 % 300)}} for i in range(40)]
    payload = b"".join(json.dumps(m).encode() + b"\n" for m in msgs)
    rnd, wire, pos = random.Random(7), b"", 0
    while pos < len(payload):  # chunks unaligned with messages
        n = min(rnd.randint(1, 200), len(payload) - pos)
        wire += b"%x\r\n%s\r\n" % (n, payload[pos : pos + n])
        pos += n
    for size in (1, 2, 3, 7, 64, len(wire)):
        st = _Stream(("127.0.0.1", 0), 5)
        st.chunked = True
        for i in range(0, len(wire), size):
            st.raw += wire[i : i + size]
            st._dechunk()
        assert bytes(st.body) == payload and not st.raw, size
    a, b = socket.socketpair()  # and the whole reader, end of stream included
    try:
        st = _Stream(("127.0.0.1", 0), 5)
        st.sock, st.chunked = a, True
        b.sendall(wire + b"0\r\n\r\n")
        got = []
        with pytest.raises(ConnectionError):
            for m in st.messages(lambda: False):
                got.append(m)
        assert got == msgs
    finally:
        a.close()
        b.close()
