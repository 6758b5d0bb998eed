"""Pure: kubectl-like `get` tables, -o json/yaml/name, age(), and describe."""

import copy
import json
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from podnet.cli.printers import age, format_selector, no_resources_message, render_describe, render_get, tabwrite

TS = "2026-11-21T22:27:00Z"
CREATED = datetime(2026, 11, 21, 22, 27, tzinfo=UTC)
NOW = CREATED + timedelta(minutes=5, seconds=3)  # every AGE below is "5m3s"


def meta(name, namespace="default", **extra):
    m = {"name": name, "uid": "uid-" + name, "resourceVersion": "7", "creationTimestamp": TS}
    if namespace:
        m["namespace"] = namespace
    m.update(extra)
    return m


def pod(name, phase="Running", ready=True, ip="10.244.1.5", node="node1", state=None, restarts=0, **status):
    cs = {
        "name": "web",
        "ready": ready,
        "restartCount": restarts,
        "state": state or {"running": {"startedAt": TS}},
        "image": "nginx:1.27",
        "imageID": "",
        "containerID": "podnet://0123",
    }
    st = {
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
    spec = {"containers": [{"name": "web", "image": "nginx:1.27"}]}
    if node:
        spec["nodeName"] = node
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta(name, labels={"app": "web"}),
        "spec": spec,
        "status": st,
    }


def lines(text):
    return text.split("\n")


# ---------------------------------------------------------------- age


@pytest.mark.parametrize(
    "delta,want",
    [
        (timedelta(seconds=0), "0s"),
        (timedelta(seconds=-1), "0s"),  # clock skew tolerated
        (timedelta(seconds=-2), "<invalid>"),
        (timedelta(seconds=45), "45s"),
        (timedelta(seconds=119), "119s"),
        (timedelta(seconds=120), "2m"),
        (timedelta(minutes=5, seconds=3), "5m3s"),
        (timedelta(minutes=9, seconds=59), "9m59s"),
        (timedelta(minutes=10), "10m"),
        (timedelta(minutes=10, seconds=30), "10m"),
        (timedelta(hours=3) - timedelta(seconds=1), "179m"),
        (timedelta(hours=3), "3h"),
        (timedelta(hours=3, minutes=30), "3h30m"),
        (timedelta(hours=7, minutes=59), "7h59m"),
        (timedelta(hours=8, minutes=30), "8h"),
        (timedelta(hours=47, minutes=59), "47h"),
        (timedelta(hours=48), "2d"),
        (timedelta(days=2, hours=5), "2d5h"),
        (timedelta(days=7, hours=23), "7d23h"),
        (timedelta(days=8, hours=5), "8d"),
        (timedelta(days=729), "729d"),
        (timedelta(days=730), "2y"),
        (timedelta(days=731), "2y1d"),
        (timedelta(days=365 * 8 + 3), "8y"),
    ],
)
def test_age_follows_kubectl_human_duration(delta, want):
    assert age(NOW - delta, NOW) == want
    assert age((NOW - delta).strftime("%Y-%m-%dT%H:%M:%SZ"), NOW) == want


def test_age_without_a_timestamp_and_with_a_naive_now():
    assert age(None, NOW) == "<unknown>"
    assert age(TS, NOW.replace(tzinfo=None)) == "5m3s"
    assert age("2026-11-21T22:27:00.123456Z", NOW) == "5m2s"


# ---------------------------------------------------------------- tables


def test_pod_table_exact():
    crash = pod("web-2-long-name", ready=False, restarts=4, state={"waiting": {"reason": "CrashLoopBackOff"}})
    crash["status"]["containerStatuses"][0]["lastState"] = {
        "terminated": {"exitCode": 1, "reason": "Error", "finishedAt": "2026-11-21T22:31:00Z"}
    }
    out = render_get("Pod", [pod("web-1"), crash], now=NOW)
    assert out == "\n".join(
        [
            "NAME              READY   STATUS             RESTARTS      AGE",
            "web-1             1/1     Running            0             5m3s",
            "web-2-long-name   0/1     CrashLoopBackOff   4 (63s ago)   5m3s",
        ]
    )


def test_pod_wide_pending_without_ip_or_node():
    p = pod("pending", phase="Pending", ready=False, ip=None, node=None)
    del p["status"]["containerStatuses"]
    assert lines(render_get("Pod", [p], output="wide", now=NOW)) == [
        "NAME      READY   STATUS    RESTARTS   AGE    IP       NODE     NOMINATED NODE   READINESS GATES",
        "pending   0/1     Pending   0          5m3s   <none>   <none>   <none>           <none>",
    ]


def test_pod_wide_with_ip_and_node():
    out = render_get("Pod", [pod("web-1")], output="wide", now=NOW)
    assert lines(out)[1].split() == ["web-1", "1/1", "Running", "0", "5m3s", "10.244.1.5", "node1", "<none>", "<none>"]


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
        (dict(phase="Running", ready=False, state={"waiting": {"reason": "CrashLoopBackOff"}}), "CrashLoopBackOff"),
        (dict(phase="Pending", ready=False, state={"waiting": {"reason": "ImagePullBackOff"}}), "ImagePullBackOff"),
        (
            dict(phase="Failed", ready=False, reason="Evicted", state={"terminated": {"exitCode": 0, "reason": ""}}),
            "ExitCode:0",
        ),
    ],
)
def test_pod_status_column(kw, want):
    row = lines(render_get("Pod", [pod("p", **kw)], now=NOW))[1].split()
    assert row[2] == want
    assert row[1] == "0/1"


def test_pod_terminating_and_ready_count():
    p = pod("going")
    p["metadata"]["deletionTimestamp"] = "2026-11-21T22:32:00Z"
    assert lines(render_get("Pod", [p], now=NOW))[1].split()[1:3] == ["1/1", "Terminating"]
    done = pod("done", phase="Succeeded", ready=False, state={"terminated": {"exitCode": 0, "reason": "Completed"}})
    done["metadata"]["deletionTimestamp"] = "2026-11-21T22:32:00Z"
    assert lines(render_get("Pod", [done], now=NOW))[1].split()[2] == "Completed"


def test_pod_two_containers_restarts_summed():
    p = pod("two", restarts=2)
    p["spec"]["containers"].append({"name": "side", "image": "busybox"})
    p["status"]["containerStatuses"].append(
        {"name": "side", "ready": False, "restartCount": 3, "state": {"running": {"startedAt": TS}}}
    )
    row = lines(render_get("Pod", [p], now=NOW))[1].split()
    assert row[1:4] == ["1/2", "Running", "5"]


def test_pod_init_containers():
    p = pod("init", phase="Pending", ready=False, state={"waiting": {"reason": "PodInitializing"}})
    p["spec"]["initContainers"] = [{"name": "setup", "image": "busybox"}]
    p["status"]["conditions"][0]["status"] = "False"
    p["status"]["initContainerStatuses"] = [
        {"name": "setup", "ready": False, "restartCount": 0, "state": {"running": {"startedAt": TS}}}
    ]
    assert lines(render_get("Pod", [p], now=NOW))[1].split()[2] == "Init:0/1"
    p["status"]["initContainerStatuses"][0].update(restartCount=2, state={"waiting": {"reason": "CrashLoopBackOff"}})
    assert lines(render_get("Pod", [p], now=NOW))[1].split()[2:4] == ["Init:CrashLoopBackOff", "2"]


def test_all_namespaces_adds_namespace_column_but_not_for_cluster_scoped():
    out = render_get("Pod", [pod("web-1")], all_namespaces=True, now=NOW)
    assert lines(out) == [
        "NAMESPACE   NAME    READY   STATUS    RESTARTS   AGE",
        "default     web-1   1/1     Running   0          5m3s",
    ]
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": meta("kube-system", None), "status": {"phase": "Active"}}
    assert render_get("Namespace", [ns], all_namespaces=True, now=NOW) == (
        "NAME          STATUS   AGE\nkube-system   Active   5m3s"
    )


def test_no_resources():
    assert render_get("Pod", [], namespace="default") == "No resources found in default namespace."
    assert render_get("Pod", [], namespace="web", all_namespaces=True) == "No resources found"
    assert render_get("Node", [], namespace="default") == "No resources found"
    assert render_get("Pod", [], output="wide", namespace="x") == no_resources_message("pod", "x")
    assert render_get("Pod", [], output="name") == ""


def deployment():
    tmpl = {
        "metadata": {"labels": {"app": "web"}},
        "spec": {
            "containers": [
                {"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80}]},
                {"name": "side", "image": "busybox"},
            ]
        },
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta("web", labels={"app": "web"}),
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": tmpl,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
        },
        "status": {
            "replicas": 3,
            "updatedReplicas": 3,
            "readyReplicas": 2,
            "availableReplicas": 2,
            "unavailableReplicas": 1,
        },
    }


def test_deployment_table_and_wide():
    d = deployment()
    assert render_get("Deployment", [d], now=NOW) == (
        "NAME   READY   UP-TO-DATE   AVAILABLE   AGE\nweb    2/3     3            2           5m3s"
    )
    assert lines(render_get("Deployment", [d], output="wide", now=NOW)) == [
        "NAME   READY   UP-TO-DATE   AVAILABLE   AGE    CONTAINERS   IMAGES               SELECTOR",
        "web    2/3     3            2           5m3s   web,side     nginx:1.27,busybox   app=web",
    ]
    fresh = copy.deepcopy(d)
    fresh["status"] = {}
    assert lines(render_get("Deployment", [fresh], now=NOW))[1].split()[1:4] == ["0/3", "0", "0"]


def test_replicaset_table():
    rs = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": meta("web-7d9f"),
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}},
        "status": {"replicas": 3, "readyReplicas": 1},
    }
    assert render_get("ReplicaSet", [rs], now=NOW) == (
        "NAME       DESIRED   CURRENT   READY   AGE\nweb-7d9f   3         3         1       5m3s"
    )


def service(name, **spec):
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta(name), "spec": spec}


def test_service_table_every_type():
    svcs = [
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
    ]
    lb2 = service("lb2", type="LoadBalancer", clusterIP="10.96.0.14", ports=[{"port": 443, "nodePort": 31444}])
    lb2["status"] = {"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}]}}
    svcs.append(lb2)
    assert lines(render_get("Service", svcs, now=NOW)) == [
        "NAME       TYPE           CLUSTER-IP   EXTERNAL-IP   PORT(S)                     AGE",
        "web        ClusterIP      10.96.0.10   <none>        80/TCP                      5m3s",
        "np         NodePort       10.96.0.11   <none>        80:30080/TCP,53:30053/UDP   5m3s",
        "lb         LoadBalancer   10.96.0.12   <pending>     443:31443/TCP               5m3s",
        "ext        ClusterIP      10.96.0.13   192.0.2.7     80/TCP                      5m3s",
        "headless   ClusterIP      None         <none>        <none>                      5m3s",
        "lb2        LoadBalancer   10.96.0.14   192.0.2.10    443:31444/TCP               5m3s",
    ]
    wide = lines(render_get("Service", svcs[:2], output="wide", now=NOW))
    assert wide[0].endswith("AGE    SELECTOR")
    assert wide[1].endswith("app=web") and wide[2].endswith("app=web,tier=fe")


def test_endpointslice_table():
    es = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": meta("web-abc12"),
        "addressType": "IPv4",
        "ports": [{"name": "", "port": 8080, "protocol": "TCP"}],
        "endpoints": [{"addresses": ["10.244.1.%d" % i], "conditions": {"ready": True}} for i in range(5)],
    }
    empty = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": meta("idle-x"),
        "addressType": "IPv4",
        "ports": None,
        "endpoints": None,
    }
    assert lines(render_get("EndpointSlice", [es, empty], now=NOW)) == [
        "NAME        ADDRESSTYPE   PORTS     ENDPOINTS                                      AGE",
        "web-abc12   IPv4          8080      10.244.1.0,10.244.1.1,10.244.1.2 + 2 more...   5m3s",
        "idle-x      IPv4          <unset>   <unset>                                        5m3s",
    ]


def test_endpoints_table():
    ep = {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": meta("web"),
        "subsets": [
            {
                "addresses": [{"ip": "10.244.1.5"}, {"ip": "10.244.2.3"}, {"ip": "10.244.2.4"}, {"ip": "10.244.2.9"}],
                "notReadyAddresses": [{"ip": "10.244.3.3"}],
                "ports": [{"port": 8080, "protocol": "TCP"}],
            }
        ],
    }
    none = {"apiVersion": "v1", "kind": "Endpoints", "metadata": meta("none")}
    only_not_ready = {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": meta("warming"),
        "subsets": [{"notReadyAddresses": [{"ip": "10.244.3.3"}], "ports": [{"port": 80}]}],
    }
    v6 = {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": meta("v6"),
        "subsets": [{"addresses": [{"ip": "fd00:10:244::5"}], "ports": [{"port": 80}]}],
    }
    assert lines(render_get("Endpoints", [ep, none, only_not_ready, v6], now=NOW)) == [
        "NAME      ENDPOINTS                                                     AGE",
        "web       10.244.1.5:8080,10.244.2.3:8080,10.244.2.4:8080 + 1 more...   5m3s",
        "none      <none>                                                        5m3s",
        "warming                                                                 5m3s",
        "v6        [fd00:10:244::5]:80                                           5m3s",
    ]


def node(name, ready=True, **labels):
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": meta(name, None, labels=labels),
        "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"]},
        "status": {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True" if ready else "False",
                    "reason": "KubeletReady",
                    "lastHeartbeatTime": TS,
                    "lastTransitionTime": TS,
                }
            ],
            "addresses": [{"type": "InternalIP", "address": "172.18.0.2"}, {"type": "Hostname", "address": name}],
            "nodeInfo": {
                "kubeletVersion": "v1.31.0",
                "osImage": "Debian GNU/Linux 12",
                "kernelVersion": "6.1.0-podnet",
                "containerRuntimeVersion": "podnet://0.1",
            },
        },
    }


def test_node_table_and_wide():
    n1 = node("node1", **{"node-role.kubernetes.io/control-plane": ""})
    n2 = node("node2", ready=False)
    n2["spec"]["unschedulable"] = True
    assert lines(render_get("Node", [n1, n2], now=NOW, all_namespaces=True)) == [
        "NAME    STATUS                        ROLES           AGE    VERSION",
        "node1   Ready                         control-plane   5m3s   v1.31.0",
        "node2   NotReady,SchedulingDisabled   <none>          5m3s   v1.31.0",
    ]
    assert lines(render_get("Node", [n1], output="wide", now=NOW)) == [
        "NAME    STATUS   ROLES           AGE    VERSION   INTERNAL-IP   EXTERNAL-IP   OS-IMAGE              "
        "KERNEL-VERSION   CONTAINER-RUNTIME   POD-CIDR        ENCRYPTION   ROUTING",
        "node1   Ready    control-plane   5m3s   v1.31.0   172.18.0.2    <none>        Debian GNU/Linux 12   "
        "6.1.0-podnet     podnet://0.1        10.244.1.0/24   <none>       <none>",
    ]
    n1["metadata"]["annotations"] = {
        "podnet.io/backend-type": "bgp",
        "podnet.io/bgp-sessions": "node2=Established,node3=Active",
    }
    assert lines(render_get("Node", [n1], output="wide", now=NOW))[1].endswith("bgp node2=Established,node3=Active")


def netpol(name, **spec):
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": meta(name), "spec": spec}


def test_networkpolicy_and_namespace_tables():
    pols = [
        netpol("allow-fe", podSelector={"matchLabels": {"app": "web", "tier": "fe"}}),
        netpol("deny-all", podSelector={}),
        netpol(
            "exprs",
            podSelector={
                "matchLabels": {"app": "db"},
                "matchExpressions": [
                    {"key": "env", "operator": "In", "values": ["prod", "dev"]},
                    {"key": "canary", "operator": "DoesNotExist"},
                ],
            },
        ),
    ]
    assert lines(render_get("NetworkPolicy", pols, now=NOW)) == [
        "NAME       POD-SELECTOR                       AGE",
        "allow-fe   app=web,tier=fe                    5m3s",
        "deny-all   <none>                             5m3s",
        "exprs      app=db,!canary,env in (dev,prod)   5m3s",  # sorted by key, as labels.Selector
    ]
    assert format_selector({"matchExpressions": [{"key": "a", "operator": "Exists"}]}) == "a"
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": meta("default", None), "status": {"phase": "Active"}}
    assert render_get("Namespace", [ns], now=NOW) == "NAME      STATUS   AGE\ndefault   Active   5m3s"


def test_unknown_output_is_an_error():
    with pytest.raises(ValueError):
        render_get("Pod", [pod("web-1")], output="jsonpath")


def test_tabwriter_is_gos():
    # minwidth 6 (a short column is still 6 wide), padding 3, the last cell is never padded.
    assert tabwrite(["A\tB\tC", "x\tyy\tz"]) == "A     B     C\nx     yy    z"
    # a line without that column ends the alignment block, as in Go's tabwriter
    assert (
        tabwrite(["Name:\tx", "Group:", "  Longer key:\ty"], minwidth=0, padding=2)
        == "Name:  x\nGroup:\n  Longer key:  y"
    )


# ---------------------------------------------------------------- -o json / yaml / name


def test_json_is_a_kubectl_list():
    objs = [pod("web-1"), pod("web-2")]
    out = render_get("Pod", objs, output="json")
    assert json.loads(out) == {"apiVersion": "v1", "kind": "List", "items": objs, "metadata": {"resourceVersion": ""}}
    assert out.startswith('{\n    "apiVersion": "v1",\n    "items": [\n        {\n')
    assert json.loads(render_get("Pod", [], output="json"))["items"] == []
    # one object asked for by name: the object itself
    assert json.loads(render_get("Pod", objs[:1], output="json", single=True)) == objs[0]
    # Go's encoder escapes <, >, &
    p = pod("web-1")
    p["metadata"]["annotations"] = {"note": "<a&b>"}
    out = render_get("Pod", [p], output="json", single=True)
    assert '"note": "\\u003ca\\u0026b\\u003e"' in out and json.loads(out) == p


def test_yaml_output():
    objs = [pod("web-1")]
    out = render_get("Pod", objs, output="yaml")
    assert yaml.safe_load(out) == {
        "apiVersion": "v1",
        "kind": "List",
        "items": objs,
        "metadata": {"resourceVersion": ""},
    }
    assert out.startswith("apiVersion: v1\nitems:\n- apiVersion: v1\n")
    assert '  resourceVersion: ""' in out
    single = render_get("Pod", objs, output="yaml", single=True)
    assert single.startswith('apiVersion: v1\nkind: Pod\nmetadata:\n  creationTimestamp: "2026-11-21T22:27:00Z"')
    assert yaml.safe_load(single) == objs[0]
    shared = {"app": "web"}
    o = {"kind": "X", "metadata": {"labels": shared}, "spec": {"selector": shared}}
    assert "&" not in render_get("X", [o], output="yaml", single=True)  # no anchors/aliases


def test_name_output():
    assert render_get("Pod", [pod("web-1"), pod("web-2")], output="name") == "pod/web-1\npod/web-2"
    assert render_get("Deployment", [deployment()], output="name") == "deployment.apps/web"
    assert (
        render_get("NetworkPolicy", [netpol("deny", podSelector={})], output="name")
        == "networkpolicy.networking.k8s.io/deny"
    )


# ---------------------------------------------------------------- describe


def probe_pod():
    p = pod("web-1")
    c = p["spec"]["containers"][0]
    c.update(
        ports=[{"containerPort": 8080, "protocol": "TCP"}],
        command=["/bin/sh", "-c"],
        args=["serve 8080"],
        readinessProbe={
            "httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"},
            "timeoutSeconds": 1,
            "periodSeconds": 10,
            "successThreshold": 1,
            "failureThreshold": 3,
        },
        livenessProbe={"tcpSocket": {"port": 8080}, "initialDelaySeconds": 5},
        env=[
            {"name": "MODE", "value": "prod"},
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}}},
        ],
    )
    p["status"]["startTime"] = TS
    p["metadata"]["ownerReferences"] = [{"kind": "ReplicaSet", "name": "web-7d9f", "controller": True}]
    return p


def test_describe_pod_with_probe():
    out = render_describe(probe_pod(), now=NOW)
    text = lines(out)
    assert text[:4] == [
        "Name:         web-1",
        "Namespace:    default",
        "Node:         node1/172.18.0.2",
        "Start Time:   Sat, 21 Nov 2026 22:27:00 +0000",
    ]
    assert "Labels:       app=web" in text and "Status:       Running" in text
    assert text[text.index("IPs:") + 1] == "  IP:           10.244.1.5"
    assert "Controlled By:  ReplicaSet/web-7d9f" in text
    assert (
        "    Readiness:      http-get http://:8080/healthz delay=0s timeout=1s period=10s #success=1 #failure=3" in text
    )
    assert "    Liveness:       tcp-socket :8080 delay=5s timeout=1s period=10s #success=1 #failure=3" in text
    assert "    Port:          8080/TCP" in text and "    Image:         nginx:1.27" in text
    i = text.index("    Command:")
    assert text[i : i + 5] == ["    Command:", "      /bin/sh", "      -c", "    Args:", "      serve 8080"]
    assert "    State:          Running" in text and "    Ready:          True" in text
    assert "    Restart Count:  0" in text
    i = text.index("    Environment:")
    assert text[i : i + 4] == [
        "    Environment:",
        "      MODE:    prod",
        "      POD_IP:  (v1:status.podIP)",
        "    Mounts:    <none>",
    ]
    i = text.index("Conditions:")
    assert text[i + 1 : i + 4] == ["  Type           Status", "  Initialized    True", "  Ready          True"]
    assert text[-1] == "Events:          <none>"


def test_describe_pod_events_table_and_terminating():
    p = pod("web-1", ready=False, restarts=3, state={"waiting": {"reason": "CrashLoopBackOff"}})
    p["status"]["containerStatuses"][0]["lastState"] = {
        "terminated": {"exitCode": 1, "reason": "Error", "startedAt": TS, "finishedAt": "2026-11-21T22:31:00Z"}
    }
    p["metadata"]["deletionTimestamp"] = "2026-11-21T22:32:33Z"
    p["metadata"]["deletionGracePeriodSeconds"] = 30
    events = [
        {
            "type": "Warning",
            "reason": "BackOff",
            "firstTimestamp": TS,
            "lastTimestamp": "2026-11-21T22:31:00Z",
            "count": 7,
            "source": {"component": "kubelet"},
            "message": "Back-off restarting failed container",
        },
        {
            "type": "Normal",
            "reason": "Scheduled",
            "firstTimestamp": TS,
            "lastTimestamp": TS,
            "count": 1,
            "source": {"component": "default-scheduler"},
            "message": "Successfully assigned default/web-1 to node1",
        },
    ]
    text = lines(render_describe(p, events=events, now=NOW))
    assert "Status:                    Terminating (lasts 30s)" in text
    assert "Termination Grace Period:  30s" in text
    i = text.index("    State:          Waiting")
    assert text[i : i + 8] == [
        "    State:          Waiting",
        "      Reason:       CrashLoopBackOff",
        "    Last State:     Terminated",
        "      Reason:       Error",
        "      Exit Code:    1",
        "      Started:      Sat, 21 Nov 2026 22:27:00 +0000",
        "      Finished:     Sat, 21 Nov 2026 22:31:00 +0000",
        "    Ready:          False",
    ]
    assert text[-5:] == [
        "Events:",
        "  Type     Reason     Age                 From               Message",
        "  ----     ------     ----                ----               -------",
        "  Normal   Scheduled  5m3s                default-scheduler  Successfully assigned default/web-1 to node1",
        "  Warning  BackOff    63s (x7 over 5m3s)  kubelet            Back-off restarting failed container",
    ]


def test_describe_networkpolicy():
    np = netpol(
        "allow-fe",
        podSelector={"matchLabels": {"app": "web"}},
        policyTypes=["Ingress", "Egress"],
        ingress=[
            {
                "from": [
                    {"podSelector": {"matchLabels": {"role": "frontend"}}},
                    {
                        "namespaceSelector": {"matchLabels": {"team": "a"}},
                        "podSelector": {"matchLabels": {"tier": "b"}},
                    },
                    {"ipBlock": {"cidr": "172.17.0.0/16", "except": ["172.17.1.0/24"]}},
                ],
                "ports": [{"protocol": "TCP", "port": 8080}],
            },
            {},
        ],
        egress=[],
    )
    selected = [pod("web-1"), pod("web-2", ip="10.244.2.3", node="node2")]
    assert render_describe(np, related={"pods": selected}, now=NOW) == "\n".join(
        [
            "Name:         allow-fe",
            "Namespace:    default",
            "Created on:   2026-11-21 22:27:00 +0000 UTC",
            "Labels:       <none>",
            "Annotations:  <none>",
            "Spec:",
            "  PodSelector:     app=web",
            "  Allowing ingress traffic:",
            "    To Port: 8080/TCP",
            "    From:",
            "      PodSelector: role=frontend",
            "    From:",
            "      NamespaceSelector: team=a",
            "      PodSelector: tier=b",
            "    From:",
            "      IPBlock:",
            "        CIDR: 172.17.0.0/16",
            "        Except: 172.17.1.0/24",
            "    ----------",
            "    To Port: <any> (traffic allowed to all ports)",
            "    From: <any> (traffic not restricted by source)",
            "  Allowing egress traffic:",
            "    <none> (Selected pods are isolated for egress connectivity)",
            "  Policy Types: Ingress, Egress",
            "Selected pods:",
            "  web-1  10.244.1.5  node1",
            "  web-2  10.244.2.3  node2",
        ]
    )


def test_describe_default_deny_networkpolicy():
    text = lines(render_describe(netpol("deny", podSelector={}), related={"pods": []}))
    assert "  PodSelector:     <none> (Allowing the specific traffic to all pods in this namespace)" in text
    assert "    <none> (Selected pods are isolated for ingress connectivity)" in text
    assert "  Not affecting egress traffic" in text and "  Policy Types: Ingress" in text
    assert text[-1] == "Selected pods:  <none>"


def test_describe_service_node_deployment():
    svc = service(
        "web",
        type="NodePort",
        clusterIP="10.96.0.10",
        clusterIPs=["10.96.0.10"],
        selector={"app": "web"},
        sessionAffinity="None",
        ports=[
            {"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080, "protocol": "TCP"},
            {"name": "dns", "port": 53, "targetPort": 5353, "protocol": "UDP"},
        ],
    )
    eps = ["10.244.1.5:8080", "10.244.2.3:8080", "10.244.2.4:8080", "10.244.3.3:8080", "10.244.1.5:5353"]
    text = lines(render_describe(svc, related={"endpoints": eps}, now=NOW))
    assert text[text.index("Port:              http  80/TCP") + 1 :][:3] == [
        "TargetPort:        8080/TCP",
        "NodePort:          http  30080/TCP",
        "Endpoints:         10.244.1.5:8080,10.244.2.3:8080,10.244.2.4:8080 + 1 more...",
    ]
    assert "Endpoints:         10.244.1.5:5353" in text
    assert "Session Affinity:  None" in text and "Type:              NodePort" in text

    n = node("node1", **{"node-role.kubernetes.io/control-plane": ""})
    text = lines(render_describe(n, related={"pods": [pod("web-1")]}, now=NOW))
    assert text[:2] == ["Name:               node1", "Roles:              control-plane"]
    i = text.index("Addresses:")
    assert text[i + 1 : i + 3] == ["  InternalIP:  172.18.0.2", "  Hostname:    node1"]
    assert any(line.startswith("PodCIDR:") and line.endswith("10.244.1.0/24") for line in text)
    assert any(line.startswith("Non-terminated Pods:") and line.endswith("(1 in total)") for line in text)
    assert text[-2].split() == ["default", "web-1", "10.244.1.5", "5m3s"]

    text = lines(render_describe(deployment(), now=NOW))
    assert "Replicas:               3 desired | 3 updated | 3 total | 2 available | 1 unavailable" in text
    assert "Selector:               app=web" in text and "Pod Template:" in text
    assert "    web:" in text and "      Image:        nginx:1.27" in text


def test_describe_other_kinds_do_not_crash():
    es = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": meta("web-abc"),
        "addressType": "IPv4",
        "ports": [{"port": 8080, "protocol": "TCP"}],
        "endpoints": [
            {
                "addresses": ["10.244.1.5"],
                "conditions": {"ready": True},
                "targetRef": {"kind": "Pod", "name": "web-1"},
                "nodeName": "node1",
            }
        ],
    }
    assert "    TargetRef:      Pod/web-1" in lines(render_describe(es))
    rs = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": meta("web-7d9f"),
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": deployment()["spec"]["template"],
        },
        "status": {"replicas": 2},
    }
    out = render_describe(rs, related={"pods": [pod("web-1"), pod("other", phase="Pending")]})
    assert "Replicas:     2 current / 2 desired" in out
    assert "1 Running / 1 Waiting / 0 Succeeded / 0 Failed" in out
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": meta("default", None), "status": {"phase": "Active"}}
    assert "Status:       Active" in render_describe(ns)
    ep = {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": meta("web"),
        "subsets": [{"addresses": [{"ip": "10.244.1.5"}], "ports": [{"port": 80}]}],
    }
    assert "  Addresses:          10.244.1.5" in render_describe(ep)
    assert render_describe({"apiVersion": "x/v1", "kind": "Widget", "metadata": meta("w")}).startswith("Name:")
