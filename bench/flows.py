"""The flow log's cost: the node agent's CPU with it on and off, under
~2,000 TCP connections per second through a Service.

Run as root:  .venv/bin/python bench/flows.py [--rate 2000] [--seconds 10] [--rounds 3]

Two 1-node labs at once, flb<pid>on (flow log on) and flb<pid>off (the
agent started with PODNET_FLOWS=0), each with examples/lab.yaml. A round
runs the load in one lab's client pod: connections to the Service web
(ClusterIP:80, DNAT to the 3 netexec pods), each closed with a RST
(SO_LINGER 0) so conntrack destroys the entry ~10 s later (CLOSE state)
rather than after TIME_WAIT: the DESTROY events, with their counters, are
part of what is measured. Rounds alternate on, off, on, off, ... so the
machine's noise falls on both sides. After each round the bench waits for the
entries to go (SETTLE s) before reading the agent's CPU (utime + stime from
/proc/PID/stat, the agent's PID from the lab's procs.json), so a round's
destroys are counted in that round. Prints per-round CPU seconds and the
ratio on/off of the totals. Both labs are removed at the end, also on
failure or Ctrl-C.
"""

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from podnet.lab import topology  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "lab.yaml")
SETTLE = 12.0  # seconds: conntrack's CLOSE timeout is 10 s

LOAD = r"""
import socket, struct, sys, time
host, rate, seconds = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
linger = struct.pack("ii", 1, 0)
done = failed = 0
t0 = time.monotonic()
while True:
    now = time.monotonic() - t0
    if now >= seconds:
        break
    if done + failed >= rate * now:
        time.sleep(0.0005)
        continue
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
    s.settimeout(1)
    try:
        s.connect((host, 80))
        done += 1
    except OSError:
        failed += 1
    s.close()
print(done, failed, time.monotonic() - t0)
"""


def podnet(env, *args, input=None, timeout=180):
    res = subprocess.run(
        [sys.executable, "-m", "podnet.cli.main", *args],
        env=env,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if res.returncode != 0:
        raise RuntimeError("podnet %s: %s%s" % (" ".join(args), res.stdout, res.stderr))
    return res.stdout


def agent_cpu(lab):
    # the labs live in the default state root, where every lab sees the
    # others' API ports (a private root would hand out a port in use)
    procs = json.load(open(os.path.join(topology.state_dir(lab), "procs.json")))
    rec = procs["agent-node1"] if isinstance(procs, dict) else next(p for p in procs if p["role"] == "agent-node1")
    with open("/proc/%d/stat" % rec["pid"]) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rate", type=int, default=2000, help="connections per second")
    p.add_argument("--seconds", type=float, default=10.0, help="length of a round")
    p.add_argument("--rounds", type=int, default=3, help="rounds per side")
    args = p.parse_args()
    labs = {"on": "flb%don" % (os.getpid() % 10000), "off": "flb%doff" % (os.getpid() % 10000)}
    envs = {
        side: dict(os.environ, PODNET_LAB=name, PODNET_FLOWS="1" if side == "on" else "0")
        for side, name in labs.items()
    }
    try:
        for side, name in labs.items():
            podnet(envs[side], "lab", "up", "--name", name, "--nodes", "1", "-f", EXAMPLE, "--timeout", "120")
        targets = {}
        for side in labs:
            pod = json.loads(podnet(envs[side], "get", "pod", "client", "-o", "json"))
            svc = json.loads(podnet(envs[side], "get", "service", "web", "-o", "json"))
            ns = "pn-%s-p-%s" % (labs[side], pod["metadata"]["uid"].replace("-", "")[:10])
            targets[side] = (ns, svc["spec"]["clusterIP"])
        cpu = {"on": [], "off": []}
        conns = {"on": 0, "off": 0}
        for i in range(args.rounds * 2):
            side = "on" if i % 2 == 0 else "off"
            ns, ip = targets[side]
            before = agent_cpu(labs[side])
            out = subprocess.run(
                [
                    "nsenter",
                    "--net=/run/netns/" + ns,
                    "--",
                    sys.executable,
                    "-c",
                    LOAD,
                    ip,
                    str(args.rate),
                    str(args.seconds),
                ],
                capture_output=True,
                text=True,
                timeout=args.seconds + 60,
                check=True,
            ).stdout.split()
            time.sleep(SETTLE)
            used = agent_cpu(labs[side]) - before
            cpu[side].append(used)
            done, failed, took = int(out[0]), int(out[1]), float(out[2])
            conns[side] += done
            print(
                "round %d flow log %-3s: %d connections (%d failed) in %.1f s = %.0f/s; agent CPU %.2f s"
                % (i + 1, side, done, failed, took, done / took, used),
                flush=True,
            )
        if args.rounds and sum(cpu["off"]):
            print(
                "agent CPU over %d rounds each: on %.2f s, off %.2f s, ratio on/off %.2f"
                % (args.rounds, sum(cpu["on"]), sum(cpu["off"]), sum(cpu["on"]) / sum(cpu["off"]))
            )
            # the ratio depends on how idle the agent is otherwise; the cost a connection is the figure that carries
            print(
                "agent CPU per connection: on %.0f us, off %.0f us"
                % tuple(1e6 * sum(cpu[k]) / max(conns[k], 1) for k in ("on", "off"))
            )
        if args.rounds:
            for side in labs:
                flows = podnet(envs[side], "flows", "-o", "json", timeout=60) if side == "on" else ""
                if side == "on":
                    print("flow records now on the 'on' node: %d (ring bounded at 10,000)" % len(flows.splitlines()))
    finally:
        for side, name in labs.items():
            subprocess.run(
                [sys.executable, "-m", "podnet.cli.main", "lab", "down", "--name", name],
                env=envs[side],
                capture_output=True,
                timeout=120,
            )


if __name__ == "__main__":
    main()
