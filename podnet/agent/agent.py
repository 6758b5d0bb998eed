"""The node agent (kubelet role), one process per node, inside the node's netns.

It registers its Node, waits for a podCIDR, writes the node's CNI conflist,
serves the fast CNI daemon socket, and makes the pods bound to this node real:
a network namespace per pod, the CNI ADD through the real contract (exec of
the plugins from the node's bin dir, results cached as libcni does), each
container as a process in that namespace (init containers first, initc.py),
restartPolicy, probes on worker threads of their own (prober.py), the pod's
/etc/hosts (hosts.py) and a status written back to the store (podstatus.py).

Level-triggered and event-driven, with no polling: the Pod watch, filtered
to this node's pods (spec.nodeName, as kubelet's field-selected watch),
container exits (a pidfd waiter per process), start and stop futures and
probe verdicts only set `dirty`; every pass (`syncs` counts them) compares
this node's pods with what runs here. Timers are only the restart back-offs
and the heartbeat.

A pod marked for deletion (metadata.deletionTimestamp) is stopped, its
network torn down (CNI DEL, netns removed), and then its object removed;
each container's preStop hook runs first, within the grace (lifecycle.py).
"""

import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from podnet.agent import adopt as adopt_mod
from podnet.agent import (
    hostports,
    hosts,
    initc,
    lifecycle,
    logrotate,
    metrics,
    oci,
    podrun,
    podstatus,
    prober,
    probes,
    reap,
    sandbox,
)
from podnet.agent import node as node_mod
from podnet.client import Conflict, NotFound, events, loop
from podnet.cni import libcni
from podnet.kernel import netns

log = logging.getLogger("podnet.agent")
HEARTBEAT = 10.0
RESYNC = 30.0  # seconds between syncs when nothing woke the loop
DEFAULT_GRACE = lifecycle.DEFAULT_GRACE


def termination_grace(pod):
    """The grace a deleted pod gets, as kubelet: the delete request's
    (metadata.deletionGracePeriodSeconds), else the pod's own."""
    meta_grace = pod["metadata"].get("deletionGracePeriodSeconds")
    if meta_grace is not None:
        return int(meta_grace)
    return pod["spec"].get("terminationGracePeriodSeconds", DEFAULT_GRACE)


def pod_netns(lab, uid):
    return "pn-%s-p-%s" % (lab, uid.replace("-", "")[:10])


class Agent:
    def __init__(self, lab, node, node_ip, objects, state_dir, cni_bin, routing=None, extras=()):
        self.lab, self.node, self.node_ip = lab, node, node_ip
        self.routing = routing  # a RoutingReconciler, or None (single-node use)
        self.extras = list(extras)  # more reconcilers (proxy, policy): each .run(stop) in a thread
        self.objects = objects
        client = getattr(objects, "client", None)
        self.recorder = events.Recorder(client, "kubelet", node) if client is not None else None
        self.dir = state_dir
        self.cni_bin = cni_bin
        self.conf_dir = os.path.join(state_dir, "net.d")
        self.sock = os.path.join(state_dir, "cni.sock")
        self.runtime = libcni.Runtime(bin_dirs=[cni_bin], cache_dir=os.path.join(state_dir, "cni-cache"))
        self.pods = {}
        self.mine = {}  # uid -> this node's pods, kept by the Pod watch (_on_pod)
        self.mine_lock = threading.Lock()
        self.syncs = 0  # passes of sync() (also the podnet_agent_pod_syncs metric)
        self.dirty = threading.Event()
        self.cni_server = None
        # pods' links keep the underlay's MTU (pods on one node talk at full
        # size over the bridge); only their route to everything else carries
        # the tunnel's (vxlan 1450, WireGuard 1440), as a route MTU
        self.link_mtu = 1500
        self.pod_mtu = routing.pod_mtu() if routing else self.link_mtu
        self.stats = {}
        self.starting = {}
        self.pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="podstart")
        # stops wait out each pod's grace period: their own threads, so a pod
        # that ignores SIGTERM holds back neither starts nor probes
        self.stopping = {}
        self.stop_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="podstop")
        self.stats_lock = threading.Lock()
        self.hostports = hostports.Registry()  # host ports claimed by this node's pods

    # ---- node ------------------------------------------------------------------

    def register(self):
        node_mod.register(self)

    def write_conflist(self, cidr):
        sandbox.write_conflist(self, cidr)

    def _count(self, what, seconds):
        sandbox.count(self, what, seconds)

    # ---- pods --------------------------------------------------------------------

    def _start_pod(self, pod):
        if not hostports.admit(self, pod):  # its hostPort is taken here: rejected, as kubelet does
            return None
        if pod["spec"].get("hostNetwork"):
            # the node's own stack: no netns of its own, no CNI, podIP = node IP
            return self._start_containers(pod, self.node_ns_name(), self.node_ip)
        ns_name, ip = sandbox.create(self, pod)
        return self._start_containers(pod, ns_name, ip)

    def node_ns_name(self):
        return "pn-%s-%s" % (self.lab, self.node)

    def _start_containers(self, pod, ns_name, ip, adopt=False):
        """The pod's containers under their supervisors: init containers one
        by one (initc.py, from _tick_pod), then the app containers. adopt=True:
        re-attach to the processes a previous agent started (see adopt.py)."""
        uid = pod["metadata"]["uid"]
        if adopt:
            self.hostports.claim(pod)  # the ports its netns already publishes
        log_dir = os.path.join(
            self.dir, "pods", "%s_%s_%s" % (pod["metadata"]["namespace"], pod["metadata"]["name"], uid)
        )
        os.makedirs(log_dir, exist_ok=True)
        rp = podrun.RunningPod(pod, ns_name, ip, log_dir)
        rp.adopt = adopt
        rp.resolv = hosts.write_resolv_conf(pod, log_dir, self.dir)
        rp.hosts = hosts.write(pod, ip, log_dir)
        rp.prober = prober.PodProber(
            rp.name,
            self.dirty,
            lambda name, spec: self._probe(pod, rp, spec, name),
            lambda etype, reason, message: self.event(pod, etype, reason, message),
            lambda name, kind: lifecycle.probe_kill(self, rp, name, kind),
        )
        status = pod.get("status") or {}
        conditions = status.get("conditions") or []
        initialized = any(c.get("type") == "Initialized" and c.get("status") == "True" for c in conditions)
        rp.init_previous = (status.get("initContainerStatuses") or []) if adopt else []
        if not pod["spec"].get("initContainers") or (adopt and initialized):
            podrun.start_apps(self, pod, rp)
        if adopt and status.get("startTime"):
            rp.started = status["startTime"]
        self.pods[uid] = rp
        log.info("pod %s/%s %s: %s in %s", rp.ns, rp.name, "adopted" if adopt else "started", ip, ns_name)
        return rp

    def _stop_pod(self, rp, grace=DEFAULT_GRACE):
        """Every container at once: its preStop hook, SIGTERM, SIGKILL once
        `grace` seconds (from the hook's start) are over (lifecycle.py); then
        the network: CNI DEL and the netns."""
        rp.prober.stop()  # no liveness kill of a container that is stopping anyway
        specs = {c["name"]: c for c in rp.pod["spec"]["containers"]}
        stops = [
            threading.Thread(
                target=lifecycle.stop_container,
                args=(
                    sup,
                    specs.get(name, {}),
                    grace,
                    lifecycle.hook(self, rp, name),
                    lifecycle.hook_failed(self, rp, name),
                ),
                daemon=True,
            )
            for name, sup in list(rp.supervisors.items()) + list(rp.init_sups.items())
        ]
        for t in stops:
            t.start()
        for t in stops:
            t.join()
        reap.kill_pod(rp.log_dir, None if rp.netns == self.node_ns_name() else rp.netns)  # setsid'd leftovers
        if rp.netns == self.node_ns_name():  # hostNetwork: nothing of its own to tear down
            self.pods.pop(rp.uid, None)
            return
        sandbox.teardown(self, rp)
        self.pods.pop(rp.uid, None)
        log.info("pod %s/%s stopped", rp.ns, rp.name)

    def _tick_pod(self, pod, rp):
        if not rp.initialized:
            init_policy = initc.policy_for(pod["spec"].get("restartPolicy", "Always"))
            if initc.advance(pod, rp, lambda c: podrun.supervisor(self, rp, c, init_policy)):
                podrun.start_apps(self, pod, rp)
        for name, sup in list(rp.supervisors.items()):
            if sup.tick():
                rp.prober.kick(name)  # started or exited: the verdicts are about another instance
        podstatus.write(self.objects, pod, rp, self.node_ip)

    def _probe(self, pod, rp, spec, name=None):
        """One probe from the node, as kubelet probes: through the bridge to the pod IP."""
        if spec.get("exec") is not None and name is not None:  # an image container: podman exec
            done = oci.run_exec_handler(
                rp.log_dir, name, spec["exec"].get("command"), float(probes._num(spec, "timeoutSeconds"))
            )
            if done is not None:
                return done
        return probes.probe(
            probes.resolve_named_ports(spec, pod),
            rp.ip,
            netns.path_of(rp.netns),
            rp.name,
            from_netns=probes.OWN_NETNS,
            resolv_conf=rp.resolv,
        )

    def event(self, obj, etype, reason, message):
        if self.recorder is not None:
            self.recorder.event(obj, etype, reason, message)

    def sync(self, periodic=False):
        """One level-triggered pass. Pod starts (netns, CNI ADD, processes)
        run on a small thread pool so one slow ADD does not hold back the
        status of pods already running; probes run on threads of their own.
        Its work is this node's pods only (self.mine, kept by _on_pod).
        periodic: the slow resync, counted apart from the passes a change woke."""
        if periodic:
            metrics.POD_RESYNCS.inc()
        else:
            self.syncs += 1
            metrics.POD_SYNCS.inc()
        with self.mine_lock:
            mine = dict(self.mine)
        for uid, fut in list(self.starting.items()):
            if fut.done():
                del self.starting[uid]
                exc = fut.exception()
                if exc is not None and uid in mine:
                    pod = mine[uid]
                    log.error("pod %s/%s: start failed: %s", pod["metadata"]["namespace"], pod["metadata"]["name"], exc)
                    self._fail_start(pod, exc)
        for uid, fut in list(self.stopping.items()):
            if fut.done():
                del self.stopping[uid]
                if fut.exception() is not None:
                    log.error("pod %s: stop failed: %s", uid, fut.exception())
        for uid, rp in list(self.pods.items()):
            pod = mine.get(uid)
            if (pod is None or pod["metadata"].get("deletionTimestamp")) and uid not in self.stopping:
                # the pod keeps its last status while it terminates: its endpoint
                # is then serving but not ready, used only when nothing else is
                grace = termination_grace(rp.pod if pod is None else pod)  # gone: the grace it had
                fut = self.stop_pool.submit(self._stop_and_remove, rp, pod is not None, grace)
                fut.add_done_callback(lambda _f: self.dirty.set())
                self.stopping[uid] = fut
        for uid, pod in mine.items():
            if uid in self.starting:
                continue
            if pod["metadata"].get("deletionTimestamp"):
                if uid not in self.pods:
                    try:
                        self.objects.delete(
                            "Pod", pod["metadata"]["namespace"], pod["metadata"]["name"], grace=0, uid=uid
                        )
                    except (NotFound, Conflict):
                        pass
                continue
            rp = self.pods.get(uid)
            if rp is None:
                if pod.get("status", {}).get("reason") == "NetworkSetupFailed" or hostports.rejected(pod):
                    continue  # reported on the pod; deleting it is the way out
                fut = self.pool.submit(self._start_pod, pod)
                fut.add_done_callback(lambda _f: self.dirty.set())
                self.starting[uid] = fut
                continue
            self._tick_pod(pod, rp)

    def _stop_and_remove(self, rp, remove, grace):
        self._stop_pod(rp, grace)
        self.hostports.release(rp.uid)
        if remove:
            try:  # grace 0: this node is done with it (kubelet's final delete)
                self.objects.delete("Pod", rp.ns, rp.name, grace=0, uid=rp.uid)
            except (NotFound, Conflict):
                pass

    def _fail_start(self, pod, exc):
        self.hostports.release(pod["metadata"]["uid"])
        sandbox.fail(self, pod, exc)

    # ---- loops --------------------------------------------------------------------

    def adopt_or_clean(self):
        adopt_mod.adopt_or_clean(self)

    def _on_pod(self, _key, old, new):
        """The Pod watch, filtered by spec.nodeName as kubelet's field-selected
        watch: a pod of another node changes nothing here and wakes nothing."""
        hit = False
        with self.mine_lock:
            for obj in (old, new):
                if obj is not None and obj["spec"].get("nodeName") == self.node:
                    self.mine.pop(obj["metadata"]["uid"], None)
                    hit = True
            if new is not None and new["spec"].get("nodeName") == self.node:
                self.mine[new["metadata"]["uid"]] = new
        if hit:
            self.dirty.set()

    def run(self, stop):
        os.makedirs(self.dir, exist_ok=True)
        self.register()
        cidr = node_mod.wait_pod_cidr(self, stop)
        self.write_conflist(cidr)
        sandbox.start_cni_daemon(self)
        self.adopt_or_clean()
        logrotate.start_for_agent(self.dir, stop)  # kubelet's container log manager
        if self.routing:
            threading.Thread(target=self.routing.run, args=(stop,), daemon=True, name="routing").start()
        extras = [threading.Thread(target=r.run, args=(stop,), daemon=True, name=type(r).__name__) for r in self.extras]
        for t in extras:
            t.start()
        metrics.serve(self.node_ip)
        # the flow log (conntrack + NFLOG of this node's namespace), served beside /metrics
        from podnet.flows.collector import Collector

        try:  # diagnostics: a failure here must never stop the node's pods
            Collector(self.node, self.node_ns_name(), self.objects, metrics.REGISTRY, self.node_ip).start(stop)
        except Exception:
            log.exception("flow log not started")
        # no dirty event of its own: _on_pod wakes the loop for this node's pods only;
        # the first list is waited for however long the API server takes
        while not stop.is_set():
            try:
                self.objects.informer("Pod").add(on_change=self._on_pod)
                break
            except Exception as exc:  # noqa: BLE001 - retried until the API server answers
                log.warning("pods: waiting for the API server: %s", exc)
                loop.THREAD_ERRORS.note("agent pod sync")
                stop.wait(1.0)
        beat = last_sync = time.monotonic()
        try:
            while not stop.is_set():
                timer = self._next_timer()
                wait = min(beat + HEARTBEAT, last_sync + RESYNC) - time.monotonic()
                if timer is not None:
                    wait = min(wait, timer - time.monotonic())
                woke = self.dirty.wait(max(0.0, wait))
                self.dirty.clear()
                due = timer is not None and time.monotonic() >= timer
                # a slow resync as well: level-triggered, whatever a lost wake-up missed is
                # found within RESYNC (a pass over this node's pods only)
                periodic = not (woke or due) and time.monotonic() - last_sync > RESYNC
                if woke or due or periodic:
                    last_sync = time.monotonic()
                    try:
                        self.sync(periodic)
                    except Exception as exc:
                        log.exception("sync failed: %s", exc)
                        loop.THREAD_ERRORS.note("agent pod sync")
                        stop.wait(0.5)
                        self.dirty.set()  # level-triggered: the next pass retries
                if time.monotonic() - beat > HEARTBEAT:
                    beat = time.monotonic()
                    try:
                        self.register()
                    except Exception as exc:
                        log.warning("heartbeat: %s", exc)
        finally:
            # Pods keep running when the agent stops (as with kubelet); the next
            # agent run or `lab down` deals with them.
            if self.cni_server:
                self.cni_server.shutdown()
                self.cni_server.server_close()
            for t in extras:  # let reconcilers hand back what others must take over (LB IPs)
                t.join(5)
            node_mod.mark_stopped(self)

    def _next_timer(self):
        """The loop's only timers besides the heartbeat: the earliest restart
        back-off of a container (monotonic), or None. Everything else wakes
        the loop through `dirty`: the Pod watch, container exits, start and
        stop futures, probe verdicts."""
        dues = [s.next_start for rp in list(self.pods.values()) for s in rp.all_supervisors()]
        dues = [d for d in dues if d is not None]
        return min(dues) if dues else None
