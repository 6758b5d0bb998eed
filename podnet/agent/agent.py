"""The node agent (kubelet role), one process per node, inside the node's netns.

It registers its Node, waits for a podCIDR, writes the node's CNI conflist,
serves the fast CNI daemon socket, and makes the pods bound to this node real:
a network namespace per pod, the CNI ADD through the real contract (exec of
the plugins from the node's bin dir, results cached as libcni does), each
container as a process in that namespace, restartPolicy, readiness probes and
a status written back to the store. Level-triggered: a watch on pods only
marks work pending; every pass compares the store's pods with what runs here.

A pod marked for deletion (metadata.deletionTimestamp) is stopped, its
network torn down (CNI DEL, netns removed), and then its object removed.
"""

import hashlib
import json
import logging
import os
import platform
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from podnet.agent import adopt as adopt_mod
from podnet.agent import containers, probes
from podnet.client import Conflict, NotFound, StatusError, events
from podnet.cni import libcni
from podnet.kernel import netns
from podnet.workload import command_for

log = logging.getLogger("podnet.agent")
HEARTBEAT = 10.0
DEFAULT_GRACE = 30  # terminationGracePeriodSeconds when the pod does not say (as Kubernetes)


def now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _boot_id():
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def pod_netns(lab, uid):
    return "pn-%s-p-%s" % (lab, uid.replace("-", "")[:10])


class RunningPod:
    def __init__(self, pod, ns_name, ip, log_dir):
        self.uid = pod["metadata"]["uid"]
        self.ns = pod["metadata"]["namespace"]
        self.name = pod["metadata"]["name"]
        self.netns = ns_name
        self.ip = ip
        self.log_dir = log_dir
        self.started = now()
        self.supervisors = {}
        self.probes = {}
        self.errors = {}
        self.probe_restarts = {}
        self.last_status = None


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
        self.dirty = threading.Event()
        self.cni_server = None
        self.pod_mtu = routing.pod_mtu() if routing else 1500
        self.stats = {}
        self.starting = {}
        self.pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="podstart")
        # stops wait out each pod's grace period: their own threads, so a pod
        # that ignores SIGTERM holds back neither starts nor probes
        self.stopping = {}
        self.stop_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="podstop")
        self.stats_lock = threading.Lock()

    # ---- node ------------------------------------------------------------------

    def register(self):
        def status(n):
            n.setdefault("status", {})
            n["metadata"].setdefault("labels", {})["kubernetes.io/hostname"] = self.node
            if self.routing:
                n["metadata"].setdefault("annotations", {}).update(self.routing.annotations())
            n["status"]["addresses"] = [
                {"type": "InternalIP", "address": self.node_ip},
                {"type": "Hostname", "address": self.node},
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
                "machineID": hashlib.sha256(("machine/" + self.node).encode()).hexdigest()[:32],
                "systemUUID": str(uuid.uuid5(uuid.NAMESPACE_DNS, self.node + ".podnet")),
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
        if self.objects.mutate("Node", None, self.node, meta) is None:
            node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": self.node}, "spec": {}}
            status(node)
            self.objects.create(node)
        self.objects.mutate("Node", None, self.node, status, status=True)

    def wait_pod_cidr(self, stop, timeout=60):
        deadline = time.time() + timeout
        while not stop.is_set() and time.time() < deadline:
            node = self.objects.find("Node", None, self.node)
            if node and node["spec"].get("podCIDR"):
                return node["spec"]["podCIDR"]
            stop.wait(0.1)
        raise RuntimeError(
            "node %s got no podCIDR within %d s: is the controller manager running?" % (self.node, timeout)
        )

    def write_conflist(self, cidr):
        os.makedirs(self.conf_dir, exist_ok=True)
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
                    "ipMasq": self.routing is None,
                    "hairpinMode": True,
                    "daemonSocket": self.sock,
                    "mtu": self.pod_mtu,
                    "ipam": {
                        "type": "podnet-ipam",
                        "ranges": [[{"subnet": cidr}]],
                        "dataDir": os.path.join(self.dir, "ipam"),
                    },
                },
                {"type": "podnet-portmap", "capabilities": {"portMappings": True}, "daemonSocket": self.sock},
            ],
        }
        path = os.path.join(self.conf_dir, "10-podnet.conflist")
        with open(path + ".tmp", "w") as f:
            json.dump(conf, f, indent=1)
        os.replace(path + ".tmp", path)

    def start_cni_daemon(self):
        from podnet.cni.server import Server, warm_up

        warm_up()
        self.cni_server = Server(self.sock, verbose=False)
        threading.Thread(
            target=self.cni_server.serve_forever, kwargs={"poll_interval": 0.5}, daemon=True, name="cni"
        ).start()

    # ---- pods --------------------------------------------------------------------

    def _start_pod(self, pod):
        uid = pod["metadata"]["uid"]
        if pod["spec"].get("hostNetwork"):
            # the node's own stack: no netns of its own, no CNI, podIP = node IP
            return self._start_containers(pod, self.node_ns_name(), self.node_ip)
        ns_name = pod_netns(self.lab, uid)
        netns.create(ns_name)
        net = libcni.find_network("podnet", self.conf_dir)
        args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=%s;K8S_POD_NAME=%s;K8S_POD_INFRA_CONTAINER_ID=%s;K8S_POD_UID=%s" % (
            pod["metadata"]["namespace"],
            pod["metadata"]["name"],
            uid,
            uid,
        )
        t0 = time.monotonic()
        result = self.runtime.add(net, uid, netns.path_of(ns_name), "eth0", args)
        self._count("cni_add", time.monotonic() - t0)
        ip = result["ips"][0]["address"].split("/")[0]
        return self._start_containers(pod, ns_name, ip)

    def node_ns_name(self):
        return "pn-%s-%s" % (self.lab, self.node)

    def _start_containers(self, pod, ns_name, ip, adopt=False):
        """Supervisors for the pod's containers. adopt=True: re-attach to the
        processes a previous agent started (see adopt.py) instead of starting them."""
        uid = pod["metadata"]["uid"]
        log_dir = os.path.join(
            self.dir, "pods", "%s_%s_%s" % (pod["metadata"]["namespace"], pod["metadata"]["name"], uid)
        )
        os.makedirs(log_dir, exist_ok=True)
        resolv = self.write_resolv_conf(pod, log_dir)
        rp = RunningPod(pod, ns_name, ip, log_dir)
        policy = pod["spec"].get("restartPolicy", "Always")
        previous = {s["name"]: s for s in pod.get("status", {}).get("containerStatuses", [])}
        path = netns.path_of(ns_name)
        for c in pod["spec"]["containers"]:
            argv = command_for(c)
            if argv is None:
                rp.errors[c["name"]] = (
                    "image %r cannot run in podnet: give the container a command, "
                    "or use the agnhost image for the built-in workload" % c.get("image")
                )
                continue
            env = {e["name"]: str(e.get("value", "")) for e in c.get("env", []) if "name" in e}
            found = [adopt_mod.find(log_dir, c["name"], path)] if adopt else [None]

            def start(argv=argv, c=c, env=env, found=found):
                if found[0] is not None:  # once: the process the previous agent started
                    proc, found[0] = adopt_mod.Adopted(found[0]), None
                    return proc
                proc = containers.start(
                    argv,
                    path,
                    pod["metadata"]["name"],
                    os.path.join(log_dir, c["name"] + ".log"),
                    env=env,
                    resolv_conf=resolv,
                )
                adopt_mod.record_pid(log_dir, c["name"], proc.pid)
                return proc

            sup = containers.Supervisor(c, start, policy)
            if found[0] is not None:  # keep the restart count it had
                sup.restart_count = previous.get(c["name"], {}).get("restartCount", 0)
            rp.supervisors[c["name"]] = sup
            if c.get("readinessProbe"):
                rp.probes[c["name"]] = probes.ProbeState(c["readinessProbe"])
        if adopt and pod.get("status", {}).get("startTime"):
            rp.started = pod["status"]["startTime"]
        self.pods[uid] = rp
        log.info("pod %s/%s %s: %s in %s", rp.ns, rp.name, "adopted" if adopt else "started", ip, ns_name)
        if not adopt:
            names = ", ".join(c["name"] for c in pod["spec"]["containers"])
            self.event(pod, "Normal", "Started", "Started container(s) %s with IP %s" % (names, ip))
        return rp

    def write_resolv_conf(self, pod, log_dir):
        """<pod dir>/resolv.conf by dnsPolicy (podnet.dns.resolvconf); every
        container of the pod (and `podnet exec`) sees it as /etc/resolv.conf.
        The node's own resolver config ("Default") is <node dir>/resolv.conf,
        which the lab writes, else this host's."""
        from podnet.dns import resolvconf

        node_conf = ""
        for candidate in (os.path.join(self.dir, "resolv.conf"), "/etc/resolv.conf"):
            try:
                with open(candidate) as f:
                    node_conf = f.read()
                break
            except OSError:
                continue
        path = os.path.join(log_dir, "resolv.conf")
        with open(path + ".tmp", "w") as f:
            f.write(resolvconf.plan(pod, node_conf))
        os.replace(path + ".tmp", path)
        return path

    def _count(self, what, seconds):
        """Cumulative timings in <node state>/stats.json (bench/lab.py reads them)."""
        with self.stats_lock:
            self.stats[what + "_seconds"] = self.stats.get(what + "_seconds", 0.0) + seconds
            self.stats[what + "_count"] = self.stats.get(what + "_count", 0) + 1
            path = os.path.join(self.dir, "stats.json")
            with open(path + ".tmp", "w") as f:
                json.dump(self.stats, f)
            os.replace(path + ".tmp", path)

    def _stop_pod(self, rp, grace=DEFAULT_GRACE):
        """SIGTERM to every container at once, SIGKILL after `grace` seconds,
        then the network: CNI DEL and the netns."""
        sups = list(rp.supervisors.values())
        others = [threading.Thread(target=s.stop, args=(grace,), daemon=True) for s in sups[1:]]
        for t in others:
            t.start()
        if sups:
            sups[0].stop(grace)
        for t in others:
            t.join()
        if rp.netns == self.node_ns_name():  # hostNetwork: nothing of its own to tear down
            self.pods.pop(rp.uid, None)
            return
        try:
            net = libcni.find_network("podnet", self.conf_dir)
            t0 = time.monotonic()
            self.runtime.delete(net, rp.uid, netns.path_of(rp.netns), "eth0")
            self._count("cni_del", time.monotonic() - t0)
        except (libcni.ConfigError, libcni.PluginError) as exc:
            log.warning("pod %s/%s: CNI DEL: %s", rp.ns, rp.name, exc)
        netns.delete(rp.netns)
        self.pods.pop(rp.uid, None)
        log.info("pod %s/%s stopped", rp.ns, rp.name)

    def _status(self, pod, rp):
        statuses, ready_all = [], True
        for c in pod["spec"]["containers"]:
            name = c["name"]
            if name in rp.errors:
                statuses.append(
                    {
                        "name": name,
                        "ready": False,
                        "restartCount": 0,
                        "image": c.get("image", ""),
                        "imageID": "",
                        "state": {"waiting": {"reason": "InvalidImageName", "message": rp.errors[name]}},
                    }
                )
                ready_all = False
                continue
            st = rp.supervisors[name].status()
            running = "running" in st.get("state", {})
            ready = running and (name not in rp.probes or rp.probes[name].ready)
            st["ready"] = ready
            ready_all = ready_all and ready
            statuses.append(st)
        phase = "Running"
        terms = [s["state"].get("terminated") for s in statuses]
        if terms and all(terms):
            phase = "Succeeded" if all(t.get("exitCode") == 0 for t in terms) else "Failed"
        elif rp.errors:
            phase = "Pending"

        def cond(t, ok):
            return {"type": t, "status": "True" if ok else "False"}

        return {
            "phase": phase,
            "podIP": rp.ip,
            "podIPs": [{"ip": rp.ip}],
            "hostIP": self.node_ip,
            "startTime": rp.started,
            "containerStatuses": statuses,
            "conditions": [
                cond("PodScheduled", True),
                cond("Initialized", True),
                cond("ContainersReady", ready_all),
                cond("Ready", ready_all),
            ],
        }

    def _write_status(self, pod, rp):
        status = self._status(pod, rp)
        if status == rp.last_status:
            return

        # one request: a JSON patch of the status subresource that applies only
        # to this pod (a pod of the same name made since has another uid)
        ops = [
            {"op": "test", "path": "/metadata/uid", "value": rp.uid},
            {"op": "replace", "path": "/status", "value": status},
        ]
        try:
            self.objects.patch("Pod", rp.ns, rp.name, ops, ptype="json", sub="status")
        except NotFound:
            return
        except StatusError as exc:
            if exc.code == 422:  # the uid test failed: not our pod any more
                return
            raise
        rp.last_status = status

    def _tick_pod(self, pod, rp):
        for name, sup in rp.supervisors.items():
            sup.tick()
            if name in rp.probes:
                st = rp.probes[name]
                status = sup.status()
                restarts = status.get("restartCount", 0)
                if "running" not in status.get("state", {}) or rp.probe_restarts.get(name) != restarts:
                    st.reset()  # a (re)started container begins not ready, after initialDelaySeconds
                    rp.probe_restarts[name] = restarts
                if "running" in status.get("state", {}):
                    # from the node, as kubelet probes: through the bridge to the pod IP
                    ok = st.run(
                        lambda spec: probes.probe(
                            self._resolve(spec, pod),
                            rp.ip,
                            netns.path_of(rp.netns),
                            rp.name,
                            from_netns=probes.OWN_NETNS,
                        )
                    )
                    if ok is False:
                        self.event(pod, "Warning", "Unhealthy", "Readiness probe failed: %s" % st.message)
        self._write_status(pod, rp)

    def event(self, obj, etype, reason, message):
        if self.recorder is not None:
            self.recorder.event(obj, etype, reason, message)

    @staticmethod
    def _resolve(spec, pod):
        """Named probe ports -> numbers from the pod's containerPorts."""
        spec = json.loads(json.dumps(spec))
        for kind in ("httpGet", "tcpSocket"):
            port = spec.get(kind, {}).get("port")
            if isinstance(port, str) and not port.isdigit():
                for c in pod["spec"]["containers"]:
                    for p in c.get("ports", []):
                        if p.get("name") == port:
                            spec[kind]["port"] = p["containerPort"]
        return spec

    def sync(self):
        """One level-triggered pass. Pod starts (netns, CNI ADD, processes)
        run on a small thread pool so one slow ADD does not hold back the
        probes and status of pods already running."""
        mine = {p["metadata"]["uid"]: p for p in self.objects.list("Pod") if p["spec"].get("nodeName") == self.node}
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
                grace = (
                    DEFAULT_GRACE if pod is None else pod["spec"].get("terminationGracePeriodSeconds", DEFAULT_GRACE)
                )
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
                if pod.get("status", {}).get("reason") == "NetworkSetupFailed":
                    continue  # reported on the pod; deleting it is the way out
                fut = self.pool.submit(self._start_pod, pod)
                fut.add_done_callback(lambda _f: self.dirty.set())
                self.starting[uid] = fut
                continue
            self._tick_pod(pod, rp)

    def _stop_and_remove(self, rp, remove, grace):
        self._stop_pod(rp, grace)
        if remove:
            try:  # grace 0: this node is done with it (kubelet's final delete)
                self.objects.delete("Pod", rp.ns, rp.name, grace=0, uid=rp.uid)
            except (NotFound, Conflict):
                pass

    def _fail_start(self, pod, exc):
        ns_name = pod_netns(self.lab, pod["metadata"]["uid"])
        netns.delete(ns_name)
        self.event(pod, "Warning", "FailedCreatePodSandBox", "Failed to create pod sandbox: %s" % exc)

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

        self.objects.mutate("Pod", pod["metadata"]["namespace"], pod["metadata"]["name"], put, status=True)

    # ---- loops --------------------------------------------------------------------

    def adopt_or_clean(self):
        """Pods a previous agent run left on this node: adopt those the store
        still binds here (no restart, no CNI call, connections survive);
        tear down the rest. The cached CNI result ties a namespace to a pod."""
        mine = {
            p["metadata"]["uid"]: p
            for p in self.objects.list("Pod")
            if p["spec"].get("nodeName") == self.node and not p["metadata"].get("deletionTimestamp")
        }
        cached = {cid for net, cid, _ in self.runtime.attachments() if net == "podnet"}
        for uid, pod in mine.items():
            if pod["spec"].get("hostNetwork"):
                self._start_containers(pod, self.node_ns_name(), self.node_ip, adopt=True)
                continue
            name = pod_netns(self.lab, uid)
            res = (self.runtime.cached("podnet", uid, "eth0") or {}).get("result") if uid in cached else None
            if res and res.get("ips") and os.path.exists(netns.path_of(name)):
                self._start_containers(pod, name, res["ips"][0]["address"].split("/")[0], adopt=True)
        # Only pods this node attached (their result is in this node's CNI
        # cache) are ours to clean: every node's pods share the lab's prefix.
        for owner in cached:
            name = pod_netns(self.lab, owner)
            if owner in self.pods or any(rp.netns == name for rp in self.pods.values()):
                continue
            netns.kill_processes_in([name])
            try:
                net = libcni.find_network("podnet", self.conf_dir)
                self.runtime.delete(net, owner, netns.path_of(name), "eth0")
            except (libcni.ConfigError, libcni.PluginError):
                pass
            netns.delete(name)

    def run(self, stop):
        os.makedirs(self.dir, exist_ok=True)
        self.register()
        cidr = self.wait_pod_cidr(stop)
        self.write_conflist(cidr)
        self.start_cni_daemon()
        self.adopt_or_clean()
        if self.routing:
            threading.Thread(target=self.routing.run, args=(stop,), daemon=True, name="routing").start()
        extras = [threading.Thread(target=r.run, args=(stop,), daemon=True, name=type(r).__name__) for r in self.extras]
        for t in extras:
            t.start()
        from podnet.agent import metrics

        metrics.serve(self.node_ip)
        self.objects.watch_dirty("Pod", self.dirty)
        beat = time.monotonic()
        try:
            while not stop.is_set():
                self.dirty.wait(self._idle_wait())
                self.dirty.clear()
                try:
                    self.sync()
                except Exception as exc:
                    log.exception("sync failed: %s", exc)
                    stop.wait(0.5)
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
            self.mark_stopped()

    def _idle_wait(self):
        """How long the loop may sleep: until the next probe is due, while
        pods start or stop a short tick, else a second (container exits are
        then seen within a second, as kubelet's relist does; a change in the
        API wakes it at once)."""
        if self.starting or self.stopping:
            return 0.2
        now, wait = time.monotonic(), 1.0
        for rp in list(self.pods.values()):
            if any(s.state.get("waiting") for s in rp.supervisors.values()):
                wait = min(wait, 0.2)  # a container (re)starting: watch it closely
            for st in rp.probes.values():
                wait = min(wait, max(0.02, st.next_due() - now))
        return wait

    def mark_stopped(self):
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
            self.objects.mutate("Node", None, self.node, down, status=True)
        except Exception as exc:
            log.warning("marking node %s stopped: %s", self.node, exc)
