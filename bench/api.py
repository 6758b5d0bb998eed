"""The Kubernetes API server: what going through it costs against the store
called directly, how fast a watch delivers, kubectl at 1,000 pods, and what
an idle lab costs in CPU.

Run as root:  .venv/bin/python bench/api.py [--objects 1000] [--rounds 3]
                  [--watch-writes 300] [--idle-seconds 60] [--json FILE]

In one run:
- create / list / watch through the API (HTTPS, podnet's client, one kept-alive
  connection) against the same sqlite store called directly (SqliteStore:
  put, list, watch), in alternating rounds; each side's answers are checked
  (every object created is listed back; every write is seen by the watch);
- watch delivery latency: a writer changes one object --watch-writes times,
  a watcher notes when each new resourceVersion arrives; p50 and p99 of
  (arrival - write returned), through the API and from the store's watch;
- `kubectl get pods -A` (the real kubectl) and `podnet get pods -A` with
  --objects pods, median of 5;
- an idle lab (2 nodes, examples/lab.yaml, nothing changing): the CPU each
  of its processes uses over --idle-seconds (utime+stime from /proc).
Nothing here asserts a time; the figures and ratios are printed.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def pod(i):
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p%05d" % i, "namespace": "default", "labels": {"app": "bench", "i": str(i % 10)}},
        "spec": {"containers": [{"name": "c", "image": "agnhost", "args": ["pause"]}]},
    }


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100.0 * (len(xs) - 1))))] if xs else float("nan")


def ms(x):
    return "%.2f ms" % (x * 1000)


# ---- create and list ------------------------------------------------------------


def api_round(client, n, tag):
    t = []
    for i in range(n):
        obj = pod(i)
        obj["metadata"]["name"] = "%s-%05d" % (tag, i)
        t0 = time.perf_counter()
        client.create(obj)
        t.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    items = client.list("Pod", "default", labels="app=bench")
    t_list = time.perf_counter() - t0
    got = {o["metadata"]["name"] for o in items}
    assert all("%s-%05d" % (tag, i) in got for i in range(n)), "API list misses created pods"
    return t, t_list


def store_round(store, n, tag):
    from podnet.api import key_for, stamp

    t = []
    for i in range(n):
        obj = pod(i)
        obj["metadata"]["name"] = "%s-%05d" % (tag, i)
        stamp(obj)
        t0 = time.perf_counter()
        store.put(key_for("Pod", "default", obj["metadata"]["name"]), obj, expect_rev=0)
        t.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    items, _ = store.list("/registry/pods/default/")
    t_list = time.perf_counter() - t0
    got = {k.rsplit("/", 1)[1] for k, _, _ in items}
    assert all("%s-%05d" % (tag, i) in got for i in range(n)), "store list misses created pods"
    return t, t_list


# ---- watch latency ----------------------------------------------------------------


def api_watch_latency(client, writes):
    """Writer: merge-patch one label; watcher: the API's watch of pods."""
    name = "watched"
    client.create(dict(pod(0), metadata={"name": name, "namespace": "default", "labels": {"n": "0"}}))
    seen, done = {}, threading.Event()
    _, rv = client.list_rev("Pod", "default")

    def watch():
        for etype, obj in client.watch("Pod", "default", rv, fields="metadata.name=" + name, stop=done):
            if etype == "MODIFIED":
                seen[(obj["metadata"].get("labels") or {}).get("n")] = time.perf_counter()
                if len(seen) >= writes:
                    return

    th = threading.Thread(target=watch, daemon=True)
    th.start()
    time.sleep(0.3)
    wrote = {}
    for i in range(1, writes + 1):
        client.patch("Pod", "default", name, {"metadata": {"labels": {"n": str(i)}}})
        wrote[str(i)] = time.perf_counter()
        time.sleep(0.005)
    th.join(30)
    done.set()
    missing = [k for k in wrote if k not in seen]
    assert not missing, "the API watch missed %d writes" % len(missing)
    return [seen[k] - wrote[k] for k in wrote]


def store_watch_latency(store, writes):
    from podnet.api import key_for

    key = key_for("Pod", "default", "watched")
    store.put(key, dict(pod(0), metadata={"name": "watched", "namespace": "default", "labels": {"n": "0"}}))
    _, rev = store.list("/registry/pods/")
    seen, done = {}, threading.Event()

    def watch():
        for ev in store.watch("/registry/pods/", rev, stop=done):
            if ev.key == key and ev.value:
                seen[ev.value["metadata"]["labels"]["n"]] = time.perf_counter()
                if len(seen) >= writes + 1:
                    return

    th = threading.Thread(target=watch, daemon=True)
    th.start()
    time.sleep(0.3)
    wrote = {}
    for i in range(1, writes + 1):
        obj = dict(pod(0), metadata={"name": "watched", "namespace": "default", "labels": {"n": str(i)}})
        store.put(key, obj)
        wrote[str(i)] = time.perf_counter()
        time.sleep(0.005)
    th.join(30)
    done.set()
    missing = [k for k in wrote if k not in seen]
    assert not missing, "the store watch missed %d writes" % len(missing)
    return [seen[k] - wrote[k] for k in wrote]


# ---- kubectl at N pods ------------------------------------------------------------------


def timed_cmd(argv, env, runs=5):
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        res = subprocess.run(argv, env=env, capture_output=True, text=True)
        out.append(time.perf_counter() - t0)
        if res.returncode != 0:
            raise SystemExit("%s failed: %s" % (" ".join(argv), res.stderr[-500:]))
    return out, res.stdout


# ---- idle lab -----------------------------------------------------------------------------


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def idle_lab(seconds, root):
    env = dict(os.environ, PODNET_STATE_ROOT=root)
    cli = [sys.executable, "-m", "podnet.cli.main"]
    lab = "pnbapi"
    res = subprocess.run(
        cli + ["lab", "up", "--name", lab, "-f", os.path.join(ROOT, "examples", "lab.yaml")],
        env=env,
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        raise SystemExit("lab up failed: " + res.stderr[-2000:])
    try:
        time.sleep(5)  # let start-up work settle
        with open(os.path.join(root, lab, "procs.json")) as f:
            procs = {role: p["pid"] for role, p in json.load(f).items()}
        # the kube-dns pod's server: a process of the lab whose command line says podnet.dns serve --kubeconfig
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    with open("/proc/%s/cmdline" % pid, "rb") as f:
                        cmd = f.read().split(b"\0")
                except OSError:
                    continue
                if b"--kubeconfig" in cmd and b"podnet.dns" in cmd and any(lab.encode() in c for c in cmd):
                    procs.setdefault("coredns-pod", int(pid))
        before = {r: cpu_seconds(p) for r, p in procs.items()}
        t0 = time.monotonic()
        time.sleep(seconds)
        wall = time.monotonic() - t0
        return {r: 100.0 * (cpu_seconds(p) - before[r]) / wall for r, p in procs.items()}
    finally:
        subprocess.run(cli + ["lab", "down", "--name", lab], env=env, capture_output=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--objects", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--watch-writes", type=int, default=300)
    p.add_argument("--idle-seconds", type=int, default=60)
    p.add_argument("--json")
    args = p.parse_args()
    from podnet.apiserver.local import ApiServer
    from podnet.store.sqlite import SqliteStore

    tmp = tempfile.mkdtemp(prefix="pnbapi-")
    api = None
    results = {}
    try:
        api = ApiServer(os.path.join(tmp, "api"))
        client = api.client()
        client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})
        store = SqliteStore(os.path.join(tmp, "direct.db"))
        per = max(1, args.objects // args.rounds)
        a_create, s_create, a_list, s_list = [], [], [], []
        for r in range(args.rounds):  # alternate: API, store, store, API, ...
            order = [("api", "store"), ("store", "api")][r % 2]
            for side in order:
                if side == "api":
                    t, tl = api_round(client, per, "r%d" % r)
                    a_create += t
                    a_list.append(tl)
                else:
                    t, tl = store_round(store, per, "r%d" % r)
                    s_create += t
                    s_list.append(tl)
        total = per * args.rounds
        print(
            "create, %d objects each side (p50): API %s, store %s, ratio %.2f"
            % (
                total,
                ms(statistics.median(a_create)),
                ms(statistics.median(s_create)),
                statistics.median(a_create) / statistics.median(s_create),
            )
        )
        print(
            "list of the last round's %d..%d pods (median): API %s, store %s, ratio %.2f"
            % (
                per,
                total,
                ms(statistics.median(a_list)),
                ms(statistics.median(s_list)),
                statistics.median(a_list) / statistics.median(s_list),
            )
        )
        results.update(
            create_api_p50=statistics.median(a_create),
            create_store_p50=statistics.median(s_create),
            list_api=statistics.median(a_list),
            list_store=statistics.median(s_list),
        )
        lat_a = api_watch_latency(client, args.watch_writes)
        lat_s = store_watch_latency(store, args.watch_writes)
        print(
            "watch delivery, %d writes: API p50 %s p99 %s; store watch p50 %s p99 %s"
            % (args.watch_writes, ms(pct(lat_a, 50)), ms(pct(lat_a, 99)), ms(pct(lat_s, 50)), ms(pct(lat_s, 99)))
        )
        results.update(
            watch_api_p50=pct(lat_a, 50),
            watch_api_p99=pct(lat_a, 99),
            watch_store_p50=pct(lat_s, 50),
            watch_store_p99=pct(lat_s, 99),
        )
        store.close()
        # kubectl get pods -A with `--objects` pods in the API
        have = len(client.list("Pod"))
        for i in range(have, args.objects):
            client.create(dict(pod(i), metadata=dict(pod(i)["metadata"], name="k%05d" % i)))
        n = len(client.list("Pod"))
        env = dict(os.environ, KUBECONFIG=api.kubeconfig)
        if shutil.which("kubectl"):
            t, out = timed_cmd(["kubectl", "get", "pods", "-A"], env)
            assert len(out.splitlines()) == n + 1, "kubectl printed %d lines for %d pods" % (len(out.splitlines()), n)
            print("kubectl get pods -A, %d pods: median %s (min %s)" % (n, ms(statistics.median(t)), ms(min(t))))
            results["kubectl_get_pods"] = statistics.median(t)
            t, out = timed_cmd(["kubectl", "get", "pods", "-A", "-o", "json"], env)
            print("kubectl get pods -A -o json, %d pods: median %s" % (n, ms(statistics.median(t))))
    finally:
        if api is not None:
            api.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    if args.idle_seconds > 0:
        root = tempfile.mkdtemp(prefix="pnbapi-lab-")
        try:
            cpu = idle_lab(args.idle_seconds, root)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        print("idle lab, 2 nodes, %d s, %% of one core:" % args.idle_seconds)
        for role, c in sorted(cpu.items()):
            print("  %-16s %5.2f %%" % (role, c))
        results["idle_cpu_percent"] = cpu
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
