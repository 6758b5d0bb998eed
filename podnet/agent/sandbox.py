"""A pod's network sandbox on this node, as the CRI runtime makes it for
kubelet: the node's CNI conflist, the warm CNI daemon, and per pod a network
namespace with the CNI ADD through the real contract (exec of the plugins
from the node's bin dir, results cached as libcni does); its teardown (CNI
DEL, the namespace) and what a failed ADD leaves on the pod.
Functions of the Agent (its state dir, CNI runtime, lab name)."""

import json
import logging
import os
import threading
import time

from podnet.agent import hostports
from podnet.cni import libcni
from podnet.kernel import netns

log = logging.getLogger("podnet.agent")


def create(agent, pod):
    """The pod's netns and its CNI ADD -> (netns name, pod IP)."""
    from podnet.agent.agent import pod_netns

    uid = pod["metadata"]["uid"]
    ns_name = pod_netns(agent.lab, uid)
    netns.create(ns_name)
    net = libcni.find_network("podnet", agent.conf_dir)
    args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=%s;K8S_POD_NAME=%s;K8S_POD_INFRA_CONTAINER_ID=%s;K8S_POD_UID=%s" % (
        pod["metadata"]["namespace"],
        pod["metadata"]["name"],
        uid,
        uid,
    )
    t0 = time.monotonic()
    result = agent.runtime.add(net, uid, netns.path_of(ns_name), "eth0", args, caps=hostports.port_mappings(pod))
    agent._count("cni_add", time.monotonic() - t0)
    ip = result["ips"][0]["address"].split("/")[0]
    return ns_name, ip


def teardown(agent, rp):
    """CNI DEL and the pod's netns (a DEL that fails is logged: the netns goes anyway)."""
    try:
        net = libcni.find_network("podnet", agent.conf_dir)
        t0 = time.monotonic()
        agent.runtime.delete(net, rp.uid, netns.path_of(rp.netns), "eth0")
        agent._count("cni_del", time.monotonic() - t0)
    except (libcni.ConfigError, libcni.PluginError) as exc:
        log.warning("pod %s/%s: CNI DEL: %s", rp.ns, rp.name, exc)
    netns.delete(rp.netns)


def fail(agent, pod, exc):
    """A failed sandbox: its netns removed, the reason on the pod (Pending, NetworkSetupFailed)."""
    from podnet.agent.agent import pod_netns

    ns_name = pod_netns(agent.lab, pod["metadata"]["uid"])
    netns.delete(ns_name)
    agent.event(pod, "Warning", "FailedCreatePodSandBox", "Failed to create pod sandbox: %s" % exc)

    def put(p):
        p["status"] = {
            "phase": "Pending",
            "message": "podnet: %s" % exc,
            "reason": "NetworkSetupFailed",
            "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Ready", "status": "False", "reason": "NetworkSetupFailed"},
            ],
        }

    agent.objects.mutate("Pod", pod["metadata"]["namespace"], pod["metadata"]["name"], put, status=True)


def write_conflist(agent, cidr):
    os.makedirs(agent.conf_dir, exist_ok=True)
    conf = {
        "cniVersion": "1.1.0",
        "name": "podnet",
        "plugins": [
            # ipMasq off: the node masquerades cluster -> outside itself (routing
            # reconciler), and pod-to-pod traffic across nodes must keep its source
            {
                "type": "podnet",
                "bridge": "cni0",
                "isGateway": True,
                "isDefaultGateway": True,
                "ipMasq": agent.routing is None,
                "hairpinMode": True,
                "daemonSocket": agent.sock,
                "mtu": agent.link_mtu,
                "ipam": {
                    "type": "podnet-ipam",
                    "ranges": [[{"subnet": cidr}]],
                    "dataDir": os.path.join(agent.dir, "ipam"),
                    # the tunnel's MTU on the route out of the pod's subnet
                    # only (CNI 1.1 route mtu): TCP picks its MSS from it
                    **(
                        {"routes": [{"dst": "0.0.0.0/0", "mtu": agent.pod_mtu}]}
                        if agent.pod_mtu < agent.link_mtu
                        else {}
                    ),
                },
            },
            {"type": "podnet-portmap", "capabilities": {"portMappings": True}, "daemonSocket": agent.sock},
        ],
    }
    path = os.path.join(agent.conf_dir, "10-podnet.conflist")
    with open(path + ".tmp", "w") as f:
        json.dump(conf, f, indent=1)
    os.replace(path + ".tmp", path)


def start_cni_daemon(agent):
    from podnet.cni.server import Server, warm_up

    warm_up()
    agent.cni_server = Server(agent.sock, verbose=False)
    threading.Thread(
        target=agent.cni_server.serve_forever, kwargs={"poll_interval": 0.5}, daemon=True, name="cni"
    ).start()


def count(agent, what, seconds):
    """Cumulative timings in <node state>/stats.json (bench/lab.py reads them)."""
    with agent.stats_lock:
        agent.stats[what + "_seconds"] = agent.stats.get(what + "_seconds", 0.0) + seconds
        agent.stats[what + "_count"] = agent.stats.get(what + "_count", 0) + 1
        path = os.path.join(agent.dir, "stats.json")
        with open(path + ".tmp", "w") as f:
            json.dump(agent.stats, f)
        os.replace(path + ".tmp", path)
