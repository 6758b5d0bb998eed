"""A lab's control plane: its CA and credentials, its API server, and the
kubeconfig of each component.

The API server runs in the root namespace (it is recorded and stopped like
the lab's other processes) and listens twice without adding any address
to the root namespace: on 127.0.0.1:<port> there, for the user's kubectl
(each lab gets its own port), and on 192.168.200.1:6443 inside the lab's
underlay namespace, where the node agents and pods reach it as nodes reach
a control plane host. The underlay bridge carries that address.

Credentials: the user's kubeconfig holds a client certificate of the group
system:masters; every component has a bearer token of its own.
"""

from __future__ import annotations

import os
import socket
import sys
import time

from podnet.apiserver.certs import Pki, kubeconfig, write_kubeconfig
from podnet.lab import topology as topo
from podnet.lab.topology import LabError

INTERNAL_IP = topo.CONTROL_PLANE_IP
INTERNAL_PORT = 6443
FIRST_PORT = 16443
SERVICE_IP = "10.96.0.1"


def pki(lab: str) -> Pki:
    return Pki(os.path.join(topo.state_dir(lab), "pki"))


def kubeconfig_path(lab: str) -> str:
    return os.path.join(topo.state_dir(lab), "kubeconfig")


def component_kubeconfig(lab: str, who: str) -> str:
    return os.path.join(topo.state_dir(lab), "kubeconfigs", who + ".kubeconfig")


def internal_server() -> str:
    return "https://%s:%d" % (INTERNAL_IP, INTERNAL_PORT)


def _free_port(taken: set[int]) -> int:
    for port in range(FIRST_PORT, FIRST_PORT + 1000):
        if port in taken:
            continue
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    raise LabError("no free port for the API server on 127.0.0.1 (%d-%d)" % (FIRST_PORT, FIRST_PORT + 999))


def _any_port() -> int:
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
    finally:
        s.close()


def api_port(lab: str, doc: dict) -> int:
    """The lab's own port on 127.0.0.1, chosen once and kept in lab.json."""
    if doc.get("api", {}).get("port"):
        return int(doc["api"]["port"])
    taken = set()
    for other in topo.existing_labs():
        if other != lab:
            try:
                taken.add(int(topo.load(other).get("api", {}).get("port") or 0))
            except (LabError, ValueError):
                pass
    port = _free_port(taken)
    doc["api"] = {"port": port, "server": "https://127.0.0.1:%d" % port, "internal": internal_server()}
    topo.save(lab, doc)
    return port


def ensure_credentials(lab: str, doc: dict) -> None:
    """CA, serving certificate, the admin kubeconfig and the controllers'."""
    p = pki(lab)
    fresh = not os.path.exists(p.ca_cert)
    p.ensure_ca()
    if fresh or not os.path.exists(p.path("apiserver.crt")):
        p.issue(
            "apiserver",
            "kube-apiserver",
            server_names=(
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ),
            server_ips=("127.0.0.1", INTERNAL_IP, SERVICE_IP),
        )
    port = api_port(lab, doc)
    if fresh or not os.path.exists(kubeconfig_path(lab)):
        cert, key = p.issue("admin", "kubernetes-admin", orgs=("system:masters",))
        write_kubeconfig(
            kubeconfig_path(lab),
            kubeconfig("https://127.0.0.1:%d" % port, p.ca_cert, "admin", cert=cert, key=key, cluster="podnet-" + lab),
        )
    token_kubeconfig(lab, "controllers", "system:kube-controller-manager", local=True)
    token_kubeconfig(lab, "coredns", "system:serviceaccount:kube-system:coredns")


def token_kubeconfig(lab: str, who: str, user: str, groups: tuple[str, ...] = (), local: bool = False) -> str:
    """A kubeconfig with `user`'s token; `local`: for a process in the root
    namespace (127.0.0.1:<port>), else for one inside the lab (the underlay)."""
    path = component_kubeconfig(lab, who)
    if not os.path.exists(path):
        p = pki(lab)
        doc = topo.load(lab)
        server = doc["api"]["server"] if local else internal_server()
        write_kubeconfig(
            path, kubeconfig(server, p.ca_cert, user, token=p.token_for(user, groups), cluster="podnet-" + lab)
        )
    return path


def node_kubeconfig(lab: str, node: str) -> str:
    return token_kubeconfig(lab, "node-" + node, "system:node:" + node, ("system:nodes",))


def apiserver_running(lab: str) -> bool:
    return topo.alive(lab, "apiserver")


def start_apiserver(lab: str, doc: dict, spawn, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    """Start the API server (unless it runs) and wait until it answers. A
    port taken between choosing it and binding it (another lab coming up at
    the same moment) is answered with a new port and new kubeconfigs."""
    for _attempt in range(3):
        started = not topo.alive(lab, "apiserver")
        if _start_once(lab, doc, spawn, timeout):
            return
        if not started:  # one found running exited as we waited (a SIGTERM a moment ago): start it again
            continue
        log = os.path.join(topo.state_dir(lab), "logs", "apiserver.log")
        with open(log, errors="replace") as f:
            taken = "Address already in use" in f.read()[-2000:]
        if not taken:
            raise LabError("the API server exited; see %s" % log)
        doc.pop("api", None)
        for path in (kubeconfig_path(lab), component_kubeconfig(lab, "controllers")):
            if os.path.exists(path):
                os.unlink(path)
        ensure_credentials(lab, doc)
    raise LabError("no free port for the API server after 3 tries")


def _start_once(lab: str, doc: dict, spawn, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    port = api_port(lab, doc)
    store = doc.get("store") or "sqlite://" + os.path.join(topo.state_dir(lab), "store.db")
    argv = [
        sys.executable,
        "-m",
        "podnet.apiserver.server",
        "--store",
        store,
        "--pki",
        pki(lab).dir,
        "--listen",
        "127.0.0.1:%d" % port,
        "--listen",
        "%s=%s:%d" % (topo.ns_name(lab, "u"), INTERNAL_IP, INTERNAL_PORT),
        "--lab",
        lab,
    ]
    spawn(lab, "apiserver", argv)
    deadline = time.time() + timeout
    while True:
        if not topo.alive(lab, "apiserver"):
            return False
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            pass
        if time.time() > deadline:
            raise LabError("the API server did not answer on 127.0.0.1:%d in %d s" % (port, timeout))
        time.sleep(0.05)


def start_etcd(lab: str, doc: dict, spawn, timeout: float = 30.0) -> str:  # type: ignore[no-untyped-def]
    """`lab up --store etcd`: a real etcd (Debian's etcd-server) for the
    lab, on two free loopback ports kept in lab.json, its data in the lab's
    state; recorded and stopped like the lab's other processes. -> the
    store URL for the API server."""
    import http.client
    import shutil

    etcd = shutil.which("etcd") or "/usr/bin/etcd"
    if not os.path.exists(etcd):
        raise LabError("--store etcd: %s is missing (./setup.sh installs etcd-server)" % etcd)
    conf = doc.setdefault("etcd", {})
    if not conf.get("client"):
        # ports the kernel picks (never the API server's: that one is in its own range)
        conf["client"], conf["peer"] = _any_port(), _any_port()
        while conf["peer"] == conf["client"]:
            conf["peer"] = _any_port()
        topo.save(lab, doc)
    client, peer = "http://127.0.0.1:%d" % conf["client"], "http://127.0.0.1:%d" % conf["peer"]
    data = os.path.join(topo.state_dir(lab), "etcd")
    os.makedirs(data, mode=0o700, exist_ok=True)
    spawn(
        lab,
        "etcd",
        [
            etcd,
            "--name",
            lab,
            "--data-dir",
            data,
            "--listen-client-urls",
            client,
            "--advertise-client-urls",
            client,
            "--listen-peer-urls",
            peer,
            "--initial-advertise-peer-urls",
            peer,
            "--initial-cluster",
            "%s=%s" % (lab, peer),
        ],
    )
    deadline = time.time() + timeout
    while True:
        try:
            c = http.client.HTTPConnection("127.0.0.1", conf["client"], timeout=1)
            c.request("GET", "/health")
            if b'"true"' in c.getresponse().read():
                return "etcd://127.0.0.1:%d" % conf["client"]
        except OSError:
            pass
        if not topo.alive(lab, "etcd"):
            raise LabError("etcd exited; see %s" % os.path.join(topo.state_dir(lab), "logs", "etcd.log"))
        if time.time() > deadline:
            raise LabError("etcd not healthy on %s after %d s" % (client, timeout))
        time.sleep(0.1)


def cluster(lab: str, user_agent: str = "podnet"):  # type: ignore[no-untyped-def]
    """A client Cluster for the lab's API server, as its admin."""
    from podnet.client import connect

    return connect(kubeconfig_path(lab), user_agent)
