"""The API server's credentials: a CA per cluster, a serving certificate,
client certificates, bearer tokens, and the kubeconfig files that carry them.

Everything lives in one directory that only root may read (0700, files
0600): the CA key signs any identity, a token is as good as a password.
Kubernetes' conventions are kept so tools read them as they read a
kubeadm cluster's: a client certificate's CN is the user and its O fields
are the groups; `system:masters` is the admin group.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import secrets
from dataclasses import dataclass

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_NAME = "podnet-ca"
VALID_DAYS = 3650


def _write_private(path: str, data: bytes) -> None:
    """Write a file only root can read, atomically (no moment with wider mode)."""
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _key() -> ec.EllipticCurvePrivateKey:
    # P-256: small and fast to sign with; every TLS client here speaks it
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _name(cn: str, orgs: tuple[str, ...] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    return x509.Name(attrs + [x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@dataclass
class Pki:
    """The credentials directory of one cluster."""

    dir: str

    @property
    def ca_cert(self) -> str:
        return os.path.join(self.dir, "ca.crt")

    @property
    def ca_key(self) -> str:
        return os.path.join(self.dir, "ca.key")

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def ensure_ca(self) -> None:
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        os.chmod(self.dir, 0o700)
        if os.path.exists(self.ca_cert) and os.path.exists(self.ca_key):
            return
        key = _key()
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(CA_NAME))
            .issuer_name(_name(CA_NAME))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        _write_private(self.ca_key, _pem_key(key))
        _write_private(self.ca_cert, cert.public_bytes(serialization.Encoding.PEM))

    def _load_ca(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        with open(self.ca_cert, "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
        with open(self.ca_key, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return cert, key

    def issue(
        self,
        name: str,
        cn: str,
        orgs: tuple[str, ...] = (),
        server_names: tuple[str, ...] = (),
        server_ips: tuple[str, ...] = (),
    ) -> tuple[str, str]:
        """A certificate signed by the CA: <name>.crt and <name>.key in the
        directory. With server_names/server_ips it is a serving certificate
        (those SANs), else a client one. Returns (cert path, key path)."""
        ca, ca_key = self._load_ca()
        key = _key()
        now = datetime.datetime.now(datetime.UTC)
        usage = ExtendedKeyUsageOID.SERVER_AUTH if (server_names or server_ips) else ExtendedKeyUsageOID.CLIENT_AUTH
        b = (
            x509.CertificateBuilder()
            .subject_name(_name(cn, orgs))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        )
        if server_names or server_ips:
            sans: list[x509.GeneralName] = [x509.DNSName(n) for n in server_names]
            sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in server_ips]
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = b.sign(ca_key, hashes.SHA256())
        crt, keyp = self.path(name + ".crt"), self.path(name + ".key")
        _write_private(keyp, _pem_key(key))
        _write_private(crt, cert.public_bytes(serialization.Encoding.PEM))
        return crt, keyp

    def ca_hash(self) -> str:
        """sha256 of the CA's public key (kubeadm's --discovery-token-ca-cert-hash)."""
        ca, _ = self._load_ca()
        spki = ca.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return "sha256:" + hashlib.sha256(spki).hexdigest()

    # ---- bearer tokens ----------------------------------------------------

    @property
    def tokens_file(self) -> str:
        return self.path("tokens.yaml")

    def tokens(self) -> dict[str, dict[str, object]]:
        """token -> {"user": name, "groups": [...]}."""
        try:
            with open(self.tokens_file) as f:
                return dict(yaml.safe_load(f) or {})
        except FileNotFoundError:
            return {}

    def token_for(self, user: str, groups: tuple[str, ...] = ()) -> str:
        """The token of `user`, made on first use. Under a lock: several
        processes (a lab's agents starting at once) may add theirs together,
        and a read-modify-write without it loses all but one."""
        import fcntl

        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        fd = os.open(self.path("tokens.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            toks = self.tokens()
            for tok, who in toks.items():
                if who.get("user") == user:
                    return tok
            tok = secrets.token_urlsafe(32)
            toks[tok] = {"user": user, "groups": list(groups)}
            _write_private(self.tokens_file, yaml.safe_dump(toks).encode())
            return tok
        finally:
            os.close(fd)


def kubeconfig(
    server: str,
    ca_path: str,
    user: str,
    token: str | None = None,
    cert: str | None = None,
    key: str | None = None,
    cluster: str = "podnet",
) -> str:
    """A kubeconfig's text, with the CA and client credentials embedded (so
    the file alone is enough, copied anywhere)."""
    import base64

    def b64(path: str) -> str:
        with open(path, "rb") as f:
            return base64.b64encode(f.read()).decode()

    auth: dict[str, str] = {}
    if token:
        auth["token"] = token
    if cert and key:
        auth["client-certificate-data"] = b64(cert)
        auth["client-key-data"] = b64(key)
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {"server": server, "certificate-authority-data": b64(ca_path)}}],
        "users": [{"name": user, "user": auth}],
        "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": user, "namespace": "default"}}],
        "current-context": cluster,
        "preferences": {},
    }
    return yaml.safe_dump(doc, sort_keys=False)


def write_kubeconfig(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    _write_private(path, text.encode())
