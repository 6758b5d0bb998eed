"""Pure: podnet.apiserver.apply (server-side apply, managedFields), called through podnet.apiserver.patch."""

import copy
import json

import pytest

from podnet.apiserver.patch import ApplyConflict, PatchError, record_update, server_side_apply

T0, T1, T2, T3 = "2025-01-01T00:00:00Z", "2025-01-01T00:01:00Z", "2025-01-01T00:02:00Z", "2025-01-01T00:03:00Z"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def manifest(replicas: int | None = 3, image: str = "nginx:1.26", labels: dict | None = None, ports=(80,)) -> dict:
    """What a user keeps in web.yaml (as parsed from YAML)."""
    spec: dict = {
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": image, "ports": [{"containerPort": p} for p in ports]}]},
        },
    }
    if replicas is not None:
        spec["replicas"] = replicas
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": labels if labels is not None else {"app": "web", "tier": "frontend"}},
        "spec": spec,
    }


def stored(obj: dict) -> dict:
    """What the server does after the apply: identity and defaults (not owned by anyone)."""
    obj = copy.deepcopy(obj)
    obj["metadata"].setdefault("uid", "6c1b2a4e")
    obj["metadata"]["resourceVersion"] = str(int(obj["metadata"].get("resourceVersion", "0")) + 1)
    for c in obj["spec"]["template"]["spec"]["containers"]:
        c.setdefault("imagePullPolicy", "IfNotPresent")
        for p in c.get("ports", []):
            p.setdefault("protocol", "TCP")
    obj["spec"].setdefault("replicas", 1)
    return obj


def apply(live, applied, manager="kubectl", force=False, now=T1):
    return server_side_apply(live, applied, manager, force, "Deployment", now)


def entries(obj: dict) -> dict[tuple[str, str], dict]:
    return {(e["manager"], e["operation"]): e for e in obj["metadata"].get("managedFields", [])}


def owns(obj: dict, manager: tuple[str, str], *path: str) -> bool:
    node = entries(obj)[manager]["fieldsV1"]
    for tok in path:
        if tok not in node:
            return False
        node = node[tok]
    return True


IMAGE = ("f:spec", "f:template", "f:spec", "f:containers", 'k:{"name":"web"}', "f:image")


def web(obj: dict) -> dict:
    return obj["spec"]["template"]["spec"]["containers"][0]


def test_create_records_what_the_manager_applied_in_kubernetes_form():
    obj = apply(None, manifest(), now=T0)
    assert obj["spec"]["replicas"] == 3 and obj["metadata"]["labels"]["tier"] == "frontend"
    [entry] = obj["metadata"]["managedFields"]
    assert {k: entry[k] for k in ("manager", "operation", "apiVersion", "time", "fieldsType")} == {
        "manager": "kubectl",
        "operation": "Apply",
        "apiVersion": "apps/v1",
        "time": T0,
        "fieldsType": "FieldsV1",
    }
    fields = entry["fieldsV1"]
    assert "f:name" not in fields["f:metadata"] and "f:apiVersion" not in fields  # identity is nobody's
    assert fields["f:metadata"]["f:labels"] == {"f:app": {}, "f:tier": {}}
    assert fields["f:spec"]["f:replicas"] == {} and fields["f:spec"]["f:selector"] == {}  # LabelSelector is atomic
    item = fields["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"web"}']
    assert item == {
        ".": {},
        "f:image": {},
        "f:name": {},
        # Ports are keyed by containerPort and protocol; the protocol the server will default is part of the key.
        "f:ports": {'k:{"containerPort":80,"protocol":"TCP"}': {".": {}, "f:containerPort": {}}},
    }
    assert json.loads(json.dumps(obj)) == obj


def test_reapplying_a_file_without_a_label_a_port_and_replicas_removes_them():
    live = stored(apply(None, manifest(ports=(80, 443)), now=T0))
    out = apply(live, manifest(replicas=None, labels={"app": "web"}, ports=(80,)))
    assert out["metadata"]["labels"] == {"app": "web"}
    assert [p["containerPort"] for p in web(out)["ports"]] == [80]
    assert "replicas" not in out["spec"]  # the server defaults it again
    # Fields nobody applied (server defaults) and identity stay.
    assert web(out)["imagePullPolicy"] == "IfNotPresent" and out["metadata"]["uid"] == "6c1b2a4e"
    assert not owns(out, ("kubectl", "Apply"), "f:metadata", "f:labels", "f:tier")
    assert entries(out)["kubectl", "Apply"]["time"] == T1


def test_removing_the_last_label_drops_the_empty_map():
    live = stored(apply(None, manifest(labels={"tier": "frontend"})))
    applied = manifest()
    del applied["metadata"]["labels"]
    out = apply(live, applied)
    assert "labels" not in out["metadata"]


def test_a_second_managers_fields_survive_and_shared_fields_stay():
    live = stored(apply(None, manifest(), now=T0))
    # Another tool applies its own label, and the same replicas (shared ownership, no conflict).
    other = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"team": "a"}}}
    other["spec"] = {"replicas": 3}
    live = stored(apply(live, other, manager="team-tool", now=T1))
    assert live["metadata"]["labels"] == {"app": "web", "tier": "frontend", "team": "a"}
    # The first manager stops applying replicas and tier: tier goes, replicas stays (team-tool owns it too).
    out = apply(live, manifest(replicas=None, labels={"app": "web"}), now=T2)
    assert out["metadata"]["labels"] == {"app": "web", "team": "a"}
    assert out["spec"]["replicas"] == 3
    assert entries(out)["team-tool", "Apply"]["fieldsV1"]["f:spec"] == {"f:replicas": {}}


def test_changing_a_field_another_applier_owns_conflicts_unless_forced():
    live = stored(apply(None, manifest(), now=T0))
    mine = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}}
    mine["spec"] = {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}
    with pytest.raises(ApplyConflict) as err:
        apply(live, mine, manager="upgrader")
    field = '.spec.template.spec.containers[name="web"].image'
    assert err.value.conflicts == [("kubectl", field)]
    assert str(err.value) == f'Apply failed with 1 conflict: conflict with "kubectl": {field}'
    assert err.value.causes == [
        {"reason": "FieldManagerConflict", "message": 'conflict with "kubectl"', "field": field}
    ]
    assert isinstance(err.value, PatchError)

    out = stored(apply(live, mine, manager="upgrader", force=True, now=T2))
    assert web(out)["image"] == "nginx:1.27"
    assert not owns(out, ("kubectl", "Apply"), *IMAGE)  # ownership moved
    assert owns(out, ("upgrader", "Apply"), *IMAGE)
    # Now the original file conflicts the other way round; applying the current value would not.
    with pytest.raises(ApplyConflict, match='conflict with "upgrader"'):
        apply(out, manifest())
    apply(out, manifest(image="nginx:1.27"))


def test_apply_after_kubectl_scale_conflicts_on_replicas_unless_forced():
    live = stored(apply(None, manifest(replicas=3), now=T0))
    # kubectl scale: PATCH .../deployments/web/scale, manager "kubectl" (from the User-Agent), an Update.
    scaled = copy.deepcopy(live)
    scaled["spec"]["replicas"] = 5
    scaled = stored(record_update(live, scaled, "kubectl", "Deployment", T1, subresource="scale"))
    assert entries(scaled)["kubectl", "Update"]["fieldsV1"] == {"f:spec": {"f:replicas": {}}}
    assert entries(scaled)["kubectl", "Update"]["subresource"] == "scale"
    assert not owns(scaled, ("kubectl", "Apply"), "f:spec", "f:replicas")

    with pytest.raises(ApplyConflict) as err:
        apply(scaled, manifest(replicas=3), now=T2)
    assert err.value.conflicts == [("kubectl", ".spec.replicas")]
    assert str(err.value) == (
        'Apply failed with 1 conflict: conflict with "kubectl" with subresource "scale" using apps/v1 at '
        f"{T1}: .spec.replicas"
    )
    # --force-conflicts: the file wins and the scale entry, owning nothing any more, goes.
    out = apply(scaled, manifest(replicas=3), force=True, now=T2)
    assert out["spec"]["replicas"] == 3
    assert ("kubectl", "Update") not in entries(out)
    # Or drop replicas from the file (what the Kubernetes docs recommend): the scaled value stays.
    out = apply(scaled, manifest(replicas=None), now=T2)
    assert out["spec"]["replicas"] == 5


def test_conflicts_with_several_managers_are_listed_per_manager():
    live = stored(apply(None, manifest(), now=T0))
    edited = copy.deepcopy(live)
    edited["spec"]["replicas"], edited["metadata"]["labels"]["tier"] = 7, "backend"
    live = stored(record_update(live, edited, "kubectl-edit", "Deployment", T1))
    mine = manifest(replicas=2, image="nginx:1.27", labels={"tier": "db"})
    with pytest.raises(ApplyConflict) as err:
        apply(live, mine, manager="ops", now=T2)
    assert sorted(err.value.conflicts) == [
        ("kubectl", '.spec.template.spec.containers[name="web"].image'),
        ("kubectl-edit", ".metadata.labels.tier"),
        ("kubectl-edit", ".spec.replicas"),
    ]
    assert str(err.value).startswith('Apply failed with 3 conflicts: conflicts with "kubectl":\n- .spec.template')
    assert f'conflicts with "kubectl-edit" using apps/v1 at {T1}:\n- .metadata.labels.tier\n- .spec.replicas' in str(
        err.value
    )


def test_record_update_takes_over_changed_fields_and_forgets_removed_ones():
    created = record_update(None, stored(manifest()), "kubectl-create", "Deployment", T0)
    owned = entries(created)["kubectl-create", "Update"]["fieldsV1"]
    assert owned["f:spec"]["f:replicas"] == {} and "f:uid" not in owned["f:metadata"]
    edited = copy.deepcopy(created)
    web(edited)["image"] = "nginx:1.27"
    del edited["metadata"]["labels"]["tier"]
    out = record_update(created, edited, "kubectl-edit", "Deployment", T1)
    creator = ("kubectl-create", "Update")
    assert not owns(out, creator, *IMAGE) and not owns(out, creator, "f:metadata", "f:labels", "f:tier")
    assert owns(out, creator, "f:spec", "f:replicas") and owns(out, creator, *IMAGE[:-1], "f:imagePullPolicy")
    assert entries(out)["kubectl-edit", "Update"]["fieldsV1"] == {
        "f:spec": {"f:template": {"f:spec": {"f:containers": {'k:{"name":"web"}': {"f:image": {}}}}}}
    }
    # A no-op update records nothing and keeps the times.
    again = record_update(out, copy.deepcopy(out), "kubectl-edit", "Deployment", T2)
    assert again["metadata"]["managedFields"] == out["metadata"]["managedFields"]
    # managedFields are sorted as Kubernetes sorts them: Apply before Update, then by time.
    applied = stored(apply(out, manifest(image="nginx:1.27"), manager="ci", now=T3))
    assert [(e["manager"], e["operation"]) for e in applied["metadata"]["managedFields"]] == [
        ("ci", "Apply"),
        ("kubectl-create", "Update"),
        ("kubectl-edit", "Update"),
    ]


def test_untracked_objects_belong_to_before_first_apply():
    live = stored(manifest())  # created without managedFields (e.g. by the lab directly)
    assert record_update(live, live, "kubectl-edit", "Deployment", T1) == live  # updates do not start tracking
    with pytest.raises(ApplyConflict) as err:
        apply(live, manifest(image="nginx:1.27"))
    assert err.value.conflicts == [("before-first-apply", '.spec.template.spec.containers[name="web"].image')]
    out = apply(live, manifest())  # the same values: no conflict, and the fields are shared
    assert set(entries(out)) == {("kubectl", "Apply"), ("before-first-apply", "Update")}
    assert entries(out)["before-first-apply", "Update"]["fieldsV1"]["f:metadata"] == {
        "f:labels": {"f:app": {}, "f:tier": {}}
    }


def test_kubectl_may_take_over_what_its_client_side_apply_set():
    # `kubectl apply` (client-side) created it: an Update by kubectl-client-side-apply plus the annotation.
    first = manifest()
    first["metadata"]["annotations"] = {LAST_APPLIED: json.dumps(manifest()) + "\n"}
    live = stored(record_update(None, first, "kubectl-client-side-apply", "Deployment", T0))
    # `kubectl apply --server-side` with a new image: the annotation vouches for the old one, so no conflict.
    out = apply(live, manifest(image="nginx:1.27"), manager="kubectl", now=T1)
    assert web(out)["image"] == "nginx:1.27"
    # ...and the annotation follows, so that a later client-side apply diffs against this file.
    assert json.loads(out["metadata"]["annotations"][LAST_APPLIED]) == manifest(image="nginx:1.27")
    # Another manager gets no such pass.
    with pytest.raises(ApplyConflict):
        apply(live, manifest(image="nginx:1.27"), manager="helm")


def test_set_and_keyed_lists_are_owned_per_item():
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a", "finalizers": ["x.io/one"]}}
    live = server_side_apply(None, ns, "one", False, "Namespace", T0)
    two = copy.deepcopy(ns)
    two["metadata"]["finalizers"] = ["x.io/two"]
    live = server_side_apply(live, two, "two", False, "Namespace", T1)
    assert live["metadata"]["finalizers"] == ["x.io/two", "x.io/one"]
    assert entries(live)["two", "Apply"]["fieldsV1"] == {"f:metadata": {"f:finalizers": {'v:"x.io/two"': {}}}}
    gone = copy.deepcopy(ns)
    del gone["metadata"]["finalizers"]
    assert server_side_apply(live, gone, "one", False, "Namespace", T2)["metadata"]["finalizers"] == ["x.io/two"]
    # A Service may have port 53 twice, once per protocol: two items, removable one at a time.
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "dns"}}
    svc["spec"] = {"ports": [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53}]}
    live = server_side_apply(None, svc, "kubectl", False, "Service", T0)
    svc["spec"]["ports"] = svc["spec"]["ports"][1:]
    out = server_side_apply(live, svc, "kubectl", False, "Service", T1)
    assert out["spec"]["ports"] == [{"name": "dns-tcp", "port": 53}]


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda m: m["metadata"].update(managedFields=[]), "metadata.managedFields: must be nil"),
        (lambda m: m.pop("apiVersion"), "apiVersion: must be set"),
        (lambda m: m.update(kind=""), "kind: must be set"),
        (
            lambda m: web(m).update(ports=[{"containerPort": 80}, {"containerPort": 80, "protocol": "TCP"}]),
            'spec.template.spec.containers[name="web"].ports[1]: list item duplicates [containerPort=80,protocol=',
        ),
        (
            lambda m: m["spec"]["template"]["spec"]["containers"].append({"image": "x"}),
            "spec.template.spec.containers[1]: list item has no name",
        ),
        (
            lambda m: web(m).update(ports=[{"name": "http"}]),
            'spec.template.spec.containers[name="web"].ports[0]: list item has no containerPort',
        ),
        (lambda m: m["metadata"].update(finalizers=["a", "a"]), 'metadata.finalizers[1]: list item duplicates [="a"]'),
    ],
)
def test_invalid_apply_patches(mutate, message):
    applied = manifest()
    mutate(applied)
    with pytest.raises(PatchError) as err:
        apply(None, applied)
    assert str(err.value).startswith(message)


def test_apply_does_not_modify_its_arguments_and_ignores_nulls():
    live = stored(apply(None, manifest(), now=T0))
    before, applied = copy.deepcopy(live), manifest(replicas=None)
    applied["spec"]["paused"] = None
    frozen = copy.deepcopy(applied)
    out = apply(live, applied)
    assert live == before and applied == frozen and "paused" not in out["spec"]


def test_an_update_may_reset_or_bring_managed_fields():
    live = stored(apply(None, manifest(), now=T0))
    # `kubectl patch --type=json -p '[{"op":"replace","path":"/metadata/managedFields","value":[{}]}]'`
    for reset in ([{}], []):
        cleared = copy.deepcopy(live)
        cleared["metadata"]["managedFields"] = reset
        assert "managedFields" not in record_update(live, cleared, "kubectl-patch", "Deployment", T1)["metadata"]
        # ...but not through a subresource, which keeps the live entries.
        kept = record_update(live, cleared, "kubectl", "Deployment", T1, subresource="status")
        assert kept["metadata"]["managedFields"] == live["metadata"]["managedFields"]
    # A PUT of the object as read keeps them; a PUT that drops the key does not lose them.
    edited = copy.deepcopy(live)
    edited["spec"]["replicas"] = 4
    out = record_update(live, edited, "kubectl-edit", "Deployment", T1)
    del edited["metadata"]["managedFields"]
    assert record_update(live, edited, "kubectl-edit", "Deployment", T1) == out
    assert set(entries(out)) == {("kubectl", "Apply"), ("kubectl-edit", "Update")}
