"""The pod lifecycle as Kubernetes defines it (issue 11), in a 2-node lab on
the real kernel, driven through the `podnet` command:

- livenessProbe failures kill the container and its restart policy restarts
  it (restartCount, Unhealthy and Killing events);
- a startupProbe holds readiness (and `started`) until it passes;
- init containers run in order, each to completion, before the app; a
  failing one under restartPolicy Never makes the pod Failed;
- hostAliases in the pod's /etc/hosts (its containers and `podnet exec`);
- lifecycle.preStop runs before SIGTERM when the pod is deleted;
- probes run off the agent's loop: a hanging probe delays no other pod;
- a pod on another node makes no pod sync on this one.

Files the containers write are in the test's tmp directory: containers are
host processes and share the file system.
"""

import json
import os
import re
import subprocess
import sys
import time

import pytest

from tests.kernel.test_lab import Lab, leftovers, ready

pytestmark = pytest.mark.kernel

# A container that marks what happens to it in the file argv[1]: "PID n" at
# its start, "GET /path" for each request on port argv[2], "TERM <time>" on
# SIGTERM, after which it exits (or, with argv[3] == "ignore", carries on).
MARKER = r"""
import http.server, os, signal, sys, time
out, port, mode = sys.argv[1], int(sys.argv[2]), (sys.argv[3:] or ["exit"])[0]
def mark(text):
    with open(out, "a") as f:
        f.write(text + "\n")
def term(*_):
    mark("TERM %f" % time.time())
    if mode != "ignore":
        sys.exit(0)
signal.signal(signal.SIGTERM, term)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        mark("GET " + self.path)
        self.send_response(200)
        self.end_headers()
    def log_message(self, *args):
        pass
mark("PID %d" % os.getpid())
http.server.HTTPServer(("", port), H).serve_forever()
"""

BASE = """apiVersion: v1
kind: Pod
metadata: {name: base}
spec:
  nodeName: node1
  containers: [{name: c, image: agnhost, args: [pause]}]
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("labs"))
    lab = Lab("lc%d" % (os.getpid() % 100000), root)
    lab.files = str(tmp_path_factory.mktemp("files"))
    lab.root = root
    lab.marker = os.path.join(lab.files, "marker.py")
    with open(lab.marker, "w") as f:
        f.write(MARKER)
    try:
        lab.run("lab", "up", "--name", lab.name, "--nodes", "2", "-f", "-", "--timeout", "90", input=BASE, timeout=150)
        yield lab
    finally:
        lab.run("lab", "down", "--name", lab.name, check=False)
        assert leftovers(lab.name, root) == []


def apply(lab, manifest):
    lab.run("apply", "-f", "-", input=manifest)


def path(lab, name):
    return os.path.join(lab.files, name)


def read(p):
    try:
        with open(p) as f:
            return f.read()
    except FileNotFoundError:
        return None


def marker(lab, name, out, mode="exit", port=8080):
    """A container spec (flow YAML) that runs MARKER into `out`."""
    return "{name: %s, image: podnet.io/host, command: [%s, %s, %s, '%d', %s], ports: [{containerPort: %d}]}" % (
        name,
        sys.executable,
        lab.marker,
        out,
        port,
        mode,
        port,
    )


def marks(p):
    """The MARKER lines of file p, without the PID line and times."""
    return [line.split(" ")[0] if line.startswith("TERM") else line for line in (read(p) or "").splitlines()[1:]]


def term_time(p):
    return float([line for line in read(p).splitlines() if line.startswith("TERM")][0].split()[1])


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def status(lab, name):
    return lab.pod(name).get("status") or {}


def cstatus(lab, name, container):
    for s in status(lab, name).get("containerStatuses") or []:
        if s["name"] == container:
            return s
    return {}


def events(lab, pod):
    return [
        (e["type"], e["reason"], e["message"])
        for e in lab.get("events")
        if e.get("involvedObject", {}).get("name") == pod
    ]


def syncs(lab, node):
    """The node agent's podnet_agent_pod_syncs_total, from its metrics page."""
    (n,) = [n for n in lab.get("nodes") if n["metadata"]["name"] == node]
    ip = [a["address"] for a in n["status"]["addresses"] if a["type"] == "InternalIP"][0]
    page = lab.run("lab", "exec", node, "--", "curl", "-sS", "-m", "5", "http://%s:10249/metrics" % ip).stdout
    m = re.search(r"^podnet_agent_pod_syncs_total (\S+)$", page, re.M)
    assert m, page
    return float(m.group(1))


def test_a_pod_on_another_node_makes_no_sync_on_this_one(lab):
    before = syncs(lab, "node1")
    for _ in range(20):  # quiet: the base pod's own status writes are over
        time.sleep(1)
        now = syncs(lab, "node1")
        if now == before:
            break
        before = now
    node2_before = syncs(lab, "node2")
    apply(
        lab,
        "".join(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {name: other%d}\nspec:\n  nodeName: node2\n"
            "  containers: [{name: c, image: agnhost, args: [pause]}]\n" % i
            for i in range(3)
        ),
    )
    lab.wait("the node2 pods Ready", lambda: all(ready(lab.pod("other%d" % i)) for i in range(3)), timeout=60)
    lab.run("delete", "pod", "other0", "other1", "other2")
    lab.wait("the node2 pods gone", lambda: not [p for p in lab.get("pods") if p["metadata"]["name"] != "base"])
    assert syncs(lab, "node2") > node2_before  # node2 did the work
    assert syncs(lab, "node1") == before  # node1 did none


def test_a_failing_liveness_probe_restarts_the_container(lab):
    dead, out = path(lab, "live-dead"), path(lab, "live-marks")
    # the container ignores SIGTERM: the probe's grace (1 s), not the pod's
    # (60 s), is how long it gets before SIGKILL
    apply(
        lab,
        """apiVersion: v1
kind: Pod
metadata: {name: live}
spec:
  nodeName: node1
  terminationGracePeriodSeconds: 60
  containers:
  - name: app
    image: podnet.io/host
    command: [%s, %s, %s, "8080", ignore]
    livenessProbe:
      exec: {command: [sh, -c, "! test -f %s"]}
      periodSeconds: 1
      failureThreshold: 2
      terminationGracePeriodSeconds: 1
"""
        % (sys.executable, lab.marker, out, dead),
    )
    lab.wait("live Ready", lambda: ready(lab.pod("live")), timeout=60)
    first = cstatus(lab, "live", "app")
    assert first["restartCount"] == 0
    with open(dead, "w"):
        pass
    try:
        st = lab.wait(
            "live restarted", lambda: (lambda s: s["restartCount"] >= 1 and s)(cstatus(lab, "live", "app")), timeout=20
        )
    finally:
        os.unlink(dead)
    assert st["containerID"] != first["containerID"]
    assert "TERM" in marks(out)  # SIGTERM first; it was ignored, so SIGKILL:
    assert st["lastState"]["terminated"]["exitCode"] == 137, st
    lab.wait("live running again", lambda: ready(lab.pod("live")), timeout=30)
    evs = events(lab, "live")
    assert any(t == "Warning" and r == "Unhealthy" and m.startswith("Liveness probe failed") for t, r, m in evs), evs
    assert ("Normal", "Killing", "Container app failed liveness probe, will be restarted") in evs, evs
    # left running (healthy again): deleting it would wait out its 60 s grace; `lab down` stops it


def test_a_startup_probe_holds_readiness_until_it_passes(lab):
    gate = path(lab, "started")
    apply(
        lab,
        """apiVersion: v1
kind: Pod
metadata: {name: slow}
spec:
  nodeName: node1
  containers:
  - name: app
    image: agnhost
    args: [pause]
    startupProbe:
      exec: {command: [test, -f, %s]}
      periodSeconds: 1
      failureThreshold: 600
    readinessProbe:
      exec: {command: ["true"]}
      periodSeconds: 1
"""
        % gate,
    )
    lab.wait("slow running", lambda: "running" in cstatus(lab, "slow", "app").get("state", {}), timeout=60)
    time.sleep(3)  # three startup probe periods, and as many readiness periods if it ran
    st = cstatus(lab, "slow", "app")
    assert (st["started"], st["ready"], ready(lab.pod("slow"))) == (False, False, False), st
    with open(gate, "w"):
        pass
    lab.wait("slow Ready", lambda: ready(lab.pod("slow")), timeout=30)
    st = cstatus(lab, "slow", "app")
    assert (st["started"], st["ready"], st["restartCount"]) == (True, True, 0), st
    lab.run("delete", "pod", "slow")


def test_a_startup_probe_that_keeps_failing_restarts_the_container(lab):
    apply(
        lab,
        """apiVersion: v1
kind: Pod
metadata: {name: never-starts}
spec:
  nodeName: node2
  terminationGracePeriodSeconds: 2
  containers:
  - name: app
    image: agnhost
    args: [pause]
    startupProbe: {exec: {command: ["false"]}, periodSeconds: 1, failureThreshold: 2}
""",
    )
    lab.wait("never-starts restarted", lambda: cstatus(lab, "never-starts", "app").get("restartCount", 0) >= 1)
    assert not ready(lab.pod("never-starts"))
    evs = events(lab, "never-starts")
    assert any(t == "Warning" and r == "Unhealthy" and m.startswith("Startup probe failed") for t, r, m in evs), evs
    assert ("Normal", "Killing", "Container app failed startup probe, will be restarted") in evs, evs
    lab.run("delete", "pod", "never-starts")


def test_init_containers_run_in_order_before_the_app(lab):
    out, gate, seen = path(lab, "init-out"), path(lab, "init-gate"), path(lab, "init-seen")
    apply(
        lab,
        """apiVersion: v1
kind: Pod
metadata: {name: inits}
spec:
  nodeName: node1
  initContainers:
  - {name: first, image: podnet.io/host, command: [sh, -c, "echo first >> %(out)s"]}
  - name: second
    image: podnet.io/host
    command: [sh, -c, "while [ ! -f %(gate)s ]; do sleep 0.1; done; echo second >> %(out)s"]
  containers:
  - {name: app, image: podnet.io/host, command: [sh, -c, "cat %(out)s > %(seen)s; exec sleep 3600"]}
"""
        % {"out": out, "gate": gate, "seen": seen},
    )
    lab.wait("the second init container running", lambda: read(out) == "first\n", timeout=60)
    st = status(lab, "inits")
    assert st["phase"] == "Pending"
    assert [(c["type"], c["status"]) for c in st["conditions"] if c["type"] == "Initialized"] == [
        ("Initialized", "False")
    ]
    first, second = st["initContainerStatuses"]
    assert first["state"]["terminated"]["reason"] == "Completed" and "running" in second["state"], st
    assert st["containerStatuses"][0]["state"] == {"waiting": {"reason": "PodInitializing"}}
    assert "Init:1/2" in lab.run("get", "pods", "inits").stdout
    assert read(seen) is None  # the app has not started
    with open(gate, "w"):
        pass
    lab.wait("inits Ready", lambda: ready(lab.pod("inits")), timeout=30)
    assert read(seen) == "first\nsecond\n"
    st = status(lab, "inits")
    assert st["phase"] == "Running"
    assert [c["state"]["terminated"]["exitCode"] for c in st["initContainerStatuses"]] == [0, 0]
    lab.run("delete", "pod", "inits")


def restart_agent(lab, node):
    """Stop the node's agent (its recorded PID) and let `lab up` start it again."""
    code = "from podnet.lab import topology; topology.stop_recorded(%r, roles=['agent-%s'])" % (lab.name, node)
    subprocess.run([sys.executable, "-c", code], env=lab.env, check=True, timeout=60)
    lab.run("lab", "up", "--name", lab.name, "--nodes", "2", "--timeout", "90", timeout=150)


def test_a_restarted_agent_adopts_an_initialized_pod_as_it_is(lab):
    out = path(lab, "adopt-out")
    apply(
        lab,
        """apiVersion: v1
kind: Pod
metadata: {name: adopted}
spec:
  nodeName: node1
  initContainers: [{name: init, image: podnet.io/host, command: [sh, -c, "echo init >> %s"]}]
  containers:
  - name: app
    image: agnhost
    args: [pause]
    readinessProbe: {exec: {command: ["true"]}, periodSeconds: 1}
"""
        % out,
    )
    lab.wait("adopted Ready", lambda: ready(lab.pod("adopted")), timeout=60)
    before = status(lab, "adopted")
    restart_agent(lab, "node1")
    lab.wait("the new agent's first pass", lambda: syncs_or_none(lab, "node1"), timeout=60)
    lab.wait("adopted Ready again", lambda: ready(lab.pod("adopted")), timeout=30)
    after = status(lab, "adopted")
    assert read(out) == "init\n"  # its init container did not run again
    assert after["initContainerStatuses"] == before["initContainerStatuses"]
    (app,) = after["containerStatuses"]
    assert app["containerID"] == before["containerStatuses"][0]["containerID"] and app["restartCount"] == 0
    lab.run("delete", "pod", "adopted")


def syncs_or_none(lab, node):
    try:
        return syncs(lab, node)
    except AssertionError:  # the metrics page is not up yet
        return None


def test_a_failing_init_container_with_restart_policy_never_fails_the_pod(lab):
    ran = path(lab, "never-app")
    apply(
        lab,
        """apiVersion: v1
kind: Pod
metadata: {name: init-fails}
spec:
  nodeName: node2
  restartPolicy: Never
  initContainers: [{name: bad, image: podnet.io/host, command: [sh, -c, "exit 3"]}]
  containers: [{name: app, image: podnet.io/host, command: [sh, -c, "echo ran > %s; exec sleep 3600"]}]
"""
        % ran,
    )
    st = lab.wait("init-fails Failed", lambda: (lambda s: s.get("phase") == "Failed" and s)(status(lab, "init-fails")))
    (bad,) = st["initContainerStatuses"]
    assert bad["state"]["terminated"]["exitCode"] == 3 and bad["restartCount"] == 0, bad
    assert "Init:Error" in lab.run("get", "pods", "init-fails").stdout
    assert read(ran) is None  # the app never started
    lab.run("delete", "pod", "init-fails")


def test_a_failing_init_container_with_restart_policy_always_is_retried_with_back_off(lab):
    apply(
        lab,
        """apiVersion: v1
kind: Pod
metadata: {name: init-retries}
spec:
  nodeName: node2
  initContainers: [{name: bad, image: podnet.io/host, command: [sh, -c, "exit 1"]}]
  containers: [{name: app, image: agnhost, args: [pause]}]
""",
    )
    lab.wait(
        "init-retries retried twice",
        lambda: (status(lab, "init-retries").get("initContainerStatuses") or [{}])[0].get("restartCount", 0) >= 2,
    )
    st = status(lab, "init-retries")
    assert st["phase"] == "Pending"
    assert st["containerStatuses"][0]["state"] == {"waiting": {"reason": "PodInitializing"}}
    shown = lab.wait(
        "Init:CrashLoopBackOff",
        lambda: (lambda out: "Init:CrashLoopBackOff" in out and out)(lab.run("get", "pods", "init-retries").stdout),
    )
    assert "Init:CrashLoopBackOff" in shown
    lab.run("delete", "pod", "init-retries")


def test_host_aliases_are_in_the_pods_etc_hosts(lab):
    seen = path(lab, "hosts-seen")
    apply(
        lab,
        """apiVersion: v1
kind: Pod
metadata: {name: aliases}
spec:
  nodeName: node1
  hostname: web-0
  subdomain: web
  hostAliases:
  - {ip: 10.1.2.3, hostnames: [foo.local, bar.local]}
  containers: [{name: app, image: podnet.io/host, command: [sh, -c, "cat /etc/hosts > %s; exec sleep 3600"]}]
---
apiVersion: v1
kind: Pod
metadata: {name: aliases-hostnet}
spec:
  nodeName: node2
  hostNetwork: true
  hostAliases:
  - {ip: 10.9.9.9, hostnames: [hostnet.local]}
  containers: [{name: app, image: agnhost, args: [pause]}]
"""
        % seen,
    )
    lab.wait("aliases Ready", lambda: ready(lab.pod("aliases")) and ready(lab.pod("aliases-hostnet")), timeout=60)
    ip = status(lab, "aliases")["podIP"]
    hosts = lab.run("exec", "aliases", "--", "cat", "/etc/hosts").stdout
    lines = hosts.splitlines()
    assert "127.0.0.1\tlocalhost" in lines
    assert "%s\tweb-0.web.default.svc.cluster.local\tweb-0" % ip in lines
    assert lines[-2:] == ["# Entries added by HostAliases.", "10.1.2.3\tfoo.local\tbar.local"], hosts
    assert read(seen) == hosts  # the container sees the same file
    got = lab.run("exec", "aliases", "--", "getent", "hosts", "bar.local").stdout.split()
    assert got == ["10.1.2.3", "foo.local", "bar.local"]
    # hostNetwork: the node's hosts file, then the aliases
    hosts = lab.run("exec", "aliases-hostnet", "--", "cat", "/etc/hosts").stdout
    with open("/etc/hosts") as f:
        node_hosts = f.read()
    assert node_hosts in hosts and hosts.endswith("# Entries added by HostAliases.\n10.9.9.9\thostnet.local\n"), hosts
    with open("/etc/hosts") as f:
        assert f.read() == node_hosts  # the host's own file is untouched
    lab.run("delete", "pod", "aliases", "aliases-hostnet")


def test_prestop_runs_before_sigterm(lab):
    out = {n: path(lab, n) for n in ("prestop", "prestop-http", "prestop-sleep", "prestop-fails", "grace")}

    def pod(name, node, hook, mode="exit", grace=10):
        spec = marker(lab, "app", out[name], mode)[:-1] + (", lifecycle: {preStop: %s}}" % hook if hook else "}")
        return """---
apiVersion: v1
kind: Pod
metadata: {name: %s}
spec:
  nodeName: %s
  terminationGracePeriodSeconds: %d
  containers:
  - %s
""" % (name, node, grace, spec)

    apply(
        lab,
        pod("prestop", "node1", "{exec: {command: [sh, -c, 'echo preStop >> %s']}}" % out["prestop"])
        + pod("prestop-http", "node2", "{httpGet: {path: /prestop, port: 8080}}")
        + pod("prestop-sleep", "node1", "{sleep: {seconds: 2}}")
        + pod("prestop-fails", "node2", "{exec: {command: [sh, -c, 'exit 7']}}")
        + pod("grace", "node1", None, mode="ignore", grace=2),
    )
    names = sorted(out)
    lab.wait("the preStop pods Ready", lambda: all(ready(lab.pod(n)) for n in names), timeout=60)
    pid = int(read(out["grace"]).split()[1])
    t0 = time.time()
    lab.run("delete", "pod", *names)
    lab.wait("the preStop pods gone", lambda: not set(names) & {p["metadata"]["name"] for p in lab.get("pods")})
    assert marks(out["prestop"]) == ["preStop", "TERM"]
    assert marks(out["prestop-http"]) == ["GET /prestop", "TERM"]
    assert marks(out["prestop-sleep"]) == ["TERM"] and term_time(out["prestop-sleep"]) >= t0 + 2  # after the sleep
    assert marks(out["prestop-fails"]) == ["TERM"]  # a failed hook: the stop goes on
    evs = events(lab, "prestop-fails")
    assert any(r == "FailedPreStopHook" and t == "Warning" for t, r, _ in evs), evs
    # SIGTERM ignored: SIGKILL after the pod's 2 s, well before the default 30 s
    assert marks(out["grace"]) == ["TERM"] and not alive(pid)
    assert time.time() - t0 < 25


def test_a_hanging_probe_does_not_delay_another_pod(lab):
    hanging = path(lab, "hanging")
    apply(
        lab,
        """apiVersion: v1
kind: Pod
metadata: {name: hang}
spec:
  nodeName: node1
  containers:
  - name: app
    image: agnhost
    args: [pause]
    readinessProbe:
      exec: {command: [sh, -c, "touch %s; exec sleep 600"]}
      timeoutSeconds: 300
      periodSeconds: 1
"""
        % hanging,
    )
    lab.wait("the probe of hang hanging", lambda: read(hanging) is not None, timeout=60)
    apply(
        lab,
        """apiVersion: v1
kind: Pod
metadata: {name: quick}
spec:
  nodeName: node1
  containers:
  - name: app
    image: agnhost
    args: [pause]
    readinessProbe:
      exec: {command: ["true"]}
      periodSeconds: 1
""",
    )
    lab.wait("quick Ready while hang's probe hangs", lambda: ready(lab.pod("quick")), timeout=30)
    st = cstatus(lab, "hang", "app")
    assert "running" in st["state"] and not st["ready"], st  # its probe has not answered yet
    assert json.loads(lab.run("get", "pod", "hang", "-o", "json").stdout)["status"]["phase"] == "Running"
