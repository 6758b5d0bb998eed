"""Secret, IngressClass and Ingress through the API (issue 14): stored and
served as kube-apiserver serves them, to the real kubectl and to podnet's
CLI, and validated with field paths. The nginx data plane that acts on them
is tested in tests/kernel/test_ingress.py.

The tests that need no server call validate() directly; the others share
one lab without pods (module fixture, taken down also when a test fails).
"""

from __future__ import annotations

import base64
import copy
import datetime
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from podnet.api import FieldError, validate
from podnet.apiserver.table import to_table
from podnet.cli.printers import render_describe
from tests.api.conftest import kube_lab_fixture


def self_signed(host: str) -> tuple[str, str]:
    """(certificate PEM, unencrypted key PEM) for host."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode()


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def backend(name: str = "web", port: int | str = 80) -> dict:
    return {"service": {"name": name, "port": {"number": port} if isinstance(port, int) else {"name": port}}}


INGRESS = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "Ingress",
    "metadata": {"name": "web"},
    "spec": {
        "ingressClassName": "other",
        "rules": [
            {
                "host": "foo.example.com",
                "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend()}]},
            }
        ],
    },
}


def refused(obj: dict) -> FieldError:
    with pytest.raises(FieldError) as e:
        validate(obj)
    return e.value


# ---- validation, no server ---------------------------------------------------------


def test_ingress_paths_are_validated_as_kubernetes_does():
    ing = copy.deepcopy(INGRESS)
    path = ing["spec"]["rules"][0]["http"]["paths"][0]
    path["path"] = "foo"
    e = refused(ing)
    assert str(e) == 'spec.rules[0].http.paths[0].path: Invalid value: "foo": must be an absolute path'
    for bad, why in (("/a//b", "must not contain '//'"), ("/a/..", "cannot end with '/..'"), ("/a%2fb", "'%2f'")):
        path["path"] = bad
        e = refused(ing)
        assert e.path == "spec.rules[0].http.paths[0].path" and why in str(e), str(e)
    # ImplementationSpecific: empty is allowed, a relative path is not
    path["pathType"] = "ImplementationSpecific"
    path["path"] = ""
    validate(ing)
    path["path"] = "rel"
    assert refused(ing).path == "spec.rules[0].http.paths[0].path"
    path["path"] = "/"
    del path["pathType"]
    e = refused(ing)
    assert str(e) == "spec.rules[0].http.paths[0].pathType: Required value: pathType must be specified"
    path["pathType"] = "Regex"
    assert refused(ing).path == "spec.rules[0].http.paths[0].pathType"


def test_ingress_hosts_backends_and_tls_are_validated():
    ing = copy.deepcopy(INGRESS)
    rule = ing["spec"]["rules"][0]
    for good in ("*.example.com", "a-b.example.com"):
        rule["host"] = good
        validate(ing)
    for bad, why in (
        ("10.0.0.1", "must be a DNS name, not an IP address"),
        ("foo.*.com", "wildcard"),
        ("*", "wildcard"),
        ("Foo.com", "DNS"),
    ):
        rule["host"] = bad
        e = refused(ing)
        assert e.path == "spec.rules[0].host" and why in str(e), str(e)
    rule["host"] = "foo.example.com"
    port = rule["http"]["paths"][0]["backend"]["service"]["port"]
    port["name"] = "http"
    assert "may not specify both name and number" in str(refused(ing))
    del port["number"], port["name"]
    assert refused(ing).path == "spec.rules[0].http.paths[0].backend.service.port"
    port["number"] = 70000
    assert refused(ing).path == "spec.rules[0].http.paths[0].backend.service.port.number"
    port.clear()
    port["name"] = "http"
    validate(ing)
    # a backend that is not a Service is refused: podnet's ingress sends to Services only
    rule["http"]["paths"][0]["backend"] = {"resource": {"kind": "Bucket", "name": "b"}}
    e = refused(ing)
    assert e.path == "spec.rules[0].http.paths[0].backend.resource" and "not supported by podnet" in str(e)
    # neither rules nor a default backend
    ing["spec"] = {"ingressClassName": "podnet"}
    assert "either `defaultBackend` or `rules` must be specified" in str(refused(ing))
    ing["spec"] = {"defaultBackend": backend(port="http"), "tls": [{"hosts": ["*.example.com"], "secretName": "s"}]}
    validate(ing)
    ing["spec"]["tls"][0]["hosts"] = ["1.2.3.4"]
    assert refused(ing).path == "spec.tls[0].hosts[0]"


def test_ingress_class_needs_a_controller_and_takes_no_parameters():
    ic = {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": "podnet"}, "spec": {}}
    assert str(refused(ic)) == "spec.controller: required"
    ic["spec"]["controller"] = "nginx"
    assert refused(ic).path == "spec.controller"
    ic["spec"]["controller"] = "podnet.io/ingress-nginx"
    ic["metadata"]["namespace"] = "ignored"  # cluster-scoped: dropped, as Kubernetes does
    assert "namespace" not in validate(ic)["metadata"]
    ic["spec"]["parameters"] = {"kind": "Params", "name": "p"}
    e = refused(ic)
    assert e.path == "spec.parameters" and "not supported by podnet" in str(e)


def test_secrets_merge_string_data_and_tls_secrets_need_a_matching_pem_pair():
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s"},
        "data": {"a": b64("one"), "b": b64("two")},
        "stringData": {"b": "zwei", "c": "drei"},
    }
    out = validate(secret)
    assert out["type"] == "Opaque" and "stringData" not in out
    assert out["data"] == {"a": b64("one"), "b": b64("zwei"), "c": b64("drei")}
    bad = copy.deepcopy(secret)
    bad["data"]["a"] = "not base64!"
    e = refused(bad)
    assert e.path == "data[a]" and "not base64!" not in str(e)  # secret data is never shown
    bad["data"] = {"a/b": b64("x")}
    assert refused(bad).path == "data[a/b]"
    crt, key = self_signed("foo.example.com")
    tls = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "t"}, "type": "kubernetes.io/tls"}
    tls["data"] = {"tls.crt": b64(crt), "tls.key": b64(key)}
    validate(tls)
    only_crt = dict(tls, data={"tls.crt": b64(crt)})
    e = refused(only_crt)
    assert e.path == "data[tls.key]" and "needs both tls.crt and tls.key" in str(e)
    garbage = dict(tls, data={"tls.crt": b64("hello"), "tls.key": b64(key)})
    assert refused(garbage).path == "data[tls.crt]"
    _, other_key = self_signed("bar.example.com")
    mismatch = dict(tls, data={"tls.crt": b64(crt), "tls.key": b64(other_key)})
    e = refused(mismatch)
    assert e.path == "data[tls.key]" and "does not match" in str(e)
    assert "PRIVATE" not in str(e) and key.splitlines()[1] not in str(e)
    by_string = dict(tls, data=None, stringData={"tls.crt": crt, "tls.key": key})
    assert validate(by_string)["data"]["tls.key"] == b64(key)
    e = refused(dict(secret, type="kubernetes.io/dockerconfigjson"))
    assert e.path == "type" and "not supported by podnet" in str(e)
    validate(dict(secret, immutable=True))


def test_columns_and_describe_as_kubectl_prints_them():
    ing = validate(copy.deepcopy(INGRESS))
    ing["spec"]["rules"] += [{"host": "h%d.example.com" % i} for i in range(3)]
    ing["spec"]["tls"] = [{"hosts": ["foo.example.com"], "secretName": "foo-tls"}]
    ing["status"] = {"loadBalancer": {"ingress": [{"ip": "192.168.200.241"}, {"ip": "192.168.200.242"}]}}
    table = to_table("Ingress", [ing])
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Class", "Hosts", "Address", "Ports", "Age"]
    # formatHosts: three, then how many more; the address cut at 16 characters; 443 with TLS
    cells = table["rows"][0]["cells"]
    assert cells[:5] == [
        "web",
        "other",
        "foo.example.com,h0.example.com,h1.example.com + 1 more...",
        "192.168.200.2...",
        "80, 443",
    ]
    ing["spec"] = {"defaultBackend": backend()}
    assert to_table("ingress", [ing])["rows"][0]["cells"][1:5] == ["<none>", "*", "192.168.200.2...", "80"]
    crt, key = self_signed("foo.example.com")
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "t"}, "type": "kubernetes.io/tls"}
    secret["stringData"] = {"tls.crt": crt, "tls.key": key}
    table = to_table("Secret", [validate(secret)])
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Type", "Data", "Age"]
    assert table["rows"][0]["cells"][:3] == ["t", "kubernetes.io/tls", 2]
    ic = {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": "podnet"}}
    ic["spec"] = {"controller": "podnet.io/ingress-nginx"}
    table = to_table("IngressClass", [validate(ic)])
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Controller", "Parameters", "Age"]
    assert table["rows"][0]["cells"][:3] == ["podnet", "podnet.io/ingress-nginx", "<none>"]
    # describe: kubectl's layout, each backend with its Service's ready endpoints
    ing = validate(copy.deepcopy(INGRESS))
    ing["spec"]["tls"] = [{"hosts": ["foo.example.com"], "secretName": "foo-tls"}]
    services = {"web": {"spec": {"ports": [{"port": 80, "name": "http"}]}}}
    slices = [
        {
            "metadata": {"labels": {"kubernetes.io/service-name": "web"}},
            "ports": [{"name": "http", "port": 8080}],
            "endpoints": [
                {"addresses": ["10.244.0.5"], "conditions": {"ready": True}},
                {"addresses": ["10.244.1.5"], "conditions": {"ready": False}},
            ],
        }
    ]
    text = render_describe(ing, events=[], related={"services": services, "slices": slices})
    assert "Ingress Class:    other" in text and "foo-tls terminates foo.example.com" in text
    assert "web:80 (10.244.0.5:8080)" in text and "10.244.1.5" not in text
    assert "Default backend:  <default>" in text
    text = render_describe(ing, events=[], related={"services": {}, "slices": []})
    assert 'web:80 (<error: services "web" not found>)' in text


# ---- through the API server ----------------------------------------------------------


@pytest.fixture(scope="module")
def ingress_lab(tmp_path_factory):
    """A lab without pods: these tests only talk to its API server."""
    yield from kube_lab_fixture(tmp_path_factory, "ca", manifests=())


def test_kubectl_creates_tls_and_generic_secrets_shown_in_base64(ingress_lab):
    lab = ingress_lab
    crt, key = self_signed("foo.example.com")
    lab.write("tls.crt", crt)
    lab.write("tls.key", key)
    lab.kubectl("create", "secret", "tls", "foo-tls", "--cert", "tls.crt", "--key", "tls.key")
    got = lab.kjson("get", "secret", "foo-tls")
    assert got["type"] == "kubernetes.io/tls"
    assert got["data"] == {"tls.crt": b64(crt), "tls.key": b64(key)}
    assert "status" not in got
    text = lab.kubectl("get", "secret", "foo-tls", "-o", "yaml").stdout
    assert "tls.crt: " + b64(crt) in text and "BEGIN CERTIFICATE" not in text
    lab.kubectl("create", "secret", "generic", "gen", "--from-literal=user=admin")
    assert lab.kjson("get", "secret", "gen")["data"] == {"user": b64("admin")}
    # stringData through kubectl apply: merged into data, as Kubernetes does
    manifest = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "mixed"},
        "data": {"a": b64("one")},
        "stringData": {"b": "two"},
    }
    lab.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    got = lab.kjson("get", "secret", "mixed")
    assert got["data"] == {"a": b64("one"), "b": b64("two")} and "stringData" not in got
    # a tls Secret whose key is missing: 422 with the field, and nothing stored
    bad = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "half"}, "type": "kubernetes.io/tls"}
    bad["data"] = {"tls.crt": b64(crt)}
    res = lab.kubectl("apply", "-f", "-", input=json.dumps(bad), check=False)
    assert res.returncode != 0 and "data[tls.key]: Required value" in res.stderr, res.stderr
    assert lab.kubectl("get", "secret", "half", check=False).returncode != 0
    out = lab.kubectl("get", "secret", "foo-tls").stdout.splitlines()
    assert out[0].split() == ["NAME", "TYPE", "DATA", "AGE"] and out[1].split()[:3] == [
        "foo-tls",
        "kubernetes.io/tls",
        "2",
    ]
    # an immutable Secret keeps its data, and the type of any Secret stays (kube-apiserver's update rules)
    frozen = dict(manifest, metadata={"name": "frozen"}, immutable=True)
    lab.kubectl("apply", "-f", "-", input=json.dumps(frozen))
    res = lab.kubectl("apply", "-f", "-", input=json.dumps(dict(frozen, data={"a": b64("changed")})), check=False)
    assert res.returncode != 0 and "data: Forbidden: field is immutable when `immutable` is set" in res.stderr
    res = lab.kubectl("patch", "secret", "gen", "--type=merge", "-p", '{"type": "example.com/other"}', check=False)
    assert res.returncode != 0 and "type: Invalid value" in res.stderr and "field is immutable" in res.stderr
    assert lab.kjson("get", "secret", "frozen")["data"] == {"a": b64("one"), "b": b64("two")}
    for name in ("foo-tls", "gen", "mixed", "frozen"):
        lab.kubectl("delete", "secret", name)
    assert lab.kjson("get", "secrets")["items"] == []


def test_ingress_and_ingress_class_create_get_watch_update_delete(ingress_lab, background):
    lab = ingress_lab
    ic = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": {"name": "other", "annotations": {"ingressclass.kubernetes.io/is-default-class": "false"}},
        # not podnet's controller: the lab's ingress-nginx leaves these alone (status is this test's)
        "spec": {"controller": "example.com/other"},
    }
    watch = background(["/usr/bin/kubectl", "get", "ingress", "--watch", "-o", "name"], lab.kenv, lab.work)
    lab.kubectl("apply", "-f", "-", input=json.dumps({"kind": "List", "apiVersion": "v1", "items": [ic, INGRESS]}))
    watch.wait_line("the watch sees the new Ingress", lambda x: x == "ingress.networking.k8s.io/web")
    got = lab.kjson("get", "ingressclass", "other")
    assert got["spec"] == ic["spec"] and "namespace" not in got["metadata"]
    ing = lab.kjson("get", "ing", "web")
    assert ing["spec"] == INGRESS["spec"] and ing["metadata"]["generation"] == 1
    # apply again: unchanged; then a change bumps the generation
    res = lab.kubectl("apply", "-f", "-", input=json.dumps(INGRESS))
    assert "unchanged" in res.stdout, res.stdout
    changed = copy.deepcopy(INGRESS)
    changed["spec"]["rules"][0]["http"]["paths"].append(
        {"path": "/api", "pathType": "Exact", "backend": backend("api", "http")}
    )
    lab.kubectl("apply", "-f", "-", input=json.dumps(changed))
    ing = lab.kjson("get", "ingress", "web")
    assert ing["metadata"]["generation"] == 2 and ing["spec"]["rules"][0]["http"]["paths"][1]["path"] == "/api"
    # kubectl create ingress (protobuf on the wire)
    lab.kubectl("create", "ingress", "made", "--class=other", "--rule=bar.example.com/app*=web:http,tls=bar-tls")
    made = lab.kjson("get", "ingress", "made")["spec"]
    assert made["rules"][0]["http"]["paths"][0] == {
        "path": "/app",
        "pathType": "Prefix",
        "backend": backend("web", "http"),
    }
    assert made["tls"] == [{"hosts": ["bar.example.com"], "secretName": "bar-tls"}]
    # status is the controller's, through the status subresource
    lb = {"loadBalancer": {"ingress": [{"ip": "192.168.200.240"}]}}
    lab.kubectl("patch", "ingress", "web", "--subresource=status", "--type=merge", "-p", json.dumps({"status": lb}))
    assert lab.kjson("get", "ingress", "web")["status"] == lb
    # an invalid one: kube-apiserver's message, with the field path
    bad = copy.deepcopy(INGRESS)
    bad["metadata"]["name"] = "bad"
    bad["spec"]["rules"][0]["http"]["paths"][0]["path"] = "foo"
    res = lab.kubectl("apply", "-f", "-", input=json.dumps(bad), check=False)
    assert res.returncode != 0
    assert 'spec.rules[0].http.paths[0].path: Invalid value: "foo": must be an absolute path' in res.stderr
    # kubectl's columns come from the server's Table
    out = lab.kubectl("get", "ingress", "web").stdout.splitlines()
    assert out[0].split() == ["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"]
    assert out[1].split()[:5] == ["web", "other", "foo.example.com", "192.168.200.240", "80"]
    out = lab.kubectl("get", "ingressclass", "other").stdout.splitlines()
    assert out[0].split() == ["NAME", "CONTROLLER", "PARAMETERS", "AGE"]
    assert out[1].split()[:3] == ["other", "example.com/other", "<none>"]
    # podnet's own CLI sees and deletes them too
    out = lab.run("get", "ingress").stdout
    assert "web" in out and "made" in out
    text = lab.run("describe", "ingress", "web").stdout
    assert "Ingress Class:    other" in text and "192.168.200.240" in text
    lab.run("delete", "ingress", "made")
    lab.kubectl("delete", "ingress", "web")
    lab.kubectl("delete", "ingressclass", "other")
    assert lab.kjson("get", "ingress")["items"] == []
    assert "other" not in [c["metadata"]["name"] for c in lab.kjson("get", "ingressclass")["items"]]
