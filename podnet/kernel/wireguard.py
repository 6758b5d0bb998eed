"""The WireGuard interface of a node: the kernel's, or wireguard-go's TUN.

Which one: the kernel module when `ip link add NAME type wireguard` works
(the link is created here, over netlink), else Debian's wireguard-go, the
official userspace implementation, which makes a TUN device of that name in
the namespace it runs in. Either way `wg` (wireguard-tools) sets keys and
peers (`wg set`) and reads them back (`wg show NAME dump`).

The UAPI socket. wireguard-go listens on /var/run/wireguard/NAME.sock, and
`wg` looks there first for any interface name (before asking the kernel), but
/var/run/wireguard is one directory for the whole machine: two lab nodes (or
two labs) each with `podnet.wg` would take each other's socket. So
wireguard-go and every `wg` we run live in a private mount namespace
(`unshare --mount --propagation private`) in which the node's own directory
RUN_ROOT is bind-mounted on /run (/var/run is a symlink to it):
/var/run/wireguard/podnet.wg.sock there is RUN_ROOT/wireguard/podnet.wg.sock,
a file in the node's state. /run itself always exists, so nothing is created
in the machine's /run; nothing else in /run is needed by wg or wireguard-go.
`podnet lab exec NODE -- wg ...` gets the same view (podnet/lab/topology.py).

The process. wireguard-go runs in the foreground (-f), in a session of its
own (an agent restart or its process group's SIGTERM leaves it and its
tunnels alone), recorded by PID and start time in a PID file, so the next
agent adopts it, and stopped only by that PID. A process that is no longer
the recorded one (PID reused) does not match the start time.
"""

import errno
import ipaddress
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field

from podnet.kernel.links import IFF_UP, LinkError, _nl, addresses, delete_address, ensure_address, link_index
from podnet.kernel.netns import ns_ident

WG = "wg"
WIREGUARD_GO = "wireguard-go"
SOCK_SUBDIR = "wireguard"  # under RUN_ROOT: what /run/wireguard is inside the private view
KERNEL, USERSPACE = "kernel", "wireguard-go"


class Unsupported(LinkError):
    """The kernel has no WireGuard module (link kind wireguard)."""


def _private_run(run_root, argv):
    """argv run with `run_root` as /run (a private mount namespace)."""
    bind = 'mount --bind "$0" /run || exit 126; exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", bind, run_root, *argv]


def socket_dir(run_root):
    return os.path.join(run_root, SOCK_SUBDIR)


# ---- the link ----------------------------------------------------------------------


def link_kind(ipr, name):
    """ "wireguard" (the kernel's), "tun" (wireguard-go's), another kind, or None (no link)."""
    idx = link_index(ipr, name)
    if idx is None:
        return None
    info = ipr.get_links(idx)[0].get_attr("IFLA_LINKINFO")
    return (info.get_attr("IFLA_INFO_KIND") if info else None) or "unknown"


def create_kernel_link(ipr, name):
    """`ip link add NAME type wireguard`. Raises Unsupported without the module."""
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        ipr.link("add", ifname=name, kind="wireguard")
    except NetlinkError as exc:
        code, text = _nl(exc)
        if code == errno.EOPNOTSUPP:
            raise Unsupported("create wireguard link %s: %s (no WireGuard module)" % (name, text), code) from None
        if code != errno.EEXIST:
            raise LinkError("create wireguard link %s: %s" % (name, text), code) from None


def ensure_up(ipr, name, mtu, address):
    """The link is up with this MTU and holds `address` as its only IPv4
    address. -> number of changes."""
    from pyroute2.netlink.exceptions import NetlinkError

    idx = link_index(ipr, name)
    if idx is None:
        raise LinkError("set up %s: no such link" % name, errno.ENODEV)
    changes = 0
    try:
        link = ipr.get_links(idx)[0]
        if link.get_attr("IFLA_MTU") != mtu or not link["flags"] & IFF_UP:
            ipr.link("set", index=idx, mtu=mtu, state="up")
            changes += 1
    except NetlinkError as exc:
        code, text = _nl(exc)
        raise LinkError("set %s up, mtu %d: %s" % (name, mtu, text), code) from None
    want = ipaddress.ip_interface(address)
    for extra in set(addresses(ipr, idx)) - {want}:
        if extra.version == 4:
            changes += delete_address(ipr, name, extra, index=idx)
    changes += ensure_address(ipr, name, want, index=idx)
    return changes


RTN_UNREACHABLE = 7
MAIN = 254


def ensure_unreachable(ipr, dst, proto):
    """`ip route replace unreachable DST proto PROTO`: a catch-all under the
    more specific routes. -> 1 when added, 0 when it was there."""
    import socket

    from pyroute2.netlink.exceptions import NetlinkError

    net = ipaddress.ip_network(dst)
    for r in ipr.route("dump", family=socket.AF_INET, table=MAIN, proto=proto):
        if (
            r["proto"] == proto
            and r["type"] == RTN_UNREACHABLE
            and r["dst_len"] == net.prefixlen
            and r.get_attr("RTA_DST") == str(net.network_address)
        ):
            return 0
    try:
        ipr.route("replace", dst=str(net), type="unreachable", proto=proto, table=MAIN)
    except NetlinkError as exc:
        code, text = _nl(exc)
        raise LinkError("replace route unreachable %s proto %d: %s" % (net, proto, text), code) from None
    return 1


# ---- wg ------------------------------------------------------------------------------


@dataclass
class PeerState:
    public_key: str
    endpoint: str | None
    allowed_ips: tuple[str, ...]
    latest_handshake: int  # unix seconds, 0: never
    rx: int
    tx: int
    keepalive: int = 0  # seconds, 0: off


@dataclass
class DeviceState:
    private_key: str | None
    public_key: str | None
    listen_port: int
    peers: dict[str, PeerState] = field(default_factory=dict)


def parse_dump(text):
    """`wg show NAME dump` -> DeviceState. First line: private-key public-key
    listen-port fwmark; then per peer: public-key preshared-key endpoint
    allowed-ips latest-handshake transfer-rx transfer-tx persistent-keepalive
    (tab-separated, "(none)" for an unset value)."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise ValueError("wg show dump: no output")

    def opt(v):
        return None if v == "(none)" else v

    head = lines[0].split("\t")
    dev = DeviceState(opt(head[0]), opt(head[1]), int(head[2]) if head[2].isdigit() else 0)
    for ln in lines[1:]:
        f = ln.split("\t")
        allowed = tuple(sorted(a for a in f[3].split(",") if a and a != "(none)"))
        keepalive = int(f[7]) if len(f) > 7 and f[7].isdigit() else 0
        dev.peers[f[0]] = PeerState(f[0], opt(f[2]), allowed, int(f[4]), int(f[5]), int(f[6]), keepalive)
    return dev


def wg(run_root, args, input=None, timeout=10):
    """Run `wg ARGS` in the private view (see above), in the calling
    thread's network namespace. -> stdout. Errors name the command."""
    argv = _private_run(run_root, [WG, *args])
    try:
        res = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LinkError("wg %s: %s" % (" ".join(args[:3]), exc)) from None
    if res.returncode != 0:
        raise LinkError("wg %s: %s" % (" ".join(args[:3]), (res.stderr or res.stdout).strip()), res.returncode)
    return res.stdout


def show(run_root, name):
    """The interface as `wg show NAME dump` reports it, or None when wg finds no such interface."""
    try:
        return parse_dump(wg(run_root, ["show", name, "dump"]))
    except LinkError as exc:
        if "No such device" in str(exc) or "Unable to access interface" in str(exc):
            return None
        raise


def set_device(run_root, name, args, private_key=None):
    """`wg set NAME ARGS...`; private_key (base64) goes in on stdin, never
    on a command line or in a file outside the node's state."""
    if private_key is not None:
        args = ["private-key", "/dev/stdin", *args]
    wg(run_root, ["set", name, *args], input=(private_key + "\n") if private_key is not None else None)


# ---- wireguard-go, by PID ----------------------------------------------------------


def _start_time(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return None if fields[0] in ("Z", "X") else fields[19]
    except (FileNotFoundError, IndexError, ProcessLookupError, ValueError):
        return None


def read_pidfile(path):
    """-> (pid, start) recorded, or None."""
    try:
        with open(path) as f:
            words = f.read().split()
        return int(words[0]), words[1] if len(words) > 1 else None
    except (FileNotFoundError, ValueError, IndexError):
        return None


def running(pidfile):
    """The PID of the recorded wireguard-go when it still runs, in this
    thread's network namespace, else None."""
    rec = read_pidfile(pidfile)
    if rec is None:
        return None
    pid, start = rec
    if start is None or _start_time(pid) != start:
        return None
    if ns_ident(pid, "net") != ns_ident("thread-self", "net"):
        return None
    return pid


def start_userspace(name, run_root, pidfile, log_path, timeout=5.0):
    """Start wireguard-go for NAME in the calling thread's network namespace
    and wait until its socket answers. -> the Popen (the caller reaps it)."""
    os.makedirs(socket_dir(run_root), mode=0o700, exist_ok=True)
    sock = os.path.join(socket_dir(run_root), name + ".sock")
    if os.path.exists(sock):
        os.unlink(sock)  # a dead one's: wireguard-go refuses to start over it
    env = dict(os.environ, WG_PROCESS_FOREGROUND="1", LOG_LEVEL="error")
    with open(log_path, "ab") as out:
        try:
            proc = subprocess.Popen(
                _private_run(run_root, [WIREGUARD_GO, "-f", name]),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            raise LinkError("start wireguard-go for %s: %s" % (name, exc)) from None
    # unshare and sh exec in place: the PID is wireguard-go's
    deadline = time.monotonic() + timeout
    start = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LinkError("wireguard-go for %s exited with %s; see %s" % (name, proc.returncode, log_path))
        start = start or _start_time(proc.pid)
        if os.path.exists(sock):
            break
        time.sleep(0.02)
    else:
        stop_pid(proc.pid, start)
        proc.wait()
        raise LinkError("wireguard-go for %s: no socket %s after %.0f s" % (name, sock, timeout))
    tmp = pidfile + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d %s\n" % (proc.pid, _start_time(proc.pid)))
    os.replace(tmp, pidfile)
    return proc


def stop_pid(pid, start, grace=3.0):
    """SIGTERM, then SIGKILL, the process with this PID if it is still the
    one that started at `start`."""
    if start is None or _start_time(pid) != start:
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + grace
    while _start_time(pid) == start and time.monotonic() < deadline:
        time.sleep(0.02)
    if _start_time(pid) == start:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return True


def stop_recorded(pidfile):
    rec = read_pidfile(pidfile)
    if rec is not None:
        stop_pid(*rec)
    try:
        os.unlink(pidfile)
    except FileNotFoundError:
        pass
