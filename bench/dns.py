"""Cluster DNS: podnet's DNS server vs dnsmasq, same records, same queries.

Run as root:  .venv/bin/python bench/dns.py [--services 500] [--seconds 10]
                  [--workers N] [--rounds 3] [--clients 8] [--outstanding 200]
                  [--json FILE]

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

Every answer is checked, for both servers: before the load, a checker in
the client namespace sends every line of the query file (20,000) and
compares each answer with what the records say (rcode; the Service's
address for A, no records for AAAA, the Service's name for PTR, NXDOMAIN
for the missing names); during the load, dnsperf's response codes are
compared with the query file's: per query in the paced run (-v), as totals
over the queries sent in the saturating run. A wrong answer is counted
against its server, printed, and fails the run (exit status 1) after the
figures.

The servers run in --rounds rounds (podnet/1, dnsmasq, other worker counts;
again), so a change in the machine's load hits both sides; the table shows
each server's median round and the QPS of every round.

Reading it: the headline is podnet with ONE worker against dnsmasq (single-
threaded by design): the median over the rounds of podnet/1 QPS / dnsmasq
QPS in the same round, target >= 1.0.
Runs with more workers are reported apart (on this 2-CPU machine a second
worker competes with dnsperf for the CPUs).
"""

import argparse
import collections
import ipaddress
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


def expected_rcodes(tmp):
    """(name lower-case, type) -> the rcode the records call for."""
    out = {}
    with open(os.path.join(tmp, "queries")) as f:
        for line in f:
            name, rtype = line.split()
            out[(name.lower().rstrip("."), rtype)] = "NXDOMAIN" if name.startswith("nosuch") else "NOERROR"
    return out


# The checker runs in the client namespace: every query of the file, 64 in
# flight, each answer compared with what the records say. argv: server,
# queries file, the names file (fqdn ip lines). Prints a JSON summary.
CHECKER = r"""
import collections, ipaddress, json, os, select, socket, struct, sys, time
import dns.message, dns.rcode, dns.rdatatype
server, queries, hosts = sys.argv[1], sys.argv[2], sys.argv[3]
ip_of, name_of = {}, {}
for line in open(hosts):
    ip, fqdn = line.split()
    ip_of[fqdn], name_of[ipaddress.ip_address(ip).reverse_pointer] = ip, fqdn
lines = [l.split() for l in open(queries) if l.strip()]

def problem(name, rtype, wire):
    try:
        r = dns.message.from_wire(wire)
    except Exception as exc:
        return "unparsable answer: %s" % exc
    q = r.question[0] if len(r.question) == 1 else None
    if q is None or q.name.to_text().rstrip(".").lower() != name.lower() or dns.rdatatype.to_text(q.rdtype) != rtype:
        return "answer for another question: %s" % r.question
    rcode = dns.rcode.to_text(r.rcode())
    got = sorted(rd.to_text() for rrset in r.answer for rd in rrset)
    if name.startswith("nosuch"):
        want = ("NXDOMAIN", [])
    elif rtype == "A":
        want = ("NOERROR", [ip_of.get(name, "?")])
    elif rtype == "AAAA":
        want = ("NOERROR", [])
    else:
        want = ("NOERROR", [name_of.get(name, "?") + "."])
    return None if (rcode, got) == want else "%s, %s (want %s, %s)" % (rcode, got, want[0], want[1])

s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect((server, 53))
s.setblocking(False)
wrong, examples, lost, ok = 0, [], 0, 0
inflight, i, qid = {}, 0, 0
t0 = time.monotonic()
while i < len(lines) or inflight:
    while i < len(lines) and len(inflight) < 64:
        name, rtype = lines[i]
        qid = (qid + 1) & 0xFFFF
        q = dns.message.make_query(name, rtype, use_edns=False)
        q.id = qid
        s.send(q.to_wire())
        inflight[qid] = (name, rtype, time.monotonic(), 0, q.to_wire())
        i += 1
    if select.select([s], [], [], 0.05)[0]:
        while True:
            try:
                wire = s.recv(4096)
            except BlockingIOError:
                break
            entry = inflight.pop(struct.unpack("!H", wire[:2])[0], None)
            if entry is None:
                continue
            p = problem(entry[0], entry[1], wire)
            if p is None:
                ok += 1
            else:
                wrong += 1
                if len(examples) < 5:
                    examples.append("%s %s: %s" % (entry[0], entry[1], p))
    now = time.monotonic()
    for k, (name, rtype, sent, tries, wire) in list(inflight.items()):
        if now - sent > 1.0:
            if tries < 2:
                s.send(wire)
                inflight[k] = (name, rtype, now, tries + 1, wire)
            else:
                del inflight[k]
                lost += 1
took = round(time.monotonic() - t0, 1)
print(json.dumps({"checked": ok + wrong, "wrong": wrong, "unanswered": lost, "examples": examples, "seconds": took}))
"""


def check_answers(tmp):
    """Every query of the file against the running server -> summary."""
    res = subprocess.run(
        in_ns(
            CLI,
            sys.executable,
            "-c",
            CHECKER,
            SERVER_IP,
            os.path.join(tmp, "queries"),
            os.path.join(tmp, "hosts"),
        ),
        capture_output=True,
        text=True,
        timeout=600,
    )
    if res.returncode != 0:
        raise SystemExit("the answer checker failed: %s" % res.stderr[-2000:])
    return json.loads(res.stdout)


def sent_rcodes(tmp, sent):
    """The rcodes the first `sent` queries of the file call for (dnsperf reads
    the file in order and starts over at its end)."""
    with open(os.path.join(tmp, "queries")) as f:
        want = ["NXDOMAIN" if line.startswith("nosuch") else "NOERROR" for line in f if line.strip()]
    full, rest = divmod(sent, len(want))
    out = collections.Counter()
    for k, v in collections.Counter(want).items():
        out[k] += full * v
    out.update(want[:rest])
    return out


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


def dnsperf(tmp, args, seconds, rate=None, expected=None):
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
    lat, rcodes, wrong, examples = [], {}, 0, []
    for line in res.stdout.splitlines():
        # "> NOERROR svc1.ns1.svc.cluster.local A 0.000214"
        if line.startswith("> "):
            parts = line.split()
            rcodes[parts[1]] = rcodes.get(parts[1], 0) + 1
            want = expected.get((parts[2].lower().rstrip("."), parts[3])) if expected else None
            if expected is not None and parts[1] != want:
                wrong += 1
                if len(examples) < 5:
                    examples.append("%s %s: %s (want %s)" % (parts[2], parts[3], parts[1], want))
            try:
                lat.append(float(parts[-1]))
            except ValueError:
                pass
    if not rcodes:  # without -v: the summary line "Response codes: NOERROR 123 (90.00%), NXDOMAIN 14 (10.00%)"
        m = re.search(r"Response codes:\s+(.*)", res.stdout)
        for code, n in re.findall(r"([A-Z]+) (\d+) \(", m.group(1) if m else ""):
            rcodes[code] = int(n)
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
    if expected is not None:
        summary.update(wrong=wrong, wrong_examples=examples)
    elif summary["sent"] is None:
        summary.update(wrong=1, wrong_examples=["dnsperf's summary has no 'Queries sent'"])
    else:
        # totals: each rcode within the unanswered queries of what the queries sent call for
        want = sent_rcodes(tmp, int(summary["sent"]))
        slack = int(summary["sent"]) - int(summary["completed"] or 0)
        bad = sum(n for code, n in rcodes.items() if code not in want)
        off = sum(max(0, abs(rcodes.get(code, 0) - n) - slack) for code, n in want.items())
        summary.update(
            wrong=bad + off,
            wrong_examples=["rcodes %s, the queries sent call for %s" % (rcodes, dict(want))] if bad + off else [],
        )
    return summary


def measure(tmp, args, name, argv, expected, procs, rnd):
    """Start one server, check every answer, dnsperf it (saturating, then
    paced), stop it -> its figures."""
    print("%s (round %d): starting, then dnsperf for %d s ..." % (name, rnd + 1, args.seconds), flush=True)
    workers = int(name.split("/")[1]) if name.startswith("podnet/") else 0
    # podnet: every worker has built its table and bound
    ready = (lambda text, w=workers: text.count(" serving ") >= w) if workers else None
    proc = start(argv, os.path.join(tmp, "%s-%d.log" % (name.replace("/", "-"), rnd)), ready)
    procs.append(proc)
    try:
        checked = check_answers(tmp)
        print(
            "  %d answers checked in %.1f s: %d wrong, %d unanswered"
            % (checked["checked"], checked["seconds"], checked["wrong"], checked["unanswered"]),
            flush=True,
        )
        cpu0 = cpu_seconds(proc.pid)
        r = dnsperf(tmp, args, args.seconds)
        r["server_cpu_s"] = round(cpu_seconds(proc.pid) - cpu0, 2)
        paced = dnsperf(tmp, args, args.latency_seconds, args.latency_qps, expected)
    finally:
        stop(proc)
    r.update({k: paced[k] for k in ("p50_ms", "p90_ms", "p99_ms")}, paced_qps=paced["qps"], paced_lost=paced["lost"])
    r["wrong"] = {
        "checker": checked["wrong"] + checked["unanswered"],
        "saturated rcodes": r.pop("wrong"),
        "paced rcodes": paced["wrong"],
    }
    r["wrong_examples"] = checked["examples"] + r.pop("wrong_examples") + paced["wrong_examples"]
    print("  %.0f QPS" % r["qps"], flush=True)
    return r


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--services", type=int, default=500)
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument(
        "--workers",
        default=None,
        help="podnet worker counts to run, comma-separated (default: 1 and one per CPU, when different)",
    )
    p.add_argument("--rounds", type=int, default=3, help="rounds alternating the servers (medians reported)")
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
        expected = expected_rcodes(tmp)
        kubeconfig = api.token_kubeconfig("system:serviceaccount:kube-system:coredns")
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
        # podnet/1 and dnsmasq side by side, in rounds: the machine's drift
        # (other work on it) hits both alike; the headline is the median of
        # the rounds' podnet/1 / dnsmasq ratios
        order = ["podnet/1", "dnsmasq"] if "podnet/1" in servers else ["dnsmasq"]
        order += [n for n in servers if n not in order]
        runs = {name: [] for name in order}
        for rnd in range(args.rounds):
            for name in order:
                runs[name].append(measure(tmp, args, name, servers[name], expected, procs, rnd))
        results = {}
        for name, rs in runs.items():
            r = dict(sorted(rs, key=lambda x: x["qps"])[len(rs) // 2])  # the median round's figures
            r["qps_rounds"] = [x["qps"] for x in rs]
            r["wrong"] = {k: sum(x["wrong"][k] for x in rs) for k in rs[0]["wrong"]}
            r["wrong_examples"] = [e for x in rs for e in x["wrong_examples"]][:10]
            results[name] = r
        ratios = {}
        for name in runs:
            if name.startswith("podnet/"):
                per_round = sorted(
                    a["qps"] / b["qps"] for a, b in zip(runs[name], runs["dnsmasq"], strict=True) if b["qps"]
                )
                if per_round:
                    ratios[name] = per_round[len(per_round) // 2]
        ratio = ratios.get("podnet/1")  # the headline: one worker against dnsmasq's one thread
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
        for name, r in results.items():
            print("%-8s QPS per round: %s" % (name, " ".join("%.0f" % q for q in r["qps_rounds"])))
        print()
        print("wrong answers, all rounds (checker over every query / saturated run rcodes / paced run rcodes):")
        failed = 0
        for name, r in results.items():
            w = r["wrong"]
            failed += sum(w.values())
            print("  %-8s %6d %6d %6d" % (name, w["checker"], w["saturated rcodes"], w["paced rcodes"]))
            for e in r["wrong_examples"]:
                print("           %s" % e)
        print()
        if ratio is not None:
            print(
                "podnet/1 / dnsmasq QPS ratio: %.2f (target >= 1.0; one worker against dnsmasq's single thread; "
                "median of %d rounds' ratios); %d services, %d s, %d clients, %d outstanding, "
                "%d CPUs shared with dnsperf"
                % (
                    ratio,
                    args.rounds,
                    args.services,
                    args.seconds,
                    args.clients,
                    args.outstanding,
                    os.cpu_count(),
                )
            )
        for name, r in sorted(ratios.items()):
            if name != "podnet/1":
                print("  apart: %s / dnsmasq QPS ratio: %.2f (%s workers)" % (name, r, name.split("/")[1]))
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"results": results, "ratios": ratios, "ratio": ratio, "args": vars(args)}, f, indent=1)
        if failed:
            print("FAILED: %d wrong answers (see above): the figures do not count" % failed, file=sys.stderr)
            sys.exit(1)
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
