"""Network namespaces: enter one for the current thread, open netlink in one,
create and delete named ones.

setns(2) changes only the calling thread, so a daemon serving many CNI calls
at once moves each worker thread on its own and always moves it back. A
netlink socket stays bound to the namespace it was created in, so we create
it inside the target namespace and hand it to pyroute2 (`use_socket`), which
avoids pyroute2's own netns support: that forks a helper process per socket
(several ms each on this machine).

A child process started by subprocess inherits the namespace of the thread
that forked it, so `entered(ns)` around subprocess.run runs `nft` there.
"""

import ctypes
import errno
import os
import socket
import subprocess
import threading
from contextlib import contextmanager

CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = "/run/netns"
_libc = ctypes.CDLL(None, use_errno=True)


class NetnsError(OSError):
    pass


def _setns(fd, what):
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise NetnsError(err, "setns into %s: %s" % (what, os.strerror(err)))


def path_of(name_or_path):
    if "/" in name_or_path:
        return name_or_path
    return os.path.join(NETNS_RUN_DIR, name_or_path)


class Netns:
    """An open handle on a network namespace (by path, or our own)."""

    def __init__(self, path=None):
        self.path = path_of(path) if path else "/proc/thread-self/ns/net"
        try:
            self.fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NetnsError(errno.ENOENT, "network namespace %s does not exist" % self.path) from None
        st = os.fstat(self.fd)
        self.ident = (st.st_dev, st.st_ino)

    @classmethod
    def of_pid(cls, pid):
        return cls("/proc/%d/ns/net" % pid)

    def close(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def same_as(self, other):
        return self.ident == other.ident


@contextmanager
def entered(ns):
    """Run the block with this thread inside `ns` (a Netns or None = stay)."""
    if ns is None:
        yield
        return
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(ns.fd, ns.path)
        try:
            yield
        finally:
            _setns(home, "the thread's own namespace")
    finally:
        os.close(home)


def netlink_socket(ns=None):
    """A NETLINK_ROUTE socket bound to `ns` (None: the thread's own)."""
    with entered(ns):
        return socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, socket.NETLINK_ROUTE)


def iproute(ns=None):
    """A pyroute2 IPRoute talking to `ns`."""
    from pyroute2 import IPRoute

    return IPRoute(use_socket=netlink_socket(ns))


def run(argv, ns=None, input=None, check=True, timeout=30):
    """subprocess.run inside `ns`; returns CompletedProcess (text mode)."""
    with entered(ns):
        return subprocess.run(argv, input=input, capture_output=True, text=True, check=check, timeout=timeout)


# ---- named namespaces (tests and the lab) ---------------------------------

_create_lock = threading.Lock()


def create(name):
    """Create /run/netns/NAME (as `ip netns add`); idempotent."""
    path = path_of(name)
    if os.path.exists(path):
        return path
    with _create_lock:
        subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    # A new namespace's loopback is down; every user expects it up.
    with Netns(path) as ns:
        ipr = iproute(ns)
        try:
            ipr.link("set", index=1, state="up")
        finally:
            ipr.close()
    return path


def delete(name):
    """Delete a named namespace; absent is fine."""
    path = path_of(name)
    if not os.path.exists(path):
        return
    res = subprocess.run(["ip", "netns", "delete", name], capture_output=True, text=True)
    if res.returncode != 0 and os.path.exists(path):
        raise NetnsError(errno.EBUSY, "delete netns %s: %s" % (name, res.stderr.strip()))


def list_names():
    try:
        return sorted(os.listdir(NETNS_RUN_DIR))
    except FileNotFoundError:
        return []


def pids_in(names):
    """PIDs of the processes living in these named namespaces, found by the
    namespace inode (never by a process name)."""
    idents = {i for i in (ns_ident_of_path(path_of(name)) for name in names) if i is not None}
    return pids_in_namespaces("net", idents)


def kill_processes_in(names, rounds=20):
    """SIGKILL every process living in one of these named namespaces, until
    none is left: a parent killed after its child may fork a new one in
    between (nginx's master replaces a worker it sees die), so one pass over
    /proc can miss a process born after it."""
    import signal
    import time

    killed = []
    for _ in range(rounds):
        pids = [p for p in pids_in(names) if p not in killed]
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except ProcessLookupError:
                pass
        time.sleep(0.02)
    return killed


# ---- processes by any kind of namespace (a pod's containers) ---------------


def ns_ident(pid, kind):
    """(dev, inode) of /proc/PID/ns/KIND (kind: net, uts, mnt, ...), or None."""
    try:
        st = os.stat("/proc/%s/ns/%s" % (pid, kind))
    except (FileNotFoundError, PermissionError, ProcessLookupError, NotADirectoryError):
        return None
    return (st.st_dev, st.st_ino)


def pids_in_namespaces(kind, idents):
    """PIDs of the processes (zombies left out) whose KIND namespace is one
    of `idents` ({(dev, inode)}), found by inode, never by a process name.
    The namespaces of this process and of PID 1 are never matched: a caller
    that recorded the wrong one must not sweep the host."""
    idents = set(idents) - {ns_ident("self", kind), ns_ident(1, kind)}
    pids = []
    if not idents:
        return pids
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        if ns_ident(entry, kind) not in idents:
            continue
        try:
            with open("/proc/%s/stat" % entry, "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state not in (b"Z", b"X"):
            pids.append(int(entry))
    return pids


def ns_ident_of_path(path):
    """(dev, inode) of a namespace file (/run/netns/NAME), or None."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino)
