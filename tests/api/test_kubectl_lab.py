"""The real kubectl (/usr/bin/kubectl, v1.32) against a lab: the commands of
the Kubernetes tutorials as they are written, each checked for what a user
sees (the output, the exit code) and for the cluster's real state behind it
(the kernel's addresses, network namespaces, whether a connection goes
through).

One lab for the module: examples/lab.yaml (Deployment web with 3 agnhost
netexec pods answering /hostname and /clientip on 8080, Service web on port
80, a client pod). The read-only tests come first; every test that creates
something removes it, so the others see the example lab as it was made.
"""

from __future__ import annotations

import fcntl
import hashlib
import ipaddress
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import termios
import time
import urllib.request

import pytest

from tests.api.conftest import KUBECTL, free_port
from tests.helpers import nsenter, wait_for
from tests.kernel.test_lab import ready

pytestmark = pytest.mark.kernel

AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.45"


# ---- reading what kubectl prints ---------------------------------------------


def table(out: str) -> list[dict[str, str]]:
    """kubectl's table output as rows keyed by the header's columns (cut at
    the header's column offsets, as kubectl aligns them)."""
    lines = [line for line in out.splitlines() if line.strip()]
    assert lines, "no table in %r" % out
    header = lines[0]
    names = re.split(r"\s{2,}", header.strip())
    starts, pos = [], 0
    for name in names:
        pos = header.index(name, pos)
        starts.append(pos)
        pos += len(name)
    rows = []
    for line in lines[1:]:
        cells = {}
        for i, name in enumerate(names):
            end = starts[i + 1] if i + 1 < len(starts) else None
            cells[name] = line[starts[i] : end].strip()
        rows.append(cells)
    return rows


def header(out: str) -> list[str]:
    return re.split(r"\s{2,}", out.splitlines()[0].strip())


def described(out: str, field: str) -> str:
    """The value of a top-level `Field:   value` line of kubectl describe."""
    m = re.search(r"^%s:[ \t]*(.*)$" % re.escape(field), out, re.M)
    assert m, "no %r line in:\n%s" % (field, out)
    return m.group(1).strip()


def section(out: str, title: str) -> str:
    """The indented lines under a top-level `Title:` line of kubectl describe."""
    lines = out.splitlines()
    start = next((i for i, line in enumerate(lines) if re.match(r"^%s:" % re.escape(title), line)), None)
    assert start is not None, "no %s section in:\n%s" % (title, out)
    body = [lines[start][len(title) + 1 :]]
    for line in lines[start + 1 :]:
        if line and not line[0].isspace():
            break
        body.append(line)
    return "\n".join(body)


def web_pods(lab) -> list[dict]:
    return [p for p in lab.kjson("get", "pods", "-l", "app=web")["items"] if not p["metadata"].get("deletionTimestamp")]


def pod_or_none(lab, name: str, ns: str = "default"):
    res = lab.kubectl("get", "pod", name, "-n", ns, "-o", "json", check=False)
    return json.loads(res.stdout) if res.returncode == 0 else None


def wait_ready(lab, name: str, ns: str = "default", timeout: float = 60) -> dict:
    return wait_for(
        "pod %s/%s Ready" % (ns, name),
        lambda: (lambda p: p if p and ready(p) and p["status"].get("podIP") else None)(pod_or_none(lab, name, ns)),
        timeout,
        every=0.2,
    )


def curl(lab, url: str, pod: str = "client", ns: str = "default", timeout: int = 3):
    """`kubectl exec POD -- curl -sS -m T URL`: (exit code, stdout)."""
    res = lab.kubectl("exec", pod, "-n", ns, "--", "curl", "-sS", "-m", str(timeout), url, check=False, timeout=60)
    return res.returncode, res.stdout


def pod_names(lab, selector: str, ns: str = "default") -> list[str]:
    out = lab.kubectl("get", "pods", "-n", ns, "-l", selector, "-o", "name").stdout
    return sorted(line.split("/", 1)[1] for line in out.split())


def running_names(lab, selector: str, ns: str = "default") -> list[str]:
    items = lab.kjson("get", "pods", "-n", ns, "-l", selector)["items"]
    return sorted(p["metadata"]["name"] for p in items if ready(p) and not p["metadata"].get("deletionTimestamp"))


def netns_of(lab, pod: dict) -> str:
    from podnet.agent.agent import pod_netns

    return pod_netns(lab.name, pod["metadata"]["uid"])


def pty_run(argv: list[str], env: dict[str, str], send: bytes | None = None, prompt: str | None = None, timeout=30):
    """Run argv with a terminal (24 rows, 80 columns) as its stdin, stdout
    and stderr, as `kubectl exec -it` needs; when `prompt` (a regex) shows,
    type `send`. -> (everything the terminal showed, exit code)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: the terminal is fd 0-2
        try:
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
            os.execve(argv[0], argv, env)
        finally:
            os._exit(127)
    out, sent, code = b"", send is None, None
    deadline = time.time() + timeout
    try:
        while time.time() < deadline:
            if not sent and prompt and re.search(prompt.encode(), out):
                os.write(fd, send)
                sent = True
            ready_fds, _, _ = select.select([fd], [], [], 0.2)
            if ready_fds:
                try:
                    data = os.read(fd, 65536)
                except OSError:  # EIO: the child closed the terminal
                    data = b""
                if not data:
                    break
                out += data
        else:
            raise AssertionError("%s did not finish in %d s; it showed %r" % (argv, timeout, out))
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
    finally:
        os.close(fd)
        if code is None:  # our child, by its PID
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    return out.decode(errors="replace"), code


# ---- get, describe, logs: the example lab as the tutorials look at it -------


def test_get_pods_wide_shows_each_pod_ip_from_its_node_podcidr(kubectl_lab):
    lab = kubectl_lab
    cidrs = {
        n["metadata"]["name"]: ipaddress.ip_network(n["spec"]["podCIDR"]) for n in lab.kjson("get", "nodes")["items"]
    }
    res = lab.kubectl("get", "pods", "-o", "wide")
    assert header(res.stdout) == [
        "NAME",
        "READY",
        "STATUS",
        "RESTARTS",
        "AGE",
        "IP",
        "NODE",
        "NOMINATED NODE",
        "READINESS GATES",
    ]
    rows = {r["NAME"]: r for r in table(res.stdout) if r["NAME"] == "client" or r["NAME"].startswith("web-")}
    assert len(rows) == 4 and "client" in rows, res.stdout
    for r in rows.values():
        assert (r["READY"], r["STATUS"]) == ("1/1", "Running"), r
        assert r["NODE"] in cidrs, r
        assert ipaddress.ip_address(r["IP"]) in cidrs[r["NODE"]], (r, cidrs)
    assert len({r["IP"] for r in rows.values()}) == 4
    # the address kubectl shows is the one the pod really has
    eth0 = lab.kubectl("exec", "client", "--", "ip", "-4", "-o", "addr", "show", "eth0").stdout
    assert " %s/" % rows["client"]["IP"] in eth0, eth0


def test_get_nodes_wide_shows_ready_nodes_and_their_internal_ip(kubectl_lab):
    lab = kubectl_lab
    res = lab.kubectl("get", "nodes", "-o", "wide")
    h = header(res.stdout)
    assert h[:7] == ["NAME", "STATUS", "ROLES", "AGE", "VERSION", "INTERNAL-IP", "EXTERNAL-IP"], h
    rows = {r["NAME"]: r for r in table(res.stdout)}
    assert sorted(rows) == ["node1", "node2"]
    for name, ip in (("node1", "192.168.200.11"), ("node2", "192.168.200.12")):
        assert rows[name]["STATUS"] == "Ready" and rows[name]["INTERNAL-IP"] == ip, rows[name]
        real = subprocess.run(
            ["ip", "-n", "pn-%s-%s" % (lab.name, name), "-4", "-o", "addr", "show", "eth0"],
            capture_output=True,
            text=True,
        ).stdout
        assert " %s/" % ip in real, real


def test_get_svc_shows_cluster_ips_that_answer(kubectl_lab):
    lab = kubectl_lab
    res = lab.kubectl("get", "svc")
    assert header(res.stdout) == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    rows = {r["NAME"]: r for r in table(res.stdout)}
    assert rows["kubernetes"]["CLUSTER-IP"] == "10.96.0.1" and rows["kubernetes"]["PORT(S)"] == "443/TCP"
    web = rows["web"]
    assert (web["TYPE"], web["EXTERNAL-IP"], web["PORT(S)"]) == ("ClusterIP", "<none>", "80/TCP"), web
    assert ipaddress.ip_address(web["CLUSTER-IP"]) in ipaddress.ip_network("10.96.0.0/12")
    code, out = curl(lab, "http://%s/hostname" % web["CLUSTER-IP"])
    assert code == 0 and out in {p["metadata"]["name"] for p in web_pods(lab)}, (code, out)


def test_get_endpoints_lists_the_ready_web_pods(kubectl_lab):
    lab = kubectl_lab
    want = {"%s:8080" % p["status"]["podIP"] for p in web_pods(lab)}
    res = lab.kubectl("get", "endpoints", "web")
    assert header(res.stdout) == ["NAME", "ENDPOINTS", "AGE"], res.stdout
    (row,) = table(res.stdout)
    assert row["NAME"] == "web" and set(row["ENDPOINTS"].split(",")) == want, (row, want)
    api = table(lab.kubectl("get", "endpoints", "kubernetes").stdout)[0]
    assert api["ENDPOINTS"] == "192.168.200.1:6443", api


def test_get_endpointslices_lists_the_web_pods(kubectl_lab):
    lab = kubectl_lab
    want = {p["status"]["podIP"] for p in web_pods(lab)}
    res = lab.kubectl("get", "endpointslices", "-l", "kubernetes.io/service-name=web")
    assert header(res.stdout) == ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"]
    (row,) = table(res.stdout)
    assert row["NAME"].startswith("web-") and (row["ADDRESSTYPE"], row["PORTS"]) == ("IPv4", "8080"), row
    assert set(row["ENDPOINTS"].split(",")) == want, (row, want)


def test_get_pods_show_labels(kubectl_lab):
    lab = kubectl_lab
    rows = {r["NAME"]: r for r in table(lab.kubectl("get", "pods", "--show-labels").stdout)}
    assert rows["client"]["LABELS"] == "app=client"
    webs = [r for n, r in rows.items() if n.startswith("web-")]
    assert len(webs) == 3
    for r in webs:
        labels = dict(kv.split("=", 1) for kv in r["LABELS"].split(","))
        assert labels["app"] == "web" and r["NAME"].startswith("web-" + labels["pod-template-hash"] + "-"), r


def test_describe_pod_shows_node_ip_and_containers(kubectl_lab):
    lab = kubectl_lab
    pod = lab.kjson("get", "pod", "client")
    out = lab.kubectl("describe", "pod", "client").stdout
    assert described(out, "Name") == "client" and described(out, "Namespace") == "default"
    assert described(out, "Node") == "%s/%s" % (pod["spec"]["nodeName"], pod["status"]["hostIP"])
    assert described(out, "Status") == "Running"
    assert described(out, "IP") == pod["status"]["podIP"]
    containers = section(out, "Containers")
    assert re.search(r"^  client:$", containers, re.M), containers
    assert re.search(r"^    Image:\s+%s$" % re.escape(AGNHOST), containers, re.M), containers
    assert re.search(r"^    State:\s+Running$", containers, re.M) and re.search(
        r"^    Ready:\s+True$", containers, re.M
    )
    assert re.search(r"^Events:", out, re.M), out


def test_describe_pod_and_get_events_show_the_scheduling_event(kubectl_lab):
    lab = kubectl_lab
    lab.kubectl("run", "evt", "--image=agnhost", "--", "pause")
    try:
        node = wait_ready(lab, "evt")["spec"]["nodeName"]

        def scheduled_event():
            events = section(lab.kubectl("describe", "pod", "evt").stdout, "Events")
            return next((line for line in events.splitlines() if "Scheduled" in line), None)

        line = wait_for("a Scheduled event in kubectl describe pod evt", scheduled_event, 20, every=0.5)
        assert "Normal" in line and "default/evt" in line and node in line, line
        rows = table(lab.kubectl("get", "events", "--field-selector", "involvedObject.name=evt").stdout)
        reasons = {r["REASON"] for r in rows}
        assert "Scheduled" in reasons, rows
        assert all(r["OBJECT"] == "pod/evt" for r in rows), rows
    finally:
        lab.kubectl("delete", "pod", "evt", "--ignore-not-found")


def test_describe_svc_shows_its_endpoints(kubectl_lab):
    lab = kubectl_lab
    svc = lab.kjson("get", "svc", "web")
    out = lab.kubectl("describe", "svc", "web").stdout
    assert described(out, "Selector") == "app=web" and described(out, "Type") == "ClusterIP"
    assert described(out, "IP") == svc["spec"]["clusterIP"]
    assert re.split(r"\s+", described(out, "Port")) == ["http", "80/TCP"]
    assert described(out, "TargetPort") == "http/TCP"
    want = {"%s:8080" % p["status"]["podIP"] for p in web_pods(lab)}
    assert set(described(out, "Endpoints").split(",")) == want


def test_logs_show_what_the_netexec_pod_printed(kubectl_lab):
    lab = kubectl_lab
    web = web_pods(lab)[0]
    name, ip = web["metadata"]["name"], web["status"]["podIP"]
    client_ip = lab.kjson("get", "pod", "client")["status"]["podIP"]
    assert "Started HTTP server on port 8080" in lab.kubectl("logs", name).stdout
    marker = "pnt-%d" % os.getpid()
    code, out = curl(lab, "http://%s:8080/echo?msg=%s" % (ip, marker))
    assert (code, out) == (0, marker)
    line = wait_for(
        "the request in the log",
        lambda: next((x for x in lab.kubectl("logs", name).stdout.splitlines() if marker in x), None),
        10,
        every=0.2,
    )
    assert "GET /echo?msg=%s from %s:" % (marker, client_ip) in line, line  # no NAT between pods
    tail = lab.kubectl("logs", name, "--tail=2").stdout
    assert tail.endswith("\n") and len(tail.splitlines()) == 2, tail
    full = lab.kubectl("logs", name).stdout.splitlines()
    assert all(x in full for x in tail.splitlines())
    bad = lab.kubectl("logs", "nosuchpod", "--tail=1", check=False)
    assert bad.returncode == 1 and 'pods "nosuchpod" not found' in bad.stderr, bad.stderr


# ---- exec ---------------------------------------------------------------------


def test_exec_curl_reaches_a_service_by_its_name(kubectl_lab):
    lab = kubectl_lab
    names = {p["metadata"]["name"] for p in web_pods(lab)}
    client_ip = lab.kjson("get", "pod", "client")["status"]["podIP"]
    code, out = curl(lab, "http://web/hostname")
    assert code == 0 and out in names, (code, out)
    code, out = curl(lab, "http://web.default.svc.cluster.local/clientip")
    assert code == 0 and out.startswith(client_ip + ":"), (out, client_ip)  # the pod's own address, not NATed
    loop = lab.kubectl(
        "exec", "client", "--", "sh", "-c", "for i in $(seq 20); do curl -s -m 3 http://web/hostname; echo; done"
    ).stdout.split()
    assert len(loop) == 20 and set(loop) <= names and len(set(loop)) >= 2, loop  # load-balanced


def test_exec_it_nslookup_under_a_terminal(kubectl_lab):
    lab = kubectl_lab
    out, code = pty_run([KUBECTL, "exec", "-it", "client", "--", "nslookup", "kubernetes.default"], lab.kenv)
    assert code == 0, out
    assert re.search(r"Name:\s+kubernetes\.default\.svc\.cluster\.local", out), out
    assert re.search(r"Address:\s+10\.96\.0\.1\b", out), out
    assert "\r\n" in out  # the remote side is a terminal: it turns \n into \r\n
    out, code = pty_run([KUBECTL, "exec", "-it", "client", "--", "sh", "-c", "tty; stty size"], lab.kenv)
    assert code == 0 and re.search(r"/dev/pts/\d+\r\n24 80\r\n", out), out


def test_exec_it_an_interactive_shell(kubectl_lab):
    lab = kubectl_lab
    out, code = pty_run(
        [KUBECTL, "exec", "-it", "client", "--", "sh"],
        lab.kenv,
        send=b"echo answer-$((6*7)) $(hostname)\rexit 3\r",
        prompt=r"[#$] $",
    )
    assert "answer-42 client" in out, out
    assert code == 3, out


def test_exec_with_stdin_piped(kubectl_lab):
    lab = kubectl_lab
    text = "".join("line %d of what kubectl sends\n" % i for i in range(20000))  # ~600 kB
    assert lab.kubectl("exec", "-i", "client", "--", "wc", "-l", input=text).stdout.strip() == "20000"
    digest = lab.kubectl("exec", "-i", "client", "--", "sha256sum", input=text).stdout.split()[0]
    assert digest == hashlib.sha256(text.encode()).hexdigest()  # every byte, in order
    assert lab.kubectl("exec", "-i", "client", "--", "cat", input="hello\nworld\n").stdout == "hello\nworld\n"


def test_exec_passes_on_the_exit_code_and_stderr(kubectl_lab):
    lab = kubectl_lab
    res = lab.kubectl("exec", "client", "--", "sh", "-c", "echo out; echo err >&2; exit 3", check=False)
    assert res.returncode == 3 and res.stdout == "out\n", res
    assert "err\n" in res.stderr and "command terminated with exit code 3" in res.stderr, res.stderr
    assert lab.kubectl("exec", "client", "--", "false", check=False).returncode == 1
    assert lab.kubectl("exec", "client", "--", "true").returncode == 0
    gone = lab.kubectl("exec", "nosuchpod", "--", "true", check=False)
    assert gone.returncode == 1 and 'pods "nosuchpod" not found' in gone.stderr


def test_exec_runs_in_the_container_environment(kubectl_lab):
    """kubectl exec runs the command with the container's environment (its
    env vars, HOSTNAME = the pod name), as the kubelet's exec does."""
    lab = kubectl_lab
    lab.kubectl("run", "envpod", "--image=agnhost", "--env=GREETING=hello", "--", "pause")
    try:
        wait_ready(lab, "envpod")
        assert lab.kubectl("exec", "envpod", "--", "printenv", "GREETING", check=False).stdout == "hello\n"
        assert lab.kubectl("exec", "envpod", "--", "printenv", "HOSTNAME", check=False).stdout == "envpod\n"
        env = lab.kubectl("exec", "envpod", "--", "env").stdout
        assert "PODNET_STATE_ROOT=" not in env, env  # nothing of the server's own environment
    finally:
        lab.kubectl("delete", "pod", "envpod", "--ignore-not-found")


# ---- apply, scale, rollout, label, delete ------------------------------------

SHOP = (
    """\
apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: shop
  namespace: shop
  labels:
    app: shop
spec:
  replicas: 2
  selector:
    matchLabels:
      app: shop
  template:
    metadata:
      labels:
        app: shop
    spec:
      containers:
      - name: netexec
        image: %s
        args: ["netexec", "--http-port=8080"]
        ports:
        - name: http
          containerPort: 8080
        readinessProbe:
          httpGet:
            path: /healthz
            port: http
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: shop
  namespace: shop
spec:
  selector:
    app: shop
  ports:
  - port: 80
    targetPort: http
"""
    % AGNHOST
)

DENY_ALL = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: default-deny-ingress
  namespace: shop
spec:
  podSelector: {}
  policyTypes:
  - Ingress
"""


def test_apply_a_deployment_a_service_and_a_deny_all_policy(kubectl_lab):
    lab = kubectl_lab
    shop, deny = lab.write("shop.yaml", SHOP), lab.write("deny-all.yaml", DENY_ALL)
    try:
        res = lab.kubectl("apply", "-f", shop)
        assert res.stdout.splitlines() == [
            "namespace/shop created",
            "deployment.apps/shop created",
            "service/shop created",
        ], res
        res = lab.kubectl("rollout", "status", "deployment/shop", "-n", "shop", "--timeout=60s", timeout=90)
        assert 'deployment "shop" successfully rolled out' in res.stdout
        names = running_names(lab, "app=shop", "shop")
        assert len(names) == 2
        code, out = curl(lab, "http://shop.shop/hostname")
        assert code == 0 and out in names, (code, out)

        res = lab.kubectl("apply", "-f", deny)
        assert res.stdout.strip() == "networkpolicy.networking.k8s.io/default-deny-ingress created"
        row = table(lab.kubectl("get", "networkpolicy", "-n", "shop").stdout)[0]
        assert (row["NAME"], row["POD-SELECTOR"]) == ("default-deny-ingress", "<none>"), row
        # the connection that worked is now dropped (curl times out: 28) or refused (7)
        code, out = wait_for(
            "the deny-all policy to block client -> shop",
            lambda: (lambda r: r if r[0] != 0 else None)(curl(lab, "http://shop.shop/hostname", timeout=2)),
            30,
            every=0.5,
        )
        assert code in (7, 28) and out == "", (code, out)
        assert curl(lab, "http://web/hostname")[0] == 0  # other namespaces are not affected

        res = lab.kubectl("delete", "-f", deny)
        assert 'networkpolicy.networking.k8s.io "default-deny-ingress" deleted' in res.stdout
        code, out = wait_for(
            "client -> shop to work again",
            lambda: (lambda r: r if r[0] == 0 else None)(curl(lab, "http://shop.shop/hostname", timeout=2)),
            30,
            every=0.5,
        )
        assert out in names
    finally:
        lab.kubectl("delete", "-f", deny, "--ignore-not-found", timeout=90)
        lab.kubectl("delete", "-f", shop, "--ignore-not-found", timeout=120)


CART = """\
apiVersion: v1
kind: Namespace
metadata:
  name: cart
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: cart
  namespace: cart
  labels:
    app: cart
spec:
  replicas: {replicas}
  selector:
    matchLabels:
      app: cart
  template:
    metadata:
      labels:
        app: cart
    spec:
      containers:
      - name: netexec
        image: agnhost
        args: ["netexec", "--http-port=8080"]
        env:
        - name: GREETING
          value: {greeting}
---
apiVersion: v1
kind: Service
metadata:
  name: cart
  namespace: cart
spec:
  selector:
    app: cart
  ports:
  - port: 80
    targetPort: 8080
"""


def test_a_second_apply_after_editing_the_file_changes_exactly_that(kubectl_lab):
    lab = kubectl_lab

    def apply(**edit):
        doc = CART.replace("{replicas}", str(edit.get("replicas", 2))).replace("{greeting}", edit.get("greeting", "hi"))
        if edit.get("tier"):
            doc = doc.replace(
                "  labels:\n    app: cart\nspec:", "  labels:\n    app: cart\n    tier: %s\nspec:" % edit["tier"]
            )
        return lab.kubectl("apply", "-f", lab.write("cart.yaml", doc)).stdout.splitlines()

    def pods():
        items = lab.kjson("get", "pods", "-n", "cart", "-l", "app=cart")["items"]
        return {p["metadata"]["name"]: p for p in items}

    def settled(n):
        return lambda: (lambda ps: ps if len(ps) == n and all(ready(p) for p in ps.values()) else None)(pods())

    try:
        assert apply() == ["namespace/cart created", "deployment.apps/cart created", "service/cart created"]
        first = wait_for("2 cart pods Ready", settled(2), 60, every=0.3)

        # replicas 2 -> 3: one more pod, the two keep running
        assert apply(replicas=3) == [
            "namespace/cart unchanged",
            "deployment.apps/cart configured",
            "service/cart unchanged",
        ]
        second = wait_for("3 cart pods Ready", settled(3), 60, every=0.3)
        assert set(first) < set(second)
        assert lab.kjson("get", "deployment", "cart", "-n", "cart")["spec"]["replicas"] == 3

        # a label on the Deployment: the Deployment has it, the pods are the same
        out = apply(replicas=3, tier="front")
        assert out[1] == "deployment.apps/cart configured", out
        row = table(lab.kubectl("get", "deployment", "cart", "-n", "cart", "--show-labels").stdout)[0]
        assert sorted(row["LABELS"].split(",")) == ["app=cart", "tier=front"], row
        assert set(pods()) == set(second) and all("tier" not in p["metadata"]["labels"] for p in pods().values())

        # an env var in the pod template: a rollout replaces every pod
        out = apply(replicas=3, tier="front", greeting="bye")
        assert out[1] == "deployment.apps/cart configured", out
        lab.kubectl("rollout", "status", "deployment/cart", "-n", "cart", "--timeout=60s", timeout=90)

        def three_new():
            ps = settled(3)()  # None while the rollout is under way
            return ps if ps and not set(ps) & set(second) else None

        third = wait_for("3 new cart pods", three_new, 60)
        for p in third.values():
            assert p["spec"]["containers"][0]["env"] == [{"name": "GREETING", "value": "bye"}]
        printed = lab.kubectl("exec", "-n", "cart", sorted(third)[0], "--", "printenv", "GREETING").stdout
        assert printed == "bye\n"  # what the new containers run with
        deployment = lab.kjson("get", "deployment", "cart", "-n", "cart")
        assert deployment["spec"]["replicas"] == 3 and deployment["metadata"]["labels"]["tier"] == "front"

        # the same file again: nothing changes
        assert apply(replicas=3, tier="front", greeting="bye") == [
            "namespace/cart unchanged",
            "deployment.apps/cart unchanged",
            "service/cart unchanged",
        ]
        assert set(pods()) == set(third)
    finally:
        lab.kubectl("delete", "-f", os.path.join(lab.work, "cart.yaml"), "--ignore-not-found", timeout=120)


SSA = """\
apiVersion: v1
kind: Namespace
metadata:
  name: ssa
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: ssa
  namespace: ssa
spec:
  replicas: {replicas}
  selector:
    matchLabels:
      app: ssa
  template:
    metadata:
      labels:
        app: ssa
    spec:
      containers:
      - name: pause
        image: agnhost
        args: ["pause"]
"""


def test_apply_server_side(kubectl_lab):
    lab = kubectl_lab

    def write(replicas):
        return lab.write("ssa.yaml", SSA.replace("{replicas}", str(replicas)))

    try:
        res = lab.kubectl("apply", "--server-side", "-f", write(1))
        assert res.stdout.splitlines() == ["namespace/ssa serverside-applied", "deployment.apps/ssa serverside-applied"]
        d = lab.kjson("get", "deployment", "ssa", "-n", "ssa", "--show-managed-fields")
        assert any(m["manager"] == "kubectl" and m["operation"] == "Apply" for m in d["metadata"]["managedFields"]), d[
            "metadata"
        ]["managedFields"]
        assert "kubectl.kubernetes.io/last-applied-configuration" not in (d["metadata"].get("annotations") or {})
        wait_for("1 ssa pod", lambda: len(running_names(lab, "app=ssa", "ssa")) == 1, 60, every=0.3)

        lab.kubectl("apply", "--server-side", "-f", write(2))
        wait_for("2 ssa pods", lambda: len(running_names(lab, "app=ssa", "ssa")) == 2, 60, every=0.3)

        # someone else scales it: the next apply of replicas conflicts ...
        lab.kubectl("scale", "deployment/ssa", "-n", "ssa", "--replicas=3")
        res = lab.kubectl("apply", "--server-side", "-f", write(2), check=False)
        assert res.returncode == 1 and "Apply failed with 1 conflict" in res.stderr, res
        assert ".spec.replicas" in res.stderr and "--force-conflicts" in res.stderr
        assert lab.kjson("get", "deployment", "ssa", "-n", "ssa")["spec"]["replicas"] == 3
        # ... until it forces them
        lab.kubectl("apply", "--server-side", "--force-conflicts", "-f", write(2))
        assert lab.kjson("get", "deployment", "ssa", "-n", "ssa")["spec"]["replicas"] == 2
        wait_for("2 ssa pods again", lambda: len(pod_names(lab, "app=ssa", "ssa")) == 2, 60, every=0.3)
    finally:
        lab.kubectl("delete", "-f", os.path.join(lab.work, "ssa.yaml"), "--ignore-not-found", timeout=120)


SCALER = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: scaler
spec:
  replicas: 1
  selector:
    matchLabels:
      app: scaler
  template:
    metadata:
      labels:
        app: scaler
    spec:
      containers:
      - name: netexec
        image: agnhost
        args: ["netexec", "--http-port=8080"]
"""


def test_scale_and_rollout_status(kubectl_lab):
    lab = kubectl_lab
    path = lab.write("scaler.yaml", SCALER)
    try:
        lab.kubectl("apply", "-f", path)
        res = lab.kubectl("rollout", "status", "deployment/scaler", "--timeout=60s", timeout=90)
        assert res.stdout.strip().endswith('deployment "scaler" successfully rolled out'), res.stdout
        one = running_names(lab, "app=scaler")
        assert len(one) == 1

        res = lab.kubectl("scale", "deployment/scaler", "--replicas=4")
        assert res.stdout.strip() == "deployment.apps/scaler scaled"
        lab.kubectl("rollout", "status", "deployment/scaler", "--timeout=60s", timeout=90)
        four = wait_for(
            "4 scaler pods Running",
            lambda: (lambda n: n if len(n) == 4 else None)(running_names(lab, "app=scaler")),
            30,
        )
        assert set(one) < set(four)
        rows = table(lab.kubectl("get", "deployment", "scaler").stdout)
        assert (rows[0]["READY"], rows[0]["UP-TO-DATE"], rows[0]["AVAILABLE"]) == ("4/4", "4", "4"), rows

        lab.kubectl("scale", "deployment", "scaler", "--replicas=1")
        left = wait_for(
            "scaler pods gone down to 1",
            lambda: (lambda n: n if len(n) == 1 else None)(pod_names(lab, "app=scaler")),
            60,
        )
        assert set(left) < set(four)
        rows = table(lab.kubectl("get", "deployment", "scaler").stdout)
        assert rows[0]["READY"] == "1/1", rows
    finally:
        lab.kubectl("delete", "-f", path, "--ignore-not-found", timeout=120)


def test_explain_reads_the_served_schemas(kubectl_lab):
    lab = kubectl_lab
    out = lab.kubectl("explain", "deployment.spec.replicas").stdout
    assert re.search(r"^KIND:\s+Deployment$", out, re.M) and re.search(r"^VERSION:\s+v1$", out, re.M), out
    assert "FIELD: replicas <integer>" in out and "DESCRIPTION:" in out, out
    out = lab.kubectl("explain", "pods.spec.containers.ports").stdout
    assert "containerPort\t<integer>" in out.replace("  ", "\t") or re.search(r"containerPort\s+<integer>", out), out


def test_label_a_pod_into_and_out_of_a_service(kubectl_lab):
    lab = kubectl_lab
    res = lab.kubectl("label", "pod", "client", "tutorial=yes")
    assert res.stdout.strip() == "pod/client labeled"
    assert lab.kubectl("get", "pods", "-l", "tutorial=yes", "-o", "name").stdout.split() == ["pod/client"]
    again = lab.kubectl("label", "pod", "client", "tutorial=no", check=False)
    assert again.returncode == 1 and "--overwrite is false" in again.stderr
    lab.kubectl("label", "pod", "client", "tutorial=no", "--overwrite")
    assert lab.kjson("get", "pod", "client")["metadata"]["labels"] == {"app": "client", "tutorial": "no"}
    assert lab.kubectl("label", "pod", "client", "tutorial-").stdout.strip() == "pod/client unlabeled"
    assert lab.kjson("get", "pod", "client")["metadata"]["labels"] == {"app": "client"}

    # a label is what puts a pod behind a Service (web's targetPort is the
    # port named http, so the pod names its port)
    container = {
        "name": "extra",
        "image": "agnhost",
        "args": ["netexec", "--http-port=8080"],
        "ports": [{"name": "http", "containerPort": 8080}],
    }
    lab.kubectl("run", "extra", "--image=agnhost", "--overrides", json.dumps({"spec": {"containers": [container]}}))
    try:
        ip = wait_ready(lab, "extra")["status"]["podIP"]

        def web_endpoints():
            out = lab.kubectl("get", "endpointslices", "-l", "kubernetes.io/service-name=web", "-o", "json").stdout
            return {a for s in json.loads(out)["items"] for e in s.get("endpoints") or [] for a in e["addresses"]}

        assert ip not in web_endpoints()
        lab.kubectl("label", "pod", "extra", "app=web")
        wait_for("extra behind Service web", lambda: ip in web_endpoints(), 20, every=0.3)
        lab.kubectl("label", "pod", "extra", "app-")
        wait_for("extra out of Service web", lambda: ip not in web_endpoints(), 20, every=0.3)
    finally:
        lab.kubectl("delete", "pod", "extra", "--ignore-not-found")


def test_delete_a_pod_removes_it_and_its_network_namespace(kubectl_lab):
    lab = kubectl_lab
    lab.kubectl("run", "victim", "--image=agnhost", "--", "pause")
    pod = wait_ready(lab, "victim")
    netns = netns_of(lab, pod)
    assert os.path.exists("/run/netns/" + netns)
    res = lab.kubectl("delete", "pod", "victim", timeout=90)
    assert res.returncode == 0 and res.stdout.strip() == 'pod "victim" deleted', res
    # kubectl delete waits until the pod is gone: by then so is its network
    assert "victim" not in [r["NAME"] for r in table(lab.kubectl("get", "pods").stdout)]
    gone = lab.kubectl("get", "pod", "victim", check=False)
    assert gone.returncode == 1 and 'pods "victim" not found' in gone.stderr
    assert not os.path.exists("/run/netns/" + netns), netns


def test_get_pods_watch_sees_a_new_pod_go_from_pending_to_running(kubectl_lab, background):
    lab = kubectl_lab
    w = background([KUBECTL, "get", "pods", "-w"], lab.kenv, lab.work)
    w.wait_line("the table's header", lambda x: x.split()[:2] == ["NAME", "READY"], 15)
    w.wait_line("the client pod", lambda x: x.split()[:1] == ["client"], 15)
    lab.kubectl("run", "watched", "--image=agnhost", "--", "pause")
    try:
        w.wait_line("watched Running", lambda x: x.split()[:3] == ["watched", "1/1", "Running"], 60)
        mine = [x.split() for x in w.lines if x.split()[:1] == ["watched"]]
        statuses = [cols[2] for cols in mine]
        assert statuses[0] == "Pending" and mine[0][1] == "0/1", mine
        assert statuses.index("Running") > 0, mine
    finally:
        lab.kubectl("delete", "pod", "watched", "--ignore-not-found")


def test_port_forward_to_a_pod_and_to_a_service(kubectl_lab, background):
    lab = kubectl_lab
    web = web_pods(lab)[0]["metadata"]["name"]
    names = {p["metadata"]["name"] for p in web_pods(lab)}

    def get(port, path):
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=10) as r:
            return r.status, r.read().decode()

    port = free_port()
    pf = background([KUBECTL, "port-forward", "pod/" + web, "%d:8080" % port], lab.kenv, lab.work)
    pf.wait_line("the pod forward", lambda x: x.startswith("Forwarding from 127.0.0.1:%d -> 8080" % port), 20)
    assert get(port, "/hostname") == (200, web)
    assert get(port, "/echo?msg=again") == (200, "again")  # a second connection through the same forward

    svc_port = free_port()
    sf = background([KUBECTL, "port-forward", "svc/web", "%d:80" % svc_port], lab.kenv, lab.work)
    sf.wait_line("the service forward", lambda x: x.startswith("Forwarding from 127.0.0.1:%d -> 8080" % svc_port), 20)
    status, body = get(svc_port, "/hostname")
    assert status == 200 and body in names, body


def test_kubectl_run_agnhost_netexec(kubectl_lab):
    lab = kubectl_lab
    res = lab.kubectl("run", "tut", "--image=agnhost", "--", "netexec", "--http-port=8080")
    try:
        assert res.stdout.strip() == "pod/tut created"
        pod = wait_ready(lab, "tut")
        assert pod["spec"]["containers"][0]["args"] == ["netexec", "--http-port=8080"]
        assert pod["metadata"]["labels"] == {"run": "tut"}
        code, out = curl(lab, "http://%s:8080/hostname" % pod["status"]["podIP"])
        assert (code, out) == (0, "tut")
    finally:
        lab.kubectl("delete", "pod", "tut", "--ignore-not-found")


def test_kubectl_create_deployment_and_expose_as_the_hello_node_tutorial(kubectl_lab):
    """kubernetes.io's "Hello Minikube", with the lab in place of minikube."""
    lab = kubectl_lab
    try:
        res = lab.kubectl(
            "create",
            "deployment",
            "hello-node",
            "--image=" + AGNHOST,
            "--",
            "/agnhost",
            "netexec",
            "--http-port=8080",
        )
        assert res.stdout.strip() == "deployment.apps/hello-node created", res
        lab.kubectl("rollout", "status", "deployment/hello-node", "--timeout=60s", timeout=90)
        row = table(lab.kubectl("get", "deployments", "hello-node").stdout)[0]
        assert row["READY"] == "1/1", row
        (pod,) = pod_names(lab, "app=hello-node")
        res = lab.kubectl("expose", "deployment", "hello-node", "--type=LoadBalancer", "--port=8080")
        assert res.stdout.strip() == "service/hello-node exposed", res

        def lb_row():
            r = table(lab.kubectl("get", "services", "hello-node").stdout)[0]
            return r if r["EXTERNAL-IP"] not in ("<pending>", "<none>") else None

        row = wait_for("a LoadBalancer IP", lb_row, 20, every=0.3)
        assert row["TYPE"] == "LoadBalancer" and ipaddress.ip_address(row["EXTERNAL-IP"]) in ipaddress.ip_network(
            "192.168.200.240/28"
        ), row
        assert re.fullmatch(r"8080:3\d{4}/TCP", row["PORT(S)"]), row
        assert curl(lab, "http://hello-node:8080/hostname") == (0, pod)
        external = subprocess.run(
            nsenter("pn-%s-ext" % lab.name)
            + ["curl", "-sS", "-m", "5", "http://%s:8080/hostname" % row["EXTERNAL-IP"]],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert external.stdout == pod, external  # from the lab's "internet"

        res = lab.kubectl("create", "namespace", "hello")
        assert res.stdout.strip() == "namespace/hello created"
        assert "hello" in [r["NAME"] for r in table(lab.kubectl("get", "namespaces").stdout)]
    finally:
        lab.kubectl("delete", "service", "hello-node", "--ignore-not-found")
        lab.kubectl("delete", "deployment", "hello-node", "--ignore-not-found", timeout=90)
        lab.kubectl("delete", "namespace", "hello", "--ignore-not-found", timeout=90)
    # deleting the Deployment deletes its pods (ownerReferences)
    wait_for("hello-node's pods gone", lambda: pod_names(lab, "app=hello-node") == [], 30, every=0.3)


# ---- what is refused ----------------------------------------------------------

BAD_PORT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: broken
spec:
  replicas: 1
  selector:
    matchLabels:
      app: broken
  template:
    metadata:
      labels:
        app: broken
    spec:
      containers:
      - name: netexec
        image: agnhost
        args: ["netexec", "--http-port=8080"]
        ports:
        - containerPort: 70000
"""


def test_a_bad_manifest_is_refused_with_the_field_path_and_creates_nothing(kubectl_lab):
    lab = kubectl_lab
    before = lab.kubectl("get", "pods", "-A", "-o", "name").stdout
    res = lab.kubectl("apply", "-f", lab.write("broken.yaml", BAD_PORT), check=False)
    assert res.returncode == 1 and res.stdout == "", res
    assert 'The Deployment "broken" is invalid' in res.stderr, res.stderr
    assert "spec.template.spec.containers[0].ports[0].containerPort" in res.stderr, res.stderr
    gone = lab.kubectl("get", "deployment", "broken", check=False)
    assert gone.returncode == 1 and 'deployments.apps "broken" not found' in gone.stderr
    assert lab.kubectl("get", "pods", "-A", "-o", "name").stdout == before


def test_an_unknown_field_is_refused_not_ignored(kubectl_lab):
    lab = kubectl_lab
    typo = BAD_PORT.replace("containerPort: 70000", "containerPort: 8080").replace("replicas: 1", "replicaz: 1")
    res = lab.kubectl("apply", "-f", lab.write("typo.yaml", typo), check=False)
    assert res.returncode == 1, res
    assert 'unknown field "spec.replicaz"' in res.stderr, res.stderr
    assert lab.kubectl("get", "deployment", "broken", check=False).returncode == 1


def _kubeconfig_with(lab, name: str, *set_credentials: str) -> str:
    """A copy of the lab's kubeconfig whose user has other credentials."""
    path = os.path.join(lab.work, name)
    with open(lab.kubeconfig) as src, open(path, "w") as dst:
        dst.write(src.read())
    os.chmod(path, 0o600)
    lab.kubectl("config", "set-credentials", "intruder", *set_credentials, kubeconfig=path)
    lab.kubectl("config", "set-context", "--current", "--user=intruder", kubeconfig=path)
    return path


def test_a_wrong_token_is_unauthorized(kubectl_lab):
    lab = kubectl_lab
    path = _kubeconfig_with(lab, "wrong-token.kubeconfig", "--token=not-a-token-of-this-lab")
    res = lab.kubectl("get", "pods", kubeconfig=path, check=False)
    assert res.returncode == 1 and res.stdout == ""
    assert res.stderr.strip().splitlines()[-1] == "error: You must be logged in to the server (Unauthorized)", (
        res.stderr
    )


def test_a_client_certificate_from_another_ca_is_unauthorized(kubectl_lab):
    from podnet.apiserver.certs import Pki

    lab = kubectl_lab
    other = Pki(os.path.join(lab.work, "other-pki"))
    other.ensure_ca()
    cert, key = other.issue("admin", "kubernetes-admin", orgs=("system:masters",))
    path = _kubeconfig_with(
        lab, "other-ca.kubeconfig", "--client-certificate=" + cert, "--client-key=" + key, "--embed-certs"
    )
    res = lab.kubectl("get", "pods", kubeconfig=path, check=False)
    assert res.returncode == 1 and res.stdout == ""
    assert res.stderr.strip().splitlines()[-1] == "error: You must be logged in to the server (Unauthorized)", (
        res.stderr
    )
    # the same certificate signed by the lab's CA is let in: the CA is what was refused
    own, own_key = Pki(os.path.dirname(lab.ca_cert)).issue("admin2", "kubernetes-admin", orgs=("system:masters",))
    ok = _kubeconfig_with(
        lab, "own-ca.kubeconfig", "--client-certificate=" + own, "--client-key=" + own_key, "--embed-certs"
    )
    assert lab.kubectl("get", "pods", kubeconfig=ok).returncode == 0


def test_anonymous_https_gets_401_and_plain_http_gets_no_api(kubectl_lab):
    lab = kubectl_lab
    url = "127.0.0.1:%d/api/v1/namespaces/default/pods" % lab.port
    res = subprocess.run(
        ["curl", "-sS", "-m", "10", "--cacert", lab.ca_cert, "-w", "\n%{http_code}", "https://" + url],
        capture_output=True,
        text=True,
        timeout=30,
    )
    body, code = res.stdout.rsplit("\n", 1)
    assert code == "401", res
    status = json.loads(body)
    assert (status["kind"], status["reason"], status["code"]) == ("Status", "Unauthorized", 401), status

    res = subprocess.run(
        ["curl", "-sS", "-m", "10", "-w", "\n%{http_code}", "http://" + url], capture_output=True, text=True, timeout=30
    )
    body, code = res.stdout.rsplit("\n", 1)
    # no answer at all (curl fails), or at most Go's "400 client sent an HTTP request to an HTTPS server"
    assert (res.returncode != 0 and code == "000") or code == "400", res
    assert '"items"' not in body and "client" not in body.replace("Client sent", "")
