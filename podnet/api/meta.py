"""Errors, Kubernetes name syntax, and object metadata helpers.

Everything here is pure: no I/O, no other podnet imports. The syntax checkers
return None for a valid value and otherwise the user-facing reason (what is
allowed), so validators can put the field path in front.
"""

import re
import uuid
from datetime import UTC, datetime
from typing import NoReturn

from podnet.api.types import JSON, Obj

# ---- errors -------------------------------------------------------------------


class ApiError(Exception):
    """An error whose message is meant for the user as is."""


class FieldError(ApiError):
    """One field of one object is wrong: str() is '<path>: <reason>'."""

    def __init__(self, path: str, reason: str):
        self.path = path
        self.reason = reason
        super().__init__("%s: %s" % (path, reason) if path else reason)


class ManifestError(ApiError):
    """A manifest (file or stdin) is not acceptable; names the source, the
    document (1-based, as it stands in the stream) and the field path."""

    def __init__(self, message: str, source: str = "<stdin>", document: int | None = None, path: str | None = None):
        self.source = source
        self.document = document
        self.path = path
        super().__init__(message)


def fail(path: str, reason: str) -> NoReturn:
    raise FieldError(path, reason)


# ---- name syntax (k8s.io/apimachinery/pkg/util/validation) -------------------

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_LABEL = re.compile(r"^%s$" % _LABEL)
_DNS1123_SUBDOMAIN = re.compile(r"^%s(\.%s)*$" % (_LABEL, _LABEL))
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_IANA_SVC_NAME = re.compile(r"^[-a-z0-9]+$")


def _shown(value: object) -> str:
    return "'%s'" % value if isinstance(value, str) else repr(value)


def quote_hint(value: object) -> str:
    """YAML turns true, 1 and 1.5 into non-strings: say how to keep them text.
    (A float is not shown: YAML already made 1.10 into 1.1.)"""
    if isinstance(value, bool):
        return " (quote it: '%s')" % str(value).lower()
    if isinstance(value, int):
        return " (quote it: '%s')" % value
    if isinstance(value, float):
        return " (quote it)"
    return ""


def dns_label(value: object) -> str | None:
    """RFC 1123 label: namespaces, container names, port names of services."""
    if not isinstance(value, str) or len(value) > 63 or not _DNS1123_LABEL.match(value):
        return (
            "must be a DNS-1123 label (lowercase letters, digits and '-', starting and "
            "ending with a letter or digit, at most 63 characters), got %s" % _shown(value)
        )
    return None


def dns_subdomain(value: object) -> str | None:
    """RFC 1123 subdomain: names of most objects, node names, externalName."""
    if not isinstance(value, str) or len(value) > 253 or not _DNS1123_SUBDOMAIN.match(value):
        return (
            "must be a DNS-1123 subdomain (lowercase letters, digits, '-' and '.', each "
            "dot-separated part starting and ending with a letter or digit, at most 253 "
            "characters), got %s" % _shown(value)
        )
    return None


def dns1035_label(value: object) -> str | None:
    """RFC 1035 label: Service names (they become DNS names and env variables)."""
    if not isinstance(value, str) or len(value) > 63 or not _DNS1035_LABEL.match(value):
        return (
            "must be a DNS-1035 label (lowercase letters, digits and '-', starting with a "
            "letter and ending with a letter or digit, at most 63 characters), got %s" % _shown(value)
        )
    return None


def label_key(value: object) -> str | None:
    """Label and annotation keys: [prefix/]name, prefix a DNS subdomain."""
    if not isinstance(value, str):
        return "keys must be strings, got %s" % _shown(value)
    prefix, _, name = value.rpartition("/")
    if "/" in value and (not prefix or dns_subdomain(prefix)):
        return "key %s: the prefix before '/' must be a DNS-1123 subdomain" % _shown(value)
    if len(name) > 63 or not _QUALIFIED_NAME.match(name):
        return (
            "key %s: the name must be 1-63 characters: letters, digits, '-', '_' and '.', "
            "starting and ending with a letter or digit (with an optional "
            "'example.com/' prefix)" % _shown(value)
        )
    return None


def label_value(value: object) -> str | None:
    if not isinstance(value, str):
        return "values must be strings%s, got %s" % (quote_hint(value), _shown(value))
    if len(value) > 63 or not _LABEL_VALUE.match(value):
        return (
            "value %s: at most 63 characters: letters, digits, '-', '_' and '.', starting "
            "and ending with a letter or digit (or empty)" % _shown(value)
        )
    return None


def iana_svc_name(value: object) -> str | None:
    """Port names of containers (IANA_SVC_NAME): at most 15 characters,
    lowercase letters, digits and '-', at least one letter, no '--', no '-' at
    either end."""
    if (
        not isinstance(value, str)
        or not 0 < len(value) <= 15
        or not _IANA_SVC_NAME.match(value)
        or not re.search(r"[a-z]", value)
        or "--" in value
        or value.startswith("-")
        or value.endswith("-")
    ):
        return (
            "must be a port name (IANA_SVC_NAME: at most 15 characters, lowercase letters, "
            "digits and '-', at least one letter, no '-' at either end or twice in a row), "
            "got %s" % _shown(value)
        )
    return None


# ---- metadata helpers ---------------------------------------------------------

TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

Now = None | float | int | datetime


def _as_datetime(now: Now) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if isinstance(now, datetime):
        return now if now.tzinfo else now.replace(tzinfo=UTC)
    return datetime.fromtimestamp(now, UTC)


def rfc3339(now: Now = None) -> str:
    """'2026-11-21T22:27:00Z' for now (or the given epoch seconds/datetime)."""
    return _as_datetime(now).astimezone(UTC).strftime(TIME_FORMAT)


def parse_time(text: object) -> datetime:
    """RFC 3339 timestamp ('...Z', '...+00:00', fractional seconds) -> aware datetime."""
    if not isinstance(text, str):
        raise ApiError("not a timestamp: %r" % (text,))
    t = text.strip()
    if t.endswith(("Z", "z")):
        t = t[:-1] + "+00:00"
    try:
        d = datetime.fromisoformat(t)
    except ValueError:
        raise ApiError("not an RFC 3339 timestamp: %r" % text) from None
    return d if d.tzinfo else d.replace(tzinfo=UTC)


def new_meta(obj: Obj) -> Obj:
    """obj's metadata mapping, created (empty) when missing or null."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        meta = obj["metadata"] = {}
    return meta


def stamp(obj: Obj, uid: str | None = None, now: Now = None) -> Obj:
    """Fill metadata.uid (uid or a uuid4) and metadata.creationTimestamp (now,
    RFC 3339 UTC) where missing, in place; returns obj."""
    meta = new_meta(obj)
    if not meta.get("uid"):
        meta["uid"] = uid or str(uuid.uuid4())
    if not meta.get("creationTimestamp"):
        meta["creationTimestamp"] = rfc3339(now)
    return obj


def human_duration(seconds: float) -> str:
    """kubectl's duration.HumanDuration: '5s', '3m20s', '3m', '2h5m', '4d', '2y3d'."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return "%ds" % s
    minutes = s // 60
    if minutes < 10:
        return "%dm%ds" % (minutes, s % 60) if s % 60 else "%dm" % minutes
    if minutes < 180:
        return "%dm" % minutes
    hours = s // 3600
    if hours < 8:
        return "%dh%dm" % (hours, minutes % 60) if minutes % 60 else "%dh" % hours
    if hours < 48:
        return "%dh" % hours
    if hours < 24 * 8:
        return "%dd%dh" % (hours // 24, hours % 24) if hours % 24 else "%dd" % (hours // 24)
    if hours < 24 * 365 * 2:
        return "%dd" % (hours // 24)
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return "%dy%dd" % (hours // 24 // 365, days) if days else "%dy" % (hours // 24 // 365)
    return "%dy" % (hours // 24 // 365)


def age(obj: Obj | str | None, now: Now = None) -> str:
    """kubectl's AGE column for obj (or a timestamp string): '5s', '3m', '2h', '4d'."""
    ts: JSON = obj
    if isinstance(obj, dict):
        ts = (obj.get("metadata") or {}).get("creationTimestamp")
    if not ts:
        return "<unknown>"
    try:
        born = parse_time(ts)
    except ApiError:
        return "<unknown>"
    return human_duration((_as_datetime(now) - born).total_seconds())


def ref(obj: Obj) -> str:
    """'Kind/name' (or 'Kind/namespace/name' when namespaced) for messages."""
    meta = obj.get("metadata") or {}
    parts = [str(obj.get("kind") or "?")]
    if meta.get("namespace"):
        parts.append(str(meta["namespace"]))
    parts.append(str(meta.get("name") or "?"))
    return "/".join(parts)


def owner_reference(owner: Obj, controller: bool = True) -> Obj:
    """An ownerReferences entry pointing at owner (which must be stamped)."""
    meta = owner.get("metadata") or {}
    if not meta.get("uid"):
        raise ApiError("%s has no metadata.uid: stamp() it first" % ref(owner))
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": controller,
        "blockOwnerDeletion": True,
    }


def controller_of(obj: Obj) -> Obj | None:
    """The ownerReferences entry with controller: true, or None."""
    for r in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if isinstance(r, dict) and r.get("controller"):
            return r
    return None
