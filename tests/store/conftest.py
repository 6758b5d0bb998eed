"""Fixtures for the store contract suite: a real etcd on loopback, one store
per backend, and a watcher running in a thread.

etcd runs once per session on free loopback ports with a private data dir;
it is stopped by the PID we started (never by name) and its directory is
removed, also when tests fail. The restart test stops and starts it on the
same data dir; every test that needs it makes sure it is up again.
"""

import ctypes
import http.client
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid

import pytest

ETCD = "/usr/bin/etcd"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent():
    """Runs in the child: if pytest dies, etcd gets SIGTERM (Linux prctl)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class EtcdServer:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="podnet-etcd-")
        self.client, self.peer = _free_port(), _free_port()
        self.proc = None
        self.starts = 0

    @property
    def endpoint(self):
        return "127.0.0.1:%d" % self.client

    def _healthy(self):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.client, timeout=1)
            try:
                conn.request("GET", "/health")
                return b'"true"' in conn.getresponse().read()
            finally:
                conn.close()
        except OSError:
            return False

    def start(self, timeout=30):
        peer = "http://127.0.0.1:%d" % self.peer
        client = "http://127.0.0.1:%d" % self.client
        self.starts += 1
        logf = open(os.path.join(self.dir, "etcd-%d.log" % self.starts), "wb")
        try:
            self.proc = subprocess.Popen(
                [
                    ETCD,
                    "--name",
                    "default",
                    "--data-dir",
                    os.path.join(self.dir, "data"),
                    "--listen-client-urls",
                    client,
                    "--advertise-client-urls",
                    client,
                    "--listen-peer-urls",
                    peer,
                    "--initial-advertise-peer-urls",
                    peer,
                    "--initial-cluster",
                    "default=" + peer,
                ],
                stdout=logf,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
        finally:
            logf.close()
        deadline = time.monotonic() + timeout
        while not self._healthy():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                with open(logf.name, "rb") as f:
                    tail = f.read()[-3000:].decode(errors="replace")
                raise AssertionError("etcd did not become healthy on %s:\n%s" % (client, tail))
            time.sleep(0.05)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # by the PID we started
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def restart(self):
        self.stop()
        self.start()

    def ensure_running(self):
        if self.proc is None or self.proc.poll() is not None:
            self.proc = None
            self.start()

    def cleanup(self):
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def etcd_server():
    if not os.path.exists(ETCD):
        pytest.fail("%s is missing: ./setup.sh installs etcd-server" % ETCD)
    server = EtcdServer()
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


@pytest.fixture(params=["sqlite", "etcd"])
def backend(request):
    return request.param


@pytest.fixture
def store_url(backend, request, tmp_path):
    if backend == "sqlite":
        return "sqlite://" + str(tmp_path / "store.db")
    server = request.getfixturevalue("etcd_server")
    server.ensure_running()
    return "etcd://" + server.endpoint


@pytest.fixture
def open_new(store_url):
    """Opens store objects on this test's backend; closes them all afterwards."""
    from podnet.store.base import open_store

    opened = []

    def new():
        s = open_store(store_url)
        opened.append(s)
        return s

    try:
        yield new
    finally:
        for s in opened:
            s.close()


@pytest.fixture
def store(open_new):
    return open_new()


@pytest.fixture
def prefix():
    """A key prefix of this test's own (the etcd server is shared)."""
    return "/registry/t%s/" % uuid.uuid4().hex[:12]


class Watcher:
    """store.watch(prefix, from_rev) running in a thread, collecting events."""

    def __init__(self, store, prefix, from_rev):
        self.events, self.arrived, self.error, self.done = [], [], None, False
        self.stop_event = threading.Event()
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._run, args=(store, prefix, from_rev), daemon=True)
        self.thread.start()

    def _run(self, store, prefix, from_rev):
        try:
            for ev in store.watch(prefix, from_rev, self.stop_event):
                with self.cond:
                    self.events.append(ev)
                    self.arrived.append(time.monotonic())
                    self.cond.notify_all()
        except BaseException as exc:  # handed to the test thread
            self.error = exc
        finally:
            with self.cond:
                self.done = True
                self.cond.notify_all()

    def wait_until(self, pred, timeout=20, what="events"):
        with self.cond:
            ok = self.cond.wait_for(lambda: self.done or pred(self.events), timeout)
            events = list(self.events)
        if self.error is not None:
            raise self.error
        assert ok and pred(events), "watch: timed out waiting for %s; got %d events, last %r" % (
            what,
            len(events),
            events[-3:],
        )
        return events

    def wait_for(self, n, timeout=20):
        return self.wait_until(lambda evs: len(evs) >= n, timeout, "%d events" % n)

    def wait_for_key(self, key, timeout=20):
        """Every event up to and including the first one for `key`."""
        events = self.wait_until(lambda evs: any(e.key == key for e in evs), timeout, key)
        return events[: next(i for i, e in enumerate(events) if e.key == key) + 1]

    def close(self, timeout=5):
        self.stop_event.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "watch did not end within %ss of stop" % timeout


@pytest.fixture
def watch():
    """watch(store, prefix, from_rev) -> a running Watcher, stopped at teardown."""
    running = []

    def start(store, prefix, from_rev):
        w = Watcher(store, prefix, from_rev)
        running.append(w)
        return w

    try:
        yield start
    finally:
        for w in running:
            w.stop_event.set()
        for w in running:
            w.thread.join(5)
