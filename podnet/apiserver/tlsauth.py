"""Client certificates checked after the handshake, as kube-apiserver does.

kube-apiserver asks every TLS client for a certificate but accepts the
handshake whatever it gets; its authenticator then checks the chain and a
certificate from another CA gets an HTTP 401 (kubectl: "You must be logged
in to the server (Unauthorized)"). Python's ssl module can only ask for a
certificate AND require it to verify in the handshake, so such a client
sees a dropped connection, and kubectl retries for most of a minute.

`accept_any_client_cert(ctx)` installs, through OpenSSL's own
SSL_CTX_set_verify, a verify callback that lets the handshake finish; the
certificate is then checked here (`verified_user`) against the cluster CA
with `cryptography`. The SSL_CTX pointer is read from the SSLContext object
and checked against what the ssl module reports before anything is
changed; if any of that does not hold, nothing is changed and unknown
certificates keep failing in the handshake (still refused, less politely).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import datetime
import logging
import ssl
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

log = logging.getLogger("podnet.apiserver.tls")
SSL_VERIFY_PEER = 0x01
_VERIFY_CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p)
_keep: list[Any] = []  # the callback must outlive every context using it


def _accept(preverify_ok: int, store_ctx: int) -> int:
    return 1  # the chain is checked after the handshake (verified_user)


def accept_any_client_cert(ctx: ssl.SSLContext) -> bool:
    """-> True when the handshake now accepts any client certificate."""
    try:
        libssl = ctypes.CDLL(ssl._ssl.__file__)  # type: ignore[attr-defined]
        set_verify = libssl.SSL_CTX_set_verify
        get_mode = libssl.SSL_CTX_get_verify_mode
        get_options = libssl.SSL_CTX_get_options
    except (OSError, AttributeError) as exc:
        log.info("client certificates verified in the handshake (%s)", exc)
        return False
    set_verify.argtypes = [ctypes.c_void_p, ctypes.c_int, _VERIFY_CB]
    get_mode.argtypes = [ctypes.c_void_p]
    get_options.argtypes = [ctypes.c_void_p]
    get_options.restype = ctypes.c_uint64
    # PySSLContext: PyObject_HEAD, then `SSL_CTX *ctx`
    ptr = ctypes.c_void_p.from_address(id(ctx) + object.__basicsize__).value
    if not ptr or get_mode(ptr) != SSL_VERIFY_PEER or get_options(ptr) != int(ctx.options):
        log.info("client certificates verified in the handshake (SSL_CTX not recognised)")
        return False
    cb = _VERIFY_CB(_accept)
    _keep.append(cb)
    set_verify(ptr, SSL_VERIFY_PEER, cb)
    return True


class Verifier:
    """Checks a client certificate (DER) against the cluster CA."""

    def __init__(self, ca_pem: bytes):
        self.ca = x509.load_pem_x509_certificate(ca_pem)

    def user(self, der: bytes | None) -> dict[str, Any] | None:
        """-> {"user", "groups"} for a valid client certificate of this CA, else None."""
        if not der:
            return None
        try:
            cert = x509.load_der_x509_certificate(der)
            if cert.issuer != self.ca.subject:
                return None
            key = self.ca.public_key()
            if isinstance(key, ec.EllipticCurvePublicKey):
                assert cert.signature_hash_algorithm is not None
                key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
            elif isinstance(key, rsa.RSAPublicKey):
                assert cert.signature_hash_algorithm is not None
                key.verify(
                    cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), cert.signature_hash_algorithm
                )
            else:
                return None
            now = datetime.datetime.now(datetime.UTC)
            if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
                return None
            try:
                usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
                if ExtendedKeyUsageOID.CLIENT_AUTH not in usage:
                    return None
            except x509.ExtensionNotFound:
                pass
        except Exception:  # any certificate we cannot check is not a user
            return None
        cn = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
        groups = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
        return {"user": str(cn[0]), "groups": groups} if cn else None
