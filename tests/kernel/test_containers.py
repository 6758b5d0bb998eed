"""Containers as processes in a pod's namespaces, restartPolicy, probes.

Every process a test starts is stopped by its own PID (process group) in
teardown, also when the test fails. Traffic stays on loopback and on
addresses inside the namespaces the test made."""

import os
import socket
import subprocess
import sys
import time

import pytest

from podnet.agent import containers, probes
from podnet.agent.containers import Supervisor
from podnet.agent.probes import ProbeState, probe
from podnet.kernel import netns
from podnet.workload import command_for
from tests.helpers import wire

pytestmark = pytest.mark.kernel

AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.45"
POD_IP = "10.99.0.5"
NODE_IP = "10.99.0.1"


# ---- fixtures and helpers ------------------------------------------------------------


class Running:
    """Containers and supervisors of one test; all stopped in teardown."""

    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.items = []

    def log(self, name):
        return str(self.tmp / ("%s.log" % name))

    def start(self, argv, ns_path, hostname="web-0", log=None, **kw):
        proc = containers.start(argv, ns_path, hostname, log or self.log(hostname), **kw)
        self.items.append(proc)
        return proc

    def agnhost(self, ns_path, *args, hostname="web-0", log=None):
        argv = command_for({"image": AGNHOST, "args": list(args)})
        return self.start(argv, ns_path, hostname, log)

    def supervise(self, spec, start_fn, **kw):
        sup = Supervisor(spec, start_fn, **kw)
        self.items.append(sup)
        return sup

    def stop_all(self):
        for item in reversed(self.items):
            if isinstance(item, Supervisor):
                item.stop(grace=1)
            else:
                containers.stop(item, grace=1)


@pytest.fixture
def running(tmp_path):
    r = Running(tmp_path)
    try:
        yield r
    finally:
        r.stop_all()


@pytest.fixture
def pod(namespaces):
    """A pod's netns path."""
    return namespaces.path(namespaces.new("pod"))


def wait_until(fn, timeout=5.0, step=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for %s" % what)
        time.sleep(step)


def wait_ready(ns_path, port, pod_ip=None, path="/healthz"):
    spec = {"httpGet": {"path": path, "port": port}}
    wait_until(lambda: probe(spec, pod_ip, ns_path)[0], what="http :%d in %s" % (port, ns_path))


def wait_exit(proc, timeout=5.0):
    return proc.wait(timeout)


def group_members(pgid):
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(d))
    return found


def sleeps_in_group(pgid):
    """Members of the group running `sleep` (the wrapper's `hostname` child
    is in the group too for a moment, so counting members is not enough)."""
    found = []
    for pid in group_members(pgid):
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                if f.read().split(b"\0")[0] == b"sleep":
                    found.append(pid)
        except OSError:
            pass
    return found


def ns_ident(path):
    st = os.stat(path)
    return st.st_dev, st.st_ino


def udp_ask(ns_path, host, port, text, timeout=2.0):
    with netns.Netns(ns_path) as ns, netns.entered(ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with s:
        s.settimeout(timeout)
        s.sendto(text.encode(), (host, port))
        return s.recvfrom(65535)[0].decode()


def tcp_read_all(ns_path, host, port, send=b"", timeout=2.0):
    with probes.connect_from(ns_path, host, port, timeout) as s:
        if send:
            s.sendall(send)
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                return data.decode()
            data += chunk


def tick_until(sup, cond, timeout=5.0):
    def step():
        sup.tick()
        return cond(sup)

    return wait_until(step, timeout, step=0.01, what="supervisor of %s" % sup.name)


# ---- one pod, several containers ------------------------------------------------------------


def test_containers_of_a_pod_share_localhost_and_other_pods_do_not(running, pod, namespaces):
    running.agnhost(pod, "netexec", "--http-port=8080", "--udp-port", "8081")
    wait_ready(pod, 8080)
    client = running.agnhost(
        pod, "connect", "127.0.0.1:8080", "--timeout=2s", hostname="web-0", log=running.log("client")
    )
    assert wait_exit(client) == 0
    udp = running.agnhost(pod, "connect", "127.0.0.1:8081", "--protocol=udp", log=running.log("udp"))
    assert wait_exit(udp) == 0
    closed = running.agnhost(pod, "connect", "127.0.0.1:8099", log=running.log("closed"))
    assert wait_exit(closed) == 1
    assert "REFUSED" in open(running.log("closed")).read()

    other = namespaces.path(namespaces.new("other"))
    outsider = running.agnhost(other, "connect", "127.0.0.1:8080", hostname="other-0")
    assert wait_exit(outsider) == 1  # its own loopback, nothing listens there


def test_hostname_is_the_pod_name_in_a_uts_namespace_of_its_own(running, pod):
    root_before = socket.gethostname()
    proc = running.agnhost(pod, "netexec", "--http-port=8080", "--udp-port=8081", hostname="web-0")
    wait_ready(pod, 8080)
    assert probe({"httpGet": {"path": "/hostname", "port": 8080}}, None, pod) == (True, "web-0")
    assert udp_ask(pod, "127.0.0.1", 8081, "hostname") == "web-0"
    assert os.readlink("/proc/%d/ns/uts" % proc.pid) != os.readlink("/proc/self/ns/uts")
    assert ns_ident("/proc/%d/ns/net" % proc.pid) == ns_ident(pod)

    short = running.start(["hostname"], pod, hostname="x" * 70 + "-abc", log=running.log("long"))
    assert wait_exit(short) == 0
    assert open(running.log("long")).read().strip() == "x" * 63  # kubelet's cut

    res = containers.exec_in(pod, ["sh", "-c", 'echo "$(hostname) $HOSTNAME"'], hostname="web-0")
    assert (res.returncode, res.stdout.strip()) == (0, "web-0 web-0")
    assert socket.gethostname() == root_before
    with open("/proc/sys/kernel/hostname") as f:
        assert f.read().strip() == root_before


def test_netexec_and_serve_hostname_answer_like_agnhost(running, pod, namespaces):
    node = namespaces.new("node")
    wire(node, NODE_IP + "/24", os.path.basename(pod), POD_IP + "/24")
    node_path = namespaces.path(node)
    running.agnhost(pod, "netexec", "--http-port=8080", "--udp-port=8081")
    running.agnhost(pod, "serve-hostname", "--udp", hostname="web-0", log=running.log("sh"))
    wait_ready(pod, 8080)
    wait_until(lambda: probe({"tcpSocket": {"port": 9376}}, None, pod)[0], what="serve-hostname")

    def get(path, frm=node_path):
        return probe({"httpGet": {"path": path, "port": 8080}}, POD_IP, pod, from_netns=frm)

    ok, client = get("/clientip")
    assert ok and client.startswith(NODE_IP + ":")  # the source address as seen
    assert get("/echo?msg=hello") == (True, "hello")
    assert get("/")[1].startswith("NOW: ")
    assert get("/echo?msg=x&code=503") == (False, "HTTP probe failed with statuscode: 503")
    assert udp_ask(node_path, POD_IP, 8081, "echo hi there") == "hi there"
    assert udp_ask(node_path, POD_IP, 8081, "clientip").startswith(NODE_IP + ":")

    assert tcp_read_all(node_path, POD_IP, 9376) == "web-0"  # plain TCP
    http = tcp_read_all(node_path, POD_IP, 9376, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert http.startswith("HTTP/1.1 200") and http.endswith("\r\n\r\nweb-0")
    assert udp_ask(node_path, POD_IP, 9376, "anything") == "web-0"

    log = open(running.log("web-0")).read()
    assert "GET /clientip from %s:" % NODE_IP in log
    assert "UDP clientip from %s:" % NODE_IP in log


# ---- processes: logs and stopping ------------------------------------------------------------


def test_logs_land_in_log_path_appended_across_runs(running, pod):
    log = running.log("app")
    for n in (1, 2):
        proc = running.start(["sh", "-c", 'echo "out $0"; echo "err $0" >&2', str(n)], pod, log=log)
        assert wait_exit(proc) == 0
    assert open(log).read().splitlines() == ["out 1", "err 1", "out 2", "err 2"]


def test_stop_signals_the_whole_process_group(running, pod):
    proc = running.start(["sh", "-c", "sleep 300 & sleep 300 & wait"], pod)
    wait_until(lambda: len(sleeps_in_group(proc.pid)) == 2, what="two sleeps")
    t = time.monotonic()
    assert containers.stop(proc, grace=5) == -15  # SIGTERM was enough
    assert time.monotonic() - t < 2
    assert group_members(proc.pid) == []


def test_stop_kills_after_the_grace_period(running, pod):
    proc = running.start(["sh", "-c", 'trap "" TERM; sleep 300 & wait'], pod)
    wait_until(lambda: sleeps_in_group(proc.pid), what="the sleep")
    t = time.monotonic()
    assert containers.stop(proc, grace=0.3) == -9
    assert 0.3 <= time.monotonic() - t < 3
    assert group_members(proc.pid) == []


def test_start_refuses_a_missing_program_and_exec_in_times_out(running, pod):
    with pytest.raises(FileNotFoundError):
        running.start(["podnet-no-such-program"], pod)
    t = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        containers.exec_in(pod, ["sh", "-c", "sleep 300"], timeout=0.3)
    assert time.monotonic() - t < 3


# ---- restartPolicy ---------------------------------------------------------------------------


def exiting(running, pod, code, name="app"):
    spec = {"name": name, "image": "podnet.io/host", "command": ["sh", "-c", "exit %d" % code]}
    return spec, containers.starter(spec, pod, "web-0", running.log(name))


@pytest.mark.parametrize(
    "policy,code,restarted",
    [
        ("Always", 3, True),
        ("OnFailure", 3, True),
        ("Always", 0, True),
        ("Never", 3, False),
        ("OnFailure", 0, False),
        ("Never", 0, False),
    ],
)
def test_restart_policy(running, pod, policy, code, restarted):
    spec, start_fn = exiting(running, pod, code)
    sup = running.supervise(spec, start_fn, restart_policy=policy, backoff_initial=0.05, backoff_max=0.1)
    if restarted:
        tick_until(sup, lambda s: s.restart_count >= 2)
        st = sup.status()
        assert st["lastState"]["terminated"]["exitCode"] == code
        assert st["lastState"]["terminated"]["reason"] == ("Completed" if code == 0 else "Error")
    else:
        tick_until(sup, lambda s: s.finished)
        time.sleep(0.2)
        assert not sup.tick()  # stays down
        st = sup.status()
        assert st["restartCount"] == 0 and st["ready"] is False
        assert st["state"]["terminated"]["exitCode"] == code
        assert st["state"]["terminated"]["reason"] == ("Completed" if code == 0 else "Error")


def test_crash_loop_backoff_doubles_and_is_reported(running, pod):
    spec, start_fn = exiting(running, pod, 7)
    sup = running.supervise(spec, start_fn, restart_policy="Always", backoff_initial=0.05, backoff_max=0.2)
    messages = {}  # restartCount -> the back-off message before that restart

    def note(s):
        w = s.state.get("waiting", {})
        if w.get("reason") == "CrashLoopBackOff":
            messages.setdefault(s.restart_count, w["message"])
        return s.restart_count >= 4

    tick_until(sup, note)
    assert [messages[n].split()[1] for n in range(4)] == ["0.05s", "0.1s", "0.2s", "0.2s"]
    assert messages[0] == "back-off 0.05s restarting failed container=app"

    slow = running.supervise(spec, exiting(running, pod, 7, "slow")[1], backoff_initial=30)
    tick_until(slow, lambda s: "waiting" in s.state and s.last_state)
    st = slow.status()
    assert st["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert st["lastState"]["terminated"]["exitCode"] == 7 and st["restartCount"] == 0
    assert slow.stop(grace=1)["state"]["terminated"]["exitCode"] == 7


def test_supervised_container_status_and_stop(running, pod):
    spec = {"name": "web", "image": AGNHOST, "args": ["netexec", "--http-port=8080", "--udp-port=0"]}
    sup = running.supervise(spec, containers.starter(spec, pod, "web-0", running.log("web")))
    sup.tick()
    st = sup.status()
    assert "startedAt" in st["state"]["running"] and st["ready"] and st["image"] == AGNHOST
    assert st["containerID"] == "podnet://%d" % sup.pid
    wait_ready(pod, 8080)
    sup.ready = False
    assert sup.status()["ready"] is False
    st = sup.stop(grace=2)
    assert st["state"]["terminated"]["exitCode"] == 0  # netexec exits 0 on SIGTERM
    assert group_members(sup.pid) == []
    assert not sup.tick()


def test_start_errors_are_reported(running, pod):
    spec = {"name": "app", "image": "podnet.io/host", "command": ["podnet-no-such-program"]}
    sup = running.supervise(spec, containers.starter(spec, pod, "web-0", running.log("app")), restart_policy="Never")
    sup.tick()
    term = sup.status()["state"]["terminated"]
    assert (term["exitCode"], term["reason"]) == (128, "StartError")
    assert "podnet-no-such-program" in term["message"]
    with pytest.raises(containers.ContainerError, match="cannot run in podnet without a command"):
        containers.starter({"name": "web", "image": "nginx:1.27"}, pod, "web-0", running.log("x"))


# ---- probes -------------------------------------------------------------------------------------


@pytest.fixture
def web(running, pod, namespaces):
    """netexec in a pod with POD_IP, wired to a node namespace at NODE_IP."""
    node = namespaces.new("node")
    wire(node, NODE_IP + "/24", os.path.basename(pod), POD_IP + "/24")
    running.agnhost(pod, "netexec", "--http-port=8080", "--udp-port=8081")
    wait_ready(pod, 8080, POD_IP)
    return pod, namespaces.path(node)


def test_http_probes(web):
    pod, node = web
    healthz = {"httpGet": {"path": "/healthz", "port": 8080}}
    assert probe(healthz, POD_IP, pod) == (True, "ok")  # from inside the pod
    assert probe(healthz, POD_IP, pod, from_netns=node) == (True, "ok")  # from the node, as kubelet
    assert probe(healthz, None, pod) == (True, "ok")  # 127.0.0.1
    ok, msg = probe({"httpGet": {"path": "/healthz", "port": 8090}}, POD_IP, pod)
    assert not ok and "connection refused" in msg
    assert probe({"httpGet": {"path": "/missing", "port": 8080}}, POD_IP, pod) == (
        False,
        "HTTP probe failed with statuscode: 404",
    )
    ok, msg = probe({"httpGet": {"path": "/", "port": "http"}}, POD_IP, pod)
    assert not ok and "not resolved" in msg
    port = probes.resolve_port("http", {"ports": [{"name": "http", "containerPort": 8080}]})
    assert probe({"httpGet": {"path": "/healthz", "port": port}}, POD_IP, pod)[0]
    ok, msg = probe(
        {
            "httpGet": {
                "path": "/header?key=X-Probe",
                "port": 8080,
                "httpHeaders": [{"name": "X-Probe", "value": "yes"}],
            }
        },
        POD_IP,
        pod,
    )
    assert (ok, msg) == (True, "yes")


def test_http_probe_timeout(web):
    pod, _ = web
    with netns.Netns(pod) as ns, netns.entered(ns):
        silent = socket.socket()  # listens, never accepts, never answers
    with silent:
        silent.bind((POD_IP, 8070))
        silent.listen(8)
        t = time.monotonic()
        ok, msg = probe({"httpGet": {"path": "/", "port": 8070}, "timeoutSeconds": 0.3}, POD_IP, pod)
        assert not ok and "timeout" in msg
        assert time.monotonic() - t < 2


def test_tcp_and_exec_probes(web):
    pod, node = web
    assert probe({"tcpSocket": {"port": 8080}}, POD_IP, pod, from_netns=node) == (True, "")
    ok, msg = probe({"tcpSocket": {"port": 8090}}, POD_IP, pod)
    assert not ok and "refused" in msg
    t = time.monotonic()  # no answer at all (nobody has .77): the timeout decides
    ok, msg = probe({"tcpSocket": {"port": 8080, "host": "10.99.0.77"}, "timeoutSeconds": 0.3}, POD_IP, pod)
    assert not ok and "i/o timeout" in msg and time.monotonic() - t < 2

    assert probe({"exec": {"command": ["true"]}}, POD_IP, pod)[0]
    assert not probe({"exec": {"command": ["false"]}}, POD_IP, pod)[0]
    assert probe({"exec": {"command": ["hostname"]}}, POD_IP, pod, hostname="web-0") == (True, "web-0\n")
    # exec runs in the pod's netns: the agnhost client reaches netexec on localhost
    assert probe(
        {"exec": {"command": [sys.executable, "-m", "podnet.workload", "connect", "127.0.0.1:8080"]}}, POD_IP, pod
    )[0]
    t = time.monotonic()
    ok, msg = probe({"exec": {"command": ["sleep", "30"]}, "timeoutSeconds": 0.3}, POD_IP, pod)
    assert not ok and "timed out" in msg and time.monotonic() - t < 2
    ok, msg = probe({"exec": {"command": ["podnet-no-such-program"]}}, POD_IP, pod)
    assert not ok and "podnet-no-such-program" in msg


def test_readiness_flips_after_failure_threshold(running, web):
    pod, _ = web
    spec = {
        "httpGet": {"path": "/healthz", "port": 8080},
        "periodSeconds": 1,
        "initialDelaySeconds": 2,
        "failureThreshold": 3,
    }
    state = ProbeState(spec, "readiness", clock=lambda: 0.0)

    def run(now):
        return state.run(lambda s: probe(s, POD_IP, pod), now)

    assert state.ready is False and run(1.0) is None  # initial delay
    assert run(2.0) is True and state.ready
    assert run(2.5) is None  # not due within the period
    containers.stop(running.items[0], grace=1)  # netexec goes away
    assert run(3.0) is False and state.ready  # 1 failure
    assert run(4.0) is False and state.ready  # 2 failures
    assert run(5.0) is False and not state.ready  # 3: not ready
    assert "connection refused" in state.message
    running.agnhost(pod, "netexec", "--http-port=8080", "--udp-port=8081")
    wait_ready(pod, 8080, POD_IP)
    assert run(6.0) is True and state.ready  # one success is enough


# ---- exits without polling, the pod's /etc/hosts -----------------------------------------


def test_a_container_exit_calls_on_exit_at_once(running, pod):
    """The agent learns of an exit from a waiter (pidfd), not by ticking."""
    import threading

    exited = threading.Event()
    spec = {"name": "app", "image": "podnet.io/host", "command": ["sh", "-c", "sleep 0.3; exit 3"]}
    start_fn = containers.starter(spec, pod, "web-0", running.log("app"))
    sup = running.supervise(spec, start_fn, restart_policy="Never", on_exit=exited.set)
    assert sup.tick() and sup.running
    assert not exited.is_set()
    assert exited.wait(5)  # no tick in between
    assert sup.tick() and sup.status()["state"]["terminated"]["exitCode"] == 3
    assert sup.next_start is None  # Never: no restart timer


def test_the_pods_hosts_file_is_etc_hosts_for_its_containers_and_exec(running, pod, tmp_path):
    from podnet.agent import hosts

    spec = {
        "metadata": {"name": "web-0", "namespace": "default"},
        "spec": {"hostAliases": [{"ip": "10.1.2.3", "hostnames": ["foo.local"]}], "containers": []},
    }
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 10.96.0.10\n")
    path = hosts.write(spec, POD_IP, str(tmp_path))
    with open("/etc/hosts") as f:
        host_file = f.read()
    want = open(path).read()
    assert want.endswith("%s\tweb-0\n# Entries added by HostAliases.\n10.1.2.3\tfoo.local\n" % POD_IP)
    proc = running.start(["cat", "/etc/hosts"], pod, log=running.log("cat"), resolv_conf=str(resolv), hosts_file=path)
    wait_exit(proc)
    assert open(running.log("cat")).read() == want
    # exec with only the resolv.conf (what `podnet exec` passes) finds the hosts file beside it
    res = containers.exec_in(pod, ["getent", "hosts", "foo.local"], hostname="web-0", resolv_conf=str(resolv))
    assert res.stdout.split() == ["10.1.2.3", "foo.local"], res
    with open("/etc/hosts") as f:
        assert f.read() == host_file  # the host's own file is untouched
