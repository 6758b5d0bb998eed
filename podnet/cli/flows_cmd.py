"""`podnet flows`: the flow logs of every node of a lab, merged by time
(podnet.flows.client reads each agent's GET /flows)."""

import json
import sys
import time


def add_parser(sub, lab_arg):
    p = sub.add_parser("flows", help="connections and drops the nodes saw (conntrack and NFLOG), with verdicts")
    lab_arg(p)
    p.add_argument("--node", help="only this node's log")
    p.add_argument("--pod", help="flows with this pod (NAME or NS/NAME) at either end")
    p.add_argument("-n", "--namespace", help="flows with an end (or the Service) in this namespace")
    p.add_argument("--verdict", choices=("forwarded", "dropped", "rejected"))
    p.add_argument("-f", "--follow", action="store_true", help="keep printing flows as they come")
    p.add_argument("-o", "--output", choices=("wide", "json"), default="wide", help="json: one record a line")
    p.set_defaults(flows_run=run)


def _end(e):
    name = ""
    if e.get("pod"):
        name = "%s/%s" % (e.get("namespace"), e["pod"])
    elif e.get("service"):
        name = "svc " + e["service"]
    elif e.get("node"):
        name = "node " + e["node"]
    addr = "%s:%s" % (e["ip"], e["port"]) if e.get("port") is not None else e["ip"]
    return "%s (%s)" % (name, addr) if name else addr


def line(r):
    """One record in words: time, node, proto, src -> dst [svc -> endpoint], verdict, reason, bytes."""
    t = time.strftime("%H:%M:%S", time.localtime(r["time"])) + ".%03d" % (r["time"] % 1 * 1000)
    via = ""
    if r.get("service") and not r["dst"].get("service"):  # the Service is not already the destination's name
        via = " svc %s/%s" % (r["service"]["namespace"], r["service"]["name"])
    if r.get("endpoint"):
        via += " -> %s" % _end(r["endpoint"])
    if r.get("via"):  # podnet.flows.model.merge: forwarded by the source's node first
        via += " (forwarded by %s)" % r["via"]
    verdict = r["verdict"].upper() + (" (%s)" % r["reason"] if r.get("reason") else "")
    counts = ""
    if r.get("bytes") and r["state"] == "ended":
        counts = " %d/%d pkts %d/%d bytes" % (
            r["packets"]["orig"],
            r["packets"]["reply"],
            r["bytes"]["orig"],
            r["bytes"]["reply"],
        )
    return "%s %-6s %-4s %s -> %s%s %s %s%s" % (
        t,
        r["node"],
        r["proto"],
        _end(r["src"]),
        _end(r["dst"]),
        via,
        verdict,
        r["state"],
        counts,
    )


def run(args):
    from podnet.flows import client
    from podnet.lab import topology

    lab = topology.pick_lab(args.lab)
    filters = {"pod": args.pod, "namespace": args.namespace, "verdict": args.verdict}
    emit = (
        (lambda r: print(json.dumps(r), flush=True))
        if args.output == "json"
        else (lambda r: print(line(r), flush=True))
    )
    try:
        recs, cursor = client.fetch(lab, args.node, **filters)
    except client.FlowsError as exc:
        print("error: %s" % exc, file=sys.stderr)
        return 1
    for r in recs:
        emit(r)
    if args.follow:
        for r in client.follow(lab, args.node, since=cursor, **filters):
            emit(r)
    return 0
