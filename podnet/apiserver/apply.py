"""Server-side apply and field ownership (metadata.managedFields); pure, no I/O.

A faithful-enough subset of sigs.k8s.io/structured-merge-diff as the API server
drives it (k8s.io/apimachinery/pkg/util/managedfields):

- apply merges the applied configuration into the live object (maps
  recursively, listType=map lists by their keys, sets as sets, anything else
  replaced), then removes what this manager applied last time and no longer
  applies, unless another manager owns it too;
- changing a field that another manager (Apply or Update) owns is a conflict
  unless forced, which moves the field to the applier; applying the value a
  field already has makes the ownership shared;
- any change (record_update, for PUT and non-apply PATCH) takes the changed
  fields over from their owners; removed fields lose every owner.

Ownership is kept as sets of paths in the FieldsV1 spelling: "f:spec",
'k:{"name":"web"}' for a keyed list item, 'v:"x"' for a set member.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

from podnet.apiserver.patch import ApplyConflict, Field, Obj, PatchError, _ordered, field_of, root_type

Path = tuple[str, ...]
_MISSING: Any = object()
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
# listMapKey values the API server defaults before it compares keys (a port without protocol is TCP).
_KEY_DEFAULTS = {"protocol": "TCP"}
# Never owned by anyone (Kubernetes' stripMeta set).
_STRIPPED = {"apiVersion", "kind"}
_STRIPPED_META = {"name", "namespace", "creationTimestamp", "selfLink", "uid", "generation", "managedFields"}
_STRIPPED_META |= {"resourceVersion", "clusterName"}


@dataclass
class _Entry:
    manager: str
    operation: str
    api_version: str
    time: str | None
    subresource: str
    fields: set[Path]

    @property
    def ident(self) -> tuple[str, str, str]:
        return (self.manager, self.operation, self.subresource)

    def who(self) -> str:
        """As Kubernetes prints a manager in a conflict."""
        s = json.dumps(self.manager)
        if self.subresource:
            s += f" with subresource {json.dumps(self.subresource)}"
        if self.operation == "Update":
            s += f" using {self.api_version}" + (f" at {self.time}" if self.time else "")
        return s


def server_side_apply(
    live: Obj | None, applied: Obj, manager: str, force: bool, kind: str, now: str, *, subresource: str = ""
) -> Obj:
    """The object after `manager` applies `applied` (application/apply-patch+yaml) to `live`
    (None: create), with metadata.managedFields updated. ApplyConflict unless `force`."""
    if not isinstance(applied, dict):
        raise PatchError("<object>: an apply patch must be an object")
    for key in ("apiVersion", "kind"):
        if not isinstance(applied.get(key), str) or not applied[key]:
            raise PatchError(f"{key}: must be set in an apply patch")
    if isinstance(applied.get("metadata"), dict) and applied["metadata"].get("managedFields") is not None:
        raise PatchError("metadata.managedFields: must be nil in an apply patch")
    applied = _drop_nulls(applied)
    new_set = _owned(applied, kind, strict=True)
    base: Obj = live if live is not None else {}
    entries = _decode(_managed(base))
    if live is not None and not entries:
        # An object nobody tracked yet: its fields belong to a stand-in, so applying other values conflicts.
        entries = [_Entry("before-first-apply", "Update", live.get("apiVersion", ""), now, "", _owned(live, kind))]
    me = (manager, "Apply", subresource)
    prev = next((e for e in entries if e.ident == me), None)
    others = [e for e in entries if e.ident != me]
    by_others = set().union(*(e.fields for e in others))

    result = _merge(copy.deepcopy(base), applied, Field(type=root_type(kind)))
    if prev is not None:
        _prune(result, prev.fields - new_set - by_others, new_set | by_others)

    changed = {p for p in new_set if _changed(base, result, p)}
    conflicts = sorted(((e, p) for e in others for p in e.fields & changed), key=lambda c: (c[0].who(), c[1]))
    if conflicts and not force:
        # kubectl moving from client-side to server-side apply may take over what its annotation says it set.
        allowed = _allowed_by_last_applied(base, applied, kind) if manager == "kubectl" else set()
        blocking = [(e, p) for e, p in conflicts if p not in allowed]
        if blocking:
            raise _conflict_error(blocking)
    for e, p in conflicts:
        e.fields.discard(p)

    entry = prev or _Entry(manager, "Apply", applied["apiVersion"], now, subresource, set())
    entry.fields, entry.api_version = new_set, applied["apiVersion"]
    if prev is None or _without_managed(result) != _without_managed(base):
        entry.time = now
    annotations = (result.get("metadata") or {}).get("annotations") or {}
    if manager == "kubectl" and annotations.get(LAST_APPLIED):
        # Keep the client-side annotation in step so that a later client-side apply diffs correctly.
        last = copy.deepcopy(applied)
        (last.get("metadata") or {}).get("annotations", {}).pop(LAST_APPLIED, None)
        annotations[LAST_APPLIED] = json.dumps(last, sort_keys=True, separators=(",", ":")) + "\n"
    return _store(result, [*others, entry])


def record_update(old: Obj | None, new: Obj, manager: str, kind: str, now: str, *, subresource: str = "") -> Obj:
    """`new` with managedFields for an Update (PUT, or PATCH other than apply) by `manager`:
    it takes over every field whose value it changed; removed fields lose their owners."""
    result = copy.deepcopy(new)
    if not isinstance(result.get("metadata"), dict):
        return result
    requested = result["metadata"].pop("managedFields", None)
    # As Kubernetes: the request may bring its own entries (not on a subresource); [] or [{}] clears them.
    if requested in ([], [{}]) and not subresource:
        entries = []
    else:
        entries = (_decode(requested) if not subresource else []) or _decode(_managed(old))
    if old is not None and not entries:
        return result  # Kubernetes starts tracking an existing untracked object only at its first apply
    base: Obj = old or {}
    changed = {p for p in _owned(result, kind) if _changed(base, result, p)}
    me = (manager, "Update", subresource)
    for e in entries:
        if e.ident != me:
            e.fields -= changed
    entry = next((e for e in entries if e.ident == me), None)
    if entry is None:
        entry = _Entry(manager, "Update", str(result.get("apiVersion", "")), now, subresource, set())
        entries.append(entry)
    if changed:
        entry.fields |= changed
        entry.time, entry.api_version = now, str(result.get("apiVersion", entry.api_version))
    return _store(result, entries)


# ---- field sets ----------------------------------------------------------------------------------------------------


def _owned(obj: Obj, kind: str, strict: bool = False) -> set[Path]:
    """The paths of every field set in obj (leaves, keyed items, set members), as an owner would hold them."""
    out: set[Path] = set()
    _walk(obj, Field(type=root_type(kind)), (), out, strict)
    return {p for p in out if p and not _stripped(p)}


def _stripped(p: Path) -> bool:
    if p[0][2:] in _STRIPPED or p == ("f:metadata",):
        return True
    return p[0] == "f:metadata" and p[1][2:] in _STRIPPED_META


def _walk(value: Any, field: Field, path: Path, out: set[Path], strict: bool) -> None:
    if isinstance(value, dict) and not field.atomic:
        if not value:
            out.add(path)
        for key, sub in value.items():
            if sub is not None:
                _walk(sub, field_of(field.type, key), (*path, "f:" + key), out, strict)
    elif isinstance(value, list) and (field.list_keys or field.list_set):
        seen: set[str] = set()
        for n, item in enumerate(value):
            tok = _token(item, field.list_keys) if field.list_keys else "v:" + _json(item)
            if tok is None or tok in seen:
                if strict:
                    raise PatchError(f"{_render(path)[1:]}[{n}]: list item {_flaw(item, field.list_keys, tok)}")
                continue
            seen.add(tok)
            out.add((*path, tok))
            if field.list_keys:
                _walk(item, Field(type=field.type), (*path, tok), out, strict)
    else:
        out.add(path)


def _flaw(item: Any, keys: tuple[str, ...], tok: str | None) -> str:
    if tok is not None:
        return f"duplicates {_render((tok,))}"
    if not isinstance(item, dict):
        return "must be an object"
    return "has no " + " and ".join(k for k in keys if item.get(k, _KEY_DEFAULTS.get(k)) is None)


def _token(item: Any, keys: tuple[str, ...]) -> str | None:
    if not isinstance(item, dict):
        return None
    key = {k: item.get(k, _KEY_DEFAULTS.get(k)) for k in sorted(keys)}
    return None if None in key.values() else "k:" + _json(key)


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _render(path: Path) -> str:
    """As Kubernetes prints a field path: .spec.template.spec.containers[name="web"].image"""
    out = ""
    for tok in path:
        if tok.startswith("f:"):
            out += "." + tok[2:]
        elif tok.startswith("k:"):
            out += "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in json.loads(tok[2:]).items()) + "]"
        else:
            out += "[=" + tok[2:] + "]"
    return out


def _get(obj: Any, path: Path) -> Any:
    for tok in path:
        kind, rest = tok[:2], tok[2:]
        if kind == "f:":
            obj = obj.get(rest, _MISSING) if isinstance(obj, dict) else _MISSING
            obj = _MISSING if obj is None else obj
        elif not isinstance(obj, list):
            return _MISSING
        elif kind == "k:":
            want = json.loads(rest)
            obj = next((i for i in obj if isinstance(i, dict) and _matches(i, want)), _MISSING)
        else:
            value = json.loads(rest)
            obj = value if value in obj else _MISSING
        if obj is _MISSING:
            return _MISSING
    return obj


def _matches(item: Obj, want: Obj) -> bool:
    return all(item.get(k, _KEY_DEFAULTS.get(k)) == v for k, v in want.items())


def _changed(before: Obj, after: Obj, p: Path) -> bool:
    """Modified or added by the change. A keyed item counts only when it appears: its fields speak for it."""
    old, new = _get(before, p), _get(after, p)
    if new is _MISSING:
        return False
    if old is _MISSING:
        return True
    return not p[-1].startswith("k:") and old != new


# ---- merge and prune -----------------------------------------------------------------------------------------------


def _merge(live: Any, applied: Any, field: Field) -> Any:
    if isinstance(applied, dict) and isinstance(live, dict) and not field.atomic:
        for key, value in applied.items():
            live[key] = _merge(live.get(key), value, field_of(field.type, key))
        return live
    if isinstance(applied, list) and isinstance(live, list) and (field.list_keys or field.list_set):

        def ident(item: Any) -> str:
            return (_token(item, field.list_keys) if field.list_keys else None) or _json(item)

        by_ident = {ident(i): i for i in live}
        item = Field(type=field.type)
        merged = [_merge(by_ident[ident(a)], a, item) if ident(a) in by_ident else copy.deepcopy(a) for a in applied]
        applied_idents = {ident(a) for a in applied}
        merged += [i for i in live if ident(i) not in applied_idents]
        return _ordered(merged, live, applied, ident)
    return copy.deepcopy(applied)


def _prune(obj: Obj, remove: set[Path], keep: set[Path]) -> None:
    """Remove the paths in `remove`, shallowest first, except those with a kept path beneath them."""
    above_kept = {p[:n] for p in keep for n in range(1, len(p))}
    for p in sorted(remove, key=len):
        if p in above_kept or _is_item_key(p):
            continue  # still partly owned, or the key of an item that stays
        parent = _get(obj, p[:-1])
        if isinstance(parent, dict) and p[-1].startswith("f:"):
            parent.pop(p[-1][2:], None)
        elif isinstance(parent, list) and p[-1].startswith("k:"):
            want = json.loads(p[-1][2:])
            parent[:] = [i for i in parent if not (isinstance(i, dict) and _matches(i, want))]
        elif isinstance(parent, list) and p[-1].startswith("v:"):
            parent[:] = [i for i in parent if i != json.loads(p[-1][2:])]
        else:
            continue
        # Go's omitempty: a map or list the prune emptied disappears (top-level fields stay).
        for n in range(len(p) - 1, 1, -1):
            if _get(obj, p[:n]) not in ({}, []) or p[:n] in keep or not p[n - 1].startswith("f:"):
                break
            holder = _get(obj, p[: n - 1])
            if isinstance(holder, dict):
                holder.pop(p[n - 1][2:], None)


def _is_item_key(p: Path) -> bool:
    return len(p) > 1 and p[-1].startswith("f:") and p[-2].startswith("k:") and p[-1][2:] in json.loads(p[-2][2:])


def _drop_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def _allowed_by_last_applied(live: Obj, applied: Obj, kind: str) -> set[Path]:
    """Fields the last-applied annotation set to the value they still have."""
    try:
        last = json.loads(((live.get("metadata") or {}).get("annotations") or {}).get(LAST_APPLIED) or "")
    except ValueError:
        return set()
    if not isinstance(last, dict) or last.get("apiVersion") != applied.get("apiVersion"):
        return set()
    return {p for p in _owned(last, kind) if _get(live, p) is not _MISSING and not _changed(last, live, p)}


def _conflict_error(conflicts: list[tuple[_Entry, Path]]) -> ApplyConflict:
    causes = [
        {"reason": "FieldManagerConflict", "message": f"conflict with {e.who()}", "field": _render(p)}
        for e, p in conflicts
    ]
    if len(conflicts) == 1:
        e, p = conflicts[0]
        message = f"Apply failed with 1 conflict: conflict with {e.who()}: {_render(p)}"
    else:
        lines: list[str] = []
        for who in sorted({e.who() for e, _ in conflicts}):
            lines.append(f"conflicts with {who}:")
            lines += [f"- {_render(p)}" for e, p in conflicts if e.who() == who]
        message = f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)
    return ApplyConflict(message, [(e.manager, _render(p)) for e, p in conflicts], causes)


# ---- managedFields encoding ----------------------------------------------------------------------------------------


def _without_managed(obj: Obj) -> Obj:
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"}
    return {**obj, "metadata": meta}


def _managed(obj: Obj | None) -> Any:
    return ((obj or {}).get("metadata") or {}).get("managedFields")


def _decode(managed: Any) -> list[_Entry]:
    """FieldsV1 entries; one that does not decode is dropped, as Kubernetes resets them."""
    entries = []
    for raw in managed if isinstance(managed, list) else []:
        try:
            fields: set[Path] = set()
            _decode_set(raw["fieldsV1"], (), fields)
            entries.append(
                _Entry(
                    str(raw["manager"]),
                    str(raw["operation"]),
                    str(raw.get("apiVersion", "")),
                    raw.get("time"),
                    str(raw.get("subresource", "")),
                    fields,
                )
            )
        except (KeyError, TypeError, AttributeError):
            continue
    return entries


def _decode_set(node: Obj, path: Path, out: set[Path]) -> None:
    for tok, sub in node.items():
        if tok == ".":
            out.add(path)
        elif not sub:
            out.add((*path, tok))
        else:
            _decode_set(sub, (*path, tok), out)


def _encode_set(paths: set[Path]) -> Obj:
    tree: Obj = {}
    for p in paths:
        node = tree
        for tok in p:
            node = node.setdefault(tok, {})
    for p in paths:  # a member with members beneath it says so with "."
        node = tree
        for tok in p:
            node = node[tok]
        if node and "." not in node:
            node["."] = {}

    def ordered(node: Obj) -> Obj:
        return {k: ordered(node[k]) for k in sorted(node)}

    return ordered(tree)


def _store(obj: Obj, entries: list[_Entry]) -> Obj:
    """obj with the entries (those still owning something that exists) as metadata.managedFields."""
    out = []
    for e in sorted(entries, key=lambda e: (e.operation, e.time or "", e.manager, e.api_version, e.subresource)):
        fields = {p for p in e.fields if _get(obj, p) is not _MISSING}
        if not fields:
            continue
        raw: Obj = {"manager": e.manager, "operation": e.operation, "apiVersion": e.api_version}
        if e.time:
            raw["time"] = e.time
        raw |= {"fieldsType": "FieldsV1", "fieldsV1": _encode_set(fields)}
        if e.subresource:
            raw["subresource"] = e.subresource
        out.append(raw)
    meta = obj.setdefault("metadata", {})
    if out:
        meta["managedFields"] = out
    else:
        meta.pop("managedFields", None)
    return obj
