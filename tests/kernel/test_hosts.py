"""Acceptance, "hosts": podnet installed on hosts that its lab did not build.

Three hosts on one underlay (tests/kernel/hosts_sim.py: each a netns with a
private mount namespace, its own /etc/cni/net.d, /opt/cni/bin, /var/lib/cni,
/run). `podnet server` runs on one, the two others join it and run their
agents with the README's own commands (read from the README, so the
documentation is what is tested), its state in a 3-member etcd cluster on
three more such hosts. Then, in each routing mode: pods on the two
hosts reach each other, a Service answers from the pods of both hosts, and a
NetworkPolicy holds traffic across them. Bad joins (wrong token, expired
token, wrong CA hash) are refused and change nothing.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from tests.kernel.hosts_sim import Underlay, start_etcd

pytestmark = pytest.mark.skipif(__import__("os").geteuid() != 0, reason="needs root (namespaces)")
SERVER_IP = "192.168.211.1"
ADMIN = "/var/lib/podnet-server/admin.kubeconfig"


def readme_commands() -> dict[str, str]:
    """The README's "Real hosts" commands, by their first words."""
    with open("README.md") as f:
        text = f.read()
    section = text.split("## Real hosts", 1)[1].split("\n## ", 1)[0]
    cmds = {}
    for block in re.findall(r"```sh\n(.*?)```", section, re.S):
        for line in block.splitlines():
            line = line.strip()
            if line.startswith("podnet server ") and "token" not in line:
                cmds["server"] = line
            elif line.startswith("podnet agent --kubeconfig"):
                cmds["agent"] = line
    return cmds


def wait(what, fn, timeout=90.0):  # type: ignore[no-untyped-def]
    deadline = time.time() + timeout
    while True:
        got = fn()
        if got:
            return got
        assert time.time() < deadline, "no %s within %d s" % (what, timeout)
        time.sleep(0.5)


def kubectl(host, args, check=True):  # type: ignore[no-untyped-def]
    return host.run("kubectl --kubeconfig %s %s" % (ADMIN, args), check=check)


def pods(srv):  # type: ignore[no-untyped-def]
    return json.loads(kubectl(srv, "get pods -o json").stdout)["items"]


def dial(host, via_ip, target, port, tries=1):  # type: ignore[no-untyped-def]
    """agnhost /dial: the pod at via_ip (reached from its own host) asks target:port for its hostname."""
    url = "http://%s:8080/dial?request=hostname&protocol=http&host=%s&port=%d&tries=%d" % (via_ip, target, port, tries)
    r = host.run("curl -s -m 20 '%s'" % url, check=False)
    try:
        return json.loads(r.stdout)
    except ValueError:
        return {"responses": [], "errors": [r.stdout + r.stderr]}


@pytest.mark.parametrize("mode", ["vxlan", "host-gw", "bgp"])
def test_hosts_join_and_talk(mode, tmp_path):
    cmds = readme_commands()
    assert "server" in cmds and "agent" in cmds, "README's Real hosts section lacks the server or agent command"
    net = Underlay("hx%s" % mode.replace("-", "")[:3])
    try:
        net.create()
        srv = net.host("srv", 1)
        h1, h2 = net.host("h1", 11), net.host("h2", 12)
        # the server's state in a 3-member etcd cluster on three more hosts
        store = start_etcd([net.host("e%d" % k, 20 + k) for k in (1, 2, 3)], str(tmp_path))
        server = cmds["server"].replace("ADDR", SERVER_IP)
        server = re.sub(r"--store \S+", "--store " + store, server)
        assert store in server, server
        srv.start(server, str(tmp_path / "server.log"))
        join = wait(
            "join command", lambda: srv.run("cat /var/lib/podnet-server/join-command", check=False).stdout.strip()
        )
        assert join.startswith("podnet agent join https://%s:6443 --token " % SERVER_IP), join
        wait("API server", lambda: srv.run("curl -sk https://%s:6443/healthz" % SERVER_IP, check=False).stdout == "ok")

        # bad input: each join refused with its reason, nothing written, no identity made
        token = re.search(r"--token (\S+)", join).group(1)
        bad_token = join.replace(token, token.split(".")[0] + ".zzzzzzzzzzzzzzzz")
        r = h1.run(bad_token, check=False)
        assert r.returncode == 1 and "is not valid" in r.stderr, r.stderr
        bad_hash = re.sub(r"sha256:[0-9a-f]{64}", "sha256:" + "0" * 64, join)
        r = h1.run(bad_hash, check=False)
        assert r.returncode == 1 and "refusing to trust it" in r.stderr, r.stderr
        short = srv.run("podnet server token create --data-dir /var/lib/podnet-server --ttl 1s").stdout.strip()
        time.sleep(1.5)  # the token's whole life
        r = h1.run(short, check=False)
        assert r.returncode == 1 and "expired at" in r.stderr, r.stderr
        assert h1.run("test -e /var/lib/podnet/node.kubeconfig", check=False).returncode == 1
        assert "system:node:h1" not in srv.run("cat /var/lib/podnet-server/pki/tokens.yaml").stdout

        # the README's join and agent commands on both hosts
        for h in (h1, h2):
            # the node's name: the host's hostname, as on a real machine
            h.run(join)
            h.start(cmds["agent"] + " --routing " + mode, str(tmp_path / (h.name + ".log")))
        wait("2 Ready nodes", lambda: kubectl(srv, "get nodes", check=False).stdout.count(" Ready") == 2)
        cni = "test -x /opt/cni/bin/podnet && test -s /etc/cni/net.d/10-podnet.conflist"
        for h in (h1, h2):  # installed where a CRI runtime looks
            wait("CNI on " + h.name, lambda h=h: h.run(cni, check=False).returncode == 0, 60)

        srv.run("kubectl --kubeconfig %s apply -f %s" % (ADMIN, __import__("os").path.abspath("examples/lab.yaml")))

        def ready(p):  # type: ignore[no-untyped-def]
            conds = p["status"].get("conditions") or []
            return p["status"].get("podIP") and any(c["type"] == "Ready" and c["status"] == "True" for c in conds)

        def running():  # type: ignore[no-untyped-def]
            # Ready, so every one is a Service endpoint on both hosts
            ok = [p for p in pods(srv) if p["metadata"]["labels"].get("app") == "web" and ready(p)]
            hosts = {p["spec"]["nodeName"] for p in ok}
            return ok if len(ok) == 3 and hosts == {"h1", "h2"} else None

        web = wait("3 Ready web pods on both hosts", running, 120)
        by_host = {h: [p for p in web if p["spec"]["nodeName"] == h] for h in ("h1", "h2")}
        a, b = by_host["h1"][0], by_host["h2"][0]
        # pod on h1 -> pod on h2, and back
        got = dial(h1, a["status"]["podIP"], b["status"]["podIP"], 8080)
        assert got["responses"] == [b["metadata"]["name"]], got
        got = dial(h2, b["status"]["podIP"], a["status"]["podIP"], 8080)
        assert got["responses"] == [a["metadata"]["name"]], got

        # the Service from a pod on h1 answers from h2's pods too
        svc = json.loads(kubectl(srv, "get service web -o json").stdout)["spec"]["clusterIP"]
        remote = {p["metadata"]["name"] for p in by_host["h2"]}
        # (each /dial a new connection; h1's proxy may take a moment to add the endpoints of h2)
        wait(
            "the Service to answer from h2's pods",
            lambda: set(dial(h1, a["status"]["podIP"], svc, 80, 10)["responses"]) & remote,
            60,
        )

        # cluster DNS (podnet server's own DNS server behind kube-dns): a pod on h2 finds the Service by name
        name = "web.default.svc.cluster.local"
        wait("DNS for the Service", lambda: dial(h2, b["status"]["podIP"], name, 80)["responses"], 60)

        if mode == "vxlan":
            # a host whose pods another kubelet runs: `--no-kubelet` joins, installs
            # the CNI plugins and conflist, and routes and load-balances for it
            h3 = net.host("h3", 13)
            h3.run(join + " --node h3")  # its name given (--node), not the hostname
            h3.run("hostname not-h3")
            h3.start(cmds["agent"] + " --node h3 --no-kubelet", str(tmp_path / "h3.log"))
            wait("h3 Ready", lambda: " Ready " in kubectl(srv, "get node h3", check=False).stdout)
            wait(
                "h3's conflist",
                lambda: h3.run("test -s /etc/cni/net.d/10-podnet.conflist", check=False).returncode == 0,
            )
            h3.run("test -x /opt/cni/bin/podnet-ipam")
            url = "http://%s:8080/hostname" % b["status"]["podIP"]
            wait(
                "h3 -> a pod on h2", lambda: h3.run("curl -s -m 5 " + url, check=False).stdout == b["metadata"]["name"]
            )
            names = {p["metadata"]["name"] for p in web}
            wait(
                "h3 -> the Service",
                lambda: h3.run("curl -s -m 5 http://%s/hostname" % svc, check=False).stdout in names,
            )

        # a NetworkPolicy on h2's pods: web only from app=client; a web pod on h1 is held
        policy = tmp_path / "policy.yaml"
        policy.write_text(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web-from-client}\n"
            "spec:\n  podSelector: {matchLabels: {app: web}}\n  policyTypes: [Ingress]\n"
            "  ingress:\n  - from:\n    - podSelector: {matchLabels: {app: client}}\n"
        )
        srv.run("kubectl --kubeconfig %s apply -f %s" % (ADMIN, policy))

        def held():  # type: ignore[no-untyped-def]
            got = dial(h1, a["status"]["podIP"], b["status"]["podIP"], 8080)
            return not got["responses"]

        wait("the policy to hold h1 -> h2", held, 60)
        client = next(p for p in pods(srv) if p["metadata"]["name"] == "client")
        assert client["status"].get("podIP"), client["status"]
        # the client pod (allowed) still reaches h2's web pod: only the policy's peers pass
        host_of_client = h1 if client["spec"]["nodeName"] == "h1" else h2
        url = "http://%s:8080/hostname" % b["status"]["podIP"]
        r = host_of_client.run(
            "ip netns exec pn-host-p-%s curl -s -m 10 %s" % (client["metadata"]["uid"].replace("-", "")[:10], url),
            check=False,
        )
        assert r.stdout == b["metadata"]["name"], (r.stdout, r.stderr)
    finally:
        net.destroy()
