"""`podnet agent join URL --token T --ca-cert-hash sha256:...`: a host
joins a `podnet server`, as `kubeadm join` does.

1. Discovery: the server's CA is fetched from the public cluster-info
   endpoint over TLS that is not yet verified (the joiner has no CA yet);
   it is trusted only when the sha256 of its public key is the hash given.
   A man in the middle cannot forge a CA with that hash.
2. The exchange, over TLS verified with that CA: the bootstrap token buys
   the node's own bearer token (system:node:<name>).
3. The node's kubeconfig (server, CA, token) is written, 0600.

Every refusal says which step refused and why; nothing is written then.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import ssl
import urllib.error
import urllib.request
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from podnet.apiserver import bootstrap

DEFAULT_KUBECONFIG = "/var/lib/podnet/node.kubeconfig"


class JoinError(Exception):
    pass


def ca_hash_of(pem: bytes) -> str:
    """sha256 of the CA's SubjectPublicKeyInfo (kubeadm's --discovery-token-ca-cert-hash)."""
    cert = x509.load_pem_x509_certificate(pem)
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(spki).hexdigest()


def check_hash(pem: bytes, want: str) -> None:
    if not want.startswith("sha256:") or len(want) != 71:
        raise JoinError("--ca-cert-hash %r: expected sha256:<64 hex digits>" % want)
    got = ca_hash_of(pem)
    if not hmac.compare_digest(got, want.lower()):
        raise JoinError("the server's CA has hash %s, not the %s given: refusing to trust it" % (got, want))


def _request(url: str, ctx: ssl.SSLContext, body: dict[str, Any] | None = None, token: str = "") -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=15) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            msg = json.loads(exc.read()).get("message") or exc.reason
        except ValueError:
            msg = exc.reason
        raise JoinError("%s: %s" % (url, msg)) from None
    except (urllib.error.URLError, OSError) as exc:
        raise JoinError("%s: %s" % (url, getattr(exc, "reason", exc))) from None


def join(server: str, token: str, ca_hash: str, node: str) -> tuple[bytes, dict[str, str]]:
    """-> (the CA's PEM, {user, token}); JoinError when refused."""
    server = server.rstrip("/")
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE  # discovery only: the CA is checked by its hash below
    info = _request(server + bootstrap.INFO_PATH, insecure)
    pem = str(info.get("certificate-authority", "")).encode()
    try:
        check_hash(pem, ca_hash)
    except ValueError as exc:
        raise JoinError("the server's cluster-info holds no CA certificate: %s" % exc) from None
    verified = ssl.create_default_context(cadata=pem.decode())
    creds = _request(server + bootstrap.JOIN_PATH, verified, {"node": node}, token)
    return pem, creds


def write(path: str, server: str, pem: bytes, creds: dict[str, str]) -> None:
    import base64

    import yaml

    from podnet.apiserver.certs import write_kubeconfig

    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "podnet",
                "cluster": {"server": server, "certificate-authority-data": base64.b64encode(pem).decode()},
            }
        ],
        "users": [{"name": creds["user"], "user": {"token": creds["token"]}}],
        "contexts": [{"name": "podnet", "context": {"cluster": "podnet", "user": creds["user"]}}],
        "current-context": "podnet",
    }
    write_kubeconfig(path, yaml.safe_dump(doc, sort_keys=False))


def run(args: Any) -> int:
    import socket
    import sys

    node = args.node or socket.gethostname()
    try:
        pem, creds = join(args.server, args.token, args.ca_cert_hash, node)
    except JoinError as exc:
        print("error: join refused: %s" % exc, file=sys.stderr)
        return 1
    write(args.kubeconfig or DEFAULT_KUBECONFIG, args.server.rstrip("/"), pem, creds)
    print("node %s joined %s; its credentials are in %s" % (node, args.server, args.kubeconfig or DEFAULT_KUBECONFIG))
    return 0
