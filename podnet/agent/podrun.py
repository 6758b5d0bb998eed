"""A pod running on this node: its state (RunningPod) and how its containers
are started: each under a containers.Supervisor whose start function runs
the container's command (podnet.workload.command_for) with its environment
(the downward API and $(VAR) references resolved, podnet.api.downward), its
workingDir, the pod's resolv.conf and hosts file, and records its PID (for
adoption by a restarted agent, adopt.py) and its namespaces (reap.py).
Functions of the Agent (its dirty event, node IP, events)."""

import os
import time

from podnet.agent import adopt as adopt_mod
from podnet.agent import containers, oci, reap
from podnet.api import downward
from podnet.kernel import netns
from podnet.workload import command_for


def now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class RunningPod:
    def __init__(self, pod, ns_name, ip, log_dir):
        self.uid = pod["metadata"]["uid"]
        self.ns = pod["metadata"]["namespace"]
        self.name = pod["metadata"]["name"]
        self.netns = ns_name
        self.ip = ip
        self.log_dir = log_dir
        self.pod = pod
        self.started = now()
        self.supervisors = {}  # app containers, made once every init container completed
        self.init_sups = {}  # init containers, made one by one (initc.py)
        self.init_previous = []  # initContainerStatuses of an adopted, initialized pod
        self.initialized = False
        self.adopt = False
        self.prober = None
        self.resolv = self.hosts = None
        self.errors = {}
        self.last_status = None

    def all_supervisors(self):
        return list(self.init_sups.values()) + list(self.supervisors.values())


def start_apps(agent, pod, rp):
    """Supervisors and probe workers for the app containers (all init containers completed)."""
    policy = pod["spec"].get("restartPolicy", "Always")
    previous = {s["name"]: s for s in (pod.get("status") or {}).get("containerStatuses", [])}
    for c in pod["spec"]["containers"]:
        if command_for(c) is None and not oci.runs_as_image(c):
            rp.errors[c["name"]] = (
                "image %r cannot run in podnet: give the container a command, "
                "or use the agnhost image for the built-in workload" % c.get("image")
            )
            continue
        sup = supervisor(agent, rp, c, policy)
        if sup.adopted:  # keep the restart count it had
            sup.restart_count = previous.get(c["name"], {}).get("restartCount", 0)
        rp.supervisors[c["name"]] = sup
        rp.prober.add(c, sup)
    rp.initialized = True
    if not rp.adopt:
        names = ", ".join(c["name"] for c in pod["spec"]["containers"])
        agent.event(pod, "Normal", "Started", "Started container(s) %s with IP %s" % (names, rp.ip))


def supervisor(agent, rp, c, policy):
    """A Supervisor for container spec `c` of `rp`; its first start adopts
    the process a previous agent started when there is one (rp.adopt)."""
    from podnet.workload import why_not

    # env with the downward API (fieldRef) and $(VAR) references resolved,
    # and $(VAR) in command and args expanded from it, as kubelet does
    env = downward.container_env(rp.pod, c, rp.ip, agent.node_ip)
    argv = command_for(c)
    argv = None if argv is None else [downward.expand(a, env) for a in argv]
    path = netns.path_of(rp.netns)
    log_dir = rp.log_dir
    image = oci.runs_as_image(c)
    if rp.adopt and image:  # the container by its name (oci.py)
        found = [oci.adopt(oci.images_for(agent), rp, c)]
    else:
        found = [adopt_mod.find(log_dir, c["name"], path)] if rp.adopt else [None]

    def start():
        if found[0] is not None and image:  # once: the container the previous agent started
            proc, found[0] = found[0], None
            return proc
        if found[0] is not None:  # once: the process the previous agent started
            proc, found[0] = adopt_mod.Adopted(found[0]), None
            return reap.recall(log_dir, c["name"], proc)  # the namespaces recorded at its start
        if image:  # through podman (oci.py): pull per imagePullPolicy, run in the pod's netns
            return oci.start(
                oci.images_for(agent),
                rp,
                c,
                env,
                lambda a: downward.expand(a, env),
                os.path.join(log_dir, c["name"] + ".log"),
                lambda reason, message: agent.event(rp.pod, "Normal", reason, message),
            )
        if argv is None:
            raise containers.ContainerError(why_not(c))
        proc = containers.start(
            argv,
            path,
            rp.name,
            os.path.join(log_dir, c["name"] + ".log"),
            env=env,
            cwd=c.get("workingDir"),
            resolv_conf=rp.resolv,
            hosts_file=rp.hosts,
        )
        adopt_mod.record_pid(log_dir, c["name"], proc.pid)
        reap.record(log_dir, c["name"], proc)  # its own namespaces: how its daemons are found
        return proc

    sup = containers.Supervisor(c, start, policy, on_exit=agent.dirty.set)
    sup.adopted = found[0] is not None
    sup.on_event = lambda etype, reason, message: agent.event(rp.pod, etype, reason, message)
    return sup
