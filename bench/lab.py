"""`podnet lab up` end to end: N nodes and a Deployment of P agnhost netexec pods.

Run as root:  .venv/bin/python bench/lab.py [--nodes 3] [--pods 90] [--timeout 300] [--json FILE]

What it does: makes a throwaway state root (PODNET_STATE_ROOT=/tmp/pnlab-*, so
nothing touches /var/lib/podnet) and a manifest with one Deployment of --pods
replicas (image agnhost:2.45, args netexec --http-port=8080, readinessProbe
httpGet /healthz :8080 every 1 s), then runs the real CLI

    python -m podnet.cli.main lab up --name bench<pid%10000> --nodes N -f MANIFEST --timeout T

and, while it runs, reads the lab's store itself every --poll seconds
(podnet.lab.lab.objects_for) to note when each thing is first seen. At the end
it always runs `lab down` through the CLI (also after a failure or Ctrl-C) and
checks that no `pn-<lab>-` network namespace is left. Only the lab's own
namespaces are created; the root network namespace is never changed.

Reading the figures (all times in seconds from the start of `lab up`, i.e.
including the CLI's own interpreter start):

  nodes Ready       every node Ready with a podCIDR (what `lab up` waits for
                    before applying the manifest)
  pods created ...  the milestones of the pod phase, each when the poller
                    first saw the LAST of the P pods reach it: object created
                    (Deployment controller), scheduled (spec.nodeName),
                    started (status.podIP: the agent made its netns, ran the
                    CNI ADD and started the container), Ready (probe passed)
  pods/s            P / (all Ready - nodes Ready): the pod phase's throughput;
                    the "overall" figure divides by the whole wall time
  CNI ADD sum       cni_add_seconds summed over the nodes' stats.json (the
                    agent times each libcni ADD: plugin exec + daemon work)
  CNI share         of a pod's start wait: the mean single ADD divided by the
                    mean scheduled->started time (the agent starts up to 4
                    pods at once per node, so ADDs overlap and a sum over
                    wall time would exceed 100%). A small share means the
                    CNI is not what pods wait for.
  single ADD        stats.json is cumulative; the poller reads it every poll,
                    and a poll that finds a node's count one higher has one
                    ADD's time: min/p50/p95/max, and the mean of each node's
                    first 5 vs last 5 ADDs (growth with the pod count)
  CPU busy          the whole machine's, from /proc/stat, between the start
                    and all Ready (and over 1 s before the start: the load
                    that is not ours); 100 % means CPU-bound
  per-node table    from the agents' logs ("pod ... started" lines, ms
                    resolution): first/last start, the median gap between two
                    consecutive starts on one node (the agent's cost per pod
                    start), and how much of that gap the mean ADD is
  stage latencies   per pod, between the poller's first sightings (so each is
                    +- one poll interval): created->scheduled,
                    scheduled->started, started->Ready
  CPU seconds       per component at all Ready, from /proc/<pid>/stat:
                    controllers; each agent's own CPU (sync loop, CNI daemon
                    threads) and its reaped children (the CNI plugin execs and
                    the tools the daemon runs); the containers (every process
                    in one of the lab's pod namespaces)

Poll resolution is --poll (0.1 s); the poller's own CPU time is printed, as
it competes with the lab on a small machine, and so does everything else
running there (see the load averages).
"""

import argparse
import glob
import itertools
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from podnet.api import ApiError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE = "registry.k8s.io/e2e-test-images/agnhost:2.45"
LOG_TAIL = 25

MANIFEST = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: bench
  labels:
    app: bench
spec:
  replicas: {pods}
  selector:
    matchLabels:
      app: bench
  template:
    metadata:
      labels:
        app: bench
    spec:
      containers:
      - name: netexec
        image: {image}
        args: ["netexec", "--http-port=8080"]
        ports:
        - name: http
          containerPort: 8080
        readinessProbe:
          httpGet:
            path: /healthz
            port: 8080
          periodSeconds: 1
"""

STAGES = ("created", "scheduled", "started", "running", "ready")
STARTED_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) podnet\.agent pod (\S+) started: ")


class BenchError(Exception):
    pass


def pct(xs, p):  # nearest rank
    s = sorted(xs)
    return s[max(0, -(-p * len(s) // 100) - 1)] if s else None


def cpu_times():
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    hz = os.sysconf("SC_CLK_TCK")
    idle = v[3] + (v[4] if len(v) > 4 else 0)  # idle + iowait
    total = sum(v[:8])  # guest time is already in user/nice
    return (total - idle) / hz, total / hz


def proc_cpu(pid):
    """(own, reaped children's) CPU seconds of a process, or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            rest = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    hz = os.sysconf("SC_CLK_TCK")
    return (int(rest[11]) + int(rest[12])) / hz, (int(rest[13]) + int(rest[14])) / hz


def _ready(obj):
    return any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in obj.get("status", {}).get("conditions", [])
    )


class LabBench:
    def __init__(self, args):
        self.args = args
        self.lab = "bench%d" % (os.getpid() % 10000)
        self.tmp = tempfile.mkdtemp(prefix="pnlab-")
        # before anything imports podnet.lab.topology (STATE_ROOT is read at import)
        os.environ["PODNET_STATE_ROOT"] = self.tmp
        os.environ.pop("PODNET_LAB", None)
        sys.path.insert(0, ROOT)
        from podnet.lab import lab as labmod
        from podnet.lab import topology as topo

        if topo.STATE_ROOT != self.tmp:
            raise BenchError("podnet.lab.topology was imported before PODNET_STATE_ROOT was set")
        self.labmod, self.topo = labmod, topo
        if topo.lab_namespaces(self.lab):  # someone else's lab of the same name: not ours to remove
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise BenchError("network namespaces %s* exist already; not touching them" % topo.prefix(self.lab))
        self.sdir = topo.state_dir(self.lab)
        self.manifest = os.path.join(self.tmp, "bench.yaml")
        with open(self.manifest, "w") as f:
            f.write(MANIFEST.format(pods=args.pods, image=IMAGE))
        self.up_out = os.path.join(self.tmp, "lab-up.out")
        self.up_text = None  # its contents, kept when the temp dir goes
        self.proc = None
        self.objects = None
        self.t0 = None
        self.t0_wall = None
        self.marks = {}  # milestone -> seconds from t0
        self.pods = {}  # uid -> {"name", "node", stage: seconds}
        self.poll_cpu = 0.0
        self.polls = 0
        self.poll_errors = []
        self.collected = {}  # stats.json and agent-log figures, read before `lab down`
        self.add_seen = {}  # node -> (cni_add_count, cni_add_seconds) at the last poll
        self.adds = {}  # node -> [(t, seconds of one ADD)] when a poll saw exactly one more
        self.cpu0 = None
        self.cpu = {}  # component -> CPU seconds, at all Ready

    # ---- the CLI ---------------------------------------------------------------

    def cli(self, *args):
        return [sys.executable, "-m", "podnet.cli.main", *args]

    def start_up(self):
        self.cpu0 = cpu_times()
        self.t0_wall = time.time()
        self.t0 = time.monotonic()
        with open(self.up_out, "wb") as out:
            self.proc = subprocess.Popen(
                self.cli(
                    "lab",
                    "up",
                    "--name",
                    self.lab,
                    "--nodes",
                    str(self.args.nodes),
                    "-f",
                    self.manifest,
                    "--timeout",
                    str(self.args.timeout),
                ),
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # a terminal's Ctrl-C reaches us; cleanup stops it

    def stop_up(self):
        """The `lab up` process we started, if it still runs (by its PID)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def up_output(self):
        try:
            with open(self.up_out, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    # ---- watching the store ------------------------------------------------------

    def mark(self, what, t):
        self.marks.setdefault(what, t)

    def poll_once(self):
        c0 = time.process_time()
        t = time.monotonic() - self.t0
        if self.objects is None:
            if not os.path.exists(os.path.join(self.sdir, "kubeconfig")):
                return
            self.objects = self.labmod.objects_for(self.lab).client
        try:
            nodes = self.objects.list("Node")
            pods = self.objects.list("Pod", "default")
        except ApiError:  # the API server is not answering yet
            return
        self.polls += 1
        self.mark("first read of the API", t)
        ready_nodes = [n for n in nodes if n["spec"].get("podCIDR") and _ready(n)]
        if len(ready_nodes) >= self.args.nodes:
            self.mark("nodes Ready", t)
        for p in pods:
            uid = p["metadata"].get("uid")
            rec = self.pods.setdefault(uid, {"name": p["metadata"]["name"], "node": None})
            rec.setdefault("created", t)
            if p["spec"].get("nodeName"):
                rec["node"] = p["spec"]["nodeName"]
                rec.setdefault("scheduled", t)
            st = p.get("status", {})
            if st.get("podIP"):
                rec.setdefault("started", t)
            if any("running" in cs.get("state", {}) for cs in st.get("containerStatuses", [])):
                rec.setdefault("running", t)
            if _ready(p):
                rec.setdefault("ready", t)
            if st.get("phase") in ("Failed", "Succeeded"):
                rec.setdefault("ended", (t, st.get("phase")))
            if st.get("reason"):
                rec["last_reason"] = "%s: %s" % (st.get("reason"), st.get("message", ""))
        self.poll_stats(t)
        if pods:
            self.mark("first pod created", t)
        for stage in STAGES:
            n = sum(1 for r in self.pods.values() if stage in r)
            if n:
                self.mark("first pod " + stage, t)
            if n >= self.args.pods:
                self.mark("all pods " + stage, t)
        self.poll_cpu += time.process_time() - c0

    def poll_stats(self, t):
        """Single ADD latencies: stats.json is cumulative, so a poll that sees
        the count grow by exactly one has one ADD's time (more: their mean)."""
        for path in glob.glob(os.path.join(self.sdir, "nodes", "*", "stats.json")):
            node = os.path.basename(os.path.dirname(path))
            try:
                with open(path) as f:
                    st = json.load(f)
            except (OSError, ValueError):
                continue
            n, sec = st.get("cni_add_count", 0), st.get("cni_add_seconds", 0.0)
            n0, sec0 = self.add_seen.get(node, (0, 0.0))
            if n > n0:
                self.adds.setdefault(node, []).extend([(t, (sec - sec0) / (n - n0))] * (n - n0))
            self.add_seen[node] = (n, sec)

    def counts(self):
        return {stage: sum(1 for r in self.pods.values() if stage in r) for stage in STAGES}

    def wait(self):
        """Poll until every pod is Ready (and `lab up` has returned), or fail."""
        deadline = self.t0 + self.args.timeout
        while True:
            try:
                self.poll_once()
            except Exception as exc:  # the store may be half made at the very start
                self.poll_errors.append("%.2f %s" % (time.monotonic() - self.t0, exc))
                if time.monotonic() - self.t0 > 10:
                    raise BenchError("reading the lab's store: %s" % exc) from exc
            rc = self.proc.poll()
            if rc is not None:
                self.mark("lab up returned", time.monotonic() - self.t0)
                self.marks.setdefault("lab up rc", rc)
                if rc != 0:
                    raise BenchError("`lab up` exited with %d" % rc)
            failed = [r for r in self.pods.values() if "ended" in r]
            if failed:
                raise BenchError("pods ended: %s" % ", ".join("%s %s" % (r["name"], r["ended"][1]) for r in failed))
            if "all pods ready" in self.marks and "cpu" not in self.marks:
                busy, total = [b - a for a, b in zip(self.cpu0, cpu_times(), strict=True)]
                self.marks["cpu"] = {"busy": busy, "total": total}
            if "all pods ready" in self.marks and rc is not None:
                return
            if time.monotonic() > deadline:
                c = self.counts()
                raise BenchError(
                    "timeout after %.0f s: nodes Ready %s; pods %s; lab up %s"
                    % (
                        time.monotonic() - self.t0,
                        "yes" if "nodes Ready" in self.marks else "no",
                        ", ".join("%s %d" % kv for kv in c.items()),
                        "still running" if rc is None else "returned %d" % rc,
                    )
                )
            time.sleep(self.args.poll)

    # ---- what the lab recorded -------------------------------------------------------

    def collect(self):
        """Node stats.json and the agents' start lines (all gone after `lab down`)."""
        nodes = {}
        for path in sorted(glob.glob(os.path.join(self.sdir, "nodes", "*", "stats.json"))):
            node = os.path.basename(os.path.dirname(path))
            with open(path) as f:
                nodes[node] = {"stats": json.load(f)}
        for path in sorted(glob.glob(os.path.join(self.sdir, "logs", "agent-*.log"))):
            node = os.path.basename(path)[len("agent-") : -len(".log")]
            starts = []
            with open(path, errors="replace") as f:
                for line in f:
                    m = STARTED_LINE.match(line)
                    if m:
                        wall = time.mktime(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")) + int(m.group(2)) / 1e3
                        starts.append(wall - self.t0_wall)
            nodes.setdefault(node, {"stats": {}})["starts"] = starts
        self.collected = nodes
        self.cpu = self.component_cpu()

    def component_cpu(self):
        """CPU seconds used so far by the lab's processes: the recorded ones
        (controllers, agents: own, and their reaped children, i.e. the CNI
        plugin execs and the tools the CNI daemon runs), and the containers,
        found by living in one of the lab's pod namespaces (by inode)."""
        out = {}
        for role, p in sorted(self.topo.processes(self.lab).items()):
            got = proc_cpu(p["pid"]) if p["alive"] else None
            if got:
                out[role] = {"own": got[0], "children": got[1]}
        from podnet.kernel.netns import pids_in

        pod_ns = [n for n in self.topo.lab_namespaces(self.lab) if n.startswith(self.topo.prefix(self.lab) + "p-")]
        total = n = 0
        for pid in pids_in(pod_ns):
            got = proc_cpu(pid)
            if got:
                total += got[0] + got[1]
                n += 1
        out["containers"] = {"own": total, "children": 0.0, "processes": n}
        return out

    def log_tails(self):
        print("\n--- `lab up` output (%s) ---" % self.up_out, file=sys.stderr)
        print("\n".join(self.up_output().splitlines()[-LOG_TAIL:]), file=sys.stderr)
        for path in sorted(glob.glob(os.path.join(self.sdir, "logs", "*.log"))):
            with open(path, errors="replace") as f:
                lines = f.read().splitlines()
            print("\n--- last %d lines of %s ---" % (LOG_TAIL, path), file=sys.stderr)
            print("\n".join(lines[-LOG_TAIL:]), file=sys.stderr)

    # ---- cleanup ---------------------------------------------------------------------

    def down(self):
        """`lab down` through the CLI; -> (seconds, rc, leftover namespaces)."""
        if self.objects is not None:
            try:
                self.objects.store.close()
            except Exception:
                pass
            self.objects = None
        if not os.path.exists(self.sdir) and not self.topo.lab_namespaces(self.lab):
            return 0.0, "not run: nothing was made", []
        t = time.monotonic()
        res = subprocess.run(
            self.cli("lab", "down", "--name", self.lab),
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=300,
        )
        took = time.monotonic() - t
        if res.returncode != 0:
            print("`lab down` exited with %d:\n%s%s" % (res.returncode, res.stdout, res.stderr), file=sys.stderr)
        left = self.topo.lab_namespaces(self.lab)
        if left and res.returncode != 0:  # one more try, in-process (the same code)
            try:
                self.labmod.down(self.lab)
            except Exception as exc:
                print("in-process lab down: %s" % exc, file=sys.stderr)
            left = self.topo.lab_namespaces(self.lab)
        return took, res.returncode, left

    def cleanup(self):
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut cleanup short
        try:
            self.stop_up()
            took, rc, left = self.down()
            self.marks["lab down seconds"] = took
            self.marks["lab down rc"] = rc
            if left:
                print(
                    "WARNING: network namespaces of lab %s left behind: %s" % (self.lab, ", ".join(left)),
                    file=sys.stderr,
                )
            self.marks["netns left"] = left
            self.up_text = self.up_output()
            shutil.rmtree(self.tmp, ignore_errors=True)
        finally:
            signal.signal(signal.SIGINT, old)


# ---- figures and report -----------------------------------------------------------


def figures(b, args):
    m = b.marks
    wall = m["all pods ready"]
    phase = wall - m["nodes Ready"]
    nodes = {}
    add_sum = add_n = 0
    for node, d in sorted(b.collected.items()):
        st = d.get("stats", {})
        starts = sorted(d.get("starts", []))
        gaps = [y - x for x, y in itertools.pairwise(starts)]
        mine = [r for r in b.pods.values() if r.get("node") == node]
        s, n = st.get("cni_add_seconds", 0.0), st.get("cni_add_count", 0)
        add_sum += s
        add_n += n
        nodes[node] = {
            "pods": len(mine),
            "cni_add_seconds": s,
            "cni_add_count": n,
            "cni_add_mean": s / n if n else None,
            "first_start": starts[0] if starts else None,
            "last_start": starts[-1] if starts else None,
            "start_gap_p50": statistics.median(gaps) if gaps else None,
            "last_ready": max((r["ready"] for r in mine if "ready" in r), default=None),
        }
    lat = {}
    for a, z in (("created", "scheduled"), ("scheduled", "started"), ("started", "ready"), ("created", "ready")):
        xs = [r[z] - r[a] for r in b.pods.values() if a in r and z in r]
        lat["%s->%s" % (a, z)] = {
            "p50": pct(xs, 50),
            "p95": pct(xs, 95),
            "max": max(xs) if xs else None,
            "mean": statistics.mean(xs) if xs else None,
        }
    one = [dt for xs in b.adds.values() for _, dt in xs]
    firsts = [dt for xs in b.adds.values() for _, dt in xs[:5]]
    lasts = [dt for xs in b.adds.values() for _, dt in xs[-5:]]
    adds = {
        "p50": pct(one, 50),
        "p95": pct(one, 95),
        "max": max(one) if one else None,
        "min": min(one) if one else None,
        "first5_mean": statistics.mean(firsts) if firsts else None,
        "last5_mean": statistics.mean(lasts) if lasts else None,
    }
    cpu = m.get("cpu")
    return {
        "wall_ready": wall,
        "pod_phase": phase,
        "single_add": adds,
        "cpu_busy_fraction": cpu["busy"] / cpu["total"] if cpu and cpu["total"] else None,
        "pods_per_second_phase": args.pods / phase if phase > 0 else None,
        "pods_per_second_overall": args.pods / wall,
        "cni_add_seconds_sum": add_sum,
        "cni_add_count": add_n,
        "cni_add_mean": add_sum / add_n if add_n else None,
        "cni_share_start": ((add_sum / add_n) / lat["scheduled->started"]["mean"])
        if add_n and lat.get("scheduled->started", {}).get("mean")
        else None,
        "nodes": nodes,
        "latencies": lat,
    }


def _f(x, fmt="%.2f"):
    return "-" if x is None else fmt % x


def table(rows, left=(0,)):
    """Plain aligned text: the columns in `left` flush left, the others right."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        print(
            "  "
            + "  ".join(
                c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=False))
            ).rstrip()
        )
        if n == 0:
            print("  " + "  ".join("-" * w for w in widths))


def report(b, fig, data, args):
    m = b.marks
    print(
        "\npodnet lab up: %d nodes, a Deployment of %d agnhost netexec pods (readiness httpGet /healthz, "
        "period 1 s)\nlab %s, state %s; %s, %d CPUs; poll every %.2f s"
        % (args.nodes, args.pods, b.lab, b.tmp, platform.release(), os.cpu_count(), args.poll)
    )
    print()
    rows = [("milestone (first time seen)", "s from start")]
    for key, label in (
        ("first read of the API", "API readable (poller's first read)"),
        ("nodes Ready", "nodes Ready (%d, with podCIDR)" % args.nodes),
        ("first pod created", "first pod object created"),
        ("all pods created", "all %d pod objects created" % args.pods),
        ("all pods scheduled", "all %d pods scheduled" % args.pods),
        ("first pod started", "first pod started (podIP set)"),
        ("all pods started", "all %d pods started" % args.pods),
        ("first pod ready", "first pod Ready"),
        ("all pods ready", "all %d pods Ready" % args.pods),
        ("lab up returned", "`lab up` command returned (rc %s)" % m.get("lab up rc")),
    ):
        rows.append((label, _f(m.get(key))))
    table(rows)
    if m.get("lab up returned", 0) < m["all pods ready"] - 2 * args.poll:
        print(
            "  note: `lab up` returned %.1f s before all pods were Ready" % (m["all pods ready"] - m["lab up returned"])
        )
    print()
    rows = [("throughput and CNI", "value")]
    rows += [
        ("pod phase (all Ready - nodes Ready)", "%.2f s" % fig["pod_phase"]),
        ("pods/s in the pod phase", _f(fig["pods_per_second_phase"])),
        ("pods/s overall (pods / all Ready)", _f(fig["pods_per_second_overall"])),
        ("CNI ADD sum over nodes (count)", "%.2f s (%d)" % (fig["cni_add_seconds_sum"], fig["cni_add_count"])),
        ("CNI ADD mean per pod", _f(fig["cni_add_mean"] and fig["cni_add_mean"] * 1e3, "%.1f ms")),
        (
            "CNI share of a pod's start wait (ADD / sched->started)",
            _f(fig["cni_share_start"] and fig["cni_share_start"] * 100, "%.1f %%"),
        ),
        (
            "single ADD min / p50 / p95 / max (ms)",
            "/".join(
                _f(fig["single_add"][k] and fig["single_add"][k] * 1e3, "%.0f") for k in ("min", "p50", "p95", "max")
            ),
        ),
        (
            "single ADD mean: each node's first 5, last 5",
            "%s, %s ms"
            % (
                _f(fig["single_add"]["first5_mean"] and fig["single_add"]["first5_mean"] * 1e3, "%.0f"),
                _f(fig["single_add"]["last5_mean"] and fig["single_add"]["last5_mean"] * 1e3, "%.0f"),
            ),
        ),
        (
            "machine CPU busy, start to all Ready",
            _f(fig["cpu_busy_fraction"] and fig["cpu_busy_fraction"] * 100, "%%.0f %%%% of %d CPUs" % os.cpu_count()),
        ),
        (
            "machine CPU busy, 1 s before the start",
            _f(data["cpu_busy_before"] and data["cpu_busy_before"] * 100, "%.0f %%"),
        ),
        ("`lab down`", "%.2f s (rc %s)" % (m["lab down seconds"], m["lab down rc"])),
    ]
    table(rows)
    print()
    rows = [
        (
            "node",
            "pods",
            "ADDs",
            "ADD sum s",
            "ADD mean ms",
            "first start",
            "last start",
            "start gap p50 ms",
            "ADD/gap",
            "last Ready",
        )
    ]
    for node, d in fig["nodes"].items():
        share = d["cni_add_mean"] / d["start_gap_p50"] if d["cni_add_mean"] and d["start_gap_p50"] else None
        rows.append(
            (
                node,
                str(d["pods"]),
                str(d["cni_add_count"]),
                _f(d["cni_add_seconds"]),
                _f(d["cni_add_mean"] and d["cni_add_mean"] * 1e3, "%.1f"),
                _f(d["first_start"]),
                _f(d["last_start"]),
                _f(d["start_gap_p50"] and d["start_gap_p50"] * 1e3, "%.0f"),
                _f(share and share * 100, "%.0f %%"),
                _f(d["last_ready"]),
            )
        )
    table(rows)
    print()
    rows = [("per-pod stage latency (s)", "p50", "p95", "max")]
    for stage, d in fig["latencies"].items():
        rows.append((stage, _f(d["p50"]), _f(d["p95"]), _f(d["max"])))
    table(rows)
    if b.cpu:
        cpu = m.get("cpu", {})
        rows = [("CPU seconds, start to all Ready", "own", "children", "")]
        for role, d in b.cpu.items():
            rows.append(
                (
                    role,
                    "%.2f" % d["own"],
                    "%.2f" % d["children"],
                    "(%d processes)" % d["processes"]
                    if "processes" in d
                    else ("(children: CNI plugin execs, nft/ip)" if role.startswith("agent") else ""),
                )
            )
        lab_total = sum(d["own"] + d["children"] for d in b.cpu.values())
        rows.append(("all of the lab", "%.2f" % lab_total, "", ""))
        if cpu:
            rows.append(("whole machine busy (of %.1f available)" % cpu["total"], "%.2f" % cpu["busy"], "", ""))
        print()
        table(rows, left=(0, 3))
    print(
        "\npoller: %d reads of the API (%d failed), %.2f s CPU; load average at start %.2f, at end %.2f; "
        "total run time %.1f s"
        % (b.polls, len(b.poll_errors), b.poll_cpu, data["loadavg_start"], data["loadavg_end"], data["total_seconds"])
    )
    if m.get("netns left"):
        print("WARNING: netns left behind: %s" % ", ".join(m["netns left"]))
    else:
        print("cleanup: no pn-%s- namespace left" % b.lab)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--pods", type=int, default=90, help="replicas of the Deployment")
    ap.add_argument(
        "--timeout",
        type=int,
        default=300,
        help="passed to `lab up --timeout`; also the bench's limit for all pods Ready",
    )
    ap.add_argument("--poll", type=float, default=0.1, help="seconds between reads of the API")
    ap.add_argument("--json", metavar="FILE", help="also write the raw numbers (and every pod's timeline) here")
    args = ap.parse_args(argv)
    if not 1 <= args.nodes <= 50 or args.pods < 1:
        ap.error("--nodes must be 1-50 and --pods >= 1")
    if os.geteuid() != 0:
        ap.error("needs root (creates network namespaces)")

    def on_term(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)

    start = time.perf_counter()
    data = {
        "nodes": args.nodes,
        "pods": args.pods,
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "loadavg_start": os.getloadavg()[0],
        "poll": args.poll,
    }
    c0 = cpu_times()
    try:
        time.sleep(1.0)  # what the machine does without us
    except KeyboardInterrupt:
        return 130
    busy, total = [y - x for x, y in zip(c0, cpu_times(), strict=True)]
    data["cpu_busy_before"] = busy / total if total else None
    try:
        b = LabBench(args)
    except BenchError as exc:
        print("bench not started: %s" % exc, file=sys.stderr)
        return 1
    ok = False
    try:
        print(
            "lab %s: `lab up` of %d nodes and %d pods (state in %s) ..." % (b.lab, args.nodes, args.pods, b.tmp),
            file=sys.stderr,
            flush=True,
        )
        b.start_up()
        b.wait()
        b.collect()
        ok = True
    except KeyboardInterrupt:
        print("interrupted; cleaning up", file=sys.stderr)
        return 130
    except BenchError as exc:
        print("bench failed: %s" % exc, file=sys.stderr)
        b.stop_up()
        b.log_tails()
        return 1
    finally:
        b.cleanup()
        if not ok:
            print(
                "lab down: %.2f s (rc %s)%s"
                % (
                    b.marks.get("lab down seconds", 0),
                    b.marks.get("lab down rc"),
                    "; netns left: " + ", ".join(b.marks["netns left"]) if b.marks.get("netns left") else "",
                ),
                file=sys.stderr,
            )
    data["total_seconds"] = time.perf_counter() - start
    data["loadavg_end"] = os.getloadavg()[0]
    fig = figures(b, args)
    report(b, fig, data, args)
    if args.json:
        data.update(
            figures=fig,
            milestones=b.marks,
            agents=b.collected,
            poll_cpu=b.poll_cpu,
            polls=b.polls,
            poll_errors=b.poll_errors,
            single_adds=b.adds,
            component_cpu=b.cpu,
            pod_timelines=sorted(b.pods.values(), key=lambda r: r.get("created", 0)),
            lab_up_output=b.up_text,
        )
        with open(args.json, "w") as f:
            json.dump(data, f, indent=1)
    return 0 if not b.marks.get("netns left") else 1


if __name__ == "__main__":
    sys.exit(main())
