"""Container fields as Kubernetes runs them, seen from inside a lab pod
(issue 11: nothing accepted and ignored): workingDir, command and args,
env with $(VAR) references and the downward API (valueFrom.fieldRef), the
same environment for `podnet exec`; and an HTTPS probe to an explicit host.
"""

import json
import os
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from podnet.agent import probes
from tests.kernel.test_lab import Lab, leftovers

pytestmark = pytest.mark.kernel

POD = r"""apiVersion: v1
kind: Pod
metadata: {name: fields, labels: {app: demo}}
spec:
  nodeName: node1
  containers:
  - name: c
    image: podnet.io/host
    workingDir: /tmp
    command: [sh, -c, 'echo "wd=$(pwd) arg=$0 a=$A b=$B ip=$MYIP node=$NODE ns=$NS app=$APP"; exec sleep 3600']
    args: [hello]
    env:
    - {name: A, value: x}
    - {name: B, value: "$(A)-y-$$(A)"}
    - name: MYIP
      valueFrom: {fieldRef: {fieldPath: status.podIP}}
    - name: NODE
      valueFrom: {fieldRef: {fieldPath: spec.nodeName}}
    - name: NS
      valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
    - name: APP
      valueFrom: {fieldRef: {fieldPath: "metadata.labels['app']"}}
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("labs"))
    lab = Lab("pf%d" % (os.getpid() % 100000), root)
    try:
        lab.run("lab", "up", "--name", lab.name, "--nodes", "1", "-f", "-", "--timeout", "90", input=POD, timeout=150)
        yield lab
    finally:
        lab.run("lab", "down", "--name", lab.name, check=False)
        assert leftovers(lab.name, root) == []


def test_working_dir_command_args_and_env_as_kubernetes_runs_them(lab):
    pod = lab.pod("fields")
    ip = pod["status"]["podIP"]
    want = "wd=/tmp arg=hello a=x b=x-y-$(A) ip=%s node=node1 ns=default app=demo" % ip
    lab.wait("the container's first line", lambda: want in lab.run("logs", "fields").stdout)
    # kubectl exec gets the container's environment, downward API included
    env = lab.run("exec", "fields", "--", "env").stdout.splitlines()
    assert {"A=x", "B=x-y-$(A)", "MYIP=" + ip, "NODE=node1", "NS=default", "APP=demo"} <= set(env)


# ---- an HTTPS probe with an explicit host ---------------------------------------------


def _tls_server(tmp_path):
    key, crt = str(tmp_path / "k.pem"), str(tmp_path / "c.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", crt]
        + ["-days", "1", "-subj", "/CN=probe-test"],
        check=True,
        capture_output=True,
    )

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"path": self.path, "ua": self.headers.get("User-Agent")}).encode()
            self.send_response(200 if self.path == "/ok" else 503)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_https_probe_with_host(tmp_path):
    server = _tls_server(tmp_path)
    try:
        port = server.server_address[1]
        # host overrides the pod IP (a made-up one here, never dialled); HTTPS
        # is spoken, and kubelet does not verify the certificate
        spec = {"httpGet": {"host": "127.0.0.1", "port": port, "path": "/ok", "scheme": "HTTPS"}}
        ok, body = probes.probe(spec, "192.0.2.1", None, from_netns=probes.OWN_NETNS)
        assert ok, body
        assert json.loads(body) == {"path": "/ok", "ua": probes.USER_AGENT}
        spec["httpGet"]["path"] = "/bad"
        assert probes.probe(spec, "192.0.2.1", None, from_netns=probes.OWN_NETNS) == (
            False,
            "HTTP probe failed with statuscode: 503",
        )
        # the same server asked in plain HTTP does not answer a probe as healthy
        spec["httpGet"].update(path="/ok", scheme="HTTP")
        assert probes.probe(spec, "192.0.2.1", None, from_netns=probes.OWN_NETNS)[0] is False
    finally:
        server.shutdown()
        server.server_close()
