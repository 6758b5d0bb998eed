"""NetworkPolicy on the real kernel: the upstream-style truth-table suite.

A 3-node lab (namespaces x, y, z; pods a, b, c serving TCP and UDP on 80 and
81; see tests/netpol_cases.py for the layout and the cases). Each step of a
case changes the cluster through the `podnet` command, then every pod probes
every pod on the 4 port/protocol pairs: one `podnet exec` per source pod that
tries its 36 targets at once (`python -m podnet.workload probe`), all 9 source
pods in parallel. Policies take effect asynchronously (each node agent syncs
on a watch), so before probing a step waits until every node's table carries
the plan of the cluster's current state (the digest in the table's comment);
then one round must equal the expected 9x9x4 table, else both tables are
printed, upstream style.
"""

import json
import os
import re
import subprocess
import sys
import threading
import time

import pytest

from podnet.kernel import nft
from podnet.kernel.netns import Netns
from podnet.policy import nftscript
from podnet.policy.reconciler import PolicyReconciler
from tests import netpol_cases as nc
from tests.kernel.test_lab import Lab, leftovers

pytestmark = pytest.mark.kernel

PY = sys.executable
CONVERGE = 30  # seconds the agents may take to apply a change (a generous bound, not a timing check)
CIDR = "10.244.0.0/16"
PROBE_TIMEOUT = 1.0


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("labs"))
    lab = Lab("np%d" % (os.getpid() % 100000), root)
    manifests = os.path.join(root, "np.yaml")
    with open(manifests, "w") as f:
        f.write(nc.to_yaml(nc.lab_manifests()))
    try:
        lab.run("lab", "up", "--name", lab.name, "--nodes", "3", "-f", manifests, "--timeout", "120", timeout=180)
        yield Matrix(lab, root)
    finally:
        lab.run("lab", "down", "--name", lab.name, check=False)
        assert leftovers(lab.name, root) == []


class Matrix:
    """The lab, its pods' IPs, the probing, and a barrier: `synced()` waits
    until every node's table carries the plan of the cluster's current state
    (the plan digest in the table's comment), so one probe round afterwards
    tells the truth; expectations stay hand-written (tests/netpol_cases.py)."""

    def __init__(self, lab, root):
        self.lab, self.root = lab, root
        from podnet.client import connect

        self.objects = connect(os.path.join(root, lab.name, "kubeconfig")).client
        self.ips = lab.wait("9 pods with IPs", self._ips, 60)
        self.applied, self.relabelled = [], False

    def _ips(self):
        ips = {
            "%s/%s" % (p["metadata"]["namespace"], p["metadata"]["name"]): p["status"].get("podIP")
            for p in self.objects.list("Pod")
        }
        return ips if all(ips.get(k) for k in nc.PODS) else None

    def run(self, *args, **kw):
        return self.lab.run(*args, **kw)

    def apply(self, docs):
        if docs:
            self.run("apply", "-f", "-", input=nc.to_yaml(docs))
            self.applied += [d for d in docs if d["kind"] not in ("Pod", "Namespace")]
            self.relabelled |= any(d["kind"] in ("Pod", "Namespace") for d in docs)

    def delete(self, kind, ns, name):
        self.run("delete", kind.lower(), name, "-n", ns)

    def synced(self):
        """Wait until each node's agent has applied the plan for what the store holds now."""

        def holds():
            for node in nc.NODES:
                want = nftscript.applied_plan(nftscript.render(PolicyReconciler(node, self.objects, CIDR).desired()[0]))
                with Netns("/run/netns/pn-%s-%s" % (self.lab.name, node)) as ns:
                    got = nftscript.plan_in_table(nft.list_table(nftscript.FAMILY, nftscript.TABLE, ns=ns))
                if got != want:
                    return None
            return True

        self.lab.wait("every node's policy table to hold the current plan", holds, CONVERGE)

    def probe_row(self, src, targets):
        ns, name = src.split("/")
        res = self.run(
            "exec",
            "-n",
            ns,
            name,
            "--",
            PY,
            "-m",
            "podnet.workload",
            "probe",
            "--timeout",
            str(PROBE_TIMEOUT),
            *targets,
            check=False,
            timeout=60,
        )
        try:
            return json.loads(res.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise AssertionError(
                "probe from %s failed (%d): %s%s" % (src, res.returncode, res.stdout, res.stderr)
            ) from None

    def observe(self, via=None, rows=nc.PODS):
        """-> {(src, dst, port, proto): reachable}. via: {dst pod: ClusterIP} to probe through."""
        via = via or {}
        address = {d: via.get(d, self.ips[d]) for d in nc.PODS}
        targets = {
            "%s:%s:%d" % (proto, address[d], port): (d, port, proto) for d in nc.PODS for port, proto in nc.PORTS
        }
        out, errors = {}, []

        def row(src):
            try:
                got = self.probe_row(src, sorted(targets))
                for t, (d, port, proto) in targets.items():
                    r = got[t]
                    # through a Service the answer must come from the pod behind it
                    out[(src, d, port, proto)] = r["ok"] and (d not in via or r.get("answer") == d.split("/")[1])
            except Exception as exc:  # reported below, with the source pod
                errors.append("%s: %s" % (src, exc))

        threads = [threading.Thread(target=row, args=(s,)) for s in rows]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, "\n".join(errors)
        return out

    def expect(self, reach, what, via=None):
        """After the barrier one round must match. Rows where only an expected
        connection failed are probed again (twice at most): on a loaded machine
        a 1 s probe can time out; an unexpected success is never retried."""
        self.synced()
        self.forget_udp()
        expected = nc.expected_table(reach, via or ())
        observed = self.observe(via)
        for _ in range(2):
            late = sorted({s for (s, d, p, pr), ok in observed.items() if expected[(s, d, p, pr)] and not ok})
            if not late or any(ok and not expected[k] for k, ok in observed.items()):
                break
            observed.update(self.observe(via, rows=late))
        assert observed == expected, "%s: the reachability table does not match\n%s" % (
            what,
            nc.render_tables(expected, observed),
        )

    def reset(self):
        """Remove what the previous test applied, put the labels back."""
        if self.applied:
            self.run("delete", "--ignore-not-found", "-f", "-", input=nc.to_yaml(self.applied))
        if self.relabelled:
            self.run("apply", "-f", "-", input=nc.to_yaml(nc.lab_manifests()))
        self.applied, self.relabelled = [], False

    def forget_udp(self):
        """An allowed UDP probe leaves a conntrack entry for up to 2 minutes,
        and a later probe that happens to reuse its source port would ride on
        it past a new deny (established flows outlive policy changes, by
        design). Each probe round starts without them; TCP probes open fresh
        connections, and held TCP connections (a test of their own) stay."""
        for node in nc.NODES:
            subprocess.run(
                ["nsenter", "--net=/run/netns/pn-%s-%s" % (self.lab.name, node), "--", "conntrack", "-D", "-p", "udp"],
                capture_output=True,
            )

    def service_ip(self, key):
        ns, name = key.split("/")
        return self.lab.wait(
            "ClusterIP of %s" % key,
            lambda: (self.objects.find("Service", ns, name) or {}).get("spec", {}).get("clusterIP"),
        )


@pytest.mark.parametrize("name", sorted(nc.CASES))
def test_truth_table(lab, name):
    lab.reset()
    via = None
    if name in nc.SERVICE_CASES:
        svc, pod = nc.SERVICE_CASES[name]
        lab.apply([nc.service(svc, {"pod": pod.split("/")[1]})])
        via = {pod: lab.service_ip(svc)}
        target = "tcp:%s:80" % via[pod]
        deadline = time.time() + 15
        while not lab.probe_row("y/a", [target])[target]["ok"]:
            if time.time() > deadline:
                pytest.fail(
                    "nothing reaches %s through its ClusterIP %s: the Services proxy is not serving" % (pod, via[pod])
                )
            time.sleep(0.5)
    for i, step in enumerate(nc.CASES[name](lab.ips)):
        lab.apply(step.apply)
        for kind, ns, obj in step.delete:
            lab.delete(kind, ns, obj)
        lab.expect(step.expect, "case %s, step %d %s" % (name, i, step.note), via)


def _node_probe(lab, node, target):
    res = lab.run("lab", "exec", node, "--", PY, "-m", "podnet.workload", "probe", "--timeout", "1", target)
    return json.loads(res.stdout.strip().splitlines()[-1])[target]


def test_the_pods_own_node_gets_through_deny_all_and_other_nodes_do_not(lab):
    lab.reset()
    lab.apply([nc.netpol("x/deny-all", {}, types=["Ingress", "Egress"])])
    lab.expect(nc.Reach().deny_to("x/*").deny_from("x/*"), "deny-all in x")
    target = "tcp:%s:80" % lab.ips["x/a"]
    own = nc.node_of("x/a")
    assert _node_probe(lab, own, target)["ok"], "kubelet-style probes from the pod's own node must pass"
    other = next(n for n in nc.NODES if n != own)
    assert _node_probe(lab, other, target) == {"ok": False, "error": "TIMEOUT"}
    time.sleep(3)  # three readiness periods under deny-all: the pods stay Ready
    pods = lab.lab.get("pods", "-n", "x")
    assert all(any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"]["conditions"]) for p in pods)


ECHO_SERVER = r"""
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 9000)); s.listen(1); s.settimeout(60)
print("listening", flush=True)
c, _ = s.accept(); c.settimeout(60)
while True:
    data = c.recv(100)
    if not data:
        break
    c.sendall(data)
"""

ECHO_CLIENT = r"""
import socket, sys
c = socket.create_connection((sys.argv[1], 9000), timeout=5)
for line in sys.stdin:
    c.sendall(line.encode())
    try:
        print("echo " + c.recv(100).decode().strip(), flush=True)
    except OSError as e:
        print("error %s" % e, flush=True)
"""


def test_an_open_connection_that_stays_allowed_survives_policy_updates(lab):
    lab.reset()
    server = subprocess.Popen(
        [PY, "-m", "podnet.cli.main", "exec", "-n", "x", "a", "--", PY, "-c", ECHO_SERVER],
        env=lab.lab.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    client = None
    try:
        assert server.stdout.readline().strip() == "listening"
        client = subprocess.Popen(
            [PY, "-m", "podnet.cli.main", "exec", "-n", "y", "b", "--", PY, "-c", ECHO_CLIENT, lab.ips["x/a"]],
            env=lab.lab.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

        def say(word):
            client.stdin.write(word + "\n")
            client.stdin.flush()
            return client.stdout.readline().strip()

        assert say("one") == "echo one"
        # isolate x/a: only y/b may connect, on 9000 only; then rewrite the
        # policy (another table, same verdict for this connection)
        allow_yb = nc.netpol(
            "x/a-from-yb",
            nc.pod_sel("a"),
            ingress=[
                {
                    "from": [{"namespaceSelector": nc.ns_sel("y"), "podSelector": nc.pod_sel("b")}],
                    "ports": [{"port": 9000}],
                }
            ],
        )
        lab.apply([allow_yb])
        lab.expect(nc.only_x_a_from(), "x/a isolated (80/81 closed to everyone)")
        assert say("two") == "echo two"
        allow_yb["spec"]["ingress"][0]["ports"].append({"port": 9001})
        lab.apply([allow_yb, nc.netpol("x/deny-b", nc.pod_sel("b"), ingress=[])])
        lab.expect(nc.only_x_a_from().deny_to("x/b"), "x/b isolated too")
        assert say("three") == "echo three"
    finally:
        for p in (client, server):
            if p is not None:
                if p.stdin:
                    p.stdin.close()
                try:
                    p.wait(15)  # the client ends with its stdin, the server with its only connection
                except subprocess.TimeoutExpired:
                    p.kill()  # the podnet exec we started; lab down kills what runs in its namespaces
                    p.wait(5)
                p.stdout.close()
                p.stderr.close()


def test_describe_and_the_table_name_the_policy_and_its_pods(lab):
    lab.reset()
    lab.apply([nc.netpol("x/a-from-b", nc.pod_sel("a"), ingress=[{"from": [{"podSelector": nc.pod_sel("b")}]}])])
    lab.expect(nc.only_x_a_from("x/b"), "x/a admits x/b only")
    out = lab.run("describe", "netpol", "a-from-b", "-n", "x").stdout
    assert "Selected pods:" in out and lab.ips["x/a"] in out and "PodSelector: pod=b" in out
    table = lab.run("rules", nc.node_of("x/a"), "--policy").stdout
    assert "-x/a {" in table and "NetworkPolicy x/a-from-b ingress" in table
    # the peer is a named set (its elements change when pods come and go, its rule does not)
    peers = re.search(r"ip saddr @(peers-\S+-x_pods_pod_b) accept", table)
    assert peers, table
    block = table.split("set %s {" % peers.group(1), 1)[1].split("}", 1)[0]
    assert "elements = { %s" % lab.ips["x/b"] in block
    # the other nodes hold no chain for x/a: a pod is enforced where it runs
    other = next(n for n in nc.NODES if n != nc.node_of("x/a"))
    assert "x/a-from-b" not in lab.run("rules", other, "--policy").stdout


def test_a_bad_policy_is_refused_whole_and_changes_nothing(lab):
    lab.reset()
    bad = [
        nc.netpol("x/fine", {}, ingress=[]),
        nc.netpol("x/broken", {}, ingress=[{"ports": [{"port": "serve-80-tcp", "endPort": 90}]}]),
    ]
    res = lab.run("apply", "-f", "-", input=nc.to_yaml(bad), check=False)
    assert res.returncode == 1 and "spec.ingress[0].ports[0].endPort" in res.stderr
    assert lab.lab.get("netpol", "-A") == []
    lab.expect(nc.Reach(), "still no policy")


def test_the_reconciler_applies_only_changes_and_repairs_a_table_deleted_by_hand(namespaces, api_server):
    """The agent's loop body on a bare namespace: no lab, a store of its own."""
    from podnet.kernel.netns import Netns
    from tests.helpers import wait_for

    node = namespaces.new("polnode")
    objects = api_server.cluster()
    for ns in ("default", "x"):  # the API server creates nothing in a namespace that does not exist
        objects.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    objects.create(
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": "n1"},
            "spec": {"podCIDR": "10.244.0.0/24"},
            "status": {"addresses": [{"type": "InternalIP", "address": "192.168.200.11"}]},
        }
    )
    for key in ("x/a", "x/b"):
        p = nc.pod(key)
        p["spec"]["nodeName"] = "n1"
        p["status"] = {"podIP": "10.244.0.%d" % (10 + len(key) + nc.NAMES.index(key[-1])), "phase": "Running"}
        objects.create(p)
    objects.apply(nc.netpol("x/a-from-b", nc.pod_sel("a"), ingress=[{"from": [{"podSelector": nc.pod_sel("b")}]}]))
    handle = Netns(node)
    r = None
    try:
        r = PolicyReconciler("n1", objects, CIDR, ns=handle)

        def table():
            return subprocess.run(
                ["nsenter", "--net=/run/netns/" + node, "--", "nft", "list", "table", "inet", "podnet-policy"],
                capture_output=True,
                text=True,
            ).stdout

        r.sync()
        assert r.applies == 1 and "x/a-from-b" in table() and "192.168.200.11" in table()
        r.sync()
        assert r.applies == 1  # nothing changed: nothing applied
        subprocess.run(
            ["nsenter", "--net=/run/netns/" + node, "--", "nft", "delete", "table", "inet", "podnet-policy"], check=True
        )
        r.last_check = 0  # the periodic check is due
        r.sync()
        assert r.applies == 2 and "x/a-from-b" in table()
        objects.delete("NetworkPolicy", "x", "a-from-b")
        wait_for("the informer to see the delete", lambda: objects.find("NetworkPolicy", "x", "a-from-b") is None)
        r.sync()
        assert r.applies == 3 and "x/a-from-b" not in table() and "ingress-pods" in table()
    finally:
        if r is not None:
            r.close()  # its kept nf_tables context would keep the namespace alive
        handle.close()
        objects.stop.set()
