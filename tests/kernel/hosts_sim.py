""" "Hosts" that podnet's lab did not build, for the hosts acceptance test.

Each host is a network namespace (hx-<tag>-<host>) with one veth on an
underlay bridge (namespace hx-<tag>-u), and every command run "on" it runs
in a private mount namespace (and UTS namespace: its hostname is its name) of that host where /run, /etc/cni, /opt,
/var/lib are fresh tmpfs: its own /etc/cni/net.d, /opt/cni/bin,
/var/lib/cni, /var/lib/podnet and /run (so its named pod namespaces), as
on a separate machine. The machine's own directories are never written.

`Host.sh(script)` starts a shell in the host's netns that first enters the
host's mount namespace (held by a sleeper process started once), so the
join and the agent see the same files. Teardown kills every process in the
host's mount namespace (found by its namespace identity, the ones we
started and their children) and every process in the host's pods' network
namespaces (named in its own /run/netns), and removes the host namespaces
and the bridge.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

SETUP = (
    'set -e; hostname "$1"; mount --make-rprivate /; '
    "for d in /run /etc/cni /opt /var/lib; do mount -t tmpfs -o mode=0755 hx-host $d; done; "
    "mkdir -p /etc/cni/net.d /opt/cni/bin /var/lib/cni /var/lib/podnet /run/netns; "
    "exec sleep infinity"
)


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True, check=check, timeout=60)


class Host:
    def __init__(self, net: Underlay, name: str, ip: str):
        self.net, self.name, self.ip = net, name, ip
        self.ns = "%s-%s" % (net.prefix, name)
        self.holder: subprocess.Popen | None = None
        self.procs: list[subprocess.Popen] = []

    def create(self) -> None:
        sh("ip", "netns", "add", self.ns)
        veth = "%s%s" % (self.net.prefix[-6:], self.name[-4:])
        sh("ip", "link", "add", veth, "netns", self.net.ns, "type", "veth", "peer", "eth0", "netns", self.ns)
        sh("ip", "-n", self.net.ns, "link", "set", veth, "master", "br0", "up")
        sh("ip", "-n", self.ns, "addr", "add", self.ip + "/24", "dev", "eth0")
        sh("ip", "-n", self.ns, "link", "set", "eth0", "up")
        sh("ip", "-n", self.ns, "link", "set", "lo", "up")
        sh("ip", "-n", self.ns, "route", "add", "default", "via", self.net.gateway)
        self.holder = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, "unshare", "--mount", "--uts", "--propagation", "private"]
            + ["sh", "-c", SETUP, "setup", self.name],
            start_new_session=True,
        )
        deadline = time.time() + 20
        while not self._ready():
            assert self.holder.poll() is None, "host %s: its mount namespace set-up failed" % self.name
            assert time.time() < deadline, "host %s: no mount namespace after 20 s" % self.name
            time.sleep(0.1)

    def _sleeper(self) -> int | None:
        # the sleeper is the unshare's child (sh exec'd sleep)
        assert self.holder is not None
        for pid in _children(self.holder.pid) + [self.holder.pid]:
            try:
                with open("/proc/%d/cmdline" % pid, "rb") as f:
                    if f.read().startswith(b"sleep"):
                        return pid
            except OSError:
                pass
        return None

    def _ready(self) -> bool:
        pid = self._sleeper()
        if pid is None:
            return False
        try:
            with open("/proc/%d/mountinfo" % pid) as f:
                return " /var/lib " in f.read()
        except OSError:
            return False

    def mnt(self) -> str:
        return os.readlink("/proc/%d/ns/mnt" % self._sleeper())

    def argv(self, script: str) -> list[str]:
        return ["nsenter", "-t", str(self._sleeper()), "-m", "-n", "-u", "sh", "-c", script]

    def run(self, script: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        env = dict(os.environ, PATH=os.path.dirname(os.path.abspath(".venv/bin/podnet")) + ":" + os.environ["PATH"])
        r = subprocess.run(self.argv(script), capture_output=True, text=True, timeout=timeout, env=env)
        if check and r.returncode:
            raise AssertionError("host %s: %s -> %d\n%s%s" % (self.name, script, r.returncode, r.stdout, r.stderr))
        return r

    def start(self, script: str, log: str) -> subprocess.Popen:
        env = dict(os.environ, PATH=os.path.dirname(os.path.abspath(".venv/bin/podnet")) + ":" + os.environ["PATH"])
        with open(log, "w") as out:
            p = subprocess.Popen(
                self.argv(script), stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        self.procs.append(p)
        return p

    def pod_namespaces(self) -> set[tuple[int, int]]:
        """(dev, inode) of the network namespaces named in the host's own
        /run/netns: its pods'. Their processes have mount namespaces of
        their own, so the host's mount namespace does not find them."""
        sleeper = self._sleeper()
        if sleeper is None:
            return set()
        root = "/proc/%d/root/run/netns" % sleeper
        out = set()
        try:
            names = os.listdir(root)
        except OSError:
            return out
        for name in names:
            try:
                st = os.stat(os.path.join(root, name))
            except OSError:
                continue
            out.add((st.st_dev, st.st_ino))
        return out

    def destroy(self) -> None:
        from podnet.kernel.netns import pids_in_namespaces

        if self.holder is not None and self._sleeper() is not None:
            ident = self.mnt()
            pods = self.pod_namespaces()
            for _round in range(50):
                pids = [p for p in _all_pids() if _mnt_of(p) == ident]
                pids += [p for p in pids_in_namespaces("net", pods) if p not in pids and p != os.getpid()]
                if not pids:
                    break
                for p in pids:
                    try:
                        os.kill(p, signal.SIGTERM if _round < 20 else signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                time.sleep(0.2)
        for p in self.procs + ([self.holder] if self.holder else []):
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                pass
        sh("ip", "netns", "del", self.ns, check=False)


class Underlay:
    def __init__(self, prefix: str, subnet: str = "192.168.211"):
        self.prefix, self.subnet = prefix, subnet
        self.ns = prefix + "-u"
        self.gateway = subnet + ".254"
        self.hosts: list[Host] = []

    def create(self) -> None:
        sh("ip", "netns", "add", self.ns)
        sh("ip", "-n", self.ns, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", self.ns, "addr", "add", self.gateway + "/24", "dev", "br0")
        sh("ip", "-n", self.ns, "link", "set", "br0", "up")
        sh("ip", "-n", self.ns, "link", "set", "lo", "up")

    def host(self, name: str, last_octet: int) -> Host:
        h = Host(self, name, "%s.%d" % (self.subnet, last_octet))
        self.hosts.append(h)
        h.create()
        return h

    def destroy(self) -> None:
        for h in reversed(self.hosts):
            h.destroy()
        sh("ip", "netns", "del", self.ns, check=False)


def _all_pids() -> list[int]:
    return [int(d) for d in os.listdir("/proc") if d.isdigit() and int(d) != os.getpid()]


def _mnt_of(pid: int) -> str | None:
    try:
        return os.readlink("/proc/%d/ns/mnt" % pid)
    except OSError:
        return None


def _children(pid: int) -> list[int]:
    out = []
    for p in _all_pids():
        try:
            with open("/proc/%d/stat" % p) as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(p)
        except (OSError, ValueError, IndexError):
            pass
    return out


def start_etcd(members: list[Host], logdir: str) -> str:
    """A real etcd cluster (Debian's etcd-server), one member per host, its
    data in the host's private /var/lib. -> the store URL for podnet server."""
    cluster = ",".join("%s=http://%s:2380" % (h.name, h.ip) for h in members)
    for h in members:
        h.start(
            "exec etcd --name %s --data-dir /var/lib/etcd-%s --listen-client-urls http://%s:2379"
            " --advertise-client-urls http://%s:2379 --listen-peer-urls http://%s:2380"
            " --initial-advertise-peer-urls http://%s:2380 --initial-cluster %s"
            " --initial-cluster-token hx-hosts --initial-cluster-state new"
            % (h.name, h.name, h.ip, h.ip, h.ip, h.ip, cluster),
            os.path.join(logdir, h.name + ".log"),
        )
    deadline = time.time() + 60
    for h in members:
        while '"health":"true"' not in h.run("curl -s -m 2 http://%s:2379/health" % h.ip, check=False).stdout:
            assert time.time() < deadline, "etcd member %s not healthy in 60 s" % h.name
            time.sleep(0.3)
    return "etcd://" + ",".join("%s:2379" % h.ip for h in members)
