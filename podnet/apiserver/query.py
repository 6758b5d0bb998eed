"""List and watch filters: label selectors, field selectors, pagination.

Field selectors follow kube-apiserver: `a.b=v`, `a.b==v`, `a.b!=v`, joined
by commas; every kind supports metadata.name and metadata.namespace, and
the fields kube-apiserver indexes for its kinds (spec.nodeName and
status.phase on pods, involvedObject.* on events, ...) are read by their
dotted path, so any of them works. A `continue` token carries the last key
served; the next page starts after it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

from podnet.api import ApiError, matches, parse_selector
from podnet.apiserver.errors import StatusError, bad_request

Obj = dict[str, Any]
Pred = Callable[[Obj], bool]


def _path_value(obj: Obj, path: str) -> str:
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(part)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def field_selector(text: str | None) -> Pred:
    if not text:
        return lambda o: True
    reqs: list[tuple[str, bool, str]] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "!=" in part:
            k, v = part.split("!=", 1)
            reqs.append((k.strip(), False, v.strip()))
        elif "==" in part:
            k, v = part.split("==", 1)
            reqs.append((k.strip(), True, v.strip()))
        elif "=" in part:
            k, v = part.split("=", 1)
            reqs.append((k.strip(), True, v.strip()))
        else:
            raise bad_request('invalid field selector "%s": expected key=value, key==value or key!=value' % part)
    return lambda o: all((_path_value(o, k) == v) == eq for k, eq, v in reqs)


def label_selector(text: str | None) -> Pred:
    if not text:
        return lambda o: True
    try:
        sel = parse_selector(text)
    except ApiError as exc:
        raise bad_request("unable to parse requirement: %s" % exc) from None
    return lambda o: matches(sel, (o.get("metadata") or {}).get("labels") or {})


def predicate(labels: str | None, fields: str | None) -> Pred:
    lp, fp = label_selector(labels), field_selector(fields)
    return lambda o: lp(o) and fp(o)


def encode_continue(key: str, rev: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"k": key, "rv": rev}).encode()).decode()


def decode_continue(token: str) -> str:
    try:
        return str(json.loads(base64.urlsafe_b64decode(token.encode()))["k"])
    except (ValueError, KeyError, TypeError):
        raise StatusError(400, "BadRequest", "continue token is not valid") from None


def int_param(value: str | None, name: str) -> int | None:
    if value in (None, ""):
        return None
    try:
        return int(value)  # type: ignore[arg-type]
    except ValueError:
        raise bad_request("%s: must be an integer, got %r" % (name, value)) from None


def bool_param(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes")
