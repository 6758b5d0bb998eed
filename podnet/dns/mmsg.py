"""Batched UDP I/O: recvmmsg(2) and sendmmsg(2) through ctypes.

A Python DNS server spends most of each query in two system calls (recvfrom,
sendto), not in the dict lookup that finds the answer. Under load many
queries wait in the socket at once, so one recvmmsg can take up to BATCH of
them and one sendmmsg can send all the replies: the per-call cost is paid per
batch, not per query. Python's socket module has neither call, so this module
declares the kernel's structures itself, once, and reads and writes their
fields through memoryviews (a ctypes attribute access per field would cost
more than the system call it saves).

Layout (LP64: x86_64, aarch64), checked against ctypes at import:
    struct msghdr  { void *name; u32 namelen; struct iovec *iov; size_t iovlen;
                     void *control; size_t controllen; int flags; }   56 bytes
    struct mmsghdr { struct msghdr hdr; u32 len; }                     64 bytes
    struct iovec   { void *base; size_t len; }                         16 bytes
`available()` is False elsewhere, and the server keeps its one-by-one loop.
"""

import ctypes
import errno
import os
import socket
import struct

BATCH = 64
BUF = 1232  # largest UDP query we take in the batch (EDNS's common size); longer ones are truncated
NAME = 128  # sizeof(struct sockaddr_storage)
MSG_WAITFORONE = 0x10000
_MMSG, _IOV = 64, 16


class _iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class _msghdr(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_void_p),
        ("namelen", ctypes.c_uint32),
        ("iov", ctypes.c_void_p),
        ("iovlen", ctypes.c_size_t),
        ("control", ctypes.c_void_p),
        ("controllen", ctypes.c_size_t),
        ("flags", ctypes.c_int),
    ]


class _mmsghdr(ctypes.Structure):
    _fields_ = [("hdr", _msghdr), ("len", ctypes.c_uint32)]


try:
    _libc = ctypes.CDLL(None, use_errno=True)
    _recvmmsg, _sendmmsg = _libc.recvmmsg, _libc.sendmmsg
    for f in (_recvmmsg, _sendmmsg):
        f.restype = ctypes.c_int
    _recvmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]
    _sendmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
    _OK = (
        ctypes.sizeof(_mmsghdr) == _MMSG
        and ctypes.sizeof(_iovec) == _IOV
        and _msghdr.iov.offset == 16
        and _mmsghdr.len.offset == 56
        and ctypes.sizeof(ctypes.c_void_p) == 8
    )
except (OSError, AttributeError):
    _OK = False


def available():
    return _OK


class _Vectors:
    """BATCH mmsghdrs, each with one iovec into its own BUF-sized slot."""

    def __init__(self, names_addr):
        self.msgs = ctypes.create_string_buffer(BATCH * _MMSG)
        self.iovs = ctypes.create_string_buffer(BATCH * _IOV)
        self.data = ctypes.create_string_buffer(BATCH * BUF)
        self.q = memoryview(self.msgs).cast("B").cast("Q")  # 8-byte fields, 8 per message
        self.u = memoryview(self.msgs).cast("B").cast("I")  # 4-byte fields, 16 per message
        self.iq = memoryview(self.iovs).cast("B").cast("Q")
        self.buf = memoryview(self.data).cast("B")
        self.addr = ctypes.addressof(self.msgs)
        iov0, data0 = ctypes.addressof(self.iovs), ctypes.addressof(self.data)
        for i in range(BATCH):
            self.q[i * 8] = names_addr + i * NAME  # msg_name
            self.u[i * 16 + 2] = NAME  # msg_namelen
            self.q[i * 8 + 2] = iov0 + i * _IOV  # msg_iov
            self.q[i * 8 + 3] = 1  # msg_iovlen
            self.iq[i * 2] = data0 + i * BUF  # iov_base
            self.iq[i * 2 + 1] = BUF  # iov_len


class Batcher:
    """recv() -> [(query bytes, slot)]; reply(slot, bytes) queues an answer
    for that query's sender; flush() sends what is queued in one call."""

    def __init__(self, sock):
        self.fd = sock.fileno()
        self.names = ctypes.create_string_buffer(BATCH * NAME)
        self.names_mv = memoryview(self.names).cast("B")
        names_addr = ctypes.addressof(self.names)
        self.r = _Vectors(names_addr)
        self.s = _Vectors(names_addr)
        self.pending = 0

    def recv(self):
        """Block for at least one datagram; -> the list of (data, slot)."""
        r = self.r
        while True:
            n = _recvmmsg(self.fd, r.addr, BATCH, MSG_WAITFORONE, None)
            if n >= 0:
                break
            e = ctypes.get_errno()
            if e != errno.EINTR:
                raise OSError(e, os.strerror(e))
        u, buf = r.u, r.buf
        out = []
        for i in range(n):
            ln = u[i * 16 + 14]  # msg_len
            out.append((buf[i * BUF : i * BUF + ln].tobytes(), i))
            u[i * 16 + 2] = NAME  # namelen back for the next call
        return out

    def reply(self, slot, wire):
        j = self.pending
        if j == BATCH or len(wire) > BUF:
            return False
        s = self.s
        s.q[j * 8] = self.r.q[slot * 8]  # msg_name: the query's sender
        s.u[j * 16 + 2] = self.r.u[slot * 16 + 2] or 16
        s.buf[j * BUF : j * BUF + len(wire)] = wire
        s.iq[j * 2 + 1] = len(wire)
        self.pending = j + 1
        return True

    def put(self, slot, query, body):
        """reply() for an answer whose bytes after the 2-byte ID are `body`:
        the ID is copied from the query straight into the send slot, so the
        answer is never joined into a new bytes object."""
        j = self.pending
        n = len(body) + 2
        if j == BATCH or n > BUF:
            return False
        s = self.s
        s.q[j * 8] = self.r.q[slot * 8]
        s.u[j * 16 + 2] = self.r.u[slot * 16 + 2] or 16
        off = j * BUF
        buf = s.buf
        buf[off] = query[0]
        buf[off + 1] = query[1]
        buf[off + 2 : off + n] = body
        s.iq[j * 2 + 1] = n
        self.pending = j + 1
        return True

    def flush(self):
        s, done, total = self.s, 0, self.pending
        while done < total:
            n = _sendmmsg(self.fd, s.addr + done * _MMSG, total - done, 0)
            if n < 0:
                e = ctypes.get_errno()
                if e == errno.EINTR:
                    continue
                n = 1  # this one could not go (e.g. no route back): drop it, as a lost UDP reply
            done += n
        self.pending = 0

    def sender(self, slot):
        """The (host, port) of a slot's sender, for the slow path's sendto."""
        raw = self.names_mv[slot * NAME : slot * NAME + 28].tobytes()
        family = struct.unpack_from("=H", raw)[0]
        if family == socket.AF_INET:
            return socket.inet_ntop(socket.AF_INET, raw[4:8]), struct.unpack_from("!H", raw, 2)[0]
        return socket.inet_ntop(socket.AF_INET6, raw[8:24]), struct.unpack_from("!H", raw, 2)[0], 0, 0
