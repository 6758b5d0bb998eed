"""Re-attaching to pods a previous agent started, so restarting the agent
changes nothing: no container restarts, no CNI call, established connections
untouched.

When an agent starts a container it writes `<pod dir>/<container>.pid`. A new
agent finds the pod's namespace and its cached CNI result, and for each
container a recorded PID that is alive and really lives in that pod's network
namespace (compared by namespace inode, so a reused PID elsewhere never
matches). It watches that PID as an `Adopted` process: it is not our child,
so liveness comes from /proc, and its exit code is unknown (reported as 255,
so OnFailure and Always both restart it).
"""

import os
import signal
import subprocess
import time

UNKNOWN_EXIT = 255


def pid_file(log_dir, container):
    return os.path.join(log_dir, container + ".pid")


def record_pid(log_dir, container, pid):
    path = pid_file(log_dir, container)
    with open(path + ".tmp", "w") as f:
        f.write(str(pid))
    os.replace(path + ".tmp", path)


def _alive(pid):
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")
    except (OSError, IndexError):
        return False


def lives_in(pid, netns_path):
    try:
        a, b = os.stat("/proc/%d/ns/net" % pid), os.stat(netns_path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def find(log_dir, container, netns_path):
    """The recorded PID of a container still running in netns_path, or None."""
    try:
        with open(pid_file(log_dir, container)) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) and lives_in(pid, netns_path) else None


class Adopted:
    """Enough of subprocess.Popen for the Supervisor and containers.stop()."""

    def __init__(self, pid):
        self.pid = pid
        self.returncode = None

    def poll(self):
        if self.returncode is None and not _alive(self.pid):
            self.returncode = UNKNOWN_EXIT
        return self.returncode

    def wait(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired("adopted pid %d" % self.pid, timeout)
            time.sleep(0.01)
        return self.returncode

    def send_signal(self, sig):
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass

    def terminate(self):
        self.send_signal(signal.SIGTERM)

    def kill(self):
        self.send_signal(signal.SIGKILL)


def adopt_or_clean(agent):
    """Pods a previous agent run left on this node: adopt those the store
    still binds here (no restart, no CNI call, connections survive); tear
    down the rest. The cached CNI result ties a namespace to a pod."""
    from podnet.agent.agent import pod_netns
    from podnet.cni import libcni
    from podnet.kernel import netns

    mine = {
        p["metadata"]["uid"]: p
        for p in agent.objects.list("Pod")
        if p["spec"].get("nodeName") == agent.node and not p["metadata"].get("deletionTimestamp")
    }
    cached = {cid for net, cid, _ in agent.runtime.attachments() if net == "podnet"}
    for uid, pod in mine.items():
        if pod["spec"].get("hostNetwork"):
            agent._start_containers(pod, agent.node_ns_name(), agent.node_ip, adopt=True)
            continue
        name = pod_netns(agent.lab, uid)
        res = (agent.runtime.cached("podnet", uid, "eth0") or {}).get("result") if uid in cached else None
        if res and res.get("ips") and os.path.exists(netns.path_of(name)):
            agent._start_containers(pod, name, res["ips"][0]["address"].split("/")[0], adopt=True)
    # Only pods this node attached (their result is in this node's CNI
    # cache) are ours to clean: every node's pods share the lab's prefix.
    for owner in cached:
        name = pod_netns(agent.lab, owner)
        if owner in agent.pods or any(rp.netns == name for rp in agent.pods.values()):
            continue
        netns.kill_processes_in([name])
        try:
            net = libcni.find_network("podnet", agent.conf_dir)
            agent.runtime.delete(net, owner, netns.path_of(name), "eth0")
        except (libcni.ConfigError, libcni.PluginError):
            pass
        netns.delete(name)
