"""`podnet rules [NODE]`: podnet's nftables tables on a node, read back from
the kernel and grouped service by service (what people do with
`iptables-save | grep <svc-ip>`), or the NetworkPolicy table with --policy.

The grouping needs no bookkeeping: every chain and set podnet creates for a
Service carries `<namespace>/<name>/` in its name, and every map element
names a Service's address or nodePort.
"""

import re
import sys

from podnet.kernel.netns import Netns, path_of, run
from podnet.lab import topology as topo

_BLOCK = re.compile(r"^\t(chain|map|set) (\S+) \{$")


def parse_table(text):
    """nft's listing -> ({chain: [rules]}, {map/set: [elements]})."""
    chains, elements = {}, {}
    kind = name = None
    buf = []
    for line in text.splitlines():
        m = _BLOCK.match(line)
        if m:
            kind, name, buf = m.group(1), m.group(2), []
            if kind == "chain":
                chains[name] = []
            continue
        if line == "\t}":
            if kind in ("map", "set"):
                joined = " ".join(x.strip() for x in buf)
                inner = re.search(r"elements = \{ (.*) \}", joined)
                elements[name] = [e.strip() for e in inner.group(1).split(",")] if inner else []
            kind = name = None
            continue
        if kind == "chain":
            body = line.strip()
            if body and not body.startswith("type "):
                chains[name].append(body)
        elif kind:
            buf.append(line)
    return chains, elements


def _fronts(svc):
    from podnet.proxy.inputs import external_addresses

    spec = svc.get("spec") or {}
    ips = [spec.get("clusterIP")] + [str(ip) for ip in external_addresses(svc)]
    ports = [p.get("nodePort") for p in spec.get("ports") or [] if p.get("nodePort")]
    return [ip for ip in ips if ip and ip != "None"], ports


def service_view(svc, chains, elements):
    """Lines for one Service: the map elements that lead to it, then its chains."""
    m = svc["metadata"]
    tag = "-%s/%s/" % (m.get("namespace"), m["name"])
    ips, nodeports = _fronts(svc)
    out = []
    for mname in ("service-ips", "no-endpoint-services", "service-nodeports", "no-endpoint-nodeports"):
        for el in elements.get(mname, []):
            key = el.split(" : ")[0]
            first = key.split(" . ")[0]
            if (mname.endswith("services") or mname == "service-ips") and first in ips:
                out.append("  %s: %s" % (mname, el))
            elif mname.endswith("nodeports") and any(key.endswith(" . %d" % p) for p in nodeports):
                out.append("  %s: %s" % (mname, el))
    for name in sorted(n for n in chains if tag in n):
        out.append("  chain %s" % name)
        out += ["      %s" % r for r in chains[name]]
    return out


def _list(ns_path, family, table):
    with Netns(ns_path) as ns:
        res = run(["nft", "list", "table", family, table], ns=ns, check=False)
    if res.returncode != 0:
        return None
    return res.stdout


def cmd_rules(args):
    from podnet.lab.lab import objects_for

    lab = topo.pick_lab(args.lab)
    doc = topo.load(lab)
    nodes = [n["name"] for n in doc["nodes"]]
    if args.node and args.node not in nodes:
        print("error: lab %s has no node %r (nodes: %s)" % (lab, args.node, ", ".join(nodes)), file=sys.stderr)
        return 1
    for node in [args.node] if args.node else nodes:
        ns = path_of(topo.ns_name(lab, node))
        family, table = ("inet", "podnet-policy") if args.policy else ("ip", "podnet-proxy")
        text = _list(ns, family, table)
        print("# node %s: table %s %s" % (node, family, table))
        if text is None:
            print("  (no such table: the agent has not synced yet, or is not running)")
            continue
        if args.policy or args.raw:
            print(text.rstrip())
            continue
        chains, elements = parse_table(text)
        objects = objects_for(lab)
        services = objects.list("Service", None if args.all_namespaces else args.namespace or None)
        shown = 0
        for svc in sorted(services, key=lambda s: (s["metadata"].get("namespace"), s["metadata"]["name"])):
            if args.service and svc["metadata"]["name"] != args.service:
                continue
            lines = service_view(svc, chains, elements)
            spec = svc.get("spec") or {}
            ips, nodeports = _fronts(svc)
            print(
                "%s/%s  %s %s%s"
                % (
                    svc["metadata"].get("namespace"),
                    svc["metadata"]["name"],
                    spec.get("type", "ClusterIP"),
                    ",".join(ips) or "-",
                    "  nodePorts " + ",".join(map(str, nodeports)) if nodeports else "",
                )
            )
            print("\n".join(lines) if lines else "  (no rules: headless, ExternalName or not synced yet)")
            shown += 1
        if not shown:
            print("  (no services)")
    return 0
