"""Pure output formatting for the kubectl-like CLI: `get` tables, -o
json/yaml/name, and (in describe.py) `describe`. No I/O: every function
takes plain Kubernetes objects (dicts as an API server returns them) and
returns a string without a trailing newline.

Tables follow kubectl's printers (pkg/printers/internalversion) and its
tabwriter settings (minwidth 6, padding 3, left aligned, last column not
padded), so scripts that `awk '{print $3}'` kubectl output work here too.
"""

import json
from datetime import UTC, datetime, timedelta

__all__ = [
    "render_get",
    "render_describe",
    "age",
    "no_resources_message",
    "human_duration",
    "format_selector",
    "format_labels",
    "parse_time",
    "tabwrite",
]

# kind -> (namespaced, group) for the kinds the CLI shows.
_KINDS = {
    "Pod": (True, ""),
    "Deployment": (True, "apps"),
    "ReplicaSet": (True, "apps"),
    "Service": (True, ""),
    "EndpointSlice": (True, "discovery.k8s.io"),
    "Endpoints": (True, ""),
    "Node": (False, ""),
    "NetworkPolicy": (True, "networking.k8s.io"),
    "Namespace": (False, ""),
}
_BY_LOWER = {k.lower(): k for k in _KINDS}


def _kind(kind_name):
    return _BY_LOWER.get(str(kind_name).lower(), kind_name)


def _namespaced(kind):
    return _KINDS.get(kind, (True, ""))[0]


# ---------------------------------------------------------------- time


def parse_time(ts):
    """RFC3339 string (or datetime) -> aware UTC datetime; None if absent or unparsable."""
    if ts is None or ts == "":
        return None
    if isinstance(ts, datetime):
        return ts if ts.tzinfo else ts.replace(tzinfo=UTC)
    try:
        t = datetime.fromisoformat(str(ts).replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _now(now):
    if now is None:
        return datetime.now(UTC)
    return now if now.tzinfo else now.replace(tzinfo=UTC)


def human_duration(d):
    """k8s.io/apimachinery/pkg/util/duration.HumanDuration for a timedelta."""
    total = d.total_seconds()
    seconds = int(total)  # truncates toward zero, as Go's int(d.Seconds())
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 60 * 2:
        return "%ds" % seconds
    minutes = int(d // timedelta(minutes=1))
    if minutes < 10:
        s = seconds % 60
        return "%dm" % minutes if s == 0 else "%dm%ds" % (minutes, s)
    if minutes < 60 * 3:
        return "%dm" % minutes
    hours = int(d // timedelta(hours=1))
    if hours < 8:
        m = minutes % 60
        return "%dh" % hours if m == 0 else "%dh%dm" % (hours, m)
    if hours < 48:
        return "%dh" % hours
    if hours < 24 * 8:
        h = hours % 24
        return "%dd" % (hours // 24) if h == 0 else "%dd%dh" % (hours // 24, h)
    if hours < 24 * 365 * 2:
        return "%dd" % (hours // 24)
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        return "%dy" % (hours // 24 // 365) if dy == 0 else "%dy%dd" % (hours // 24 // 365, dy)
    return "%dy" % (hours // 24 // 365)


def age(timestamp, now=None):
    """kubectl's AGE cell: human duration since `timestamp` (RFC3339 string or
    datetime); "<unknown>" when there is none. `now`: aware/naive-UTC datetime
    or None for the current time."""
    t = parse_time(timestamp)
    if t is None:
        return "<unknown>"
    return human_duration(_now(now) - t)


# ---------------------------------------------------------------- tabwriter


def tabwrite(lines, minwidth=6, padding=3):
    """Go's text/tabwriter (padchar ' ', left aligned, no flags) over lines
    whose cells are separated by '\\t'. Text after a line's last tab is not a
    cell: it is written as is. Column blocks are consecutive lines that have
    a cell in that column, exactly as Go aligns them."""
    rows = [line.split("\t") for line in lines]
    widths, out = [], []

    def write(line0, line1):
        for i in range(line0, line1):
            cells = rows[i]
            parts = [c.ljust(widths[j]) if j < len(widths) else c for j, c in enumerate(cells)]
            out.append("".join(parts))

    def fmt(line0, line1):
        column = len(widths)
        this = line0
        while this < line1:
            if column >= len(rows[this]) - 1:
                this += 1
                continue
            write(line0, this)
            line0 = this
            width = minwidth
            while this < line1 and column < len(rows[this]) - 1:
                width = max(width, len(rows[this][column]) + padding)
                this += 1
            widths.append(width)
            fmt(line0, this)
            widths.pop()
            line0 = this
        write(line0, line1)

    fmt(0, len(rows))
    return "\n".join(out)


def _table(header, rows):
    def clean(c):
        return str(c).replace("\t", " ").replace("\n", " ")

    text = tabwrite(["\t".join(clean(c) for c in r) for r in [header] + rows])
    return "\n".join(line.rstrip() for line in text.split("\n"))


# ---------------------------------------------------------------- selectors


def format_labels(labels):
    """labels.FormatLabels: "a=1,b=2" sorted by key, "<none>" when empty."""
    if not labels:
        return "<none>"
    return ",".join("%s=%s" % (k, labels[k]) for k in sorted(labels))


def format_selector(selector, empty="<none>"):
    """A LabelSelector {matchLabels, matchExpressions} as kubectl prints it
    (metav1.FormatLabelSelector): requirements sorted by key, "k=v",
    "k in (a,b)", "k notin (a)", "k", "!k"; `empty` for {} or None."""
    reqs = []
    for k, v in ((selector or {}).get("matchLabels") or {}).items():
        reqs.append((k, "%s=%s" % (k, v)))
    for e in (selector or {}).get("matchExpressions") or []:
        k, op, vals = e.get("key", ""), e.get("operator", ""), sorted(e.get("values") or [])
        if op == "In":
            reqs.append((k, "%s in (%s)" % (k, ",".join(vals))))
        elif op == "NotIn":
            reqs.append((k, "%s notin (%s)" % (k, ",".join(vals))))
        elif op == "Exists":
            reqs.append((k, k))
        elif op == "DoesNotExist":
            reqs.append((k, "!" + k))
        else:
            reqs.append((k, "%s %s (%s)" % (k, op, ",".join(vals))))
    s = ",".join(r for _, r in sorted(reqs, key=lambda kv: kv[0]))
    return s or empty


# ---------------------------------------------------------------- rows per kind


def _meta(o):
    return o.get("metadata") or {}


def _cond(conds, ctype):
    for c in conds or []:
        if c.get("type") == ctype:
            return c
    return None


def _pod_row(pod, wide, now):
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    phase = status.get("phase") or "Pending"
    reason = status.get("reason") or phase
    for c in status.get("conditions") or []:
        if c.get("type") == "PodScheduled" and c.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"
    containers = spec.get("containers")
    cstatuses = status.get("containerStatuses") or []
    total = len(containers) if containers is not None else len(cstatuses)
    init_specs = {c.get("name"): c for c in spec.get("initContainers") or []}

    def restartable(name):
        return (init_specs.get(name) or {}).get("restartPolicy") == "Always"

    total += sum(1 for n in init_specs if restartable(n))
    ready = restarts = sidecar_restarts = 0
    last_restart = sidecar_last = None

    def later(a, b):
        return b if a is None or (b is not None and b > a) else a

    initializing = False
    init_statuses = status.get("initContainerStatuses") or []
    for i, cs in enumerate(init_statuses):
        restarts += cs.get("restartCount") or 0
        finished = parse_time((((cs.get("lastState") or {}).get("terminated")) or {}).get("finishedAt"))
        last_restart = later(last_restart, finished)
        if restartable(cs.get("name")):
            sidecar_restarts += cs.get("restartCount") or 0
            sidecar_last = later(sidecar_last, finished)
        state = cs.get("state") or {}
        term, wait = state.get("terminated"), state.get("waiting")
        if term is not None and (term.get("exitCode") or 0) == 0:
            continue
        if restartable(cs.get("name")) and cs.get("started"):
            ready += 1 if cs.get("ready") else 0
            continue
        if term is not None:
            if term.get("reason"):
                reason = "Init:" + term["reason"]
            elif term.get("signal"):
                reason = "Init:Signal:%d" % term["signal"]
            else:
                reason = "Init:ExitCode:%d" % (term.get("exitCode") or 0)
        elif wait is not None and wait.get("reason") and wait.get("reason") != "PodInitializing":
            reason = "Init:" + wait["reason"]
        else:
            reason = "Init:%d/%d" % (i, len(init_specs) or len(init_statuses))
        initializing = True
        break

    initialized = (_cond(status.get("conditions"), "Initialized") or {}).get("status") == "True"
    if not initializing or initialized:
        restarts, last_restart = sidecar_restarts, sidecar_last
        has_running = False
        for cs in reversed(cstatuses):
            restarts += cs.get("restartCount") or 0
            last_restart = later(
                last_restart, parse_time((((cs.get("lastState") or {}).get("terminated")) or {}).get("finishedAt"))
            )
            state = cs.get("state") or {}
            wait, term = state.get("waiting"), state.get("terminated")
            if wait is not None and wait.get("reason"):
                reason = wait["reason"]
            elif term is not None and term.get("reason"):
                reason = term["reason"]
            elif term is not None:
                reason = (
                    ("Signal:%d" % term["signal"])
                    if term.get("signal")
                    else "ExitCode:%d" % (term.get("exitCode") or 0)
                )
            elif cs.get("ready") and state.get("running") is not None:
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            ready_cond = _cond(status.get("conditions"), "Ready")
            reason = "Running" if ready_cond and ready_cond.get("status") == "True" else "NotReady"

    if _meta(pod).get("deletionTimestamp"):
        if status.get("reason") == "NodeLost":
            reason = "Unknown"
        elif phase not in ("Succeeded", "Failed"):
            reason = "Terminating"

    restarts_s = str(restarts)
    if restarts and last_restart is not None:
        restarts_s = "%d (%s ago)" % (restarts, age(last_restart, now))
    row = [
        _meta(pod).get("name", ""),
        "%d/%d" % (ready, total),
        reason,
        restarts_s,
        age(_meta(pod).get("creationTimestamp"), now),
    ]
    if wide:
        ips = status.get("podIPs") or []
        ip = (ips[0].get("ip") if ips else None) or status.get("podIP") or "<none>"
        gates = spec.get("readinessGates") or []
        gates_s = "<none>"
        if gates:
            true = sum(
                1
                for g in gates
                if (_cond(status.get("conditions"), g.get("conditionType")) or {}).get("status") == "True"
            )
            gates_s = "%d/%d" % (true, len(gates))
        row += [ip, spec.get("nodeName") or "<none>", status.get("nominatedNodeName") or "<none>", gates_s]
    return row


def _containers_images(template):
    cs = ((template or {}).get("spec") or {}).get("containers") or []
    return ",".join(c.get("name", "") for c in cs), ",".join(c.get("image", "") for c in cs)


def _replicas(spec):
    r = spec.get("replicas")
    return 1 if r is None else r


def _deployment_row(d, wide, now):
    spec, status = d.get("spec") or {}, d.get("status") or {}
    row = [
        _meta(d).get("name", ""),
        "%d/%d" % (status.get("readyReplicas") or 0, _replicas(spec)),
        str(status.get("updatedReplicas") or 0),
        str(status.get("availableReplicas") or 0),
        age(_meta(d).get("creationTimestamp"), now),
    ]
    if wide:
        row += [*_containers_images(spec.get("template")), format_selector(spec.get("selector"), "")]
    return row


def _replicaset_row(rs, wide, now):
    spec, status = rs.get("spec") or {}, rs.get("status") or {}
    row = [
        _meta(rs).get("name", ""),
        str(_replicas(spec)),
        str(status.get("replicas") or 0),
        str(status.get("readyReplicas") or 0),
        age(_meta(rs).get("creationTimestamp"), now),
    ]
    if wide:
        row += [*_containers_images(spec.get("template")), format_selector(spec.get("selector"), "")]
    return row


def service_ports(ports):
    """makePortString: "80/TCP", "80:30080/TCP", joined by ","."""
    out = []
    for p in ports or []:
        proto = p.get("protocol") or "TCP"
        if p.get("nodePort"):
            out.append("%s:%s/%s" % (p.get("port"), p["nodePort"], proto))
        else:
            out.append("%s/%s" % (p.get("port"), proto))
    return ",".join(out)


def _lb_ingress(status, wide):
    ingress = (((status or {}).get("loadBalancer") or {}).get("ingress")) or []
    ips = sorted({i.get("ip") or i.get("hostname") for i in ingress if i.get("ip") or i.get("hostname")})
    r = ",".join(ips)
    if not wide and len(r) > 16:
        r = r[:13] + "..."
    return r


def _service_external_ip(svc, wide):
    spec = svc.get("spec") or {}
    stype = spec.get("type") or "ClusterIP"
    external = spec.get("externalIPs") or []
    if stype in ("ClusterIP", "NodePort"):
        return ",".join(external) or "<none>"
    if stype == "LoadBalancer":
        lb = _lb_ingress(svc.get("status"), wide)
        parts = (lb.split(",") if lb else []) + list(external)
        return ",".join(parts) or "<pending>"
    if stype == "ExternalName":
        return spec.get("externalName") or ""
    return "<unknown>"


def _service_row(svc, wide, now):
    spec = svc.get("spec") or {}
    cluster_ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    row = [
        _meta(svc).get("name", ""),
        spec.get("type") or "ClusterIP",
        cluster_ips[0] if cluster_ips else "<none>",
        _service_external_ip(svc, wide),
        service_ports(spec.get("ports")) or "<none>",
        age(_meta(svc).get("creationTimestamp"), now),
    ]
    if wide:
        row.append(format_labels(spec.get("selector")))
    return row


def list_with_more(items, total, limit=3, empty="<unset>"):
    """kubectl's "a,b,c + N more..." (first `limit` of `total`)."""
    ret = ",".join(items[:limit])
    if total > limit:
        return "%s + %d more..." % (ret, total - limit)
    return ret or empty


def _endpointslice_row(es, wide, now):
    ports = []
    for p in es.get("ports") or []:
        ports.append(str(p["port"]) if p.get("port") is not None else (p.get("name") or "*"))
    addrs = [a for e in es.get("endpoints") or [] for a in e.get("addresses") or []]
    return [
        _meta(es).get("name", ""),
        es.get("addressType") or "",
        list_with_more(ports, len(ports)),
        list_with_more(addrs, len(addrs)),
        age(_meta(es).get("creationTimestamp"), now),
    ]


def _hostport(ip, port):
    return "[%s]:%s" % (ip, port) if ":" in str(ip) else "%s:%s" % (ip, port)


def format_endpoints(subsets, port_names=None):
    """kubectl's formatEndpoints over Endpoints.subsets: ready "ip:port" pairs
    (only ports named in `port_names` when given), first 3 + " + N more...";
    "<none>" when there is no ready address."""
    items, count = [], 0
    for ss in subsets or []:
        addrs = [a.get("ip", "") for a in ss.get("addresses") or []]
        ports = ss.get("ports") or []
        if not ports:
            count += len(addrs)
            items += addrs
            continue
        for p in ports:
            if port_names is None or (p.get("name") or "") in port_names:
                count += len(addrs)
                items += [_hostport(ip, p.get("port")) for ip in addrs]
    return list_with_more(items, count, empty="<none>")


def _endpoints_row(ep, wide, now):
    return [
        _meta(ep).get("name", ""),
        format_endpoints(ep.get("subsets")),
        age(_meta(ep).get("creationTimestamp"), now),
    ]


def node_roles(node):
    roles = set()
    for k, v in (_meta(node).get("labels") or {}).items():
        if k.startswith("node-role.kubernetes.io/") and k[len("node-role.kubernetes.io/") :]:
            roles.add(k[len("node-role.kubernetes.io/") :])
        elif k == "kubernetes.io/role" and v:
            roles.add(v)
    return sorted(roles)


def node_status(node):
    """ "Ready" / "NotReady" / "Unknown" (+ ",SchedulingDisabled")."""
    ready = _cond((node.get("status") or {}).get("conditions"), "Ready")
    st = ["Unknown" if ready is None else ("Ready" if ready.get("status") == "True" else "NotReady")]
    if (node.get("spec") or {}).get("unschedulable"):
        st.append("SchedulingDisabled")
    return ",".join(st)


def _node_address(node, atype):
    for a in (node.get("status") or {}).get("addresses") or []:
        if a.get("type") == atype:
            return a.get("address") or "<none>"
    return "<none>"


def _node_row(node, wide, now):
    info = (node.get("status") or {}).get("nodeInfo") or {}
    spec = node.get("spec") or {}
    row = [
        _meta(node).get("name", ""),
        node_status(node),
        ",".join(node_roles(node)) or "<none>",
        age(_meta(node).get("creationTimestamp"), now),
        info.get("kubeletVersion") or "",
    ]
    if wide:
        row += [
            _node_address(node, "InternalIP"),
            _node_address(node, "ExternalIP"),
            info.get("osImage") or "<unknown>",
            info.get("kernelVersion") or "<unknown>",
            info.get("containerRuntimeVersion") or "<unknown>",
            ",".join(spec.get("podCIDRs") or []) or spec.get("podCIDR") or "<none>",
            node_routing(node),
        ]
    return row


def node_routing(node):
    """podnet's routing backend, with BGP sessions ("bgp node2=Established,...")."""
    ann = _meta(node).get("annotations") or {}
    mode = ann.get("podnet.io/backend-type")
    if not mode:
        return "<none>"
    sessions = ann.get("podnet.io/bgp-sessions")
    return "%s %s" % (mode, sessions) if mode == "bgp" and sessions else mode


def _netpol_row(np, wide, now):
    return [
        _meta(np).get("name", ""),
        format_selector((np.get("spec") or {}).get("podSelector")),
        age(_meta(np).get("creationTimestamp"), now),
    ]


def _namespace_row(ns, wide, now):
    return [
        _meta(ns).get("name", ""),
        (ns.get("status") or {}).get("phase") or "Active",
        age(_meta(ns).get("creationTimestamp"), now),
    ]


def _generic_row(o, wide, now):
    return [_meta(o).get("name", ""), age(_meta(o).get("creationTimestamp"), now)]


# kind -> (columns, wide extra columns, row function)
_TABLES = {
    "Pod": (
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        ["IP", "NODE", "NOMINATED NODE", "READINESS GATES"],
        _pod_row,
    ),
    "Deployment": (
        ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
        ["CONTAINERS", "IMAGES", "SELECTOR"],
        _deployment_row,
    ),
    "ReplicaSet": (
        ["NAME", "DESIRED", "CURRENT", "READY", "AGE"],
        ["CONTAINERS", "IMAGES", "SELECTOR"],
        _replicaset_row,
    ),
    "Service": (["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"], ["SELECTOR"], _service_row),
    "EndpointSlice": (["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"], [], _endpointslice_row),
    "Endpoints": (["NAME", "ENDPOINTS", "AGE"], [], _endpoints_row),
    "Node": (
        ["NAME", "STATUS", "ROLES", "AGE", "VERSION"],
        ["INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME", "POD-CIDR", "ROUTING"],
        _node_row,
    ),
    "NetworkPolicy": (["NAME", "POD-SELECTOR", "AGE"], [], _netpol_row),
    "Namespace": (["NAME", "STATUS", "AGE"], [], _namespace_row),
}


# ---------------------------------------------------------------- render_get


def no_resources_message(kind_name, namespace=None, all_namespaces=False):
    """What kubectl prints to stderr when a table would be empty."""
    if all_namespaces or not namespace or not _namespaced(_kind(kind_name)):
        return "No resources found"
    return "No resources found in %s namespace." % namespace


def _as_list(objects):
    return {"apiVersion": "v1", "kind": "List", "items": list(objects), "metadata": {"resourceVersion": ""}}


def to_json(obj):
    """kubectl -o json: 4-space indent, sorted keys, Go's HTML-safe escapes."""
    s = json.dumps(obj, indent=4, sort_keys=True, ensure_ascii=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        s = s.replace(ch, esc)
    return s


def to_yaml(obj):
    """kubectl -o yaml: block style, sorted keys, multi-line strings as |."""
    import yaml

    class Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data):
            return True

        def choose_scalar_style(self):  # go-yaml quotes with "..." where PyYAML would use '...'
            style = super().choose_scalar_style()
            return '"' if style == "'" else style

    def _str(dumper, data):
        if "\n" in data:
            return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
        return dumper.represent_scalar("tag:yaml.org,2002:str", data)

    Dumper.add_representer(str, _str)
    return yaml.dump(
        obj, Dumper=Dumper, default_flow_style=False, sort_keys=True, allow_unicode=True, width=1 << 30
    ).rstrip("\n")


def object_name(obj, kind_name=None):
    """-o name: "pod/web-1", "deployment.apps/web" (lowercased kind.group, as kubectl)."""
    kind = obj.get("kind") or _kind(kind_name or "")
    api_version = obj.get("apiVersion")
    group = api_version.rpartition("/")[0] if api_version else _KINDS.get(kind, (True, ""))[1]
    return "%s/%s" % ((kind + "." + group if group else kind).lower(), _meta(obj).get("name", ""))


def render_get(kind_name, objects, output=None, all_namespaces=False, now=None, single=False, namespace=None):
    """`kubectl get` output for `objects` (all of kind `kind_name`), without
    a trailing newline.

    output: None (table), "wide", "json", "yaml", "name". Tables with no
    objects return no_resources_message(...) (the caller prints it to stderr;
    test `not objects` to know). json/yaml give a v1 List unless `single`
    (and exactly one object), which gives the object itself; -o name with no
    objects gives "". `now` fixes the clock for AGE columns."""
    objects = list(objects or [])
    kind = _kind(kind_name)
    if output in ("json", "yaml"):
        obj = objects[0] if single and len(objects) == 1 else _as_list(objects)
        return to_json(obj) if output == "json" else to_yaml(obj)
    if output == "name":
        return "\n".join(object_name(o, kind) for o in objects)
    if output not in (None, "", "wide"):
        raise ValueError(
            "unable to match a printer suitable for the output format %r, allowed formats are: "
            "json,name,wide,yaml" % output
        )
    if not objects:
        return no_resources_message(kind, namespace, all_namespaces)
    wide = output == "wide"
    header, extra, row_fn = _TABLES.get(kind, (["NAME", "AGE"], [], _generic_row))
    header = header + (extra if wide else [])
    with_ns = all_namespaces and _namespaced(kind)
    if with_ns:
        header = ["NAMESPACE"] + header
    rows = []
    for o in objects:
        row = row_fn(o, wide, now)
        rows.append([_meta(o).get("namespace", "")] + row if with_ns else row)
    return _table(header, rows)


def render_describe(obj, events=None, related=None, now=None):
    """kubectl-describe-like text for one object; see podnet.cli.describe."""
    from podnet.cli.describe import render_describe as _describe

    return _describe(obj, events=events, related=related, now=now)
