"""What a node does for its pods beyond their network (issue 11), in a 2-node
lab on the real kernel:

- hostPort: a pod's `ports[].hostPort` is published at its node's IP
  (podnet-portmap, through the portMappings capability), reachable from the
  external host and from a pod on another node; a second pod bound to the
  same node with the same hostPort is rejected (phase Failed, reason
  NodePorts, a Warning event naming the owner); after the first pod is
  deleted the port is closed;
- deleting a pod stops every process in it, also one that left the process
  group (setsid + double fork), for pods with their own netns and for
  hostNetwork pods; a container whose main process exits leaves no daemon;
- container logs rotated by size (kubelet's log manager, with the limits
  lowered for the test through the agent's environment): at most 5 files,
  the newest lines in NAME.log, `podnet logs` and `kubectl logs` show them;
  and the lab's own process logs rotate too.
"""

import glob
import json
import os
import re
import signal
import subprocess
import sys
import time
from contextlib import contextmanager

import pytest

from podnet.lab.topology import EXTERNAL_IP
from tests.helpers import is_sleep, process_running
from tests.kernel.test_lab import Lab, leftovers

pytestmark = pytest.mark.kernel

MAX_SIZE = 64 * 1024

MANIFEST = """apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  nodeName: node1
  containers:
  - name: web
    image: agnhost
    args: [netexec, --http-port=8080]
    ports: [{containerPort: 8080, hostPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  nodeName: node2
  containers: [{name: c, image: agnhost, args: [pause]}]
---
apiVersion: v1
kind: Pod
metadata: {name: near}
spec:
  nodeName: node1
  containers: [{name: c, image: agnhost, args: [pause]}]
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("labs"))
    lab = Lab("nd%d" % (os.getpid() % 100000), root)
    lab.root = root
    # kubelet's defaults are 10 MiB and a 10 s check: small and quick here
    lab.env.update(
        PODNET_CONTAINER_LOG_MAX_SIZE=str(MAX_SIZE),
        PODNET_CONTAINER_LOG_MONITOR_INTERVAL="1",
        PODNET_LOG_MAX_SIZE="512",
        PODNET_LOG_MONITOR_INTERVAL="1",
    )
    try:
        lab.run(
            "lab", "up", "--name", lab.name, "--nodes", "2", "-f", "-", "--timeout", "90", input=MANIFEST, timeout=150
        )
        yield lab
    finally:
        lab.run("lab", "down", "--name", lab.name, check=False)
        assert leftovers(lab.name, root) == []


def node_ip(lab, name):
    node = next(n for n in lab.get("nodes") if n["metadata"]["name"] == name)
    ip: str = next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")
    return ip


def curl(lab, where, url, kind="pod"):
    """-> (exit code, output + error) of curl -v from a pod, a node or the external host."""
    argv = ("exec", where) if kind == "pod" else ("lab", "exec", where)
    res = lab.run(*argv, "--", "curl", "-sS", "-v", "-m", "3", url, check=False, timeout=30)
    return res.returncode, res.stdout.strip(), res.stderr


def answers(lab, where, url, want, kind="pod", timeout=20):
    deadline = time.time() + timeout
    while True:
        code, out, err = curl(lab, where, url, kind)
        if (code, out) == (0, want):
            return
        if time.time() > deadline:
            raise AssertionError("curl %s from %s: wanted %r, got exit %d: %s %s" % (url, where, want, code, out, err))
        time.sleep(0.5)


def apply(lab, text):
    lab.run("apply", "-f", "-", input=text)


# ---- hostPort ---------------------------------------------------------------------------


def test_a_host_port_is_published_at_the_node_ip_and_guarded_on_the_node(lab):
    url = "http://%s:8080/hostname" % node_ip(lab, "node1")
    answers(lab, "external", url, "web", kind="lab")  # the lab's outside world
    answers(lab, "client", url, "web")  # a pod on another node
    answers(lab, "node2", url, "web", kind="lab")  # another node
    answers(lab, "near", url, "web")  # a pod on the same node (through the bridge, hairpin NAT)
    answers(lab, "node1", url, "web", kind="lab")  # the node itself (output hook)
    answers(lab, "web", url, "web")  # the pod itself (hairpin: masqueraded to its gateway)
    # DNAT only: the pod sees the external client's own address, as with kubelet's hostports
    code, out, err = curl(lab, "external", url.replace("/hostname", "/clientip"), kind="lab")
    assert code == 0 and out.startswith(EXTERNAL_IP + ":"), (code, out, err)

    # bound directly to node1 (no scheduler): the node itself refuses it
    apply(
        lab,
        """apiVersion: v1
kind: Pod
metadata: {name: web2}
spec:
  nodeName: node1
  containers:
  - {name: web, image: agnhost, args: [netexec, --http-port=8080], ports: [{containerPort: 8080, hostPort: 8080}]}
""",
    )
    pod = lab.wait("web2 rejected", lambda: (lambda p: p["status"].get("phase") == "Failed" and p)(lab.pod("web2")))
    why = "hostPort 8080/TCP is already used by pod default/web on this node"
    assert pod["status"]["reason"] == "NodePorts" and why in pod["status"]["message"], pod["status"]
    assert not pod["status"].get("containerStatuses") and not pod["status"].get("podIP")
    events = lab.wait(
        "the NodePorts event",
        lambda: [e for e in lab.get("events") if e["involvedObject"]["name"] == "web2" and e["reason"] == "NodePorts"],
    )
    assert events[0]["type"] == "Warning" and why in events[0]["message"]
    answers(lab, "external", url, "web", kind="lab")  # the first pod keeps its port

    lab.run("delete", "pod", "web", "--wait")
    lab.run("delete", "pod", "web2", "--wait")
    code, out, err = curl(lab, "external", url, kind="lab")
    assert code == 7 and "Connection refused" in err, (code, out, err)  # closed, not hanging on a stale DNAT


# A client with a fixed source port that keeps asking until it gets an answer.
UDP_CLIENT = r"""
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 40123))
s.settimeout(0.2)
deadline = time.time() + float(sys.argv[2])
while time.time() < deadline:
    s.sendto(b"hostname", (sys.argv[1], 8081))
    try:
        print(s.recv(100).decode(), flush=True)
        sys.exit(0)
    except OSError:  # no answer yet
        pass
sys.exit(1)
"""


def test_a_udp_host_port_reaches_a_client_that_was_sending_before_it_was_published(lab):
    """The client's flow to the node's port predates the pod; its conntrack
    entry (not NATed: nothing was published) would steer every later
    datagram past the new DNAT while the client keeps sending."""
    ip = node_ip(lab, "node1")
    client = subprocess.Popen(
        [sys.executable, "-m", "podnet.cli.main", "lab", "exec", "external", "--", sys.executable, "-c", UDP_CLIENT]
        + [ip, "30"],
        env=lab.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.5)  # its first datagrams are refused: the entry exists
        apply(
            lab,
            """apiVersion: v1
kind: Pod
metadata: {name: udp}
spec:
  nodeName: node1
  containers:
  - name: u
    image: agnhost
    args: [netexec, --http-port=8080, --udp-port=8081]
    ports: [{containerPort: 8081, hostPort: 8081, protocol: UDP}]
""",
        )
        out, err = client.communicate(timeout=60)
        assert client.returncode == 0 and out.strip() == "udp", (client.returncode, out, err)
    finally:
        if client.poll() is None:
            client.kill()  # our own child, by PID; the client inside gives up by itself
            client.communicate()
        lab.run("delete", "pod", "udp", "--wait", "--ignore-not-found", check=False)


# ---- every process of a pod ----------------------------------------------------------------

SLEEP = "6011"  # a duration of our own: how a leftover is recognised (and cleaned up) by its PID


def forker(name, pidfile, host_network=False, exit_after=False):
    # setsid + & in a child shell that exits: the sleep is orphaned, in a
    # session and process group of its own, and writes its PID for the test
    daemon = "setsid sh -c 'sleep %s & echo $! > %s' " % (SLEEP, pidfile)
    main = "%s; sleep 1; exit 0" % daemon if exit_after else "%s; exec sleep 600" % daemon
    return """apiVersion: v1
kind: Pod
metadata: {name: %s}
spec:
  nodeName: node1
  hostNetwork: %s
  restartPolicy: %s
  terminationGracePeriodSeconds: 2
  containers:
  - name: c
    command: [sh, -c, %s]
""" % (name, "true" if host_network else "false", "Never" if exit_after else "Always", json.dumps(main))


_running = process_running


def _ours(pid):
    return is_sleep(pid, SLEEP)


def _read_pid(lab, path):
    return lab.wait("the daemon's PID in %s" % path, lambda: (lambda t: t.strip().isdigit() and int(t))(_cat(path)))


def _cat(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


@contextmanager
def _daemons(lab, tmp_path, pods):
    """Apply the pods ({name: forker kwargs}); yield the PIDs of their daemons
    (a list filled as they are read); on the way out delete what is left and
    kill any of our sleeps still running, by PID."""
    pids = []
    files = {name: str(tmp_path / (name + ".pid")) for name in pods}
    apply(lab, "---\n".join(forker(name, files[name], **kw) for name, kw in pods.items()))
    try:
        for name in pods:
            pids.append(_read_pid(lab, files[name]))
            pid = pids[-1]  # $! is known at fork, before the child has exec'd sleep
            lab.wait("PID %d to be our sleep" % pid, lambda pid=pid: _ours(pid), timeout=5)
        yield pids
    finally:
        lab.run("delete", "pod", *pods, "--wait", "--ignore-not-found", check=False, timeout=60)
        for pid in pids:  # a failed run must not leave our sleeps behind
            if _ours(pid):
                os.kill(pid, signal.SIGKILL)


def test_deleting_a_pod_stops_processes_that_left_its_process_group(lab, tmp_path):
    # one pod in a netns of its own, one on the node's network (found by its UTS namespace)
    with _daemons(lab, tmp_path, {"forker": {}, "hforker": {"host_network": True}}) as pids:
        lab.run("delete", "pod", "forker", "hforker", "--wait", timeout=60)
        lab.wait("the daemons of deleted pods gone", lambda: not any(map(_running, pids)), timeout=10)


def test_a_container_whose_main_process_exits_leaves_no_daemon(lab, tmp_path):
    with _daemons(lab, tmp_path, {"quitter": {"exit_after": True}}) as (pid,):
        lab.wait("quitter Succeeded", lambda: lab.pod("quitter")["status"].get("phase") == "Succeeded")
        # as with a runtime's pid 1: the container is over, so is its daemon
        lab.wait("quitter's daemon gone", lambda: not _running(pid), timeout=10)


# ---- logs --------------------------------------------------------------------------------


# Bursts of ~11 KB every 0.3 s (~36 KB/s: a rotation every 2 s or so) until
# the test creates the stop file, then a short line every 0.2 s (the newest
# lines). Paced by the test, not by a clock: a loaded machine checks late.
def chatty(stop_file):
    return (
        """apiVersion: v1
kind: Pod
metadata: {name: chatty}
spec:
  nodeName: node1
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    command:
    - sh
    - -c
    - i=0; pad=$(printf '%%0100d' 0); while [ ! -e %s ]; do i=$((i+1)); echo "line $i $pad";
      if [ $((i %% 100)) -eq 0 ]; then sleep 0.3; fi; done;
      while :; do i=$((i+1)); echo "line $i"; sleep 0.2; done
"""
        % stop_file
    )


LINE = re.compile(r"line (\d+)(?: 0{100})?")


def _numbers(text):
    return [int(m.group(1)) for m in map(LINE.fullmatch, text.splitlines()) if m]


def _last_number(path):
    numbers = _numbers(_cat(path))
    return numbers[-1] if numbers else -1


def test_container_logs_rotate_by_size_and_logs_show_the_newest_lines(lab, tmp_path):
    stop = tmp_path / "stop-bursts"
    apply(lab, chatty(stop))
    try:
        uid = lab.pod("chatty")["metadata"]["uid"]
        live = os.path.join(lab.root, lab.name, "nodes", "node1", "pods", "default_chatty_%s" % uid, "c.log")
        # five rotations or more: the oldest lines have dropped off the end
        lab.wait("five rotations", lambda: (_numbers(_cat(live + ".4")) or [1])[0] > 1, timeout=90)
        stop.touch()

        suffixes = ("", ".1", ".2", ".3", ".4")

        def snapshot():
            """The last line number of each file, newest first, read while no
            rotation ran (each one gives .1 a new inode); None if one did."""
            before = os.stat(live + ".1").st_ino
            newest = [_last_number(live + sfx) for sfx in suffixes]
            return newest if os.stat(live + ".1").st_ino == before and newest[0] > 0 else None

        newest = lab.wait("the newest line in the live file", snapshot)
        assert newest == sorted(newest, reverse=True) and newest[-1] > 0, newest
        names = sorted(os.path.basename(p) for p in glob.glob(live + "*"))
        assert names == ["c.log" + sfx for sfx in suffixes], names  # 5+ rotations, at most 5 files
        for path in glob.glob(live + "*"):  # bounded: the limit plus what arrives between two checks
            assert os.path.getsize(path) < 4 * MAX_SIZE, (path, os.path.getsize(path))

        shown = _numbers(lab.run("logs", "chatty").stdout)
        assert shown and shown[-1] >= newest[0], (shown[-3:], newest)  # what NAME.log held, or newer
        assert shown[0] > newest[1]  # only the live file: nothing of the rotated ones
        kubeconfig = lab.run("lab", "kubeconfig", "--lab", lab.name).stdout.strip()
        res = subprocess.run(
            ["/usr/bin/kubectl", "logs", "chatty", "--tail=2"],
            capture_output=True,
            text=True,
            timeout=30,
            env=dict(lab.env, KUBECONFIG=kubeconfig, HOME=os.path.dirname(kubeconfig)),
        )
        assert res.returncode == 0, res.stderr
        tail = _numbers(res.stdout)
        assert len(tail) == 2 and tail[-1] >= newest[0], res.stdout
    finally:
        lab.run("delete", "pod", "chatty", "--wait", check=False)


def test_the_labs_own_process_logs_rotate(lab):
    logs = os.path.join(lab.root, lab.name, "logs")
    lab.wait("a rotated lab log", lambda: glob.glob(os.path.join(logs, "*.log.1")), timeout=30)
    for path in glob.glob(os.path.join(logs, "*.log*")):
        suffix = path.rsplit(".log", 1)[1]
        assert suffix in ("", ".1", ".2", ".3", ".4"), path
