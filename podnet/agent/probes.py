"""Container probes (liveness, readiness, startup) as kubelet runs them.

    probe(spec, pod_ip, netns_path, hostname=None, from_netns=None) -> (ok, message)

httpGet (status 200-399 is success), tcpSocket (the connection opens) and
exec (the command exits 0) are supported; grpc is reported as unsupported.
timeoutSeconds (default 1, fractions allowed) bounds each network operation
and the exec command (whose process group is killed when it runs over).

Where the connection comes from: kubelet probes from the node's network
namespace; podnet's agent may run anywhere, so `from_netns` names the
namespace to connect from, by default the pod's own (netns_path), to the pod
IP (127.0.0.1 when no pod IP is given, httpGet.host / tcpSocket.host when
set). The socket is created inside from_netns (the calling thread setns's
there for the socket() call only, netns.entered) and used from the caller's
thread: a socket stays in the namespace it was made in, so no subprocess and
no thread of ours ever runs in the pod's namespace for long.

Named ports must be resolved by the caller (`resolve_port` helps).

ProbeState keeps the schedule (initialDelaySeconds, periodSeconds) and the
verdict (failureThreshold consecutive failures -> False, successThreshold
consecutive successes -> True).
"""

import http.client
import ipaddress
import json
import socket
import ssl
import subprocess
import time

from podnet.kernel.netns import Netns, NetnsError, entered

DEFAULTS = {
    "timeoutSeconds": 1,
    "periodSeconds": 10,
    "initialDelaySeconds": 0,
    "failureThreshold": 3,
    "successThreshold": 1,
}
BODY_LIMIT = 10 * 1024
USER_AGENT = "kube-probe/podnet"
OWN_NETNS = "/proc/thread-self/ns/net"  # from_netns: the calling thread's own namespace


def _num(spec, key):
    value = spec.get(key)
    return DEFAULTS[key] if value is None else value


def resolve_named_ports(spec, pod):
    """A copy of a probe or lifecycle handler spec with its named ports
    (httpGet, tcpSocket) -> numbers from the pod's containerPorts."""
    spec = json.loads(json.dumps(spec))
    for kind in ("httpGet", "tcpSocket"):
        port = spec.get(kind, {}).get("port")
        if isinstance(port, str) and not port.isdigit():
            for c in pod["spec"]["containers"]:
                for p in c.get("ports", []):
                    if p.get("name") == port:
                        spec[kind]["port"] = p["containerPort"]
    return spec


def resolve_port(port, container_spec=None):
    """A probe port (int, "8080", or a named containerPort) -> int; ValueError if unknown."""
    if isinstance(port, int):
        return port
    text = str(port)
    if text.isdigit():
        return int(text)
    for p in (container_spec or {}).get("ports") or []:
        if p.get("name") == text:
            return int(p["containerPort"])
    raise ValueError("named port %r is not a port of the container" % text)


def _family(host):
    try:
        return socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        return None


def connect_from(netns_path, host, port, timeout):
    """A TCP socket created in netns_path and connected to host:port."""
    fam = _family(host)
    if fam is None:  # a name: resolved with the agent's resolver
        fam, _, _, _, addr = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]
        host = addr[0]
    with Netns(netns_path) as ns, entered(ns):
        s = socket.socket(fam, socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        s.connect((host, port))
    except BaseException:
        s.close()
        raise
    return s


def _hostport(host, port):
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)


def _err(e):
    if isinstance(e, (socket.timeout, TimeoutError)):
        return "i/o timeout"
    if isinstance(e, ConnectionRefusedError):
        return "connect: connection refused"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror.lower()
    return str(e) or type(e).__name__


def _target(handler, pod_ip):
    host = handler.get("host") or pod_ip or "127.0.0.1"
    port = handler.get("port")
    if port is None:
        raise ValueError("probe has no port")
    if not isinstance(port, int) and not str(port).isdigit():
        raise ValueError("named port %r was not resolved" % port)
    return host, int(port)


def _http(handler, pod_ip, from_ns, timeout):
    try:
        host, port = _target(handler, pod_ip)
    except ValueError as e:
        return False, str(e)
    scheme = (handler.get("scheme") or "HTTP").upper()
    path = handler.get("path") or "/"
    if not path.startswith("/"):
        path = "/" + path
    url = "%s://%s%s" % (scheme.lower(), _hostport(host, port), path)

    class Conn(http.client.HTTPConnection):
        def connect(self):
            self.sock = connect_from(from_ns, host, port, timeout)
            if scheme == "HTTPS":  # kubelet does not verify probe certificates
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                self.sock = ctx.wrap_socket(self.sock, server_hostname=handler.get("host") or None)

    conn = Conn(host, port, timeout=timeout)
    try:
        headers = {"User-Agent": USER_AGENT, "Accept": "*/*"}
        for h in handler.get("httpHeaders") or []:
            headers[h["name"]] = h.get("value", "")
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        body = resp.read(BODY_LIMIT).decode(errors="replace")
    except NetnsError as e:
        return False, "Get %r: %s" % (url, e)
    except (OSError, http.client.HTTPException) as e:
        return False, "Get %r: dial tcp %s: %s" % (url, _hostport(host, port), _err(e))
    finally:
        conn.close()
    if 200 <= resp.status < 400:
        return True, body
    return False, "HTTP probe failed with statuscode: %d" % resp.status


def _tcp(handler, pod_ip, from_ns, timeout):
    try:
        host, port = _target(handler, pod_ip)
    except ValueError as e:
        return False, str(e)
    try:
        connect_from(from_ns, host, port, timeout).close()
    except NetnsError as e:
        return False, str(e)
    except OSError as e:
        return False, "dial tcp %s: %s" % (_hostport(host, port), _err(e))
    return True, ""


def _exec(handler, netns_path, hostname, timeout, resolv_conf=None):
    from podnet.agent.containers import exec_in

    command = handler.get("command") or []
    if not command:
        return False, "exec probe has no command"
    try:
        res = exec_in(netns_path, command, hostname=hostname, timeout=timeout, resolv_conf=resolv_conf)
    except subprocess.TimeoutExpired:
        return False, "command %r timed out after %gs" % (list(command), timeout)
    except (OSError, ValueError) as e:
        return False, "command %r: %s" % (list(command), e)
    output = (res.stdout or "") + (res.stderr or "")
    if res.returncode == 0:
        return True, output
    return False, output.strip() or "command %r exited with %d" % (list(command), res.returncode)


def probe(spec, pod_ip, netns_path, hostname=None, from_netns=None, resolv_conf=None):
    """Run one probe -> (ok, message).

    spec: a Kubernetes probe (httpGet | tcpSocket | exec, timeoutSeconds, ...).
    pod_ip: where httpGet/tcpSocket connect unless the handler names a host
    (None: 127.0.0.1). netns_path: the pod's netns (exec runs there).
    hostname: the UTS hostname for exec. from_netns: where network probes
    connect from (default: the pod's netns; OWN_NETNS: the caller's).
    resolv_conf: the pod's resolv.conf, which (with the hosts file beside
    it) an exec probe sees, as the pod's containers do."""
    timeout = float(_num(spec, "timeoutSeconds"))
    from_ns = from_netns or netns_path
    if spec.get("httpGet") is not None:
        return _http(spec["httpGet"], pod_ip, from_ns, timeout)
    if spec.get("tcpSocket") is not None:
        return _tcp(spec["tcpSocket"], pod_ip, from_ns, timeout)
    if spec.get("exec") is not None:
        return _exec(spec["exec"], netns_path, hostname, timeout, resolv_conf)
    if spec.get("grpc") is not None:
        return False, "grpc probes are not supported by podnet"
    return False, "probe has no handler (httpGet, tcpSocket or exec)"


class ProbeState:
    """Schedule and verdict of one probe of one container.

    kind: "readiness" and "startup" start False (not ready until a success),
    "liveness" starts True (alive until failureThreshold failures in a row).
    Times come from `clock` (monotonic seconds) unless given.

        state = ProbeState(container["readinessProbe"])
        ...every tick:
        state.run(lambda spec: probe(spec, ip, netns), now)   # probes when due
        sup.ready = state.ready
    """

    def __init__(self, spec, kind="readiness", clock=time.monotonic):
        if kind not in ("readiness", "liveness", "startup"):
            raise ValueError("kind must be readiness, liveness or startup")
        self.spec = spec
        self.kind = kind
        self.clock = clock
        self.period = float(_num(spec, "periodSeconds"))
        self.initial_delay = float(_num(spec, "initialDelaySeconds"))
        self.timeout = float(_num(spec, "timeoutSeconds"))
        self.failure_threshold = int(_num(spec, "failureThreshold"))
        self.success_threshold = int(_num(spec, "successThreshold"))
        self.reset()

    def reset(self, started_at=None):
        """The container (re)started: back to the initial verdict and delay."""
        self.started_at = self.clock() if started_at is None else started_at
        self.result = self.kind == "liveness"
        self.successes = self.failures = 0
        self.last_run = None
        self.message = ""

    def next_due(self):
        """When the next probe is due (this state's clock)."""
        first = self.started_at + self.initial_delay
        return first if self.last_run is None else max(first, self.last_run + self.period)

    @property
    def ready(self):
        return self.result

    def due(self, now=None):
        now = self.clock() if now is None else now
        if now < self.started_at + self.initial_delay:
            return False
        return self.last_run is None or now - self.last_run >= self.period

    def record(self, ok, message="", now=None):
        """One probe outcome -> True if the verdict changed."""
        self.last_run = self.clock() if now is None else now
        self.message = message
        before = self.result
        if ok:
            self.successes += 1
            self.failures = 0
            if self.successes >= self.success_threshold:
                self.result = True
        else:
            self.failures += 1
            self.successes = 0
            if self.failures >= self.failure_threshold:
                self.result = False
        return self.result != before

    def run(self, fn, now=None):
        """Probe with fn(spec) -> (ok, message) if due. -> the outcome, or None if not due."""
        now = self.clock() if now is None else now
        if not self.due(now):
            return None
        ok, message = fn(self.spec)
        self.record(ok, message, now)
        return ok
