"""Errors as kube-apiserver returns them: a `Status` object with the HTTP
code, a machine-readable reason and, for invalid objects, causes that name
the field path. kubectl prints `message`; client-go and the Python client
branch on `reason` and `code`.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web


class StatusError(Exception):
    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: dict[str, Any] | None = None,
    ):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def status(self) -> dict[str, Any]:
        st: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            st["details"] = self.details
        return st

    def response(self) -> web.Response:
        return web.Response(status=self.code, body=json.dumps(self.status()).encode(), content_type="application/json")


def _details(name: str | None, group: str, plural: str) -> dict[str, Any]:
    d: dict[str, Any] = {"kind": plural}
    if name:
        d["name"] = name
    if group:
        d["group"] = group
    return d


def _what(group: str, plural: str) -> str:
    return plural if not group else "%s.%s" % (plural, group)


def not_found(group: str, plural: str, name: str) -> StatusError:
    return StatusError(
        404, "NotFound", '%s "%s" not found' % (_what(group, plural), name), _details(name, group, plural)
    )


def already_exists(group: str, plural: str, name: str) -> StatusError:
    return StatusError(
        409, "AlreadyExists", '%s "%s" already exists' % (_what(group, plural), name), _details(name, group, plural)
    )


def conflict(group: str, plural: str, name: str, why: str) -> StatusError:
    return StatusError(
        409,
        "Conflict",
        'Operation cannot be fulfilled on %s "%s": %s' % (_what(group, plural), name, why),
        _details(name, group, plural),
    )


def modified(group: str, plural: str, name: str) -> StatusError:
    """409 for a write based on an old resourceVersion (kube-apiserver's words)."""
    return conflict(
        group,
        plural,
        name,
        "the object has been modified; please apply your changes to the latest version and try again",
    )


def invalid(kind: str, group: str, plural: str, name: str, causes: list[tuple[str, str]]) -> StatusError:
    """422 with one cause per (field path, reason)."""
    what = kind if not group else "%s.%s" % (kind, group)
    text = "; ".join("%s: %s" % (p, r) if p else r for p, r in causes)
    d = _details(name, group, plural)
    d["kind"] = kind
    d["causes"] = [{"reason": "FieldValueInvalid", "message": r, "field": p} for p, r in causes]
    return StatusError(422, "Invalid", '%s "%s" is invalid: %s' % (what, name, text), d)


def bad_request(message: str) -> StatusError:
    return StatusError(400, "BadRequest", message)


def gone(message: str) -> StatusError:
    return StatusError(410, "Expired", message)


def method_not_allowed(message: str = "the server does not allow this method on the requested resource") -> StatusError:
    return StatusError(405, "MethodNotAllowed", message)


def unauthorized() -> StatusError:
    return StatusError(401, "Unauthorized", "Unauthorized")
