"""podnet.agent.reap on the real kernel, without a lab: the processes of a
container that left its process group are found by the container's own
namespaces (or the pod's netns) and killed; a namespace of our own is never
used to find processes."""

import os
import signal
import time

import pytest

from podnet.agent import containers, reap
from podnet.kernel import netns
from tests.helpers import is_sleep, process_running

pytestmark = pytest.mark.kernel

SLEEP = "6012"  # how our leftover is recognised, and cleaned up by PID if a test fails


_running = process_running


def _ours(pid):
    return is_sleep(pid, SLEEP)


def _wait(fn, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not fn():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture
def daemonised(namespaces, tmp_path):
    """A container (in a netns of the test) whose shell double-forks a
    setsid'd sleep and then waits: -> (proc, its log dir, the netns name, the
    sleep's PID)."""
    name = namespaces.new("reap")
    pidfile = tmp_path / "daemon.pid"
    argv = ["sh", "-c", "setsid sh -c 'sleep %s & echo $! > %s'; exec sleep 600" % (SLEEP, pidfile)]
    proc = containers.start(argv, netns.path_of(name), "reaper", str(tmp_path / "c.log"))
    pid = None
    try:
        reap.record(str(tmp_path), "c", proc)
        assert _wait(lambda: pidfile.exists() and pidfile.read_text().strip().isdigit())
        pid = int(pidfile.read_text())
        assert _wait(lambda: _ours(pid))  # $! is known at fork, before the child has exec'd sleep
        yield proc, str(tmp_path), name, pid
    finally:
        containers.stop(proc, grace=0)
        reap.kill_pod(str(tmp_path))  # lets go of the namespaces it holds
        if pid is not None and _ours(pid):
            os.kill(pid, signal.SIGKILL)


def test_the_group_misses_a_setsid_daemon_its_uts_namespace_finds_it(daemonised):
    proc, log_dir, _, pid = daemonised
    assert proc.namespaces.idents.keys() == {"uts"}
    assert netns.ns_ident("self", "uts") not in proc.namespaces.idents["uts"]
    containers.stop(proc, grace=1)  # the process group only
    assert _running(pid)  # what happened before: the daemon lives on
    assert pid in reap.kill_pod(log_dir)  # by the recorded UTS namespace (hostNetwork pods)
    assert _wait(lambda: not _running(pid))


def test_the_pods_netns_finds_it_too(daemonised):
    proc, _, name, pid = daemonised
    containers.stop(proc, grace=1)
    assert pid in reap.kill({}, name)
    assert _wait(lambda: not _running(pid))


def test_a_container_whose_main_process_exits_takes_its_daemons_along(daemonised):
    proc, _, _, pid = daemonised
    proc.send_signal(signal.SIGKILL)  # only the main process
    proc.wait()
    assert _running(pid)
    containers.kill_leftovers(proc)
    assert _wait(lambda: not _running(pid))


def test_our_own_namespaces_never_select_processes():
    for kind in ("uts", "mnt", "net"):
        assert netns.pids_in_namespaces(kind, {netns.ns_ident("self", kind), netns.ns_ident(1, kind)}) == []
    assert not reap.own_namespaces(os.getpid(), timeout=0.05)  # nothing of its own: nothing held


def test_an_adopted_container_keeps_its_namespaces_from_the_record(daemonised):
    """A restarted agent adopts a running container by PID (adopt.Adopted):
    its namespaces come back from <pod dir>/<container>.ns."""
    from podnet.agent import adopt

    proc, log_dir, _, pid = daemonised
    recorded = proc.namespaces.idents
    adopted = reap.recall(log_dir, "c", adopt.Adopted(proc.pid))  # takes over the hold
    assert adopted.namespaces.idents == recorded and not proc.namespaces
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    containers.kill_leftovers(adopted)
    assert _wait(lambda: not _running(pid))
    # a record that is not the process's own namespace any more is not used
    assert not reap.recall(log_dir, "c", adopt.Adopted(os.getpid())).namespaces
