"""Server-side printing: objects -> a meta.k8s.io/v1 Table.

kubectl (>= 1.11) asks for `Accept: application/json;as=Table;v=v1;g=meta.k8s.io`
and prints the columns the server returns, so the columns of `kubectl get`
are defined here, once; `podnet get` prints the same Table
(podnet.cli.tableprint). Columns, cells and their types follow kube-apiserver
(pkg/printers/internalversion/printers.go) so scripts written against a real
cluster read podnet the same way:

- Cells are built for every column, wide ones included: kube-apiserver
  generates Tables with Wide=true (pkg/printers/storage) and kubectl drops
  the columns with priority > 0 unless `-o wide`.
- Cells carry what kubectl prints (AGE as "5m3s", RESTARTS as "2 (3m ago)"),
  computed with the server's clock; integer columns carry ints, as in Go.
- Each row carries the object per `includeObject` (None, Metadata, Object;
  default Metadata): kubectl reads the namespace (-A) and the labels
  (--show-labels) from it.
- Node gets podnet's POD-CIDR, ENCRYPTION and ROUTING (wide only) after kube's columns.
- Kinds without a printer get NAME and AGE, as kubectl shows custom resources.

Descriptions are short forms of the field documentation kube-apiserver
sends (its swagger docs); kubectl does not print them.
"""

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from podnet.api.types import JSON, Obj
from podnet.apiserver import httpcolumns
from podnet.apiserver.columns import (
    age,
    containers_images,
    format_endpoints,
    format_labels,
    format_selector,
    list_with_more,
    meta,
    node_address,
    node_encryption,
    node_roles,
    node_routing,
    node_status,
    pod_summary,
    selector_string,
    service_external_ip,
    service_ports,
)

__all__ = ["INCLUDE_OBJECT", "column_definitions", "to_table"]

INCLUDE_OBJECT = ("None", "Metadata", "Object")
"""The values of the `includeObject` query parameter (metav1.IncludeObjectPolicy)."""

# (name, type, priority, description); NAME is the column with format "name".
_Column = tuple[str, str, int, str]
_NAME: _Column = ("Name", "string", 0, "Name must be unique within a namespace.")
_AGE: _Column = ("Age", "string", 0, "The server time when this object was created.")
_CONTAINERS: _Column = ("Containers", "string", 1, "Names of each container in the template.")
_IMAGES: _Column = ("Images", "string", 1, "Images referenced by each container in the template.")

_COLUMNS: dict[str, list[_Column]] = {
    "Pod": [
        _NAME,
        ("Ready", "string", 0, "The aggregate readiness state of this pod for accepting traffic."),
        ("Status", "string", 0, "The aggregate status of the containers in this pod."),
        ("Restarts", "string", 0, "The number of times the containers in this pod have been restarted, and when last."),
        _AGE,
        ("IP", "string", 1, "podIP address allocated to the pod."),
        ("Node", "string", 1, "NodeName indicates in which node this pod is scheduled."),
        ("Nominated Node", "string", 1, "Set only when this pod preempts other pods on the node."),
        ("Readiness Gates", "string", 1, "All readiness gates are evaluated for pod readiness."),
    ],
    "Deployment": [
        _NAME,
        ("Ready", "string", 0, "Number of the pod with ready state"),
        ("Up-to-date", "string", 0, "Total number of non-terminated pods that have the desired template spec."),
        ("Available", "string", 0, "Total number of available pods (ready for at least minReadySeconds)."),
        _AGE,
        _CONTAINERS,
        _IMAGES,
        ("Selector", "string", 1, "Label selector for pods."),
    ],
    "ReplicaSet": [
        _NAME,
        ("Desired", "integer", 0, "Replicas is the number of desired replicas."),
        ("Current", "integer", 0, "Replicas is the most recently observed number of replicas."),
        ("Ready", "integer", 0, "The number of pods targeted by this ReplicaSet with a Ready Condition."),
        _AGE,
        _CONTAINERS,
        _IMAGES,
        ("Selector", "string", 1, "A label query over pods that should match the replica count."),
    ],
    "Service": [
        _NAME,
        ("Type", "string", 0, "type determines how the Service is exposed."),
        ("Cluster-IP", "string", 0, "clusterIP is the IP address of the service."),
        ("External-IP", "string", 0, "IP addresses for which nodes in the cluster will also accept traffic."),
        ("Port(s)", "string", 0, "The list of ports that are exposed by this service."),
        _AGE,
        ("Selector", "string", 1, "Route service traffic to pods with labels matching this selector."),
    ],
    "EndpointSlice": [
        _NAME,
        ("AddressType", "string", 0, "The type of address carried by this EndpointSlice."),
        ("Ports", "string", 0, "The network ports exposed by each endpoint in this slice."),
        ("Endpoints", "string", 0, "endpoints is a list of unique endpoints in this slice."),
        _AGE,
    ],
    "Endpoints": [_NAME, ("Endpoints", "string", 0, "The set of all endpoints is the union of all subsets."), _AGE],
    "Node": [
        _NAME,
        ("Status", "string", 0, "The status of the node"),
        ("Roles", "string", 0, "The roles of the node"),
        _AGE,
        ("Version", "string", 0, "Kubelet Version reported by the node."),
        ("Internal-IP", "string", 1, "List of addresses reachable to the node."),
        ("External-IP", "string", 1, "List of addresses reachable to the node."),
        ("OS-Image", "string", 1, "OS Image reported by the node from /etc/os-release."),
        ("Kernel-Version", "string", 1, "Kernel Version reported by the node from 'uname -r'."),
        ("Container-Runtime", "string", 1, "ContainerRuntime Version reported by the node."),
        ("Pod-CIDR", "string", 1, "podnet: the pod IP ranges assigned to the node (spec.podCIDRs)."),
        (
            "Encryption",
            "string",
            1,
            "podnet: WireGuard between nodes (wireguard-go or kernel), with each peer's handshake age.",
        ),
        ("Routing", "string", 1, "podnet: the routing backend the node's agent reports, with BGP sessions."),
    ],
    "NetworkPolicy": [
        _NAME,
        ("Pod-Selector", "string", 0, "Selects the pods to which this NetworkPolicy applies."),
        _AGE,
    ],
    "Namespace": [_NAME, ("Status", "string", 0, "The status of the namespace"), _AGE],
    # kube-apiserver's order: LAST SEEN first, the wide columns in between, NAME last.
    "Event": [
        ("Last Seen", "string", 0, "When the most recent occurrence of this event was recorded."),
        ("Type", "string", 0, "Type of this event (Normal, Warning)."),
        ("Reason", "string", 0, "A short, machine understandable reason for the transition."),
        ("Object", "string", 0, "The object that this event is about."),
        ("Subobject", "string", 1, "The field path of the piece of the object."),
        ("Source", "string", 1, "The component reporting this event."),
        ("Message", "string", 0, "A human-readable description of the status."),
        ("First Seen", "string", 1, "The time at which the event was first recorded."),
        ("Count", "string", 1, "The number of times this event has occurred."),
        ("Name", "string", 1, _NAME[3]),
    ],
}
_COLUMNS.update(httpcolumns.COLUMNS)  # Secret, Ingress and the Gateway API (issue 14)
_GENERIC = [_NAME, _AGE]
_BY_LOWER = {k.lower(): k for k in _COLUMNS}


def _kind(kind: str) -> str:
    return _BY_LOWER.get(kind.lower(), kind)


def column_definitions(kind: str) -> list[Obj]:
    """The Table's columnDefinitions for `kind` (new dicts: callers may change them)."""
    # Go serialises format and priority even when empty; NAME is the column with format "name".
    return [
        {"name": n, "type": t, "format": "name" if n == "Name" else "", "description": d, "priority": p}
        for n, t, p, d in _COLUMNS.get(_kind(kind), _GENERIC)
    ]


# ---------------------------------------------------------------- cells per kind

Cells = list[JSON]


def _created(o: Obj, now: datetime | None) -> str:
    return age(meta(o).get("creationTimestamp"), now)


def _pod(pod: Obj, now: datetime | None) -> Cells:
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    s = pod_summary(pod)
    ips = status.get("podIPs") or []
    # Go reads status.podIPs; podIP (its first entry) covers objects written without podIPs.
    ip = (ips[0].get("ip") if ips else None) or status.get("podIP") or "<none>"
    gates = spec.get("readinessGates") or []
    gates_s = "<none>"
    if gates:
        conds = {}
        for c in reversed(status.get("conditions") or []):  # reversed: the first of a type wins, as in Go
            conds[c.get("type")] = c.get("status")
        true = sum(1 for g in gates if conds.get(g.get("conditionType")) == "True")
        gates_s = f"{true}/{len(gates)}"
    return [
        meta(pod).get("name", ""),
        f"{s.ready}/{s.total}",
        s.reason,
        s.restarts_cell(now),
        _created(pod, now),
        ip,
        spec.get("nodeName") or "<none>",
        status.get("nominatedNodeName") or "<none>",
        gates_s,
    ]


def _replicas(spec: Obj) -> int:
    r = spec.get("replicas")
    return 1 if r is None else int(r)  # the API server defaults spec.replicas to 1


def _deployment(d: Obj, now: datetime | None) -> Cells:
    spec, status = d.get("spec") or {}, d.get("status") or {}
    selector = selector_string(spec.get("selector"))
    return [
        meta(d).get("name", ""),
        f"{status.get('readyReplicas') or 0}/{_replicas(spec)}",
        int(status.get("updatedReplicas") or 0),
        int(status.get("availableReplicas") or 0),
        _created(d, now),
        *containers_images(spec.get("template")),
        "<invalid>" if selector is None else selector,  # printDeployment: selector.String(), "" when empty
    ]


def _replicaset(rs: Obj, now: datetime | None) -> Cells:
    spec, status = rs.get("spec") or {}, rs.get("status") or {}
    return [
        meta(rs).get("name", ""),
        _replicas(spec),
        int(status.get("replicas") or 0),
        int(status.get("readyReplicas") or 0),
        _created(rs, now),
        *containers_images(spec.get("template")),
        format_selector(spec.get("selector")),  # printReplicaSet: FormatLabelSelector, "<none>" when empty
    ]


def _service(svc: Obj, now: datetime | None) -> Cells:
    spec = svc.get("spec") or {}
    # Go reads clusterIPs; clusterIP covers objects written before the store filled clusterIPs.
    cluster_ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    return [
        meta(svc).get("name", ""),
        spec.get("type") or "ClusterIP",
        cluster_ips[0] if cluster_ips else "<none>",
        service_external_ip(svc),
        service_ports(spec.get("ports")) or "<none>",
        _created(svc, now),
        format_labels(spec.get("selector")),
    ]


def _endpointslice(es: Obj, now: datetime | None) -> Cells:
    ports = []
    for p in es.get("ports") or []:
        # formatDiscoveryPorts: the number, else the name when set (even ""), else "*"
        if p.get("port") is not None:
            ports.append(str(p["port"]))
        else:
            ports.append("*" if p.get("name") is None else str(p["name"]))
    addrs = [a for e in es.get("endpoints") or [] for a in e.get("addresses") or []]
    return [
        meta(es).get("name", ""),
        es.get("addressType") or "",
        list_with_more(ports, len(ports)),
        list_with_more(addrs, len(addrs)),
        _created(es, now),
    ]


def _endpoints(ep: Obj, now: datetime | None) -> Cells:
    return [meta(ep).get("name", ""), format_endpoints(ep.get("subsets")), _created(ep, now)]


def _node(node: Obj, now: datetime | None) -> Cells:
    info = (node.get("status") or {}).get("nodeInfo") or {}
    spec = node.get("spec") or {}
    return [
        meta(node).get("name", ""),
        node_status(node),
        ",".join(node_roles(node)) or "<none>",
        _created(node, now),
        info.get("kubeletVersion") or "",
        node_address(node, "InternalIP"),
        node_address(node, "ExternalIP"),
        info.get("osImage") or "<unknown>",
        info.get("kernelVersion") or "<unknown>",
        info.get("containerRuntimeVersion") or "<unknown>",
        ",".join(spec.get("podCIDRs") or []) or spec.get("podCIDR") or "<none>",
        node_encryption(node, now),
        node_routing(node),
    ]


def _netpol(np: Obj, now: datetime | None) -> Cells:
    return [meta(np).get("name", ""), format_selector((np.get("spec") or {}).get("podSelector")), _created(np, now)]


def _namespace(ns: Obj, now: datetime | None) -> Cells:
    phase = (ns.get("status") or {}).get("phase")
    if not phase:  # kube-apiserver always sets the phase; podnet's store does not, so say what it would be
        phase = "Terminating" if meta(ns).get("deletionTimestamp") else "Active"
    return [meta(ns).get("name", ""), phase, _created(ns, now)]


def _event(ev: Obj, now: datetime | None) -> Cells:
    first = age(ev.get("firstTimestamp") or ev.get("eventTime"), now)
    last = age(ev["lastTimestamp"], now) if ev.get("lastTimestamp") else first
    count = int(ev.get("count") or 0)
    series = ev.get("series")
    if series is not None:
        last, count = age(series.get("lastObservedTime"), now), int(series.get("count") or 0)
    elif count == 0:
        count = 1  # singleton events written through events.k8s.io carry no count
    involved = ev.get("involvedObject") or {}
    kind = str(involved.get("kind") or "").lower()
    # formatEventSource: component and host, or the events.k8s.io reporting controller and instance
    src = ev.get("source") or {}
    component = src.get("component") or ev.get("reportingController") or ""
    host = src.get("host") or ev.get("reportingInstance") or ""
    return [
        last,
        ev.get("type") or "",
        ev.get("reason") or "",
        f"{kind}/{involved['name']}" if involved.get("name") else kind,
        involved.get("fieldPath") or "",
        f"{component}, {host}" if host else component,
        str(ev.get("message") or "").strip(),
        first,
        count,
        meta(ev).get("name", ""),
    ]


def _generic(o: Obj, now: datetime | None) -> Cells:
    return [meta(o).get("name", ""), _created(o, now)]


_ROWS: dict[str, Callable[[Obj, datetime | None], Cells]] = {
    "Pod": _pod,
    "Deployment": _deployment,
    "ReplicaSet": _replicaset,
    "Service": _service,
    "EndpointSlice": _endpointslice,
    "Endpoints": _endpoints,
    "Node": _node,
    "NetworkPolicy": _netpol,
    "Namespace": _namespace,
    "Event": _event,
}
_ROWS.update(httpcolumns.ROWS)

# printPod marks pods that have finished (podSuccessConditions / podFailedConditions).
_POD_DONE = {
    "Succeeded": {
        "type": "Completed",
        "status": "True",
        "reason": "Succeeded",
        "message": "The pod has completed successfully.",
    },
    "Failed": {"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."},
}


# ---------------------------------------------------------------- the Table


def _row_object(o: Obj, include_object: str) -> Obj | None:
    if include_object == "Object":
        return o
    if include_object == "Metadata":
        # meta.AsPartialObjectMetadata in the Table's group/version, as apiserver's asTable does
        return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": dict(meta(o))}
    return None  # Go's empty RawExtension serialises as null


def to_table(
    kind: str,
    objects: Sequence[Obj],
    include_object: str = "Metadata",
    now: datetime | None = None,
    *,
    resource_version: str = "",
) -> Obj:
    """A meta.k8s.io/v1 Table for `objects`, all of kind `kind` ("Pod",
    "Deployment", ...; any case). `include_object` is the includeObject query
    parameter ("" means its default, Metadata); another value raises
    ValueError with kube-apiserver's message (its 400 BadRequest).
    `resource_version` goes to the Table's metadata: the list's, or the
    object's for a single get. `now` fixes the clock for the age cells."""
    include_object = include_object or "Metadata"
    if include_object not in INCLUDE_OBJECT:
        raise ValueError(f'unrecognized includeObject value: "{include_object}"')
    now = now or datetime.now(UTC)  # one clock for every row
    k = _kind(kind)
    row_fn = _ROWS.get(k, _generic)
    rows: list[Obj] = []
    for o in objects:
        row: Obj = {"cells": row_fn(o, now)}
        done = _POD_DONE.get((o.get("status") or {}).get("phase") or "") if k == "Pod" else None
        if done:
            row["conditions"] = [dict(done)]
        row["object"] = _row_object(o, include_object)
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version} if resource_version else {},
        "columnDefinitions": column_definitions(k),
        "rows": rows,
    }
