"""Where the API server is and who we are: kubeconfig files and the
in-cluster service account, as client-go reads them.

A kubeconfig gives the server URL, the CA (file or inline data), and either
a bearer token or a client certificate and key (files or inline data).
Inline certificate data is written to a private temporary file just long
enough for the ssl module to load it (it reads only files).
"""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from dataclasses import dataclass
from typing import Any

import yaml

from podnet.api import ApiError

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


class ConfigError(ApiError):
    pass


@dataclass
class Config:
    server: str  # https://host:port
    ca_pem: bytes | None = None
    token: str | None = None
    cert_pem: bytes | None = None
    key_pem: bytes | None = None
    namespace: str = "default"
    insecure: bool = False

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cadata=self.ca_pem.decode() if self.ca_pem else None)
        if self.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.cert_pem and self.key_pem:
            with tempfile.TemporaryDirectory(prefix="podnet-cred-") as d:
                cert, key = os.path.join(d, "c.pem"), os.path.join(d, "k.pem")
                for path, data in ((cert, self.cert_pem), (key, self.key_pem)):
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                    with os.fdopen(fd, "wb") as f:
                        f.write(data)
                ctx.load_cert_chain(cert, key)
        return ctx


def _data(entry: dict[str, Any], field: str, base: str) -> bytes | None:
    """`<field>-data` (base64) or `<field>` (a path, relative to the kubeconfig)."""
    if entry.get(field + "-data"):
        return base64.b64decode(entry[field + "-data"])
    path = entry.get(field)
    if path:
        path = path if os.path.isabs(path) else os.path.join(base, path)
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as exc:
            raise ConfigError("kubeconfig: %s %s: %s" % (field, path, exc.strerror)) from None
    return None


def load_kubeconfig(path: str, context: str | None = None) -> Config:
    try:
        with open(path) as f:
            doc = yaml.safe_load(f) or {}
    except OSError as exc:
        raise ConfigError("kubeconfig %s: %s" % (path, exc.strerror)) from None
    except yaml.YAMLError as exc:
        raise ConfigError("kubeconfig %s: not valid YAML: %s" % (path, exc)) from None
    base = os.path.dirname(os.path.abspath(path))
    ctx_name = context or doc.get("current-context")

    def named(section: str, name: str | None) -> dict[str, Any]:
        for item in doc.get(section) or []:
            if item.get("name") == name:
                return dict(item.get(section[:-1]) or {})
        raise ConfigError("kubeconfig %s: no %s named %r" % (path, section[:-1], name))

    ctx = named("contexts", ctx_name)
    cluster = named("clusters", ctx.get("cluster"))
    user = named("users", ctx.get("user")) if ctx.get("user") else {}
    if not cluster.get("server"):
        raise ConfigError("kubeconfig %s: cluster %r has no server" % (path, ctx.get("cluster")))
    token = user.get("token")
    if not token and user.get("tokenFile"):
        with open(user["tokenFile"]) as f:
            token = f.read().strip()
    return Config(
        server=cluster["server"].rstrip("/"),
        ca_pem=_data(cluster, "certificate-authority", base),
        token=token,
        cert_pem=_data(user, "client-certificate", base),
        key_pem=_data(user, "client-key", base),
        namespace=ctx.get("namespace") or "default",
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
    )


def in_cluster() -> Config:
    """The pod's service account, as client-go's rest.InClusterConfig."""
    host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        raise ConfigError("not in a cluster: KUBERNETES_SERVICE_HOST/PORT are not set")
    with open(os.path.join(SA_DIR, "token")) as f:
        token = f.read().strip()
    with open(os.path.join(SA_DIR, "ca.crt"), "rb") as f:
        ca = f.read()
    host = "[%s]" % host if ":" in host else host
    return Config(server="https://%s:%s" % (host, port), ca_pem=ca, token=token)
