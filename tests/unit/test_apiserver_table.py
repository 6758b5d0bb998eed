"""Pure: the server's Table output (podnet.apiserver.table) and how podnet
prints it (podnet.cli.tableprint). The expected cells are what kube-apiserver
sends and kubectl prints; the expected text is what `podnet get` printed
before it asked the server for a Table (tests/unit/test_printers.py)."""

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from podnet.apiserver.table import column_definitions, to_table
from podnet.cli.tableprint import format_cell, render_table

Obj = dict[str, Any]

TS = "2026-11-21T22:27:00Z"
CREATED = datetime(2026, 11, 21, 22, 27, tzinfo=UTC)
NOW = CREATED + timedelta(minutes=5, seconds=3)  # every AGE below is "5m3s"


def meta(name: str, namespace: str | None = "default", **extra: Any) -> Obj:
    m: Obj = {"name": name, "uid": "uid-" + name, "resourceVersion": "7", "creationTimestamp": TS}
    if namespace:
        m["namespace"] = namespace
    m.update(extra)
    return m


def pod(
    name: str,
    phase: str = "Running",
    ready: bool = True,
    ip: str | None = "10.244.1.5",
    node: str | None = "node1",
    state: Obj | None = None,
    restarts: int = 0,
    **status: Any,
) -> Obj:
    cs = {
        "name": "web",
        "ready": ready,
        "restartCount": restarts,
        "state": state or {"running": {"startedAt": TS}},
        "image": "nginx:1.27",
    }
    st: Obj = {
        "phase": phase,
        "containerStatuses": [cs],
        "hostIP": "172.18.0.2",
        "conditions": [
            {"type": "Initialized", "status": "True"},
            {"type": "Ready", "status": "True" if ready else "False"},
        ],
    }
    if ip:
        st.update(podIP=ip, podIPs=[{"ip": ip}])
    st.update(status)
    spec: Obj = {"containers": [{"name": "web", "image": "nginx:1.27"}]}
    if node:
        spec["nodeName"] = node
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta(name, labels={"app": "web"}),
        "spec": spec,
        "status": st,
    }


def crash_pod() -> Obj:
    p = pod("web-2-long-name", ready=False, restarts=4, state={"waiting": {"reason": "CrashLoopBackOff"}})
    p["status"]["containerStatuses"][0]["lastState"] = {
        "terminated": {"exitCode": 1, "reason": "Error", "finishedAt": "2026-11-21T22:31:00Z"}
    }
    return p


def deployment() -> Obj:
    tmpl = {
        "metadata": {"labels": {"app": "web"}},
        "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}, {"name": "side", "image": "busybox"}]},
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta("web", labels={"app": "web"}),
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": tmpl},
        "status": {"replicas": 3, "updatedReplicas": 3, "readyReplicas": 2, "availableReplicas": 2},
    }


def replicaset() -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": meta("web-7d9f"),
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}},
        "status": {"replicas": 3, "readyReplicas": 1},
    }


def service(name: str, **spec: Any) -> Obj:
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta(name), "spec": spec}


def services() -> list[Obj]:
    lb2 = service("lb2", type="LoadBalancer", clusterIP="10.96.0.14", ports=[{"port": 443, "nodePort": 31444}])
    lb2["status"] = {"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}]}}
    return [
        service(
            "web",
            type="ClusterIP",
            clusterIP="10.96.0.10",
            clusterIPs=["10.96.0.10"],
            selector={"app": "web"},
            ports=[{"port": 80, "targetPort": 8080, "protocol": "TCP"}],
        ),
        service(
            "np",
            type="NodePort",
            clusterIP="10.96.0.11",
            selector={"tier": "fe", "app": "web"},
            ports=[
                {"name": "http", "port": 80, "nodePort": 30080},
                {"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053},
            ],
        ),
        service("lb", type="LoadBalancer", clusterIP="10.96.0.12", ports=[{"port": 443, "nodePort": 31443}]),
        service("ext", type="ClusterIP", clusterIP="10.96.0.13", externalIPs=["192.0.2.7"], ports=[{"port": 80}]),
        service("headless", type="ClusterIP", clusterIP="None", clusterIPs=["None"]),
        lb2,
    ]


def endpointslices() -> list[Obj]:
    es = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": meta("web-abc12"),
        "addressType": "IPv4",
        "ports": [{"name": "", "port": 8080, "protocol": "TCP"}],
        "endpoints": [{"addresses": [f"10.244.1.{i}"], "conditions": {"ready": True}} for i in range(5)],
    }
    idle = {
        "kind": "EndpointSlice",
        "metadata": meta("idle-x"),
        "addressType": "IPv4",
        "ports": None,
        "endpoints": None,
    }
    return [es, idle]


def endpoints() -> list[Obj]:
    addrs = [{"ip": ip} for ip in ("10.244.1.5", "10.244.2.3", "10.244.2.4", "10.244.2.9")]
    return [
        {
            "kind": "Endpoints",
            "metadata": meta("web"),
            "subsets": [
                {"addresses": addrs, "notReadyAddresses": [{"ip": "10.244.3.3"}], "ports": [{"port": 8080}]},
            ],
        },
        {"kind": "Endpoints", "metadata": meta("none")},
        {
            "kind": "Endpoints",
            "metadata": meta("v6"),
            "subsets": [{"addresses": [{"ip": "fd00:10:244::5"}], "ports": [{"port": 80}]}],
        },
    ]


def node(name: str, ready: bool = True, labels: dict[str, str] | None = None) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": meta(name, None, labels=labels or {}),
        "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"]},
        "status": {
            "conditions": [{"type": "Ready", "status": "True" if ready else "False", "reason": "KubeletReady"}],
            "addresses": [{"type": "InternalIP", "address": "172.18.0.2"}, {"type": "Hostname", "address": name}],
            "nodeInfo": {
                "kubeletVersion": "v1.31.0",
                "osImage": "Debian GNU/Linux 12",
                "kernelVersion": "6.1.0-podnet",
                "containerRuntimeVersion": "podnet://0.1",
            },
        },
    }


def nodes() -> list[Obj]:
    n1 = node("node1", labels={"node-role.kubernetes.io/control-plane": ""})
    n2 = node("node2", ready=False)
    n2["spec"]["unschedulable"] = True
    return [n1, n2]


def netpol(name: str, **spec: Any) -> Obj:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": meta(name), "spec": spec}


def netpols() -> list[Obj]:
    exprs = {
        "matchLabels": {"app": "db"},
        "matchExpressions": [
            {"key": "env", "operator": "In", "values": ["prod", "dev"]},
            {"key": "canary", "operator": "DoesNotExist"},
        ],
    }
    return [
        netpol("allow-fe", podSelector={"matchLabels": {"app": "web", "tier": "fe"}}),
        netpol("deny-all", podSelector={}),
        netpol("exprs", podSelector=exprs),
    ]


def namespace(name: str, **status: Any) -> Obj:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta(name, None), "status": status}


def event(name: str = "web-1.17f", **fields: Any) -> Obj:
    ev = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": meta(name),
        "involvedObject": {"kind": "Pod", "namespace": "default", "name": "web-1", "fieldPath": "spec.containers{web}"},
        "reason": "BackOff",
        "message": "Back-off restarting failed container\n",
        "type": "Warning",
        "count": 7,
        "firstTimestamp": TS,
        "lastTimestamp": "2026-11-21T22:31:00Z",
        "source": {"component": "kubelet", "host": "node1"},
    }
    ev.update(fields)
    return ev


def table(kind: str, objects: list[Obj], **kw: Any) -> Obj:
    t = to_table(kind, objects, now=NOW, **kw)
    return json.loads(json.dumps(t))  # what a client receives: also proves the Table is plain JSON


def cells(kind: str, obj: Obj) -> list[Any]:
    return table(kind, [obj])["rows"][0]["cells"]


def text(kind: str, objects: list[Obj], wide: bool = False, all_namespaces: bool = False, **kw: Any) -> str:
    return render_table(table(kind, objects), wide=wide, all_namespaces=all_namespaces, **kw)


# ---------------------------------------------------------------- columns


# kind -> (columns kubectl shows, the ones -o wide adds): kube-apiserver's, plus podnet's
# POD-CIDR, ENCRYPTION and ROUTING
KUBE_COLUMNS = {
    "Pod": (["Name", "Ready", "Status", "Restarts", "Age"], ["IP", "Node", "Nominated Node", "Readiness Gates"]),
    "Deployment": (["Name", "Ready", "Up-to-date", "Available", "Age"], ["Containers", "Images", "Selector"]),
    "ReplicaSet": (["Name", "Desired", "Current", "Ready", "Age"], ["Containers", "Images", "Selector"]),
    "Service": (["Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age"], ["Selector"]),
    "EndpointSlice": (["Name", "AddressType", "Ports", "Endpoints", "Age"], []),
    "Endpoints": (["Name", "Endpoints", "Age"], []),
    "Node": (
        ["Name", "Status", "Roles", "Age", "Version"],
        [
            "Internal-IP",
            "External-IP",
            "OS-Image",
            "Kernel-Version",
            "Container-Runtime",
            "Pod-CIDR",
            "Encryption",
            "Routing",
        ],
    ),
    "NetworkPolicy": (["Name", "Pod-Selector", "Age"], []),
    "Namespace": (["Name", "Status", "Age"], []),
    "Widget": (["Name", "Age"], []),
}


@pytest.mark.parametrize("kind", sorted(KUBE_COLUMNS))
def test_columns_follow_kube_apiserver(kind: str) -> None:
    narrow, wide = KUBE_COLUMNS[kind]
    cols = column_definitions(kind)
    assert [c["name"] for c in cols] == narrow + wide  # every wide column comes after the others here
    assert [c["priority"] for c in cols] == [0] * len(narrow) + [1] * len(wide)
    assert all(set(c) == {"name", "type", "format", "description", "priority"} for c in cols)
    assert [c["format"] for c in cols] == ["name"] + [""] * (len(cols) - 1)
    assert all(c["description"] for c in cols)
    assert column_definitions(kind.lower()) == cols
    assert to_table(kind, [], now=NOW)["columnDefinitions"] == cols


def test_integer_columns_carry_integers() -> None:
    assert [c["type"] for c in column_definitions("ReplicaSet")[:4]] == ["string", "integer", "integer", "integer"]
    assert cells("ReplicaSet", replicaset())[:5] == ["web-7d9f", 3, 3, 1, "5m3s"]
    # Deployment's UP-TO-DATE and AVAILABLE are int64 cells in a "string" column, as printDeployment has them
    assert cells("Deployment", deployment())[:5] == ["web", "2/3", 3, 2, "5m3s"]


def test_empty_list_gives_columns_and_no_rows() -> None:
    t = table("Pod", [])
    assert t == {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {},
        "columnDefinitions": column_definitions("Pod"),
        "rows": [],
    }
    assert render_table(t, wide=True, all_namespaces=True) == ""
    assert table("Pod", [], resource_version="42")["metadata"] == {"resourceVersion": "42"}


# ---------------------------------------------------------------- includeObject


def test_include_object_metadata_is_the_default() -> None:
    p = pod("web-1")
    for t in (table("Pod", [p]), table("Pod", [p], include_object=""), table("Pod", [p], include_object="Metadata")):
        assert t["rows"][0]["object"] == {
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": p["metadata"],
        }
    assert table("Pod", [p], include_object="Object")["rows"][0]["object"] == p
    assert table("Pod", [p], include_object="None")["rows"][0]["object"] is None


def test_include_object_unknown_is_refused_as_kube_apiserver_does() -> None:
    with pytest.raises(ValueError, match='unrecognized includeObject value: "metadata"'):
        to_table("Pod", [pod("web-1")], include_object="metadata")


def test_metadata_row_does_not_share_the_objects_metadata() -> None:
    p = pod("web-1")
    t = to_table("Pod", [p], now=NOW)
    t["rows"][0]["object"]["metadata"]["name"] = "changed"
    assert p["metadata"]["name"] == "web-1"


# ---------------------------------------------------------------- pods


def test_pod_cells() -> None:
    assert cells("Pod", pod("web-1")) == [
        "web-1",
        "1/1",
        "Running",
        "0",
        "5m3s",
        "10.244.1.5",
        "node1",
        "<none>",
        "<none>",
    ]
    assert cells("Pod", crash_pod())[:5] == ["web-2-long-name", "0/1", "CrashLoopBackOff", "4 (63s ago)", "5m3s"]
    p = pod("pending", phase="Pending", ready=False, ip=None, node=None)
    del p["status"]["containerStatuses"]
    assert cells("Pod", p) == ["pending", "0/1", "Pending", "0", "5m3s", "<none>", "<none>", "<none>", "<none>"]


@pytest.mark.parametrize(
    "kw,want",
    [
        (dict(phase="Pending", ready=False, state={"waiting": {"reason": "ContainerCreating"}}), "ContainerCreating"),
        (
            dict(phase="Succeeded", ready=False, state={"terminated": {"exitCode": 0, "reason": "Completed"}}),
            "Completed",
        ),
        (dict(phase="Failed", ready=False, state={"terminated": {"exitCode": 2, "reason": "Error"}}), "Error"),
        (dict(phase="Failed", ready=False, state={"terminated": {"exitCode": 137}}), "ExitCode:137"),
        (dict(phase="Failed", ready=False, state={"terminated": {"exitCode": 0, "signal": 9}}), "Signal:9"),
        (dict(phase="Running", ready=False, state={"waiting": {"reason": "CrashLoopBackOff"}}), "CrashLoopBackOff"),
        (dict(phase="Pending", ready=False, state={"waiting": {"reason": "ImagePullBackOff"}}), "ImagePullBackOff"),
        (
            dict(phase="Failed", ready=False, reason="Evicted", state={"terminated": {"exitCode": 0, "reason": ""}}),
            "ExitCode:0",
        ),
    ],
)
def test_pod_status_cell(kw: dict[str, Any], want: str) -> None:
    assert cells("Pod", pod("p", **kw))[1:3] == ["0/1", want]


def test_finished_pods_carry_the_completed_row_condition() -> None:
    done = pod("done", phase="Succeeded", ready=False, state={"terminated": {"exitCode": 0, "reason": "Completed"}})
    failed = pod("failed", phase="Failed", ready=False, state={"terminated": {"exitCode": 1, "reason": "Error"}})
    rows = table("Pod", [pod("web-1"), done, failed])["rows"]
    assert "conditions" not in rows[0]
    assert rows[1]["conditions"] == [
        {"type": "Completed", "status": "True", "reason": "Succeeded", "message": "The pod has completed successfully."}
    ]
    assert rows[2]["conditions"][0]["reason"] == "Failed"


def test_pod_terminating_unknown_and_scheduling_gated() -> None:
    p = pod("going")
    p["metadata"]["deletionTimestamp"] = "2026-11-21T22:32:00Z"
    assert cells("Pod", p)[1:3] == ["1/1", "Terminating"]
    done = pod("done", phase="Succeeded", ready=False, state={"terminated": {"exitCode": 0, "reason": "Completed"}})
    done["metadata"]["deletionTimestamp"] = "2026-11-21T22:32:00Z"
    assert cells("Pod", done)[2] == "Completed"
    lost = copy.deepcopy(p)
    lost["status"]["reason"] = "NodeLost"
    assert cells("Pod", lost)[2] == "Unknown"
    gated = pod("gated", phase="Pending", ready=False, ip=None, node=None)
    del gated["status"]["containerStatuses"]
    gated["status"]["conditions"] = [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]
    assert cells("Pod", gated)[2] == "SchedulingGated"


def test_pod_two_containers_restarts_summed() -> None:
    p = pod("two", restarts=2)
    p["spec"]["containers"].append({"name": "side", "image": "busybox"})
    p["status"]["containerStatuses"].append(
        {"name": "side", "ready": False, "restartCount": 3, "state": {"running": {"startedAt": TS}}}
    )
    assert cells("Pod", p)[1:4] == ["1/2", "Running", "5"]  # no lastState.terminated: no "(ago)"


def test_pod_init_containers_and_sidecars() -> None:
    p = pod("init", phase="Pending", ready=False, state={"waiting": {"reason": "PodInitializing"}})
    p["spec"]["initContainers"] = [{"name": "setup", "image": "busybox"}]
    p["status"]["conditions"][0]["status"] = "False"
    p["status"]["initContainerStatuses"] = [
        {"name": "setup", "ready": False, "restartCount": 0, "state": {"running": {"startedAt": TS}}}
    ]
    assert cells("Pod", p)[2] == "Init:0/1"
    p["status"]["initContainerStatuses"][0].update(restartCount=2, state={"waiting": {"reason": "CrashLoopBackOff"}})
    assert cells("Pod", p)[2:4] == ["Init:CrashLoopBackOff", "2"]
    # a restartable init container (sidecar) counts in READY and its restarts in RESTARTS
    s = pod("side", restarts=1)
    s["spec"]["initContainers"] = [{"name": "proxy", "image": "envoy", "restartPolicy": "Always"}]
    s["status"]["initContainerStatuses"] = [
        {
            "name": "proxy",
            "ready": True,
            "started": True,
            "restartCount": 2,
            "state": {"running": {"startedAt": TS}},
            "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2026-11-21T22:30:03Z"}},
        }
    ]
    assert cells("Pod", s)[1:4] == ["2/2", "Running", "3 (2m ago)"]


def test_pod_readiness_gates() -> None:
    p = pod("gates")
    p["spec"]["readinessGates"] = [{"conditionType": "example.com/lb"}, {"conditionType": "example.com/dns"}]
    p["status"]["conditions"].append({"type": "example.com/lb", "status": "True"})
    assert cells("Pod", p)[8] == "1/2"


# ---------------------------------------------------------------- other kinds


def test_deployment_and_replicaset_cells() -> None:
    assert cells("Deployment", deployment()) == [
        "web",
        "2/3",
        3,
        2,
        "5m3s",
        "web,side",
        "nginx:1.27,busybox",
        "app=web",
    ]
    fresh = deployment()
    fresh["status"] = {}
    del fresh["spec"]["selector"]
    assert cells("Deployment", fresh)[1:4] == ["0/3", 0, 0]
    assert cells("Deployment", fresh)[7] == ""  # printDeployment: selector.String() of nothing
    assert cells("ReplicaSet", replicaset()) == ["web-7d9f", 3, 3, 1, "5m3s", "", "", "app=web"]
    rs = replicaset()
    rs["spec"]["selector"] = {}
    assert cells("ReplicaSet", rs)[7] == "<none>"  # printReplicaSet: FormatLabelSelector
    rs["spec"]["selector"] = {"matchExpressions": [{"key": "a", "operator": "Bogus"}]}
    assert cells("ReplicaSet", rs)[7] == "<error>"


def test_service_cells_every_type() -> None:
    got = [c for c in (table("Service", services())["rows"])]
    assert [r["cells"] for r in got] == [
        ["web", "ClusterIP", "10.96.0.10", "<none>", "80/TCP", "5m3s", "app=web"],
        ["np", "NodePort", "10.96.0.11", "<none>", "80:30080/TCP,53:30053/UDP", "5m3s", "app=web,tier=fe"],
        ["lb", "LoadBalancer", "10.96.0.12", "<pending>", "443:31443/TCP", "5m3s", "<none>"],
        ["ext", "ClusterIP", "10.96.0.13", "192.0.2.7", "80/TCP", "5m3s", "<none>"],
        ["headless", "ClusterIP", "None", "<none>", "<none>", "5m3s", "<none>"],
        ["lb2", "LoadBalancer", "10.96.0.14", "192.0.2.10", "443:31444/TCP", "5m3s", "<none>"],
    ]
    # kube-apiserver builds Tables with Wide=true: a long ingress list is never clipped to 16 characters
    lb = service("lb3", type="LoadBalancer", clusterIP="10.96.0.15", externalIPs=["192.0.2.99"])
    lb["status"] = {"loadBalancer": {"ingress": [{"ip": "192.0.2.20"}, {"hostname": "lb.example.com"}]}}
    assert cells("Service", lb)[3] == "192.0.2.20,lb.example.com,192.0.2.99"
    ext = service("db", type="ExternalName", externalName="db.example.com")
    assert cells("Service", ext)[1:4] == ["ExternalName", "<none>", "db.example.com"]


def test_endpointslice_and_endpoints_cells() -> None:
    rows = table("EndpointSlice", endpointslices())["rows"]
    assert rows[0]["cells"] == ["web-abc12", "IPv4", "8080", "10.244.1.0,10.244.1.1,10.244.1.2 + 2 more...", "5m3s"]
    assert rows[1]["cells"] == ["idle-x", "IPv4", "<unset>", "<unset>", "5m3s"]
    named = {"kind": "EndpointSlice", "metadata": meta("n"), "addressType": "IPv6", "ports": [{"name": "http"}, {}]}
    assert cells("EndpointSlice", named)[2] == "http,*"
    rows = table("Endpoints", endpoints())["rows"]
    assert [r["cells"][1] for r in rows] == [
        "10.244.1.5:8080,10.244.2.3:8080,10.244.2.4:8080 + 1 more...",
        "<none>",
        "[fd00:10:244::5]:80",
    ]
    # formatEndpoints: subsets without a ready address print nothing, as kube-apiserver does
    warming = {
        "kind": "Endpoints",
        "metadata": meta("warming"),
        "subsets": [{"notReadyAddresses": [{"ip": "10.244.3.3"}]}],
    }
    assert cells("Endpoints", warming) == ["warming", "", "5m3s"]


def test_node_cells() -> None:
    n1, n2 = nodes()
    assert cells("Node", n1) == [
        "node1",
        "Ready",
        "control-plane",
        "5m3s",
        "v1.31.0",
        "172.18.0.2",
        "<none>",
        "Debian GNU/Linux 12",
        "6.1.0-podnet",
        "podnet://0.1",
        "10.244.1.0/24",
        "<none>",
        "<none>",
    ]
    assert cells("Node", n2)[1:3] == ["NotReady,SchedulingDisabled", "<none>"]
    n1["metadata"]["annotations"] = {"podnet.io/backend-type": "bgp", "podnet.io/bgp-sessions": "node2=Established"}
    assert cells("Node", n1)[12] == "bgp node2=Established"
    # WireGuard: the implementation, and each peer's latest handshake as an age on the server's clock
    n1["metadata"]["annotations"].update(
        {
            "podnet.io/wireguard-implementation": "wireguard-go",
            "podnet.io/wireguard-handshakes": "node2=%d,node3=0" % (NOW.timestamp() - 7),
        }
    )
    assert cells("Node", n1)[11] == "wireguard-go node2=7s,node3=never"
    del n1["status"]["conditions"]
    assert cells("Node", n1)[1] == "Unknown"


def test_networkpolicy_and_namespace_cells() -> None:
    assert [r["cells"][1] for r in table("NetworkPolicy", netpols())["rows"]] == [
        "app=web,tier=fe",
        "<none>",
        "app=db,!canary,env in (dev,prod)",  # sorted by key, as labels.Selector
    ]
    assert cells("Namespace", namespace("default", phase="Active")) == ["default", "Active", "5m3s"]
    # podnet's store does not set the phase; the cell says what kube-apiserver would have set
    assert cells("Namespace", namespace("new")) == ["new", "Active", "5m3s"]
    gone = namespace("gone")
    gone["metadata"]["deletionTimestamp"] = TS
    assert cells("Namespace", gone)[1] == "Terminating"


def test_generic_kind_gets_name_and_age() -> None:
    w = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": meta("w", creationTimestamp=None)}
    assert cells("Widget", w) == ["w", "<unknown>"]
    assert text("Widget", [w]) == "NAME   AGE\nw      <unknown>"


# ---------------------------------------------------------------- events


def test_event_columns_follow_kubectl_get_events() -> None:
    cols = column_definitions("Event")
    assert [c["name"] for c in cols if not c["priority"]] == ["Last Seen", "Type", "Reason", "Object", "Message"]
    assert [c["name"] for c in cols] == [
        "Last Seen",
        "Type",
        "Reason",
        "Object",
        "Subobject",
        "Source",
        "Message",
        "First Seen",
        "Count",
        "Name",
    ]
    assert [c["format"] for c in cols] == [""] * 9 + ["name"]


def test_event_cells() -> None:
    assert cells("Event", event()) == [
        "63s",
        "Warning",
        "BackOff",
        "pod/web-1",
        "spec.containers{web}",
        "kubelet, node1",
        "Back-off restarting failed container",  # TrimSpace
        "5m3s",
        7,
        "web-1.17f",
    ]
    # events.k8s.io writers: eventTime, no count, reportingController / reportingInstance
    new = event(firstTimestamp=None, lastTimestamp=None, count=None, source={}, eventTime="2026-11-21T22:30:00.000000Z")
    new.update(reportingController="podnet-agent", reportingInstance="node2")
    c = cells("Event", new)
    assert (c[0], c[5], c[7], c[8]) == ("2m3s", "podnet-agent, node2", "2m3s", 1)
    series = event(series={"count": 12, "lastObservedTime": "2026-11-21T22:32:00.000000Z"})
    assert (cells("Event", series)[0], cells("Event", series)[8]) == ("3s", 12)
    kind_only = event(involvedObject={"kind": "Node"}, source={"component": "podnet-agent"})
    assert cells("Event", kind_only)[3:6] == ["node", "", "podnet-agent"]


def test_event_text() -> None:
    scheduled = event(
        "web-1.17e",
        type="Normal",
        reason="Scheduled",
        message="Successfully assigned default/web-1 to node1",
        count=1,
        lastTimestamp=TS,
        source={"component": "default-scheduler"},
        involvedObject={"kind": "Pod", "name": "web-1"},
    )
    assert text("Event", [scheduled, event()]) == "\n".join(
        [
            "LAST SEEN   TYPE      REASON      OBJECT      MESSAGE",
            "5m3s        Normal    Scheduled   pod/web-1   Successfully assigned default/web-1 to node1",
            "63s         Warning   BackOff     pod/web-1   Back-off restarting failed container",
        ]
    )
    assert text("Event", [event()], wide=True, all_namespaces=True) == "\n".join(
        [
            "NAMESPACE   LAST SEEN   TYPE      REASON    OBJECT      SUBOBJECT              SOURCE           "
            "MESSAGE                                FIRST SEEN   COUNT   NAME",
            "default     63s         Warning   BackOff   pod/web-1   spec.containers{web}   kubelet, node1   "
            "Back-off restarting failed container   5m3s         7       web-1.17f",
        ]
    )


# ---------------------------------------------------------------- render_table = what podnet printed before


def test_render_table_exact_text() -> None:
    assert text("Pod", [pod("web-1"), crash_pod()]) == "\n".join(
        [
            "NAME              READY   STATUS             RESTARTS      AGE",
            "web-1             1/1     Running            0             5m3s",
            "web-2-long-name   0/1     CrashLoopBackOff   4 (63s ago)   5m3s",
        ]
    )
    assert text("Pod", [pod("web-1")], all_namespaces=True).split("\n") == [
        "NAMESPACE   NAME    READY   STATUS    RESTARTS   AGE",
        "default     web-1   1/1     Running   0          5m3s",
    ]
    # cluster-scoped: no NAMESPACE column with -A
    assert text("Namespace", [namespace("kube-system", phase="Active")], all_namespaces=True) == (
        "NAME          STATUS   AGE\nkube-system   Active   5m3s"
    )
    assert text("Node", nodes()[:1], wide=True).split("\n") == [
        "NAME    STATUS   ROLES           AGE    VERSION   INTERNAL-IP   EXTERNAL-IP   OS-IMAGE              "
        "KERNEL-VERSION   CONTAINER-RUNTIME   POD-CIDR        ENCRYPTION   ROUTING",
        "node1   Ready    control-plane   5m3s   v1.31.0   172.18.0.2    <none>        Debian GNU/Linux 12   "
        "6.1.0-podnet     podnet://0.1        10.244.1.0/24   <none>       <none>",
    ]
    assert text("Deployment", [deployment()], wide=True).split("\n") == [
        "NAME   READY   UP-TO-DATE   AVAILABLE   AGE    CONTAINERS   IMAGES               SELECTOR",
        "web    2/3     3            2           5m3s   web,side     nginx:1.27,busybox   app=web",
    ]


def test_render_table_labels_headers_and_namespaces() -> None:
    pods = [pod("web-1"), pod("web-2")]
    pods[1]["metadata"]["namespace"] = "prod"
    pods[1]["metadata"]["labels"] = {"tier": "fe", "app": "web"}
    assert text("Pod", pods, all_namespaces=True, show_labels=True).split("\n") == [
        "NAMESPACE   NAME    READY   STATUS    RESTARTS   AGE    LABELS",
        "default     web-1   1/1     Running   0          5m3s   app=web",
        "prod        web-2   1/1     Running   0          5m3s   app=web,tier=fe",
    ]
    assert text("Pod", pods, no_headers=True).split("\n") == [
        "web-1   1/1   Running   0     5m3s",
        "web-2   1/1   Running   0     5m3s",
    ]
    # without the objects (includeObject=None) kubectl still adds the columns, empty
    bare = table("Pod", pods[:1], include_object="None")
    assert render_table(bare, wide=False, all_namespaces=True, show_labels=True, namespaced=True).split("\n") == [
        "NAMESPACE   NAME    READY   STATUS    RESTARTS   AGE    LABELS",
        "            web-1   1/1     Running   0          5m3s",
    ]
    assert render_table(bare, wide=False, all_namespaces=True).startswith("NAME ")  # nothing to infer it from


def test_render_table_cells_as_kubectl_prints_them() -> None:
    assert format_cell("line one\nline two") == "line one..."
    assert format_cell("a\rb") == "a..."
    assert format_cell("\x1b[31mred") == "^[[31mred"
    assert format_cell("a\tb") == "a b"
    assert [format_cell(v) for v in (None, True, False, 3, 2.0, 1.5, [1, "a"], {"b": 1, "a": None})] == [
        "",
        "true",
        "false",
        "3",
        "2",
        "1.5",
        "[1 a]",
        "map[a:<nil> b:1]",
    ]
    # more cells than columns are ignored (kubernetes issue 66379); missing ones print empty
    t = {
        "columnDefinitions": [{"name": "Name", "priority": 0}, {"name": "Extra", "priority": 0}],
        "rows": [{"cells": ["a", "b", "ignored"]}, {"cells": ["c"]}],
    }
    assert render_table(t, wide=False, all_namespaces=False) == "NAME   EXTRA\na      b\nc"
