"""Typed field accessors for the validators: check, default, and say where.

Each takes the parent mapping, the field name and the parent's path, and
raises FieldError('<path>.<field>: <what is allowed>'). A null value counts as
absent (as in Kubernetes' JSON): it is removed, or replaced by the default.
"""

import ipaddress
from collections.abc import Callable, Collection
from typing import Literal, TypeGuard, overload

from podnet.api.meta import fail, iana_svc_name, label_key, label_value
from podnet.api.types import JSON, Obj

Check = Callable[[str], str | None]
"""A syntax checker: None for a valid value, else the reason."""

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_MISSING = object()


def join(base: str, key: str) -> str:
    return "%s.%s" % (base, key) if base else key


def index(base: str, i: int) -> str:
    return "%s[%d]" % (base, i)


def is_int(v: object) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool)


def typename(v: object) -> str:
    if v is None:
        return "null"
    for t, name in (
        (bool, "boolean"),
        (int, "integer"),
        (float, "number"),
        (str, "string"),
        (dict, "mapping"),
        (list, "list"),
    ):
        if isinstance(v, t):
            return name
    return type(v).__name__


def shown(v: object) -> str:
    return "'%s'" % v if isinstance(v, str) else repr(v)


def _take(d: Obj, key: str, base: str, required: bool, default: JSON = _MISSING) -> object:
    v = d.get(key)
    if v is None:
        if default is not _MISSING:
            d[key] = default
            return default
        d.pop(key, None)
        if required:
            fail(join(base, key), "required")
    return v


def need_map(v: object, path: str) -> Obj:
    if not isinstance(v, dict):
        fail(path, "must be a mapping, got %s" % typename(v))
    return v


# The overloads say what the checks guarantee: a required field, or one with a
# default, is never None on return.


@overload
def opt_map(d: Obj, key: str, base: str, required: Literal[True]) -> Obj: ...
@overload
def opt_map(d: Obj, key: str, base: str, required: bool = False) -> Obj | None: ...
def opt_map(d: Obj, key: str, base: str, required: bool = False) -> Obj | None:
    v = _take(d, key, base, required)
    return None if v is None else need_map(v, join(base, key))


def opt_list(d: Obj, key: str, base: str, required: bool = False, nonempty: bool = False) -> list[JSON] | None:
    v = _take(d, key, base, required)
    if v is None:
        return None
    p = join(base, key)
    if not isinstance(v, list):
        fail(p, "must be a list, got %s" % typename(v))
    if nonempty and not v:
        fail(p, "must have at least one item")
    return v


def opt_maps(d: Obj, key: str, base: str, required: bool = False, nonempty: bool = False) -> list[tuple[Obj, str]]:
    """[(item, item_path)] of a list of mappings (empty when absent)."""
    items = opt_list(d, key, base, required, nonempty) or []
    p = join(base, key)
    return [(need_map(item, index(p, i)), index(p, i)) for i, item in enumerate(items)]


@overload
def opt_str(
    d: Obj,
    key: str,
    base: str,
    required: Literal[True],
    default: JSON = ...,
    check: Check | None = None,
    nonempty: bool = False,
) -> str: ...
@overload
def opt_str(
    d: Obj,
    key: str,
    base: str,
    required: bool = False,
    *,
    default: str,
    check: Check | None = None,
    nonempty: bool = False,
) -> str: ...
@overload
def opt_str(
    d: Obj,
    key: str,
    base: str,
    required: bool = False,
    default: JSON = ...,
    check: Check | None = None,
    nonempty: bool = False,
) -> str | None: ...
def opt_str(
    d: Obj,
    key: str,
    base: str,
    required: bool = False,
    default: JSON = _MISSING,
    check: Check | None = None,
    nonempty: bool = False,
) -> str | None:
    v = _take(d, key, base, required, default)
    if v is None:
        return None
    p = join(base, key)
    if not isinstance(v, str):
        fail(p, "must be a string, got %s %s" % (typename(v), shown(v)))
    if nonempty and not v:
        fail(p, "must not be empty")
    if check is not None:
        why = check(v)
        if why:
            fail(p, why)
    return v


@overload
def str_list(
    d: Obj, key: str, base: str, required: Literal[True], nonempty: bool = False, check: Check | None = None
) -> list[str]: ...
@overload
def str_list(
    d: Obj, key: str, base: str, required: bool = False, nonempty: bool = False, check: Check | None = None
) -> list[str] | None: ...
def str_list(
    d: Obj, key: str, base: str, required: bool = False, nonempty: bool = False, check: Check | None = None
) -> list[str] | None:
    items = opt_list(d, key, base, required, nonempty)
    for i, v in enumerate(items or []):
        p = index(join(base, key), i)
        if not isinstance(v, str):
            fail(p, "must be a string, got %s %s" % (typename(v), shown(v)))
        why = check(v) if check else None
        if why:
            fail(p, why)
    return items


def int_range(lo: int | None, hi: int | None) -> str:
    if lo is not None and hi is not None:
        return "%d-%d" % (lo, hi)
    if lo is not None:
        return ">= %d" % lo
    assert hi is not None, "int_range needs a bound"
    return "<= %d" % hi


def check_int(v: object, path: str, lo: int | None = None, hi: int | None = None) -> int:
    if not is_int(v):
        fail(
            path,
            "must be an integer%s, got %s %s"
            % ("" if lo is None and hi is None else " " + int_range(lo, hi), typename(v), shown(v)),
        )
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        fail(path, "must be %s" % int_range(lo, hi))
    return v


@overload
def opt_int(
    d: Obj,
    key: str,
    base: str,
    lo: int | None = None,
    hi: int | None = None,
    *,
    required: Literal[True],
    default: JSON = ...,
) -> int: ...
@overload
def opt_int(
    d: Obj,
    key: str,
    base: str,
    lo: int | None = None,
    hi: int | None = None,
    required: bool = False,
    *,
    default: int,
) -> int: ...
@overload
def opt_int(
    d: Obj,
    key: str,
    base: str,
    lo: int | None = None,
    hi: int | None = None,
    required: bool = False,
    default: JSON = ...,
) -> int | None: ...
def opt_int(
    d: Obj,
    key: str,
    base: str,
    lo: int | None = None,
    hi: int | None = None,
    required: bool = False,
    default: JSON = _MISSING,
) -> int | None:
    v = _take(d, key, base, required, default)
    return None if v is None else check_int(v, join(base, key), lo, hi)


def opt_bool(d: Obj, key: str, base: str, default: JSON = _MISSING) -> bool | None:
    v = _take(d, key, base, False, default)
    if v is not None and not isinstance(v, bool):
        fail(join(base, key), "must be true or false, got %s %s" % (typename(v), shown(v)))
    return v


@overload
def opt_enum(
    d: Obj, key: str, base: str, allowed: Collection[str], required: Literal[True], default: JSON = ...
) -> str: ...
@overload
def opt_enum(d: Obj, key: str, base: str, allowed: Collection[str], required: bool = False, *, default: str) -> str: ...
@overload
def opt_enum(
    d: Obj, key: str, base: str, allowed: Collection[str], required: bool = False, default: JSON = ...
) -> str | None: ...
def opt_enum(
    d: Obj, key: str, base: str, allowed: Collection[str], required: bool = False, default: JSON = _MISSING
) -> str | None:
    v = _take(d, key, base, required, default)
    if v is not None and (not isinstance(v, str) or v not in allowed):
        fail(join(base, key), "must be one of %s, got %s" % (", ".join(allowed), shown(v)))
    return v


PROTOCOLS = ("TCP", "UDP", "SCTP")


def protocol(d: Obj, base: str) -> str:
    return opt_enum(d, "protocol", base, PROTOCOLS, default="TCP")


def check_port_or_name(v: object, path: str) -> int | str:
    """IntOrString port: 1-65535 or an IANA_SVC_NAME."""
    if is_int(v):
        return check_int(v, path, 1, 65535)
    if isinstance(v, str) and not iana_svc_name(v):
        return v
    fail(
        path,
        "must be 1-65535 or a port name (IANA_SVC_NAME: lowercase letters, digits and "
        "'-', at least one letter, at most 15 characters), got %s %s" % (typename(v), shown(v)),
    )


def str_map(d: Obj, key: str, base: str, labels: bool = True, required: bool = False) -> dict[str, str] | None:
    """A string->string map (labels, selectors, annotations); labels=True also
    checks label syntax of values (keys are always label keys)."""
    m = opt_map(d, key, base, required)
    p = join(base, key)
    for k, v in (m or {}).items():
        why = label_key(k)
        if why:
            fail("%s[%s]" % (p, k), why)
        why = (
            label_value(v)
            if labels
            else (None if isinstance(v, str) else "values must be strings, got %s" % typename(v))
        )
        if why:
            fail("%s[%s]" % (p, k), why)
    return m


# ---- addresses ----------------------------------------------------------------


def ip_error(v: object, version: int | None = None) -> str | None:
    fam = {None: "an IP address", 4: "an IPv4 address", 6: "an IPv6 address"}[version]
    try:
        a = ipaddress.ip_address(v) if isinstance(v, str) else None
    except ValueError:
        a = None
    if a is None or (version and a.version != version):
        return "must be %s, got %s" % (fam, shown(v))
    return None


def parse_cidr(v: object, path: str, strict: bool = False) -> IPNetwork:
    """ip_network of a CIDR string; strict refuses host bits (10.0.0.1/24)."""
    try:
        if not isinstance(v, str) or "/" not in v:
            raise ValueError
        net = ipaddress.ip_network(v, strict=False)
    except ValueError:
        fail(path, "must be a CIDR (like 10.244.0.0/16 or fd00::/64), got %s" % shown(v))
    if strict and ipaddress.ip_interface(v).ip != net.network_address:
        fail(path, "must be a network address (%s), got %s" % (net, shown(v)))
    return net
