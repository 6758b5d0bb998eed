"""PATCH bodies applied to Kubernetes objects (plain JSON dicts); pure, no I/O.

    merge_patch            application/merge-patch+json          RFC 7386
    json_patch             application/json-patch+json           RFC 6902
    strategic_merge_patch  application/strategic-merge-patch+json  k8s.io/apimachinery strategicpatch
    server_side_apply      application/apply-patch+yaml          (apply.py) structured-merge-diff
    record_update          managedFields for PUT/PATCH           (apply.py)

Every error is a PatchError whose message starts with the field path it is
about; the server answers 422 (ApplyConflict: 409).

The schema below is the part of the Go struct tags of k8s.io/api that changes
how a field merges, for the kinds podnet serves: patchStrategy/patchMergeKey
(strategic merge patch) and listType/listMapKey/structType/mapType (server-side
apply). A field not listed merges as a map if it is one; any other list is
replaced whole.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jsonpatch
import jsonpointer

Obj = dict[str, Any]


class PatchError(ValueError):
    """A patch that cannot be applied; the message names the field path."""


class ApplyConflict(PatchError):
    """Server-side apply would change fields other managers own.

    conflicts: (manager, field path such as ".spec.replicas") pairs; causes:
    the same as Kubernetes' Status causes (reason FieldManagerConflict); str():
    Kubernetes' message ("Apply failed with 1 conflict: conflict with ...").
    """

    def __init__(self, message: str, conflicts: list[tuple[str, str]], causes: list[dict[str, str]]) -> None:
        super().__init__(message)
        self.conflicts = conflicts
        self.causes = causes


@dataclass(frozen=True)
class Field:
    """How one field merges. type: the struct type of the value (or of each list item)."""

    type: str | None = None
    merge_key: str | None = None  # strategic merge: list of objects merged by this key
    merge_set: bool = False  # strategic merge: list of scalars merged as a set
    list_keys: tuple[str, ...] = ()  # server-side apply: listType=map keys
    list_set: bool = False  # server-side apply: listType=set
    atomic: bool = False  # server-side apply: structType/mapType=atomic, owned whole


def _keyed(key: str, *more: str, type: str | None = None) -> Field:
    return Field(type=type, merge_key=key, list_keys=(key, *more))


_PLAIN = Field()
_SET = Field(merge_set=True, list_set=True)
_ATOMIC = Field(atomic=True)  # LabelSelector and the atomic string maps
_CONDITIONS = _keyed("type")


def _struct(name: str) -> Field:
    return Field(type=name)


def _kind(name: str) -> dict[str, Field]:
    return {"metadata": _struct("ObjectMeta"), "spec": _struct(name + "Spec"), "status": _struct(name + "Status")}


_TYPES: dict[str, dict[str, Field]] = {
    "ObjectMeta": {"ownerReferences": _keyed("uid"), "finalizers": _SET},
    "PodTemplateSpec": {"metadata": _struct("ObjectMeta"), "spec": _struct("PodSpec")},
    "PodSpec": {
        "volumes": _keyed("name"),
        "initContainers": _keyed("name", type="Container"),
        "containers": _keyed("name", type="Container"),
        "ephemeralContainers": _keyed("name", type="Container"),
        "imagePullSecrets": _keyed("name"),
        "hostAliases": _keyed("ip"),
        "topologySpreadConstraints": _keyed("topologyKey", "whenUnsatisfiable"),
        "schedulingGates": _keyed("name"),
        "resourceClaims": _keyed("name"),
        "nodeSelector": _ATOMIC,
    },
    "Container": {
        # SMP merges ports by containerPort alone; SSA keys them by port and protocol.
        "ports": _keyed("containerPort", "protocol"),
        "env": _keyed("name"),
        "volumeMounts": _keyed("mountPath"),
        "volumeDevices": _keyed("devicePath"),
    },
    "PodStatus": {
        "conditions": _CONDITIONS,
        "podIPs": _keyed("ip"),
        "hostIPs": Field(merge_key="ip"),  # listType=atomic for apply
        "resourceClaimStatuses": _keyed("name"),
    },
    "NodeSpec": {"podCIDRs": _SET},  # taints: no strategy, replaced
    "NodeStatus": {"conditions": _CONDITIONS, "addresses": _keyed("type")},
    "ServiceSpec": {"ports": _keyed("port", "protocol"), "selector": _ATOMIC},
    "ServiceStatus": {"conditions": _CONDITIONS},
    "DeploymentSpec": {"template": _struct("PodTemplateSpec"), "selector": _ATOMIC},
    "DeploymentStatus": {"conditions": _CONDITIONS},
    "ReplicaSetSpec": {"template": _struct("PodTemplateSpec"), "selector": _ATOMIC},
    "ReplicaSetStatus": {"conditions": _CONDITIONS},
    "NetworkPolicySpec": {"podSelector": _ATOMIC},  # its lists are all atomic
    "NamespaceStatus": {"conditions": _CONDITIONS},
    "Pod": _kind("Pod"),
    "Node": _kind("Node"),
    "Service": _kind("Service"),
    "Deployment": _kind("Deployment"),
    "ReplicaSet": _kind("ReplicaSet"),
    "NetworkPolicy": _kind("NetworkPolicy"),
    "Namespace": _kind("Namespace"),
    "PodTemplate": {"metadata": _struct("ObjectMeta"), "template": _struct("PodTemplateSpec")},
    # Endpoints.subsets, EndpointSlice.endpoints/ports and everything in Event are atomic lists.
    "Endpoints": {"metadata": _struct("ObjectMeta")},
    "EndpointSlice": {"metadata": _struct("ObjectMeta")},
    "Event": {"metadata": _struct("ObjectMeta")},
}


def field_of(type_name: str | None, key: str) -> Field:
    """The merge behaviour of field `key` of struct `type_name` (None: unknown, plain)."""
    return _TYPES.get(type_name or "", {}).get(key, _PLAIN)


def root_type(kind: str) -> str | None:
    return kind if kind in _TYPES else None


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _where(path: str) -> str:
    return path or "<object>"


# ---- RFC 7386 / RFC 6902 -----------------------------------------------------------------------------------------


def merge_patch(obj: Obj, patch: Any) -> Obj:
    """RFC 7386: null deletes, objects merge recursively, anything else (lists too) replaces."""
    if not isinstance(patch, dict):
        raise PatchError("<object>: a JSON merge patch must be a JSON object")
    result = _merge(obj, patch)
    assert isinstance(result, dict)
    return result


def _merge(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge(result.get(key), value)
    return result


def json_patch(obj: Obj, ops: Any) -> Obj:
    """RFC 6902, one op at a time so that an error names the op that failed."""
    if not isinstance(ops, list):
        raise PatchError("<object>: a JSON patch must be a JSON array of operations")
    doc: Any = copy.deepcopy(obj)
    for i, op in enumerate(ops):
        if not isinstance(op, dict):
            raise PatchError(f"op {i}: an operation must be a JSON object")
        where = f"op {i} ({op.get('op')} {op.get('path')})"
        try:
            doc = jsonpatch.JsonPatch([op]).apply(doc, in_place=True)
        except jsonpatch.JsonPatchTestFailed as exc:
            raise PatchError(f"{where}: test failed: {exc}") from None
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
            raise PatchError(f"{where}: {exc}") from None
        except (KeyError, IndexError, TypeError, ValueError) as exc:  # e.g. a path through a string
            raise PatchError(f"{where}: cannot apply: {exc!r}") from None
    if not isinstance(doc, dict):
        raise PatchError("<object>: the patched document is not a JSON object")
    return doc


# ---- strategic merge patch ---------------------------------------------------------------------------------------

_ORDER = "$setElementOrder/"
_DELETE_FROM = "$deleteFromPrimitiveList/"


def strategic_merge_patch(obj: Obj, patch: Any, kind: str) -> Obj:
    """Strategic merge patch as the API server applies it (merge keys from the kind's schema)."""
    if not isinstance(patch, dict):
        raise PatchError("<object>: a strategic merge patch must be a JSON object")
    return _smp_map(copy.deepcopy(obj), copy.deepcopy(patch), root_type(kind), "")


def _smp_map(original: Obj, patch: Obj, type_name: str | None, path: str) -> Obj:
    directive = patch.pop("$patch", None)
    if directive == "delete":
        return {}
    if directive == "replace":
        original = {}
    elif directive not in (None, "merge"):  # Kubernetes rejects "merge" here; it is the default anyway
        raise PatchError(f"{_where(path)}: $patch directive {json.dumps(directive)} is not supported")

    retain = patch.pop("$retainKeys", None)
    if retain is not None:
        if not isinstance(retain, list) or not all(isinstance(k, str) for k in retain):
            raise PatchError(f"{_where(path)}: $retainKeys must be a list of field names")
        for key, value in patch.items():
            if value is not None and not key.startswith("$") and key not in retain:
                raise PatchError(f"{_where(path)}: field {key!r} is set but not listed in $retainKeys")
        original = {k: v for k, v in original.items() if k in retain}

    orders = {k[len(_ORDER) :]: patch.pop(k) for k in list(patch) if k.startswith(_ORDER)}
    deletions = {k[len(_DELETE_FROM) :]: patch.pop(k) for k in list(patch) if k.startswith(_DELETE_FROM)}
    for key in patch:
        if key.startswith("$"):
            raise PatchError(f"{_where(path)}: unknown patch directive {key!r}")

    for key, value in patch.items():
        sub, field = join(path, key), field_of(type_name, key)
        current = original.get(key)
        if value is None:
            original.pop(key, None)
        elif isinstance(value, dict):
            if current is None and value.get("$patch") == "delete":
                continue  # deleting what is not there
            original[key] = _smp_map(current if isinstance(current, dict) else {}, value, field.type, sub)
        elif isinstance(value, list):
            base = current if isinstance(current, list) else []
            if field.merge_key or field.merge_set:
                original[key] = _smp_list(base, value, field, sub, orders.pop(key, None))
            else:
                original[key] = _clean(value)
        else:
            original[key] = value

    # Orders for lists the patch did not touch (kubectl sends them when only a deletion changed a list).
    for key, order in orders.items():
        field = field_of(type_name, key)
        if isinstance(original.get(key), list) and (field.merge_key or field.merge_set):
            original[key] = _smp_list(original[key], [], field, join(path, key), order)
    for key, gone in deletions.items():
        if not isinstance(gone, list):
            raise PatchError(f"{join(path, key)}: {_DELETE_FROM}{key} must be a list")
        if isinstance(original.get(key), list):
            original[key] = [v for v in original[key] if v not in gone]
    return original


def _clean(value: Any) -> Any:
    """A patch value taken whole: nulls and directive-marked objects dropped, as Kubernetes does."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if v is not None and not _directive(v) and k[:1] != "$"}
    if isinstance(value, list):
        return [_clean(v) for v in value if not _directive(v)]
    return value


def _directive(value: Any) -> bool:
    return isinstance(value, dict) and "$patch" in value


def _ident(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _smp_list(original: list[Any], patch: list[Any], field: Field, path: str, order: Any) -> list[Any]:
    if order is not None and not isinstance(order, list):
        raise PatchError(f"{path}: {_ORDER}{path.rsplit('.', 1)[-1]} must be a list")
    key = field.merge_key
    if key is None:  # a set of scalars
        if any(isinstance(v, dict | list) for v in patch):
            raise PatchError(f"{path}: this list merges as a set of scalars; it cannot hold objects")
        items = list(original)
        items += [v for n, v in enumerate(patch) if v not in original and v not in patch[:n]]
        return _ordered(items, original, order if order is not None else patch, _ident)

    def ident(item: Any) -> str:
        return _ident(item.get(key)) if isinstance(item, dict) else _ident(item)

    items = list(original)
    updates: list[Obj] = []
    replace = False
    for i, item in enumerate(patch):
        if not isinstance(item, dict):
            raise PatchError(f"{path}[{i}]: list items must be objects with the merge key {key!r}")
        directive = item.pop("$patch", None)
        if directive == "replace":
            replace = True
            continue
        if directive not in (None, "delete", "merge"):
            raise PatchError(f"{path}: $patch directive {json.dumps(directive)} is not supported")
        if key not in item:
            raise PatchError(f"{path}[{i}]: list item has no merge key {key!r}")
        if directive == "delete":
            items = [o for o in items if ident(o) != ident(item)]
        else:
            updates.append(item)
    if replace:  # the list becomes exactly the patch's other items
        items = []
    server, freed = list(items), len(original) - len(items)
    for item in updates:
        sub = f"{path}[{key}={json.dumps(item[key])}]"
        at = next((n for n, o in enumerate(items) if ident(o) == ident(item)), None)
        if at is None:
            items.append(_smp_map({}, item, field.type, sub))
        else:
            items[at] = _smp_map(items[at] if isinstance(items[at], dict) else {}, item, field.type, sub)
    if order is not None and not all(isinstance(o, dict) and key in o for o in order):
        raise PatchError(f"{path}: every {_ORDER} entry needs the merge key {key!r}")
    if order is not None and not replace:
        # Kubernetes orders against the live list as its Go code leaves it: deletions shift the slice in place
        # and the first new items land in the freed slots (upstream test "add map and delete map from merging list").
        server += items[len(server) :][:freed]
    return _ordered(items, server, order if order is not None else updates, ident)


def _ordered(items: list[Any], server: list[Any], order: list[Any], ident: Callable[[Any], str]) -> list[Any]:
    """Kubernetes' order: the items named in `order` in that order, the server-only
    items in their live order slotted in where they stood relative to the others."""
    rank = {ident(v): n for n, v in enumerate(order)}
    live = {ident(v): n for n, v in enumerate(server)}
    named = sorted((v for v in items if ident(v) in rank), key=lambda v: rank[ident(v)])
    others = [v for v in items if ident(v) not in rank]
    out: list[Any] = []
    while named or others:
        if not named or (
            others
            and ident(others[0]) in live
            and ident(named[0]) in live
            and live[ident(others[0])] < live[ident(named[0])]
        ):
            out.append(others.pop(0))
        else:
            out.append(named.pop(0))
    return out


# ---- server-side apply (apply.py; imported late: apply.py imports this module) -----------------------------------


def server_side_apply(live: Obj | None, applied: Obj, manager: str, force: bool, kind: str, now: str) -> Obj:
    from podnet.apiserver import apply

    return apply.server_side_apply(live, applied, manager, force, kind, now)


def record_update(old: Obj | None, new: Obj, manager: str, kind: str, now: str, *, subresource: str = "") -> Obj:
    from podnet.apiserver import apply

    return apply.record_update(old, new, manager, kind, now, subresource=subresource)
