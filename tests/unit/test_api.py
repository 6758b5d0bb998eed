"""Pure: podnet.api (kinds, keys, validation and defaults, manifests, selectors, metadata)."""

import copy
import re
from datetime import UTC, datetime

import pytest
import yaml

from podnet.api import (
    ENDPOINTS,
    KINDS,
    ApiError,
    FieldError,
    ManifestError,
    age,
    key_for,
    key_of,
    matches,
    matches_map,
    new_meta,
    parse_key,
    parse_manifests,
    parse_selector,
    prefix_for,
    resolve_kind,
    stamp,
    validate,
)
from podnet.api.selectors import format_selector

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web, tier: frontend}
    spec:
      containers:
      - name: netexec
        image: registry.k8s.io/e2e-test-images/agnhost:2.47
        args: ["netexec", "--http-port=8080", "--udp-port=8081"]
        ports:
        - {name: http, containerPort: 8080}
        - {name: udp, containerPort: 8081, protocol: UDP}
        readinessProbe:
          httpGet: {path: /healthz, port: http}
          periodSeconds: 2
"""

SERVICE = """
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: http}
  - {name: udp, port: 81, targetPort: 8081, protocol: UDP}
"""

NETPOL = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-allow}
spec:
  podSelector:
    matchLabels: {app: web}
  ingress:
  - from:
    - ipBlock:
        cidr: 10.0.0.0/8
        except: [10.244.0.0/16]
    - namespaceSelector: {matchLabels: {team: shop}}
      podSelector:
        matchExpressions:
        - {key: role, operator: In, values: [client, probe]}
    ports:
    - {protocol: TCP, port: 8000, endPort: 8080}
    - {port: http}
  egress:
  - to:
    - ipBlock: {cidr: "fd00::/8", except: ["fd00:1::/32"]}
"""

POD = """
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  containers:
  - name: c
    command: [sleep, infinity]
"""

NODE = """
apiVersion: v1
kind: Node
metadata: {name: node-1}
spec: {podCIDR: 10.244.1.0/24}
status:
  addresses:
  - {type: InternalIP, address: 192.168.50.11}
  - {type: Hostname, address: node-1}
"""

SLICE = """
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-abc12
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
endpoints:
- addresses: [10.244.1.5]
  conditions: {ready: true}
  nodeName: node-1
ports:
- {name: http, port: 8080}
"""

NAMESPACE = "{apiVersion: v1, kind: Namespace, metadata: {name: shop}}"

BASES = {
    "deploy": DEPLOYMENT,
    "svc": SERVICE,
    "netpol": NETPOL,
    "pod": POD,
    "node": NODE,
    "slice": SLICE,
    "ns": NAMESPACE,
}
DELETE = object()


def load(name):
    return yaml.safe_load(BASES[name])


def edit(obj, path, value):
    """Set (or DELETE) the field at a path like 'spec.ports[1].name'."""
    steps = [int(s) if s.isdigit() else s for s in re.findall(r"[^.\[\]]+", path)]
    parent = obj
    for s in steps[:-1]:
        parent = parent[s]
    if value is DELETE:
        del parent[steps[-1]]
    else:
        parent[steps[-1]] = value
    return obj


def error_of(obj):
    with pytest.raises(FieldError) as e:
        validate(obj)
    return str(e.value)


# ---- kinds and keys -------------------------------------------------------------


@pytest.mark.parametrize(
    "spelling,kind",
    [
        ("pods", "Pod"),
        ("pod", "Pod"),
        ("po", "Pod"),
        ("Pod", "Pod"),
        ("svc", "Service"),
        ("services", "Service"),
        ("deploy", "Deployment"),
        ("deployments", "Deployment"),
        ("deployments.apps", "Deployment"),
        ("deployment.v1.apps", "Deployment"),
        ("rs", "ReplicaSet"),
        ("endpointslices", "EndpointSlice"),
        ("endpointslices.discovery.k8s.io", "EndpointSlice"),
        ("netpol", "NetworkPolicy"),
        ("networkpolicies", "NetworkPolicy"),
        ("nodes", "Node"),
        ("no", "Node"),
        ("ns", "Namespace"),
        ("namespaces", "Namespace"),
        ("ing", "Ingress"),
        ("ingresses.networking.k8s.io", "Ingress"),
        ("ingressclass", "IngressClass"),
        ("secrets", "Secret"),
        ("gtw", "Gateway"),
        ("httproutes.gateway.networking.k8s.io", "HTTPRoute"),
        ("gc", "GatewayClass"),
    ],
)
def test_resolve_kind_accepts_kubectl_spellings(spelling, kind):
    assert resolve_kind(spelling) is KINDS[kind]


@pytest.mark.parametrize("spelling", ["x", "", "pods.apps", "deploymentz", "ingress.apps", "grpcroutes"])
def test_resolve_kind_refuses_unknown(spelling):
    with pytest.raises(ApiError, match="unknown resource type '%s'" % re.escape(spelling)):
        resolve_kind(spelling)


def test_endpoints_and_events_are_stored_kinds():
    assert resolve_kind("endpoints") == resolve_kind("ep") == ENDPOINTS
    assert ENDPOINTS.kind == "Endpoints" and ENDPOINTS.namespaced and KINDS["Endpoints"] is ENDPOINTS
    assert key_for("ep", "default", "web") == "/registry/endpoints/default/web"
    assert key_for("ev", "default", "web.1") == "/registry/events/default/web.1"


def test_event_and_endpoints_validation_names_the_field():
    ev = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "e1", "namespace": "default"},
        "involvedObject": {"kind": "Pod", "name": "web"},
        "reason": "Scheduled",
        "type": "Odd",
    }
    with pytest.raises(ApiError, match="^type: must be Normal or Warning"):
        validate(ev)
    ev["type"] = "Normal"
    assert validate(ev)["count"] == 1
    del ev["involvedObject"]["name"]
    with pytest.raises(ApiError, match="involvedObject.name"):
        validate(ev)
    ep = {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": "web"},
        "subsets": [{"addresses": [{"ip": "10.0.0.300"}], "ports": [{"port": 80}]}],
    }
    with pytest.raises(ApiError, match=r"subsets\[0\]\.addresses\[0\]\.ip"):
        validate(ep)


def test_kind_table():
    assert set(KINDS) == {
        "Namespace",
        "Node",
        "Pod",
        "Deployment",
        "ReplicaSet",
        "Service",
        "EndpointSlice",
        "Endpoints",
        "Event",
        "NetworkPolicy",
        "Secret",
        "IngressClass",
        "Ingress",
        "GatewayClass",
        "Gateway",
        "HTTPRoute",
        "Lease",
        "Role",
        "ClusterRole",
        "RoleBinding",
        "ClusterRoleBinding",
        "ServiceAccount",
        "DaemonSet",
    }
    assert KINDS["Deployment"].api_version == "apps/v1"
    assert KINDS["NetworkPolicy"].api_version == "networking.k8s.io/v1"
    assert KINDS["EndpointSlice"].api_version == "discovery.k8s.io/v1"
    assert not KINDS["Node"].namespaced and not KINDS["Namespace"].namespaced
    assert KINDS["Deployment"].qualified == "deployment.apps" and KINDS["Pod"].qualified == "pod"


def test_keys_and_prefixes():
    assert key_for("Pod", "default", "web") == "/registry/pods/default/web"
    assert key_for(KINDS["Node"], None, "node-1") == "/registry/nodes/node-1"
    assert key_for("ns", "ignored", "shop") == "/registry/namespaces/shop"
    assert prefix_for("deploy", "shop") == "/registry/deployments/shop/"
    assert prefix_for("svc") == "/registry/services/"
    assert prefix_for("nodes", "x") == "/registry/nodes/"
    assert parse_key("/registry/pods/shop/web") == (KINDS["Pod"], "shop", "web")
    assert parse_key("/registry/nodes/n1") == (KINDS["Node"], None, "n1")
    assert key_of(validate(load("svc"))) == "/registry/services/shop/web"
    for bad in [("Pod", None, "web"), ("Pod", "default", ""), ("Pod", "a/b", "web")]:
        with pytest.raises(ApiError):
            key_for(*bad)
    with pytest.raises(ApiError):
        parse_key("/registry/pods/web")


# ---- validation: the good manifests and their defaults ------------------------


def test_deployment_defaults():
    src = load("deploy")
    before = copy.deepcopy(src)
    d = validate(src)
    assert src == before, "validate must not touch its input"
    assert d["metadata"]["namespace"] == "default"
    assert d["spec"]["replicas"] == 3
    assert d["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
    }
    pod = d["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Always" and pod["dnsPolicy"] == "ClusterFirst"
    assert pod["terminationGracePeriodSeconds"] == 30
    c = pod["containers"][0]
    assert [p["protocol"] for p in c["ports"]] == ["TCP", "UDP"]
    assert c["readinessProbe"] == {
        "httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"},
        "periodSeconds": 2,
        "initialDelaySeconds": 0,
        "timeoutSeconds": 1,
        "successThreshold": 1,
        "failureThreshold": 3,
    }
    assert validate(d) == d, "validate is idempotent"


def test_replicas_default_to_one_and_replicaset_validates_too():
    d = edit(load("deploy"), "spec.replicas", DELETE)
    assert validate(d)["spec"]["replicas"] == 1
    rs = edit(edit(load("deploy"), "kind", "ReplicaSet"), "spec.replicas", None)
    out = validate(rs)
    assert out["spec"]["replicas"] == 1 and "strategy" not in out["spec"]


def test_service_defaults():
    s = validate(load("svc"))
    assert s["metadata"]["namespace"] == "shop"
    assert s["spec"]["type"] == "ClusterIP" and s["spec"]["sessionAffinity"] == "None"
    assert s["spec"]["internalTrafficPolicy"] == "Cluster"
    assert "externalTrafficPolicy" not in s["spec"]
    assert s["spec"]["ports"][0] == {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}
    one = validate(edit(load("svc"), "spec.ports", [{"port": 53, "protocol": "UDP"}]))
    assert one["spec"]["ports"] == [{"port": 53, "protocol": "UDP", "targetPort": 53}]
    np = validate(edit(edit(load("svc"), "spec.type", "NodePort"), "spec.sessionAffinity", "ClientIP"))
    assert np["spec"]["externalTrafficPolicy"] == "Cluster"
    assert np["spec"]["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 10800}}


def test_headless_and_external_name_services_need_no_ports():
    s = edit(edit(load("svc"), "spec.clusterIP", "None"), "spec.ports", DELETE)
    assert validate(s)["spec"]["clusterIP"] == "None"
    ext = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "db"},
        "spec": {"type": "ExternalName", "externalName": "db.example.com"},
    }
    assert validate(ext)["spec"]["type"] == "ExternalName"


def test_network_policy_defaults_policy_types():
    n = validate(load("netpol"))
    assert n["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert n["spec"]["ingress"][0]["ports"][1] == {"port": "http", "protocol": "TCP"}
    deny_all = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "deny", "namespace": "shop"},
        "spec": {"podSelector": {}},
    }
    assert validate(deny_all)["spec"]["policyTypes"] == ["Ingress"]


def test_other_kinds_validate():
    assert validate(load("pod"))["spec"]["restartPolicy"] == "Always"
    node = validate(edit(load("node"), "metadata.namespace", "default"))
    assert "namespace" not in node["metadata"], "cluster-scoped: namespace dropped"
    sl = validate(load("slice"))
    assert sl["ports"][0]["protocol"] == "TCP" and sl["metadata"]["namespace"] == "default"
    assert validate(yaml.safe_load(NAMESPACE))["metadata"] == {"name": "shop"}


@pytest.mark.parametrize("base", sorted(BASES))
def test_validate_is_idempotent_and_copies(base):
    src = load(base)
    once = validate(src)
    assert validate(once) == once
    assert once is not src and src == load(base)


# ---- validation: every error names its path -----------------------------------

C = "spec.template.spec.containers[0]"

ERRORS = [
    # generic
    ("pod", "kind", DELETE, "kind: required"),
    ("pod", "kind", "Deploy", "kind: unknown kind 'Deploy'"),
    ("deploy", "kind", "deployment", "kind: unknown kind 'deployment' (did you mean Deployment?)"),
    ("pod", "kind", "Endpoints", "spec: unknown field (Endpoints have subsets)"),
    ("deploy", "apiVersion", "v1", "apiVersion: must be apps/v1 for Deployment, got 'v1'"),
    ("deploy", "apiVersion", "extensions/v1beta1", "apiVersion: must be apps/v1"),
    ("netpol", "apiVersion", DELETE, "apiVersion: required"),
    ("pod", "metadata", DELETE, "metadata: required"),
    ("pod", "metadata.name", DELETE, "metadata.name: required"),
    ("pod", "metadata.name", "Client", "metadata.name: must be a DNS-1123 subdomain"),
    ("pod", "metadata.name", 7, "metadata.name: must be a string"),
    ("svc", "metadata.name", "1web", "metadata.name: must be a DNS-1035 label"),
    ("svc", "metadata.name", "web.v1", "metadata.name: must be a DNS-1035 label"),
    ("ns", "metadata.name", "a.b", "metadata.name: must be a DNS-1123 label"),
    ("pod", "metadata.namespace", "Shop_1", "metadata.namespace: must be a DNS-1123 label"),
    ("pod", "metadata.labels", {"version": 1}, "metadata.labels[version]: values must be strings (quote it: '1')"),
    ("pod", "metadata.labels", {"on": True}, "metadata.labels[on]: values must be strings (quote it: 'true')"),
    ("pod", "metadata.labels", {"bad key": "x"}, "metadata.labels[bad key]: key 'bad key'"),
    ("pod", "metadata.labels", {"Example.com/x": "y"}, "metadata.labels[Example.com/x]: key"),
    ("pod", "metadata.labels", {"app": "-web"}, "metadata.labels[app]: value '-web'"),
    ("pod", "metadata.labels", ["app"], "metadata.labels: must be a mapping, got list"),
    ("pod", "metadata.annotations", {"note": 5}, "metadata.annotations[note]: values must be"),
    # pod spec
    ("pod", "spec", DELETE, "spec: required"),
    ("pod", "spec.containers", [], "spec.containers: must have at least one item"),
    ("pod", "spec.containers", DELETE, "spec.containers: required"),
    ("pod", "spec.containers[0]", "sleep", "spec.containers[0]: must be a mapping, got string"),
    ("pod", "spec.containers[0].name", DELETE, "spec.containers[0].name: required"),
    ("pod", "spec.containers[0].name", "My_C", "spec.containers[0].name: must be a DNS-1123 label"),
    ("pod", "spec.containers[0].command", DELETE, "spec.containers[0]: needs command or image"),
    (
        "pod",
        "spec.containers[0].command",
        ["sleep", 5],
        "spec.containers[0].command[1]: must be a string, got integer 5",
    ),
    ("pod", "spec.containers[0].command", "sleep 5", "spec.containers[0].command: must be a list"),
    (
        "pod",
        "spec.containers[0].env",
        [{"name": "PORT", "value": 8080}],
        "spec.containers[0].env[0].value: must be a string (quote it: '8080')",
    ),
    (
        "pod",
        "spec.restartPolicy",
        "Sometimes",
        "spec.restartPolicy: must be one of Always, OnFailure, Never, got 'Sometimes'",
    ),
    ("pod", "spec.dnsPolicy", "ClusterFirstt", "spec.dnsPolicy: must be one of ClusterFirst,"),
    ("pod", "spec.dnsPolicy", "None", "spec.dnsConfig: must list nameservers"),
    ("pod", "spec.dnsConfig", {"nameservers": ["10.96.0.300"]}, "spec.dnsConfig.nameservers[0]: must be an IP address"),
    ("pod", "spec.nodeSelector", {"disk": 1}, "spec.nodeSelector[disk]: values must be strings"),
    ("pod", "spec.nodeName", "Node_1", "spec.nodeName: must be a DNS-1123 subdomain"),
    ("pod", "spec.hostNetwork", "yes", "spec.hostNetwork: must be true or false"),
    ("pod", "spec.hostname", "db.0", "spec.hostname: must be a DNS-1123 label"),
    ("pod", "spec.subdomain", "Db_Set", "spec.subdomain: must be a DNS-1123 label"),
    ("pod", "spec.subdomain", "db.shop", "spec.subdomain: must be a DNS-1123 label"),
    ("pod", "spec.subdomain", 5, "spec.subdomain: must be a string"),
    ("pod", "spec.terminationGracePeriodSeconds", -1, "spec.terminationGracePeriodSeconds: must be >= 0"),
    # containers in a template: paths carry the spec.template.spec. prefix
    ("deploy", C + ".ports[1].containerPort", 70000, C + ".ports[1].containerPort: must be 1-65535"),
    ("deploy", C + ".ports[1].containerPort", 0, C + ".ports[1].containerPort: must be 1-65535"),
    (
        "deploy",
        C + ".ports[1].containerPort",
        "8081",
        C + ".ports[1].containerPort: must be an integer 1-65535, got string '8081'",
    ),
    ("deploy", C + ".ports[1].containerPort", DELETE, C + ".ports[1].containerPort: required"),
    ("deploy", C + ".ports[0].protocol", "tcp", C + ".ports[0].protocol: must be one of TCP, UDP, SCTP"),
    ("deploy", C + ".ports[0].name", "HTTP", C + ".ports[0].name: must be a port name (IANA_SVC_NAME"),
    ("deploy", C + ".ports[0].name", "8080", C + ".ports[0].name: must be a port name"),
    ("deploy", C + ".ports[0].name", "a-very-long-name", C + ".ports[0].name: must be a port name"),
    ("deploy", C + ".ports[1].name", "http", C + ".ports[1].name: duplicate port name 'http'"),
    ("deploy", C + ".image", DELETE, C + ": needs command or image"),
    (
        "deploy",
        C + ".readinessProbe.httpGet",
        DELETE,
        C + ".readinessProbe: must set exactly one of httpGet, tcpSocket, exec",
    ),
    (
        "deploy",
        C + ".readinessProbe.tcpSocket",
        {"port": 8080},
        C + ".readinessProbe: must set exactly one of httpGet, tcpSocket, exec (has httpGet, tcpSocket)",
    ),
    ("deploy", C + ".readinessProbe.httpGet.port", DELETE, C + ".readinessProbe.httpGet.port: required"),
    (
        "deploy",
        C + ".readinessProbe.httpGet.port",
        "metrics",
        C + ".readinessProbe.httpGet.port: no port named 'metrics'",
    ),
    ("deploy", C + ".readinessProbe.httpGet.port", 0, C + ".readinessProbe.httpGet.port: must be 1-65535"),
    ("deploy", C + ".readinessProbe.httpGet.path", "healthz", C + ".readinessProbe.httpGet.path: must start with '/'"),
    ("deploy", C + ".readinessProbe.periodSeconds", -1, C + ".readinessProbe.periodSeconds: must be >= 0"),
    (
        "deploy",
        C + ".readinessProbe.failureThreshold",
        "3",
        C + ".readinessProbe.failureThreshold: must be an integer >= 0",
    ),
    (
        "deploy",
        C + ".livenessProbe",
        {"exec": {"command": []}},
        C + ".livenessProbe.exec.command: must have at least one item",
    ),
    (
        "deploy",
        C + ".livenessProbe",
        {"tcpSocket": {"port": 8080}, "successThreshold": 2},
        C + ".livenessProbe.successThreshold: must be 1 for a livenessProbe",
    ),
    ("deploy", C + ".livenessProbe", {"grpc": {"port": 9000}}, C + ".livenessProbe.grpc: not supported"),
    # Deployment
    ("deploy", "spec.replicas", -1, "spec.replicas: must be >= 0"),
    ("deploy", "spec.replicas", "3", "spec.replicas: must be an integer >= 0"),
    ("deploy", "spec.selector", DELETE, "spec.selector: required"),
    ("deploy", "spec.selector", {}, "spec.selector: must have matchLabels or matchExpressions"),
    (
        "deploy",
        "spec.selector.matchLabels.app",
        "api",
        "spec.template.metadata.labels: app=web,tier=frontend do not match spec.selector (app=api)",
    ),
    (
        "deploy",
        "spec.template.metadata",
        DELETE,
        "spec.template.metadata.labels: <none> do not match spec.selector (app=web)",
    ),
    (
        "deploy",
        "spec.selector.matchExpressions",
        [{"key": "tier", "operator": "Is"}],
        "spec.selector.matchExpressions[0].operator: must be one of In, NotIn, Exists, DoesNotExist",
    ),
    (
        "deploy",
        "spec.selector.matchExpressions",
        [{"key": "tier", "operator": "In"}],
        "spec.selector.matchExpressions[0].values: must have at least one value for In",
    ),
    (
        "deploy",
        "spec.selector.matchExpressions",
        [{"key": "t", "operator": "Exists", "values": ["a"]}],
        "spec.selector.matchExpressions[0].values: must be empty for Exists",
    ),
    (
        "deploy",
        "spec.template.spec.restartPolicy",
        "Never",
        "spec.template.spec.restartPolicy: must be Always in a Deployment template",
    ),
    ("deploy", "spec.template.spec", DELETE, "spec.template.spec: required"),
    (
        "deploy",
        "spec.strategy",
        {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}},
        "spec.strategy.rollingUpdate.maxUnavailable: may not be 0 when maxSurge is 0",
    ),
    (
        "deploy",
        "spec.strategy",
        {"type": "Recreate", "rollingUpdate": {}},
        "spec.strategy.rollingUpdate: may not be set when type is Recreate",
    ),
    ("deploy", "spec.strategy", {"type": "BlueGreen"}, "spec.strategy.type: must be one of"),
    # Service
    ("svc", "spec.type", "Internal", "spec.type: must be one of ClusterIP, NodePort, LoadBalancer, ExternalName"),
    ("svc", "spec.ports", DELETE, "spec.ports: required"),
    ("svc", "spec.ports[0].port", 0, "spec.ports[0].port: must be 1-65535"),
    ("svc", "spec.ports[0].port", DELETE, "spec.ports[0].port: required"),
    ("svc", "spec.ports[0].targetPort", "http_alt", "spec.ports[0].targetPort: must be 1-65535 or a port name"),
    ("svc", "spec.ports[1].targetPort", 65536, "spec.ports[1].targetPort: must be 1-65535"),
    ("svc", "spec.ports[1].protocol", "ICMP", "spec.ports[1].protocol: must be one of TCP, UDP, SCTP"),
    ("svc", "spec.ports[0].nodePort", 30080, "spec.ports[0].nodePort: may only be set for NodePort"),
    ("svc", "spec.ports[1].name", DELETE, "spec.ports[1].name: required when the service has more than one port"),
    ("svc", "spec.ports[1].name", "http", "spec.ports[1].name: duplicate port name 'http'"),
    ("svc", "spec.ports[1].name", "Udp", "spec.ports[1].name: must be a DNS-1123 label"),
    ("svc", "spec.ports[1]", {"name": "again", "port": 80}, "spec.ports[1]: duplicate port 80/TCP"),
    ("svc", "spec.selector", {"app": None}, "spec.selector[app]: values must be strings"),
    ("svc", "spec.clusterIP", "10.96.0.300", "spec.clusterIP: must be empty, None (headless) or an IP"),
    ("svc", "spec.sessionAffinity", "Sticky", "spec.sessionAffinity: must be one of None, ClientIP"),
    (
        "svc",
        "spec.sessionAffinityConfig",
        {"clientIP": {"timeoutSeconds": 5}},
        "spec.sessionAffinityConfig: may only be set when sessionAffinity is ClientIP",
    ),
    (
        "svc",
        "spec.externalTrafficPolicy",
        "Local",
        "spec.externalTrafficPolicy: may only be set for NodePort or LoadBalancer",
    ),
    ("svc", "spec.internalTrafficPolicy", "Node", "spec.internalTrafficPolicy: must be one of Cluster, Local"),
    ("svc", "spec.externalIPs", ["192.0.2.10", "example.com"], "spec.externalIPs[1]: must be an IP address"),
    ("svc", "spec.type", "ExternalName", "spec.externalName: required"),
    # NetworkPolicy
    ("netpol", "spec.podSelector", DELETE, "spec.podSelector: required (use {}"),
    ("netpol", "spec.podSelector.matchLabels", {"app": 5}, "spec.podSelector.matchLabels[app]: values"),
    ("netpol", "spec.policyTypes", ["Ingress", "Both"], "spec.policyTypes[1]: must be Ingress or Egress"),
    (
        "netpol",
        "spec.ingress[0].from[0].ipBlock.cidr",
        "10.0.0.0",
        "spec.ingress[0].from[0].ipBlock.cidr: must be a CIDR",
    ),
    ("netpol", "spec.ingress[0].from[0].ipBlock.cidr", DELETE, "spec.ingress[0].from[0].ipBlock.cidr: required"),
    (
        "netpol",
        "spec.ingress[0].from[0].ipBlock.except",
        ["192.168.0.0/16"],
        "spec.ingress[0].from[0].ipBlock.except[0]: must be a smaller range inside cidr 10.0.0.0/8",
    ),
    (
        "netpol",
        "spec.ingress[0].from[0].ipBlock.except",
        ["10.0.0.0/8"],
        "spec.ingress[0].from[0].ipBlock.except[0]: must be a smaller range inside cidr",
    ),
    (
        "netpol",
        "spec.egress[0].to[0].ipBlock.except",
        ["10.1.0.0/16"],
        "spec.egress[0].to[0].ipBlock.except[0]: must be a smaller range inside cidr fd00::/8",
    ),
    (
        "netpol",
        "spec.ingress[0].from[0].podSelector",
        {},
        "spec.ingress[0].from[0].ipBlock: may not be combined with podSelector or namespaceSelector",
    ),
    (
        "netpol",
        "spec.ingress[0].from[1]",
        {},
        "spec.ingress[0].from[1]: must set at least one of podSelector, namespaceSelector, ipBlock",
    ),
    (
        "netpol",
        "spec.ingress[0].from[1].podSelector.matchExpressions[0].operator",
        "in",
        "spec.ingress[0].from[1].podSelector.matchExpressions[0].operator: must be one of In,",
    ),
    (
        "netpol",
        "spec.ingress[0].ports[0].protocol",
        "ICMP",
        "spec.ingress[0].ports[0].protocol: must be one of TCP, UDP, SCTP",
    ),
    ("netpol", "spec.ingress[0].ports[0].endPort", 7999, "spec.ingress[0].ports[0].endPort: must be >= port (8000)"),
    (
        "netpol",
        "spec.ingress[0].ports[1].endPort",
        9000,
        "spec.ingress[0].ports[1].endPort: may not be used with a named port ('http')",
    ),
    ("netpol", "spec.ingress[0].ports[0].port", DELETE, "spec.ingress[0].ports[0].endPort: needs a numeric port"),
    ("netpol", "spec.ingress[0].ports[0].port", 0, "spec.ingress[0].ports[0].port: must be 1-65535"),
    # EndpointSlice
    ("slice", "addressType", "IPv5", "addressType: must be one of IPv4, IPv6, FQDN"),
    ("slice", "addressType", DELETE, "addressType: required"),
    ("slice", "endpoints[0].addresses", ["fd00::5"], "endpoints[0].addresses[0]: must be an IPv4 address"),
    ("slice", "endpoints[0].addresses", [], "endpoints[0].addresses: must have at least one item"),
    ("slice", "endpoints[0].conditions.ready", "yes", "endpoints[0].conditions.ready: must be true or"),
    ("slice", "ports[0].port", 0, "ports[0].port: must be 1-65535"),
    # Node
    ("node", "spec.podCIDR", "10.244.1.0", "spec.podCIDR: must be a CIDR"),
    ("node", "spec.podCIDR", "10.244.1.7/24", "spec.podCIDR: must be a network address (10.244.1.0/24)"),
    ("node", "status.addresses", {"type": "InternalIP"}, "status.addresses: must be a list"),
    ("node", "status.addresses[0].type", "Internal", "status.addresses[0].type: must be one of"),
    ("node", "status.addresses[0].address", "node-1", "status.addresses[0].address: must be an IP"),
]


@pytest.mark.parametrize("base,path,value,expected", ERRORS, ids=["%s:%s" % (e[0], e[1]) for e in ERRORS])
def test_error_names_the_field(base, path, value, expected):
    msg = error_of(edit(load(base), path, value))
    assert msg.startswith(expected), msg


def test_load_balancer_source_ranges():
    key = "service.beta.kubernetes.io/load-balancer-source-ranges"

    def lb(ranges=None, annotation=None, stype="LoadBalancer"):
        obj = edit(load("svc"), "spec.type", stype)
        if ranges is not None:
            obj["spec"]["loadBalancerSourceRanges"] = ranges
        if annotation is not None:
            obj["metadata"]["annotations"] = {key: annotation}
        return obj

    # CIDRs, padded ones too (Kubernetes allows the spaces), IPv6 as well
    got = validate(lb([" 192.168.200.100/32", "10.0.0.0/8", "fd00::/64"]))
    assert got["spec"]["loadBalancerSourceRanges"] == [" 192.168.200.100/32", "10.0.0.0/8", "fd00::/64"]
    assert error_of(lb(["10.0.0.0/8", "192.168.200.100"])) == (
        "spec.loadBalancerSourceRanges[1]: must be a CIDR (like 10.244.0.0/16 or fd00::/64), got '192.168.200.100'"
    )
    assert error_of(lb(["10.0.0.0/33"])).startswith("spec.loadBalancerSourceRanges[0]: must be a CIDR")
    assert error_of(lb([5])) == "spec.loadBalancerSourceRanges[0]: must be a string, got integer 5"
    assert error_of(lb("10.0.0.0/8")).startswith("spec.loadBalancerSourceRanges: must be a list")
    assert error_of(lb(["10.0.0.0/8"], stype="NodePort")) == (
        "spec.loadBalancerSourceRanges: may only be used when type is LoadBalancer (type is NodePort)"
    )
    # the annotation: comma-separated, checked only when the field is empty
    validate(lb(annotation="10.0.0.0/8, 192.168.200.100/32"))
    validate(lb(annotation=" "))
    validate(lb(["10.0.0.0/8"], annotation="not checked: the field wins"))
    assert error_of(lb(annotation="10.0.0.0/8,nonsense")) == (
        "metadata.annotations[%s]: must be a CIDR (like 10.244.0.0/16 or fd00::/64), got 'nonsense'" % key
    )
    assert error_of(lb(annotation="10.0.0.0/8", stype="ClusterIP")) == (
        "metadata.annotations[%s]: may only be used when type is LoadBalancer (type is ClusterIP)" % key
    )


def test_error_carries_path_and_reason():
    with pytest.raises(FieldError) as e:
        validate(edit(load("svc"), "spec.ports[0].port", 99999))
    assert e.value.path == "spec.ports[0].port" and e.value.reason == "must be 1-65535"
    assert isinstance(e.value, ApiError)


def test_not_a_mapping_or_odd_kind():
    with pytest.raises(ApiError, match="must be a mapping"):
        validate(["a"])
    with pytest.raises(FieldError, match=r"^kind: unknown kind \['Pod'\]"):
        validate({"kind": ["Pod"]})


# ---- manifests ------------------------------------------------------------------


def test_multi_document_manifest():
    objs = parse_manifests("---\n" + DEPLOYMENT + "---\n" + SERVICE + "\n---\n---\n" + NETPOL, "app.yaml")
    assert [(o["kind"], o["metadata"]["name"]) for o in objs] == [
        ("Deployment", "web"),
        ("Service", "web"),
        ("NetworkPolicy", "web-allow"),
    ]


def test_bad_third_document_gives_no_partial_result():
    bad_svc = SERVICE.replace("port: 81", "port: 0")
    with pytest.raises(ManifestError) as e:
        parse_manifests(DEPLOYMENT + "---" + NETPOL + "---" + bad_svc, "app.yaml")
    assert str(e.value) == "app.yaml: document 3 (Service/web): spec.ports[1].port: must be 1-65535"
    assert e.value.document == 3 and e.value.path == "spec.ports[1].port"


def test_message_format_for_a_template_field():
    bad = DEPLOYMENT.replace("containerPort: 8081", "containerPort: 80810")
    with pytest.raises(ManifestError) as e:
        parse_manifests(POD + "---" + bad)
    assert str(e.value) == (
        "<stdin>: document 2 (Deployment/web): spec.template.spec.containers[0].ports[1].containerPort: must be 1-65535"
    )


def test_empty_documents_are_skipped_but_counted():
    with pytest.raises(ManifestError, match=r"^x: document 3 \(Pod\): metadata: required"):
        parse_manifests(POD + "---\n# only a comment\n---\n{apiVersion: v1, kind: Pod}", "x")
    assert parse_manifests("", "x") == [] and parse_manifests("---\n# nothing\n") == []


def test_document_without_kind_or_name():
    with pytest.raises(ManifestError, match=r"^f: document 1: kind: required$"):
        parse_manifests("apiVersion: v1\nmetadata: {name: a}\n", "f")
    with pytest.raises(ManifestError, match=r"^f: document 1: must be a mapping"):
        parse_manifests("- a\n- b\n", "f")


def test_list_kind_is_expanded():
    lst = {"apiVersion": "v1", "kind": "List", "items": [load("pod"), load("svc")]}
    objs = parse_manifests(yaml.safe_dump(lst))
    assert [o["kind"] for o in objs] == ["Pod", "Service"]
    lst["items"][1]["spec"]["type"] = "Bogus"
    with pytest.raises(
        ManifestError,
        match=r"^<stdin>: document 1 item 2 \(Service/web\): "
        r"spec.type: must be one of",
    ):
        parse_manifests(yaml.safe_dump(lst))


def test_yaml_syntax_error_names_source_and_line():
    text = POD + "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: x\n   bad: indent\n"
    with pytest.raises(ManifestError) as e:
        parse_manifests(text, "pods.yaml")
    line = text.splitlines().index("   bad: indent") + 1
    assert str(e.value).startswith("pods.yaml: line %d, column" % line), str(e.value)


def test_duplicate_keys_are_refused():
    with pytest.raises(
        ManifestError,
        match=r"^p.yaml: line 5, column 3: duplicate key 'name' "
        r"\(first on line 4\)",
    ):
        parse_manifests("apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n  name: b\n", "p.yaml")


def test_timestamps_stay_strings_and_aliases_are_not_shared():
    text = (
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n  labels: &l {app: web}\n"
        "  creationTimestamp: 2026-11-21T22:27:00Z\n  annotations: *l\n"
        "spec: {containers: [{name: c, image: busybox}]}\n"
    )
    (pod,) = parse_manifests(text)
    assert pod["metadata"]["creationTimestamp"] == "2026-11-21T22:27:00Z"
    assert pod["metadata"]["labels"] is not pod["metadata"]["annotations"]


def test_bytes_input():
    assert parse_manifests(POD.encode())[0]["metadata"]["name"] == "client"


# ---- selectors ------------------------------------------------------------------

WEB = {"app": "web", "tier": "frontend", "env": "prod"}


@pytest.mark.parametrize(
    "selector,expected",
    [
        ({}, True),
        (None, False),
        ({"matchLabels": {"app": "web"}}, True),
        ({"matchLabels": {"app": "web", "tier": "db"}}, False),
        ({"matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "staging"]}]}, True),
        ({"matchExpressions": [{"key": "env", "operator": "In", "values": ["dev"]}]}, False),
        ({"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["dev"]}]}, True),
        ({"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}, True),
        ({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, True),
        ({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, False),
        ({"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "canary", "operator": "DoesNotExist"}]}, True),
    ],
)
def test_matches(selector, expected):
    assert matches(selector, WEB) is expected


def test_matches_map_is_service_style():
    assert matches_map({"app": "web"}, WEB)
    assert not matches_map({"app": "web", "tier": "db"}, WEB)
    assert not matches_map({}, WEB) and not matches_map(None, WEB)
    assert matches_map({}, WEB, empty_matches_all=True)
    assert not matches_map({"app": "web"}, None)


def test_parse_selector():
    sel = parse_selector("app=web,tier!=db, env in (a, b),!canary,track")
    assert sel == {
        "matchLabels": {"app": "web"},
        "matchExpressions": [
            {"key": "tier", "operator": "NotIn", "values": ["db"]},
            {"key": "env", "operator": "In", "values": ["a", "b"]},
            {"key": "canary", "operator": "DoesNotExist"},
            {"key": "track", "operator": "Exists"},
        ],
    }
    assert parse_selector("") == {} and parse_selector("app==web") == {"matchLabels": {"app": "web"}}
    assert parse_selector("a=1,a=2")["matchExpressions"] == [{"key": "a", "operator": "In", "values": ["2"]}]
    assert parse_selector("env notin (dev)") == {
        "matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["dev"]}]
    }
    assert matches(parse_selector("app=web,env in (prod),!canary"), WEB)
    assert not matches(parse_selector("app=web,tier!=frontend"), WEB)
    assert format_selector(sel) == "app=web,!canary,env in (a,b),tier notin (db),track"


@pytest.mark.parametrize("text", ["app=web,", "a in ()", "a >= 3", "app=we b", "bad key=x", "app=-web"])
def test_parse_selector_errors(text):
    with pytest.raises(ApiError, match="invalid selector"):
        parse_selector(text)


# ---- metadata -------------------------------------------------------------------

T0 = datetime(2026, 11, 21, 22, 27, 0, tzinfo=UTC)


def test_stamp_fills_only_what_is_missing():
    pod = stamp(validate(load("pod")), now=T0)
    assert pod["metadata"]["creationTimestamp"] == "2026-11-21T22:27:00Z"
    assert re.fullmatch(r"[0-9a-f-]{36}", pod["metadata"]["uid"])
    again = stamp(copy.deepcopy(pod), uid="other", now=T0.timestamp() + 60)
    assert again["metadata"] == pod["metadata"]
    assert stamp({}, uid="u1", now=T0.timestamp())["metadata"] == {
        "uid": "u1",
        "creationTimestamp": "2026-11-21T22:27:00Z",
    }
    obj = {"metadata": None}
    assert new_meta(obj) is obj["metadata"] == {}


@pytest.mark.parametrize(
    "seconds,text",
    [
        (5, "5s"),
        (119, "119s"),
        (180, "3m"),
        (200, "3m20s"),
        (3 * 3600, "3h"),
        (2 * 3600, "120m"),
        (3 * 3600 + 300, "3h5m"),
        (30 * 3600, "30h"),
        (4 * 86400, "4d"),
        (4 * 86400 + 7200, "4d2h"),
        (40 * 86400, "40d"),
        (-1, "0s"),
        (-5, "<invalid>"),
    ],
)
def test_age_is_kubectl_style(seconds, text):
    obj = {"metadata": {"creationTimestamp": "2026-11-21T22:27:00Z"}}
    assert age(obj, T0.timestamp() + seconds) == text


def test_age_without_timestamp():
    assert age({"metadata": {}}, T0) == "<unknown>"
