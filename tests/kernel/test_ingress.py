"""Ingress on a real lab: podnet's controller and a real nginx in the
ingress-nginx pod, reached from the external host at the LoadBalancer
address, with curl (`--resolve` for the host names) and a small HTTP client
run in the external host's netns."""

import base64
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time

import pytest

from tests.kernel.test_lab import Lab, leftovers

pytestmark = pytest.mark.kernel

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(ROOT, "examples", "lab.yaml")

# the client in the external host: `count` requests (each on a new connection),
# or until the file `stop` exists; prints [[status, body], ...] as JSON
CLIENT = r"""
import http.client, json, os, sys
ip, host, path, count, stop = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
headers = json.loads(sys.argv[6]) if len(sys.argv) > 6 else {}
out = []
while (count and len(out) < count) or (not count and not os.path.exists(stop)):
    try:
        c = http.client.HTTPConnection(ip, 80, timeout=10)
        c.request("GET", path, headers=dict(headers, Host=host))
        r = c.getresponse()
        out.append([r.status, r.read().decode(errors="replace")])
        c.close()
    except Exception as exc:
        out.append([0, repr(exc)])
print(json.dumps(out))
"""


def app(name, replicas=1):
    return """
apiVersion: apps/v1
kind: Deployment
metadata: {name: %(n)s}
spec:
  replicas: %(r)d
  selector: {matchLabels: {app: %(n)s}}
  template:
    metadata: {labels: {app: %(n)s}}
    spec:
      containers:
      - name: netexec
        image: registry.k8s.io/e2e-test-images/agnhost:2.45
        args: ["netexec", "--http-port=8080"]
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {httpGet: {path: /healthz, port: http}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: %(n)s}
spec:
  selector: {app: %(n)s}
  ports: [{name: http, port: 80, targetPort: http}]
""" % {"n": name, "r": replicas}


class IngressLab(Lab):
    lbip = ""

    def apply(self, text):
        return self.run("apply", "-f", "-", input=text)

    def delete(self, kind, name):
        self.run("delete", kind, name, check=False)

    def exec_external(self, *argv, timeout=120, check=True):
        return self.run("lab", "exec", "external", "--", *argv, timeout=timeout, check=check)

    def curl(self, host, path, *extra, scheme="http"):
        """-> (status, body) of one request from the external host."""
        port = 443 if scheme == "https" else 80
        res = self.exec_external(
            "curl", "-s", "-m", "10", "-o", "-", "-w", "\n%{http_code}", "--resolve",
            "%s:%d:%s" % (host, port, self.lbip), *extra, "%s://%s%s" % (scheme, host, path), timeout=30, check=False,
        )  # fmt: skip
        body, _, code = res.stdout.rpartition("\n")
        return int(code or 0), body

    def requests(self, host, path, count, headers=None):
        res = self.exec_external(
            sys.executable, "-c", CLIENT, self.lbip, host, path, str(count), "/nonexistent", json.dumps(headers or {})
        )
        return json.loads(res.stdout)

    def until(self, what, fn, timeout=40):
        return self.wait(what, fn, timeout)


def start_lab(name, root, extra=""):
    lab = IngressLab(name, root)
    lab.run("lab", "up", "--name", lab.name, "-f", EXAMPLE, "--timeout", "90", timeout=150)
    lab.apply(extra)

    def lb():
        svc = json.loads(lab.run("get", "svc", "ingress-nginx", "-n", "podnet-ingress", "-o", "json").stdout)
        ing = (svc.get("status") or {}).get("loadBalancer", {}).get("ingress") or []
        return ing and ing[0].get("ip")

    lab.lbip = lab.until("the ingress-nginx LoadBalancer address", lb)
    # nginx answers (the pod is Ready once it listens on 80)
    lab.until("nginx answering", lambda: lab.curl("nothing.example.com", "/")[0] == 404, timeout=60)
    return lab


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("labs"))
    lab = IngressLab("dn%d" % (os.getpid() % 10000), root)
    try:
        lab = start_lab(lab.name, root, app("a") + "---" + app("b") + "---" + app("c"))
        lab.until("apps ready", lambda: all(_ready(p) for p in lab.get("pods")), timeout=60)
        yield lab
    finally:
        lab.run("lab", "down", "--name", lab.name, check=False)
        assert leftovers(lab.name, root) == []


def _ready(pod):
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", []))


def ingress(name, rules, tls=None, default=None, cls=None):
    spec = {"rules": rules}
    if tls:
        spec["tls"] = tls
    if default:
        spec["defaultBackend"] = {"service": {"name": default, "port": {"number": 80}}}
    if cls:
        spec["ingressClassName"] = cls
    return json.dumps(
        {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": name}, "spec": spec}
    )


def path(p, svc, ptype="Prefix", port=None):
    return {
        "path": p,
        "pathType": ptype,
        "backend": {"service": {"name": svc, "port": port or {"number": 80}}},
    }


def served_by(lab, host, p, want, *extra, scheme="http"):
    """Wait until host+p answers from a pod of Deployment `want`."""

    def check():
        code, body = lab.curl(host, p, *extra, scheme=scheme)
        return code == 200 and body.startswith(want + "-") and body

    return lab.until("%s%s served by %s" % (host, p, want), check)


def test_host_and_path_routing_with_precedence_and_wildcards(lab):
    lab.apply(
        ingress(
            "routes",
            [
                {
                    "host": "a.example.com",
                    "http": {
                        "paths": [
                            path("/", "a"),
                            path("/hostname", "b", port={"name": "http"}),
                            path("/hostname", "c", "Exact"),
                        ]
                    },
                },
                {"host": "*.w.example.com", "http": {"paths": [path("/", "b")]}},
                {
                    "host": "b.example.com",
                    "http": {"paths": [path("/host", "c"), path("/", "a", "ImplementationSpecific")]},
                },
                {"host": "c.example.com", "http": {"paths": [path("/echo", "c", "Exact")]}},
            ],
        )
    )
    try:
        served_by(lab, "a.example.com", "/hostname", "c")  # Exact before Prefix
        served_by(lab, "a.example.com", "/hostname/", "b")  # the prefix (agnhost drops the slash)
        served_by(lab, "x.w.example.com", "/hostname", "b")  # the wildcard: one label
        assert lab.curl("x.y.w.example.com", "/hostname")[0] == 404  # not two labels
        # /host is no element-wise prefix of /hostname: the "/" rule serves it
        served_by(lab, "b.example.com", "/hostname", "a")
        assert lab.curl("unknown.example.com", "/hostname")[0] == 404  # no host, no default backend
        assert lab.curl("c.example.com", "/hostname")[0] == 404  # a known host, no path of it matches
        st = json.loads(lab.run("get", "ingress", "routes", "-o", "json").stdout)["status"]
        assert st["loadBalancer"]["ingress"] == [{"ip": lab.lbip}]
        # a default backend takes every request no rule takes
        lab.apply(ingress("fallback", [], default="b"))
        served_by(lab, "unknown.example.com", "/hostname", "b")
        served_by(lab, "c.example.com", "/hostname", "b")  # a known host's unmatched path too (the spec)
        lab.delete("ingress", "fallback")
        lab.until("404 again", lambda: lab.curl("unknown.example.com", "/hostname")[0] == 404)
        # an Ingress of another class is not ours
        lab.apply(ingress("other", [{"host": "o.example.com", "http": {"paths": [path("/", "a")]}}], cls="nginx"))
        time.sleep(2)
        assert lab.curl("o.example.com", "/hostname")[0] == 404
    finally:
        for n in ("routes", "fallback", "other"):
            lab.delete("ingress", n)


def self_signed(host):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    crt = cert.public_bytes(serialization.Encoding.PEM)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return crt, pem


def tls_secret(name, crt, key):
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name},
            "type": "kubernetes.io/tls",
            "data": {"tls.crt": base64.b64encode(crt).decode(), "tls.key": base64.b64encode(key).decode()},
        }
    )


def test_tls_with_sni_and_the_redirect(lab, tmp_path):
    files = {}
    for host in ("s1.example.com", "s2.example.com"):
        crt, key = self_signed(host)
        files[host] = str(tmp_path / (host + ".crt"))
        with open(files[host], "wb") as f:
            f.write(crt)
        lab.apply(tls_secret(host.split(".")[0], crt, key))
    rules = [{"host": h, "http": {"paths": [path("/", "a" if h.startswith("s1") else "b")]}} for h in files]
    tls = [{"hosts": ["s1.example.com"], "secretName": "s1"}, {"hosts": ["s2.example.com"], "secretName": "s2"}]
    lab.apply(ingress("tls", rules, tls=tls))
    try:
        # each name's certificate verifies against its own CA: SNI chose it
        served_by(lab, "s1.example.com", "/hostname", "a", "--cacert", files["s1.example.com"], scheme="https")
        served_by(lab, "s2.example.com", "/hostname", "b", "--cacert", files["s2.example.com"], scheme="https")
        res = lab.exec_external(
            "curl", "-s", "-m", "10", "--resolve", "s1.example.com:443:" + lab.lbip,
            "--cacert", files["s2.example.com"], "https://s1.example.com/hostname", check=False,
        )  # fmt: skip
        assert res.returncode == 60  # s1 with s2's CA: the certificate s1 got fails verification
        res = lab.exec_external(
            "curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", "--resolve",
            "s1.example.com:80:" + lab.lbip, "http://s1.example.com/hostname?x=1",
        )  # fmt: skip
        assert res.stdout == "308 https://s1.example.com/hostname?x=1"
    finally:
        lab.delete("ingress", "tls")
        lab.delete("secret", "s1")
        lab.delete("secret", "s2")


def test_a_backend_scaled_to_zero_answers_503_and_comes_back(lab):
    lab.apply(
        ingress("web", [{"host": "web.example.com", "http": {"paths": [path("/", "web", port={"name": "http"})]}}])
    )
    try:
        served_by(lab, "web.example.com", "/hostname", "web")
        _scale(lab, 0)
        lab.until("503 with no endpoint", lambda: lab.curl("web.example.com", "/hostname")[0] == 503, timeout=60)
        _scale(lab, 3)
        served_by(lab, "web.example.com", "/hostname", "web")
    finally:
        _scale(lab, 3)
        lab.delete("ingress", "web")


def _scale(lab, n):
    dep = json.loads(lab.run("get", "deployment", "web", "-o", "json").stdout)
    dep["spec"]["replicas"] = n
    for k in ("status", "managedFields"):
        dep.pop(k, None)
        dep["metadata"].pop(k, None)
    lab.apply(json.dumps(dep))


def test_reload_under_load_loses_no_request(lab):
    lab.apply(ingress("base", [{"host": "load.example.com", "http": {"paths": [path("/", "a")]}}]))
    served_by(lab, "load.example.com", "/hostname", "a")
    stop = tempfile.mktemp(prefix="dn-ingress-stop-", dir="/tmp")
    client = subprocess.Popen(
        [sys.executable, "-m", "podnet.cli.main", "lab", "exec", "external", "--", sys.executable, "-c", CLIENT]
        + [lab.lbip, "load.example.com", "/hostname", "0", stop],
        env=lab.env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        for i in range(20):  # add 20 rules, change them, remove them
            lab.apply(ingress("r%d" % i, [{"host": "r%d.example.com" % i, "http": {"paths": [path("/", "b")]}}]))
        for i in range(20):
            lab.apply(ingress("r%d" % i, [{"host": "r%d.example.com" % i, "http": {"paths": [path("/x", "c")]}}]))
        for i in range(20):
            lab.delete("ingress", "r%d" % i)
        time.sleep(2)
    finally:
        open(stop, "w").close()
        out, _ = client.communicate(timeout=60)
        os.unlink(stop)
        lab.delete("ingress", "base")
        for i in range(20):
            lab.delete("ingress", "r%d" % i)
    results = json.loads(out)
    assert len(results) > 50
    bad = [r for r in results if r[0] != 200 or not r[1].startswith("a-")]
    assert bad == [], "%d of %d requests failed: %s" % (len(bad), len(results), bad[:5])


def test_a_bad_ingress_is_refused_or_left_out_and_the_rest_is_served(lab):
    lab.apply(ingress("good", [{"host": "good.example.com", "http": {"paths": [path("/", "a")]}}]))
    try:
        served_by(lab, "good.example.com", "/hostname", "a")
        # a path that is not absolute: the API refuses it, naming the field
        res = lab.run(
            "apply", "-f", "-", check=False,
            input=ingress("relative", [{"host": "r.example.com", "http": {"paths": [path("foo", "a")]}}]),
        )  # fmt: skip
        assert res.returncode != 0 and "path" in res.stderr
        # a missing Secret: a Warning Event on the Ingress, nginx serves the rest
        tls = [{"hosts": ["m.example.com"], "secretName": "missing"}]
        lab.apply(ingress("nosecret", [{"host": "m.example.com", "http": {"paths": [path("/", "b")]}}], tls=tls))

        def event():
            evs = lab.get("events")
            return [e for e in evs if e["involvedObject"].get("name") == "nosecret" and e["type"] == "Warning"]

        evs = lab.until("a Warning Event on Ingress nosecret", event)
        assert "Secret default/missing not found" in evs[0]["message"]
        served_by(lab, "good.example.com", "/hostname", "a")
        assert lab.curl("m.example.com", "/hostname")[0] == 404
        # a host name nginx cannot hash (195 characters: more than the
        # server_names_hash_bucket_size of 128): only nginx -t sees it; the
        # controller leaves that Ingress out, says why, and reloads the rest
        long_host = ".".join(c * 60 for c in "lmn") + ".example.com"
        lab.apply(ingress("toolong", [{"host": long_host, "http": {"paths": [path("/", "b")]}}]))
        lab.apply(ingress("after", [{"host": "after.example.com", "http": {"paths": [path("/", "b")]}}]))

        def rejected():
            evs = [e for e in lab.get("events") if e["involvedObject"].get("name") == "toolong"]
            return [e for e in evs if e["reason"] == "Rejected"]

        evs = lab.until("a Rejected Event on Ingress toolong", rejected)
        assert "nginx -t" in evs[0]["message"] and "server_names_hash" in evs[0]["message"]
        served_by(lab, "after.example.com", "/hostname", "b")  # later changes still load
        served_by(lab, "good.example.com", "/hostname", "a")
        assert lab.curl(long_host, "/hostname")[0] == 404
    finally:
        for n in ("good", "relative", "nosecret", "toolong", "after"):
            lab.delete("ingress", n)


def _doctor(lab, *args):
    res = lab.run("doctor", *args, "-o", "json", check=False)
    assert res.returncode in (0, 1), (args, res.stdout, res.stderr)
    return json.loads(res.stdout)


def test_doctor_checks_an_ingress_path_end_to_end(lab):
    """`podnet doctor ing/NAME`: the controller, the backends, the address
    and a real GET from the external host; a backend that goes away is the
    first finding, and a backend scaled to zero is its empty Service."""
    lab.apply(ingress("dr", [{"host": "dr.example.com", "http": {"paths": [path("/", "a")]}}]))
    try:
        lab.until("dr served", lambda: lab.curl("dr.example.com", "/hostname")[0] == 200)
        lab.until("dr has an address", lambda: _doctor(lab, "ing/dr")["findings"] == [])
        d = _doctor(lab, "ing/dr")
        assert d["target"] == "ingress default/dr" and "ingress" in d["checked"]
        lab.apply(ingress("dr", [{"host": "dr.example.com", "http": {"paths": [path("/", "gone")]}}]))
        first = lab.until("a finding", lambda: (_doctor(lab, "ing/dr")["findings"] or [None])[0])
        assert first["check"] == "ingress" and "default/gone, which does not exist" in first["summary"], first
        lab.apply(ingress("dr", [{"host": "dr.example.com", "http": {"paths": [path("/", "a")]}}]))
        lab.apply(app("a", replicas=0))
        d = lab.until(
            "the empty backend found",
            lambda: (lambda d: d if any("HTTP 503" in f["summary"] for f in d["findings"]) else None)(
                _doctor(lab, "ing/dr")
            ),
        )
        # the Service that selects no pod any more is the cause; the 503 outside follows from it
        first = d["findings"][0]
        assert first["check"] in ("service-selector", "endpoints") and "default/a" in first["summary"], d["findings"]
        assert [f["check"] for f in d["findings"]][-1] == "ingress", d["findings"]
    finally:
        lab.apply(app("a"))
        lab.delete("ingress", "dr")
        lab.until("a ready again", lambda: all(_ready(p) for p in lab.get("pods")), timeout=60)
    assert lab.run("doctor", "ing/nope", check=False).returncode == 2
