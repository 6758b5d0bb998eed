"""Interop: podman, a real CNI runtime nobody here wrote, runs busybox
containers on a podnet conflist, and they reach each other.

podman 4.3 with `network_backend = "cni"` drives the plugins exactly as it
drives the reference ones: it creates the container's netns, execs `podnet`
(which delegates to `podnet-ipam`) and then `podnet-portmap` with a 1.0.0
conflist, caches the result, and runs DEL on `podman rm`.

Everything podman owns is private to the test:
  * podman runs under `nsenter --net=<node netns>`, so the bridge, the veths,
    the nft tables and the host-port sockets all live in a namespace of ours
    (not `ip netns exec`: its sysfs remount hides the cgroup mounts);
  * CONTAINERS_CONF / CONTAINERS_STORAGE_CONF point at files in a private
    /tmp/pnt-podman-* dir (short: podman refuses a runroot over 50
    characters), and `--root/--runroot` keep the (vfs) storage there;
    `tmp_dir` keeps the engine's run files and the (file) locks there, so
    /run/libpod and /dev/shm/libpod_lock are never made, and a `runc` wrapper
    passes `--root` so /run/runc is not made either;
  * `--cgroup-parent /pnt-<pid>-...` keeps the container and conmon cgroups
    under a name of ours, removed in teardown (cgroupfs manager);
  * `runtime = "runc"` (crun refuses this VM's hybrid cgroups) and explicit
    `default_ulimits` (podman's defaults are refused here);
  * the container's rootfs is a directory with a static busybox in it
    (`--rootfs DIR` is a boolean flag: DIR is the positional "image").

podman 4.3 has no setting for the CNI result cache: libcni writes it to
/var/lib/cni/results/<network>-<containerID>-<ifname>. podman removes each
entry on `podman rm`; teardown removes whatever of ours is still there and
the directories if this test created them and they are empty.

podman does not show a plugin's stderr when the plugin succeeds, so a thin
executable that silently fell back to in-process would look just like one
served by the daemon. The daemon variant therefore runs test-only copies of
the thin executables whose in-process fallback answers an error: a container
that starts there was networked by the daemon.
"""

import glob
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid

import pytest

from tests.conftest import PREFIX, sh

pytestmark = pytest.mark.interop

NETWORK = "pntnet"
SUBNET = ipaddress.ip_network("10.88.7.0/24")
GATEWAY = ipaddress.ip_address("10.88.7.1")
BRIDGE = "pnbr1"
HTTP_PORT = 8080
HOST_PORT = 18080
TIMEOUT = 120  # one podman command
WAIT = 30  # a server to listen, an address to be released
BUSYBOX = "/bin/busybox"
APPLETS = ("sh", "ip", "wget", "httpd", "timeout", "cat", "echo", "sleep")
CNI_CACHE = "/var/lib/cni"
CNI_RESULTS = os.path.join(CNI_CACHE, "results")
# Outside the pod subnet, on a veth between the node and a "remote" netns.
LINK_NODE_IP, LINK_REMOTE_IP = "10.88.9.1", "10.88.9.2"

MODES = ("in-process", "daemon")

# The thin executable, except that the in-process fallback answers an error.
# VERSION is the exception: libcni sends it only {"cniVersion": ...} (no
# daemonSocket to forward to) when podman validates the conflist.
STRICT_TEMPLATE = """#!{python} -IS
# test-only {name}: podnet's thin client with the in-process fallback forbidden
import sys
sys.path[0:0] = [{root!r}]
from podnet.cni import thin
_in_process = thin.run_in_process
def _refuse(plugin, env, raw):
    if env.get("CNI_COMMAND") == "VERSION":
        return _in_process(plugin, env, raw)
    return (1, b'{{"cniVersion": "1.0.0", "code": 999, "msg": "podnet daemon did not answer '
               b'(in-process fallback forbidden by the podman interop test)"}}\\n',
            b"in-process fallback forbidden\\n")
thin.run_in_process = _refuse
sys.exit(thin.main({name!r}, thin.environ(), sys.stdin.buffer, sys.stdout.buffer, sys.stderr.buffer))
"""


# ---- what the machine must have ----------------------------------------------


def _require_tools():
    missing = [
        tool
        for tool in ("podman", "runc", "conmon", "nsenter", "nft", "ss", "ip")
        if shutil.which(tool) is None and not os.path.exists("/usr/libexec/podman/" + tool)
    ]
    if missing:
        pytest.fail(
            "missing for the podman interop test: %s (./setup.sh installs podman, runc, "
            "conmon and busybox-static)" % ", ".join(missing),
            pytrace=False,
        )
    if not os.access(BUSYBOX, os.X_OK):
        pytest.fail("%s is missing: ./setup.sh installs busybox-static" % BUSYBOX, pytrace=False)
    with open(BUSYBOX, "rb") as f:
        head = f.read(1 << 16)
    if b"ld-linux" in head or b"/lib/ld-" in head:
        pytest.fail("%s is dynamically linked; the container rootfs needs busybox-static" % BUSYBOX, pytrace=False)


# ---- podman with everything private -------------------------------------------


class Podman:
    """One private podman installation driven from inside the node netns."""

    def __init__(self, node, base, plugin_dirs, data_dir, daemon_sock=None):
        self.node = node
        self.base = base
        self.plugin_dirs = plugin_dirs
        self.data_dir = data_dir
        self.daemon_sock = daemon_sock
        self.root = os.path.join(base, "root")
        self.runroot = os.path.join(base, "runroot")
        self.runc_root = os.path.join(base, "runc")
        self.rootfs = os.path.join(base, "rootfs")
        self.conf_dir = os.path.join(base, "net.d")
        self.cgroup_parent = "/%spodman-%s" % (PREFIX, uuid.uuid4().hex[:8])
        self.marker = "podnet-interop-%s" % uuid.uuid4().hex
        self.ids = set()  # every container ID we saw
        self.sandboxes = set()  # every netns path podman gave them
        self.cache_existed = {d: os.path.isdir(d) for d in (CNI_CACHE, CNI_RESULTS)}
        self.containers_conf = os.path.join(base, "containers.conf")
        self.storage_conf = os.path.join(base, "storage.conf")

    # setup

    def setup(self):
        for d in (self.root, self.runroot, self.conf_dir, os.path.join(self.base, "tmp")):
            os.makedirs(d, exist_ok=True)
        self._write_rootfs()
        self.write_conflist()
        # runc keeps its state in /run/runc unless given --root, and podman's
        # --runtime-flag does not reach the `podman container cleanup` that
        # conmon runs when a container exits: a wrapper named runc does.
        runc_wrapper = os.path.join(self.base, "runtime", "runc")
        os.makedirs(os.path.dirname(runc_wrapper))
        with open(runc_wrapper, "w") as f:
            f.write('#!/bin/sh\nexec %s --root %s "$@"\n' % (shutil.which("runc"), self.runc_root))
        os.chmod(runc_wrapper, 0o755)
        with open(self.containers_conf, "w") as f:
            f.write(
                CONTAINERS_CONF.format(
                    conf_dir=self.conf_dir,
                    plugin_dirs=json.dumps(self.plugin_dirs),
                    tmp_dir=os.path.join(self.base, "tmp"),
                    runc=json.dumps(runc_wrapper),
                )
            )
        with open(self.storage_conf, "w") as f:
            f.write('[storage]\ndriver = "vfs"\ngraphroot = "%s"\nrunroot = "%s"\n' % (self.root, self.runroot))
        self._check_network()

    def write_conflist(self, **podnet_extra):
        """The podnet conflist; podman rereads it on every command."""
        podnet = {
            "type": "podnet",
            "bridge": BRIDGE,
            "isGateway": True,
            "ipMasq": True,
            "ipam": {
                "type": "podnet-ipam",
                "ranges": [[{"subnet": str(SUBNET)}]],
                "dataDir": self.data_dir,
                "routes": [{"dst": "0.0.0.0/0"}],
            },
        }
        podnet.update(podnet_extra)
        portmap = {"type": "podnet-portmap", "capabilities": {"portMappings": True}}
        if self.daemon_sock:
            podnet["daemonSocket"] = self.daemon_sock
            portmap["daemonSocket"] = self.daemon_sock
        conflist = {"cniVersion": "1.0.0", "name": NETWORK, "plugins": [podnet, portmap]}
        with open(os.path.join(self.conf_dir, NETWORK + ".conflist"), "w") as f:
            json.dump(conflist, f, indent=1)

    def _check_network(self):
        """podman skips a conflist it cannot validate (it execs VERSION on
        every plugin) with only a warning; make that loud."""
        res = self("--log-level=warn", "network", "inspect", NETWORK, check=False)
        if res.returncode != 0 or "rror validating" in res.stderr:
            raise AssertionError("podman does not accept the podnet conflist:\n%s%s" % (res.stdout, res.stderr))
        net = json.loads(res.stdout)[0]
        # The driver is the first plugin's type; podman cannot read podnet-ipam's ranges.
        assert net["name"] == NETWORK and net["driver"] == "podnet", net

    def _write_rootfs(self):
        bindir = os.path.join(self.rootfs, "bin")
        os.makedirs(bindir)
        shutil.copy2(BUSYBOX, os.path.join(bindir, "busybox"))
        for applet in APPLETS:
            os.symlink("busybox", os.path.join(bindir, applet))
        os.makedirs(os.path.join(self.rootfs, "www"))
        with open(os.path.join(self.rootfs, "www", "index.html"), "w") as f:
            f.write(self.marker + "\n")

    # running podman

    def env(self):
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("CONTAINER_HOST", "CONTAINER_CONNECTION", "CONTAINERS_REGISTRIES_CONF")
        }
        env["CONTAINERS_CONF"] = self.containers_conf
        env["CONTAINERS_STORAGE_CONF"] = self.storage_conf
        env.setdefault("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        return env

    def argv(self, *args):
        return [
            "nsenter",
            "--net=/run/netns/" + self.node,
            "--",
            "podman",
            "--root",
            self.root,
            "--runroot",
            self.runroot,
            "--storage-driver",
            "vfs",
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "file",
        ] + list(args)

    def __call__(self, *args, check=True, timeout=TIMEOUT):
        try:
            res = subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=timeout, env=self.env())
        except subprocess.TimeoutExpired as exc:
            raise AssertionError("podman %s: no answer within %d s" % (" ".join(args), timeout)) from exc
        if check and res.returncode != 0:
            raise AssertionError(
                "podman %s failed (%d):\n%s%s" % (" ".join(args), res.returncode, res.stdout, res.stderr)
            )
        return res

    def run_opts(self, *extra):
        return ["--network", NETWORK, "--cgroup-parent", self.cgroup_parent] + list(extra)

    def start(self, name, *cmd, publish=()):
        """`podman run -d`; returns the inspected container."""
        opts = self.run_opts("-d", "--name", name)
        for p in publish:
            opts += ["-p", p]
        cid = self("run", *opts, "--rootfs", self.rootfs, *cmd).stdout.strip().splitlines()[-1]
        self.ids.add(cid)
        return self.inspect(name)

    def once(self, *cmd, name=None):
        """`podman run --rm` in the foreground; returns the CompletedProcess."""
        opts = self.run_opts("--rm")
        if name:
            opts += ["--name", name]
        return self("run", *opts, "--rootfs", self.rootfs, *cmd)

    def inspect(self, name):
        doc = json.loads(self("inspect", "--type", "container", name).stdout)[0]
        self.ids.add(doc["Id"])
        key = doc["NetworkSettings"].get("SandboxKey")
        if key:
            self.sandboxes.add(key)
        net = doc["NetworkSettings"]["Networks"][NETWORK]
        return {
            "id": doc["Id"],
            "ip": ipaddress.ip_address(net["IPAddress"]),
            "prefixlen": net["IPPrefixLen"],
            "gateway": net["Gateway"],
            "netns": key,
        }

    # teardown: returns what went wrong, after undoing all of it that it can

    def cleanup(self):
        problems = []
        try:
            if not os.path.exists(self.containers_conf):
                raise AssertionError("setup did not get as far as podman")
            for line in self("ps", "-a", "-q", "--no-trunc", check=False).stdout.split():
                self.ids.add(line.strip())
            res = self("rm", "-f", "-a", "-t", "0", check=False)
            if res.returncode != 0:
                problems.append("podman rm -f -a: %s%s" % (res.stdout, res.stderr))
            left = self("ps", "-a", "-q", check=False).stdout.split()
            if left:
                problems.append("containers still there after podman rm -f -a: %s" % left)
        except AssertionError as exc:
            problems.append(str(exc))
        problems += self._stop_our_processes()
        problems += self._remove_sandboxes()
        problems += self._clean_cni_cache()
        problems += self._remove_cgroups()
        problems += self._unmount_below_base()
        shutil.rmtree(self.base, ignore_errors=True)
        return problems

    def _our_pids(self):
        """conmon and podman processes whose command line names our private dirs."""
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                with open("/proc/%s/cmdline" % entry, "rb") as f:
                    cmdline = f.read()
            except OSError:
                continue
            if self.base.encode() in cmdline:
                pids.append(int(entry))
        return pids

    def _stop_our_processes(self):
        deadline = time.monotonic() + 10
        pids = self._our_pids()
        while pids and time.monotonic() < deadline:  # conmon exits a moment after rm
            time.sleep(0.1)
            pids = self._our_pids()
        if not pids:
            return []
        for pid in pids:  # by the PIDs we identified, never by name
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return ["processes of ours outlived podman rm (killed): %s" % pids]

    def _remove_sandboxes(self):
        left = [p for p in sorted(self.sandboxes) if os.path.exists(p)]
        for path in left:
            subprocess.run(["umount", "-l", path], capture_output=True)
            try:
                os.unlink(path)
            except OSError:
                pass
        return ["podman left its netns behind (removed): %s" % left] if left else []

    def _clean_cni_cache(self):
        problems = []
        for cid in self.ids:
            for path in glob.glob(os.path.join(CNI_RESULTS, "%s-%s-*" % (NETWORK, glob.escape(cid)))):
                problems.append("CNI result cache entry left (removed): %s" % path)
                os.unlink(path)
        for d in (CNI_RESULTS, CNI_CACHE):  # only what this test made, and only if empty
            if not self.cache_existed[d]:
                try:
                    os.rmdir(d)
                except OSError:
                    pass
        return problems

    def _remove_cgroups(self):
        tops = glob.glob("/sys/fs/cgroup/*%s" % self.cgroup_parent) + glob.glob("/sys/fs/cgroup%s" % self.cgroup_parent)
        deadline = time.monotonic() + 10
        while True:
            busy = []
            for top in tops:
                for d, _, _ in sorted(os.walk(top), key=lambda w: -len(w[0])):
                    try:
                        os.rmdir(d)
                    except FileNotFoundError:
                        pass
                    except OSError as exc:
                        busy.append("%s (%s)" % (d, exc.strerror))
            if not busy:
                return []
            if time.monotonic() > deadline:
                return ["cgroups of ours could not be removed: %s" % busy]
            time.sleep(0.1)

    def _unmount_below_base(self):
        with open("/proc/self/mounts") as f:
            points = [line.split()[1] for line in f]
        ours = [p for p in points if p.startswith(self.base + "/")]
        for p in sorted(ours, key=len, reverse=True):
            subprocess.run(["umount", "-l", p], capture_output=True)
        return ["mounts left below %s (unmounted): %s" % (self.base, ours)] if ours else []


CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
default_sysctls = []
log_driver = "k8s-file"

[network]
network_backend = "cni"
network_config_dir = "{conf_dir}"
cni_plugin_dirs = {plugin_dirs}

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
lock_type = "file"
tmp_dir = "{tmp_dir}"

[engine.runtimes]
runc = [{runc}]
"""


def _strict_bin(d):
    """The compiled forwarder, as installed, with thin scripts behind it that
    never fall back to in-process (daemon variant): podman's calls go through
    the forwarder to the daemon, and fail loudly if they ever do not."""
    from podnet.cni.install import PLUGINS, THIN_DIR, build, fastest_python, package_root

    os.makedirs(os.path.join(d, THIN_DIR))
    forwarder = build()
    for name in PLUGINS:
        shutil.copy2(forwarder, os.path.join(d, name))
        path = os.path.join(d, THIN_DIR, name)
        with open(path, "w") as f:
            f.write(STRICT_TEMPLATE.format(python=fastest_python(), root=package_root(), name=name))
        os.chmod(path, 0o755)
    return d


@pytest.fixture(params=MODES)
def podman(request, node, cni_bin, ref_bin, data_dir, tmp_path):
    _require_tools()
    # Short on purpose: podman refuses a runroot longer than 50 characters
    # (conmon's attach socket lives below it).
    base = tempfile.mkdtemp(prefix="pnt-podman-")
    if request.param == "daemon":
        # Requested here, so pytest tears the daemon down after this fixture:
        # `podman rm` below still reaches it.
        sock = request.getfixturevalue("daemon").sock
        plugin_dirs = [_strict_bin(str(tmp_path / "strict-bin")), ref_bin]
    else:
        sock = None
        plugin_dirs = [cni_bin, ref_bin]
    pm = Podman(node, base, plugin_dirs, data_dir, daemon_sock=sock)
    try:
        pm.setup()
        yield pm
    finally:
        problems = pm.cleanup()
    if problems:
        pytest.fail("podman teardown:\n  " + "\n  ".join(problems), pytrace=False)


# ---- looking at the node -----------------------------------------------------


def wait_listening(netns_path, port, what):
    """Until something listens on TCP `port` inside `netns_path`."""
    deadline = time.monotonic() + WAIT
    while True:
        res = subprocess.run(
            ["nsenter", "--net=" + netns_path, "--", "ss", "-Hltn", "sport = :%d" % port],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if res.returncode == 0 and res.stdout.strip():
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                "%s: nothing listens on port %d within %d s (%s)" % (what, port, WAIT, res.stderr.strip())
            )
        time.sleep(0.05)


def ipam_allocations(data_dir):
    """{ip: (containerID, ifname)} as podnet-ipam recorded them on disk."""
    d = os.path.join(data_dir, NETWORK)
    out = {}
    for name in os.listdir(d) if os.path.isdir(d) else []:
        try:
            ip = ipaddress.ip_address(name)
        except ValueError:
            continue
        with open(os.path.join(d, name), "rb") as f:
            cid, _, ifname = f.read().decode().partition("\r\n")
        out[ip] = (cid.strip(), ifname.strip())
    return out


def wait_released(data_dir, ip):
    deadline = time.monotonic() + WAIT
    while ip in ipam_allocations(data_dir):
        if time.monotonic() > deadline:
            raise AssertionError("podnet-ipam still holds %s %d s after the container went away" % (ip, WAIT))
        time.sleep(0.05)


def masq_addresses(node):
    """Pod addresses podnet's ipMasq table (`inet podnet-bridge`) in the node
    netns holds: host addresses that key an element of any of its sets or
    maps (so the check survives a change between set and verdict-map shape;
    subnets are prefixes, not addresses, and are left out)."""
    res = sh(node, "nft", "-j", "list", "table", "inet", "podnet-bridge", check=False)
    if res.returncode != 0:
        return set()
    out = set()
    for item in json.loads(res.stdout).get("nftables", []):
        coll = item.get("set") or item.get("map") or {}
        for elem in coll.get("elem", []):
            key = elem[0] if isinstance(elem, list) else elem  # map: [key, verdict]
            if isinstance(key, dict) and "elem" in key:  # with a comment
                key = key["elem"].get("val")
            if isinstance(key, str):
                try:
                    out.add(ipaddress.ip_address(key))
                except ValueError:
                    pass
    return out


def published_ports(node):
    """(proto, port) keys of podnet-portmap's hostports map in the node netns."""
    res = sh(node, "nft", "-j", "list", "map", "inet", "podnet-portmap", "hostports", check=False)
    if res.returncode != 0:
        return set()
    keys = set()

    def walk(obj):  # an element is [key, verdict]; the key may be wrapped with a comment
        if isinstance(obj, dict):
            if "concat" in obj:
                proto, port = obj["concat"]
                keys.add((proto, int(port)))
                return
            for value in obj.values():
                walk(value)
        elif isinstance(obj, list):
            for value in obj:
                walk(value)

    for item in json.loads(res.stdout).get("nftables", []):
        walk(item.get("map", {}).get("elem", []))
    return keys


def host_veth(cid):
    from podnet.cni.bridge import host_veth_name

    return host_veth_name(cid, "eth0")


def node_link(node, name):
    res = sh(node, "ip", "-j", "-d", "link", "show", "dev", name, check=False)
    return json.loads(res.stdout)[0] if res.returncode == 0 and res.stdout.strip() else None


def fetch(ns, url):
    """busybox wget from a netns of ours (the host's static busybox); -T
    crashes this busybox build, hence `timeout`."""
    return sh(ns, BUSYBOX, "timeout", "20", BUSYBOX, "wget", "-q", "-O", "-", url, timeout=40).stdout


def httpd_clients(podman, name):
    """Client addresses busybox httpd -vv logged (podman logs)."""
    res = podman("logs", name)
    # e.g. "[::ffff:10.88.7.3]:59866: url:/index.html" (httpd listens dual-stack)
    return set(re.findall(r"\b(\d+\.\d+\.\d+\.\d+)\]?:\d+: ", res.stdout + res.stderr))


HTTPD = ("httpd", "-f", "-vv", "-p", str(HTTP_PORT), "-h", "/www")


# ---- the tests ---------------------------------------------------------------


def test_container_reaches_container(podman, node, data_dir):
    srv = podman.start("srv", *HTTPD)

    # podman got its address from podnet-ipam, in the configured subnet.
    assert srv["ip"] in SUBNET, srv
    assert srv["prefixlen"] == SUBNET.prefixlen and srv["gateway"] == str(GATEWAY), srv
    assert ipam_allocations(data_dir).get(srv["ip"]) == (srv["id"], "eth0"), (
        "podnet-ipam did not record %s for %s: %s" % (srv["ip"], srv["id"], ipam_allocations(data_dir))
    )
    assert os.path.isfile(os.path.join(data_dir, NETWORK, str(srv["ip"])))

    # The podnet bridge and host veth exist in the node netns, not in the root one.
    bridge = node_link(node, BRIDGE)
    assert bridge and bridge["linkinfo"]["info_kind"] == "bridge", bridge
    assert "%s/%d" % (GATEWAY, SUBNET.prefixlen) in sh(node, "ip", "-4", "-o", "addr", "show", "dev", BRIDGE).stdout
    veth = node_link(node, host_veth(srv["id"]))
    assert veth and veth.get("master") == BRIDGE, veth
    assert subprocess.run(["ip", "link", "show", "dev", BRIDGE], capture_output=True).returncode != 0, (
        "a %s link appeared in the root network namespace" % BRIDGE
    )
    assert srv["ip"] in masq_addresses(node)

    # Inside the container: eth0 carries the address, the default route is the bridge.
    inside = podman("exec", "srv", "sh", "-c", "ip -4 -o addr show dev eth0; ip -4 route").stdout
    assert "inet %s/%d" % (srv["ip"], SUBNET.prefixlen) in inside, inside
    assert "default via %s dev eth0" % GATEWAY in inside, inside

    # A second container fetches the first one's page over the podnet bridge.
    wait_listening(srv["netns"], HTTP_PORT, "busybox httpd in srv")
    res = podman.once(
        "sh",
        "-c",
        "ip -4 -o addr show dev eth0 && timeout 20 wget -q -O - http://%s:%d/index.html" % (srv["ip"], HTTP_PORT),
        name="client",
    )
    assert podman.marker in res.stdout, res.stdout + res.stderr
    client_ip = ipaddress.ip_address(re.search(r"inet (\S+)/", res.stdout).group(1))
    assert client_ip in SUBNET and client_ip != srv["ip"], res.stdout
    # ... without NAT inside the pod network: httpd saw the client's own address.
    assert str(client_ip) in httpd_clients(podman, "srv")

    # `podman run --rm` ran DEL: the client's address went back to the pool.
    wait_released(data_dir, client_ip)
    assert client_ip not in masq_addresses(node)

    # And `podman rm` of the server undoes all of podnet's ADD.
    podman("rm", "-f", "-t", "0", "srv")
    wait_released(data_dir, srv["ip"])
    assert node_link(node, host_veth(srv["id"])) is None
    assert srv["ip"] not in masq_addresses(node)
    assert not os.path.exists(srv["netns"])


def test_published_port(podman, node, namespaces, data_dir):
    # As podman's own default network: a pod reaching itself through its host
    # port is DNATed back out of the bridge port it came in on, which the
    # bridge only allows in hairpin mode (bridge-nf-call-iptables is on in
    # every netns on this kernel, so the DNAT happens at bridge level).
    podman.write_conflist(hairpinMode=True)
    srv = podman.start("web", *HTTPD, publish=["%d:%d" % (HOST_PORT, HTTP_PORT)])
    assert srv["ip"] in SUBNET
    veth = node_link(node, host_veth(srv["id"]))
    assert veth and veth["linkinfo"]["info_slave_data"]["hairpin"] is True, veth
    assert ("tcp", HOST_PORT) in published_ports(node), sh(node, "nft", "list", "ruleset").stdout
    wait_listening(srv["netns"], HTTP_PORT, "busybox httpd in web")

    # From the node itself (nat output hook), to the bridge address.
    assert podman.marker in fetch(node, "http://%s:%d/index.html" % (GATEWAY, HOST_PORT))

    # From another machine (nat prerouting hook): a netns linked to the node.
    remote = namespaces.new("remote")
    sh(node, "ip", "link", "add", "pmx0", "type", "veth", "peer", "name", "pmx1", "netns", "/run/netns/" + remote)
    sh(node, "ip", "addr", "add", LINK_NODE_IP + "/24", "dev", "pmx0")
    sh(node, "ip", "link", "set", "pmx0", "up")
    sh(remote, "ip", "addr", "add", LINK_REMOTE_IP + "/24", "dev", "pmx1")
    sh(remote, "ip", "link", "set", "pmx1", "up")
    sh(remote, "ip", "link", "set", "lo", "up")
    assert podman.marker in fetch(remote, "http://%s:%d/index.html" % (LINK_NODE_IP, HOST_PORT))
    assert LINK_REMOTE_IP in httpd_clients(podman, "web"), "the DNAT should keep the client's source"

    # Another container reaches the published port through the node address,
    # and the server reaches itself through it (hairpin).
    res = podman.once("timeout", "20", "wget", "-q", "-O", "-", "http://%s:%d/index.html" % (LINK_NODE_IP, HOST_PORT))
    assert podman.marker in res.stdout, res.stdout + res.stderr
    res = podman(
        "exec", "web", "timeout", "20", "wget", "-q", "-O", "-", "http://%s:%d/index.html" % (GATEWAY, HOST_PORT)
    )
    assert podman.marker in res.stdout, res.stdout + res.stderr

    # `podman rm` unpublishes the port and releases the address.
    podman("rm", "-f", "-t", "0", "web")
    assert ("tcp", HOST_PORT) not in published_ports(node)
    wait_released(data_dir, srv["ip"])
    assert (
        sh(
            remote,
            BUSYBOX,
            "timeout",
            "5",
            BUSYBOX,
            "wget",
            "-q",
            "-O",
            "-",
            "http://%s:%d/" % (LINK_NODE_IP, HOST_PORT),
            check=False,
        ).returncode
        != 0
    )
