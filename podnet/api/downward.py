"""The downward API for environment variables: `env[].valueFrom.fieldRef`.

A container learns its pod's name, namespace, IP or node the way Kubernetes
tells it (`valueFrom: {fieldRef: {fieldPath: status.podIP}}`); network tools
rely on it (a pod that must announce its own address). The agent resolves the
variables when it starts a container, after the pod has its IP; `kubectl exec`
gets the same environment.
"""

import re

from podnet.api.meta import fail
from podnet.api.types import Obj

# Kubernetes' validEnvDownwardAPIFieldPathExpressions, plus labels/annotations by key.
FIELD_PATHS = (
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
)
_SUBSCRIPT = re.compile(r"^metadata\.(labels|annotations)\['([^']+)'\]$")


def check_field_path(value: object, path: str) -> str:
    """A fieldRef.fieldPath podnet can resolve, or FieldError at `path`."""
    if isinstance(value, str) and (value in FIELD_PATHS or _SUBSCRIPT.match(value)):
        return value
    fail(
        path,
        "must be one of %s, or metadata.labels['KEY'] / metadata.annotations['KEY'], got %r"
        % (", ".join(FIELD_PATHS), value),
    )


def field_value(pod: Obj, field_path: str, pod_ip: str, host_ip: str) -> str:
    """The value of one fieldPath for a pod running with pod_ip on a node at host_ip."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    sub = _SUBSCRIPT.match(field_path)
    if sub:
        return str((meta.get(sub.group(1)) or {}).get(sub.group(2), ""))
    values = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName") or "default",
        "status.hostIP": host_ip,
        "status.hostIPs": host_ip,
        "status.podIP": pod_ip,
        "status.podIPs": pod_ip,
    }
    return str(values.get(field_path, ""))


def container_env(pod: Obj, container: Obj, pod_ip: str, host_ip: str) -> dict[str, str]:
    """{name: value} of a container's env, in order, with fieldRefs resolved and
    $(VAR) references to earlier variables expanded as Kubernetes does ($$ is a
    literal $; an unknown reference is kept as written)."""
    out: dict[str, str] = {}
    for e in container.get("env") or []:
        name = e.get("name")
        if not name:
            continue
        ref = ((e.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
        if ref:
            out[name] = field_value(pod, ref, pod_ip, host_ip)
        else:
            out[name] = expand(str(e.get("value") or ""), out)
    return out


_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion of a value from the variables defined before it."""

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return _REF.sub(one, text)
