"""kubectl exec, attach and port-forward, the real binaries, against
podnet.apiserver.streams and podnet.apiserver.portforward.

The API server core is not needed: `FakeApiServer` is a small HTTPS aiohttp
app that answers what kubectl asks before it opens a stream (discovery, the
Pod, a Service) and routes the subresources to the functions under test.
The "pod" is a network namespace of this test with servers inside it.

Transports: kubectl 1.30+ reaches exec/attach over a websocket (v5) and
1.31+ port-forward over a websocket tunnel carrying SPDY; the environment
switches KUBECTL_REMOTE_COMMAND_WEBSOCKETS / KUBECTL_PORT_FORWARD_WEBSOCKETS
=false make it use plain SPDY/3.1, which kubectl 1.27 and 1.29 use anyway.
Each test checks in the request log which transport was really used.
"""

from __future__ import annotations

import asyncio
import datetime
import fcntl
import hashlib
import ipaddress
import json
import os
import pty
import re
import select
import socket
import ssl
import struct
import subprocess
import sys
import termios
import threading
import time
import urllib.request
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.conftest import sh
from tests.helpers import wait_for

SDK_BIN = "/usr/lib/google-cloud-sdk/bin"
TOKEN = "pnt-streams-token"
POD, CONTAINER, UID = "p", "c", "5b1c1e7e-0000-4000-8000-00000000c0de"


def kubectl_binary(version: str) -> str:
    path = f"{SDK_BIN}/kubectl.{version}"
    if not os.access(path, os.X_OK):
        pytest.skip(f"kubectl {version} is not installed at {path}")
    return path


def _self_signed(directory: Path) -> tuple[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "podnet-test-apiserver")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "apiserver.crt", directory / "apiserver.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_path), str(key_path)


def _truthy(request: web.Request, name: str) -> bool:
    return request.query.get(name, "") in ("1", "true", "True")


class FakeApiServer:
    """HTTPS on 127.0.0.1:<free port>, in a thread with its own event loop."""

    def __init__(self, directory: Path, netns: str, log_path: str) -> None:
        self.directory, self.netns, self.log_path = directory, netns, log_path
        self.requests: list[dict[str, Any]] = []
        self.container_running = True
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fake-apiserver", daemon=True)
        self.runner: web.AppRunner | None = None
        self.port = 0

    # ---- lifecycle ----

    def start(self) -> FakeApiServer:
        cert, key = _self_signed(self.directory)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(sock, ctx), self.loop).result(10)
        self.kubeconfig = self.directory / "kubeconfig"
        self.kubeconfig.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [
                        {
                            "name": "t",
                            "cluster": {"server": f"https://127.0.0.1:{self.port}", "insecure-skip-tls-verify": True},
                        }
                    ],
                    "users": [{"name": "t", "user": {"token": TOKEN}}],
                    "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t", "namespace": "default"}}],
                    "current-context": "t",
                }
            )
        )
        return self

    async def _start(self, sock: socket.socket, ctx: ssl.SSLContext) -> None:
        app = web.Application(middlewares=[self._auth])
        app.on_response_prepare.append(self._record)
        app.router.add_get("/version", self._version)
        app.router.add_get("/api", self._api)
        app.router.add_get("/apis", self._apis)
        app.router.add_get("/api/v1", self._resources)
        base = "/api/v1/namespaces/default"
        app.router.add_get(base + "/pods", self._pod_list)
        app.router.add_get(base + "/pods/{name}", self._pod)
        app.router.add_get(base + "/services/{name}", self._service)
        for verb in ("exec", "attach", "portforward"):
            app.router.add_route("*", base + "/pods/{name}/" + verb, getattr(self, "_" + verb))
        self.runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=5)
        await self.runner.setup()
        await web.SockSite(self.runner, sock, ssl_context=ctx).start()

    def stop(self) -> None:
        if self.runner is not None:
            asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def kubectl(
        self, version: str, *args: str, env: dict[str, str] | None = None, **kw: Any
    ) -> subprocess.CompletedProcess[str]:
        environ = {**os.environ, **(env or {})}
        return subprocess.run(self.argv(version, *args), capture_output=True, text=True, timeout=60, env=environ, **kw)

    def argv(self, version: str, *args: str) -> list[str]:
        return [
            kubectl_binary(version),
            f"--kubeconfig={self.kubeconfig}",
            f"--cache-dir={self.directory}/cache",
            *args,
        ]

    def upgrades(self, verb: str) -> list[str]:
        """How kubectl reached `verb`, per upgraded request: 'websocket <subprotocol>' or 'SPDY/3.1 <version>'."""
        return [r["upgrade"] for r in self.requests if r["path"].endswith("/" + verb) and r["status"] == 101]

    async def _record(self, request: web.Request, response: web.StreamResponse) -> None:
        negotiated = response.headers.get("Sec-WebSocket-Protocol") or response.headers.get("X-Stream-Protocol-Version")
        upgrade = f"{request.headers.get('Upgrade', '')} {negotiated or ''}".strip()
        self.requests.append({"path": request.path, "status": response.status, "upgrade": upgrade})

    # ---- handlers ----

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response(
                {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Unauthorized", "code": 401},
                status=401,
            )
        return await handler(request)

    async def _version(self, request: web.Request) -> web.Response:
        return web.json_response({"major": "1", "minor": "32", "gitVersion": "v1.32.0", "platform": "linux/amd64"})

    async def _api(self, request: web.Request) -> web.Response:
        cidr = [{"clientCIDR": "0.0.0.0/0", "serverAddress": f"127.0.0.1:{self.port}"}]
        return web.json_response({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": cidr})

    async def _apis(self, request: web.Request) -> web.Response:
        return web.json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": []})

    async def _resources(self, request: web.Request) -> web.Response:
        def res(name: str, kind: str, verbs: list[str]) -> dict[str, Any]:
            return {"name": name, "singularName": "", "namespaced": True, "kind": kind, "verbs": verbs}

        resources = [
            res("pods", "Pod", ["get", "list"]),
            res("pods/exec", "PodExecOptions", ["create", "get"]),
            res("pods/attach", "PodAttachOptions", ["create", "get"]),
            res("pods/portforward", "PodPortForwardOptions", ["create", "get"]),
            {**res("services", "Service", ["get", "list"]), "shortNames": ["svc"]},
        ]
        return web.json_response({"kind": "APIResourceList", "groupVersion": "v1", "resources": resources})

    def pod(self) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": POD, "namespace": "default", "uid": UID, "labels": {"app": POD}},
            "spec": {"containers": [{"name": CONTAINER, "image": "podnet", "ports": [{"containerPort": 8080}]}]},
            "status": {
                "phase": "Running",
                "podIP": "10.0.0.1",
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [
                    {
                        "name": CONTAINER,
                        "ready": True,
                        "started": True,
                        "restartCount": 0,
                        "image": "podnet",
                        "imageID": "",
                        "state": {"running": {"startedAt": "2025-01-01T00:00:00Z"}},
                    }
                ],
            },
        }

    async def _pod(self, request: web.Request) -> web.Response:
        if request.match_info["name"] != POD:
            return web.json_response(
                {
                    "kind": "Status",
                    "status": "Failure",
                    "reason": "NotFound",
                    "code": 404,
                    "message": f'pods "{request.match_info["name"]}" not found',
                },
                status=404,
            )
        return web.json_response(self.pod())

    async def _pod_list(self, request: web.Request) -> web.Response:
        return web.json_response({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": [self.pod()]})

    async def _service(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": request.match_info["name"], "namespace": "default"},
                "spec": {"selector": {"app": POD}, "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]},
            }
        )

    async def _exec(self, request: web.Request) -> web.StreamResponse:
        from podnet.agent.containers import wrap
        from podnet.apiserver.streams import serve_exec

        argv = ["nsenter", f"--net=/run/netns/{self.netns}", "--", *wrap(request.query.getall("command"), POD)]
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "HOME": "/root", "TERM": "xterm"}
        return await serve_exec(
            request,
            argv,
            stdin=_truthy(request, "stdin"),
            stdout=_truthy(request, "stdout"),
            stderr=_truthy(request, "stderr"),
            tty=_truthy(request, "tty"),
            env=env,
        )

    async def _attach(self, request: web.Request) -> web.StreamResponse:
        from podnet.apiserver.streams import serve_attach

        return await serve_attach(
            request,
            self.log_path,
            stdin=_truthy(request, "stdin"),
            stdout=_truthy(request, "stdout"),
            stderr=_truthy(request, "stderr"),
            tty=_truthy(request, "tty"),
            running=lambda: self.container_running,
        )

    async def _portforward(self, request: web.Request) -> web.StreamResponse:
        from podnet.apiserver.portforward import serve_portforward

        ports = [int(p) for v in request.query.getall("ports", []) for p in v.split(",") if p]
        return await serve_portforward(request, f"/run/netns/{self.netns}", ports, pod=POD)


# ---- fixtures -----------------------------------------------------------------------

# (kubectl version, environment): which transport each combination must use
WS_EXEC = {"KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "true"}
SPDY_EXEC = {"KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "false"}
WS_PF = {"KUBECTL_PORT_FORWARD_WEBSOCKETS": "true"}
SPDY_PF = {"KUBECTL_PORT_FORWARD_WEBSOCKETS": "false"}
EXEC_CLIENTS = [
    pytest.param("1.32", WS_EXEC, "websocket v5.channel.k8s.io", id="1.32-websocket"),
    pytest.param("1.32", SPDY_EXEC, "SPDY/3.1 v5.channel.k8s.io", id="1.32-spdy"),
    pytest.param("1.29", {}, "SPDY/3.1 v5.channel.k8s.io", id="1.29-spdy"),
    pytest.param("1.27", {}, "SPDY/3.1 v4.channel.k8s.io", id="1.27-spdy"),
]
PF_CLIENTS = [
    pytest.param("1.32", WS_PF, "websocket SPDY/3.1+portforward.k8s.io", id="1.32-websocket-tunnel"),
    pytest.param("1.32", SPDY_PF, "SPDY/3.1 portforward.k8s.io", id="1.32-spdy"),
    pytest.param("1.27", {}, "SPDY/3.1 portforward.k8s.io", id="1.27-spdy"),
]

# Inside the pod: echoes every connection, passing a half-close on.
ECHO = r"""
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(64)
def serve(c):
    while data := c.recv(65536):
        c.sendall(data)
    c.shutdown(socket.SHUT_WR); c.close()
while True:
    threading.Thread(target=serve, args=(s.accept()[0],), daemon=True).start()
"""


@pytest.fixture
def pod(namespaces):
    """A pod netns with lo up, netexec on :8080 and an echo server on :9000."""
    name = namespaces.new("pod")
    sh(None, "ip", "-n", name, "link", "set", "lo", "up")
    procs = [
        subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{name}", "--", *argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        for argv in (
            [sys.executable, "-m", "podnet.workload", "netexec", "--http-port", "8080"],
            [sys.executable, "-c", ECHO, "9000"],
        )
    ]
    try:
        wait_for(
            "netexec and echo listening in the pod",
            lambda: all(f":{p} " in sh(name, "ss", "-Hltn").stdout for p in (8080, 9000)),
        )
        yield name
    finally:
        for proc in procs:
            proc.kill()  # ours, by PID
            proc.wait(5)


@pytest.fixture
def api(tmp_path, pod):
    log = tmp_path / "container.log"
    log.write_text("before attach\n")
    server = FakeApiServer(tmp_path, pod, str(log)).start()
    try:
        yield server
    finally:
        server.stop()


class Background:
    """A long-running kubectl (port-forward, attach), stopped by its PID."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **env})
        os.set_blocking(self.proc.stdout.fileno(), False)  # type: ignore[union-attr]
        self.out = b""
        self.err: str | None = None

    def read_until(self, pattern: bytes, count: int = 1, timeout: float = 15) -> bytes:
        deadline = time.time() + timeout
        while len(re.findall(pattern, self.out)) < count and time.time() < deadline:
            select.select([self.proc.stdout], [], [], 0.2)
            self.out += self.proc.stdout.read() or b""  # type: ignore[union-attr]
        if len(re.findall(pattern, self.out)) < count:
            exited = "" if self.proc.poll() is None else f"; it exited {self.proc.returncode}: {self.stop()[1]}"
            raise AssertionError(f"kubectl printed no {count}x {pattern!r} within {timeout}s: {self.out!r}{exited}")
        return self.out

    def stop(self) -> tuple[int, str]:
        """Terminate (if still running) and reap; -> exit code, stderr. Idempotent."""
        if self.err is None:
            if self.proc.poll() is None:
                self.proc.terminate()
            self.proc.wait(10)
            self.err = self.proc.stderr.read().decode()  # type: ignore[union-attr]
            self.proc.stdout.close()  # type: ignore[union-attr]
            self.proc.stderr.close()  # type: ignore[union-attr]
        return self.proc.returncode, self.err


def port_forward(
    api: FakeApiServer, version: str, env: dict[str, str], *targets: str, resource: str = f"pod/{POD}"
) -> tuple[Background, list[int]]:
    """kubectl port-forward with local ports kubectl picks; -> it and the local ports, in order."""
    bg = Background(api.argv(version, "port-forward", resource, *(f":{t}" for t in targets)), env)
    try:
        out = bg.read_until(rb"Forwarding from 127\.0\.0\.1:(\d+) ->", count=len(targets))
    except BaseException:
        bg.stop()
        raise
    return bg, [int(p) for p in re.findall(rb"Forwarding from 127\.0\.0\.1:(\d+) ->", out)]


def http_get(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        return response.read().decode()


# ---- pure ---------------------------------------------------------------------------


def test_spdy_dictionary_and_header_blocks():
    """Our SPDY/3 dictionary is byte for byte Go's (net/spdy, which
    spdystream and so kubectl use), and one zlib context spans blocks."""
    from podnet.apiserver import spdy

    assert len(spdy.DICTIONARY) == 1423
    assert (
        hashlib.sha256(spdy.DICTIONARY).hexdigest()
        == "51d27341373f923f3cd88e1eb7162aeaa3723d7585ff2399201dc06498407f02"
    )
    peer = zlib.compressobj(9, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY, spdy.DICTIONARY)
    codec = spdy.HeaderCodec()

    def block(headers: dict[str, str]) -> bytes:
        raw = struct.pack(">I", len(headers))
        for k, v in headers.items():
            raw += struct.pack(">I", len(k)) + k.encode() + struct.pack(">I", len(v)) + v.encode()
        return peer.compress(raw) + peer.flush(zlib.Z_SYNC_FLUSH)

    assert codec.decode(block({"streamtype": "error", "port": "80"})) == {"streamtype": "error", "port": "80"}
    assert codec.decode(block({"streamtype": "data", "port": "80"})) == {"streamtype": "data", "port": "80"}
    ours = zlib.decompressobj(zdict=spdy.DICTIONARY)
    assert ours.decompress(codec.encode_empty()) == b"\0\0\0\0"


# ---- exec ---------------------------------------------------------------------------


@pytest.mark.kernel
@pytest.mark.parametrize("version, env, transport", EXEC_CLIENTS)
def test_exec_stdout_stderr_exit_code(api, pod, version, env, transport):
    script = "echo out; echo err >&2; hostname; readlink /proc/self/ns/net; exit 3"
    res = api.kubectl(version, "exec", POD, "--", "sh", "-c", script, env=env)
    assert res.returncode == 3, res.stderr
    inode = os.stat(f"/run/netns/{pod}").st_ino
    assert res.stdout == f"out\n{POD}\nnet:[{inode}]\n"  # the pod's hostname and network namespace
    assert res.stderr.startswith("err\n") and "command terminated with exit code 3" in res.stderr
    assert api.upgrades("exec") == [transport]


@pytest.mark.kernel
@pytest.mark.parametrize("version, env, transport", EXEC_CLIENTS)
def test_exec_stdin(api, version, env, transport):
    res = api.kubectl(version, "exec", "-i", POD, "--", "cat", input="hi\n", env=env)
    assert (res.returncode, res.stdout, res.stderr) == (0, "hi\n", "")
    big = os.urandom(3 * 1024 * 1024).hex()  # 6 MiB each way
    res = api.kubectl(version, "exec", "-i", POD, "--", "sh", "-c", "cat; echo done >&2", input=big, env=env)
    assert (res.returncode, res.stderr) == (0, "done\n")
    assert hashlib.sha256(res.stdout.encode()).hexdigest() == hashlib.sha256(big.encode()).hexdigest()


@pytest.mark.kernel
@pytest.mark.parametrize("version, env, transport", [EXEC_CLIENTS[0], EXEC_CLIENTS[3]])
def test_exec_interactive_tty(api, version, env, transport):
    """kubectl exec -it under a terminal: type, read, resize, exit."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 111, 0, 0))
    proc = subprocess.Popen(
        api.argv(version, "exec", "-it", POD, "--", "sh"),
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
        preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
        env={**os.environ, **env},
    )
    os.close(slave)
    seen = b""

    def expect(pattern: bytes) -> None:
        nonlocal seen
        deadline = time.time() + 15
        while pattern not in seen and time.time() < deadline:
            if select.select([master], [], [], 0.2)[0]:
                seen += os.read(master, 4096)
        assert pattern in seen, f"no {pattern!r} on the terminal: {seen!r}"

    try:
        os.write(master, b"echo hello-$((6*7)); tty\n")
        expect(b"hello-42")
        expect(b"/dev/pts/")
        os.write(master, b"stty size\n")
        expect(b"33 111")  # kubectl's first resize, from its own terminal
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # SIGWINCH to kubectl
        time.sleep(0.5)
        os.write(master, b"stty size\n")
        expect(b"40 120")
        os.write(master, b"exit 5\n")
        assert proc.wait(15) == 5
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        os.close(master)
    assert api.upgrades("exec") == [transport]


@pytest.mark.kernel
@pytest.mark.parametrize("version, env, transport", [EXEC_CLIENTS[0], EXEC_CLIENTS[1]])
def test_exec_client_gone_kills_the_command(api, version, env, transport, tmp_path):
    pidfile = tmp_path / "pid"
    bg = Background(
        api.argv(version, "exec", POD, "--", "sh", "-c", f"echo $$ > {pidfile}; echo started; exec sleep 300"), env
    )
    try:
        bg.read_until(b"started")
        pid = int(pidfile.read_text())
        assert os.path.exists(f"/proc/{pid}")
    finally:
        bg.proc.kill()  # the client vanishes without a goodbye
        bg.stop()
    wait_for(f"the exec'd command (pid {pid}) to be killed", lambda: not os.path.exists(f"/proc/{pid}"), timeout=10)


@pytest.mark.kernel
def test_exec_websocket_v4_without_kubectl(api):
    """v4.channel.k8s.io (no close signal), as the Python client speaks it."""
    import aiohttp

    async def run() -> tuple[list[tuple[int, bytes]], str | None]:
        url = f"https://127.0.0.1:{api.port}/api/v1/namespaces/default/pods/{POD}/exec?command=sh&command=-c&command=echo+v4;+exit+7&stdout=true&stderr=true"
        got = []
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as session:
            async with session.ws_connect(url, protocols=["v4.channel.k8s.io"], ssl=False) as ws:
                async for msg in ws:
                    got.append((msg.data[0], bytes(msg.data[1:])))
                return got, ws.protocol

    got, protocol = asyncio.run(run())
    assert protocol == "v4.channel.k8s.io"
    assert (1, b"v4\n") in got
    status = json.loads(dict((ch, data) for ch, data in got if data)[3])
    assert status["reason"] == "NonZeroExitCode"
    assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "7"}]


# ---- attach -------------------------------------------------------------------------


@pytest.mark.kernel
@pytest.mark.parametrize("version, env, transport", [EXEC_CLIENTS[0], EXEC_CLIENTS[1], EXEC_CLIENTS[3]])
def test_attach_follows_the_log(api, version, env, transport):
    bg = Background(api.argv(version, "attach", POD, "-c", CONTAINER), env)
    try:
        wait_for("attach to connect", lambda: api.upgrades("attach"))
        time.sleep(0.5)  # attached: what is written from now on must come through
        for i in range(3):
            with open(api.log_path, "a") as f:
                f.write(f"line {i}\n")
            bg.read_until(b"line %d\n" % i)
    finally:
        rc, err = bg.stop()
    assert b"before attach" not in bg.out  # from the end, as the container's output goes on
    assert api.upgrades("attach") == [transport]


@pytest.mark.kernel
def test_attach_ends_when_the_container_stops(api):
    bg = Background(api.argv("1.32", "attach", POD), {})
    try:
        wait_for("attach to connect", lambda: api.upgrades("attach"))
        time.sleep(0.5)
        with open(api.log_path, "a") as f:
            f.write("last words\n")
        bg.read_until(b"last words\n")
        api.container_running = False
        rc = bg.proc.wait(10)
    finally:
        bg.stop()
    assert rc == 0


@pytest.mark.kernel
@pytest.mark.parametrize("version, env, transport", [EXEC_CLIENTS[0], EXEC_CLIENTS[3]])
def test_attach_with_stdin_is_refused(api, version, env, transport):
    res = api.kubectl(version, "attach", "-i", POD, input="", env=env)
    assert res.returncode == 1
    assert f"container {CONTAINER} was not started with stdin" in res.stderr


# ---- port-forward -------------------------------------------------------------------


@pytest.mark.kernel
@pytest.mark.parametrize("version, env, transport", PF_CLIENTS)
def test_port_forward_concurrent_requests_and_5mb(api, pod, version, env, transport):
    bg, (http_port, echo_port) = port_forward(api, version, env, "8080", "9000")
    try:
        # netexec answers /clientip with the address it sees: 127.0.0.1, it is reached inside the pod
        assert http_get(http_port, "/clientip").startswith("127.0.0.1:")
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda i: http_get(http_port, f"/echo?msg=m{i}"), range(24)))
        assert answers == [f"m{i}" for i in range(24)]

        payload = os.urandom(5 * 1024 * 1024)
        got = bytearray()
        with socket.create_connection(("127.0.0.1", echo_port), timeout=30) as conn:
            reader = threading.Thread(target=lambda: [got.extend(b) for b in iter(lambda: conn.recv(65536), b"")])
            reader.start()
            conn.sendall(payload)
            conn.shutdown(socket.SHUT_WR)  # kubectl passes the half-close on; the echo server then ends
            reader.join(60)
        assert len(got) == len(payload) and hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
        assert http_get(http_port, "/echo?msg=still-there") == "still-there"
    finally:
        rc, err = bg.stop()
    assert "error" not in err.lower(), err
    assert api.upgrades("portforward") == [transport]


@pytest.mark.kernel
def test_port_forward_service(api):
    """kubectl resolves svc/NAME to a pod and its port 80 to targetPort 8080."""
    bg, (port,) = port_forward(api, "1.32", {}, "80", resource="svc/web")
    try:
        assert http_get(port, "/echo?msg=via-service") == "via-service"
    finally:
        bg.stop()


@pytest.mark.kernel
@pytest.mark.parametrize("version, env, transport", PF_CLIENTS)
def test_port_forward_to_a_closed_port(api, pod, version, env, transport):
    """Nothing listens on :9999: the error stream says so, naming the pod's
    namespace. kubectl (since 1.23, as against kubelet) prints it and drops
    the whole forward; the server is fine for the next kubectl."""
    bg, (closed, http_port) = port_forward(api, version, env, "9999", "8080")
    try:
        with socket.create_connection(("127.0.0.1", closed), timeout=10) as conn:
            assert conn.recv(100) == b""  # closed without a byte
        assert bg.proc.wait(10) == 1
    finally:
        rc, err = bg.stop()
    where = f"inside namespace /run/netns/{pod}"
    assert f"error forwarding port 9999 to pod {POD}: failed to connect to localhost:9999 {where}" in err
    assert "Connection refused" in err and "lost connection to pod" in err
    bg, (http_port,) = port_forward(api, version, env, "8080")
    try:
        assert http_get(http_port, "/echo?msg=next") == "next"
    finally:
        bg.stop()
