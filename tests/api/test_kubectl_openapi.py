"""The real kubectl against a real podnet API server, with no special flags:
`kubectl apply` with its default validation (it reads /openapi/v3, then sends
fieldValidation=Strict), client-side apply's strategic merge patch (computed
from the served schemas' merge keys), and `kubectl explain`."""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from podnet.apiserver.certs import Pki, kubeconfig, write_kubeconfig

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or KUBECTL is None, reason="needs root and kubectl (CI runs as root, with kubectl installed)"
)

# `python -m podnet.apiserver.server`, plus what server.py and handlers.py do once they wire
# podnet.apiserver.openapi in (the routes; check_object and its warnings on POST and PUT). Once they do, this
# adds nothing.
BOOT = """
import sys
from podnet.apiserver import handlers, openapi, server

if not hasattr(server, "openapi"):
    make_app = server.make_app

    def with_openapi(*args, **kwargs):
        app = make_app(*args, **kwargs)
        openapi.add_routes(app)
        return app

    server.make_app = with_openapi
if not hasattr(handlers, "openapi"):
    dispatch, read = handlers.Handlers._dispatch, handlers.Handlers._body

    async def read_once(self, request):  # the check drops unknown fields from the object the handler stores
        if "body" not in request:
            request["body"] = await read(self, request)
        return request["body"]

    async def checked(self, request, group, version, parts):
        t, warnings = handlers.parse(group, version, parts), []
        if request.method in ("POST", "PUT") and not t.sub:
            warnings = openapi.check_object(await self._body(request), t.res, request.query.get("fieldValidation"))
        response = await dispatch(self, request, group, version, parts)
        openapi.add_warnings(response, warnings)
        return response

    handlers.Handlers._dispatch, handlers.Handlers._body = checked, read_once
sys.exit(server.main(sys.argv[1:]))
"""

MANIFEST = """
apiVersion: v1
kind: Namespace
metadata:
  name: NS
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: NS
  labels: {app: web, tier: front}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: registry.k8s.io/e2e-test-images/agnhost:2.52
        args: [netexec, --http-port=8080]
        ports:
        - containerPort: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: NS
spec:
  selector: {app: web}
  ports:
  - port: 80
    targetPort: 8080
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def openapi_kubectl():
    """run(*args, stdin=None, check=True): kubectl against a fresh server, stopped by its PID; tmp dir removed."""
    tmp = tempfile.mkdtemp(prefix="podnet-openapi-")
    proc = None
    try:
        pki = Pki(os.path.join(tmp, "pki"))
        pki.ensure_ca()
        pki.issue("apiserver", "podnet-apiserver", server_names=("localhost",), server_ips=("127.0.0.1",))
        cert, key = pki.issue("admin", "admin", orgs=("system:masters",))
        port = free_port()
        config = os.path.join(tmp, "kubeconfig")
        write_kubeconfig(config, kubeconfig("https://127.0.0.1:%d" % port, pki.ca_cert, "admin", cert=cert, key=key))
        log = os.path.join(tmp, "apiserver.log")
        argv = [sys.executable, "-c", BOOT, "--store", "sqlite://" + os.path.join(tmp, "store.db"), "--pki", pki.dir]
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                argv + ["--listen", "127.0.0.1:%d" % port],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.time() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    with open(log) as f:
                        pytest.fail("the API server did not start:\n" + f.read()[-3000:])
                time.sleep(0.05)
        env = {**os.environ, "KUBECONFIG": config, "HOME": tmp}  # HOME: kubectl's caches stay in tmp

        def run(*args, stdin=None, check=True):
            p = subprocess.run([KUBECTL, *args], input=stdin, capture_output=True, text=True, env=env, timeout=60)
            if check and p.returncode != 0:
                with open(log) as f:
                    server_log = f.read()[-2000:]
                pytest.fail(
                    "kubectl %s: exit %d\n%s%s\nserver log:\n%s"
                    % (" ".join(args), p.returncode, p.stdout, p.stderr, server_log)
                )
            return p

        yield run
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def test_apply_with_default_validation_then_edit(openapi_kubectl):
    manifest = MANIFEST.replace("NS", "openapi-apply")
    out = openapi_kubectl("apply", "-f", "-", stdin=manifest).stdout
    assert out.split("\n")[:3] == [
        "namespace/openapi-apply created",
        "deployment.apps/web created",
        "service/web created",
    ]
    edited = (
        manifest.replace("replicas: 2", "replicas: 3")
        .replace("labels: {app: web, tier: front}", "labels: {app: web}")
        .replace("agnhost:2.52", "agnhost:2.53")
        .replace(
            "        - containerPort: 8080",
            "        - containerPort: 8080\n        env:\n        - {name: MODE, value: prod}",
        )
    )
    out = openapi_kubectl("apply", "-f", "-", stdin=edited).stdout
    assert "deployment.apps/web configured" in out and "service/web unchanged" in out
    d = json.loads(openapi_kubectl("get", "deployment", "web", "-n", "openapi-apply", "-o", "json").stdout)
    assert d["metadata"]["labels"] == {"app": "web"}
    assert d["spec"]["replicas"] == 3
    (c,) = d["spec"]["template"]["spec"]["containers"]
    assert c["image"] == "registry.k8s.io/e2e-test-images/agnhost:2.53"
    assert c["env"] == [{"name": "MODE", "value": "prod"}]
    assert c["args"] == ["netexec", "--http-port=8080"] and c["ports"][0]["containerPort"] == 8080


def test_apply_refuses_an_unknown_field_and_creates_nothing(openapi_kubectl):
    openapi_kubectl("create", "namespace", "openapi-strict")
    manifest = MANIFEST.replace("NS", "openapi-strict").split("---")[1].replace("  replicas: 2", "  foo: 1")
    p = openapi_kubectl("apply", "-f", "-", stdin=manifest, check=False)
    assert p.returncode != 0
    assert 'strict decoding error: unknown field "spec.foo"' in p.stderr, p.stderr
    assert p.stderr.startswith("Error from server (BadRequest)"), p.stderr
    gone = openapi_kubectl("get", "deployment", "web", "-n", "openapi-strict", check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr, gone.stderr


def test_validate_warn_drops_the_unknown_field_with_a_warning(openapi_kubectl):
    openapi_kubectl("create", "namespace", "openapi-warn")
    manifest = MANIFEST.replace("NS", "openapi-warn").split("---")[1].replace("  replicas: 2", "  foo: 1")
    p = openapi_kubectl("apply", "--validate=warn", "-f", "-", stdin=manifest)
    assert p.stdout == "deployment.apps/web created\n"
    assert 'Warning: unknown field "spec.foo"' in p.stderr, p.stderr
    d = json.loads(openapi_kubectl("get", "deployment", "web", "-n", "openapi-warn", "-o", "json").stdout)
    assert "foo" not in d["spec"]  # as kube-apiserver: dropped, not stored


def test_explain_field(openapi_kubectl):
    out = openapi_kubectl("explain", "pod.spec.containers.ports").stdout
    assert "FIELD: ports <[]ContainerPort>" in out
    assert "List of ports to expose from the container." in " ".join(out.split())
    assert "containerPort\t<integer> -required-" in out
    assert "Number of port to expose on the pod's IP address." in " ".join(out.split())
    assert "protocol\t<string>" in out


def test_explain_recursive(openapi_kubectl):
    out = openapi_kubectl("explain", "deployment", "--recursive").stdout
    assert out.startswith("GROUP:      apps\nKIND:       Deployment\nVERSION:    v1\n")
    assert "\n  spec\t<DeploymentSpec>" in out
    assert "\n        containers\t<[]Container>" in out
    assert "\n          ports\t<[]ContainerPort>" in out


def test_apply_of_a_list_validates_against_openapi_v2(openapi_kubectl):
    """`kubectl get -o yaml` writes a `kind: List`; kubectl validates that itself, with /openapi/v2 (protobuf)."""
    openapi_kubectl("apply", "-f", "-", stdin=MANIFEST.replace("NS", "openapi-list"))
    listed = openapi_kubectl("get", "deployment,service", "-n", "openapi-list", "-o", "json").stdout
    assert json.loads(listed)["kind"] == "List"
    out = openapi_kubectl("apply", "-f", "-", stdin=listed).stdout
    assert "deployment.apps/web" in out and "service/web" in out
    bad = json.loads(listed)
    bad["items"][0]["spec"]["foo"] = 1
    p = openapi_kubectl("apply", "-f", "-", stdin=json.dumps(bad), check=False)
    assert p.returncode != 0
    assert 'unknown field "foo" in io.k8s.api.apps.v1.DeploymentSpec' in p.stderr, p.stderr
