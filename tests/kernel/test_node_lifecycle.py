"""Node lifecycle on a 3-node lab (issue 12): an agent SIGSTOPped stops
renewing its Lease; its node goes NotReady with the unreachable taint within
the grace, Services stop sending to its pods, its LoadBalancer IP moves;
after the toleration its pods are deleted and placed elsewhere. SIGCONTed,
it recovers, and exactly one node answers for each LoadBalancer IP. A client
on another node sends requests through the Service without pause the whole
time: once the Service has stopped sending to the stopped node, none fails."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.kernel.test_lab import EXAMPLE, Lab, leftovers, ready

pytestmark = pytest.mark.kernel

GRACE, TOLERATION = 6, 12
LB = """apiVersion: v1
kind: Service
metadata: {name: weblb}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("labs"))
    lab = Lab("jx%d" % (os.getpid() % 10000), root)
    lab.root = root
    lab.stopped = []
    try:
        lab.run(
            "lab",
            "up",
            "--name",
            lab.name,
            "--nodes",
            "3",
            "--node-grace",
            str(GRACE),
            "--pod-toleration",
            str(TOLERATION),
            "-f",
            EXAMPLE,
            "--timeout",
            "90",
            timeout=150,
        )
        lab.run("apply", "-f", "-", input=LB)
        yield lab
    finally:
        for pid in lab.stopped:  # a stopped agent would not end on lab down's SIGTERM
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        lab.run("lab", "down", "--name", lab.name, check=False)
        assert leftovers(lab.name, root) == []


def agent_pid(lab, node):
    with open(os.path.join(lab.root, lab.name, "procs.json")) as f:
        return json.load(f)["agent-" + node]["pid"]


def lb_holders(lab, ip):
    """The nodes with the LoadBalancer IP on lo (the kernel answers ARP for it there)."""
    out = []
    for n in ("node1", "node2", "node3"):
        for _attempt in range(3):  # a look that failed to run is looked again, not counted as "none"
            res = lab.run("lab", "exec", n, "--", "ip", "-4", "-o", "addr", "show", "dev", "lo", check=False)
            if res.returncode == 0:
                break
        assert res.returncode == 0, "ip addr in %s -> %d: %s" % (n, res.returncode, res.stderr)
        addrs = res.stdout
        if " %s/32 " % ip in addrs:
            out.append(n)
    return out


def node(lab, name):
    return json.loads(lab.run("get", "node", name, "-o", "json").stdout)


def ready_status(n):
    return next((c["status"] for c in n["status"].get("conditions", []) if c["type"] == "Ready"), None)


def answers(lab, from_node, url, n=12):
    """Pod hostnames answering n requests made from a node's namespace."""
    out = lab.run(
        "lab",
        "exec",
        from_node,
        "--",
        "sh",
        "-c",
        "for i in $(seq %d); do curl -s -m 2 %s; echo; done" % (n, url),
        check=False,
    ).stdout.split()
    return out if len(out) == n else None


class Load:
    """Requests through the Service without pause from a node's namespace,
    all through the fault: one line per request, "<time> <hostname|FAIL>"."""

    def __init__(self, lab, from_node, url, path):
        self.path, self.stop = path, path + ".stop"
        script = 'while [ ! -e %s ]; do echo "$(date +%%s.%%N) $(curl -s -m 2 %s || echo FAIL)"; done' % (
            self.stop,
            url,
        )
        self.out = open(path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "podnet.cli.main", "lab", "exec", from_node, "--", "sh", "-c", script],
            stdout=self.out,
            stderr=subprocess.DEVNULL,
            env=lab.env,
            start_new_session=True,
        )

    def running(self):
        """A few requests answered already (the exec and curl have started)."""
        self.out.flush()
        with open(self.path) as f:
            return sum(1 for line in f if line.strip()) >= 5

    def end(self):
        open(self.stop, "w").close()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: the group of the PID we started
            self.proc.wait(5)
        self.out.close()
        rows = []
        with open(self.path) as f:
            for line in f:
                when, _, what = line.strip().partition(" ")
                if when:
                    rows.append((float(when), what or "FAIL"))
        return rows


def test_a_stopped_agent_makes_its_node_notready_and_a_continued_one_recovers(lab, tmp_path):
    ip = lab.wait(
        "the LoadBalancer IP",
        lambda: (
            (json.loads(lab.run("get", "svc", "weblb", "-o", "json").stdout).get("status") or {})
            .get("loadBalancer", {})
            .get("ingress")
        ),
    )[0]["ip"]
    victim = lab.wait(
        "one node answering for %s" % ip, lambda: (lambda h: h[0] if len(h) == 1 else None)(lb_holders(lab, ip))
    )
    others = [n for n in ("node1", "node2", "node3") if n != victim]
    pods = lab.get("pods")
    on_victim = {p["metadata"]["name"] for p in pods if p["spec"].get("nodeName") == victim}
    web_on_victim = {p for p in on_victim if p.startswith("web-")}
    assert web_on_victim, "the example's 3 web replicas spread over 3 nodes: one on %s" % victim
    svc = json.loads(lab.run("get", "svc", "web", "-o", "json").stdout)
    url = "http://%s/hostname" % svc["spec"]["clusterIP"]
    assert lab.wait(
        "Service answers from the victim's pod too",
        lambda: (lambda a: a and set(a) & web_on_victim)(answers(lab, others[0], url, 30)),
    )

    load = Load(lab, others[0], url, str(tmp_path / "load"))
    try:
        lab.wait("the load running", load.running, 30)
        _stop_and_continue(lab, ip, victim, others, url, on_victim, web_on_victim, load)
    finally:
        rows = load.end()
    # the load ran the whole time; once the Service had stopped sending to the
    # stopped node's pods, not one request failed until the end
    assert rows and rows[0][0] < load.stopped_at < load.converged < rows[-1][0], (len(rows), load.__dict__)
    after = [what for when, what in rows if when > load.converged]
    assert len(after) > 20 and "FAIL" not in after, after.count("FAIL")
    assert not set(after) & web_on_victim


def _stop_and_continue(lab, ip, victim, others, url, on_victim, web_on_victim, load):
    pid = agent_pid(lab, victim)
    load.stopped_at = time.time()
    os.kill(pid, signal.SIGSTOP)
    lab.stopped.append(pid)

    # NotReady (Unknown) with the unreachable taint, within the grace (plus a generous margin for a busy machine)
    n = lab.wait(
        "%s NotReady with the unreachable taint" % victim,
        lambda: (
            lambda n: (
                n
                if ready_status(n) == "Unknown"
                and any(
                    t["key"] == "node.kubernetes.io/unreachable" and t["effect"] == "NoExecute"
                    for t in n["spec"].get("taints") or []
                )
                else None
            )
        )(node(lab, victim)),
        60,
    )
    assert next(c for c in n["status"]["conditions"] if c["type"] == "Ready")["reason"] == "NodeStatusUnknown"
    # its LoadBalancer IP moves to a live node
    assert lab.wait("%s answered by another node" % ip, lambda: [h for h in lb_holders(lab, ip) if h != victim], 60)
    # the Service no longer sends to the victim's pods (they still run: only the node's agent stopped)
    seen = lab.wait(
        "30 Service answers, none from %s" % victim,
        lambda: (lambda a: a if a and not set(a) & web_on_victim else None)(answers(lab, others[0], url, 30)),
        60,
    )
    assert len(seen) == 30
    load.converged = time.time()

    # after the toleration: the pods are deleted and the Deployment places new ones elsewhere
    def replaced():
        ps = lab.get("pods")
        names = {p["metadata"]["name"] for p in ps}
        web = [p for p in ps if p["metadata"]["name"].startswith("web-")]
        ok = (
            not (names & on_victim) and len(web) == 3 and all(ready(p) and p["spec"]["nodeName"] in others for p in web)
        )
        return ps if ok else None

    lab.wait("the victim's pods deleted and web placed on the other nodes", replaced, 90)

    os.kill(pid, signal.SIGCONT)
    lab.stopped.remove(pid)
    lab.wait(
        "%s Ready again, untainted" % victim,
        lambda: (
            lambda n: (
                ready_status(n) == "True"
                and not any(t["key"] == "node.kubernetes.io/unreachable" for t in n["spec"].get("taints") or [])
            )
        )(node(lab, victim)),
        60,
    )

    # exactly one node answers for the IP, on three looks in a row, and it answers from outside
    def one_holder():
        looks = [lb_holders(lab, ip) for _ in range(3)]
        return looks[0] if all(len(h) == 1 and h == looks[0] for h in looks) else None

    lab.wait("exactly one node answering for %s" % ip, one_holder, 60)
    assert lab.wait(
        "12 answers through %s from outside" % ip, lambda: answers(lab, "external", "http://%s/hostname" % ip), 30
    )
    # the agent's own pods are gone from its node as well (it saw the deletes on return)
    assert lab.wait(
        "the deleted pods' names unused", lambda: not ({p["metadata"]["name"] for p in lab.get("pods")} & on_victim), 30
    )
