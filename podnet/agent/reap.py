"""Every process of a pod, found by its namespaces, and stopped.

A container is signalled as a process group (containers.stop), but a process
that calls setsid(2) or double-forks leaves the group, and without a PID
namespace nothing ties it to its pod any more, except the namespaces it
still lives in. So, as `lab down` finds a node's processes by the inode of
its network namespace (netns.kill_processes_in):

* a pod with a network namespace of its own: every process in that netns
  (all its containers, their daemons, `podnet exec` sessions);
* every container: its own UTS namespace (and mount namespace when it has
  one), which `unshare` made at its start; their inodes are recorded in
  `<pod dir>/<container>.ns` so a restarted agent finds them too. This is how
  a hostNetwork pod's processes are told from the node's, and how the
  daemonised children of one container are found when its main process
  exits (a runtime tears the whole container down when its pid 1 exits).

What is left after the grace period gets SIGKILL. A namespace equal to the
agent's own or PID 1's is never used (netns.pids_in_namespaces refuses it),
so a recording taken before `unshare` ran can never sweep the node.
"""

import json
import os
import signal
import time

from podnet.kernel import netns

KINDS = ("uts", "mnt")


def own_namespaces(pid, timeout=2.0):
    """{kind: [dev, inode]} of the namespaces process `pid` does not share
    with us. Right after fork `unshare` may not have run yet: wait (up to
    `timeout`) for its UTS namespace to differ from ours; {} if it never
    does (the process exited, or was started without a namespace)."""
    deadline = time.monotonic() + timeout
    while True:
        uts = netns.ns_ident(pid, "uts")
        if uts is None:
            return {}
        if uts != netns.ns_ident("self", "uts"):
            break
        if time.monotonic() > deadline:
            return {}
        time.sleep(0.002)
    out = {}
    for kind in KINDS:
        ident = netns.ns_ident(pid, kind)
        if ident is not None and ident != netns.ns_ident("self", kind):
            out[kind] = list(ident)
    return out


def ns_file(log_dir, container):
    return os.path.join(log_dir, container + ".ns")


def record(log_dir, container, proc):
    """After a container started: note its namespaces on `proc` (for
    containers.kill_leftovers) and in <pod dir>/<container>.ns. -> proc"""
    spaces = own_namespaces(proc.pid)
    proc.namespaces = spaces
    path = ns_file(log_dir, container)
    with open(path + ".tmp", "w") as f:
        json.dump(spaces, f)
    os.replace(path + ".tmp", path)
    return proc


def recall(log_dir, container, proc):
    """An adopted container (a previous agent started it): its namespaces
    from <pod dir>/<container>.ns, if they are still its own. -> proc"""
    try:
        with open(ns_file(log_dir, container)) as f:
            spaces = json.load(f)
    except (OSError, ValueError):
        spaces = {}
    proc.namespaces = {k: v for k, v in spaces.items() if netns.ns_ident(proc.pid, k) == tuple(v)}
    return proc


def recorded(log_dir):
    """{kind: {ident}} of every container recorded in a pod dir."""
    out = {}
    try:
        names = [n for n in os.listdir(log_dir) if n.endswith(".ns")]
    except FileNotFoundError:
        return out
    for n in names:
        try:
            with open(os.path.join(log_dir, n)) as f:
                doc = json.load(f)
        except (OSError, ValueError):
            continue
        for kind, ident in doc.items():
            if kind in KINDS:
                out.setdefault(kind, set()).add(tuple(ident))
    return out


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
    """SIGKILL every process in these namespaces, and wait (up to `wait` s)
    until none is left running. -> the PIDs signalled."""
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
    if spaces:
        kill({k: {tuple(v)} for k, v in spaces.items()}, wait=2.0)


def kill_pod(log_dir, netns_name=None):
    """After the pod's containers were stopped (grace period over): SIGKILL
    everything still in the pod's netns (None for hostNetwork pods) or in
    any of its containers' own namespaces."""
    return kill(recorded(log_dir), netns_name)
