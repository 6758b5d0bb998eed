"""`probe`: try many connections at once, print one JSON object of verdicts.

    python -m podnet.workload probe [--timeout 1] tcp:10.244.1.3:80 udp:10.96.0.20:81 ...

Made for truth tables (tests/kernel/test_netpol.py): one `podnet exec` per
source pod instead of one per (target, port, protocol), since an exec costs
about 80 ms and a denied TCP connection costs the whole timeout (the SYN is
dropped, nothing answers). All targets are tried concurrently, so a whole
row takes about one timeout.

TCP: connected = allowed; the server's first answer (serve-hostname sends
its hostname) is reported too. UDP: a datagram "hostname" is sent and an
answer must come back within the timeout. Output, on one line:

    {"tcp:10.244.1.3:80": {"ok": true, "answer": "a"},
     "udp:10.244.2.4:81": {"ok": false, "error": "TIMEOUT"}}
"""

import json
import socket
import sys
import threading


def add_parser(sub):
    p = sub.add_parser("probe", help="try many tcp:/udp:HOST:PORT targets concurrently; print JSON")
    p.add_argument("targets", nargs="+", metavar="PROTO:HOST:PORT")
    p.add_argument("--timeout", type=float, default=1.0)
    return p


def parse_target(text):
    proto, _, rest = text.partition(":")
    host, _, port = rest.rpartition(":")
    if proto not in ("tcp", "udp") or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("expected tcp:HOST:PORT or udp:HOST:PORT, got %r" % text)
    return proto, host.strip("[]"), int(port)


def _error(exc):
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "TIMEOUT"
    if isinstance(exc, ConnectionRefusedError):
        return "REFUSED"
    return "OTHER: %s" % exc


def try_one(proto, host, port, timeout):
    """-> {"ok": bool, "answer" or "error": str}."""
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, kind)
    s.settimeout(timeout)
    try:
        s.connect((host, port))
        if proto == "tcp":
            # connected is the verdict; the answer is a courtesy (a silent server is fine)
            try:
                s.sendall(b"probe\n")
                answer = s.recv(256).decode(errors="replace").strip()
            except OSError:
                answer = ""
            return {"ok": True, "answer": answer}
        s.send(b"hostname")
        return {"ok": True, "answer": s.recv(65535).decode(errors="replace").strip()}
    except OSError as exc:
        return {"ok": False, "error": _error(exc)}
    finally:
        s.close()


def probe(targets, timeout=1.0):
    parsed = [(t, parse_target(t)) for t in targets]
    results = {}

    def worker(text, spec):
        results[text] = try_one(*spec, timeout)

    threads = [threading.Thread(target=worker, args=item, daemon=True) for item in parsed]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout * 3 + 1)
    return {t: results.get(t, {"ok": False, "error": "STUCK"}) for t in targets}


def cmd_probe(args):
    try:
        out = probe(args.targets, args.timeout)
    except ValueError as exc:
        sys.stderr.write("probe: %s\n" % exc)
        return 2
    sys.stdout.write(json.dumps(out, sort_keys=True) + "\n")
    sys.stdout.flush()
    return 0
