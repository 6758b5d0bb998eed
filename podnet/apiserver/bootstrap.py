"""Bootstrap tokens and the join exchange, as kubeadm gives them.

A bootstrap token is `<id>.<secret>` (6 and 16 characters of [a-z0-9], the
format kubeadm and kube-apiserver use) with an expiry. It is good for one
thing only: `POST /podnet/v1/join`, which exchanges it for the node's own
credentials (a bearer token of `system:node:<name>` in group
`system:nodes`, the Node authorizer's identity). Nothing else on the API
accepts it, so a leaked bootstrap token cannot read or change objects.

Discovery (`GET /podnet/v1/cluster-info`, public, as kubeadm's
kube-public/cluster-info ConfigMap) hands out the CA certificate; the
joining node trusts it only when the sha256 of its public key equals the
`--ca-cert-hash` it was given, and then speaks TLS verified by that CA.

Tokens live in `bootstrap-tokens.yaml` beside the CA (0600): id -> secret,
expiry (epoch seconds). The comparison of secrets is constant-time.
"""

from __future__ import annotations

import hmac
import os
import re
import secrets
import string
import time
from typing import Any

import yaml

from podnet.apiserver.certs import Pki, _write_private

TOKEN_RE = re.compile(r"^([a-z0-9]{6})\.([a-z0-9]{16})$")
NODE_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
DEFAULT_TTL = 24 * 3600.0  # kubeadm's default
JOIN_PATH = "/podnet/v1/join"
INFO_PATH = "/podnet/v1/cluster-info"
PATHS = (JOIN_PATH, INFO_PATH)
_ALPHABET = string.ascii_lowercase + string.digits


class JoinRefused(Exception):
    """A join the server refuses; the message says why (shown to the joiner)."""


def parse_ttl(text: str) -> float:
    """'24h', '90m', '30s', '2h30m' or plain seconds -> seconds."""
    text = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+)([hms])", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError("%r is not a duration (e.g. 24h, 90m, 30s)" % text)
    return float(sum(int(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts))


def tokens_file(pki: Pki) -> str:
    return pki.path("bootstrap-tokens.yaml")


def load(pki: Pki) -> dict[str, dict[str, Any]]:
    try:
        with open(tokens_file(pki)) as f:
            return dict(yaml.safe_load(f) or {})
    except FileNotFoundError:
        return {}


def create(pki: Pki, ttl: float = DEFAULT_TTL, now: float | None = None) -> str:
    """A new bootstrap token, valid for `ttl` seconds; expired ones are dropped."""
    import fcntl

    now = time.time() if now is None else now
    os.makedirs(pki.dir, mode=0o700, exist_ok=True)
    fd = os.open(pki.path("bootstrap-tokens.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # two `podnet server token create` at once keep both
        toks = {k: v for k, v in load(pki).items() if float(v.get("expires", 0)) > now}
        tid = "".join(secrets.choice(_ALPHABET) for _ in range(6))
        secret = "".join(secrets.choice(_ALPHABET) for _ in range(16))
        toks[tid] = {"secret": secret, "expires": now + ttl}
        _write_private(tokens_file(pki), yaml.safe_dump(toks).encode())
        return "%s.%s" % (tid, secret)
    finally:
        os.close(fd)


def check(tokens: dict[str, dict[str, Any]], token: str, now: float) -> str:
    """The token's id when it is valid now; else JoinRefused saying why."""
    m = TOKEN_RE.match(token or "")
    if not m:
        raise JoinRefused("the bootstrap token is malformed (expected [a-z0-9]{6}.[a-z0-9]{16})")
    tid, secret = m.groups()
    entry = tokens.get(tid)
    if entry is None or not hmac.compare_digest(str(entry.get("secret", "")), secret):
        raise JoinRefused("bootstrap token %s is not valid (unknown id or wrong secret)" % tid)
    expires = float(entry.get("expires", 0))
    if expires <= now:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires))
        raise JoinRefused("bootstrap token %s expired at %s" % (tid, when))
    return tid


def check_node_name(name: str) -> str:
    if not isinstance(name, str) or not NODE_RE.match(name):
        raise JoinRefused("node name %r is not a DNS subdomain (lower case, digits, '-' and '.')" % (name,))
    return name


def exchange(pki: Pki, token: str, node: str, now: float | None = None) -> dict[str, str]:
    """Check the token and give the node its credentials -> {user, token}."""
    check(load(pki), token, time.time() if now is None else now)
    check_node_name(node)
    user = "system:node:" + node
    return {"user": user, "token": pki.token_for(user, ("system:nodes",))}


def add_routes(app: Any, pki: Pki) -> None:
    """The two public join endpoints on the API server's aiohttp app (the
    middleware lets PATHS through: the handlers authenticate themselves)."""
    import asyncio

    from aiohttp import web

    async def info(request: web.Request) -> web.Response:
        with open(pki.ca_cert) as f:
            return web.json_response({"kind": "ClusterInfo", "certificate-authority": f.read()})

    async def join(request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return _status(400, "BadRequest", 'the join request\'s body must be a JSON object {"node": NAME}')
        try:
            # token_for takes a file lock: off the event loop
            creds = await asyncio.to_thread(
                exchange, pki, auth[7:].strip() if auth.startswith("Bearer ") else "", str(body.get("node") or "")
            )
        except JoinRefused as exc:
            return _status(401, "Unauthorized", "join refused: %s" % exc)
        return web.json_response(creds)

    app.router.add_get(INFO_PATH, info)
    app.router.add_post(JOIN_PATH, join)


def _status(code: int, reason: str, message: str) -> Any:
    from aiohttp import web

    doc = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    return web.json_response(doc, status=code)
