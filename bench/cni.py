"""CNI plugin latency: podnet (daemon mode, in-process mode) vs the Go reference.

Run as root:  .venv/bin/python bench/cni.py [--pods 50] [--parallel 8] [--json FILE]

What it measures, in one run and on the same configs (cniVersion 1.0.0, bridge
mode, isGateway, one /16 range, a private dataDir per system), once with
ipMasq false and once with ipMasq true:

  podnet-daemon   type "podnet" + "podnet-ipam", config has "daemonSocket"; a
                  `podnet cni serve` started here inside the node netns serves it
  podnet-inproc   the same executables without daemonSocket (the thin exe runs
                  the handler itself, importing pyroute2 on every call)
  reference       /usr/lib/cni "bridge" + "host-local" (containernetworking-plugins)

The podnet executables are what `podnet cni install` writes: the compiled
forwarder (podnet/cni/native/podnet-cni.c), which execs the Python thin script
beside it when there is no daemon (so podnet-inproc pays a C exec, then the
interpreter and the imports).

Each timing is the wall time of exec'ing the plugin binary with the CNI env and
the config on stdin (subprocess.run, output captured), as a runtime sees it.
The whole benchmark process moves into a throwaway "node" netns at start, so
plugins are exec'd directly (no nsenter) and see that netns as the host side;
the root namespace is never touched. Every pod has its own netns, created before
any timing (names pnbench-<pid>-...; all removed at exit, also on Ctrl-C).
DEL gets the ADD result as prevResult, as libcni sends it. Every answer is
checked, for every system alike: an ADD must return ips, a DEL must exit 0 and
leave no CNI_IFNAME in the pod's netns (DEL is synchronous).

The floor of a DEL, measured in the same run, one sample per pod interleaved
with the sequential DELs: the kernel's own cost (a veth pair made like the
plugin's, beside the plugins' pod i as it is added: eth0 up in a netns of its
own with an address and a default route, the peer a bridge port in the node
netns; then the netlink delete of eth0 from inside that netns, timed alone;
with ipMasq also the netlink delete of a map element like the plugin's, timed
alone) plus a compiled no-op's exec
(/bin/true run exactly as the plugins are run). DEL is reported as that floor
plus the plugin's own time; the floor's parts are printed too.

Per ipMasq setting: 3 warm-up ADD/DEL cycles per system; then --pods sequential
ADDs, then their DELs (median, nearest-rank p95), interleaved across systems
(pod i of each system, then pod i+1) so load from elsewhere on the machine hits
all alike; then per system --pods ADDs run --parallel at a time (wall time of the
batch; the parallel DEL wall and per-exec times are in the JSON).

Reading it: ratios < 1 mean podnet is faster than the reference. The floors
are the fixed costs: the plugin interpreter's bare start (`-IS -c pass`), a
podnet VERSION through the daemon (the compiled forwarder + one socket round
trip + the daemon's dispatch: the least a daemon-mode call can cost), the same
through the Python thin script (what it cost before the forwarder), podnet
VERSION without a daemon, a compiled no-op's exec (/bin/true: any plugin's
least cost), and the Go plugin's VERSION exec. Daemon-mode ADD minus "VERSION via daemon" is
roughly the daemon's own work; reference ADD minus "Go VERSION" likewise.
"""

import argparse
import ipaddress
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from cni_report import p50, report  # noqa: E402 - beside this script

from podnet.cni.install import install  # noqa: E402
from podnet.kernel import netns as pnns  # noqa: E402
from podnet.kernel import nft, nftelem, rtnl  # noqa: E402

REF_BIN = "/usr/lib/cni"
PREFIX = "pnbench-%d-" % os.getpid()
SYSTEMS = (  # name, plugin, ipam, bridge, subnet, daemon mode
    ("podnet-daemon", "podnet", "podnet-ipam", "pnb-d", "10.30.0.0/16", True),
    ("podnet-inproc", "podnet", "podnet-ipam", "pnb-i", "10.31.0.0/16", False),
    ("reference", "bridge", "host-local", "refbr0", "10.32.0.0/16", False),
)
WARMUP = 3
DEL_MARGIN = 0.003  # the target: podnet's own DEL time over the kernel's
# the kernel floor's own objects, all in the node netns (which goes at the end)
FLOOR_BRIDGE = "pnb-f"
FLOOR_SUBNET = "10.33.0.0/16"
FLOOR_TABLE = "pnbench-floor"
FLOOR_RUNS = 20


class BenchError(Exception):
    pass


class Bench:
    def __init__(self, args):
        self.args = args
        self.tmp = tempfile.mkdtemp(prefix=PREFIX)
        self.bin = os.path.join(self.tmp, "bin")
        self.sock = os.path.join(self.tmp, "cni.sock")
        self.names = []  # every netns we created, node first
        self.counter = 0
        self.daemon = None
        self.daemon_log = None
        self.root_fd = None
        self.node = None
        self.floor_table = False

    # ---- setup / teardown ---------------------------------------------------

    def new_ns(self, label):
        self.counter += 1
        name = "%s%d-%s" % (PREFIX, self.counter, label)
        self.names.append(name)  # before create: a half-made one is still removed
        pnns.create(name)
        return name

    def setup(self):
        install(self.bin)
        self.node = self.new_ns("node")
        # Move this (still single-threaded) process into the node netns: every
        # thread and child started from now on is born there.
        self.root_fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        with pnns.Netns(self.node) as ns:
            pnns._setns(ns.fd, ns.path)
        n = self.args.pods
        self.warm_ns = [self.new_ns("w%d" % i) for i in range(WARMUP)]
        self.seq_ns = [[self.new_ns("%s-s%d" % (system[3], i)) for i in range(n)] for system in SYSTEMS]
        self.par_ns = [self.new_ns("p%d" % i) for i in range(n)]
        self.floor_ns = [self.new_ns("f%d" % i) for i in range(n)]
        self.start_daemon()

    def start_daemon(self):
        self.daemon_log = open(os.path.join(self.tmp, "daemon.log"), "w+")
        self.daemon = subprocess.Popen(
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
            stdin=subprocess.DEVNULL,
            stdout=self.daemon_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # a terminal's Ctrl-C reaches us, not it: cleanup stops it
        deadline = time.time() + 30
        while not os.path.exists(self.sock):
            if self.daemon.poll() is not None:
                self.daemon_log.seek(0)
                raise BenchError("daemon exited (%d): %s" % (self.daemon.returncode, self.daemon_log.read()))
            if time.time() > deadline:
                raise BenchError("daemon did not listen on %s within 30 s" % self.sock)
            time.sleep(0.05)

    def cleanup(self):
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut cleanup short
        try:
            if self.daemon is not None and self.daemon.poll() is None:
                self.daemon.send_signal(signal.SIGTERM)  # by the PID we started
                try:
                    self.daemon.wait(10)
                except subprocess.TimeoutExpired:
                    self.daemon.kill()
                    self.daemon.wait(5)
            if self.daemon_log:
                self.daemon_log.close()
            if self.root_fd is not None:
                pnns._setns(self.root_fd, "the root namespace")  # leave the node before deleting it
                os.close(self.root_fd)
                self.root_fd = None
            for name in reversed(self.names):  # pods first, node last
                try:
                    pnns.delete(name)
                except OSError as exc:
                    print("cleanup: %s" % exc, file=sys.stderr)
            shutil.rmtree(self.tmp, ignore_errors=True)
            left = [n for n in pnns.list_names() if n.startswith(PREFIX)]
            if left:
                print("cleanup: netns left behind: %s" % ", ".join(left), file=sys.stderr)
        finally:
            signal.signal(signal.SIGINT, old)

    # ---- exec ---------------------------------------------------------------

    def conf(self, system, masq):
        name, plugin, ipam, bridge, subnet, daemon = system
        c = {
            "cniVersion": "1.0.0",
            "name": "pnbench-" + bridge,
            "type": plugin,
            "bridge": bridge,
            "isGateway": True,
            "ipMasq": masq,
            "ipam": {
                "type": ipam,
                "dataDir": os.path.join(self.tmp, "data-" + bridge),
                "ranges": [[{"subnet": subnet}]],
            },
        }
        if daemon:
            c["daemonSocket"] = self.sock
        return c

    def binary(self, system):
        return os.path.join(REF_BIN if system[1] == "bridge" else self.bin, system[1])

    def run(self, system, command, conf, cid, ns):
        """One plugin exec; -> (seconds, stdout bytes). Raises on a failure."""
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": cid,
            "CNI_IFNAME": "eth0",
            "CNI_PATH": REF_BIN if system[1] == "bridge" else self.bin,
        }
        if ns:
            env["CNI_NETNS"] = pnns.path_of(ns)
        stdin = json.dumps(conf).encode()
        argv = [self.binary(system)]
        t0 = time.perf_counter()
        res = subprocess.run(argv, input=stdin, env=env, capture_output=True, timeout=120)
        dt = time.perf_counter() - t0
        if res.returncode != 0 or (system[5] and b"not reachable" in res.stderr):
            raise BenchError(
                "%s %s %s failed (exit %d)\nstdout: %s\nstderr: %s"
                % (
                    system[0],
                    command,
                    cid,
                    res.returncode,
                    res.stdout.decode(errors="replace"),
                    res.stderr.decode(errors="replace"),
                )
            )
        return dt, res.stdout

    def add(self, system, conf, cid, ns):
        dt, out = self.run(system, "ADD", conf, cid, ns)
        try:
            result = json.loads(out)
            assert result["ips"]
        except (ValueError, KeyError, AssertionError):
            raise BenchError("%s ADD %s: no usable result: %r" % (system[0], cid, out)) from None
        return dt, result

    def delete(self, system, conf, cid, ns, result):
        dt = self.run(system, "DEL", dict(conf, prevResult=result), cid, ns)[0]
        with pnns.Netns(pnns.path_of(ns)) as pod, rtnl.Rtnl(pod) as r:
            if r.get_link("eth0") is not None:
                raise BenchError("%s DEL %s: exit 0 but eth0 is still in %s" % (system[0], cid, ns))
        return dt

    def floor_masq(self, ip):
        """With ipMasq the plugin also adds a map element per pod: one like
        it in a table of our own, added when the pod's pair is made."""
        if not self.floor_table:
            nft.apply(
                "add table inet %s\n"
                "add map inet %s masq4 { type ipv4_addr : verdict; }\n"
                "add chain inet %s sub\n"
                "add rule inet %s sub masquerade\n" % ((FLOOR_TABLE,) * 4),
                what="the bench's floor table",
            )
            self.floor_table = True
        nftelem.apply([nftelem.add_message("inet", FLOOR_TABLE, "masq4", [(ip, "sub", "pnbench/%s" % ip)])])

    def kernel_unmasq(self, ip):
        """The kernel's removal of that element: its netlink delete timed
        alone, on a socket kept open as the daemon keeps its own (closing one
        after a delete waits 10-25 ms for the kernel's deferred destruction,
        which no caller has to wait for) (-> seconds)."""
        t0 = time.perf_counter()
        nftelem.apply([nftelem.delete_message("inet", FLOOR_TABLE, "masq4", [ip])])
        return time.perf_counter() - t0

    def exec_floor(self):
        """A compiled no-op exec'd exactly as the plugins are (-> seconds):
        the part of any plugin's call that is the exec itself."""
        t0 = time.perf_counter()
        res = subprocess.run(["/bin/true"], input=b"{}", env={"CNI_COMMAND": "DEL"}, capture_output=True, timeout=30)
        dt = time.perf_counter() - t0
        if res.returncode != 0:
            raise BenchError("/bin/true exited %d" % res.returncode)
        return dt

    def floor_pair(self, ns, i):
        """A pair like the plugin's, made when the plugins' pod i is added so
        it lives as long as theirs (the pod end up, with an address and a
        default route via the bridge's gateway address; the host end a bridge
        port) -> the pod end's address."""
        gw = ipaddress.ip_interface(FLOOR_SUBNET.replace(".0/", ".1/"))
        with rtnl.Rtnl() as node:  # this process lives in the node netns
            br = node.get_link(FLOOR_BRIDGE)
            if br is None:
                node.link_add_bridge(FLOOR_BRIDGE)
                node.commit()
                br = node.get_link(FLOOR_BRIDGE)
                node.addr_add(br.index, gw, FLOOR_BRIDGE)
                node.commit()
            with pnns.Netns(pnns.path_of(ns)) as pod:
                node.link_add_veth("pnbf%d" % i, "eth0", pod.fd, master=br.index)
                node.commit()
                with rtnl.Rtnl(pod) as r:
                    eth0 = r.get_link("eth0")
                    r.link_set(eth0.index, "eth0", up=True)
                    addr = ipaddress.ip_interface("%s/%d" % (gw.ip + 2 + i, gw.network.prefixlen))
                    r.addr_add(eth0.index, addr, "eth0")
                    r.route_add(ipaddress.ip_network("0.0.0.0/0"), gw.ip, eth0.index, "eth0")
                    r.commit()
        return addr.ip

    def kernel_del(self, ns):
        """The kernel's own DEL of that pair: only the netlink delete of the
        pod end, timed (-> seconds)."""
        with pnns.Netns(pnns.path_of(ns)) as pod, rtnl.Rtnl(pod) as r:
            t0 = time.perf_counter()
            r.link_del("eth0")
            r.commit()
            dt = time.perf_counter() - t0
            if r.get_link("eth0") is not None:
                raise BenchError("kernel floor: eth0 still in %s after its delete" % ns)
        return dt

    # ---- phases -------------------------------------------------------------

    def measure(self, masq):
        """All systems at one ipMasq setting: -> {system name: numbers}.

        The sequential runs are interleaved (pod i of every system, then pod
        i+1), so a burst of load elsewhere on the machine hits all systems
        alike; each system's pods live in its own netns pool."""
        confs = [self.conf(system, masq) for system in SYSTEMS]

        def tag(system):
            return "%s-%s" % (system[3], "m" if masq else "n")

        for system, conf in zip(SYSTEMS, confs, strict=True):
            for i, ns in enumerate(self.warm_ns):
                cid = "pnbench-%s-w%d" % (tag(system), i)
                self.delete(system, conf, cid, ns, self.add(system, conf, cid, ns)[1])
        out = {system[0]: {"add": [], "del": []} for system in SYSTEMS}
        out["kernel"] = {"del": [], "unmasq": [], "exec": []}
        results = {}
        floor_ips = []
        for i in range(self.args.pods):
            for k, (system, conf) in enumerate(zip(SYSTEMS, confs, strict=True)):
                dt, results[k, i] = self.add(system, conf, "pnbench-%s-s%d" % (tag(system), i), self.seq_ns[k][i])
                out[system[0]]["add"].append(dt)
            floor_ips.append(self.floor_pair(self.floor_ns[i], i))
            if masq:
                self.floor_masq(floor_ips[i])
        for i in range(self.args.pods):
            for k, (system, conf) in enumerate(zip(SYSTEMS, confs, strict=True)):
                out[system[0]]["del"].append(
                    self.delete(system, conf, "pnbench-%s-s%d" % (tag(system), i), self.seq_ns[k][i], results[k, i])
                )
            out["kernel"]["del"].append(self.kernel_del(self.floor_ns[i]))
            out["kernel"]["exec"].append(self.exec_floor())
            if masq:
                out["kernel"]["unmasq"].append(self.kernel_unmasq(floor_ips[i]))
        for system, conf in zip(SYSTEMS, confs, strict=True):
            out[system[0]].update(self.parallel(system, conf, tag(system)))
        return out

    def parallel(self, system, conf, tag):
        """--pods ADDs, --parallel at a time; then their DELs the same way."""
        cids = ["pnbench-%s-p%d" % (tag, i) for i in range(len(self.par_ns))]
        pool = ThreadPoolExecutor(self.args.parallel)
        try:
            t0 = time.perf_counter()
            par = list(pool.map(lambda a: self.add(system, conf, *a), zip(cids, self.par_ns, strict=True)))
            par_add = time.perf_counter() - t0
            t0 = time.perf_counter()
            list(
                pool.map(
                    lambda a: self.delete(system, conf, *a), zip(cids, self.par_ns, [r for _, r in par], strict=True)
                )
            )
            par_del = time.perf_counter() - t0
        finally:  # on a failure or Ctrl-C, start nothing new and let running execs finish
            pool.shutdown(wait=True, cancel_futures=True)
        return {"par_add_wall": par_add, "par_del_wall": par_del, "par_add": [dt for dt, _ in par]}

    def floors(self):
        """Medians of FLOOR_RUNS execs each, taken round-robin."""
        podnet = os.path.join(self.bin, "podnet")
        thin = os.path.join(self.bin, ".podnet-thin", "podnet")  # the forwarder's Python fallback
        native = os.path.exists(thin)
        with open(thin if native else podnet) as f:
            python = f.readline()[2:].split()[0]
        env = {"CNI_COMMAND": "VERSION", "PATH": os.environ.get("PATH", "")}
        v100 = b'{"cniVersion": "1.0.0"}'
        via_daemon = json.dumps(self.conf(SYSTEMS[0], False)).encode()
        cmds = {
            "noop_exec": (["/bin/true"], None, b""),
            "python_start": ([python, "-IS", "-c", "pass"], None, b""),
            "podnet_version_daemon": ([podnet], env, via_daemon),
            "podnet_version_daemon_python": ([thin if native else podnet], env, via_daemon),
            "podnet_version_inproc": ([podnet], env, v100),
            "ref_version": ([os.path.join(REF_BIN, "bridge")], env, v100),
        }
        times = {key: [] for key in cmds}
        for _ in range(FLOOR_RUNS):
            for key, (argv, e, stdin) in cmds.items():
                t0 = time.perf_counter()
                res = subprocess.run(argv, env=e, input=stdin, capture_output=True, timeout=30)
                times[key].append(time.perf_counter() - t0)
                if res.returncode != 0 or (e and not json.loads(res.stdout).get("supportedVersions")):
                    raise BenchError("%s failed: %s%s" % (argv, res.stdout, res.stderr))
                if "daemon" in key and res.stderr:  # "not reachable, running in-process": not the fast path
                    raise BenchError("%s: %s" % (key, res.stderr.decode(errors="replace")))
        out = {key: p50(ts) for key, ts in times.items()}
        out["python"] = python
        out["native"] = native
        return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pods", type=int, default=50, help="pods per sequential run and per parallel batch")
    ap.add_argument("--parallel", type=int, default=8, help="concurrent ADDs in the parallel batch")
    ap.add_argument("--json", metavar="FILE", help="also write the raw numbers here")
    args = ap.parse_args(argv)
    if args.pods < 1 or args.parallel < 1:
        ap.error("--pods and --parallel must be >= 1")
    if os.geteuid() != 0:
        ap.error("needs root (creates network namespaces)")
    if not os.path.exists(os.path.join(REF_BIN, "bridge")):
        ap.error("no Go reference plugins in %s (apt-get install containernetworking-plugins)" % REF_BIN)

    def on_term(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)

    start = time.perf_counter()
    load0 = os.getloadavg()[0]
    bench = Bench(args)
    try:
        bench.setup()
        data = {
            "pods": args.pods,
            "parallel": args.parallel,
            "warmup": WARMUP,
            "systems": [s[0] for s in SYSTEMS],
            "floor_runs": FLOOR_RUNS,
            "del_margin": DEL_MARGIN,
            "kernel": platform.release(),
            "cpus": os.cpu_count(),
            "loadavg_start": load0,
            "floors": bench.floors(),
            "results": {},
            "ratios": {},
        }
        for masq in (False, True):
            print("measuring ipMasq=%s ..." % str(masq).lower(), file=sys.stderr, flush=True)
            for name, numbers in bench.measure(masq).items():
                data["results"].setdefault(name, {})[str(masq).lower()] = numbers
    except KeyboardInterrupt:
        print("interrupted; cleaning up", file=sys.stderr)
        return 130
    except BenchError as exc:
        print("bench aborted: %s" % exc, file=sys.stderr)
        return 1
    finally:
        bench.cleanup()
    ref = data["results"]["reference"]
    for name in ("podnet-daemon", "podnet-inproc"):
        for masq, r in data["results"][name].items():
            data["ratios"].setdefault(name, {})[masq] = {
                "add_p50": p50(r["add"]) / p50(ref[masq]["add"]),
                "del_p50": p50(r["del"]) / p50(ref[masq]["del"]),
                "par_add_wall": r["par_add_wall"] / ref[masq]["par_add_wall"],
            }
    data["total_seconds"] = time.perf_counter() - start
    data["loadavg_end"] = os.getloadavg()[0]
    report(data, args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(data, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
