"""hostPorts on the node: the `portMappings` capability for the CNI chain,
and the node-side guard against two pods publishing the same port.

kubelet hands the runtime a pod's `ports[].hostPort` entries, and the runtime
passes them to the CNI chain as the `portMappings` capability on ADD (and the
same on DEL, from libcni's cache); podnet-portmap publishes them with
nftables. The scheduler keeps pods whose host ports collide apart, but a pod
bound with spec.nodeName never meets the scheduler, so the node checks again
at admission, as kubelet's NodePorts predicate does: a pod whose hostPort
(same protocol, overlapping hostIP: equal, or either one unspecified) is
already used by a pod running here is rejected for good (phase Failed,
reason NodePorts, a Warning event), and is not started.

hostNetwork pods publish nothing through CNI (their ports are the node's
own), but their hostPorts still take the port from other pods.

`Registry` is the node's book of claimed ports. Starts run on a thread pool,
so claiming is one locked check-and-take; a pod releases its ports when it
has been stopped and its CNI DEL ran.
"""

import ipaddress
import threading

REASON = "NodePorts"  # kubelet's reason for a pod its NodePorts predicate rejects
UNSPECIFIED = ("", "0.0.0.0", "::")


def _key(pod):
    return "%s/%s" % (pod["metadata"].get("namespace", "default"), pod["metadata"]["name"])


def wanted(pod):
    """[(protocol upper, hostPort, hostIP or "", containerPort)] the pod asks for."""
    out = []
    for c in pod.get("spec", {}).get("containers", []):
        for p in c.get("ports") or []:
            if p.get("hostPort"):
                host_ip = p.get("hostIP") or ""
                out.append(
                    (
                        str(p.get("protocol") or "TCP").upper(),
                        int(p["hostPort"]),
                        "" if host_ip in UNSPECIFIED else host_ip,
                        int(p["containerPort"]),
                    )
                )
    return out


def port_mappings(pod):
    """The CNI `portMappings` capability args for the pod, or None when it
    publishes nothing (or uses the node's network itself)."""
    if pod["spec"].get("hostNetwork"):
        return None
    maps = []
    for proto, host_port, host_ip, container_port in wanted(pod):
        m = {"hostPort": host_port, "containerPort": container_port, "protocol": proto.lower()}
        if host_ip:
            m["hostIP"] = host_ip
        maps.append(m)
    return {"portMappings": maps} if maps else None


def _overlap(a, b):
    if not a or not b:
        return True
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return a == b


def conflict(pod, taken):
    """The message saying why `pod` cannot have its host ports, or None.
    taken: {(proto, port, hostIP): "ns/name"} already used on this node."""
    for proto, port, host_ip, _ in wanted(pod):
        for (t_proto, t_port, t_ip), owner in sorted(taken.items()):
            if (t_proto, t_port) == (proto, port) and _overlap(host_ip, t_ip):
                where = " on %s" % host_ip if host_ip else ""
                return "hostPort %d/%s%s is already used by pod %s on this node" % (port, proto, where, owner)
    return None


class Registry:
    """The host ports claimed by the pods of this node."""

    def __init__(self):
        self.lock = threading.Lock()
        self.claims = {}  # uid -> ("ns/name", [(proto, port, hostIP)])
        self.rejected = set()  # uids already told (one event, not one per sync)

    def taken(self, but=None):
        out = {}
        for uid, (owner, keys) in self.claims.items():
            if uid != but:
                for k in keys:
                    out[k] = owner
        return out

    def claim(self, pod, live=None):
        """Take the pod's host ports -> None, or the message why it cannot.
        live: the uids the node still runs or starts; claims of any other
        pod are dropped first (a start that failed after its claim)."""
        uid = pod["metadata"]["uid"]
        with self.lock:
            if live is not None:
                for gone in set(self.claims) - set(live) - {uid}:
                    del self.claims[gone]
            why = conflict(pod, self.taken(but=uid))
            if why is None:
                self.claims[uid] = (_key(pod), [(p, hp, ip) for p, hp, ip, _ in wanted(pod)])
            return why

    def release(self, uid):
        with self.lock:
            self.claims.pop(uid, None)


def admit(agent, pod):
    """Claim the pod's host ports on `agent`'s node -> True; or reject the
    pod as kubelet does (phase Failed, reason NodePorts, a Warning event)
    and -> False. Called first thing in the pod's start."""
    # copies: the sync loop changes these dicts while starts run in the pool
    live = set(agent.pods.copy()) | set(agent.starting.copy())
    why = agent.hostports.claim(pod, live)
    if why is None:
        return True
    uid = pod["metadata"]["uid"]
    with agent.hostports.lock:
        told = uid in agent.hostports.rejected
        agent.hostports.rejected.add(uid)
    if told:
        return False
    message = "Pod was rejected: %s" % why
    agent.event(pod, "Warning", REASON, message)

    def put(p):
        if p["metadata"].get("uid") != uid:
            return False
        p["status"] = {
            "phase": "Failed",
            "reason": REASON,
            "message": message,
            "conditions": [{"type": "PodScheduled", "status": "True"}],
        }

    agent.objects.mutate("Pod", pod["metadata"]["namespace"], pod["metadata"]["name"], put, status=True)
    return False


def rejected(pod):
    """A pod this (or an earlier) agent rejected: never started."""
    st = pod.get("status") or {}
    return st.get("phase") == "Failed" and st.get("reason") == REASON
