"""The Kubernetes schema of every kind the API server serves, as OpenAPI v3
component schemas named as kube-apiserver names them (`io.k8s.api.core.v1.Pod`,
`io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta`), and `unknown_fields`, the
check behind `fieldValidation=Strict|Warn`.

The facts come from the official Python client's model classes: wire names
(`attribute_map`), types (`openapi_types`), descriptions and required-ness
(pydantic fields), type descriptions (docstrings). What its generator drops is
in tables here, from the OpenAPI document the client was generated from: list
semantics (`x-kubernetes-patch-merge-key` etc.: client-side apply computes its
strategic merge patch from them), each type's API group, and the descriptions
of model-typed fields that `kubectl explain` shows first.

Importing the models costs about 0.35 s of CPU (pydantic builds each class), so
nothing is imported until `load()` is first called (openapi.warm: a worker
thread at server start).
"""

from __future__ import annotations

import inspect
import re
import threading
from typing import Any

from podnet.apiserver import openapi_gateway, resources

Obj = dict[str, Any]
REF = "#/components/schemas/"
META = "io.k8s.apimachinery.pkg.apis.meta.v1."
RAW = "io.k8s.apimachinery.pkg.runtime.RawExtension"

# The API package of each non-core type (class names drop it: V1Scale, V1Deployment).
_PACKAGE: dict[str, str] = {}
for _pkg, _names in {
    "apps": "Deployment DeploymentCondition DeploymentSpec DeploymentStatus DeploymentStrategy RollingUpdateDeployment"
    " ReplicaSet ReplicaSetCondition ReplicaSetSpec ReplicaSetStatus",
    "autoscaling": "Scale ScaleSpec ScaleStatus",
    "discovery": "EndpointSlice Endpoint EndpointConditions EndpointHints ForNode ForZone",
    "networking": "NetworkPolicy NetworkPolicySpec NetworkPolicyIngressRule NetworkPolicyEgressRule"
    " NetworkPolicyPeer NetworkPolicyPort IPBlock"
    " Ingress IngressSpec IngressBackend IngressServiceBackend ServiceBackendPort IngressRule HTTPIngressRuleValue"
    " HTTPIngressPath IngressTLS IngressStatus IngressLoadBalancerStatus IngressLoadBalancerIngress IngressPortStatus"
    " IngressClass IngressClassSpec IngressClassParametersReference",
    "meta": "ObjectMeta ListMeta LabelSelector LabelSelectorRequirement OwnerReference ManagedFieldsEntry Condition"
    " Status StatusDetails StatusCause DeleteOptions Preconditions ShardInfo WatchEvent",
}.items():
    for _n in _names.split():
        _PACKAGE[_n] = _pkg
        _PACKAGE[_n + "List"] = _pkg
# A class-name prefix that disambiguates (CoreV1EndpointPort vs DiscoveryV1EndpointPort).
_PREFIX = {"Core": "core", "Discovery": "discovery", "Events": "events", "Apps": "apps", "Networking": "networking"}
_CLASS = re.compile(r"^(Core|Discovery|Events|Apps|Networking)?(V\d+(?:alpha\d+|beta\d+)?)([A-Z]\w*)$")
_MODEL_REF = re.compile(r"\b(?:Core|Discovery|Events|Apps|Networking)?V\d+(?:alpha\d+|beta\d+)?[A-Z]\w*")

# List and map semantics, from the upstream OpenAPI document: `tokens = Type.field,field Type ...` (a bare Type:
# the type itself), indented lines continue. Tokens: map:k1,k2 (x-kubernetes-list-type map with those keys),
# atomic|set (the other list types), merge[:key] (patch strategy merge, with that merge key), retainKeys (added
# to the strategy), struct-atomic (x-kubernetes-map-type atomic).
_EXTENSIONS = """\
map:name merge:name = Container.env ContainerStatus.allocatedResourcesStatus EphemeralContainer.env
    PodSpec.containers,ephemeralContainers,imagePullSecrets,initContainers,schedulingGates
map:name merge:name retainKeys = PodSpec.resourceClaims,volumes PodStatus.resourceClaimStatuses
map:containerPort,protocol merge:containerPort = Container.ports EphemeralContainer.ports
map:mountPath merge:mountPath = Container.volumeMounts ContainerStatus.volumeMounts EphemeralContainer.volumeMounts
map:devicePath merge:devicePath = Container.volumeDevices EphemeralContainer.volumeDevices
map:type merge:type = DeploymentStatus.conditions NamespaceStatus.conditions NodeStatus.addresses,conditions
    PodStatus.conditions ReplicaSetStatus.conditions ServiceStatus.conditions
map:ip merge:ip = PodSpec.hostAliases PodStatus.podIPs
map:topologyKey,whenUnsatisfiable merge:topologyKey = PodSpec.topologySpreadConstraints
map:uid merge:uid = ObjectMeta.ownerReferences
map:port,protocol merge:port = ServiceSpec.ports
map:name = ResourceRequirements.claims
map:resourceID = ResourceStatus.resources
atomic merge:ip = PodStatus.hostIPs
set merge = NodeSpec.podCIDRs ObjectMeta.finalizers
set = ContainerRestartRuleOnExitCodes.values Endpoint.addresses NodeAllocatableResourceClaimStatus.containers
retainKeys = DeploymentSpec.strategy
struct-atomic = ConfigMapKeySelector EndpointAddress EndpointPort FileKeySelector LabelSelector LocalObjectReference
    NodeSelector NodeSelectorTerm ObjectFieldSelector ObjectReference OwnerReference PodSpec.nodeSelector
    ResourceFieldSelector SecretKeySelector ServiceSpec.selector TypedLocalObjectReference
atomic = Capabilities.add,drop CephFSVolumeSource.monitors ConfigMapProjection.items ConfigMapVolumeSource.items
    Container.args,command,envFrom,resizePolicy,restartPolicyRules ContainerImage.names DeleteOptions.dryRun
    DownwardAPIProjection.items DownwardAPIVolumeSource.items EndpointHints.forNodes,forZones
    EndpointSlice.endpoints,ports EndpointSubset.addresses,notReadyAddresses,ports Endpoints.subsets
    EphemeralContainer.args,command,envFrom,resizePolicy,restartPolicyRules ExecAction.command
    FCVolumeSource.targetWWNs,wwids HTTPGetAction.httpHeaders HostAlias.hostnames IPBlock.except
    ISCSIVolumeSource.portals LabelSelector.matchExpressions LabelSelectorRequirement.values
    LinuxContainerUser.supplementalGroups LoadBalancerIngress.ports LoadBalancerStatus.ingress
    NamespaceSpec.finalizers NetworkPolicyEgressRule.ports,to NetworkPolicyIngressRule.from,ports
    NetworkPolicySpec.egress,ingress,policyTypes NodeAffinity.preferredDuringSchedulingIgnoredDuringExecution
    NodeSelector.nodeSelectorTerms NodeSelectorRequirement.values NodeSelectorTerm.matchExpressions,matchFields
    NodeSpec.taints NodeStatus.declaredFeatures,images,runtimeHandlers,volumesAttached,volumesInUse
    ObjectMeta.managedFields PersistentVolumeClaimSpec.accessModes
    PodAffinity.preferredDuringSchedulingIgnoredDuringExecution,requiredDuringSchedulingIgnoredDuringExecution
    PodAffinityTerm.matchLabelKeys,mismatchLabelKeys,namespaces
    PodAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution,requiredDuringSchedulingIgnoredDuringExecution
    PodDNSConfig.nameservers,options,searches PodExtendedResourceClaimStatus.requestMappings
    PodSecurityContext.supplementalGroups,sysctls PodSpec.readinessGates,tolerations
    PodStatus.containerStatuses,ephemeralContainerStatuses,initContainerStatuses,nodeAllocatableResourceClaimStatuses
    ProjectedVolumeSource.sources RBDVolumeSource.monitors SecretProjection.items SecretVolumeSource.items
    ServiceSpec.clusterIPs,externalIPs,ipFamilies,loadBalancerSourceRanges StatusDetails.causes
    TopologySpreadConstraint.matchLabelKeys"""

# Descriptions of model-typed fields that `kubectl explain <kind>` lists first (the client drops them all);
# "@x" is the API conventions' "More info" link to section x.
_FIELD_DOCS_TEXT = """\
metadata: Standard object's metadata. @metadata
List.metadata: Standard list metadata. @types-kinds
Pod.spec: Specification of the desired behavior of the pod. @spec-and-status
Pod.status: Most recently observed status of the pod. This data may not be up to date. Populated by the system. \
Read-only. @spec-and-status
PodTemplateSpec.spec: Specification of the desired behavior of the pod. @spec-and-status
Deployment.spec: Specification of the desired behavior of the Deployment.
Deployment.status: Most recently observed status of the Deployment.
ReplicaSet.spec: Spec defines the specification of the desired behavior of the ReplicaSet. @spec-and-status
ReplicaSet.status: Status is the most recently observed status of the ReplicaSet. This data may be out of date by \
some window of time. Populated by the system. Read-only. @spec-and-status
Service.spec: Spec defines the behavior of a service. @spec-and-status
Service.status: Most recently observed status of the service. Populated by the system. Read-only. @spec-and-status
Node.spec: Spec defines the behavior of a node. @spec-and-status
Node.status: Most recently observed status of the node. Populated by the system. Read-only. @spec-and-status
Namespace.spec: Spec defines the behavior of the Namespace. @spec-and-status
Namespace.status: Status describes the current status of a Namespace. @spec-and-status
NetworkPolicy.spec: spec represents the specification of the desired behavior for this NetworkPolicy.
Scale.spec: spec defines the behavior of the scale. @spec-and-status.
Scale.status: status is the current status of the scale. @spec-and-status. Read-only."""
_MORE = "More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#"
_FIELD_DOCS = {k: v.replace("@", _MORE) for k, _, v in (ln.partition(": ") for ln in _FIELD_DOCS_TEXT.splitlines())}

# Types the client flattens to str, datetime or object: name under io.k8s.apimachinery.pkg., type, format,
# description.
_SCALARS_TEXT = """\
apis.meta.v1.Time string date-time Time is a wrapper around time.Time which supports correct marshaling to YAML \
and JSON.
apis.meta.v1.MicroTime string date-time MicroTime is version of Time with microsecond level precision.
util.intstr.IntOrString string int-or-string IntOrString is a type that can hold an int32 or a string.
apis.meta.v1.FieldsV1 object - FieldsV1 stores a set of fields in a data structure like a Trie, in JSON format.
runtime.RawExtension object - RawExtension is used to hold extensions in external versions.
apis.meta.v1.Patch object - Patch is provided to give a concrete name and type to the Kubernetes PATCH request body."""
_SCALARS: dict[str, Obj] = {}
for _name, _type_, _format, _desc in (ln.split(" ", 3) for ln in _SCALARS_TEXT.splitlines()):
    _SCALARS["io.k8s.apimachinery.pkg." + _name] = {"description": _desc, "type": _type_}
    if _format != "-":
        _SCALARS["io.k8s.apimachinery.pkg." + _name]["format"] = _format
_MICROTIME = {("Event", "eventTime"), ("EventSeries", "lastObservedTime")}
_OBJECT_FIELDS = {("ManagedFieldsEntry", "fieldsV1"): META + "FieldsV1", ("WatchEvent", "object"): RAW}
_PRIMITIVES: dict[str, Obj] = {"str": {"type": "string"}, "int": {"type": "integer"}, "bool": {"type": "boolean"}}


def def_name(class_name: str) -> str:
    """V1Pod -> io.k8s.api.core.v1.Pod; V1ObjectMeta -> io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta."""
    m = _CLASS.match(class_name)
    if not m:
        raise ValueError("not a Kubernetes model class name: %s" % class_name)
    prefix, version, short = m.groups()
    pkg = _PREFIX[prefix] if prefix else _PACKAGE.get(short, "core")
    if pkg == "meta":
        return "io.k8s.apimachinery.pkg.apis.meta.%s.%s" % (version.lower(), short)
    return "io.k8s.api.%s.%s.%s" % (pkg, version.lower(), short)


def model_name(kind: str, group: str, version: str) -> list[str]:
    """Candidate client class names for a kind, the group-qualified one first (CoreV1Event before V1Event)."""
    v = version[0].upper() + version[1:]
    return ["%s%s%s" % ("Core" if not group else group.split(".")[0].capitalize(), v, kind), v + kind]


def _extensions() -> dict[tuple[str, str], Obj]:
    """The _EXTENSIONS table as {(type, field or ''): {x-kubernetes-...: value}}."""
    out: dict[tuple[str, str], Obj] = {}
    for line in _EXTENSIONS.replace("\n    ", " ").splitlines():
        tokens, _, items = line.partition(" = ")
        ext: Obj = {}
        strategy: list[str] = []
        for tok in tokens.split():
            word, _, arg = tok.partition(":")
            if word in ("atomic", "set"):
                ext["x-kubernetes-list-type"] = word
            elif word == "map":
                ext["x-kubernetes-list-type"], ext["x-kubernetes-list-map-keys"] = "map", arg.split(",")
            elif word == "merge":
                strategy.insert(0, "merge")
                if arg:
                    ext["x-kubernetes-patch-merge-key"] = arg
            elif word == "retainKeys":
                strategy.append(word)
            elif word == "struct-atomic":
                ext["x-kubernetes-map-type"] = "atomic"
        if strategy:
            ext["x-kubernetes-patch-strategy"] = ",".join(strategy)
        for item in items.split():
            typ, _, fields = item.partition(".")
            for f in fields.split(","):
                out[(typ, f)] = ext
    return out


class Schema:
    """The component schemas of everything served, and the kinds among them."""

    def __init__(self, defs: dict[str, Obj], kinds: dict[tuple[str, str, str], str]):
        self.defs = defs
        self.kinds = kinds  # (group, version, kind) -> definition name

    def root(self, kind: str, api_version: str | None = None) -> str | None:
        group, _, version = (api_version or "").rpartition("/")
        for (g, v, k), name in self.kinds.items():
            if k == kind and (not api_version or (g, v) == (group, version)):
                return name
        return None


_lock = threading.Lock()
_built: Schema | None = None


def load() -> Schema:
    """The schema, built on first use (thread-safe: concurrent callers wait for the one build)."""
    global _built
    with _lock:
        if _built is None:
            from podnet.apiserver import schemacache

            _built = schemacache.read() or _build()
        return _built


def _roots() -> dict[str, list[dict[str, str]]]:
    """Client class name -> the GVKs it is served as: each served kind, its List, and the meta kinds."""
    import kubernetes.client.models as models  # the package resolves each class lazily; see the module doc

    known = set(models.__all__)
    out: dict[str, list[dict[str, str]]] = {}
    gvs = [("", "v1")]
    for r in resources.RESOURCES:
        if (r.group, r.version) not in gvs:
            gvs.append((r.group, r.version))
        names = [n for n in model_name(r.kind.kind, r.group, r.version) if n in known]
        if not names:
            continue  # a kind the Python client has no model for: openapi_gateway's, or served without a schema
        for suffix in ("", "List"):
            out[names[0] + suffix] = [{"group": r.group, "kind": r.kind.kind + suffix, "version": r.version}]
    out["V1Status"] = [{"group": "", "kind": "Status", "version": "v1"}]
    out["V1Scale"] = [{"group": "autoscaling", "kind": "Scale", "version": "v1"}]
    for meta in ("DeleteOptions", "WatchEvent"):  # every group-version decodes these
        out["V1" + meta] = [{"group": g, "kind": meta, "version": v} for g, v in gvs]
    return out


def _build() -> Schema:
    import kubernetes.client.models as models

    roots = _roots()
    classes: dict[str, Any] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name not in classes:
            classes[name] = getattr(models, name)
            todo.extend(_MODEL_REF.findall(" ".join(classes[name].openapi_types.values())))
    docs = {def_name(n): _doc(c) for n, c in classes.items()}
    ext = _extensions()
    defs: dict[str, Obj] = {name: dict(s) for name, s in _SCALARS.items()}
    kinds: dict[tuple[str, str, str], str] = {}
    for n, cls in sorted(classes.items()):
        name = def_name(n)
        defs[name] = _definition(cls, name.rpartition(".")[2], docs, ext)
        if n in roots:
            defs[name]["x-kubernetes-group-version-kind"] = roots[n]
            if len(roots[n]) == 1:
                gvk = roots[n][0]
                kinds[(gvk["group"], gvk["version"], gvk["kind"])] = name
    gateway_defs, gateway_kinds = openapi_gateway.definitions()  # the kinds the client has no models for
    defs.update(gateway_defs)
    kinds.update(gateway_kinds)
    return Schema(defs, kinds)


def _doc(cls: Any) -> str:
    """The class docstring less the generator's `Attributes:` boilerplate."""
    return inspect.cleandoc(cls.__doc__ or "").split("\n\nAttributes:")[0].strip()


def _definition(cls: Any, short: str, docs: dict[str, str], ext: dict[tuple[str, str], Obj]) -> Obj:
    # Wire name -> client type string, and wire name -> pydantic field (the python names differ: var_exec).
    types = {cls.attribute_map[a]: t for a, t in cls.openapi_types.items()}
    fields = {f.serialization_alias or f.alias or a: f for a, f in cls.model_fields.items()}
    props: Obj = {}
    for wire, tstr in types.items():
        field = fields.get(wire)
        props[wire] = _property(short, wire, tstr, field, docs)
        props[wire].update(ext.get((short, wire), {}))
    out: Obj = {}
    if docs.get(def_name(cls.__name__)):
        out["description"] = docs[def_name(cls.__name__)]
    out["properties"] = props
    required = [w for w, f in fields.items() if f.is_required() and w in types]
    if required:
        out["required"] = required
    out["type"] = "object"
    out.update(ext.get((short, ""), {}))
    return out


def _property(short: str, wire: str, tstr: str, field: Any, docs: dict[str, str]) -> Obj:
    desc = field.description if field is not None else None
    if (short, wire) in _OBJECT_FIELDS:
        target = _OBJECT_FIELDS[(short, wire)]
    elif tstr == "datetime":
        target = META + ("MicroTime" if (short, wire) in _MICROTIME else "Time")
    elif tstr == "object" and "int" in repr(field.annotation) and "str" in repr(field.annotation):
        target = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"  # the client types these `int | str`
    elif _MODEL_REF.fullmatch(tstr):
        target = def_name(tstr)
    else:
        out = _type(tstr)
        if desc:
            out = {"description": desc, **out}
        return out
    desc = desc or _FIELD_DOCS.get("%s.%s" % (short, wire))
    if not desc and wire == "metadata":
        desc = _FIELD_DOCS["List.metadata" if target.endswith(".ListMeta") else "metadata"]
    if desc:
        return {"allOf": [{"$ref": REF + target}], "description": desc}
    # The client lost this field's description. A bare $ref with the type's own description beside it
    # shows that text once in `kubectl explain` (allOf would print it twice: field, then type).
    fallback = docs.get(target) or _SCALARS.get(target, {}).get("description")
    return {"$ref": REF + target, "description": fallback} if fallback else {"$ref": REF + target}


def _type(tstr: str) -> Obj:
    """A client type string (str, List[V1Container], Dict[str, str]) as a schema."""
    if tstr.startswith("List[") and tstr.endswith("]"):
        item = _type(tstr[5:-1])
        if "$ref" in item:
            item = {"allOf": [item], "default": {}}
        return {"type": "array", "items": item}
    if tstr.startswith("Dict[str, ") and tstr.endswith("]"):
        return {"type": "object", "additionalProperties": _type(tstr[10:-1])}
    if _MODEL_REF.fullmatch(tstr):
        return {"$ref": REF + def_name(tstr)}
    return dict(_PRIMITIVES.get(tstr, {"type": "object"}))


def refs(node: Any) -> list[str]:
    """The definitions a schema (or any part of a document) refers to."""
    if isinstance(node, dict):
        own = [node["$ref"][len(REF) :]] if "$ref" in node else []
        return own + [r for v in node.values() for r in refs(v)]
    return [r for v in node for r in refs(v)] if isinstance(node, list) else []


def closure(defs: dict[str, Obj], paths: Obj) -> dict[str, Obj]:
    """The definitions `node` (paths, a schema) uses, and the ones those use: what a document holds."""
    todo, out = refs(paths), {}
    while todo:
        name = todo.pop()
        if name not in out:
            out[name] = defs[name]
            todo.extend(refs(defs[name]))
    return dict(sorted(out.items()))


def unknown_fields(obj: Obj, kind: str | None = None, api_version: str | None = None, prune: bool = False) -> list[str]:
    """Every field path in `obj` that the Kubernetes schema of its kind does not define, in document order,
    as kube-apiserver's strict decoding names them: `spec.foo`, `spec.template.spec.containers[0].imagee`.
    The kind and apiVersion default to the object's own; [] for a kind without a schema. prune: also remove
    them from obj, as decoding into kube-apiserver's Go types drops them."""
    s = load()
    name = s.root(kind or str(obj.get("kind") or ""), api_version or obj.get("apiVersion"))
    out: list[str] = []
    if name is not None:
        _walk(s.defs, s.defs[name], obj, "", out, prune)
    return out


def _resolve(defs: dict[str, Obj], schema: Obj) -> Obj:
    while True:
        if "$ref" in schema:
            schema = defs[schema["$ref"][len(REF) :]]
        elif "allOf" in schema:
            schema = schema["allOf"][0]
        else:
            return schema


def _walk(defs: dict[str, Obj], schema: Obj, value: Any, path: str, out: list[str], prune: bool) -> None:
    schema = _resolve(defs, schema)
    props = schema.get("properties")
    if props is not None and isinstance(value, dict):
        for k, v in list(value.items()):
            p = "%s.%s" % (path, k) if path else str(k)
            if k in props:
                _walk(defs, props[k], v, p, out, prune)
            else:
                out.append(p)
                if prune:
                    del value[k]
    elif "items" in schema and isinstance(value, list):
        for i, item in enumerate(value):
            _walk(defs, schema["items"], item, "%s[%d]" % (path, i), out, prune)
    elif isinstance(schema.get("additionalProperties"), dict) and isinstance(value, dict):
        for k, v in value.items():
            _walk(defs, schema["additionalProperties"], v, "%s[%s]" % (path, k), out, prune)
    # anything else is a scalar or a free-form object (FieldsV1, RawExtension): nothing to check
