"""The agent's Node object: registration and heartbeat (labels,
annotations, addresses, the Ready condition, nodeInfo), waiting for the
podCIDR the controllers assign, and the graceful stop that says so at once.
Functions of the Agent (its node name, IP, routing and API objects)."""

import hashlib
import logging
import platform
import time
import uuid

log = logging.getLogger("podnet.agent")


def now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _boot_id():
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def register(agent):
    def status(n):
        n.setdefault("status", {})
        n["metadata"].setdefault("labels", {})["kubernetes.io/hostname"] = agent.node
        if agent.routing:
            n["metadata"].setdefault("annotations", {}).update(agent.routing.annotations())
        n["status"]["addresses"] = [
            {"type": "InternalIP", "address": agent.node_ip},
            {"type": "Hostname", "address": agent.node},
        ]
        n["status"]["conditions"] = [
            {
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "podnet agent is posting ready status",
                "lastHeartbeatTime": now(),
            }
        ]
        n["status"]["nodeInfo"] = {
            # the identity fields the API requires: per node, stable across
            # agent restarts (lab nodes share one machine and one boot)
            "machineID": hashlib.sha256(("machine/" + agent.node).encode()).hexdigest()[:32],
            "systemUUID": str(uuid.uuid5(uuid.NAMESPACE_DNS, agent.node + ".podnet")),
            "bootID": _boot_id(),
            "kubeProxyVersion": "",
            "kubeletVersion": "podnet-0.1",
            "osImage": "podnet lab node",
            "kernelVersion": platform.release(),
            "containerRuntimeVersion": "podnet://0.1",
            "operatingSystem": "linux",
            "architecture": platform.machine(),
        }

    def meta(n):
        before = (dict(n["metadata"].get("labels") or {}), dict(n["metadata"].get("annotations") or {}))
        status(n)
        if before == (n["metadata"].get("labels"), n["metadata"].get("annotations")):
            return False

    # labels and annotations are the object's, conditions and addresses
    # its status: two writes, as kubelet's node update and status patch
    if agent.objects.mutate("Node", None, agent.node, meta) is None:
        node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": agent.node}, "spec": {}}
        status(node)
        agent.objects.create(node)
    agent.objects.mutate("Node", None, agent.node, status, status=True)


def wait_pod_cidr(agent, stop, timeout=60):
    deadline = time.time() + timeout
    while not stop.is_set() and time.time() < deadline:
        node = agent.objects.find("Node", None, agent.node)
        if node and node["spec"].get("podCIDR"):
            return node["spec"]["podCIDR"]
        stop.wait(0.1)
    raise RuntimeError("node %s got no podCIDR within %d s: is the controller manager running?" % (agent.node, timeout))


def mark_stopped(agent):
    """A graceful stop says so on the Node at once, so other nodes take
    over its LoadBalancer IPs now rather than after the heartbeat grace."""

    def down(n):
        n.setdefault("status", {})["conditions"] = [
            {
                "type": "Ready",
                "status": "False",
                "reason": "AgentStopped",
                "message": "podnet agent stopped",
                "lastHeartbeatTime": now(),
            }
        ]

    try:
        agent.objects.mutate("Node", None, agent.node, down, status=True)
    except Exception as exc:
        log.warning("marking node %s stopped: %s", agent.node, exc)
