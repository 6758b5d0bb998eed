"""Pure: podnet.apiserver.schema and .openapi (the OpenAPI documents kubectl reads, and the unknown-field check
behind fieldValidation)."""

import asyncio
import hashlib
import json

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from podnet.apiserver import openapi, resources, schema
from podnet.apiserver.errors import StatusError
from podnet.apiserver.protobuf import fields

META = "io.k8s.apimachinery.pkg.apis.meta.v1."


@pytest.fixture(scope="module")
def docs():
    return openapi.documents()


@pytest.fixture(scope="module")
def v3(docs):
    return {url[len("/openapi/v3/") :]: json.loads(raw) for url, (raw, _) in docs.items() if "/v3/" in url}


def refs(node):
    if isinstance(node, dict):
        yield from ([node["$ref"]] if "$ref" in node else [])
        for v in node.values():
            yield from refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from refs(v)


def prop(defs, type_name, field):
    return defs[type_name]["properties"][field]


# ---- the documents --------------------------------------------------------------------------------------------------


def test_one_v3_document_per_served_group_version(docs, v3):
    want = {"api/v1" if not r.group else "apis/%s/%s" % (r.group, r.version) for r in resources.RESOURCES}
    assert set(v3) == want
    root = json.loads(docs["/openapi/v3"][0])
    assert set(root["paths"]) == want
    for key in want:
        raw, digest = docs["/openapi/v3/" + key]
        assert digest == hashlib.sha512(raw).hexdigest().upper()
        assert root["paths"][key] == {"serverRelativeURL": "/openapi/v3/%s?hash=%s" % (key, digest)}


def test_v3_documents_are_self_contained(v3):
    for key, doc in v3.items():
        assert doc["openapi"] == "3.0.0" and doc["paths"], key
        schemas = doc["components"]["schemas"]
        for ref in refs(doc):
            assert ref.startswith("#/components/schemas/") and ref.split("/")[-1] in schemas, (key, ref)


def test_every_patch_operation_takes_field_validation(v3):
    """kubectl's QueryParamVerifierV3 turns on server-side validation from this; its patcher wants SMP."""
    patched = set()
    for doc in v3.values():
        for path, item in doc["paths"].items():
            if "patch" not in item:
                continue
            op = item["patch"]
            names = {p["name"] for p in op["parameters"] if p["in"] == "query"}
            assert {"fieldValidation", "fieldManager", "dryRun", "force"} <= names, path
            assert "application/strategic-merge-patch+json" in op["requestBody"]["content"], path
            gvk = op["x-kubernetes-group-version-kind"]
            patched.add((gvk["group"], gvk["version"], gvk["kind"]))
    assert {(r.group, r.version, r.kind.kind) for r in resources.RESOURCES} <= patched
    assert ("autoscaling", "v1", "Scale") in patched


def test_paths_and_operation_ids_are_kube_apiservers(v3):
    apps = v3["apis/apps/v1"]["paths"]
    item = apps["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]
    assert item["patch"]["operationId"] == "patchAppsV1NamespacedDeployment"
    assert item["get"]["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/io.k8s.api.apps.v1.Deployment"
    }
    assert [p["name"] for p in item["parameters"]] == ["name", "namespace", "pretty"]
    scale = apps["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["put"]
    assert scale["x-kubernetes-group-version-kind"] == {"group": "autoscaling", "kind": "Scale", "version": "v1"}
    core = v3["api/v1"]["paths"]
    assert core["/api/v1/pods"]["get"]["operationId"] == "listCoreV1PodForAllNamespaces"
    assert core["/api/v1/nodes/{name}/status"]["patch"]["operationId"] == "patchCoreV1NodeStatus"
    assert "/api/v1/nodes" in core and "/api/v1/namespaces/{namespace}/nodes" not in core


def test_kinds_carry_their_group_version_kind(v3):
    defs = v3["api/v1"]["components"]["schemas"]
    assert defs["io.k8s.api.core.v1.Pod"]["x-kubernetes-group-version-kind"] == [
        {"group": "", "kind": "Pod", "version": "v1"}
    ]
    assert defs["io.k8s.api.core.v1.PodList"]["x-kubernetes-group-version-kind"][0]["kind"] == "PodList"
    apps = v3["apis/apps/v1"]["components"]["schemas"]
    assert {"group": "apps", "kind": "DeleteOptions", "version": "v1"} in apps[META + "DeleteOptions"][
        "x-kubernetes-group-version-kind"
    ]
    assert "x-kubernetes-group-version-kind" not in apps["io.k8s.api.apps.v1.DeploymentSpec"]


def test_fields_names_types_and_descriptions_come_from_the_client_models(v3):
    defs = v3["api/v1"]["components"]["schemas"]
    port = defs["io.k8s.api.core.v1.ContainerPort"]
    assert set(port["properties"]) == {"containerPort", "hostIP", "hostPort", "name", "protocol"}
    assert port["required"] == ["containerPort"]
    assert port["properties"]["containerPort"]["type"] == "integer"
    assert port["properties"]["containerPort"]["description"].startswith("Number of port to expose")
    assert port["description"].startswith("ContainerPort represents a network port")
    handler = defs["io.k8s.api.core.v1.LifecycleHandler"]["properties"]
    assert "exec" in handler and "_exec" not in handler  # python's var_exec, the wire's exec
    svc_port = prop(defs, "io.k8s.api.core.v1.ServicePort", "targetPort")
    assert svc_port["allOf"] == [{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.util.intstr.IntOrString"}]
    created = prop(defs, META + "ObjectMeta", "creationTimestamp")
    assert created["allOf"] == [{"$ref": "#/components/schemas/" + META + "Time"}]
    labels = prop(defs, META + "ObjectMeta", "labels")
    assert labels == {**labels, "type": "object", "additionalProperties": {"type": "string"}}
    spec = prop(defs, "io.k8s.api.core.v1.Pod", "spec")  # the client drops this description; the table has it
    assert spec["allOf"] == [{"$ref": "#/components/schemas/io.k8s.api.core.v1.PodSpec"}]
    assert spec["description"].startswith("Specification of the desired behavior of the pod.")


def test_list_semantics_for_strategic_merge_patch(v3):
    defs = v3["apis/apps/v1"]["components"]["schemas"]
    containers = prop(defs, "io.k8s.api.core.v1.PodSpec", "containers")
    assert containers["x-kubernetes-patch-merge-key"] == "name"
    assert containers["x-kubernetes-patch-strategy"] == "merge"
    assert containers["x-kubernetes-list-type"] == "map" and containers["x-kubernetes-list-map-keys"] == ["name"]
    assert containers["items"]["allOf"] == [{"$ref": "#/components/schemas/io.k8s.api.core.v1.Container"}]
    assert prop(defs, "io.k8s.api.core.v1.PodSpec", "volumes")["x-kubernetes-patch-strategy"] == "merge,retainKeys"
    container = defs["io.k8s.api.core.v1.Container"]["properties"]
    assert container["ports"]["x-kubernetes-patch-merge-key"] == "containerPort"
    assert container["ports"]["x-kubernetes-list-map-keys"] == ["containerPort", "protocol"]
    assert container["env"]["x-kubernetes-patch-merge-key"] == "name"
    assert container["volumeMounts"]["x-kubernetes-patch-merge-key"] == "mountPath"
    assert (
        container["args"]["x-kubernetes-list-type"] == "atomic"
        and "x-kubernetes-patch-strategy" not in container["args"]
    )
    assert prop(defs, META + "ObjectMeta", "ownerReferences")["x-kubernetes-patch-merge-key"] == "uid"
    assert prop(defs, "io.k8s.api.apps.v1.DeploymentStatus", "conditions")["x-kubernetes-patch-merge-key"] == "type"
    assert prop(defs, "io.k8s.api.apps.v1.DeploymentSpec", "strategy")["x-kubernetes-patch-strategy"] == "retainKeys"
    assert defs[META + "LabelSelector"]["x-kubernetes-map-type"] == "atomic"
    core = v3["api/v1"]["components"]["schemas"]
    ports = prop(core, "io.k8s.api.core.v1.ServiceSpec", "ports")
    assert (ports["x-kubernetes-patch-merge-key"], ports["x-kubernetes-patch-strategy"]) == ("port", "merge")
    assert ports["x-kubernetes-list-map-keys"] == ["port", "protocol"]


def test_v2_is_the_same_in_swagger_2(docs):
    v2 = json.loads(docs["/openapi/v2"][0])
    assert v2["swagger"] == "2.0"
    for ref in refs(v2):
        assert ref.startswith("#/definitions/") and ref.split("/")[-1] in v2["definitions"], ref
    spec = v2["definitions"]["io.k8s.api.core.v1.Pod"]["properties"]["spec"]
    assert spec["$ref"] == "#/definitions/io.k8s.api.core.v1.PodSpec" and "allOf" not in spec
    patch = v2["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert "application/strategic-merge-patch+json" in patch["consumes"]
    assert patch["x-kubernetes-group-version-kind"] == {"group": "apps", "kind": "Deployment", "version": "v1"}


def message(buf):
    """A protobuf message as {field number: [values]}."""
    out = {}
    for num, _, value in fields(buf):
        out.setdefault(num, []).append(value)
    return out


def test_v2_protobuf_is_gnostics_document(docs):
    """What client-go's OpenAPISchema() unmarshals into openapi_v2.Document (field numbers of OpenAPIv2.proto)."""
    v2 = json.loads(docs["/openapi/v2"][0])
    doc = message(docs["/openapi/v2 protobuf"][0])
    assert doc[1] == [b"2.0"]
    named = {message(d)[1][0].decode(): message(message(d)[2][0]) for d in message(doc[9][0])[1]}
    assert set(named) == set(v2["definitions"])
    pod = named["io.k8s.api.core.v1.Pod"]
    assert message(pod[22][0])[1] == [b"object"]  # type
    props = {message(p)[1][0].decode(): message(message(p)[2][0]) for p in message(pod[25][0])[1]}
    assert props["spec"][1] == [b"#/definitions/io.k8s.api.core.v1.PodSpec"]  # $ref
    (ext,) = pod[31]  # vendor extension: name, Any{yaml}
    assert message(ext)[1] == [b"x-kubernetes-group-version-kind"]
    assert json.loads(message(message(ext)[2][0])[2][0]) == [{"group": "", "kind": "Pod", "version": "v1"}]
    containers = {
        message(p)[1][0].decode(): message(message(p)[2][0])
        for p in message(named["io.k8s.api.core.v1.PodSpec"][25][0])[1]
    }["containers"]
    assert message(containers[22][0])[1] == [b"array"]
    assert message(message(containers[23][0])[1][0])[1] == [b"#/definitions/io.k8s.api.core.v1.Container"]
    paths = {message(p)[1][0].decode(): message(message(p)[2][0]) for p in message(doc[8][0])[2]}
    patch = message(paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"][8][0])  # PathItem.patch
    assert b"application/strategic-merge-patch+json" in patch[7]  # consumes


def test_documents_are_built_once(docs):
    assert openapi.documents() is docs


# ---- HTTP -------------------------------------------------------------------------------------------------------


@web.middleware
async def statuses(request, handler):  # what the server's middleware does with a StatusError
    try:
        return await handler(request)
    except StatusError as exc:
        return exc.response()


def fetch(path, headers=None):
    async def go():
        app = web.Application(middlewares=[statuses])
        openapi.add_routes(app)
        async with TestClient(TestServer(app)) as client:
            resp = await client.get(path, headers=headers or {})
            return resp.status, resp.headers.copy(), await resp.read()

    return asyncio.run(go())


def test_http_serves_json_with_etags(docs):
    status, headers, body = fetch("/openapi/v3")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    url = json.loads(body)["paths"]["apis/apps/v1"]["serverRelativeURL"]
    status, headers, body = fetch(url, {"Accept": "application/json"})
    assert status == 200 and body == docs["/openapi/v3/apis/apps/v1"][0]
    assert headers["Cache-Control"] == "public, immutable"  # the hash in the URL names these bytes
    status, _, _ = fetch(url, {"If-None-Match": headers["ETag"]})
    assert status == 304
    assert fetch("/openapi/v3/apis/batch/v1")[0] == 404
    assert fetch("/openapi/v2", {"Accept": "application/json"})[2] == docs["/openapi/v2"][0]
    # what client-go asks for, and the type kube-apiserver answers with
    status, headers, body = fetch(
        "/openapi/v2", {"Accept": "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"}
    )
    assert status == 200 and body == docs["/openapi/v2 protobuf"][0]
    assert headers["Content-Type"] == "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
    status, _, body = fetch(
        "/openapi/v3/api/v1", {"Accept": "application/com.github.proto-openapi.spec.v3@v1.0+protobuf"}
    )
    assert status == 406 and json.loads(body)["reason"] == "NotAcceptable"  # v3 only in JSON


# ---- unknown fields -------------------------------------------------------------------------------------------------


def deployment():
    """A Deployment as a user writes it and the server stores it: most of what a pod template can say."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "uid": "6c1b2a4e",
            "resourceVersion": "41",
            "generation": 2,
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": {"app": "web"},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
            "finalizers": ["example.com/a"],
            "ownerReferences": [{"apiVersion": "v1", "kind": "Namespace", "name": "x", "uid": "1", "controller": True}],
            "managedFields": [
                {
                    "manager": "kubectl",
                    "operation": "Apply",
                    "apiVersion": "apps/v1",
                    "time": "2026-01-01T00:00:00Z",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:spec": {"f:replicas": {}}},
                }
            ],
        },
        "spec": {
            "replicas": 3,
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": 600,
            "selector": {"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "a", "operator": "Exists"}]},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": "registry.k8s.io/e2e-test-images/agnhost:2.52",
                            "args": ["netexec", "--http-port=8080"],
                            "imagePullPolicy": "IfNotPresent",
                            "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
                            "env": [
                                {"name": "MODE", "value": "dev"},
                                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                            ],
                            "resources": {"limits": {"cpu": "1", "memory": "128Mi"}, "requests": {"cpu": "100m"}},
                            "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 2},
                            "livenessProbe": {"tcpSocket": {"port": 8080}},
                            "lifecycle": {"preStop": {"exec": {"command": ["sleep", "1"]}}},
                            "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}, "runAsUser": 1000},
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                            "terminationMessagePolicy": "File",
                        }
                    ],
                    "volumes": [{"name": "data", "emptyDir": {"sizeLimit": "1Gi"}}],
                    "restartPolicy": "Always",
                    "terminationGracePeriodSeconds": 30,
                    "dnsPolicy": "ClusterFirst",
                    "nodeSelector": {"kubernetes.io/os": "linux"},
                    "tolerations": [{"key": "a", "operator": "Exists", "effect": "NoSchedule"}],
                    "affinity": {
                        "podAntiAffinity": {
                            "preferredDuringSchedulingIgnoredDuringExecution": [
                                {
                                    "weight": 1,
                                    "podAffinityTerm": {
                                        "topologyKey": "kubernetes.io/hostname",
                                        "labelSelector": {"matchLabels": {"app": "web"}},
                                    },
                                }
                            ]
                        }
                    },
                    "hostNetwork": False,
                    "securityContext": {"sysctls": [{"name": "net.ipv4.ip_forward", "value": "1"}]},
                },
            },
        },
        "status": {
            "replicas": 3,
            "readyReplicas": 3,
            "observedGeneration": 2,
            "conditions": [{"type": "Available", "status": "True", "lastUpdateTime": "2026-01-01T00:00:00Z"}],
        },
    }


SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "web", "namespace": "default"},
    "spec": {
        "type": "LoadBalancer",
        "selector": {"app": "web"},
        "clusterIP": "10.96.0.10",
        "clusterIPs": ["10.96.0.10"],
        "ipFamilies": ["IPv4"],
        "ipFamilyPolicy": "SingleStack",
        "ports": [{"name": "http", "port": 80, "targetPort": "http", "nodePort": 30080, "protocol": "TCP"}],
        "externalIPs": ["192.0.2.1"],
        "externalTrafficPolicy": "Local",
        "internalTrafficPolicy": "Cluster",
        "sessionAffinity": "ClientIP",
        "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}},
    },
    "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.2", "ipMode": "VIP"}]}},
}

NETWORK_POLICY = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "NetworkPolicy",
    "metadata": {"name": "db", "namespace": "default"},
    "spec": {
        "podSelector": {"matchLabels": {"app": "db"}},
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [
            {
                "from": [
                    {"podSelector": {"matchLabels": {"app": "web"}}},
                    {"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "In", "values": ["a"]}]}},
                    {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}},
                ],
                "ports": [{"protocol": "TCP", "port": 5432}, {"port": "metrics", "endPort": None}],
            }
        ],
        "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"port": 53, "protocol": "UDP"}]}],
    },
}

NODE = {
    "apiVersion": "v1",
    "kind": "Node",
    "metadata": {"name": "node1", "labels": {"kubernetes.io/hostname": "node1"}},
    "spec": {
        "podCIDR": "10.244.1.0/24",
        "podCIDRs": ["10.244.1.0/24"],
        "taints": [{"key": "a", "effect": "NoSchedule"}],
    },
    "status": {
        "addresses": [{"type": "InternalIP", "address": "192.168.200.11"}, {"type": "Hostname", "address": "node1"}],
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "podnet agent is posting ready status",
                "lastHeartbeatTime": "2026-01-01T00:00:00Z",
            }
        ],
        "nodeInfo": {
            "kubeletVersion": "podnet-0.1",
            "osImage": "podnet lab node",
            "kernelVersion": "6.1.0",
            "containerRuntimeVersion": "podnet://0.1",
            "operatingSystem": "linux",
            "architecture": "x86_64",
        },
        "capacity": {"cpu": "4", "pods": "110"},
    },
}


@pytest.mark.parametrize("obj", [deployment(), SERVICE, NETWORK_POLICY, NODE], ids=lambda o: o["kind"])
def test_nothing_unknown_in_full_valid_objects(obj):
    assert schema.unknown_fields(obj) == []


def test_unknown_fields_are_named_by_their_path():
    d = deployment()
    d["spec"] = {"foo": 1, **d["spec"]}
    d["spec"]["template"]["spec"]["containers"][0]["imagee"] = "nginx"
    d["metadata"]["lables"] = {"a": "b"}
    d["spec"]["template"]["spec"]["volumes"][0]["emptyDir"]["size"] = "1Gi"
    assert schema.unknown_fields(d) == [  # in the order of the document, as kube-apiserver's decoder meets them
        "metadata.lables",
        "spec.foo",
        "spec.template.spec.containers[0].imagee",
        "spec.template.spec.volumes[0].emptyDir.size",
    ]
    # the kind (and apiVersion) of the URL, whatever the body says
    assert schema.unknown_fields({"spec": {"foo": 1}}, "Service", "v1") == ["spec.foo"]
    assert schema.unknown_fields({"kind": "Secret", "apiVersion": "v1", "spec": {"foo": 1}}) == ["spec"]
    # the Gateway API's hand-written schema (openapi_gateway) is checked the same way
    route = {"kind": "HTTPRoute", "apiVersion": "gateway.networking.k8s.io/v1", "spec": {"rules": [{"matchs": []}]}}
    assert schema.unknown_fields(route) == ["spec.rules[0].matchs"]
    assert schema.unknown_fields({"kind": "Nothing", "spec": {"foo": 1}}) == []  # no schema: nothing to say


def res(kind):
    return resources.BY_KIND[kind]


def test_strict_create_is_refused_as_kube_apiserver_refuses_it():
    d = deployment()
    d["spec"] = {"foo": 1, **d["spec"]}
    d["spec"]["template"]["spec"]["containers"][0]["imagee"] = "nginx"
    with pytest.raises(StatusError) as exc:
        openapi.check_object(d, res("Deployment"), "Strict")
    assert (exc.value.code, exc.value.reason) == (400, "BadRequest")
    assert exc.value.message == (
        'Deployment in version "v1" cannot be handled as a Deployment: strict decoding error: '
        'unknown field "spec.foo", unknown field "spec.template.spec.containers[0].imagee"'
    )
    assert "foo" in d["spec"]  # Strict refuses, and changes nothing
    warned = json.loads(json.dumps(d))
    assert openapi.check_object(warned, res("Deployment"), None) == [
        'unknown field "spec.foo"',
        'unknown field "spec.template.spec.containers[0].imagee"',
    ]  # Warn is the default; like kube-apiserver's decoder, it drops them
    assert warned == {**deployment(), "spec": {**deployment()["spec"]}}
    assert openapi.check_object(d, res("Deployment"), "Ignore") == []
    assert "foo" not in d["spec"] and "imagee" not in d["spec"]["template"]["spec"]["containers"][0]
    assert openapi.check_object(deployment(), res("Deployment"), "Strict") == []
    with pytest.raises(StatusError) as exc:
        openapi.check_object(deployment(), res("Deployment"), "strict")
    assert exc.value.code == 422 and 'Unsupported value: "strict"' in exc.value.message


def test_strict_patch_and_apply_errors():
    svc = json.loads(json.dumps(SERVICE))
    svc["spec"]["foo"] = 1
    with pytest.raises(StatusError) as exc:
        openapi.check_patched(svc, {"spec": {"foo": 1}}, res("Service"), "Strict")
    assert (exc.value.code, exc.value.reason) == (422, "Invalid")
    assert exc.value.message.endswith('strict decoding error: unknown field "spec.foo"')
    assert exc.value.details["causes"][0]["field"] == "patch"
    with pytest.raises(StatusError) as exc:
        openapi.check_applied(svc, res("Service"), "default", "web")
    assert exc.value.message == (
        "failed to create typed patch object (default/web; /v1, Kind=Service): .spec.foo: field not declared in schema"
    )
    openapi.check_applied(SERVICE, res("Service"), "default", "web")
    assert openapi.check_patched(svc, {}, res("Service"), "Warn") == ['unknown field "spec.foo"']
    assert svc == SERVICE  # dropped


def test_warning_headers():
    resp = web.Response()
    openapi.add_warnings(resp, ['unknown field "spec.foo"', 'unknown field "spec.bar"'])
    assert resp.headers.getall("Warning") == [
        '299 - "unknown field \\"spec.foo\\""',
        '299 - "unknown field \\"spec.bar\\""',
    ]
