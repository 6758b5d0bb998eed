"""podnet server / agent join: the pure parts (store URLs, addresses, the CA
hash check) and the systemd units (systemd-analyze verify)."""

import os
import shutil
import subprocess

import pytest

from podnet.apiserver.certs import Pki
from podnet.hosts import join, server


def test_store_url():
    assert server.store_url("sqlite:store.db", "/var/lib/x") == "sqlite:///var/lib/x/store.db"
    assert server.store_url("sqlite:///abs/s.db", "/d") == "sqlite:///abs/s.db"
    assert server.store_url("etcd://a:2379,b:2379", "/d") == "etcd://a:2379,b:2379"
    with pytest.raises(ValueError, match="use sqlite:PATH or etcd://"):
        server.store_url("postgres://x", "/d")


def test_etcd_tls_flags():
    assert server.with_etcd_tls("etcd://a:2379", None, None, None) == "etcd://a:2379"
    url = server.with_etcd_tls("etcd://a:2379,b:2379", "/p/ca.crt", "/p/c.crt", "/p/c.key")
    assert url == "etcd://a:2379,b:2379?cacert=/p/ca.crt&cert=/p/c.crt&key=/p/c.key"
    with pytest.raises(ValueError, match="the store is not etcd"):
        server.with_etcd_tls("sqlite:///x.db", "/p/ca.crt", None, None)
    with pytest.raises(ValueError, match="need --etcd-cafile"):
        server.with_etcd_tls("etcd://a:2379", None, "/p/c.crt", "/p/c.key")


def test_bind_and_addresses():
    assert server.split_bind("10.0.0.2:6443") == ("10.0.0.2", 6443)
    assert server.split_bind("[::1]:6443") == ("::1", 6443)
    with pytest.raises(ValueError, match="expected ADDR:PORT"):
        server.split_bind("6443")
    assert server.advertise("10.0.0.2", None) == "10.0.0.2"
    assert server.advertise("0.0.0.0", "10.9.9.9") == "10.9.9.9"
    # controllers in the same process: loopback when bound to every address
    assert server.local_server("0.0.0.0", 6443) == "https://127.0.0.1:6443"
    assert server.local_server("10.0.0.2", 6443) == "https://10.0.0.2:6443"


def test_prepare_and_join_command(tmp_path):
    paths = server.prepare(str(tmp_path), "10.0.0.2:6443")
    assert paths["url"] == "https://10.0.0.2:6443"
    cmd = server.join_command(str(tmp_path), paths["url"], 60)
    pki = Pki(paths["pki"])
    assert cmd.startswith("podnet agent join https://10.0.0.2:6443 --token ")
    assert cmd.endswith("--ca-cert-hash " + pki.ca_hash())
    with open(pki.ca_cert, "rb") as f:
        pem = f.read()
    join.check_hash(pem, pki.ca_hash())  # the hash the joiner computes is kubeadm's (SPKI sha256)
    with pytest.raises(join.JoinError, match="refusing to trust it"):
        join.check_hash(pem, "sha256:" + "0" * 64)
    with pytest.raises(join.JoinError, match="expected sha256:<64 hex digits>"):
        join.check_hash(pem, "md5:abc")
    # a second start keeps the CA (joined nodes keep trusting it)
    assert server.prepare(str(tmp_path), "10.0.0.3:6443")["url"] == "https://10.0.0.3:6443"
    assert Pki(paths["pki"]).ca_hash() == pki.ca_hash()


def test_systemd_units_verify(tmp_path):
    """systemd-analyze verify on both units, their ExecStart pointed at this checkout's podnet."""
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed")
    podnet = os.path.abspath(".venv/bin/podnet")
    paths = []
    for name in ("podnet-server.service", "podnet-agent.service"):
        with open(os.path.join("deploy/systemd", name)) as f:
            text = f.read()
        assert "/usr/local/bin/podnet " in text
        path = tmp_path / name
        path.write_text(text.replace("/usr/local/bin/podnet ", podnet + " "))
        paths.append(str(path))
    r = subprocess.run(["systemd-analyze", "verify", *paths], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr
