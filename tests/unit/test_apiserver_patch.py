"""Pure: podnet.apiserver.patch (JSON merge patch, JSON patch, strategic merge patch)."""

import copy
import json

import pytest

from podnet.apiserver.patch import PatchError, json_patch, merge_patch, strategic_merge_patch

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def deployment() -> dict:
    """A Deployment as the server stores it after `kubectl apply` created it: defaults filled in."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "uid": "6c1b2a4e",
            "resourceVersion": "41",
            "labels": {"app": "web", "tier": "frontend"},
            "annotations": {LAST_APPLIED: '{"old":true}\n'},
            "finalizers": ["example.com/a", "example.com/b"],
        },
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": "registry.k8s.io/e2e-test-images/agnhost:2.52",
                            "args": ["netexec", "--http-port=8080"],
                            "imagePullPolicy": "IfNotPresent",
                            "ports": [
                                {"containerPort": 8080, "name": "http", "protocol": "TCP"},
                                {"containerPort": 8443, "name": "https", "protocol": "TCP"},
                            ],
                            "env": [{"name": "MODE", "value": "dev"}, {"name": "LOG", "value": "info"}],
                        }
                    ],
                    "restartPolicy": "Always",
                    "tolerations": [{"key": "a", "operator": "Exists"}],
                },
            },
        },
        "status": {"replicas": 3, "conditions": [{"type": "Available", "status": "True"}]},
    }


def container(obj: dict, name: str = "web") -> dict:
    return next(c for c in obj["spec"]["template"]["spec"]["containers"] if c["name"] == name)


# ---- RFC 7386 --------------------------------------------------------------------------------------------------------


def test_merge_patch_merges_maps_deletes_nulls_and_replaces_lists():
    live = deployment()
    out = merge_patch(
        live,
        {
            "metadata": {"labels": {"tier": None, "version": "v2"}},
            "spec": {"replicas": 5, "template": {"spec": {"containers": [{"name": "web", "image": "nginx"}]}}},
        },
    )
    assert out["metadata"]["labels"] == {"app": "web", "version": "v2"}
    assert out["spec"]["replicas"] == 5
    # A merge patch has no merge keys: the list is the patch's list, the container's ports and env are gone.
    assert out["spec"]["template"]["spec"]["containers"] == [{"name": "web", "image": "nginx"}]
    assert out["spec"]["strategy"] == live["spec"]["strategy"]
    assert live == deployment(), "the input is not modified"


def test_merge_patch_null_for_a_missing_field_is_harmless_and_a_non_object_is_refused():
    assert merge_patch({"a": 1}, {"b": None, "c": {"d": None}}) == {"a": 1, "c": {}}
    with pytest.raises(PatchError, match="JSON object"):
        merge_patch({"a": 1}, [{"op": "remove", "path": "/a"}])


# ---- RFC 6902 --------------------------------------------------------------------------------------------------------


def test_json_patch_applies_ops_in_order_with_escaped_paths():
    out = json_patch(
        deployment(),
        [
            {"op": "test", "path": "/spec/replicas", "value": 3},
            {"op": "replace", "path": "/spec/replicas", "value": 4},
            {"op": "add", "path": "/metadata/labels/app.kubernetes.io~1name", "value": "web"},
            {"op": "remove", "path": "/spec/template/spec/containers/0/ports/1"},
            {"op": "add", "path": "/spec/template/spec/containers/0/env/-", "value": {"name": "X", "value": "1"}},
        ],
    )
    assert out["spec"]["replicas"] == 4
    assert out["metadata"]["labels"]["app.kubernetes.io/name"] == "web"
    assert [p["containerPort"] for p in container(out)["ports"]] == [8080]
    assert container(out)["env"][-1] == {"name": "X", "value": "1"}


def test_json_patch_failing_test_names_the_op_and_path_and_changes_nothing():
    live = deployment()
    ops = [
        {"op": "replace", "path": "/spec/replicas", "value": 9},
        {"op": "test", "path": "/metadata/resourceVersion", "value": "40"},
    ]
    with pytest.raises(PatchError, match=r"op 1 \(test /metadata/resourceVersion\): test failed"):
        json_patch(live, ops)
    assert live == deployment()


@pytest.mark.parametrize(
    "ops, message",
    [
        ([{"op": "remove", "path": "/spec/paused"}], r"op 0 \(remove /spec/paused\)"),
        ([{"op": "replace", "path": "/spec/template/spec/containers/7/image", "value": "x"}], r"op 0 \(replace"),
        ([{"op": "add", "path": "/metadata/name/x", "value": 1}], r"op 0 \(add /metadata/name/x\)"),
        ([{"op": "frobnicate", "path": "/spec"}], r"op 0 \(frobnicate /spec\)"),
        ([{"op": "replace", "path": "", "value": [1]}], "not a JSON object"),
        ({"op": "remove", "path": "/spec"}, "JSON array"),
        (["remove"], "op 0: an operation must be a JSON object"),
    ],
)
def test_json_patch_errors(ops, message):
    with pytest.raises(PatchError, match=message):
        json_patch(deployment(), ops)


# ---- strategic merge patch: what kubectl apply (client-side) sends ---------------------------------------------------

# Captured from kubectl v1.32 `apply` against a stub server: the file changed replicas 3->5, the image, label
# tier frontend->backend, added port 9090 and removed port 8443, and changed env MODE.
KUBECTL_APPLY_PATCH = {
    "metadata": {"annotations": {LAST_APPLIED: '{"new":true}\n'}, "labels": {"tier": "backend"}},
    "spec": {
        "replicas": 5,
        "template": {
            "spec": {
                "$setElementOrder/containers": [{"name": "web"}],
                "containers": [
                    {
                        "$setElementOrder/env": [{"name": "MODE"}, {"name": "LOG"}],
                        "$setElementOrder/ports": [{"containerPort": 8080}, {"containerPort": 9090}],
                        "env": [{"name": "MODE", "value": "prod"}],
                        "image": "registry.k8s.io/e2e-test-images/agnhost:2.53",
                        "name": "web",
                        "ports": [
                            {"containerPort": 9090, "name": "metrics"},
                            {"$patch": "delete", "containerPort": 8443},
                        ],
                    }
                ],
            }
        },
    },
}


def test_kubectl_client_side_apply_patch_for_a_deployment():
    live = deployment()
    out = strategic_merge_patch(live, KUBECTL_APPLY_PATCH, "Deployment")
    assert out["spec"]["replicas"] == 5
    assert out["metadata"]["labels"] == {"app": "web", "tier": "backend"}
    assert out["metadata"]["annotations"][LAST_APPLIED] == '{"new":true}\n'
    web = container(out)
    assert web["image"] == "registry.k8s.io/e2e-test-images/agnhost:2.53"
    # Port 8080 is merged (the server-defaulted protocol stays), 9090 added, 8443 deleted.
    assert web["ports"] == [
        {"containerPort": 8080, "name": "http", "protocol": "TCP"},
        {"containerPort": 9090, "name": "metrics"},
    ]
    assert web["env"] == [{"name": "MODE", "value": "prod"}, {"name": "LOG", "value": "info"}]
    # Nothing the file does not mention changes: defaults, args, status, the other lists.
    assert web["imagePullPolicy"] == "IfNotPresent" and web["args"] == ["netexec", "--http-port=8080"]
    assert out["status"] == live["status"]
    assert out["spec"]["template"]["spec"]["tolerations"] == live["spec"]["template"]["spec"]["tolerations"]
    assert "$setElementOrder/containers" not in json.dumps(out)
    assert live == deployment(), "the input is not modified"


def test_kubectl_apply_patch_removing_a_label_and_an_env_var():
    # Also captured from kubectl v1.32: the file dropped label tier and env LOG.
    patch = {
        "metadata": {"labels": {"tier": None}},
        "spec": {
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "web"}],
                    "containers": [
                        {
                            "$setElementOrder/env": [{"name": "MODE"}],
                            "env": [{"name": "MODE", "value": "prod"}, {"$patch": "delete", "name": "LOG"}],
                            "name": "web",
                        }
                    ],
                }
            }
        },
    }
    out = strategic_merge_patch(deployment(), patch, "Deployment")
    assert out["metadata"]["labels"] == {"app": "web"}
    assert container(out)["env"] == [{"name": "MODE", "value": "prod"}]
    assert len(container(out)["ports"]) == 2


def test_set_element_order_puts_patch_items_in_order_and_keeps_server_only_items_in_place():
    live = deployment()
    live["spec"]["template"]["spec"]["containers"] += [{"name": "sidecar", "image": "s"}, {"name": "log", "image": "l"}]
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "log"}, {"name": "web"}, {"name": "new"}],
                    "containers": [{"name": "new", "image": "n"}],
                }
            }
        }
    }
    out = strategic_merge_patch(live, patch, "Deployment")
    names = [c["name"] for c in out["spec"]["template"]["spec"]["containers"]]
    # log/web/new follow the order list; server-only "sidecar" keeps its place before log (as in the live list).
    assert names == ["sidecar", "log", "web", "new"]


def test_new_item_is_appended_and_existing_items_keep_their_place():
    live = deployment()
    live["spec"]["template"]["spec"]["containers"].append({"name": "sidecar", "image": "s:1"})
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": "s:2"}, {"name": "x"}]}}}}
    out = strategic_merge_patch(live, patch, "Deployment")
    assert [c["name"] for c in out["spec"]["template"]["spec"]["containers"]] == ["web", "sidecar", "x"]
    assert container(out, "sidecar")["image"] == "s:2"
    assert container(out)["ports"] == live["spec"]["template"]["spec"]["containers"][0]["ports"]


# Kubernetes' own ordering cases (strategicpatch/patch_test.go, "set elements order in a list with server-only
# items" and neighbours), restated as containers: (live names, $setElementOrder, patch list, resulting names).
@pytest.mark.parametrize(
    "live, order, items, result",
    [
        ("1 3 4 2 9", "4 2 3 1", [], "4 2 3 1 9"),
        ("1 2 9 3 4", "2 1 4 3", [], "2 1 9 4 3"),
        ("1 2 7 9 8 3 4", "2 1 4 3", [], "2 1 7 9 8 4 3"),
        ("1 2 4", "2 3", [{"name": "3"}, {"name": "1", "$patch": "delete"}], "2 4 3"),
        ("1 2", "4 1 2 3", [{"name": "4"}, {"name": "3"}], "4 1 2 3"),
    ],
)
def test_upstream_ordering_cases(live, order, items, result):
    pod = {"kind": "Pod", "spec": {"containers": [{"name": n, "image": "i" + n} for n in live.split()]}}
    spec = {"$setElementOrder/containers": [{"name": n} for n in order.split()], "containers": items}
    out = strategic_merge_patch(pod, {"spec": spec}, "Pod")
    assert [c["name"] for c in out["spec"]["containers"]] == result.split()
    assert all(c["image"] == "i" + c["name"] for c in out["spec"]["containers"] if c["name"] in live.split())


@pytest.mark.parametrize(
    "live, patch, result",
    [
        ("1 2 4", {"$setElementOrder/finalizers": ["1", "2", "3"], "finalizers": ["3"]}, "1 2 3 4"),
        (
            "1 2 3 4",
            {"$setElementOrder/finalizers": ["1", "2", "4"], "$deleteFromPrimitiveList/finalizers": ["3"]},
            "1 2 4",
        ),
        ("1 2", {"$deleteFromPrimitiveList/finalizers": ["9"]}, "1 2"),
    ],
)
def test_upstream_primitive_list_cases(live, patch, result):
    out = strategic_merge_patch({"metadata": {"finalizers": live.split()}}, {"metadata": patch}, "Namespace")
    assert out["metadata"]["finalizers"] == result.split()


# ---- strategic merge patch: directives ----------------------------------------------------------------------------


def test_patch_replace_in_a_list_and_in_a_map():
    patch = {
        "metadata": {"labels": {"$patch": "replace", "only": "this"}},
        "spec": {"template": {"spec": {"containers": [{"$patch": "replace"}, {"name": "solo", "image": "busybox"}]}}},
    }
    out = strategic_merge_patch(deployment(), patch, "Deployment")
    assert out["metadata"]["labels"] == {"only": "this"}
    assert out["spec"]["template"]["spec"]["containers"] == [{"name": "solo", "image": "busybox"}]


def test_patch_delete_on_a_map_and_patch_merge_is_the_default():
    patch = {
        "spec": {"strategy": {"$patch": "delete"}, "template": {"metadata": {"$patch": "merge", "labels": {"x": "1"}}}}
    }
    out = strategic_merge_patch(deployment(), patch, "Deployment")
    assert out["spec"]["strategy"] == {}
    assert out["spec"]["template"]["metadata"]["labels"] == {"app": "web", "x": "1"}
    # $patch: delete of something absent adds nothing.
    assert (
        "paused"
        not in strategic_merge_patch(deployment(), {"spec": {"paused": {"$patch": "delete"}}}, "Deployment")["spec"]
    )


def test_delete_from_primitive_list_and_set_merge_of_finalizers():
    patch = {
        "metadata": {
            "$setElementOrder/finalizers": ["example.com/c", "example.com/b"],
            "$deleteFromPrimitiveList/finalizers": ["example.com/a"],
            "finalizers": ["example.com/c"],
        }
    }
    out = strategic_merge_patch(deployment(), patch, "Deployment")
    assert out["metadata"]["finalizers"] == ["example.com/c", "example.com/b"]
    # Without order directives a set merge appends what is new and drops duplicates.
    out = strategic_merge_patch(deployment(), {"metadata": {"finalizers": ["example.com/b", "x", "x"]}}, "Deployment")
    assert sorted(out["metadata"]["finalizers"]) == ["example.com/a", "example.com/b", "x"]


def test_retain_keys_clears_the_other_strategy_fields():
    # What kubectl sends when a Deployment's strategy changes from RollingUpdate to Recreate.
    patch = {"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": None, "type": "Recreate"}}}
    out = strategic_merge_patch(deployment(), patch, "Deployment")
    assert out["spec"]["strategy"] == {"type": "Recreate"}
    with pytest.raises(PatchError, match=r"spec.strategy: field 'rollingUpdate' is set but not listed in \$retainKeys"):
        strategic_merge_patch(
            deployment(), {"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}}, "Deployment"
        )


@pytest.mark.parametrize(
    "patch, message",
    [
        (
            {"spec": {"template": {"spec": {"containers": [{"$patch": "bogus"}]}}}},
            'spec.template.spec.containers: $patch directive "bogus" is not supported',
        ),
        ({"spec": {"strategy": {"$patch": "bogus"}}}, 'spec.strategy: $patch directive "bogus" is not supported'),
        (
            {"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}},
            "spec.template.spec.containers[0]: list item has no merge key 'name'",
        ),
        (
            {"spec": {"template": {"spec": {"containers": [{"$patch": "delete", "image": "x"}]}}}},
            "spec.template.spec.containers[0]: list item has no merge key 'name'",
        ),
        (
            {"spec": {"template": {"spec": {"containers": ["web"]}}}},
            "spec.template.spec.containers[0]: list items must be objects with the merge key 'name'",
        ),
        (
            {"spec": {"template": {"spec": {"containers": [{"name": "web", "ports": [{"name": "x"}]}]}}}},
            "spec.template.spec.containers[name=\"web\"].ports[0]: list item has no merge key 'containerPort'",
        ),
        ({"metadata": {"finalizers": [{"a": 1}]}}, "metadata.finalizers: this list merges as a set of scalars"),
        ({"spec": {"$frob": 1}}, "spec: unknown patch directive '$frob'"),
        ({"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}}, "metadata.finalizers: $deleteFromPrimitiveList/"),
        ({"spec": {"strategy": {"$retainKeys": "type"}}}, "spec.strategy: $retainKeys must be a list of field names"),
        ([], "<object>: a strategic merge patch must be a JSON object"),
    ],
)
def test_strategic_merge_patch_errors_name_the_field(patch, message):
    with pytest.raises(PatchError) as err:
        strategic_merge_patch(deployment(), patch, "Deployment")
    assert str(err.value).startswith(message)


# ---- strategic merge patch: the merge keys of the other kinds -------------------------------------------------------


def test_service_ports_merge_by_port():
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {
            "type": "NodePort",
            "selector": {"app": "web"},
            "ports": [
                {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP", "nodePort": 30080},
                {"name": "https", "port": 443, "targetPort": 8443, "protocol": "TCP", "nodePort": 30443},
            ],
        },
    }
    out = strategic_merge_patch(svc, {"spec": {"ports": [{"port": 80, "nodePort": 30081}]}}, "Service")
    assert out["spec"]["ports"][0] == {
        "name": "http",
        "port": 80,
        "targetPort": 8080,
        "protocol": "TCP",
        "nodePort": 30081,
    }
    assert out["spec"]["ports"][1]["port"] == 443


def test_node_status_patch_like_a_kubelet_sends():
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "node1"},
        "spec": {"podCIDRs": ["10.244.1.0/24"], "taints": [{"key": "a", "effect": "NoSchedule"}]},
        "status": {
            "conditions": [
                {"type": "MemoryPressure", "status": "False"},
                {"type": "Ready", "status": "False", "reason": "KubeletNotReady"},
            ],
            "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}, {"type": "Hostname", "address": "node1"}],
        },
    }
    patch = {
        "spec": {"podCIDRs": ["fd00:10:244:1::/64"], "taints": [{"key": "b", "effect": "NoExecute"}]},
        "status": {
            "$setElementOrder/conditions": [{"type": "MemoryPressure"}, {"type": "Ready"}],
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
            "addresses": [{"type": "InternalIP", "address": "10.0.0.2"}],
        },
    }
    out = strategic_merge_patch(node, patch, "Node")
    assert out["status"]["conditions"] == [
        {"type": "MemoryPressure", "status": "False"},
        {"type": "Ready", "status": "True", "reason": "KubeletReady"},
    ]
    assert out["status"]["addresses"] == [
        {"type": "InternalIP", "address": "10.0.0.2"},
        {"type": "Hostname", "address": "node1"},
    ]
    assert out["spec"]["podCIDRs"] == ["fd00:10:244:1::/64", "10.244.1.0/24"]  # a set: merged
    assert out["spec"]["taints"] == [{"key": "b", "effect": "NoExecute"}]  # no strategy: replaced


def test_pod_lists_merge_by_their_keys_and_tolerations_replace():
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "ownerReferences": [{"uid": "u1", "kind": "ReplicaSet", "name": "rs1"}]},
        "spec": {
            "containers": [{"name": "c", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
            "volumes": [{"name": "data", "emptyDir": {}}],
            "hostAliases": [{"ip": "10.0.0.9", "hostnames": ["a"]}],
            "tolerations": [{"key": "x", "operator": "Exists"}],
        },
        "status": {"conditions": [{"type": "Ready", "status": "False"}], "podIPs": [{"ip": "10.244.1.5"}]},
    }
    patch = {
        "metadata": {"ownerReferences": [{"uid": "u2", "kind": "ReplicaSet", "name": "rs2"}]},
        "spec": {
            "containers": [{"name": "c", "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg"}]}],
            "volumes": [{"name": "cfg", "configMap": {"name": "cfg"}}],
            "hostAliases": [{"ip": "10.0.0.9", "hostnames": ["b"]}],
            "tolerations": [{"key": "y", "operator": "Exists"}],
        },
        "status": {"conditions": [{"type": "PodScheduled", "status": "True"}], "podIPs": [{"ip": "fd00::5"}]},
    }
    out = strategic_merge_patch(pod, patch, "Pod")
    # Merged, not replaced. Without $setElementOrder Kubernetes puts new items before the server-only ones.
    assert [o["uid"] for o in out["metadata"]["ownerReferences"]] == ["u2", "u1"]
    assert [m["mountPath"] for m in out["spec"]["containers"][0]["volumeMounts"]] == ["/etc/cfg", "/data"]
    assert [v["name"] for v in out["spec"]["volumes"]] == ["cfg", "data"]
    assert out["spec"]["hostAliases"] == [{"ip": "10.0.0.9", "hostnames": ["b"]}]  # hostnames: atomic inside
    assert out["spec"]["tolerations"] == [{"key": "y", "operator": "Exists"}]
    assert [c["type"] for c in out["status"]["conditions"]] == ["PodScheduled", "Ready"]
    assert [i["ip"] for i in out["status"]["podIPs"]] == ["fd00::5", "10.244.1.5"]


def test_network_policy_and_endpoints_lists_are_replaced():
    netpol = {
        "kind": "NetworkPolicy",
        "spec": {"podSelector": {"matchLabels": {"app": "db"}}, "ingress": [{"from": [{"podSelector": {}}]}]},
    }
    patch = {"spec": {"ingress": [{"ports": [{"port": 5432}]}], "podSelector": {"matchLabels": {"tier": "x"}}}}
    out = strategic_merge_patch(netpol, patch, "NetworkPolicy")
    assert out["spec"]["ingress"] == [{"ports": [{"port": 5432}]}]
    assert out["spec"]["podSelector"] == {"matchLabels": {"app": "db", "tier": "x"}}  # maps still merge
    ep = {"kind": "Endpoints", "subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}]}
    out = strategic_merge_patch(ep, {"subsets": [{"addresses": [{"ip": "10.0.0.2"}]}]}, "Endpoints")
    assert out["subsets"] == [{"addresses": [{"ip": "10.0.0.2"}]}]


def test_replaced_list_values_lose_nulls_and_unknown_kinds_merge_maps_only():
    out = strategic_merge_patch({"spec": {}}, {"spec": {"ingress": [{"from": None, "ports": [{"port": 80}]}]}}, "Frob")
    assert out == {"spec": {"ingress": [{"ports": [{"port": 80}]}]}}
    out = strategic_merge_patch({"items": [{"name": "a"}]}, {"items": [{"name": "b"}]}, "Frob")
    assert out == {"items": [{"name": "b"}]}


def test_strategic_merge_patch_does_not_modify_its_arguments():
    live, patch = deployment(), copy.deepcopy(KUBECTL_APPLY_PATCH)
    strategic_merge_patch(live, patch, "Deployment")
    assert live == deployment() and patch == KUBECTL_APPLY_PATCH
