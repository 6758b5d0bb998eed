"""Cluster DNS: podnet's DNS server vs dnsmasq, same records, same queries.

Run as root:  .venv/bin/python bench/dns.py [--services 500] [--seconds 10]
                  [--workers N] [--clients 8] [--outstanding 200] [--json FILE]

What it measures, in one run, with Debian's dnsperf (`dnsperf -s SERVER -d
QUERIES -l SECONDS -c CLIENTS -q OUTSTANDING -v`): queries per second and
latency percentiles (p50, p90, p99 from dnsperf's per-query verbose lines)
for

  podnet   `python -m podnet.dns serve --kubeconfig ...` reading an API
           server that holds --services ClusterIP Services in 10 namespaces
           (made through the API as `podnet apply` makes them), with
           --workers processes: 1 and one per CPU by default, each in
           the same run (on a 2-CPU machine dnsperf needs one CPU, so one
           worker is usually the better fit, as dnsmasq's single thread is)
  dnsmasq  Debian's dnsmasq (dnsmasq-base, started here with -k in the
           foreground, no config file, no upstream) serving the same names
           and addresses from a hosts file (`--addn-hosts`), authoritative
           for cluster.local (`--local=/cluster.local/`, so unknown names are
           NXDOMAIN without forwarding); dnsmasq is single-threaded by design

The query mix (the same file for both, shuffled with a fixed seed): 70% A of
existing services, 10% AAAA of existing services (NODATA), 10% PTR of their
ClusterIPs, 10% A of names that do not exist (NXDOMAIN). No EDNS (dnsperf's
default), as glibc's resolver sends them.

Both servers listen on 10.53.0.2:53 in namespace pnbd-<pid>-srv, one at a
time (the other is not running), and dnsperf runs in pnbd-<pid>-cli across a
veth pair: the root namespace is never touched. On this shared 2-CPU machine
dnsperf itself needs a CPU, so a server's figure is what it gets next to its
load generator; compare within one run, never across runs. Every process is
stopped by the PID this script started, and the namespaces and the temp dir
are removed, also on failure or Ctrl-C.

Reading it: ratio = podnet QPS / dnsmasq QPS for each worker count, and the
best of them; target >= 1.0.
"""

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
PREFIX = "pnbd-%d-" % os.getpid()
SRV, CLI = PREFIX + "srv", PREFIX + "cli"
SERVER_IP, CLIENT_IP = "10.53.0.2", "10.53.0.1"


def sh(*argv, check=True, **kw):
    res = subprocess.run(argv, capture_output=True, text=True, **kw)
    if check and res.returncode != 0:
        raise SystemExit("%s: %s" % (" ".join(argv), res.stderr.strip()))
    return res


def in_ns(ns, *argv):
    return ["nsenter", "--net=/run/netns/" + ns, "--"] + list(argv)


def make_network():
    for ns in (SRV, CLI):
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
    sh("ip", "-n", CLI, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", SRV)
    sh("ip", "-n", CLI, "addr", "add", CLIENT_IP + "/24", "dev", "eth0")
    sh("ip", "-n", SRV, "addr", "add", SERVER_IP + "/24", "dev", "eth0")
    sh("ip", "-n", CLI, "link", "set", "eth0", "up")
    sh("ip", "-n", SRV, "link", "set", "eth0", "up")


def remove_network():
    for ns in (CLI, SRV):
        if os.path.exists("/run/netns/" + ns):
            sh("ip", "netns", "del", ns, check=False)


def make_store(api, count):
    """count ClusterIP Services through the API -> [(fqdn, ip)]."""
    objects = api.cluster()
    out = []
    for n in range(10):
        objects.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns%d" % n}})
    for i in range(count):
        ns = "ns%d" % (i % 10)
        svc, _ = objects.apply(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "svc%d" % i, "namespace": ns},
                "spec": {"selector": {"app": "svc%d" % i}, "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
            }
        )
        out.append(("svc%d.%s.svc.cluster.local" % (i, ns), svc["spec"]["clusterIP"]))
    return out


def write_inputs(tmp, names, total=20000):
    import ipaddress

    with open(os.path.join(tmp, "hosts"), "w") as f:
        for fqdn, ip in names:
            f.write("%s %s\n" % (ip, fqdn))
    rng = random.Random(7)
    lines = []
    for _ in range(total):
        fqdn, ip = rng.choice(names)
        r = rng.random()
        if r < 0.7:
            lines.append("%s A" % fqdn)
        elif r < 0.8:
            lines.append("%s AAAA" % fqdn)
        elif r < 0.9:
            lines.append("%s PTR" % ipaddress.ip_address(ip).reverse_pointer)
        else:
            lines.append("nosuch%d.ns%d.svc.cluster.local A" % (rng.randrange(200), rng.randrange(10)))
    with open(os.path.join(tmp, "queries"), "w") as f:
        f.write("\n".join(lines) + "\n")


def start(argv, log, ready=None):
    out = open(log, "wb")
    proc = subprocess.Popen(in_ns(SRV, *argv), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    out.close()
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit("%s exited: %s" % (argv[0], open(log).read()))
        res = subprocess.run(
            in_ns(CLI, "dig", "+short", "+tries=1", "+time=1", "@" + SERVER_IP, "svc0.ns0.svc.cluster.local"),
            capture_output=True,
            text=True,
        )
        if res.stdout.strip() and (ready is None or ready(open(log, errors="replace").read())):
            return proc
        time.sleep(0.2)
    stop(proc)
    raise SystemExit("%s did not answer within 120 s: %s" % (argv[0], open(log).read()))


def stop(proc):
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # its own session: the PID we started is the group
        except ProcessLookupError:
            pass
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def cpu_seconds(pid):
    """CPU time of a process and its children still running (workers)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == pid:  # the session we started (workers included)
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def dnsperf(tmp, args, seconds, rate=None):
    """One dnsperf run. rate=None: as fast as the server answers (QPS);
    rate=N: -Q N with -v, for latency percentiles at a load both servers
    sustain (at saturation latency only measures dnsperf's own queue)."""
    extra = ["-Q", str(rate), "-v"] if rate else []
    res = subprocess.run(
        in_ns(
            CLI,
            "dnsperf",
            "-s",
            SERVER_IP,
            "-d",
            os.path.join(tmp, "queries"),
            "-l",
            str(seconds),
            "-c",
            str(args.clients),
            "-q",
            str(args.outstanding),
            *extra,
        ),
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        raise SystemExit("dnsperf: %s" % res.stderr)
    with open(os.path.join(tmp, "dnsperf.out"), "a") as f:
        f.write(res.stdout[-3000:])
    lat, rcodes = [], {}
    for line in res.stdout.splitlines():
        # "> NOERROR svc1.ns1.svc.cluster.local A 0.000214"
        if line.startswith("> "):
            parts = line.split()
            rcodes[parts[1]] = rcodes.get(parts[1], 0) + 1
            try:
                lat.append(float(parts[-1]))
            except ValueError:
                pass
    summary = {}
    for key, pat in (
        ("qps", r"Queries per second:\s+([\d.]+)"),
        ("sent", r"Queries sent:\s+(\d+)"),
        ("avg_ms", r"Average Latency \(s\):\s+([\d.]+)"),
        ("completed", r"Queries completed:\s+(\d+)"),
        ("lost", r"Queries lost:\s+(\d+)"),
    ):
        m = re.search(pat, res.stdout)
        summary[key] = float(m.group(1)) if m else None
    lat.sort()

    def pct(p):
        return lat[min(len(lat) - 1, int(p / 100 * len(lat)))] * 1000 if lat else None

    if summary["avg_ms"] is not None:
        summary["avg_ms"] *= 1000
    summary.update(p50_ms=pct(50), p90_ms=pct(90), p99_ms=pct(99), rcodes=rcodes)
    return summary


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--services", type=int, default=500)
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument(
        "--workers",
        default=None,
        help="podnet worker counts to run, comma-separated (default: 1 and one per CPU, when different)",
    )
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--outstanding", type=int, default=200)
    p.add_argument("--latency-qps", type=int, default=5000, help="the paced load of the latency run")
    p.add_argument("--latency-seconds", type=int, default=5)
    p.add_argument("--json", help="write the figures here too")
    args = p.parse_args()
    for tool in ("dnsperf", "dnsmasq", "dig"):
        if not shutil.which(tool) and not shutil.which(tool, path="/usr/sbin:/usr/bin"):
            raise SystemExit("%s is missing: ./setup.sh installs dnsperf dnsmasq-base dnsutils" % tool)
    tmp = tempfile.mkdtemp(prefix="pnbd-")
    procs = []
    api = None
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        print("store: %d services ..." % args.services, flush=True)
        make_network()
        from podnet.apiserver.local import ApiServer

        api = ApiServer(os.path.join(tmp, "api"), netns=[SRV])
        names = make_store(api, args.services)
        write_inputs(tmp, names)
        kubeconfig = api.token_kubeconfig("system:serviceaccount:kube-system:coredns")
        results = {}
        counts = [int(x) for x in args.workers.split(",")] if args.workers else sorted({1, os.cpu_count() or 1})
        servers = {
            "podnet/%d" % w: [
                sys.executable,
                "-m",
                "podnet.dns",
                "serve",
                "--kubeconfig",
                kubeconfig,
                "--listen",
                SERVER_IP,
                "--no-forward",
                "--workers",
                str(w),
            ]
            for w in counts
        }
        servers.update(
            {
                "dnsmasq": [
                    shutil.which("dnsmasq") or "/usr/sbin/dnsmasq",
                    "-k",
                    "-C",
                    "/dev/null",
                    "--no-resolv",
                    "--no-hosts",
                    "--addn-hosts=" + os.path.join(tmp, "hosts"),
                    "--local=/cluster.local/",
                    "--listen-address=" + SERVER_IP,
                    "--bind-interfaces",
                    "--port=53",
                    "--cache-size=10000",
                    "--pid-file=" + os.path.join(tmp, "dnsmasq.pid"),
                    "--user=root",
                    "--group=root",
                    "--log-facility=" + os.path.join(tmp, "dnsmasq.syslog"),
                ],
            }
        )
        for name, argv in servers.items():
            print("%s: starting, then dnsperf for %d s ..." % (name, args.seconds), flush=True)
            workers = int(name.split("/")[1]) if name.startswith("podnet/") else 0
            # podnet: every worker has built its table and bound
            ready = (lambda text, w=workers: text.count(" serving ") >= w) if workers else None
            proc = start(argv, os.path.join(tmp, name.replace("/", "-") + ".log"), ready)
            procs.append(proc)
            cpu0 = cpu_seconds(proc.pid)
            results[name] = dnsperf(tmp, args, args.seconds)
            results[name]["server_cpu_s"] = round(cpu_seconds(proc.pid) - cpu0, 2)
            paced = dnsperf(tmp, args, args.latency_seconds, args.latency_qps)
            results[name].update(
                {k: paced[k] for k in ("p50_ms", "p90_ms", "p99_ms")}, paced_qps=paced["qps"], paced_lost=paced["lost"]
            )
            stop(proc)
        ratios = {
            name: r["qps"] / results["dnsmasq"]["qps"]
            for name, r in results.items()
            if name.startswith("podnet/") and results["dnsmasq"]["qps"]
        }
        ratio = max(ratios.values()) if ratios else None
        print()
        print(
            "%-8s %10s %6s %8s %8s | at %d QPS: %8s %8s %8s %6s"
            % ("server", "max QPS", "lost", "cpu s", "avg ms", args.latency_qps, "p50 ms", "p90 ms", "p99 ms", "lost")
        )
        for name, r in results.items():
            print(
                "%-8s %10.0f %6d %8.1f %8.3f | %14s %8.3f %8.3f %8.3f %6d"
                % (
                    name,
                    r["qps"],
                    r["lost"] or 0,
                    r["server_cpu_s"],
                    r["avg_ms"] or 0,
                    "",
                    r["p50_ms"],
                    r["p90_ms"],
                    r["p99_ms"],
                    r["paced_lost"] or 0,
                )
            )
        print()
        for name, r in sorted(ratios.items()):
            print("%s/dnsmasq QPS ratio: %.2f (workers %s)" % (name, r, name.split("/")[1]))
        print(
            "best podnet/dnsmasq QPS ratio: %.2f (target >= 1.0); %d services, %d s, %d clients, %d outstanding, "
            "%d CPUs shared with dnsperf"
            % (ratio, args.services, args.seconds, args.clients, args.outstanding, os.cpu_count())
        )
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"results": results, "ratios": ratios, "ratio": ratio, "args": vars(args)}, f, indent=1)
    finally:
        for proc in procs:
            stop(proc)
        if api is not None:
            api.stop()
        remove_network()
        if os.environ.get("PNBD_KEEP"):
            print("kept", tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
        left = [n for n in os.listdir("/run/netns") if n.startswith(PREFIX)] if os.path.isdir("/run/netns") else []
        if left:
            print("left behind: %s" % left, file=sys.stderr)


if __name__ == "__main__":
    main()
