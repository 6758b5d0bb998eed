"""The etcd store over client TLS (etcd's --client-cert-auth), as `podnet
server --store etcd://...?cacert=&cert=&key=` uses it: a real etcd on
loopback with certificates from a throwaway CA; put, get, txn conflict and a
watch work; no client certificate, or a CA that did not sign etcd's, is
refused. etcd is stopped by the PID we started, its directory removed."""

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time

import pytest

from podnet.apiserver.certs import Pki
from podnet.store.base import Conflict, StoreError, open_store

ETCD = "/usr/bin/etcd"


def _etcd_cert(pki, d):
    """etcd's serving certificate, also good as a client one (etcd's gRPC
    gateway dials etcd itself with it), as etcd's own docs make them."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca, ca_key = pki._load_ca()
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "etcd")]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    crt, keyp = os.path.join(d, "etcd.crt"), os.path.join(d, "etcd.key")
    with open(keyp, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    with open(crt, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    return crt, keyp


def _port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def tls_etcd():
    d = tempfile.mkdtemp(prefix="podnet-etcd-tls-")
    pki = Pki(os.path.join(d, "pki"))
    pki.ensure_ca()
    crt, key = _etcd_cert(pki, d)
    ccrt, ckey = pki.issue("client", "podnet-server")
    other = Pki(os.path.join(d, "other"))
    other.ensure_ca()
    client, peer = _port(), _port()
    log = open(os.path.join(d, "etcd.log"), "wb")
    proc = subprocess.Popen(
        [ETCD, "--name", "tls", "--data-dir", os.path.join(d, "data")]
        + ["--listen-client-urls", "https://127.0.0.1:%d" % client]
        + ["--advertise-client-urls", "https://127.0.0.1:%d" % client]
        + ["--listen-peer-urls", "http://127.0.0.1:%d" % peer]
        + ["--initial-advertise-peer-urls", "http://127.0.0.1:%d" % peer]
        + ["--initial-cluster", "tls=http://127.0.0.1:%d" % peer]
        + ["--cert-file", crt, "--key-file", key, "--trusted-ca-file", pki.ca_cert, "--client-cert-auth"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        url = "etcd://127.0.0.1:%d?cacert=%s&cert=%s&key=%s" % (client, pki.ca_cert, ccrt, ckey)
        deadline = time.time() + 30
        while True:
            try:
                s = open_store(url)
                s.get("/probe")
                s.close()
                break
            except StoreError:
                assert proc.poll() is None, open(os.path.join(d, "etcd.log")).read()
                assert time.time() < deadline, "etcd with TLS did not answer in 30 s"
                time.sleep(0.3)
        yield {"port": client, "url": url, "ca": pki.ca_cert, "other_ca": other.ca_cert}
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(d, ignore_errors=True)


def test_store_over_tls(tls_etcd):
    s = open_store(tls_etcd["url"])
    try:
        rev = s.put("/tls/a", {"kind": "X", "metadata": {"name": "a"}})
        obj, got = s.get("/tls/a")
        assert obj["metadata"]["name"] == "a" and got == rev
        with pytest.raises(Conflict):
            s.put("/tls/a", {"kind": "X", "metadata": {"name": "a"}}, expect_rev=rev - 1)
        stop = threading.Event()
        seen = []

        def watch():
            for ev in s.watch("/tls/", rev, stop):
                seen.append(ev)
                return

        t = threading.Thread(target=watch, daemon=True)
        t.start()
        s.put("/tls/b", {"kind": "X", "metadata": {"name": "b"}})
        t.join(20)
        stop.set()
        assert [(ev.type, ev.key) for ev in seen] == [("PUT", "/tls/b")], seen  # the stream after rev, over TLS
    finally:
        s.close()


def test_tls_refusals(tls_etcd):
    port = tls_etcd["port"]
    # no client certificate: etcd's --client-cert-auth refuses the handshake
    s = open_store("etcd://127.0.0.1:%d?cacert=%s" % (port, tls_etcd["ca"]))
    try:
        with pytest.raises(StoreError):
            s.get("/tls/a")
    finally:
        s.close()
    # etcd's certificate checked against a CA that did not sign it
    s = open_store("etcd://127.0.0.1:%d?cacert=%s" % (port, tls_etcd["other_ca"]))
    try:
        with pytest.raises(StoreError):
            s.get("/tls/a")
    finally:
        s.close()
    with pytest.raises(StoreError, match="cert and key need cacert"):
        open_store("etcd://127.0.0.1:%d?cert=/x&key=/y" % port)
