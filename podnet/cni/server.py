"""`podnet cni serve`: the warm daemon behind the thin executables.

It keeps pyroute2 and the plugin modules imported, so a CNI call costs one
interpreter start in the executable plus the netlink work here. Each
connection is served on its own thread (setns is per thread, see
kernel.netns). The caller's network namespace, found from the peer's PID
(SO_PEERCRED), is the "host" side of the call, so one daemon can serve
runtimes in any namespace; when it is the daemon's own, no setns happens.
"""

import os
import signal
import socket
import socketserver
import struct
import sys
import threading
import time

from podnet.cni import dispatch, thin


class Ops:
    """CNI calls served, by command (ADD, DEL, CHECK, ...) and result (ok,
    error): count and seconds. A plain table here (the agent's metrics page
    reads it: podnet/agent/metrics.py), so the CNI code needs no metrics library."""

    def __init__(self):
        self.lock = threading.Lock()
        self.table = {}  # (command, result) -> [count, seconds]

    def note(self, command, result, seconds):
        with self.lock:
            row = self.table.setdefault((command, result), [0, 0.0])
            row[0] += 1
            row[1] += seconds

    def items(self):
        with self.lock:
            return sorted((k, tuple(v)) for k, v in self.table.items())


OPS = Ops()


def _peer_pid(sock):
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, _uid, _gid = struct.unpack("3i", creds)
    return pid


class _Handler(socketserver.BaseRequestHandler):
    def handle(self):
        from podnet.kernel.netns import Netns, NetnsError

        sock = self.request
        try:
            plugin, env, raw = thin.decode_request(thin.read_all(sock))
        except ValueError as exc:
            sock.sendall(thin.encode_response(1, b"", ("bad request: %s\n" % exc).encode()))
            return
        host_ns = None
        try:
            peer = Netns.of_pid(_peer_pid(sock))
            if peer.same_as(self.server.own_ns):
                peer.close()
            else:
                host_ns = peer
        except NetnsError:
            pass  # the caller already exited: serve it in our own namespace
        t0 = time.monotonic()
        rc = 1
        try:
            rc, out, err = dispatch.run(plugin, env, raw, host_ns=host_ns)
        finally:
            if host_ns is not None:
                host_ns.close()
            OPS.note(str(env.get("CNI_COMMAND", "?"))[:16], "ok" if rc == 0 else "error", time.monotonic() - t0)
        if err and self.server.verbose:
            sys.stderr.write(err.decode(errors="replace"))
            sys.stderr.flush()
        try:
            sock.sendall(thin.encode_response(rc, out, err))
        except BrokenPipeError:
            pass  # the runtime gave up on us; the work is done regardless


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    block_on_close = False
    # socketserver's default backlog is 5: a burst of pod starts (100 ADDs at
    # once in the tests) would see EAGAIN on connect.
    request_queue_size = 1024

    def __init__(self, path, verbose=True):
        from podnet.kernel.netns import Netns

        self.verbose = verbose
        self.own_ns = Netns()
        self.path = path
        try:
            os.unlink(path)  # a socket left by a killed daemon
        except FileNotFoundError:
            pass
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        old = os.umask(0o077)
        try:
            super().__init__(path, _Handler)
        finally:
            os.umask(old)

    def server_close(self):
        super().server_close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def warm_up():
    """Import everything a call needs before the first call arrives."""
    import pyroute2  # noqa: F401 - warm-up: loaded now so the first call does not pay ~250 ms

    from podnet.cni import bridge, ipam_plugin, portmap  # noqa: F401 - warm-up, as above
    from podnet.kernel import links, netns  # noqa: F401 - warm-up, as above


def serve(path, ready=None, verbose=True):
    warm_up()
    server = Server(path, verbose=verbose)

    def stop(*_):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if ready:
        ready(server)
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        server.server_close()
