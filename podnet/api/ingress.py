"""Validation and defaults of Secret, IngressClass and Ingress (issue 14).

The rules are kube-apiserver's (pkg/apis/networking/validation and
pkg/apis/core/validation), with its wording where users search for it
(`spec.rules[0].http.paths[0].path: Invalid value: "foo": must be an
absolute path`). What the ingress data plane does not do is refused with
its field path (support.py), never stored and ignored.

A Secret's data never appears in an error: only the key it is under.
"""

import base64
import binascii
import ipaddress
import re

from podnet.api import support
from podnet.api.fields import index, is_int, join, need_map, opt_bool, opt_enum, opt_map, opt_maps, opt_str, shown
from podnet.api.meta import dns1035_label, dns_subdomain, fail, iana_svc_name
from podnet.api.types import Obj

TLS = "kubernetes.io/tls"
# Secret types podnet stores; the other well-known ones belong to features podnet does not have.
SECRET_TYPES = ("Opaque", TLS)
_OTHER_TYPES = {
    "kubernetes.io/service-account-token": "podnet has no service accounts",
    "kubernetes.io/dockercfg": "podnet pulls no images",
    "kubernetes.io/dockerconfigjson": "podnet pulls no images",
    "kubernetes.io/basic-auth": "podnet's ingress has no basic authentication; use type Opaque to store data",
    "kubernetes.io/ssh-auth": "use type Opaque to store data",
    "bootstrap.kubernetes.io/token": "podnet joins nodes with its own token",
}
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
SECRET_MAX = 1024 * 1024  # kube-apiserver's limit on a Secret's data, decoded
PATH_TYPES = ("Exact", "Prefix", "ImplementationSpecific")
# kube-apiserver refuses these in Exact and Prefix paths: nginx and others normalise them differently
_BAD_SEQUENCES = ("//", "/./", "/../", "%2f", "%2F")
_BAD_SUFFIXES = ("/..", "/.")
DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"
_WILDCARD = re.compile(r"^\*\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def invalid(path: str, value: object, why: str) -> None:
    """kube-apiserver's field.Invalid wording: `<path>: Invalid value: "<value>": <why>`."""
    fail(
        path,
        'Invalid value: "%s": %s' % (value, why) if isinstance(value, str) else "Invalid value: %r: %s" % (value, why),
    )


# ---- host names ---------------------------------------------------------------


def host_error(host: str, wildcard: bool = True) -> str | None:
    """A DNS name as Ingress and Gateway hosts take it: `foo.example.com`, or
    with wildcard, `*.example.com` (one leading label); never an IP address."""
    try:
        ipaddress.ip_address(host)
        return "must be a DNS name, not an IP address"
    except ValueError:
        pass
    if "*" in host:
        if not wildcard:
            return "a wildcard is not allowed here"
        if len(host) > 253 or not _WILDCARD.match(host):
            return (
                "a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, "
                "which must consist of lower case alphanumeric characters, '-' or '.' and end with an "
                "alphanumeric character (e.g. '*.example.com')"
            )
        return None
    why = dns_subdomain(host)
    return None if why is None else why.replace("must be", "must be a DNS name:", 1)


def _host(d: Obj, key: str, base: str) -> str | None:
    host = opt_str(d, key, base)
    if host:
        why = host_error(host)
        if why:
            invalid(join(base, key), host, why)
    return host


# ---- Secret -------------------------------------------------------------------


def _b64(value: object, path: str) -> bytes:
    if not isinstance(value, str):
        fail(path, "must be a base64 string")  # the value itself is never shown
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        fail(path, "must be base64 encoded (the value is not shown)")


def _key_error(key: str) -> str | None:
    if len(key) > 253 or not _SECRET_KEY.match(key) or key in (".", "..") or key.startswith(".."):
        return "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name')"
    return None


def _pem(data: dict[str, bytes], path: str) -> None:
    """tls.crt: PEM certificates (the server's first); tls.key: its PEM private key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    for k in ("tls.crt", "tls.key"):
        if k not in data:
            fail("%s[%s]" % (path, k), "Required value: a %s Secret needs both tls.crt and tls.key" % TLS)
    try:
        certs = x509.load_pem_x509_certificates(data["tls.crt"])
    except ValueError:
        fail("%s[tls.crt]" % path, "must be one or more PEM certificates (-----BEGIN CERTIFICATE-----)")
    try:
        key = serialization.load_pem_private_key(data["tls.key"], password=None)
    except (ValueError, TypeError):
        fail("%s[tls.key]" % path, "must be an unencrypted PEM private key (-----BEGIN ... PRIVATE KEY-----)")
    raw = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*raw) != certs[0].public_key().public_bytes(*raw):
        fail("%s[tls.key]" % path, "does not match the first certificate of tls.crt")


def secret(obj: Obj) -> Obj:
    """data base64 by key; stringData merged into data (its keys win) and
    dropped, as kube-apiserver does; type defaults to Opaque."""
    stype = opt_str(obj, "type", "", default="Opaque")
    if stype in _OTHER_TYPES:
        fail("type", "not supported by podnet: %s (got %s)" % (_OTHER_TYPES[stype], shown(stype)))
    data = opt_map(obj, "data", "") or {}
    decoded: dict[str, bytes] = {}
    for k, v in data.items():
        why = _key_error(k)
        if why:
            invalid("data[%s]" % k, k, why)
        decoded[k] = _b64(v, "data[%s]" % k)
    plain = opt_map(obj, "stringData", "")
    for k, v in (plain or {}).items():
        why = _key_error(k)
        if why:
            invalid("stringData[%s]" % k, k, why)
        if not isinstance(v, str):
            fail("stringData[%s]" % k, "must be a string")
        decoded[k] = v.encode()
        data[k] = base64.b64encode(decoded[k]).decode()
    obj.pop("stringData", None)
    if data:
        obj["data"] = data
    if sum(len(v) for v in decoded.values()) > SECRET_MAX:
        fail("data", "Too long: must have at most %d bytes" % SECRET_MAX)
    if stype == TLS:
        _pem(decoded, "stringData" if plain and ("tls.crt" in plain or "tls.key" in plain) else "data")
    opt_bool(obj, "immutable", "")  # enforced on update: secret_update
    return obj


def secret_update(old: Obj, new: Obj) -> None:
    """kube-apiserver's ValidateSecretUpdate: the type never changes; an
    immutable Secret keeps its data and stays immutable. (Both validated.)"""
    if new.get("type") != old.get("type"):
        invalid("type", new.get("type"), "field is immutable")
    if old.get("immutable"):
        if not new.get("immutable"):
            fail("immutable", "Forbidden: field is immutable when `immutable` is set")
        if (new.get("data") or {}) != (old.get("data") or {}):
            fail("data", "Forbidden: field is immutable when `immutable` is set")


# ---- IngressClass -------------------------------------------------------------


def controller_error(v: str) -> str | None:
    """A domain-prefixed path (`example.com/ingress-nginx`), at most 250 characters."""
    domain, slash, rest = v.partition("/")
    if (
        not slash
        or not rest
        or dns_subdomain(domain)
        or len(v) > 250
        or not re.match(r"^[A-Za-z0-9/\-._~%!$&'()*+,;=:]+$", rest)
    ):
        return "must be a domain-prefixed path (such as 'example.com/ingress-controller'), at most 250 characters"
    return None


def ingress_class(obj: Obj) -> Obj:
    spec = opt_map(obj, "spec", "") or obj.setdefault("spec", {})
    support.check(spec, "spec", "IngressClassSpec")
    opt_str(spec, "controller", "spec", required=True, check=controller_error)
    return obj


# ---- Ingress ------------------------------------------------------------------


def backend(b: Obj, path: str) -> None:
    """IngressBackend: a Service by name and port number or name."""
    support.check(b, path, "IngressBackend")
    svc = opt_map(b, "service", path, required=True)
    sp = join(path, "service")
    support.check(svc, sp, "IngressServiceBackend")
    opt_str(svc, "name", sp, required=True, check=dns1035_label)
    port = opt_map(svc, "port", sp, required=True)
    pp = join(sp, "port")
    support.check(port, pp, "ServiceBackendPort")
    number, name = port.get("number"), port.get("name")
    if number is not None and name is not None:
        fail(pp, "may not specify both name and number")
    if number is None and name is None:
        fail(pp, "Required value: port name or number is required")
    if number is not None:
        if not is_int(number) or not 1 <= number <= 65535:
            invalid(join(pp, "number"), number, "must be between 1 and 65535, inclusive")
    else:
        why = iana_svc_name(name)
        if why:
            invalid(join(pp, "name"), name, why)
    if not port.get("name"):
        port.pop("name", None)


def _path(p: Obj, base: str) -> None:
    support.check(p, base, "HTTPIngressPath")
    if p.get("pathType") is None:
        fail(join(base, "pathType"), "Required value: pathType must be specified")
    ptype = opt_enum(p, "pathType", base, PATH_TYPES, required=True)
    value = opt_str(p, "path", base) or ""
    where = join(base, "path")
    if ptype in ("Exact", "Prefix"):
        if not value.startswith("/"):
            invalid(where, value, "must be an absolute path")
        for seq in _BAD_SEQUENCES:
            if seq in value:
                invalid(where, value, "must not contain '%s'" % seq)
        for suffix in _BAD_SUFFIXES:
            if value.endswith(suffix):
                invalid(where, value, "cannot end with '%s'" % suffix)
    elif value and not value.startswith("/"):
        invalid(where, value, "must be an absolute path")
    backend(opt_map(p, "backend", base, required=True), join(base, "backend"))


def ingress(obj: Obj) -> Obj:
    spec = opt_map(obj, "spec", "") or obj.setdefault("spec", {})
    support.check(spec, "spec", "IngressSpec")
    opt_str(spec, "ingressClassName", "spec", check=dns_subdomain)
    default = opt_map(spec, "defaultBackend", "spec")
    if default is not None:
        backend(default, "spec.defaultBackend")
    rules = opt_maps(spec, "rules", "spec")
    if default is None and not rules:
        fail("spec", "Invalid value: either `defaultBackend` or `rules` must be specified")
    for rule, rp in rules:
        support.check(rule, rp, "IngressRule")
        _host(rule, "host", rp)
        http = opt_map(rule, "http", rp)
        if http is not None:
            hp = join(rp, "http")
            support.check(http, hp, "HTTPIngressRuleValue")
            for p, pp in opt_maps(http, "paths", hp, required=True, nonempty=True):
                _path(p, pp)
    for tls, tp in opt_maps(spec, "tls", "spec"):
        support.check(tls, tp, "IngressTLS")
        for i, h in enumerate(tls.get("hosts") or []):
            hp = index(join(tp, "hosts"), i)
            if not isinstance(h, str):
                fail(hp, "must be a string, got %s" % shown(h))
            why = host_error(h)
            if why:
                invalid(hp, h, why)
        opt_str(tls, "secretName", tp, check=dns_subdomain)
    status = obj.get("status")
    if status is not None:
        need_map(status, "status")
    return obj
