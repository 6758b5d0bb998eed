"""`podnet trace FROM TO[:PORT]`: the hops of one real probe in words, the
kernel object under each, then the verdict (podnet/diag/trace.py does the
work). Exit 0 when delivered, 1 otherwise, 2 for names that resolve to
nothing, 3 when the trace itself could not run (a kernel error: no verdict).

`-o json` prints one object (other tools assert on these keys):
  from/to   {kind: pod|node|external|ip|service, name, ip, node} (to: + port)
  protocol  tcp|udp|icmp
  verdict   delivered (an answer came back) | refused (the pod answered RST or
            port unreachable) | rejected (an nftables reject) | dropped (an
            nftables or kernel drop) | no-route | lost (cause unknown)
  reason    one sentence; culprit null or {where, kind, object} with kind
            service|policy|foreign-rule|route|sysctl|mtu|fdb|listen|conntrack|bgp
  endpoint  the Service endpoint DNAT chose, or null
  hops      [{where, netns, step, what, object, verdict}] in path order
  elapsed   seconds
"""

import json
import sys

from podnet.diag.targets import TargetError
from podnet.kernel.nft import NftError


def _endpoint(d):
    port = d.get("port")
    return "%s%s" % (d["ip"], ":%s" % port if port else "")


def _who(d, addr):
    """ "pod default/client (10.244.1.2)", "external (192.168.200.100)",
    "ip 10.0.0.9": the kind is said once when it is the name too."""
    name = d["name"] or d["ip"]
    label = name if name == d["kind"] else "%s %s" % (d["kind"], name)
    return label if addr == name else "%s (%s)" % (label, addr)


def render(doc):
    src, dst = doc["from"], doc["to"]
    lines = ["trace %s -> %s, %s" % (_who(src, src["ip"]), _who(dst, _endpoint(dst)), doc["protocol"])]
    for i, h in enumerate(doc["hops"], 1):
        lines.append(
            "%2d. %s: %s%s" % (i, h["where"], h["what"], "" if h["verdict"] == "continue" else "  [%s]" % h["verdict"])
        )
        if h["object"]:
            lines.append("      %s" % h["object"])
    lines.append("%s: %s" % (doc["verdict"].upper(), doc["reason"]))
    c = doc["culprit"]
    if c:
        lines.append("culprit: %s %s on %s" % (c["kind"], c["object"], c["where"]))
    lines.append("(%.2f s)" % doc["elapsed"])
    return "\n".join(lines)


def run(args):
    from podnet.diag import trace
    from podnet.lab import lab as labmod
    from podnet.lab import topology as topo

    lab = topo.pick_lab(args.lab)
    client = labmod.objects_for(lab).client
    try:
        doc = trace.trace(
            lab,
            client,
            args.source,
            args.dest,
            namespace=args.namespace or "default",
            proto=args.proto or "tcp",
            size=args.size,
            sport=args.sport,
            timeout=args.timeout,
        )
    except TargetError as exc:
        print("error: %s" % exc, file=sys.stderr)
        return 2
    except (NftError, OSError) as exc:  # the kernel side of the trace itself failed
        print("error: trace: %s" % exc, file=sys.stderr)
        return 3
    if args.output == "json":
        print(json.dumps(doc, indent=1))
    else:
        print(render(doc))
    return 0 if doc["verdict"] == "delivered" else 1
