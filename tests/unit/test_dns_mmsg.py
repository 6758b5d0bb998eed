"""Batched UDP I/O (podnet.dns.mmsg) on real sockets over loopback: every
queued datagram comes out of one recv with its bytes intact, and every
reply reaches the sender it answers."""

import socket

import pytest

from podnet.dns import mmsg

pytestmark = pytest.mark.skipif(not mmsg.available(), reason="recvmmsg/sendmmsg layout is LP64 Linux only")


def test_batch_in_batch_out():
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind(("127.0.0.1", 0))
    clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
    try:
        for c in clients:
            c.bind(("127.0.0.1", 0))
            c.settimeout(2)
        sent = []
        for k in range(30):  # 30 queued before the first recv
            c = clients[k % 3]
            msg = b"q%02d" % k + bytes(k)  # different lengths
            c.sendto(msg, srv.getsockname())
            sent.append((c.getsockname(), msg))
        b = mmsg.Batcher(srv)
        got = []
        while len(got) < 30:
            got += b.recv()
        assert sorted(d for d, _ in got) == sorted(m for _, m in sent)
        for k, (data, slot) in enumerate(got):
            assert b.sender(slot) == next(addr for addr, m in sent if m == data)
            if k % 2:
                assert b.reply(slot, b"a" + data)
            else:  # put: the query's first two bytes (the DNS ID), then the body
                assert b.put(slot, data, b"-a" + data[2:])
        b.flush()
        answers = {c.getsockname(): sorted(c.recv(100) for _ in range(10)) for c in clients}
        for addr, msg in sent:
            assert b"a" + msg in answers[addr] or msg[:2] + b"-a" + msg[2:] in answers[addr]
        # more than one batch of replies cannot be queued: the caller must flush
        for _data, slot in got[:1] * (mmsg.BATCH + 1):
            ok = b.reply(slot, b"x")
        assert not ok
        b.pending = 0
    finally:
        srv.close()
        for c in clients:
            c.close()
