"""A stdlib look-alike of Kubernetes' agnhost test image (the parts networking
tests use), started as `python -m podnet.workload <subcommand> [flags]`.

  serve-hostname [--port 9376] [--udp]      every TCP connection (plain or an
                                            HTTP request) gets the hostname
  netexec [--http-port 8080] [--udp-port 8081]
                                            HTTP: / /hostname /clientip /echo
                                            /healthz /header /exit /dial;
                                            UDP: hostname, clientip, echo x
  connect HOST:PORT [--timeout 3] [--protocol tcp|udp]
                                            exit 0 if it connects, else 1 with
                                            TIMEOUT/REFUSED/DNS/OTHER/UNKNOWN
  probe PROTO:HOST:PORT... [--timeout 1]    all at once; one JSON line of verdicts
                                            (podnet.workload.probe)
  pause                                     sleep until SIGTERM/SIGINT, exit 0

Flags are accepted as `--flag=value`, `--flag value` and Go's `-flag=value`;
boolean flags as `--udp`, `--udp=true`, `--udp=false`. Unknown flags are
reported on stderr and ignored, as a manifest written for the real agnhost
may pass flags this look-alike does not implement.

The hostname is the pod name: the container runs in its own UTS namespace.
Servers listen dual-stack where the kernel has IPv6, else on IPv4; client
addresses are shown as agnhost shows them: "10.244.1.3:51234", "[fd00::3]:51234".
Every request is logged as one flushed line on stdout.
"""

import os
import signal
import socket
import sys
import threading
import time

SUBCOMMANDS = ("serve-hostname", "netexec", "connect", "probe", "pause")


def log(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def hostname():
    return socket.gethostname()


# ---- flags ------------------------------------------------------------------


def parse_bool(value):
    v = str(value).strip().lower()
    if v in ("1", "t", "true", "yes", "y", "on"):
        return True
    if v in ("0", "f", "false", "no", "n", "off"):
        return False
    import argparse

    raise argparse.ArgumentTypeError("not a boolean: %r" % value)


def parse_duration(value):
    """Seconds from '3', '1.5', '3s', '500ms', '2m', '1m30s' (Go durations)."""
    import re

    v = str(value).strip()
    try:
        return float(v)
    except ValueError:
        pass
    parts = re.findall(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)", v)
    if not parts or "".join(n + u for n, u in parts) != v:
        import argparse

        raise argparse.ArgumentTypeError("not a duration: %r" % value)
    scale = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(n) * scale[u] for n, u in parts)


def parse_port(value):
    import argparse

    try:
        port = int(value)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError("not a port: %r" % value) from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError("port out of range: %r" % value)
    return port


def _go_style(args):
    """Go's flag package also takes -flag / -flag=value: make them --flag."""
    out = []
    for a in args:
        if a.startswith("-") and not a.startswith("--") and len(a.split("=", 1)[0]) > 2 and a[1:2].isalpha():
            a = "-" + a
        out.append(a)
    return out


def build_parser():
    import argparse

    p = argparse.ArgumentParser(
        prog="python -m podnet.workload", description="podnet's stand-in for the agnhost test image"
    )
    sub = p.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")

    def flag_bool(sp, name, default, help):
        sp.add_argument(name, nargs="?", const=True, default=default, type=parse_bool, metavar="BOOL", help=help)

    sh = sub.add_parser("serve-hostname", help="answer every connection with the hostname")
    sh.add_argument("--port", type=parse_port, default=9376)
    flag_bool(sh, "--udp", False, "also serve on UDP")
    flag_bool(sh, "--tcp", False, "accepted for agnhost compatibility (TCP is always served)")
    flag_bool(sh, "--http", True, "accepted for agnhost compatibility (HTTP requests are detected)")

    ne = sub.add_parser("netexec", help="HTTP and UDP test server")
    ne.add_argument("--http-port", type=parse_port, default=8080)
    ne.add_argument("--udp-port", type=parse_port, default=8081, help="0 turns the UDP server off")

    co = sub.add_parser("connect", help="try one connection; exit 0 when it works")
    co.add_argument("target", metavar="HOST:PORT")
    co.add_argument("--timeout", type=parse_duration, default=3.0)
    co.add_argument("--protocol", default="tcp")

    from podnet.workload import probe  # many connections at once (truth tables)

    probe.add_parser(sub)
    sub.add_parser("pause", help="sleep until SIGTERM")
    return p


def parse_args(argv):
    """argv (without the program name) -> argparse.Namespace.

    Unknown flags are warned about on stderr and ignored."""
    parser = build_parser()
    ns, unknown = parser.parse_known_args(_go_style(list(argv)))
    if ns.subcommand is None:
        parser.print_usage(sys.stderr)
        parser.exit(2, "error: a subcommand is required: %s\n" % ", ".join(SUBCOMMANDS))
    stray = [u for u in unknown if not u.startswith("-")]
    if stray:
        parser.exit(2, "error: unexpected arguments: %s\n" % " ".join(stray))
    if unknown:
        sys.stderr.write("warning: ignoring flags podnet's workload does not implement: %s\n" % " ".join(unknown))
    return ns


# ---- sockets ------------------------------------------------------------------


def fmt_addr(addr):
    """A socket address as agnhost prints it ("ip:port", "[v6]:port")."""
    host, port = addr[0], addr[1]
    if host.startswith("::ffff:") and "." in host:
        host = host[len("::ffff:") :]
    if ":" in host:
        return "[%s]:%d" % (host, port)
    return "%s:%d" % (host, port)


def _has_ipv6():
    try:
        socket.socket(socket.AF_INET6, socket.SOCK_DGRAM).close()
        return True
    except OSError:
        return False


def listen(port, kind):
    """A bound (and for TCP listening) socket on all addresses, dual-stack if we can."""
    families = [socket.AF_INET6, socket.AF_INET] if _has_ipv6() else [socket.AF_INET]
    last = None
    for fam in families:
        s = socket.socket(fam, kind)
        try:
            if kind == socket.SOCK_STREAM:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if fam == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                s.bind(("::", port))
            else:
                s.bind(("0.0.0.0", port))
            if kind == socket.SOCK_STREAM:
                s.listen(128)
            return s
        except OSError as e:
            s.close()
            last = e
    raise last


_STOP = threading.Event()


def _on_signal(signum, frame):
    log("Shutting down after receiving signal %d" % signum)
    _STOP.set()


def install_signal_handlers():
    """Catch SIGTERM/SIGINT before any port is opened: a supervisor that sees
    the port answer may stop us at once, and must get a graceful exit 0."""
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)


def wait_for_signal():
    """Block the main thread until SIGTERM/SIGINT; return 0 (graceful exit)."""
    install_signal_handlers()
    while not _STOP.is_set():
        _STOP.wait(3600)
    return 0


def _thread(target, *args):
    t = threading.Thread(target=target, args=args, daemon=True)
    t.start()
    return t


def _close_gently(conn):
    """Half-close, drain what the peer still sends (so close sends FIN, not RST)."""
    try:
        conn.shutdown(socket.SHUT_WR)
        conn.settimeout(1.0)
        while conn.recv(4096):
            pass
    except OSError:
        pass
    finally:
        conn.close()


# ---- serve-hostname ---------------------------------------------------------------

HTTP_METHODS = (b"GET ", b"HEAD ", b"POST ", b"PUT ", b"DELETE ", b"OPTIONS ", b"PATCH ")
FIRST_BYTES_WAIT = 0.2  # how long a silent TCP client waits for the plain answer


def _serve_hostname_conn(conn, addr):
    import select

    try:
        name = hostname()
        data = b""
        readable, _, _ = select.select([conn], [], [], FIRST_BYTES_WAIT)
        if readable:
            data = conn.recv(4096)
        if data.startswith(HTTP_METHODS):
            conn.settimeout(2.0)
            while b"\r\n\r\n" not in data and len(data) < 65536:
                more = conn.recv(4096)
                if not more:
                    break
                data += more
            line = data.split(b"\r\n", 1)[0].decode("latin-1")
            method, _, rest = line.partition(" ")
            log("%s %s from %s" % (method, rest.rsplit(" ", 1)[0], fmt_addr(addr)))
            body = name.encode()
            head = (
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
                "Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
            ).encode()
            conn.sendall(head + (b"" if method == "HEAD" else body))
        else:
            log("TCP from %s" % fmt_addr(addr))
            conn.sendall(name.encode())
    except OSError:
        pass
    finally:
        _close_gently(conn)


def _accept_loop(sock, handler):
    while True:
        try:
            conn, addr = sock.accept()
        except OSError:
            continue
        _thread(handler, conn, addr)


def _serve_hostname_udp(sock):
    while True:
        try:
            _, addr = sock.recvfrom(65535)
            log("UDP from %s" % fmt_addr(addr))
            sock.sendto(hostname().encode(), addr)
        except OSError:
            continue


def cmd_serve_hostname(args):
    tcp = listen(args.port, socket.SOCK_STREAM)
    udp = listen(args.port, socket.SOCK_DGRAM) if args.udp else None
    log("Serving %s on port %d as %s" % ("tcp/http and udp" if udp else "tcp/http", args.port, hostname()))
    _thread(_accept_loop, tcp, _serve_hostname_conn)
    if udp:
        _thread(_serve_hostname_udp, udp)
    return wait_for_signal()


# ---- netexec --------------------------------------------------------------------


def _dial(request, protocol, host, port, tries, timeout=5.0):
    """One agnhost /dial: ask host:port for `request` `tries` times."""
    responses, errors = [], []
    for _ in range(max(1, tries)):
        try:
            if protocol == "http":
                import http.client

                c = http.client.HTTPConnection(host, port, timeout=timeout)
                try:
                    c.request("GET", "/" + request.lstrip("/"))
                    r = c.getresponse()
                    body = r.read().decode(errors="replace")
                    if r.status != 200:
                        raise OSError("status %d: %s" % (r.status, body))
                    responses.append(body)
                finally:
                    c.close()
            elif protocol == "udp":
                info = socket.getaddrinfo(host, port, 0, socket.SOCK_DGRAM)[0]
                s = socket.socket(info[0], socket.SOCK_DGRAM)
                try:
                    s.settimeout(timeout)
                    s.connect(info[4])
                    s.send(request.encode())
                    responses.append(s.recv(65535).decode(errors="replace"))
                finally:
                    s.close()
            else:
                errors.append("unsupported protocol %s" % protocol)
                break
        except (OSError, ValueError) as e:
            errors.append("%s %s:%s: %s" % (protocol, host, port, e))
    return responses, errors


def _netexec_handler():
    from http.server import BaseHTTPRequestHandler
    from urllib.parse import parse_qs, urlsplit

    class Handler(BaseHTTPRequestHandler):
        server_version = "podnet-netexec"
        sys_version = ""

        def log_message(self, format, *args):  # our own one line per request instead
            pass

        def reply(self, body, status=200, ctype="text/plain; charset=utf-8"):
            data = body.encode() if isinstance(body, str) else body
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def do_GET(self):
            url = urlsplit(self.path)
            q = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
            client = fmt_addr(self.client_address)
            log("%s %s from %s" % (self.command, self.path, client))
            path = url.path.rstrip("/") or "/"
            if path == "/":
                self.reply("NOW: %s" % time.strftime("%Y-%m-%d %H:%M:%S %z %Z"))
            elif path == "/hostname":
                self.reply(hostname())
            elif path == "/clientip":
                self.reply(client)
            elif path == "/echo":
                code = q.get("code", "")
                self.reply(q.get("msg", ""), status=int(code) if code.isdigit() else 200)
            elif path in ("/healthz", "/readyz"):
                self.reply("ok")
            elif path == "/header":
                self.reply(self.headers.get(q.get("key", ""), ""))
            elif path == "/exit":
                code = q.get("code", "0")
                code = int(code) if code.isdigit() else 0
                self.reply("exiting with %d" % code)
                self.wfile.flush()
                threading.Timer(0.05, os._exit, (code,)).start()
            elif path == "/dial":
                self.dial(q)
            else:
                self.reply("404 page not found", status=404)

        do_HEAD = do_POST = do_GET

        def dial(self, q):
            import json

            try:
                port = int(q.get("port", ""))
                tries = int(q.get("tries", "1") or 1)
            except ValueError:
                self.reply("bad port or tries", status=400)
                return
            responses, errors = _dial(
                q.get("request", "hostname"), q.get("protocol", "http"), q.get("host", ""), port, tries
            )
            doc = {"responses": responses}
            if errors:
                doc["errors"] = errors
            self.reply(json.dumps(doc), ctype="application/json")

    return Handler


def _netexec_udp(sock):
    while True:
        try:
            data, addr = sock.recvfrom(65535)
        except OSError:
            continue
        text = data.decode(errors="replace").strip()
        client = fmt_addr(addr)
        log("UDP %s from %s" % (text, client))
        if text == "hostname":
            answer = hostname()
        elif text == "clientip":
            answer = client
        elif text == "echo" or text.startswith("echo "):
            answer = text[5:]
        else:
            continue  # agnhost does not answer unknown commands
        try:
            sock.sendto(answer.encode(), addr)
        except OSError:
            pass


def cmd_netexec(args):
    from http.server import ThreadingHTTPServer

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def __init__(self, sock, handler):
            super().__init__(sock.getsockname()[:2], handler, bind_and_activate=False)
            self.socket.close()
            self.socket, self.address_family = sock, sock.family
            self.server_address = sock.getsockname()

    tcp = listen(args.http_port, socket.SOCK_STREAM)
    udp = listen(args.udp_port, socket.SOCK_DGRAM) if args.udp_port else None
    server = Server(tcp, _netexec_handler())
    log("Started HTTP server on port %d" % args.http_port)
    _thread(server.serve_forever)
    if udp:
        log("Started UDP server on port %d" % args.udp_port)
        _thread(_netexec_udp, udp)
    return wait_for_signal()


# ---- connect ----------------------------------------------------------------------


def split_target(target):
    """'host:port' / '[v6]:port' -> (host, port); ValueError when malformed."""
    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError("expected HOST:PORT, got %r" % target)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def cmd_connect(args):
    def fail(kind, msg):
        sys.stderr.write("%s: %s\n" % (kind, msg))
        sys.stderr.flush()
        return 1

    try:
        host, port = split_target(args.target)
    except ValueError as e:
        return fail("UNKNOWN", e)
    proto = args.protocol.lower()
    if proto not in ("tcp", "udp"):
        return fail("UNKNOWN", "unsupported protocol %r (tcp or udp)" % args.protocol)
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    try:
        infos = socket.getaddrinfo(host, port, 0, kind)
    except socket.gaierror as e:
        return fail("DNS", "%s: %s" % (host, e))
    fam, _, _, _, addr = infos[0]
    s = socket.socket(fam, kind)
    s.settimeout(args.timeout)
    try:
        s.connect(addr)
        if proto == "udp":
            s.send(b"hostname")
            s.recv(65535)
        return 0
    except TimeoutError:
        return fail("TIMEOUT", "%s %s: no answer within %gs" % (proto, args.target, args.timeout))
    except ConnectionRefusedError as e:
        return fail("REFUSED", "%s %s: %s" % (proto, args.target, e))
    except OSError as e:
        return fail("OTHER", "%s %s: %s" % (proto, args.target, e))
    finally:
        s.close()


# ---- pause --------------------------------------------------------------------------


def cmd_pause(args):
    log("Paused")
    return wait_for_signal()


COMMANDS = {"serve-hostname": cmd_serve_hostname, "netexec": cmd_netexec, "connect": cmd_connect, "pause": cmd_pause}


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.subcommand not in ("connect", "probe"):
        install_signal_handlers()
    if args.subcommand == "probe":
        from podnet.workload.probe import cmd_probe

        return cmd_probe(args)
    try:
        return COMMANDS[args.subcommand](args)
    except OSError as e:  # bind failures and the like
        sys.stderr.write("%s: %s\n" % (args.subcommand, e))
        return 1
