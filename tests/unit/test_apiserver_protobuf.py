"""podnet.apiserver.protobuf: Kubernetes protobuf request bodies -> JSON.

The CAPTURED bodies are what kubectl v1.32 really sent (recorded by the API
server from `kubectl create ...`), each next to the JSON the same command
prints with `--dry-run=client -o json`: decoding must give exactly that.
The other messages are built with the small encoder below, for the fields
kubectl's typed commands never set.
"""

from __future__ import annotations

from typing import Any

import pytest

from podnet.apiserver import protobuf
from podnet.apiserver.errors import StatusError
from podnet.apiserver.protobuf import ProtobufError, UnknownFields, UnsupportedKind, decode
from podnet.apiserver.protoschema import KINDS, SCHEMA

# ---- a tiny encoder ------------------------------------------------------------------


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative int32/int64: two's complement in 64 bits
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def f(num: int, value: int | str | bytes) -> bytes:
    """One field: an int as a varint, a str or bytes length-delimited."""
    if isinstance(value, bool | int):
        return varint(num << 3) + varint(int(value))
    raw = value.encode() if isinstance(value, str) else value
    return varint(num << 3 | 2) + varint(len(raw)) + raw


def m(*fields: bytes) -> bytes:
    return b"".join(fields)


def entry(num: int, key: str, value: str | bytes) -> bytes:
    """A map<string, ...> entry."""
    return f(num, m(f(1, key), f(2, value)))


def envelope(api_version: str, kind: str, raw: bytes, **extra: str) -> bytes:
    tm = m(f(1, api_version), f(2, kind))
    more = m(*(f({"contentEncoding": 3, "contentType": 4}[k], v) for k, v in extra.items()))
    return b"k8s\x00" + m(f(1, tm), f(2, raw), more)


# ---- what kubectl sent -------------------------------------------------------------------

CAPTURED: dict[str, tuple[str, dict[str, Any]]] = {
    "kubectl create namespace default": (
        "6b3873000a0f0a02763112094e616d657370616365121f0a170a0764656661756c7412001a0022002a003200380042001200"
        "1a020a001a002200",
        {"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": "default", "creationTimestamp": None},
         "spec": {}, "status": {}},
    ),
    "kubectl create deployment web --image=agnhost --replicas=3 --port=8080": (
        "6b3873000a150a07617070732f7631120a4465706c6f796d656e7412bd010a1f0a0377656212001a0022002a00320038004200"
        "5a0a0a036170701203776562128b010803120c0a0a0a0361707012037765621a710a1c0a0012001a0022002a00320038004200"
        "5a0a0a036170701203776562125112330a0761676e686f7374120761676e686f73742a00320b0a00100018903f22002a004200"
        "6a007200800100880100900100a201001a00320042004a0052005800600068008201008a01009a0100c2010022020a00280038"
        "001a0c0800100018002000280038001a002200",
        {"kind": "Deployment", "apiVersion": "apps/v1",
         "metadata": {"name": "web", "creationTimestamp": None, "labels": {"app": "web"}},
         "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                  "template": {"metadata": {"creationTimestamp": None, "labels": {"app": "web"}},
                               "spec": {"containers": [{"name": "agnhost", "image": "agnhost",
                                                        "ports": [{"containerPort": 8080}], "resources": {}}]}},
                  "strategy": {}},
         "status": {}},
    ),
    "kubectl create deployment one --image=agnhost -- netexec --http-port=8080": (
        "6b3873000a150a07617070732f7631120a4465706c6f796d656e7412cb010a1f0a036f6e6512001a0022002a00320038004200"
        "5a0a0a0361707012036f6e651299010801120c0a0a0a0361707012036f6e651a7f0a1c0a0012001a0022002a00320038004200"
        "5a0a0a0361707012036f6e65125f12410a0761676e686f7374120761676e686f73741a076e6574657865631a102d2d68747470"
        "2d706f72743d383038302a0042006a007200800100880100900100a201001a00320042004a0052005800600068008201008a01"
        "009a0100c2010022020a00280038001a0c0800100018002000280038001a002200",
        {"kind": "Deployment", "apiVersion": "apps/v1",
         "metadata": {"name": "one", "creationTimestamp": None, "labels": {"app": "one"}},
         "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "one"}},
                  "template": {"metadata": {"creationTimestamp": None, "labels": {"app": "one"}},
                               "spec": {"containers": [{"name": "agnhost", "image": "agnhost",
                                                        "command": ["netexec", "--http-port=8080"],
                                                        "resources": {}}]}},
                  "strategy": {}},
         "status": {}},
    ),
    "kubectl create service nodeport np --tcp=80:8080,443:8443 --node-port=30080": (
        "6b3873000a0d0a0276311207536572766963651288010a1d0a026e7012001a0022002a003200380042005a090a036170701202"
        "6e7012630a1d0a0738302d38303830120354435018502207080010903f1a002880eb010a1f0a083434332d3834343312035443"
        "5018bb032207080010fb411a002880eb0112090a0361707012026e701a0022084e6f6465506f72743a00420052005a00600068"
        "001a020a001a002200",
        {"kind": "Service", "apiVersion": "v1",
         "metadata": {"name": "np", "creationTimestamp": None, "labels": {"app": "np"}},
         "spec": {"ports": [{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080, "nodePort": 30080},
                            {"name": "443-8443", "protocol": "TCP", "port": 443, "targetPort": 8443,
                             "nodePort": 30080}],
                  "selector": {"app": "np"}, "type": "NodePort"},
         "status": {"loadBalancer": {}}},
    ),
    "kubectl create service clusterip headless --clusterip=None": (
        "6b3873000a0d0a027631120753657276696365125f0a290a08686561646c65737312001a0022002a003200380042005a0f0a03"
        "6170701208686561646c657373122e120f0a036170701208686561646c6573731a044e6f6e652209436c757374657249503a00"
        "420052005a00600068001a020a001a002200",
        {"kind": "Service", "apiVersion": "v1",
         "metadata": {"name": "headless", "creationTimestamp": None, "labels": {"app": "headless"}},
         "spec": {"selector": {"app": "headless"}, "clusterIP": "None", "type": "ClusterIP"},
         "status": {"loadBalancer": {}}},
    ),
}  # fmt: skip


@pytest.mark.parametrize("command", list(CAPTURED))
def test_kubectl_bodies_decode_to_the_json_kubectl_means(command: str) -> None:
    body, want = CAPTURED[command]
    assert decode(bytes.fromhex(body)) == want


# ---- what other clients may send ----------------------------------------------------------

T0 = m(f(1, 1700000000), f(2, 123456789))  # a metav1.Time: 2023-11-14T22:13:20.123456789Z


def test_pod_with_probes_env_resources_volumes() -> None:
    meta = m(
        f(1, "web-0"),
        f(3, "default"),
        f(7, 0),
        f(8, T0),
        entry(11, "app", "web"),
        entry(12, "note", "x"),
        f(13, m(f(5, "apps/v1"), f(1, "ReplicaSet"), f(3, "web-1"), f(4, "u1"), f(6, True))),
        f(17, m(f(1, "kubectl"))),  # managedFields: the server's, dropped
    )
    container = m(
        f(1, "web"),
        f(2, "agnhost"),
        f(4, "netexec"),
        f(4, "--http-port=8080"),
        f(6, m(f(1, "http"), f(3, 8080), f(4, "TCP"))),
        f(7, m(f(1, "A"), f(2, "1"))),
        f(7, m(f(1, "POD_IP"), f(3, m(f(1, m(f(1, "v1"), f(2, "status.podIP"))))))),
        f(7, m(f(1, "C"), f(2, ""), f(3, m(f(3, m(f(1, m(f(1, "cm"))), f(2, "k"))))))),
        f(8, m(entry(1, "memory", m(f(1, "128Mi"))), entry(2, "cpu", m(f(1, "100m"))))),
        f(9, m(f(1, "data"), f(2, False), f(3, "/data"))),
        f(10, m(f(1, m(f(3, m(f(1, m(f(1, 0), f(2, 8080))))))))),
        f(11, m(f(1, m(f(2, m(f(1, "/healthz"), f(2, m(f(1, 1), f(3, "http"))))))), f(3, 2), f(4, 0))),
        f(14, "IfNotPresent"),
        f(16, True),
        f(18, False),
    )
    spec = m(
        f(1, m(f(1, "data"), f(2, m(f(2, m(f(1, "Memory"))))))),
        f(1, m(f(1, "cfg"), f(2, m(f(19, m(f(1, m(f(1, "web-config"))), f(3, 0o644))))))),
        f(2, container),
        f(3, "Always"),
        f(4, 0),
        f(11, False),
        f(14, m(f(4, varint(1000) + varint(2000)))),  # supplementalGroups, packed
        f(22, m(f(1, "node.kubernetes.io/not-ready"), f(2, "Exists"), f(4, "NoExecute"), f(5, 0))),
        f(25, -5),
    )
    got = decode(envelope("v1", "Pod", m(f(1, meta), f(2, spec), f(3, b""))))
    assert got == {
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {
            "name": "web-0", "namespace": "default", "creationTimestamp": "2023-11-14T22:13:20Z",
            "labels": {"app": "web"}, "annotations": {"note": "x"},
            "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1", "uid": "u1", "controller": True}
            ],
        },
        "spec": {
            "volumes": [{"name": "data", "emptyDir": {"medium": "Memory"}},
                        {"name": "cfg", "configMap": {"name": "web-config", "defaultMode": 420}}],
            "containers": [{
                "name": "web", "image": "agnhost", "args": ["netexec", "--http-port=8080"],
                "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                "env": [{"name": "A", "value": "1"},
                        {"name": "POD_IP",
                         "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}}},
                        {"name": "C", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}}],
                "resources": {"limits": {"memory": "128Mi"}, "requests": {"cpu": "100m"}},
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                "livenessProbe": {"tcpSocket": {"port": 8080}},
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "timeoutSeconds": 2},
                "imagePullPolicy": "IfNotPresent", "stdin": True,
            }],
            "restartPolicy": "Always", "terminationGracePeriodSeconds": 0,
            "securityContext": {"supplementalGroups": [1000, 2000]},
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
                             "tolerationSeconds": 0}],
            "priority": -5,
        },
        "status": {},
    }  # fmt: skip


def test_network_policy() -> None:
    ingress = m(
        f(1, m(f(1, "TCP"), f(2, m(f(1, 0), f(2, 8000))), f(3, 9000))),
        f(2, m(f(3, m(f(1, "10.0.0.0/8"), f(2, "10.1.0.0/16"))))),
        f(2, m(f(2, m(entry(1, "team", "a"))))),
    )
    egress = m(f(1, m(f(2, m(f(1, 1), f(3, "dns"))))))
    spec = m(f(1, b""), f(2, ingress), f(3, egress), f(4, "Ingress"), f(4, "Egress"))
    got = decode(envelope("networking.k8s.io/v1", "NetworkPolicy", m(f(1, f(1, "np")), f(2, spec))))
    assert got["spec"] == {
        "podSelector": {},
        "ingress": [{"ports": [{"protocol": "TCP", "port": 8000, "endPort": 9000}],
                     "from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}},
                              {"namespaceSelector": {"matchLabels": {"team": "a"}}}]}],
        "egress": [{"ports": [{"port": "dns"}]}],
        "policyTypes": ["Ingress", "Egress"],
    }  # fmt: skip


def test_endpoint_slice_keeps_pointer_zeroes() -> None:
    ep = m(f(1, "10.0.0.5"), f(2, m(f(1, False), f(2, True))), f(6, "node1"),
           f(4, m(f(1, "Pod"), f(2, "default"), f(3, "web-0"))))  # fmt: skip
    got = decode(envelope("discovery.k8s.io/v1", "EndpointSlice",
                          m(f(1, f(1, "web-abc")), f(4, "IPv4"), f(2, ep), f(3, m(f(1, ""), f(3, 8080))))))  # fmt: skip
    assert got["addressType"] == "IPv4"
    assert got["endpoints"] == [{"addresses": ["10.0.0.5"], "conditions": {"ready": False, "serving": True},
                                 "targetRef": {"kind": "Pod", "namespace": "default", "name": "web-0"},
                                 "nodeName": "node1"}]  # fmt: skip
    assert got["ports"] == [{"name": "", "port": 8080}]  # discovery's port name is a pointer: "" was set


def test_node_status_and_times() -> None:
    status = m(
        entry(1, "cpu", m(f(1, "4"))), f(3, ""),
        f(4, m(f(1, "Ready"), f(2, "True"), f(3, b""), f(4, m(f(1, 1700000000))))),
        f(5, m(f(1, "InternalIP"), f(2, "192.168.200.11"))),
        f(6, m(f(1, m(f(1, 0))))), f(7, m(f(1, ""), f(10, "amd64"))),
    )  # fmt: skip
    got = decode(envelope("v1", "Node", m(f(1, f(1, "node1")), f(2, m(f(1, "10.244.1.0/24"), f(7, "10.244.1.0/24"))),
                                         f(3, status))))  # fmt: skip
    assert got["spec"] == {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"]}
    assert got["status"] == {
        "capacity": {"cpu": "4"},
        "conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": None,
                        "lastTransitionTime": "2023-11-14T22:13:20Z"}],
        "addresses": [{"type": "InternalIP", "address": "192.168.200.11"}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
        "nodeInfo": {"machineID": "", "architecture": "amd64"},
    }  # fmt: skip


def test_event_micro_time() -> None:
    body = m(f(1, f(1, "e1")), f(2, m(f(1, "Pod"), f(3, "web-0"))), f(3, "Started"), f(8, 2), f(10, T0),
             f(14, "kubelet"), f(15, ""))  # fmt: skip
    got = decode(envelope("v1", "Event", body))
    assert got["eventTime"] == "2023-11-14T22:13:20.123456Z"
    assert (got["count"], got["reportingComponent"], got["reportingInstance"]) == (2, "kubelet", "")


@pytest.mark.parametrize(
    "seconds, nanos, want",
    [(0, 0, "1970-01-01T00:00:00Z"), (-62135596800, 0, "0001-01-01T00:00:00Z"), (1700000000, 999999999, None)],
)
def test_times(seconds: int, nanos: int, want: str | None) -> None:
    meta = m(f(8, m(f(1, seconds), f(2, nanos))), f(9, b""))  # an empty Time is the zero time: null
    got = decode(envelope("v1", "Namespace", f(1, meta)))["metadata"]
    assert got == {"creationTimestamp": want or "2023-11-14T22:13:20Z", "deletionTimestamp": None}


def test_a_singular_message_sent_twice_is_merged() -> None:
    """As protobuf does it; a repeated field's pieces stay separate items."""
    spec = m(f(1, entry(1, "a", "b")), f(1, f(2, m(f(1, "k"), f(2, "Exists")))), f(4, "Ingress"), f(4, "Egress"))
    got = decode(envelope("networking.k8s.io/v1", "NetworkPolicy", f(2, spec)))
    assert got["spec"] == {
        "podSelector": {"matchLabels": {"a": "b"}, "matchExpressions": [{"key": "k", "operator": "Exists"}]},
        "policyTypes": ["Ingress", "Egress"],
    }


# ---- refusals --------------------------------------------------------------------------------


def test_unknown_and_undecoded_fields_are_named() -> None:
    container = m(f(1, "c"), f(2, "img"), f(99, "?"))
    pod_spec = m(f(2, container), f(18, m(f(1, b""))))  # 18: affinity, not decoded by podnet
    tmpl = m(f(1, b""), f(2, pod_spec))
    fixed = varint(98 << 3 | 1) + bytes(8) + varint(97 << 3 | 5) + bytes(4)  # 64- and 32-bit words
    body = envelope("apps/v1", "Deployment", m(f(1, m(f(1, "web"), fixed)), f(2, m(f(3, tmpl)))))
    with pytest.raises(UnknownFields) as exc:
        decode(body)
    assert sorted(exc.value.paths) == [
        "metadata.<field 97 of ObjectMeta>",
        "metadata.<field 98 of ObjectMeta>",
        "spec.template.spec.affinity",
        "spec.template.spec.containers[0].<field 99 of Container>",
    ]
    assert "spec.template.spec.affinity" in str(exc.value)


def test_unknown_field_inside_int_or_string() -> None:
    body = envelope("v1", "Service", m(f(2, m(f(1, m(f(3, 80), f(4, m(f(1, 0), f(9, 1)))))))))
    with pytest.raises(UnknownFields) as exc:
        decode(body)
    assert exc.value.paths == ["spec.ports[0].targetPort.<field 9>"]


@pytest.mark.parametrize(
    "body, error",
    [
        (envelope("v1", "ConfigMap", b""), UnsupportedKind),
        (envelope("v1", "Pod", b"", contentEncoding="gzip"), UnsupportedKind),
        (b'{"kind": "Pod"}', ProtobufError),
        (envelope("v1", "Namespace", f(1, f(1, "default")))[:-3], ProtobufError),  # truncated
        (envelope("v1", "Service", f(2, f(1, f(3, "80")))), ProtobufError),  # a port as a string
        (envelope("v1", "Namespace", f(1, f(1, b"\xff"))), ProtobufError),  # not UTF-8
        (b"k8s\x00" + varint(1 << 3 | 3), ProtobufError),  # a proto2 group
        (envelope("v1", "Namespace", f(1, f(8, f(1, 1 << 62)))), ProtobufError),  # a time out of range
    ],
)
def test_bad_bodies(body: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        decode(body)


def test_request_body_answers_with_a_status() -> None:
    assert protobuf.request_body(envelope("v1", "Namespace", f(1, f(1, "x"))))["metadata"]["name"] == "x"
    with pytest.raises(StatusError) as exc:
        protobuf.request_body(envelope("v1", "ConfigMap", b""))
    assert (exc.value.code, exc.value.reason) == (415, "UnsupportedMediaType")
    with pytest.raises(StatusError) as exc:
        protobuf.request_body(envelope("v1", "Pod", f(2, f(18, b""))))
    assert (exc.value.code, exc.value.reason) == (400, "BadRequest")
    assert "spec.affinity" in exc.value.message


def test_every_kind_has_a_message() -> None:
    assert all(message in SCHEMA for message in KINDS.values())
