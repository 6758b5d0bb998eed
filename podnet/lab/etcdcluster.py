"""`podnet lab up --store etcd --etcd-members N`: a real etcd cluster
(Debian's etcd-server) for the lab, each member a host of its own: a
network namespace pn-<lab>-etcdK on the underlay (192.168.200.2, .3, ...),
its data in <lab>/etcd/etcdK, recorded and stopped like the lab's other
processes (roles etcd1..etcdN). The API server talks to them from the
lab's "control-plane" namespace pn-<lab>-cp (192.168.200.9): its store
URL is etcd://192.168.200.2:2379,...?netns=pn-<lab>-cp, so every etcd
request crosses the underlay as it would between control-plane hosts.

plan() is pure (names, addresses, the etcd command lines); start() builds
the namespaces, spawns the members and waits for a healthy cluster.
"""

from __future__ import annotations

import http.client
import os
import shutil
import time
from typing import Any

from podnet.lab import topology as topo
from podnet.lab.topology import LabError

FIRST_MEMBER_IP = 2  # 192.168.200.2.. (the API server's address is .1, nodes .11..)
CONTROL_PLANE_NS_IP = "192.168.200.9"
CLIENT_PORT, PEER_PORT = 2379, 2380


def member_ip(k: int) -> str:
    """k: 1-based member number."""
    return str(topo.UNDERLAY.network_address + FIRST_MEMBER_IP + k - 1)


def plan(lab: str, members: int, data_root: str, etcd: str = "etcd") -> list[dict[str, Any]]:
    """One dict per member: name, ip, netns, data dir, argv."""
    if members < 1 or members > 7:
        raise LabError("--etcd-members must be between 1 and 7, got %d" % members)
    names = ["etcd%d" % k for k in range(1, members + 1)]
    initial = ",".join("%s=http://%s:%d" % (n, member_ip(k), PEER_PORT) for k, n in enumerate(names, 1))
    out = []
    for k, name in enumerate(names, 1):
        ip = member_ip(k)
        data = os.path.join(data_root, name)
        out.append(
            {
                "name": name,
                "ip": ip,
                "netns": topo.ns_name(lab, name),
                "data": data,
                "argv": [
                    etcd,
                    "--name",
                    name,
                    "--data-dir",
                    data,
                    "--listen-client-urls",
                    "http://%s:%d" % (ip, CLIENT_PORT),
                    "--advertise-client-urls",
                    "http://%s:%d" % (ip, CLIENT_PORT),
                    "--listen-peer-urls",
                    "http://%s:%d" % (ip, PEER_PORT),
                    "--initial-advertise-peer-urls",
                    "http://%s:%d" % (ip, PEER_PORT),
                    "--initial-cluster",
                    initial,
                    "--initial-cluster-token",
                    "podnet-" + lab,
                    "--initial-cluster-state",
                    "new",
                ],
            }
        )
    return out


def store_url(lab: str, members: list[dict[str, Any]]) -> str:
    return "etcd://%s?netns=%s" % (
        ",".join("%s:%d" % (m["ip"], CLIENT_PORT) for m in members),
        topo.ns_name(lab, "cp"),
    )


def healthy(lab: str, member: dict[str, Any]) -> bool:
    """GET /health on the member, from the control-plane namespace."""
    from podnet.kernel import netns

    ns = netns.Netns(topo.ns_name(lab, "cp"))
    try:
        with netns.entered(ns):
            c = http.client.HTTPConnection(member["ip"], CLIENT_PORT, timeout=1)
            c.connect()
        c.request("GET", "/health")
        return b'"true"' in c.getresponse().read()
    except (OSError, http.client.HTTPException):
        return False
    finally:
        ns.close()


def start(lab: str, doc: dict[str, Any], spawn: Any, timeout: float = 60.0) -> str:
    """Namespaces, members and a healthy cluster -> the API server's store URL."""
    etcd = shutil.which("etcd") or "/usr/bin/etcd"
    if not os.path.exists(etcd):
        raise LabError("--store etcd: %s is missing (./setup.sh installs etcd-server)" % etcd)
    members = plan(lab, int(doc.get("etcdMembers") or 1), os.path.join(topo.state_dir(lab), "etcd"), etcd)
    topo._plug(lab, "cp", CONTROL_PLANE_NS_IP, "cp")
    for m in members:
        topo._plug(lab, m["name"], m["ip"], "e-" + m["name"])
        os.makedirs(m["data"], mode=0o700, exist_ok=True)
        spawn(lab, m["name"], m["argv"], netns_name=m["netns"])
    deadline = time.time() + timeout
    for m in members:
        while not healthy(lab, m):
            if not topo.alive(lab, m["name"]):
                raise LabError(
                    "etcd member %s exited; see %s"
                    % (m["name"], os.path.join(topo.state_dir(lab), "logs", m["name"] + ".log"))
                )
            if time.time() > deadline:
                raise LabError(
                    "etcd member %s not healthy on %s:%d after %d s" % (m["name"], m["ip"], CLIENT_PORT, timeout)
                )
            time.sleep(0.2)
    doc["etcd"] = {"members": [{"name": m["name"], "ip": m["ip"], "netns": m["netns"]} for m in members]}
    return store_url(lab, members)


def restart_member(lab: str, name: str, spawn: Any) -> None:
    """Start a member again (after a fault test killed it), same data dir:
    it rejoins the cluster it belongs to."""
    doc = topo.load(lab)
    etcd = shutil.which("etcd") or "/usr/bin/etcd"
    for m in plan(lab, int(doc.get("etcdMembers") or 1), os.path.join(topo.state_dir(lab), "etcd"), etcd):
        if m["name"] == name:
            spawn(lab, name, m["argv"], netns_name=m["netns"])
            return
    raise LabError("lab %s has no etcd member %s" % (lab, name))
