"""Pure output formatting for the kubectl-like CLI: -o json/yaml/name, the
tabwriter, and (in describe.py) `describe`. No I/O.

Table columns are defined once, on the API server's side
(podnet.apiserver.table builds kubectl's Table for each kind); `podnet get`
prints the Table the server sends (podnet.cli.tableprint), and render_get
below builds the same Table locally for objects already at hand. The
helpers kubectl's printers share (ages, selectors, endpoints, node roles)
live in podnet.apiserver.columns and are re-exported here for describe.
"""

import json

from podnet.apiserver.columns import (
    age,
    format_endpoints,
    format_labels,
    format_selector,
    human_duration,
    list_with_more,
    node_roles,
    node_status,
    parse_time,
    service_ports,
)
from podnet.apiserver.columns import cond as _cond
from podnet.apiserver.columns import meta as _meta

__all__ = [
    "render_get",
    "render_describe",
    "age",
    "no_resources_message",
    "human_duration",
    "format_selector",
    "format_labels",
    "format_endpoints",
    "list_with_more",
    "node_roles",
    "node_status",
    "service_ports",
    "parse_time",
    "tabwrite",
    "_cond",
    "_meta",
]

# kind -> (namespaced, group) for the kinds the CLI shows.
_KINDS = {
    "Pod": (True, ""),
    "Deployment": (True, "apps"),
    "ReplicaSet": (True, "apps"),
    "Service": (True, ""),
    "EndpointSlice": (True, "discovery.k8s.io"),
    "Endpoints": (True, ""),
    "Event": (True, ""),
    "Node": (False, ""),
    "NetworkPolicy": (True, "networking.k8s.io"),
    "Namespace": (False, ""),
    "Secret": (True, ""),
    "IngressClass": (False, "networking.k8s.io"),
    "Ingress": (True, "networking.k8s.io"),
    "GatewayClass": (False, "gateway.networking.k8s.io"),
    "Gateway": (True, "gateway.networking.k8s.io"),
    "HTTPRoute": (True, "gateway.networking.k8s.io"),
}
_BY_LOWER = {k.lower(): k for k in _KINDS}


def _kind(kind_name):
    return _BY_LOWER.get(str(kind_name).lower(), kind_name)


def _namespaced(kind):
    return _KINDS.get(kind, (True, ""))[0]


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
    from podnet.apiserver.table import to_table
    from podnet.cli.tableprint import render_table

    return render_table(
        to_table(kind, objects, now=now),
        wide=output == "wide",
        all_namespaces=all_namespaces,
        namespaced=_namespaced(kind),
    )


def render_describe(obj, events=None, related=None, now=None):
    """kubectl-describe-like text for one object; see podnet.cli.describe."""
    from podnet.cli.describe import render_describe as _describe

    return _describe(obj, events=events, related=related, now=now)
