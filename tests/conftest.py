"""The one shared fixture set for every tier.

Kernel tests create network namespaces named `pnt-<pid>-<n>-<label>` (ours,
recognisable, unique per test run) and delete them in teardown, also when the
test fails. At the end of the session we look for anything of ours still on
the machine (namespaces, root-namespace links and nft tables, daemons) and
fail the run if something leaked: a leak is a bug in the code path that made it.
"""

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PREFIX = "pnt-%d-" % os.getpid()
_counter = itertools.count(1)
IS_ROOT = os.geteuid() == 0


def pytest_collection_modifyitems(config, items):
    if IS_ROOT:
        return
    skip = pytest.mark.skip(reason="needs root: creates network namespaces (CI runs as root)")
    for item in items:
        if "kernel" in item.keywords or "interop" in item.keywords:
            item.add_marker(skip)


# ---- namespaces ---------------------------------------------------------------


class Namespaces:
    """Creates named netns for one test and removes them all afterwards."""

    def __init__(self):
        self.names = []

    def new(self, label="ns"):
        from podnet.kernel import netns

        name = "%s%d-%s" % (PREFIX, next(_counter), label)
        netns.create(name)
        self.names.append(name)
        return name

    def path(self, name):
        return "/run/netns/" + name

    def remove(self, name):
        from podnet.kernel import netns

        netns.delete(name)
        self.names.remove(name)

    def cleanup(self):
        from podnet.kernel import netns

        for name in reversed(self.names):
            netns.delete(name)
        self.names.clear()


@pytest.fixture
def namespaces():
    ns = Namespaces()
    try:
        yield ns
    finally:
        ns.cleanup()


def sh(ns, *argv, check=True, timeout=30, input=None):
    """Run a command inside netns `ns` (a name), return CompletedProcess."""
    cmd = ["nsenter", "--net=/run/netns/%s" % ns, "--"] + list(argv) if ns else list(argv)
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input)
    if check and res.returncode != 0:
        raise AssertionError("%s failed (%d): %s%s" % (" ".join(argv), res.returncode, res.stdout, res.stderr))
    return res


# ---- the plugins --------------------------------------------------------------


@pytest.fixture(scope="session")
def cni_bin(tmp_path_factory):
    """The podnet executables, freshly generated for this run."""
    from podnet.cni.install import install

    d = str(tmp_path_factory.mktemp("cni-bin"))
    install(d)
    return d


REF_BIN = "/usr/lib/cni"


@pytest.fixture(scope="session")
def ref_bin():
    if not os.path.exists(os.path.join(REF_BIN, "bridge")):
        pytest.fail("the Go reference plugins are missing: ./setup.sh installs containernetworking-plugins")
    return REF_BIN


class Plugin:
    """Exec a CNI plugin the way a runtime does, inside the node netns."""

    def __init__(self, bin_dirs, node):
        self.bin_dirs = bin_dirs
        self.node = node

    def __call__(self, plugin, command, conf, cid="c1", netns=None, ifname="eth0", args=None, env_extra=None, drop=()):
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": cid,
            "CNI_IFNAME": ifname,
            "CNI_PATH": os.pathsep.join(self.bin_dirs),
        }
        if netns:
            env["CNI_NETNS"] = netns if "/" in netns else "/run/netns/" + netns
        if args:
            env["CNI_ARGS"] = args
        env.update(env_extra or {})
        for key in drop:
            env.pop(key, None)
        binary = None
        for d in self.bin_dirs:
            if os.path.exists(os.path.join(d, plugin)):
                binary = os.path.join(d, plugin)
                break
        assert binary, "no plugin %s in %s" % (plugin, self.bin_dirs)
        stdin = conf if isinstance(conf, (bytes, str)) else json.dumps(conf)
        res = subprocess.run(
            ["nsenter", "--net=/run/netns/%s" % self.node, "--", binary],
            input=stdin.encode() if isinstance(stdin, str) else stdin,
            env=env,
            capture_output=True,
            timeout=60,
        )
        out = res.stdout.decode()
        doc = json.loads(out) if out.strip() else None
        return res.returncode, doc, res.stderr.decode()


@pytest.fixture
def node(namespaces):
    """A namespace standing for a node (the runtime's host namespace)."""
    return namespaces.new("node")


@pytest.fixture
def plugin(cni_bin, ref_bin, node):
    return Plugin([cni_bin, ref_bin], node)


# ---- the daemon ---------------------------------------------------------------


class Daemon:
    def __init__(self, node, sock):
        self.node, self.sock, self.proc = node, sock, None

    def start(self):
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "podnet.cli.main",
                "cni",
                "serve",
                "--netns",
                self.node,
                "--socket",
                self.sock,
                "--quiet",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.time() + 20
        while not os.path.exists(self.sock):
            if self.proc.poll() is not None:
                raise AssertionError("daemon exited: %s" % self.proc.stderr.read())
            if time.time() > deadline:
                self.stop()
                raise AssertionError("daemon did not listen on %s within 20 s" % self.sock)
            time.sleep(0.05)
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # by the PID we started, never by name
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc:
            self.proc.stdout.close()
            self.proc.stderr.close()


@pytest.fixture
def daemon(node, tmp_path):
    d = Daemon(node, str(tmp_path / "cni.sock"))
    try:
        yield d.start()
    finally:
        d.stop()


# ---- configs ------------------------------------------------------------------


@pytest.fixture
def data_dir(tmp_path):
    return str(tmp_path / "ipam")


def bridge_conf(data_dir, version="1.0.0", name="testnet", subnet="10.22.0.0/24", bridge="pnbr0", ranges=None, **extra):
    ipam = {"type": "podnet-ipam", "dataDir": data_dir}
    if ranges is not None:
        ipam["ranges"] = ranges
    else:
        ipam["ranges"] = [[{"subnet": subnet}]]
    conf = {"cniVersion": version, "name": name, "type": "podnet", "bridge": bridge, "isGateway": True, "ipam": ipam}
    conf.update(extra)
    return conf


# ---- the leak check -----------------------------------------------------------


def _ours_left():
    left = []
    try:
        names = os.listdir("/run/netns")
    except FileNotFoundError:
        names = []
    left += ["netns " + n for n in names if n.startswith(PREFIX)]
    if IS_ROOT and shutil.which("nft"):
        tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
        left += ["root-namespace nft " + t for t in tables.splitlines() if "podnet" in t]
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    for line in links.splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        if name.startswith("pn-") or name.startswith("pnbr"):
            left.append("root-namespace link " + name)
    return left


def _servers_under(root):
    """API servers (and other podnet processes) whose command line names a
    path under this session's temp dir: started by these tests, found by
    that path, not by a name pattern."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                cmd = f.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        if any("podnet" in c for c in cmd) and any(c.startswith(root) or ("/" + root.strip("/")) in c for c in cmd):
            out.append("process %s (%s)" % (pid, " ".join(cmd[:4])))
    return out


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind(tmp_path_factory):
    root = str(tmp_path_factory.getbasetemp())
    before = set(_ours_left())
    yield
    leaked = [x for x in _ours_left() if x not in before]
    leaked += _servers_under(root)
    if leaked:
        pytest.fail("podnet left these behind: %s" % ", ".join(leaked), pytrace=False)


@pytest.fixture
def api_server(tmp_path):
    """A real podnet API server of the test's own (podnet.apiserver.local),
    stopped by its PID afterwards, also when the test fails."""
    from podnet.apiserver.local import ApiServer

    api = ApiServer(tmp_path / "api")
    try:
        yield api
    finally:
        api.stop()
