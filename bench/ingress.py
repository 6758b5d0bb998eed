"""Ingress: podnet's rendered nginx vs the same nginx configured by hand, and
how fast an Ingress change is served at 10, 100 and 1,000 rules.

Run as root:  .venv/bin/python bench/ingress.py [--rounds 3] [--seconds 8]
                  [--connections 32] [--sizes 10,100,1000] [--json FILE]

One lab (`bi<pid>`, 3 nodes, examples/lab.yaml: Deployment web of 3
agnhost netexec pods) with podnet's ingress addon. Both sides run in the
ingress-nginx pod, in front of the same three pods, and are reached from
the external host the same way (a LoadBalancer address, DNAT on the node,
the pod):

  podnet  the addon's nginx, configured by podnet's controller from an
          Ingress (host bench.example.com, Prefix / -> Service web, port http),
          through Service podnet-ingress/ingress-nginx;
  hand    the same nginx binary, started here in the same pod's netns on port
          8088 with a short nginx.conf a person would write (one upstream of
          the three pod addresses with keepalive, proxy_pass, Host and
          X-Forwarded-For), through a second LoadBalancer Service selecting
          the same pod (80 -> 8088); same worker count (1).

Load: wrk (Debian, installed by setup.sh) from the external host, `-t1 -c
CONNECTIONS -d SECONDS --latency`, GET /hostname with Host bench.example.com.
Requests per second and p99 latency from wrk's output. Rounds alternate
(podnet, hand, podnet, hand, ...) so a change in the machine's load hits
both; the ratio is the median over rounds of podnet RPS / hand RPS in the
same round (target >= 0.95). Answers are checked: before each round 20
requests must each answer 200 with a web pod's name, and wrk must report no
socket error and no non-2xx answer; a failed check fails the run (exit 1).

Change to served: with N Ingresses (one host rule each) in place, a new
Ingress is created through the API and a poller in the external host's
netns (started before, requesting its host every few ms) prints when the
new host first answers 200 from a web pod; the time from just before the
create to that answer, median of 3 per size.

Everything this starts is stopped by PID; the lab is taken down at the end,
also on failure or Ctrl-C.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
PODNET = [sys.executable, "-m", "podnet.cli.main"]
HOST = "bench.example.com"
HAND_PORT = 8088

HAND_CONF = """\
worker_processes 1;
daemon off;
pid %(run)s/nginx.pid;
error_log stderr warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %(run)s/tmp;
  proxy_temp_path %(run)s/tmp;
  upstream web {
%(servers)s
    keepalive 32;
  }
  server {
    listen %(port)d;
    location / {
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_pass http://web;
    }
  }
}
"""

POLLER = r"""
import http.client, sys, time
ip, host = sys.argv[1], sys.argv[2]
while True:
    try:
        c = http.client.HTTPConnection(ip, 80, timeout=2)
        c.request("GET", "/hostname", headers={"Host": host})
        r = c.getresponse()
        body = r.read().decode()
        c.close()
        if r.status == 200 and body.startswith("web-"):
            print(time.time(), flush=True)
            break
    except OSError:
        pass
    time.sleep(0.005)
"""


def podnet(lab, *args, input=None, check=True, timeout=300):
    env = dict(os.environ, PODNET_LAB=lab)
    res = subprocess.run(PODNET + list(args), capture_output=True, text=True, input=input, env=env, timeout=timeout)
    if check and res.returncode != 0:
        raise SystemExit("podnet %s: %s%s" % (" ".join(args), res.stdout, res.stderr))
    return res


def ingress(name, host, svc="web"):
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "rules": [
                {
                    "host": host,
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": svc, "port": {"name": "http"}}},
                            }
                        ]
                    },
                }
            ]
        },
    }


def wait(what, fn, timeout=90):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.3)
    raise SystemExit("timed out waiting for %s" % what)


def lb_ip(lab, name):
    svc = json.loads(podnet(lab, "get", "svc", name, "-n", "podnet-ingress", "-o", "json").stdout)
    ing = (svc.get("status") or {}).get("loadBalancer", {}).get("ingress") or []
    return ing and ing[0].get("ip")


def check_answers(lab, ip):
    """20 requests, each 200 from a web pod (new connection each)."""
    script = (
        "import http.client,sys\n"
        "for _ in range(20):\n"
        " c=http.client.HTTPConnection(sys.argv[1],80,timeout=5); c.request('GET','/hostname',headers={'Host':'%s'})\n"
        " r=c.getresponse(); b=r.read().decode(); print(r.status,b)\n" % HOST
    )
    out = podnet(lab, "lab", "exec", "external", "--", sys.executable, "-c", script, ip).stdout.split("\n")
    bad = [ln for ln in out if ln and not re.match(r"^200 web-", ln)]
    return bad


def wrk(lab, ip, seconds, conns):
    out = podnet(
        lab, "lab", "exec", "external", "--", "wrk", "-t1", "-c%d" % conns, "-d%ds" % seconds, "--latency",
        "-H", "Host: " + HOST, "http://%s/hostname" % ip, timeout=seconds + 60,
    ).stdout  # fmt: skip
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    m = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    p99 = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
    errors = re.search(r"Socket errors: (.*)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    problems = []
    if errors:
        problems.append("socket errors: " + errors.group(1))
    if non2xx:
        problems.append("non-2xx answers: " + non2xx.group(1))
    return rps, p99, problems


def start_hand_nginx(lab, run):
    """The hand-configured nginx in the ingress pod's netns; -> Popen."""
    from podnet.agent.agent import pod_netns
    from podnet.kernel.netns import Netns, entered

    pods = json.loads(podnet(lab, "get", "pods", "-n", "podnet-ingress", "-o", "json").stdout)["items"]
    uid = pods[0]["metadata"]["uid"]
    web = json.loads(podnet(lab, "get", "pods", "-l", "app=web", "-o", "json").stdout)["items"]
    servers = "\n".join(
        "    server %s:8080;" % p["status"]["podIP"] for p in sorted(web, key=lambda p: p["status"]["podIP"])
    )
    os.makedirs(os.path.join(run, "tmp"), exist_ok=True)
    conf = os.path.join(run, "nginx.conf")
    with open(conf, "w") as f:
        f.write(HAND_CONF % {"run": run, "servers": servers, "port": HAND_PORT})
    with Netns(pod_netns(lab, uid)) as ns, entered(ns):
        return subprocess.Popen(["/usr/sbin/nginx", "-p", run, "-e", "stderr", "-c", conf], start_new_session=True)


HAND_SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "bench-hand", "namespace": "podnet-ingress"},
    "spec": {
        "type": "LoadBalancer",
        "selector": {"app.kubernetes.io/name": "ingress-nginx"},
        "ports": [{"name": "http", "port": 80, "targetPort": HAND_PORT}],
    },
}


def change_to_served(lab, cluster, ip, sizes, repeats=3):
    out = {}
    have = 0
    for n in sizes:
        while have < n:
            cluster.create(ingress("bulk-%d" % have, "bulk-%d.example.com" % have))
            have += 1
        time.sleep(3)  # let the controller settle on the N rules
        times = []
        for k in range(repeats):
            host = "probe-%d-%d.example.com" % (n, k)
            poller = subprocess.Popen(
                PODNET + ["lab", "exec", "external", "--", sys.executable, "-c", POLLER, ip, host],
                env=dict(os.environ, PODNET_LAB=lab),
                stdout=subprocess.PIPE,
                text=True,
            )
            try:
                time.sleep(1.0)  # the poller is running (it gets 404s)
                t0 = time.time()
                cluster.create(ingress("probe-%d-%d" % (n, k), host))
                line, _ = poller.communicate(timeout=120)
                times.append(float(line.strip()) - t0)
            finally:
                if poller.poll() is None:
                    poller.kill()
                    poller.wait()
            cluster.delete("Ingress", "default", "probe-%d-%d" % (n, k))
        out[n] = times
        print(
            "  %5d rules: change served in %s s (median %.3f)"
            % (n, ", ".join("%.3f" % t for t in times), statistics.median(times))
        )
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=int, default=8)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--sizes", default="10,100,1000")
    p.add_argument("--json")
    args = p.parse_args()
    lab = "bi%d" % (os.getpid() % 10000)
    run = tempfile.mkdtemp(prefix="pn-bench-ingress-")
    hand = None
    failed = []
    try:
        podnet(lab, "lab", "up", "--name", lab, "--nodes", "3", "-f", os.path.join(ROOT, "examples", "lab.yaml"))
        podnet(lab, "apply", "-f", "-", input=json.dumps(ingress("bench", HOST)) + "\n---\n" + json.dumps(HAND_SERVICE))
        ip = wait("the ingress LoadBalancer address", lambda: lb_ip(lab, "ingress-nginx"))
        hand_ip = wait("the hand LoadBalancer address", lambda: lb_ip(lab, "bench-hand"))
        wait("podnet's nginx serving", lambda: not check_answers(lab, ip))
        hand = start_hand_nginx(lab, run)
        wait("the hand nginx serving", lambda: not check_answers(lab, hand_ip))
        print(
            "podnet: %s  hand: %s  (wrk -t1 -c%d -d%ds, GET /hostname)" % (ip, hand_ip, args.connections, args.seconds)
        )
        rounds = []
        for r in range(args.rounds):
            row = {}
            for side, addr in (("podnet", ip), ("hand", hand_ip)):
                bad = check_answers(lab, addr)
                rps, p99, problems = wrk(lab, addr, args.seconds, args.connections)
                if bad or problems:
                    failed.append("%s round %d: %s %s" % (side, r + 1, bad[:3], problems))
                row[side] = {"rps": rps, "p99_ms": p99}
            row["ratio"] = row["podnet"]["rps"] / row["hand"]["rps"]
            rounds.append(row)
            print(
                "  round %d: podnet %8.0f req/s p99 %6.2f ms | hand %8.0f req/s p99 %6.2f ms | ratio %.3f"
                % (
                    r + 1,
                    row["podnet"]["rps"],
                    row["podnet"]["p99_ms"],
                    row["hand"]["rps"],
                    row["hand"]["p99_ms"],
                    row["ratio"],
                )
            )
        ratio = statistics.median(x["ratio"] for x in rounds)
        print("ratio podnet/hand (median of rounds): %.3f (target >= 0.95)" % ratio)
        from podnet.client import connect
        from podnet.lab import control

        cluster = connect(control.kubeconfig_path(lab), "bench-ingress")
        sizes = [int(s) for s in args.sizes.split(",") if s]
        print("time from an Ingress created to its host served:")
        served = change_to_served(lab, cluster, ip, sizes)
        cluster.stop.set()
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"rounds": rounds, "ratio": ratio, "change_to_served": served}, f, indent=1)
    finally:
        if hand is not None and hand.poll() is None:
            hand.terminate()
            hand.wait(timeout=10)
        podnet(lab, "lab", "down", "--name", lab, check=False)
        subprocess.run(["rm", "-rf", run])
    if failed:
        print("FAILED answer checks:\n  " + "\n  ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
