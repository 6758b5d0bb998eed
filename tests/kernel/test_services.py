"""Services in a 3-node lab: every node's agent load-balances with its own
`ip podnet-proxy` table. Driven through the `podnet` command; traffic from
real pods, nodes and the external host."""

import collections
import json
import os
import signal
import sys

import pytest

from tests.kernel.test_lab import Lab, leftovers

pytestmark = pytest.mark.kernel

AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.45"
EXTERNAL = "192.168.200.100"


def deployment(name, replicas, extra_labels=""):
    return """apiVersion: apps/v1
kind: Deployment
metadata: {name: %s}
spec:
  replicas: %d
  selector: {matchLabels: {app: %s}}
  template:
    metadata: {labels: {app: %s%s}}
    spec:
      containers:
      - name: netexec
        image: %s
        args: [netexec, --http-port=8080, --udp-port=8081]
        ports: [{name: http, containerPort: 8080}, {name: dns, containerPort: 8081, protocol: UDP}]
        readinessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 1}
""" % (name, replicas, name, name, extra_labels, AGNHOST)


# A server that ignores SIGTERM, so it keeps serving through its grace period
SLOWSTOP = """apiVersion: apps/v1
kind: Deployment
metadata: {name: slowstop}
spec:
  replicas: 1
  selector: {matchLabels: {app: slowstop}}
  template:
    metadata: {labels: {app: slowstop}}
    spec:
      terminationGracePeriodSeconds: 6
      containers:
      - name: http
        command: [sh, -c, "trap '' TERM; exec python3 -m http.server 8080"]
        readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: slowstop}
spec:
  selector: {app: slowstop}
  ports: [{port: 80, targetPort: 8080}]
"""

SERVICES = """apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}, {name: alt, port: 8000, targetPort: 8080},
          {name: dns, port: 53, targetPort: dns, protocol: UDP}]
---
apiVersion: v1
kind: Service
metadata: {name: sticky}
spec:
  selector: {app: web}
  sessionAffinity: ClientIP
  sessionAffinityConfig: {clientIP: {timeoutSeconds: 600}}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-np}
spec:
  type: NodePort
  selector: {app: web}
  externalIPs: [192.168.201.7]
  ports: [{port: 80, targetPort: 8080, nodePort: 30080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-lb}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: solo-lb}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  selector: {app: solo}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: solo}
spec:
  selector: {app: solo}
  ports: [{name: dns, port: 53, targetPort: 8081, protocol: UDP}]
---
apiVersion: v1
kind: Service
metadata: {name: local}
spec:
  selector: {app: web}
  internalTrafficPolicy: Local
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: nobody}
spec:
  selector: {app: nothing}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: headless}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{port: 80}]
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  nodeName: node1
  containers:
  - {name: pause, image: registry.k8s.io/pause:3.9}
"""

# A UDP client on a fixed source port: the same conntrack entry every time,
# as a DNS client reusing its socket would have.
UDP_ASK = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 40053)); s.settimeout(0.5)
for _ in range(int(sys.argv[3])):
    s.sendto(b"hostname", (sys.argv[1], int(sys.argv[2])))
    try:
        print(s.recvfrom(100)[0].decode()); break
    except socket.timeout:
        pass
else:
    print("no answer")
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("labs"))
    lab = Lab("s%d" % (os.getpid() % 100000), root)
    lab.root = root
    try:
        lab.run(
            "lab",
            "up",
            "--name",
            lab.name,
            "--nodes",
            "3",
            "-f",
            "-",
            "--timeout",
            "90",
            input=deployment("web", 3) + "---\n" + deployment("solo", 1) + "---\n" + SERVICES + "---\n" + SLOWSTOP,
            timeout=150,
        )
        lab.doc = json.load(open(os.path.join(root, lab.name, "lab.json")))
        yield lab
    finally:
        lab.run("lab", "down", "--name", lab.name, check=False)
        assert leftovers(lab.name, root) == []


def svc(lab, name):
    return json.loads(lab.run("get", "svc", name, "-o", "json").stdout)


def web_pods(lab, app="web"):
    return {
        p["metadata"]["name"]: p
        for p in lab.get("pods", "-l", "app=" + app)
        if p["status"].get("podIP") and not p["metadata"].get("deletionTimestamp")
    }


def ready_endpoints(lab, name):
    sl = lab.get("endpointslices", "-l", "kubernetes.io/service-name=" + name)
    return sorted(
        e["addresses"][0] for s in sl for e in s.get("endpoints") or [] if (e.get("conditions") or {}).get("ready")
    )


def curl_many(lab, where, url, n):
    """n HTTP requests from a pod (or `node1`/`external` with lab=True) -> answers."""
    loop = "for i in $(seq %d); do curl -s -m 2 %s; echo; done" % (n, url)
    if where in ("external", "node1", "node2", "node3"):
        out = lab.run("lab", "exec", where, "--", "sh", "-c", loop, timeout=120).stdout
    else:
        out = lab.run("exec", where, "--", "sh", "-c", loop, timeout=120).stdout
    return [x for x in out.splitlines() if x]


def curl(lab, where, url, timeout=5):
    argv = ["curl", "-s", "-m", str(timeout), "-o", "/dev/stdout", "-w", "\n%{http_code}", url]
    res = lab.run(
        *(["lab", "exec", where] if where in ("external", "node1", "node2", "node3") else ["exec", where]),
        "--",
        *argv,
        check=False,
    )
    return res.returncode, res.stdout


def wait_for(lab, what, fn, timeout=30):
    return lab.wait(what, fn, timeout)


def test_clusterip_spreads_over_endpoints_on_three_nodes(lab):
    pods = web_pods(lab)
    assert len({p["spec"]["nodeName"] for p in pods.values()}) == 3  # one endpoint per node
    ip = svc(lab, "web")["spec"]["clusterIP"]
    answers = collections.Counter(curl_many(lab, "client", "http://%s/hostname" % ip, 300))
    assert set(answers) == set(pods), answers
    assert sum(answers.values()) == 300
    assert max(answers.values()) <= 180, answers  # none more than 60 %
    # a second port of the same service, and the named targetPort resolved per pod
    assert set(curl_many(lab, "client", "http://%s:8000/hostname" % ip, 30)) <= set(pods)


def test_client_ip_affinity_sticks_to_one_endpoint(lab):
    ip = svc(lab, "sticky")["spec"]["clusterIP"]
    answers = set(curl_many(lab, "client", "http://%s/hostname" % ip, 60))
    assert len(answers) == 1 and answers <= set(web_pods(lab))


def test_no_endpoints_and_unknown_port_are_refused_not_timed_out(lab):
    ip = svc(lab, "nobody")["spec"]["clusterIP"]
    rc, _ = curl(lab, "client", "http://%s/" % ip, timeout=5)
    assert rc == 7  # curl: connection refused (a drop would be 28, timeout)
    rc, _ = curl(lab, "client", "http://%s:81/" % svc(lab, "web")["spec"]["clusterIP"], timeout=5)
    assert rc == 7
    rc, _ = curl(lab, "node2", "http://%s/" % ip, timeout=5)  # from a node too
    assert rc == 7


def test_headless_service_has_no_rules(lab):
    out = lab.run("rules", "node1", "--service", "headless").stdout
    assert "no rules" in out


def test_nodeport_from_external_and_pods(lab):
    for node in lab.doc["nodes"]:
        ans = curl_many(lab, "external", "http://%s:30080/clientip" % node["ip"], 3)
        assert len(ans) == 3
        # externalTrafficPolicy Cluster: masqueraded to a node address
        assert all(not a.startswith(EXTERNAL + ":") for a in ans), ans
    assert len(curl_many(lab, "client", "http://%s:30080/hostname" % lab.doc["nodes"][2]["ip"], 3)) == 3


def test_external_ip_from_a_pod(lab):
    assert set(curl_many(lab, "client", "http://192.168.201.7/hostname", 20)) <= set(web_pods(lab))
    assert len(curl_many(lab, "client", "http://192.168.201.7/hostname", 5)) == 5


def test_loadbalancer_local_keeps_the_client_address(lab):
    ing = wait_for(
        lab, "LoadBalancer ingress", lambda: svc(lab, "web-lb").get("status", {}).get("loadBalancer", {}).get("ingress")
    )
    ip = ing[0]["ip"]
    assert ip.startswith("192.168.200.24") or ip.startswith("192.168.200.25")
    ans = wait_for(lab, "LB answers", lambda: curl_many(lab, "external", "http://%s/clientip" % ip, 5))
    assert len(ans) == 5 and all(a.startswith(EXTERNAL + ":") for a in ans), ans
    assert ip in lab.run("get", "svc", "web-lb").stdout  # EXTERNAL-IP column


def test_health_check_node_port_says_which_nodes_have_endpoints(lab):
    s = svc(lab, "solo-lb")
    port = s["spec"]["healthCheckNodePort"]
    (pod,) = web_pods(lab, "solo").values()
    for node in lab.doc["nodes"]:
        rc, out = curl(lab, "external", "http://%s:%d/healthz" % (node["ip"], port))
        body, code = out.rsplit("\n", 1)
        want = "200" if node["name"] == pod["spec"]["nodeName"] else "503"
        assert code == want, (node["name"], out)
        assert json.loads(body)["service"] == {"namespace": "default", "name": "solo-lb"}


def test_internal_traffic_policy_local_uses_the_nodes_own_endpoint(lab):
    ip = svc(lab, "local")["spec"]["clusterIP"]
    mine = {n for n, p in web_pods(lab).items() if p["spec"]["nodeName"] == "node1"}
    assert set(curl_many(lab, "client", "http://%s/hostname" % ip, 20)) == mine


def test_hairpin_a_pod_reaches_itself_through_its_service(lab):
    ip = svc(lab, "web")["spec"]["clusterIP"]
    name = sorted(web_pods(lab))[0]
    answers = curl_many(lab, name, "http://%s/hostname" % ip, 40)
    assert len(answers) == 40 and name in answers


def test_get_endpoints_and_rules_show_what_the_proxy_uses(lab):
    pods = web_pods(lab)
    out = lab.run("get", "endpoints", "web").stdout
    assert all(p["status"]["podIP"] in out or "more" in out for p in pods.values())
    rules = lab.run("rules", "node2", "--service", "web").stdout
    ip = svc(lab, "web")["spec"]["clusterIP"]
    assert "service-ips: %s . tcp . 80 : goto svc-" % ip in rules
    for p in pods.values():
        assert "dnat to %s:8080" % p["status"]["podIP"] in rules
        assert "dnat to %s:8081" % p["status"]["podIP"] in rules  # the UDP port by name
    assert "node3" in lab.run("rules").stdout  # every node by default


def test_metrics_from_each_agent(lab):
    for node in lab.doc["nodes"]:
        out = lab.run(
            "lab", "exec", "external", "--", "curl", "-s", "-m", "3", "http://%s:10249/metrics" % node["ip"]
        ).stdout
        assert 'podnet_proxy_sync_duration_seconds_count{type="full"}' in out
        assert "podnet_proxy_sync_failures_total 0.0" in out
        (rules,) = [float(x.split()[1]) for x in out.splitlines() if x.startswith("podnet_proxy_rules ")]
        # the gauge counts what the kernel really holds
        from podnet.cli.rules import parse_table, read_table

        chains, _ = parse_table(read_table("/run/netns/" + node["netns"], "ip", "podnet-proxy"))
        assert rules == sum(len(r) for r in chains.values()) > 0


def test_scaling_reaches_the_rules(lab):
    ip = svc(lab, "web")["spec"]["clusterIP"]
    lab.run("apply", "-f", "-", input=deployment("web", 1))
    wait_for(lab, "one endpoint", lambda: len(ready_endpoints(lab, "web")) == 1)
    (only,) = ready_endpoints(lab, "web")
    names = {n for n, p in web_pods(lab).items() if p["status"]["podIP"] == only}
    wait_for(lab, "rules follow", lambda: set(curl_many(lab, "client", "http://%s/hostname" % ip, 10)) == names)
    lab.run("apply", "-f", "-", input=deployment("web", 3))
    wait_for(lab, "three endpoints", lambda: len(ready_endpoints(lab, "web")) == 3, 60)
    wait_for(lab, "all three answer", lambda: len(set(curl_many(lab, "client", "http://%s/hostname" % ip, 60))) == 3)


def test_udp_service_answers_after_its_server_pod_is_replaced(lab):
    ip = svc(lab, "solo")["spec"]["clusterIP"]
    (old,) = web_pods(lab, "solo")
    ask = ["exec", "client", "--", sys.executable, "-c", UDP_ASK, ip, "53"]
    assert lab.run(*ask, "10").stdout.strip() == old
    lab.run("delete", "pod", old, "--wait")
    wait_for(
        lab,
        "a new solo endpoint",
        lambda: len(ready_endpoints(lab, "solo")) == 1 and set(web_pods(lab, "solo")) - {old},
        60,
    )
    (new,) = set(web_pods(lab, "solo")) - {old}
    # the same client socket (same conntrack tuple) now reaches the new pod
    assert lab.run(*ask, "20").stdout.strip() == new


def test_a_terminating_but_serving_endpoint_is_used_when_no_ready_one_is_left(lab):
    ip = svc(lab, "slowstop")["spec"]["clusterIP"]
    (old,) = web_pods(lab, "slowstop")
    lab.run("delete", "pod", old)  # ignores SIGTERM: serves for 6 s more
    codes = lab.run(
        "exec",
        "client",
        "--",
        "sh",
        "-c",
        "for i in $(seq 40); do curl -s -m 1 -o /dev/null -w '%%{http_code} ' http://%s/; sleep 0.05; done" % ip,
        timeout=120,
    ).stdout.split()
    # the replacement is not Ready for a while: without the old pod's serving
    # endpoint the Service would have none and refuse (000)
    assert codes == ["200"] * 40, codes
    wait_for(lab, "the old pod gone", lambda: old not in web_pods(lab, "slowstop"), 30)


def test_loadbalancer_ip_fails_over_when_its_node_agent_stops(lab):
    ip = svc(lab, "web-lb")["status"]["loadBalancer"]["ingress"][0]["ip"]

    def owner():
        for n in lab.doc["nodes"]:
            if ip + "/32" in lab.run("lab", "exec", n["name"], "--", "ip", "-4", "addr", "show", "lo").stdout:
                return n["name"]

    first = wait_for(lab, "an owner", owner)
    procs = json.load(open(os.path.join(lab.root, lab.name, "procs.json")))
    os.kill(procs["agent-" + first]["pid"], signal.SIGTERM)
    try:
        second = wait_for(lab, "another owner", lambda: (owner() or first) != first and owner(), 30)
        ans = wait_for(lab, "LB answers again", lambda: curl_many(lab, "external", "http://%s/clientip" % ip, 3), 30)
        assert len(ans) == 3
        assert second != first
    finally:
        # at once, while the old agent may still be shutting down: `lab up`
        # must still end with a running agent on that node
        lab.run("lab", "up", "--name", lab.name, timeout=150)
        wait_for(
            lab,
            "node Ready again",
            lambda: all(
                any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"])
                for n in lab.get("nodes")
            ),
            60,
        )
