"""`podnet doctor [TARGET] [--to TARGET] [-o json]`: the checklist, root cause first.

Exit 0: no finding of severity error; 1: at least one; 2: an unknown name
(`error: pod default/x not found`).
"""

import json
import sys

from podnet.diag import doctor
from podnet.lab import lab as labmod
from podnet.lab import topology as topo


def _human(result):
    lines = []
    findings = result["findings"]
    if not findings:
        lines.append("%s: no problem found (%d checks)" % (result["target"], len(result["checked"])))
    else:
        lines.append("%s: %d finding(s), the root cause first" % (result["target"], len(findings)))
        for i, f in enumerate(findings, 1):
            where = " on %s" % f["where"] if f.get("where") else ""
            lines.append("")
            lines.append("%d. [%s] %s%s" % (i, f["severity"], f["check"], where))
            lines.append("   %s" % f["summary"])
            for e in f["evidence"][:12]:
                lines.append("     - %s" % e)
            if len(f["evidence"]) > 12:
                lines.append("     - ... %d more" % (len(f["evidence"]) - 12))
            if f.get("command"):
                lines.append("   try: %s" % f["command"])
    lines.append("")
    lines.append("checked: %s (%.1f s)" % (", ".join(result["checked"]), result["elapsed"]))
    return "\n".join(lines)


def run(args):
    lab = topo.pick_lab(args.lab)
    client = labmod.objects_for(lab).client
    try:
        result = doctor.run(lab, client, args.target, args.to, args.namespace)
    except doctor.NotFoundError as exc:
        print("error: %s" % exc, file=sys.stderr)
        return 2
    if args.output == "json":
        print(json.dumps(result, indent=1))
    else:
        print(_human(result))
    return 1 if any(f["severity"] == "error" for f in result["findings"]) else 0
