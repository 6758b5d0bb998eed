"""Traffic for tests: a server that answers with the address it sees, a client,
and a link between two namespaces. Processes are stopped by their own PID."""

import os
import subprocess
import sys
import time
from contextlib import contextmanager

# Answers every TCP connection / UDP datagram with "peer=<source address>".
SERVER = r"""
import socket, sys, threading
proto, port, family = sys.argv[1], int(sys.argv[2]), sys.argv[3]
fam = socket.AF_INET6 if family == "6" else socket.AF_INET
if proto == "tcp":
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::" if family == "6" else "0.0.0.0", port)); s.listen(64)
    print("ready", flush=True)
    while True:
        c, addr = s.accept()
        c.sendall(("peer=%s\n" % addr[0]).encode()); c.close()
else:
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.bind(("::" if family == "6" else "0.0.0.0", port))
    print("ready", flush=True)
    while True:
        data, addr = s.recvfrom(2048)
        s.sendto(("peer=%s\n" % addr[0]).encode(), addr)
"""

CLIENT = r"""
import socket, sys
proto, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
if proto == "tcp":
    s = socket.create_connection((host, port), timeout=3)
    print(s.recv(200).decode().strip())
else:
    s = socket.socket(fam, socket.SOCK_DGRAM); s.settimeout(3)
    s.sendto(b"hi", (host, port))
    print(s.recvfrom(200)[0].decode().strip())
"""


def nsenter(ns):
    return ["nsenter", "--net=/run/netns/%s" % ns, "--"]


@contextmanager
def server(ns, port=8080, proto="tcp", family="4"):
    proc = subprocess.Popen(
        nsenter(ns) + [sys.executable, "-c", SERVER, proto, str(port), family],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        if line.strip() != "ready":
            raise AssertionError("server in %s did not start: %s" % (ns, proc.stderr.read()))
        yield proc
    finally:
        proc.kill()  # our own child, by PID
        proc.wait(5)
        proc.stdout.close()
        proc.stderr.close()


def connect(ns, host, port=8080, proto="tcp"):
    """-> the peer address the server saw, or None when unreachable."""
    res = subprocess.run(
        nsenter(ns) + [sys.executable, "-c", CLIENT, proto, host, str(port)], capture_output=True, text=True, timeout=20
    )
    if res.returncode != 0:
        return None
    out = res.stdout.strip()
    return out[len("peer=") :] if out.startswith("peer=") else None


def ping(ns, host, size=None, count=1):
    argv = nsenter(ns) + ["ping", "-c", str(count), "-W", "2"]
    if size:
        argv += ["-s", str(size)]
    return subprocess.run(argv + [host], capture_output=True, text=True, timeout=20).returncode == 0


def wire(a, a_ip, b, b_ip, a_if="up0", b_if="up0"):
    """A veth between namespaces a and b with addresses (CIDR strings)."""
    subprocess.run(
        ["ip", "-n", a, "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", b],
        check=True,
        capture_output=True,
    )
    for ns, ifn, ip in ((a, a_if, a_ip), (b, b_if, b_ip)):
        subprocess.run(["ip", "-n", ns, "addr", "add", ip, "dev", ifn], check=True, capture_output=True)
        subprocess.run(["ip", "-n", ns, "link", "set", ifn, "up"], check=True, capture_output=True)


def snapshot(node, pods=(), data_dir=None):
    """What a failed call must not have changed."""

    def out(argv):
        return subprocess.run(argv, capture_output=True, text=True).stdout

    def links(ns):
        return sorted(
            line.split(":")[1].strip().split("@")[0] for line in out(["ip", "-n", ns, "-o", "link"]).splitlines()
        )

    files = []
    if data_dir and os.path.isdir(data_dir):
        for d, _, names in os.walk(data_dir):
            files += [os.path.join(d, n) for n in names if n[:1].isdigit() or ":" in n]
    return {
        "node-links": links(node),
        "pod-links": {p: links(p) for p in pods},
        "nft": out(nsenter(node) + ["nft", "list", "ruleset"]),
        "addrs": out(["ip", "-n", node, "-br", "addr"]),
        "ipam-files": sorted(files),
    }


def wait_for(what, fn, timeout=30, every=0.1):
    """Poll fn until it returns something true (returned); fail naming `what`
    and the last value when `timeout` seconds pass."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(every)
    raise AssertionError("timed out waiting for %s (last: %r)" % (what, last))


def process_running(pid):
    """Is PID alive and not a zombie?"""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def is_sleep(pid, seconds):
    """Is PID `sleep SECONDS` (a test's own leftover, known by its argument)?"""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().split(b"\0")[:2] == [b"sleep", str(seconds).encode()]
    except OSError:
        return False
