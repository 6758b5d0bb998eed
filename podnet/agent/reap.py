"""Every process of a pod, found by its namespaces, and stopped.

A container is signalled as a process group (containers.stop), but a process
that calls setsid(2) or double-forks leaves the group, and without a PID
namespace nothing ties it to its pod any more, except the namespaces it
still lives in. So, as `lab down` finds a node's processes by the inode of
its network namespace (netns.kill_processes_in):

* a pod with a network namespace of its own: every process in that netns
  (all its containers, their daemons, `podnet exec` sessions);
* every container: its own UTS namespace (and mount namespace when it has
  one), which `unshare` made at its start. This is how a hostNetwork pod's
  processes are told from the node's, and how the daemonised children of
  one container are found when its main process exits (a runtime tears the
  whole container down when its pid 1 exits).

A namespace's inode number is reused once the namespace is gone, so a
recorded number alone could later name another pod's namespace. We hold an
open fd on each container namespace from its start until it has been swept:
while the fd is open the namespace (and its number) stays ours. The numbers
are also written to `<pod dir>/<container>.ns`, for a restarted agent that
adopts the container: `recall` takes them only while they are still the
live process's own, and holds them from then on.

What is left after the grace period gets SIGKILL. A namespace equal to the
agent's own or PID 1's is never used (netns.pids_in_namespaces refuses it),
so a reading taken before `unshare` ran can never sweep the node.
"""

import json
import os
import signal
import threading
import time

from podnet.kernel import netns

KINDS = ("uts", "mnt")


class Spaces:
    """Open fds on a container's own namespaces: {kind: (fd, (dev, inode))}."""

    def __init__(self, held=None):
        self.held = dict(held or {})
        self.lock = threading.Lock()

    @property
    def idents(self):
        """{kind: {(dev, inode)}}; empty once closed."""
        with self.lock:
            return {kind: {ident} for kind, (_, ident) in self.held.items()}

    def close(self):
        with self.lock:
            held, self.held = self.held, {}
        for fd, _ in held.values():
            os.close(fd)

    def __bool__(self):
        return bool(self.held)


def _open(pid, kind):
    """-> (fd, ident) on /proc/PID/ns/KIND, or None (the process is gone)."""
    try:
        fd = os.open("/proc/%s/ns/%s" % (pid, kind), os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, PermissionError, ProcessLookupError):
        return None
    st = os.fstat(fd)
    return fd, (st.st_dev, st.st_ino)


def own_namespaces(pid, timeout=2.0, want=None):
    """Spaces held on the namespaces process `pid` does not share with us.
    Right after fork `unshare` may not have run yet: wait (up to `timeout`)
    for its UTS namespace to differ from ours; empty if it never does (the
    process exited, or was started without a namespace of its own).
    want: {kind: (dev, inode)}: hold only those (a recorded container)."""
    deadline = time.monotonic() + timeout
    held = {}
    try:
        for kind in KINDS:
            mine = netns.ns_ident("self", kind)
            while True:
                got = _open(pid, kind)
                if got is None:
                    break
                fd, ident = got
                ok = ident != mine and (want is None or tuple(want.get(kind) or ()) == ident)
                if ok:
                    held[kind] = got
                    break
                os.close(fd)
                # only the UTS namespace is waited for: it is made first, and
                # a container without a mount namespace of its own has none
                if kind != "uts" or want is not None or time.monotonic() > deadline:
                    break
                time.sleep(0.002)
            if kind == "uts" and "uts" not in held:
                break
    except BaseException:
        for fd, _ in held.values():
            os.close(fd)
        raise
    return Spaces(held)


def ns_file(log_dir, container):
    return os.path.join(log_dir, container + ".ns")


_lock = threading.Lock()
_held: dict = {}  # (pod dir, container) -> Spaces of its current process


def _keep(log_dir, container, spaces):
    with _lock:
        old = _held.get((log_dir, container))
        _held[(log_dir, container)] = spaces
    if old is not None and old is not spaces:
        # the container's previous process: swept when it exited (kill_leftovers)
        old.close()


def record(log_dir, container, proc):
    """After a container started: hold its namespaces (proc.namespaces, for
    containers.kill_leftovers and kill_pod) and write their numbers to
    <pod dir>/<container>.ns. -> proc"""
    spaces = own_namespaces(proc.pid)
    proc.namespaces = spaces
    _keep(log_dir, container, spaces)
    path = ns_file(log_dir, container)
    with open(path + ".tmp", "w") as f:
        json.dump({kind: list(ident) for kind, (_, ident) in spaces.held.items()}, f)
    os.replace(path + ".tmp", path)
    return proc


def recall(log_dir, container, proc):
    """An adopted container (a previous agent started it): hold the
    namespaces recorded in <pod dir>/<container>.ns if they are still its
    own. -> proc"""
    try:
        with open(ns_file(log_dir, container)) as f:
            want = {k: tuple(v) for k, v in json.load(f).items()}
    except (OSError, ValueError, TypeError, AttributeError):
        want = {}
    spaces = own_namespaces(proc.pid, timeout=0, want=want) if want.get("uts") else Spaces()
    proc.namespaces = spaces
    _keep(log_dir, container, spaces)
    return proc


def pids_of(spaces, netns_name=None):
    """Live PIDs in any of `spaces` ({kind: {ident}}) or in the named netns."""
    pids = set()
    for kind, idents in spaces.items():
        pids.update(netns.pids_in_namespaces(kind, idents))
    if netns_name:
        ident = netns.ns_ident_of_path(netns.path_of(netns_name))
        if ident is not None:
            pids.update(netns.pids_in_namespaces("net", {ident}))
    return pids


def kill(spaces, netns_name=None, wait=5.0):
    """SIGKILL every process in these namespaces ({kind: {ident}}) or the
    named netns, and wait (up to `wait` s) until none is left running.
    -> the PIDs signalled."""
    killed = set()
    deadline = time.monotonic() + wait
    while True:
        pids = pids_of(spaces, netns_name)
        if not pids or time.monotonic() > deadline:
            return sorted(killed)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except ProcessLookupError:
                pass
        time.sleep(0.01)


def kill_container_leftovers(proc):
    """The main process of a container exited: SIGKILL what it left in its
    own namespaces (daemonised children the process group misses)."""
    spaces = getattr(proc, "namespaces", None)
    if isinstance(spaces, Spaces) and spaces:
        kill(spaces.idents, wait=2.0)


def kill_pod(log_dir, netns_name=None):
    """After the pod's containers were stopped (grace period over): SIGKILL
    everything still in the pod's netns (None for hostNetwork pods) or in
    any of its containers' own namespaces; then let go of those."""
    with _lock:
        mine = [(key, s) for key, s in _held.items() if key[0] == log_dir]
        for key, _ in mine:
            del _held[key]
    idents = {}
    for _, s in mine:
        for kind, ids in s.idents.items():
            idents.setdefault(kind, set()).update(ids)
    try:
        return kill(idents, netns_name)
    finally:
        for _, s in mine:
            s.close()
