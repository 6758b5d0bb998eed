"""Label selectors: matching, kubectl's -l syntax, display, validation.

Two shapes exist in Kubernetes:
  * LabelSelector {matchLabels: {...}, matchExpressions: [...]} (Deployments,
    ReplicaSets, NetworkPolicies): `matches`. {} matches everything, None
    matches nothing.
  * a plain map {app: web} (Service.spec.selector, Pod nodeSelector):
    `matches_map`. A Service without a selector (None or {}) selects no pods
    (its endpoints are managed by hand), so by default an empty map matches
    nothing; pass empty_matches_all=True for nodeSelector semantics.
"""

import re

from podnet.api.fields import join, need_map, opt_enum, opt_maps, str_list, str_map
from podnet.api.meta import ApiError, fail, label_key, label_value
from podnet.api.types import Obj

OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


def _requirement_holds(expr: Obj, labels: Obj) -> bool:
    key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
    if op == "In":
        return key in labels and labels[key] in values
    if op == "NotIn":
        return key not in labels or labels[key] not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    raise ApiError("unknown selector operator %r (one of %s)" % (op, ", ".join(OPERATORS)))


def matches(selector: Obj | None, labels: Obj | None) -> bool:
    """LabelSelector semantics: every matchLabels pair AND every expression."""
    if selector is None:
        return False
    labels = labels or {}
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    return all(_requirement_holds(e, labels) for e in selector.get("matchExpressions") or [])


def matches_map(selector_map: Obj | None, labels: Obj | None, empty_matches_all: bool = False) -> bool:
    """Service-style plain map: every pair must be among labels."""
    if not selector_map:
        return empty_matches_all
    labels = labels or {}
    return all(labels.get(k) == v for k, v in selector_map.items())


def selector_from_map(selector_map: Obj | None) -> Obj:
    """{app: web} -> {matchLabels: {app: web}}."""
    return {"matchLabels": dict(selector_map or {})}


# ---- kubectl -l syntax --------------------------------------------------------

_KEY = r"[A-Za-z0-9][-A-Za-z0-9_./]*"
_SET = re.compile(r"^(%s)\s+(in|notin)\s*\((.*)\)$" % _KEY, re.S)
_CMP = re.compile(r"^(%s)\s*(==|!=|=)\s*(\S*)$" % _KEY)
_EXISTS = re.compile(r"^(!?)\s*(%s)$" % _KEY)


def _split_top(text: str) -> list[str]:
    parts: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


def parse_selector(text: str | None) -> Obj:
    """kubectl -l: 'app=web,tier!=db,env in (a,b),env notin (c),x,!y' ->
    LabelSelector dict. '' -> {} (everything)."""
    sel: Obj = {}
    if text is None or not text.strip():
        return sel

    def bad(why: str) -> ApiError:
        return ApiError("invalid selector '%s': %s" % (text, why))

    labels: dict[str, str] = {}
    exprs: list[Obj] = []
    expr: Obj | None
    for part in _split_top(text):
        part = part.strip()
        if not part:
            raise bad("empty requirement (stray ',')")
        m_set, m_cmp, m_ex = _SET.match(part), _CMP.match(part), _EXISTS.match(part)
        if m_set:
            key, op = m_set.group(1), m_set.group(2)
            values = [v.strip() for v in m_set.group(3).split(",")]
            if values == [""]:
                raise bad("'%s %s ()' needs at least one value" % (key, op))
            expr = {"key": key, "operator": "In" if op == "in" else "NotIn", "values": values}
        elif m_cmp:
            key, op, value = m_cmp.groups()
            if op != "!=" and key not in labels:
                labels[key] = value
                expr = None
            else:
                expr = {"key": key, "operator": "NotIn" if op == "!=" else "In", "values": [value]}
        elif m_ex:
            key = m_ex.group(2)
            expr = {"key": key, "operator": "DoesNotExist" if m_ex.group(1) else "Exists"}
        else:
            raise bad("cannot parse '%s' (use k=v, k!=v, k in (a,b), k notin (a,b), k, !k)" % part)
        why = label_key(key)
        for v in expr.get("values", []) if expr else [labels[key]]:
            why = why or label_value(v)
        if why:
            raise bad(why)
        if expr is not None:
            exprs.append(expr)
    if labels:
        sel["matchLabels"] = labels
    if exprs:
        sel["matchExpressions"] = exprs
    return sel


def _requirements(selector: Obj) -> list[str]:
    reqs = [(k, "%s=%s" % (k, v)) for k, v in (selector.get("matchLabels") or {}).items()]
    for e in selector.get("matchExpressions") or []:
        k, op, vals = e.get("key"), e.get("operator"), ",".join(sorted(e.get("values") or []))
        text = {
            "In": "%s in (%s)" % (k, vals),
            "NotIn": "%s notin (%s)" % (k, vals),
            "Exists": k,
            "DoesNotExist": "!%s" % k,
        }.get(op, "%s %s (%s)" % (k, op, vals))
        reqs.append((k, text))
    return [t for _, t in sorted(reqs, key=lambda r: r[0])]


def format_selector(selector: Obj | None) -> str:
    """kubectl's display of a LabelSelector: 'app=web,env in (a,b),!x'; '<none>'
    when None or empty."""
    return ",".join(_requirements(selector or {})) or "<none>"


def format_labels(labels: Obj | None) -> str:
    """'app=web,tier=db' (sorted) or '<none>'."""
    return ",".join("%s=%s" % kv for kv in sorted((labels or {}).items())) or "<none>"


# ---- validation ---------------------------------------------------------------


def check_selector(sel: object, path: str, allow_empty: bool = True) -> Obj:
    """Validate a LabelSelector in place; raises FieldError naming path."""
    m = need_map(sel, path)
    str_map(m, "matchLabels", path)
    for e, p in opt_maps(m, "matchExpressions", path):
        k = e.get("key")
        if k is None:
            fail(join(p, "key"), "required")
        why = label_key(k)
        if why:
            fail(join(p, "key"), why)
        op = opt_enum(e, "operator", p, OPERATORS, required=True)
        values = str_list(e, "values", p, check=label_value) or []
        if op in ("In", "NotIn") and not values:
            fail(join(p, "values"), "must have at least one value for %s" % op)
        if op in ("Exists", "DoesNotExist") and values:
            fail(join(p, "values"), "must be empty for %s" % op)
    if not allow_empty and not m.get("matchLabels") and not m.get("matchExpressions"):
        fail(path, "must have matchLabels or matchExpressions (an empty selector selects every pod)")
    return m


__all__ = [
    "matches",
    "matches_map",
    "parse_selector",
    "format_selector",
    "format_labels",
    "selector_from_map",
    "check_selector",
    "OPERATORS",
]
