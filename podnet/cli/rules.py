"""`podnet rules [NODE]`: podnet's nftables tables on a node, read back from
the kernel and grouped service by service (what people do with
`iptables-save | grep <svc-ip>`), or the NetworkPolicy table with --policy.

The grouping needs no bookkeeping: every chain and set podnet creates for a
Service carries `<namespace>/<name>/` in its name, and every map element
names a Service's address or nodePort. It reads nft's JSON (`nft -j`)
through podnet.kernel.nft and never parses nft's text; --raw and --policy
print nft's own listing as it is, for people.
"""

import json
import sys

from podnet.kernel import nft
from podnet.kernel.netns import Netns, path_of
from podnet.lab import topology as topo


def expr_text(e, mark=False):
    """One expression of nft's JSON (libnftables-json(5)) in nft's own syntax,
    as far as podnet's tables use it; anything else shows as its JSON. mark:
    inside a packet-mark expression, whose numbers nft shows as 0x%08x."""
    if not isinstance(e, dict):
        if isinstance(e, list):
            return "{ %s }" % ", ".join(_elem(x) for x in e)
        if mark and isinstance(e, int) and not isinstance(e, bool):
            return "0x%08x" % e
        return str(e)
    if len(e) != 1:
        return json.dumps(e, sort_keys=True)
    ((k, v),) = e.items()
    if k == "match":
        op = v.get("op", "==")
        mark = "mark" in json.dumps(v["left"])
        left, right = expr_text(v["left"], mark), expr_text(v["right"], mark)
        if isinstance(v["right"], list):  # flags (ct state established,related); a set is {"set": [...]}
            right = ",".join(expr_text(x, mark) for x in v["right"])
        if op in ("==", "in") and not _binop(v["left"]):  # nft shows a binop's == (mark & x == x)
            return "%s %s" % (left, right)
        return "%s %s %s" % (left, op, right)
    if _binop(e):
        return "%s %s %s" % (expr_text(v[0], mark), k, expr_text(v[1], mark))
    if k == "payload":
        return "%s %s" % (v.get("protocol", v.get("base", "")), v.get("field", v.get("offset", "")))
    if k in ("meta", "ct"):
        return "%s %s" % (k, v["key"])
    if k == "fib":
        return "fib %s %s" % (" . ".join(v.get("flags") or []), v.get("result"))
    if k == "concat":
        return " . ".join(expr_text(x, mark) for x in v)
    if k == "set" and isinstance(v, dict) and "op" in v:  # the statement: update @set { key }
        return "%s %s { %s }" % (v["op"], v["set"], expr_text(v["elem"]))
    if k == "set":
        return "{ %s }" % ", ".join(_elem(x) for x in (v if isinstance(v, list) else [v]))
    if k == "prefix":
        return "%s/%d" % (expr_text(v["addr"]), v["len"])
    if k == "range":
        return "%s-%s" % (expr_text(v[0], mark), expr_text(v[1], mark))
    if k in ("vmap", "map"):
        return "%s %s %s" % (expr_text(v["key"]), k, expr_text(v["data"]))
    if k in ("goto", "jump"):
        return "%s %s" % (k, v["target"])
    if k in ("accept", "drop", "return", "continue", "notrack"):
        return k
    if k == "masquerade":
        flags = (v or {}).get("flags") or []
        return " ".join(["masquerade"] + ([flags] if isinstance(flags, str) else list(flags)))
    if k in ("dnat", "snat"):
        fam = "%s " % v["family"] if v.get("family") else ""
        to = expr_text(v["addr"]) if "addr" in v else ""
        return "%s %sto %s%s" % (k, fam, to, ":%s" % expr_text(v["port"]) if "port" in v else "")
    if k == "reject":
        v = v or {}
        if v.get("type") == "icmp" and v.get("expr", "port-unreachable") == "port-unreachable":
            return "reject"  # the default, as nft lists it
        return "reject" + (" with %s" % " ".join(str(x) for x in (v.get("type"), v.get("expr")) if x) if v else "")
    if k == "log":  # nft lists its options in this order
        v = v or {}
        words = ["log"]
        if "prefix" in v:
            words += ["prefix", '"%s"' % v["prefix"]]
        for opt in ("level", "group", "snaplen", "queue-threshold"):
            if opt in v:
                words += [opt, str(v[opt])]
        return " ".join(words)
    if k == "counter":
        return "counter" if not v else "counter packets %s bytes %s" % (v.get("packets", 0), v.get("bytes", 0))
    if k == "numgen":
        return "numgen %s mod %s%s" % (v["mode"], v["mod"], " offset %s" % v["offset"] if v.get("offset") else "")
    if k == "mangle":
        mark = "mark" in json.dumps(v["key"])
        return "%s set %s" % (expr_text(v["key"]), expr_text(v["value"], mark))
    if k == "elem":
        return expr_text(v["val"])
    return json.dumps(e, sort_keys=True)


def _binop(e):
    return isinstance(e, dict) and len(e) == 1 and next(iter(e)) in ("&", "|", "^", "<<", ">>")


def _elem(x):
    """A set element or a map's [key, value] pair."""
    if isinstance(x, list) and len(x) == 2:
        return "%s : %s" % (expr_text(x[0]), expr_text(x[1]))
    return expr_text(x)


def parse_table(items):
    """nft's JSON listing (podnet.kernel.nft.list_table) -> ({chain: [rule
    texts]}, {map/set: [element texts]})."""
    chains, elements = {}, {}
    for item in items or []:
        if "chain" in item:
            chains.setdefault(item["chain"]["name"], [])
        elif "rule" in item:
            r = item["rule"]
            text = " ".join(expr_text(x) for x in r.get("expr") or [])
            if r.get("comment"):
                text += ' comment "%s"' % r["comment"]
            chains.setdefault(r["chain"], []).append(text)
        else:
            for kind in ("map", "set"):
                if kind in item:
                    elems = item[kind].get("elem") or []
                    elements[item[kind]["name"]] = [_elem(x) for x in elems]
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


def read_table(ns_path, family, table):
    """The table's JSON objects in the node's namespace, or None."""
    with Netns(ns_path) as ns:
        return nft.list_table(family, table, ns=ns)


def _text(ns_path, family, table):
    with Netns(ns_path) as ns:
        return nft.list_table_text(family, table, ns=ns)


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
        print("# node %s: table %s %s" % (node, family, table))
        items = None if args.policy or args.raw else read_table(ns, family, table)
        text = _text(ns, family, table) if args.policy or args.raw else None
        if items is None and text is None:
            print("  (no such table: the agent has not synced yet, or is not running)")
            continue
        if text is not None:
            print(text.rstrip())  # for people: nft's own listing, shown as it is
            continue
        chains, elements = parse_table(items)
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
