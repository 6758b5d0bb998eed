"""Store keys (see podnet.store.base).

    /registry/<plural>/<namespace>/<name>   namespaced kinds
    /registry/<plural>/<name>               cluster-scoped kinds

Every prefix ends in "/", so "/registry/pods/default/" never also lists the
namespace "default2".
"""

from podnet.api.kinds import KINDS, Kind, stored_kind
from podnet.api.meta import ApiError
from podnet.api.types import Obj

ROOT = "/registry/"


def _segment(what: str, value: object) -> str:
    if not isinstance(value, str) or not value or "/" in value:
        raise ApiError("%s must be a non-empty string without '/', got %r" % (what, value))
    return value


def key_for(kind: str | Kind, namespace: str | None, name: str | None) -> str:
    """The store key of one object. kind: a Kind or any name resolve_kind
    accepts. namespace is required for namespaced kinds and ignored for
    cluster-scoped ones."""
    k = stored_kind(kind)
    if k.namespaced:
        return "%s%s/%s/%s" % (ROOT, k.plural, _segment("namespace", namespace), _segment("name", name))
    return "%s%s/%s" % (ROOT, k.plural, _segment("name", name))


def prefix_for(kind: str | Kind, namespace: str | None = None) -> str:
    """The list prefix: all objects of kind, or those in one namespace."""
    k = stored_kind(kind)
    if k.namespaced and namespace:
        return "%s%s/%s/" % (ROOT, k.plural, _segment("namespace", namespace))
    return "%s%s/" % (ROOT, k.plural)


def key_of(obj: Obj) -> str:
    """key_for(obj's kind, namespace, name); a namespaced object without a
    namespace is in "default"."""
    meta = obj.get("metadata") or {}
    k = stored_kind(obj.get("kind"))
    return key_for(k, (meta.get("namespace") or "default") if k.namespaced else None, meta.get("name"))


def parse_key(key: str) -> tuple[Kind, str | None, str]:
    """'/registry/pods/default/web' -> (POD, 'default', 'web');
    '/registry/nodes/n1' -> (NODE, None, 'n1')."""
    if isinstance(key, str) and key.startswith(ROOT):
        parts = key[len(ROOT) :].split("/")
        for k in KINDS.values():
            if parts[0] == k.plural and len(parts) == (3 if k.namespaced else 2) and all(parts[1:]):
                return (k, parts[1], parts[2]) if k.namespaced else (k, None, parts[1])
    raise ApiError("not an object key: %r" % (key,))
